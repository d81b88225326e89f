//! Compiles the BPF dataplane and generates its Rust skeleton (CO-RE, loaded with libbpf-rs).
use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "bpf/natra.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"))
        .join("natra.skel.rs");
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => panic!("unsupported target arch {other}"),
        Err(_) => "x86",
    };
    SkeletonBuilder::new()
        .source(SRC)
        .clang_args([
            "-Wall".to_string(),
            "-Werror".to_string(),
            "-O2".to_string(),
            format!("-D__TARGET_ARCH_{arch}"),
            "-Iinclude".to_string(),
            "-Ibpf".to_string(),
        ])
        .build_and_generate(&out)
        .expect("building the BPF skeleton failed (see the clang output above)");
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-changed=include");
}
