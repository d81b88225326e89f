//! Helpers shared by natra's integration tests.
//!
//! Tests that need root (bpffs, netns, BPF) are `#[ignore]`d with a reason, so
//! a plain non-root `cargo test` lists them as ignored instead of passing
//! them; `make test` runs them with `--include-ignored` when it is root, and
//! `require_root()` fails them loudly if they are forced on without root.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (bpffs, netns, BPF): run `sudo make test`"
    );
}

/// The natra binary cargo built for this test run.
pub fn natra_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_natra"))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub mod bpf_cost;
pub mod cri;
pub mod http;
pub mod inet;
pub mod iperf;
pub mod kernel;
pub mod mice;
pub mod natra_alone;
pub mod netdev;
pub mod plugin;
pub mod pod;
pub mod quiet;
pub mod skel;
pub mod stats;
