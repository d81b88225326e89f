//! Running code inside a Pod's network namespace.
//!
//! setns() moves only the calling thread, so the work runs on a short-lived
//! thread of its own and the rest of the process never leaves the host netns.
use std::fs::File;
use std::path::Path;
use std::thread;

use nix::sched::{setns, CloneFlags};

use crate::error::{Context, Error, ErrorKind, Result};

pub fn run_in_netns<T, F>(netns: &Path, work: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> Result<T> + Send,
{
    let ns = File::open(netns).context(
        ErrorKind::Io,
        format!("cannot open netns {}", netns.display()),
    )?;
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
