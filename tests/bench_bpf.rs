//! `make bench-bpf`: the dataplane's cost per packet per path
//! (tests/common/bpf_cost.rs, also part of `make bench`). Target: the heavy
//! path within 100 ns/packet.
//!
//! It only prints: timing assertions would flake on a busy machine. Run it
//! on a quiet one, in release mode:
//!   cargo test --release --test bench_bpf -- --ignored --nocapture
mod common;

const REPEAT: u32 = 200_000;

#[test]
#[ignore = "benchmark, needs root: run via make bench-bpf"]
fn bench_ns_per_packet() {
    common::require_root();
    let table = common::bpf_cost::measure(REPEAT).render();
    println!("{table}");
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-bpf.txt"),
        &table,
    );
}
