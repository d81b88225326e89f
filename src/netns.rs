//! Running code inside a Pod's network namespace.
//!
//! setns() moves only the calling thread, so the work runs on a short-lived
//! thread of its own and the rest of the process never leaves the host netns.
//!
//! The path is opened without blocking and must be a namespace file (nsfs):
//! a FIFO at CNI_NETNS would otherwise block natra forever, holding the node
//! lock, and a stale regular file is told apart from a netns before setns.
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::thread;

use nix::sched::{setns, CloneFlags};

use crate::error::{Context, Error, ErrorKind, Result};

/// NSFS_MAGIC from linux/magic.h: the file system of /proc/*/ns/* and of
/// their bind mounts (/run/netns/*).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Opens `netns` as a namespace file, never blocking.
pub fn open_netns(netns: &Path) -> Result<File> {
    let ns = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(netns)
        .context(
            ErrorKind::Io,
            format!("cannot open netns {}", netns.display()),
        )?;
    let fs = nix::sys::statfs::fstatfs(&ns)
        .context(ErrorKind::Io, format!("cannot statfs {}", netns.display()))?;
    if fs.filesystem_type().0 as i64 != NSFS_MAGIC {
        return Err(Error::new(
            ErrorKind::Io,
            format!("{} is not a network namespace", netns.display()),
        )
        .with_details("a stale or foreign file at CNI_NETNS"));
    }
    Ok(ns)
}

pub fn run_in_netns<T, F>(netns: &Path, work: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> Result<T> + Send,
{
    let ns = open_netns(netns)?;
    thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(&ns, CloneFlags::CLONE_NEWNET).context(
                    ErrorKind::Io,
                    format!("cannot enter netns {}", netns.display()),
                )?;
                work()
            })
            .join()
            .unwrap_or_else(|_| Err(Error::new(ErrorKind::Io, "netns worker thread panicked")))
    })
}
