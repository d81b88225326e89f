//! Fault hooks of ADD, for the tests that prove its rollback and DEL's
//! cleanup after a crash. Never set in production.

/// Fail ADD after this many programs were attached, to prove the rollback.
pub const FAIL_AFTER_ATTACHES_ENV: &str = "NATRA_FAIL_AFTER_ATTACHES";
/// SIGKILL the plugin itself after this many attaches, to prove that DEL
/// and GC clean up after an ADD that died half-way (no rollback runs, as
/// with a real kill).
pub const KILL_AFTER_ATTACHES_ENV: &str = "NATRA_KILL_AFTER_ATTACHES";
/// SIGKILL the plugin at a named point of ADD (`fq-installed`,
/// `clsact-created`), to prove that DEL cleans up after a crash in the
/// windows between making something and recording it.
pub const KILL_AT_ENV: &str = "NATRA_KILL_AT";

use crate::error::{Error, ErrorKind, Result};

/// Dies here, as a crash would, when [`KILL_AT_ENV`] names `point`.
pub fn kill_point(point: &str) {
    if std::env::var(KILL_AT_ENV).is_ok_and(|v| v == point) {
        kill();
    }
}

/// After the `n`th attach of an attempt (1-based): dies or fails there when
/// [`KILL_AFTER_ATTACHES_ENV`] or [`FAIL_AFTER_ATTACHES_ENV`] says `n`.
pub fn after_attach(n: usize) -> Result<()> {
    let count = |env: &str| -> Option<usize> { std::env::var(env).ok()?.parse().ok() };
    if count(KILL_AFTER_ATTACHES_ENV) == Some(n) {
        kill();
    }
    if count(FAIL_AFTER_ATTACHES_ENV) == Some(n) {
        return Err(Error::new(
            ErrorKind::Dataplane,
            format!("{FAIL_AFTER_ATTACHES_ENV} fault injected after {n} attach(es)"),
        ));
    }
    Ok(())
}

fn kill() {
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
}

/// Stands in for the build's state layout id (hex), to run two layouts'
/// dataplanes side by side as two natra versions would.
pub const LAYOUT_ID_ENV: &str = "NATRA_TEST_LAYOUT_ID";
/// Stands in for the build's BPF object id (hex), to upgrade the programs
/// of a live dataplane in place as a new natra of the same layout would.
pub const PROGRAM_ID_ENV: &str = "NATRA_TEST_PROGRAM_ID";
/// Caps the slots ADD may claim, to reach the private fallback.
pub const SLOTS_ENV: &str = "NATRA_TEST_SLOTS";

fn hex_env(env: &str) -> Option<u64> {
    let v = std::env::var(env).ok()?;
    u64::from_str_radix(v.trim_start_matches("0x"), 16)
        .ok()
        .filter(|&v| v != 0)
}

pub fn layout_id() -> Option<u64> {
    hex_env(LAYOUT_ID_ENV)
}

pub fn program_id() -> Option<u64> {
    hex_env(PROGRAM_ID_ENV)
}

pub fn slots() -> Option<u32> {
    std::env::var(SLOTS_ENV).ok()?.parse().ok()
}
