//! natra's command line, used when CNI_COMMAND is not set.
pub mod inspect;
pub mod install;
pub mod set;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "natra",
    version,
    about = "Pod bandwidth limiter (chained CNI plugin)"
)]
struct Cli {
    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Subcommand)]
enum CliCommand {
    /// Print natra's version.
    Version,
    /// Show every Pod interface natra limits: hooks, limits, memory, counters.
    Inspect {
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Print natra's counters per Pod interface and direction.
    Stats {
        /// Print the Prometheus text format (node_exporter textfile collector).
        #[arg(long)]
        prometheus: bool,
    },
    /// Copy this binary into the CNI bin dir and chain natra after the node's main CNI config.
    Install {
        #[command(flatten)]
        node: NodeDirs,
    },
    /// Run as the node agent (the DaemonSet's container): install, keep natra
    /// chained after the main CNI config as it changes, serve /metrics and
    /// /healthz. SIGTERM stops it and leaves natra chained.
    Agent {
        #[command(flatten)]
        node: NodeDirs,
        /// Address of the /metrics and /healthz endpoints.
        #[arg(long, default_value = "0.0.0.0:9471")]
        listen: String,
        /// Re-chain at least this often (seconds), conf dir events or not.
        #[arg(long, default_value_t = 60)]
        resync_secs: u64,
        /// Hold every attachment against the kernel, and repair it, this
        /// often (seconds).
        #[arg(long, default_value_t = 5)]
        reconcile_secs: u64,
        /// A directory of per-Pod limit overrides (`*.json`), applied live.
        #[arg(long)]
        overrides_dir: Option<PathBuf>,
    },
    /// Change a running Pod interface's limits in place (no re-attach; the
    /// bucket's level carries over). Rates are Kubernetes quantities in
    /// bit/s, like the annotations (`10M`); `0` lifts a limit; a direction
    /// not given keeps its limit.
    Set {
        /// The Pod, as NAMESPACE/NAME (from the runtime's CNI_ARGS at ADD).
        #[arg(long)]
        pod: Option<String>,
        /// The Pod's sandbox (container) ID, or a unique prefix of it.
        #[arg(long)]
        container_id: Option<String>,
        /// The Pod's interface, when it has several.
        #[arg(long)]
        interface: Option<String>,
        /// The network, when the Pod is on several.
        #[arg(long)]
        network: Option<String>,
        /// New rate into the Pod.
        #[arg(long)]
        ingress: Option<String>,
        /// New rate out of the Pod.
        #[arg(long)]
        egress: Option<String>,
    },
    /// Remove what `natra install` wrote.
    Uninstall {
        #[arg(long, default_value = "/etc/cni/net.d")]
        cni_conf_dir: PathBuf,
        #[arg(long, default_value = "/opt/cni/bin")]
        cni_bin_dir: PathBuf,
    },
}

/// Where the node keeps its CNI configs and plugins, and its bpffs: what
/// `install` and `agent` both take.
#[derive(clap::Args)]
struct NodeDirs {
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    #[arg(long, default_value = "/opt/cni/bin")]
    cni_bin_dir: PathBuf,
    /// Also mount bpffs here unless it already is one.
    #[arg(long)]
    bpffs: Option<PathBuf>,
}

impl NodeDirs {
    /// Mounts bpffs if asked; returns this binary, which `install` copies.
    fn prepare(&self) -> crate::error::Result<PathBuf> {
        if let Some(path) = &self.bpffs {
            if install::ensure_bpffs_mounted(path)? {
                log::info!("mounted bpffs at {}", path.display());
            }
        }
        std::env::current_exe().map_err(|e| {
            crate::error::Error::new(crate::error::ErrorKind::Io, "cannot find own binary")
                .with_details(e)
        })
    }
}

/// Writes to stdout; a closed pipe (`natra inspect | head`) is not an error.
fn emit(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

pub fn run() -> ExitCode {
    let outcome = match Cli::parse().command {
        CliCommand::Version => {
            println!("natra {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        CliCommand::Inspect { json } => inspect::inspect_all(&crate::dataplane::pins::pin_root())
            .map(|all| {
                if json {
                    emit(&inspect::json(&all));
                } else {
                    let root = crate::dataplane::pins::pin_root();
                    let dataplanes = crate::dataplane::shared::list(&root).unwrap_or_default();
                    emit(&inspect::inspect_text(&all, &dataplanes));
                }
            }),
        CliCommand::Stats { prometheus } => {
            inspect::inspect_all(&crate::dataplane::pins::pin_root()).map(|all| {
                if prometheus {
                    emit(&inspect::prometheus(&all));
                } else {
                    emit(&inspect::stats_table(&all));
                }
            })
        }
        CliCommand::Install { node } => node
            .prepare()
            .and_then(|exe| install::install(&node.cni_conf_dir, &node.cni_bin_dir, &exe))
            .map(|done| {
                println!(
                    "{} {} (chained after {}) and {}",
                    if done.changed {
                        "installed"
                    } else {
                        "already installed:"
                    },
                    done.conflist.display(),
                    done.main_config.display(),
                    done.binary.display()
                );
            }),
        CliCommand::Agent {
            node,
            listen,
            resync_secs,
            reconcile_secs,
            overrides_dir,
        } => node.prepare().and_then(|binary| {
            crate::agent::run(crate::agent::AgentOptions {
                chain: crate::agent::chain::ChainConfig {
                    conf_dir: node.cni_conf_dir,
                    bin_dir: node.cni_bin_dir,
                    binary,
                    settle: std::time::Duration::from_millis(200),
                    resync: std::time::Duration::from_secs(resync_secs.max(1)),
                },
                listen,
                pin_root: crate::dataplane::pins::pin_root(),
                reconcile: std::time::Duration::from_secs(reconcile_secs.max(1)),
                overrides: overrides_dir,
            })
        }),
        CliCommand::Set {
            pod,
            container_id,
            interface,
            network,
            ingress,
            egress,
        } => inspect::inspect_all(&crate::dataplane::pins::pin_root()).and_then(|all| {
            let selector = set::Selector {
                pod,
                container_id,
                interface,
                network,
            };
            let target = set::find(&all, &selector)?;
            let limits = set::limits_for(target, ingress.as_deref(), egress.as_deref())?;
            set::apply(target, &limits).map(|text| emit(&text))
        }),
        CliCommand::Uninstall {
            cni_conf_dir,
            cni_bin_dir,
        } => install::uninstall(&cni_conf_dir, &cni_bin_dir).map(|changed| {
            println!(
                "{}",
                if changed {
                    "uninstalled"
                } else {
                    "nothing to uninstall"
                }
            );
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
