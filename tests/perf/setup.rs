//! The Pods compared: one network whose chain is ptp + natra, one whose
//! chain is ptp + Debian's upstream `bandwidth` plugin, so every limiter is
//! driven by libcni exactly as a runtime would. An unlimited Pod is a Pod
//! of the upstream network without bandwidth args (the plugin then does
//! nothing).
use std::process::Command;

use serde_json::{json, Value};

use crate::common::pod::{host_veth, pod_ip, run_ok, Pod, TestNet, CONTAINERD_BURST_BITS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limiter {
    Natra,
    /// Upstream with containerd's burst (4294967295 bits): what users get.
    Upstream,
    /// Upstream given the burst natra clamps to (500 ms of the rate), the
    /// best a user could configure.
    UpstreamNatraBurst,
    Unlimited,
}

impl Limiter {
    pub const ALL: [Limiter; 4] = [
        Limiter::Natra,
        Limiter::Upstream,
        Limiter::UpstreamNatraBurst,
        Limiter::Unlimited,
    ];

    /// Short key used in metric names and data files.
    pub fn key(self) -> &'static str {
        match self {
            Limiter::Natra => "natra",
            Limiter::Upstream => "upstream",
            Limiter::UpstreamNatraBurst => "upstream-500ms",
            Limiter::Unlimited => "none",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Limiter::Natra => "natra",
            Limiter::Upstream => "upstream (containerd burst)",
            Limiter::UpstreamNatraBurst => "upstream (500 ms burst)",
            Limiter::Unlimited => "no limit",
        }
    }

    /// runtimeConfig.bandwidth for a Pod capped at `cap` bit/s both ways.
    pub fn bandwidth(self, cap: u64) -> Option<Value> {
        let burst_bits = match self {
            Limiter::Natra | Limiter::Upstream => CONTAINERD_BURST_BITS,
            Limiter::UpstreamNatraBurst => natra_burst_bits(cap),
            Limiter::Unlimited => return None,
        };
        Some(json!({"ingressRate": cap, "ingressBurst": burst_bits,
                    "egressRate": cap, "egressBurst": burst_bits}))
    }
}

/// natra's burst for containerd's request (docs/limits.md): 500 ms of the
/// rate, at least 128 KiB.
pub fn natra_burst_bits(cap: u64) -> u64 {
    (cap / 2).max(128 * 1024 * 8)
}

/// The two networks, on subnets 200 and 201 (10.99 or NATRA_TEST_OCTET).
pub struct Rig {
    natra: TestNet,
    upstream: TestNet,
}

impl Rig {
    pub fn new() -> Rig {
        let upstream = json!({ "type": "bandwidth", "capabilities": { "bandwidth": true } });
        Rig {
            natra: TestNet::new("perf-natra", 200),
            upstream: TestNet::with_natra("perf-up", 201, upstream),
        }
    }

    pub fn net(&self, limiter: Limiter) -> &TestNet {
        match limiter {
            Limiter::Natra => &self.natra,
            _ => &self.upstream,
        }
    }

    /// The network whose Pods carry no limiter (scale: limiters are called
    /// directly on them).
    pub fn plain(&self) -> &TestNet {
        &self.upstream
    }
}

/// A capped client Pod and an unlimited server Pod on the same network.
pub struct Pair<'a> {
    pub client: Pod<'a>,
    pub server: Pod<'a>,
    pub client_ip: String,
    pub server_ip: String,
    /// Host ends of the Pods' veths.
    pub client_veth: String,
    pub server_veth: String,
    /// The client's eth0 MTU: full TCP segments carry MTU - 52 bytes of
    /// payload (timestamps on) in MTU + 14 bytes of Ethernet frame.
    pub mtu: u64,
}

impl Pair<'_> {
    /// Ethernet bytes per payload byte of full TCP segments: what a cap
    /// counting wire bytes (natra, TBF) charges per byte of goodput.
    pub fn wire_factor(&self) -> f64 {
        (self.mtu + 14) as f64 / (self.mtu - 52) as f64
    }
}

pub fn pair<'a>(rig: &'a Rig, limiter: Limiter, cap: u64, tag: &str) -> Pair<'a> {
    let net = rig.net(limiter);
    let server = net.pod(&format!("{tag}s"));
    let client = net.pod(&format!("{tag}c"));
    let server_result = server.add(None).ok();
    let client_result = client.add(limiter.bandwidth(cap).as_ref()).ok();
    let mtu = run_ok(client.exec("cat").arg("/sys/class/net/eth0/mtu"))
        .trim()
        .parse()
        .expect("eth0 mtu");
    Pair {
        client,
        server,
        client_ip: pod_ip(&client_result),
        server_ip: pod_ip(&server_result),
        client_veth: host_veth(&client_result),
        server_veth: host_veth(&server_result),
        mtu,
    }
}

/// The host's kernel, CPU and memory, for the doc.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = run_ok(Command::new("uname").arg("-r")).trim().to_owned();
    format!("{cores} x {cpu}; {mem}; kernel {kernel}")
}
