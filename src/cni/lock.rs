//! One node-wide lock around natra's changes to bpffs, so that concurrent
//! ADD/DEL/CHECK/GC calls (kubelet runs many Pods at once) never see each
//! other's half-made attachment directories.
use std::fs::{self, File, OpenOptions};
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Context, Error, ErrorKind, Result};

pub const DEFAULT_LOCK_FILE: &str = "/run/natra/natra.lock";
/// Overrides the lock file (tests with a private pin root may share it).
pub const LOCK_FILE_ENV: &str = "NATRA_LOCK_FILE";

/// Held until dropped; the kernel releases it if the process dies.
pub struct NodeLock {
    _flock: Flock<File>,
}

pub fn lock_node() -> Result<NodeLock> {
    let path = std::env::var_os(LOCK_FILE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCK_FILE));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).context(
            ErrorKind::Io,
            format!("cannot create lock directory {}", dir.display()),
        )?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .context(
            ErrorKind::Io,
            format!("cannot open lock {}", path.display()),
        )?;
    let flock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| {
        Error::new(ErrorKind::Io, format!("cannot lock {}", path.display())).with_details(e)
    })?;
    Ok(NodeLock { _flock: flock })
}
