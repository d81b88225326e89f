//! `natra agent`: the node agent the DaemonSet runs. It keeps natra chained
//! after the node's main CNI config (chain.rs), serves the node's metrics
//! and a health check over HTTP (metrics.rs, run.rs).
pub mod chain;
pub mod metrics;
pub mod run;

pub use run::{run, AgentOptions};
