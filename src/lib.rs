//! natra: a chained CNI plugin that rate-limits Pod traffic with BPF.
pub mod agent;
pub mod cli;
pub mod cni;
pub mod contract;
pub mod dataplane;
pub mod error;
pub mod limits;
pub mod netlink;
pub mod netns;
pub mod qdisc;
pub mod safefs;
pub mod units;
