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

/// What natra pins for a Pod interface limited both ways with tcx.
pub const PINS_BOTH_WAYS: [&str; 7] = [
    "attachment",
    "bucket",
    "config",
    "counters",
    "pod_egress_link",
    "pod_ingress_link",
    "programs",
];

/// SIGTERMs `child` and waits for it to exit, at most `limit` (a panic
/// past it); returns its status and how long it took.
pub fn sigterm_and_wait(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> (std::process::ExitStatus, std::time::Duration) {
    use nix::sys::signal::{kill, Signal};
    kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, start.elapsed());
        }
        assert!(start.elapsed() < limit, "SIGTERM ignored for {limit:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
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
