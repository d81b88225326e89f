//! One node-wide lock around natra's changes to bpffs, so that concurrent
//! ADD/DEL/CHECK/GC calls (kubelet runs many Pods at once) never see each
//! other's half-made attachment directories.
//!
//! Nobody but root may hold it: `flock` needs only an open fd, so a lock
//! file another user can open (or plant, or point elsewhere with a symlink)
//! would let that user stall every Pod on the node. The file is root's, 0600,
//! in a root-owned directory (created 0700), opened without following
//! symlinks (safefs.rs); and the wait is bounded: past it the call fails with
//! CNI code 11, "try again later", which the runtime retries.
use std::fs::File;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, ErrorKind, Result};
use crate::safefs;

pub const DEFAULT_LOCK_FILE: &str = "/run/natra/natra.lock";
/// Overrides the lock file (tests with a private pin root may share it).
pub const LOCK_FILE_ENV: &str = "NATRA_LOCK_FILE";
/// Overrides how long a call waits for the lock, in milliseconds.
pub const LOCK_TIMEOUT_ENV: &str = "NATRA_LOCK_TIMEOUT_MS";
/// Longer than any burst of ADDs takes (110 Pods at ~40 ms each, one after
/// another, is under 5 s), shorter than the runtime's own CNI deadline.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Held until dropped; the kernel releases it if the process dies.
pub struct NodeLock {
    _flock: Flock<File>,
}

fn lock_path() -> PathBuf {
    std::env::var_os(LOCK_FILE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCK_FILE))
}

fn lock_timeout() -> Duration {
    std::env::var(LOCK_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_LOCK_TIMEOUT)
}

pub fn lock_node() -> Result<NodeLock> {
    let path = lock_path();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        safefs::check_parent(dir)?;
        if !dir.exists() {
            safefs::own_dir(dir, 0o700)?;
        }
    }
    let mut file = safefs::own_file(&path, 0o600)?;
    let timeout = lock_timeout();
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => return Ok(NodeLock { _flock: flock }),
            Err((f, Errno::EWOULDBLOCK)) if start.elapsed() < timeout => {
                file = f;
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(Error::new(
                    ErrorKind::TryAgainLater,
                    format!(
                        "the node lock {} is still held after {} ms",
                        path.display(),
                        timeout.as_millis()
                    ),
                )
                .with_details("another natra call is running, or is stuck; try again later"))
            }
            Err((_, e)) => {
                return Err(
                    Error::new(ErrorKind::Io, format!("cannot lock {}", path.display()))
                        .with_details(e),
                )
            }
        }
    }
}
