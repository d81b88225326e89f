//! The agent's main loop: the chain keeper on a thread of its own, and the
//! HTTP endpoints (`/metrics`, `/healthz`) on this one, until SIGTERM or
//! SIGINT. A rolling update's SIGTERM leaves natra's conflist in place: the
//! next agent takes over, and Pods keep being limited meanwhile; only
//! `natra uninstall` removes it.
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::chain::{self, ChainConfig, Outcome};
use super::metrics::{self, AgentCounters};
use crate::error::{Context, Error, ErrorKind, Result};

/// How the agent is run (`natra agent --help`).
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub chain: ChainConfig,
    /// Where `/metrics` and `/healthz` listen, e.g. `0.0.0.0:9471`.
    pub listen: String,
    /// The pin root whose attachments the metrics report and the
    /// reconciliation repairs.
    pub pin_root: PathBuf,
    /// How often every attachment is held against the kernel.
    pub reconcile: Duration,
    /// A directory of per-Pod limit overrides, applied live each round
    /// (overrides.rs); None: no overrides.
    pub overrides: Option<PathBuf>,
}

static STOP: AtomicBool = AtomicBool::new(false);

/// SIGTERM and SIGINT set STOP: blocked in every thread (this one first, so
/// threads made later inherit the mask) and taken by one that waits for them.
fn stop_on_signals() -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block()
        .context(ErrorKind::Io, "cannot block SIGTERM and SIGINT")?;
    thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            log::info!("agent: {sig} received");
        }
        STOP.store(true, Ordering::Relaxed);
    });
    Ok(())
}

/// What the threads share.
#[derive(Default)]
struct Shared {
    counters: Mutex<AgentCounters>,
    /// When the chain keeper last went round its loop (ms since start).
    keeper_beat_ms: AtomicU64,
}

impl Shared {
    fn count_error(&self, what: &str) {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        match c.errors.iter_mut().find(|(w, _)| w == what) {
            Some((_, n)) => *n += 1,
            None => c.errors.push((what.to_owned(), 1)),
        }
    }
}

/// One round of reconciliation: every attachment held against the kernel,
/// each repair logged and counted.
fn reconcile_once(root: &std::path::Path, shared: &Shared) {
    let all = match crate::dataplane::reconcile_all(root) {
        Ok(all) => all,
        Err(e) => {
            log::error!("agent: cannot list attachments: {e}");
            shared.count_error("reconcile");
            return;
        }
    };
    for (name, outcome) in all {
        match outcome {
            Ok(done) => {
                for repair in &done {
                    log::warn!("agent: {name}: repaired: {repair}");
                }
                let mut c = shared.counters.lock().unwrap_or_else(|e| e.into_inner());
                c.repairs += done.len() as u64;
            }
            Err(e) => {
                log::error!("agent: {name}: cannot reconcile: {e}");
                shared.count_error("reconcile");
            }
        }
    }
    // Slots no attachment holds and dataplanes of layouts no Pod uses any
    // more, under the lock ADD claims slots under.
    let collected =
        crate::cni::lock::lock_node().and_then(|_lock| crate::dataplane::collect_shared(root));
    match collected {
        Ok(done) if done.slots + done.dataplanes > 0 => log::info!(
            "agent: freed {} slot(s) no attachment held, removed {} unused dataplane(s)",
            done.slots,
            done.dataplanes
        ),
        Ok(_) => {}
        Err(e) => {
            log::error!("agent: cannot collect unused dataplane state: {e}");
            shared.count_error("collect");
        }
    }
}

