//! Keeping natra chained after the node's main CNI config for as long as the
//! agent runs: the main CNI (Calico, Cilium, flannel, …) rewrites its
//! conflist on upgrade or restart, and natra's `00-natra.conflist` must
//! follow it, or new Pods get yesterday's main config.
//!
//! The conf dir is watched with inotify (a close after write, a rename in or
//! out, a create or delete); each burst of events is followed, after a short
//! settle time, by one `natra install`, which rewrites natra's conflist only
//! when its content would change and never edits the main file. A resync
//! every `resync` catches anything inotify could not say (an overflowed
//! queue, a conf dir replaced as a whole). natra's own writes come back as
//! events too; they settle into a no-op install.
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::cli::install::{self, Installed};
use crate::error::{Context, ErrorKind, Result};

/// What the chain keeper is told to do.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
    /// The binary copied into `bin_dir` (the agent's own).
    pub binary: PathBuf,
    /// Quiet time after the last event before re-chaining (a main CNI's
    /// installer may write several files in a row).
    pub settle: Duration,
    /// Re-chain at least this often, events or not.
    pub resync: Duration,
}

/// One re-chain's outcome, for the agent's log and counters.
#[derive(Debug)]
pub enum Outcome {
    Unchanged,
    Rechained(Installed),
    Failed(crate::error::Error),
}

/// Runs `natra install` once and says what it did.
pub fn rechain(cfg: &ChainConfig) -> Outcome {
    match install::install(&cfg.conf_dir, &cfg.bin_dir, &cfg.binary) {
        Ok(done) if done.changed => Outcome::Rechained(done),
        Ok(_) => Outcome::Unchanged,
        Err(e) => Outcome::Failed(e),
    }
}

/// The inotify watch on the conf dir.
pub struct ConfWatch {
    inotify: Inotify,
}

impl ConfWatch {
    pub fn new(conf_dir: &Path) -> Result<ConfWatch> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .context(ErrorKind::Io, "cannot start inotify")?;
        inotify
            .add_watch(
                conf_dir,
                AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_MOVED_FROM
                    | AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_MOVE_SELF,
            )
            .context(
                ErrorKind::Io,
                format!("cannot watch {}", conf_dir.display()),
            )?;
        Ok(ConfWatch { inotify })
    }

    /// Waits up to `timeout` for events; true if any came (drained).
    pub fn wait(&self, timeout: Duration) -> Result<bool> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
        let ready =
            poll(&mut fds, PollTimeout::from(ms)).context(ErrorKind::Io, "cannot poll inotify")?;
        if ready == 0 {
            return Ok(false);
        }
        let mut any = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            any = true;
        }
        Ok(any)
    }
}

/// Keeps natra chained until `stop()` says so: chains at once, then again
/// after each settled burst of conf dir events and every `resync`;
/// `on_outcome` sees each re-chain that did something or failed.
pub fn keep_chained(
    cfg: &ChainConfig,
    stop: impl Fn() -> bool,
    mut on_outcome: impl FnMut(&Outcome),
) -> Result<()> {
    let mut watch = ConfWatch::new(&cfg.conf_dir)?;
    // Chained from the start (the watch is in place first: nothing written
    // meanwhile is missed).
    let outcome = rechain(cfg);
    if !matches!(outcome, Outcome::Unchanged) {
        on_outcome(&outcome);
    }
    let mut last_sync = Instant::now();
    while !stop() {
        let event = watch.wait(Duration::from_millis(250))?;
        let due = last_sync.elapsed() >= cfg.resync;
        if !event && !due {
            continue;
        }
        if event {
            // Let a burst of writes finish before reading the main config.
            while watch.wait(cfg.settle)? {}
        }
        let outcome = rechain(cfg);
        if !matches!(outcome, Outcome::Unchanged) {
            on_outcome(&outcome);
        }
        last_sync = Instant::now();
        if !cfg.conf_dir.is_dir() {
            continue;
        }
        // The conf dir itself replaced (a hostPath remounted, a dir renamed
        // into place): watch the new one.
        if due {
            watch = ConfWatch::new(&cfg.conf_dir)?;
        }
    }
    Ok(())
}
