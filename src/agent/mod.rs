//! `natra agent`: the node agent the DaemonSet runs. It keeps natra chained
//! after the node's main CNI config (chain.rs), serves the node's metrics
//! and a health check over HTTP (metrics.rs, run.rs), holds every
//! attachment against the kernel and repairs it (dataplane::reconcile), and
//! applies per-Pod limit overrides live (overrides.rs).
pub mod chain;
pub mod metrics;
pub mod overrides;
pub mod run;

pub use run::{run, AgentOptions};