pub fn run(opts: AgentOptions) -> Result<()> {
    stop_on_signals()?;
    let server = tiny_http::Server::http(&opts.listen).map_err(|e| {
        Error::new(ErrorKind::Io, format!("cannot listen on {}", opts.listen)).with_details(e)
    })?;
    log::info!(
        "agent: chaining natra after the main config in {}, metrics on http://{}/metrics",
        opts.chain.conf_dir.display(),
        opts.listen
    );
    let shared = Arc::new(Shared::default());
    let started = Instant::now();
    // The dataplane is the node's: loaded (or upgraded in place) now, so the
    // first ADD after a node boot or a rollout pays no verification.
    match crate::cni::lock::lock_node()
        .and_then(|_lock| crate::dataplane::prepare_shared(&opts.pin_root))
    {
        Ok(opened) => log::info!("agent: shared dataplane {opened}"),
        Err(e) => {
            log::error!("agent: cannot load the shared dataplane (the first ADD will): {e}");
            shared.count_error("dataplane");
        }
    }
    let keeper = {
        let (cfg, shared) = (opts.chain.clone(), shared.clone());
        thread::spawn(move || {
            chain::keep_chained(
                &cfg,
                || {
                    let ms = started.elapsed().as_millis() as u64;
                    shared.keeper_beat_ms.store(ms, Ordering::Relaxed);
                    STOP.load(Ordering::Relaxed)
                },
                |outcome| match outcome {
                    Outcome::Rechained(done) => {
                        log::info!(
                            "agent: chained natra after {} into {}",
                            done.main_config.display(),
                            done.conflist.display()
                        );
                        let mut c = shared.counters.lock().unwrap_or_else(|e| e.into_inner());
                        c.rechains += 1;
                    }
                    Outcome::Failed(e) => {
                        log::error!("agent: cannot chain natra: {e}");
                        shared.count_error("rechain");
                    }
                    Outcome::Unchanged => {}
                },
            )
        })
    };
    let reconciler = {
        let (root, every, shared) = (opts.pin_root.clone(), opts.reconcile, shared.clone());
        let overrides = opts.overrides.clone();
        thread::spawn(move || {
            while !STOP.load(Ordering::Relaxed) {
                reconcile_once(&root, &shared);
                if let Some(dir) = &overrides {
                    for outcome in super::overrides::apply_all(dir, &root) {
                        match outcome {
                            Ok(said) => log::info!("agent: override applied: {}", said.trim_end()),
                            Err(e) => {
                                log::error!("agent: override: {e}");
                                shared.count_error("override");
                            }
                        }
                    }
                }
                let next = Instant::now() + every;
                while Instant::now() < next && !STOP.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(100));
                }
            }
        })
    };
    while !STOP.load(Ordering::Relaxed) {
        let request = match server.recv_timeout(Duration::from_millis(250)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("agent: http: {e}");
                continue;
            }
        };
        let (status, content_type, body) = match request.url() {
            "/metrics" => match crate::cli::inspect::inspect_all(&opts.pin_root).and_then(|all| {
                serde_json::to_value(&all)
                    .context(ErrorKind::Io, "cannot serialise the attachments")
            }) {
                Ok(all) => {
                    let all = all.as_array().cloned().unwrap_or_default();
                    let counters = shared
                        .counters
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    (
                        200,
                        "text/plain; version=0.0.4; charset=utf-8",
                        metrics::render(
                            &all,
                            &crate::dataplane::shared::list(&opts.pin_root).unwrap_or_default(),
                            &counters,
                        ),
                    )
                }
                Err(e) => {
                    shared.count_error("inspect");
                    (
                        500,
                        "text/plain",
                        format!("cannot read natra's state: {e}\n"),
                    )
                }
            },
            "/healthz" => {
                let beat = shared.keeper_beat_ms.load(Ordering::Relaxed);
                let age = (started.elapsed().as_millis() as u64).saturating_sub(beat);
                if keeper.is_finished() || age > 10_000 {
                    (
                        503,
                        "text/plain",
                        "the chain keeper is not running\n".into(),
                    )
                } else {
                    (200, "text/plain", "ok\n".into())
                }
            }
            _ => (
                404,
                "text/plain",
                "not found: try /metrics or /healthz\n".into(),
            ),
        };
        let header =
            tiny_http::Header::from_bytes("Content-Type", content_type).expect("a valid header");
        let response = tiny_http::Response::from_string(body)
            .with_status_code(status)
            .with_header(header);
        if let Err(e) = request.respond(response) {
            log::debug!("agent: http response: {e}");
        }
    }
    log::info!("agent: stopping; natra stays chained (natra uninstall removes it)");
    let _ = reconciler.join();
    match keeper.join() {
        Ok(result) => result,
        Err(_) => Err(Error::new(ErrorKind::Io, "the chain keeper panicked")),
    }
}
