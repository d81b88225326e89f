//! One bulk TCP flow through a Pod pair (iperf3 -J), with the receiver's
//! 1 s intervals: the shape of the rate over time, not just its mean.
use std::process::{Child, Stdio};

use crate::common::iperf::{client_command, IperfServer};
use crate::setup::Pair;

const MIN_INTERVAL_S: f64 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    PodEgress,
    PodIngress,
}

impl Dir {
    pub const BOTH: [Dir; 2] = [Dir::PodEgress, Dir::PodIngress];

    pub fn key(self) -> &'static str {
        match self {
            Dir::PodEgress => "egress",
            Dir::PodIngress => "ingress",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Dir::PodEgress => "pod egress",
            Dir::PodIngress => "pod ingress",
        }
    }
}

/// What the receiver of one bulk flow saw.
pub struct Bulk {
    /// Goodput over the measured (non-omitted) time, bit/s.
    pub goodput: f64,
    /// (start s, bit/s) of every receiver interval, omitted ones included.
    pub intervals: Vec<(f64, f64)>,
    /// Payload bytes received, omitted intervals included.
    pub bytes: f64,
}

/// Starts the elephant from the capped client Pod, sending in `dir` of it,
/// for `secs` after `omit` omitted seconds. Collect it with [`finish`].
pub fn start(pair: &Pair, dir: Dir, port: u16, secs: u32, omit: u32) -> (IperfServer, Child) {
    let server = IperfServer::start(&pair.server, port);
    let mut cmd = client_command(
        &pair.client,
        &pair.server_ip,
        port,
        secs + omit + 30,
        secs,
        omit,
    );
    cmd.args(["--connect-timeout", "3000"]);
    match dir {
        // the receiver is the server: have its intervals in the report
        Dir::PodEgress => cmd.arg("--get-server-output"),
        Dir::PodIngress => cmd.arg("-R"),
    };
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("start iperf3 -c");
    (server, child)
}

pub fn finish(dir: Dir, (server, child): (IperfServer, Child)) -> Bulk {
    let out = child.wait_with_output().expect("wait for iperf3");
    server.finish();
    let report = crate::common::iperf::report(&out);
    let receiver = match dir {
        Dir::PodEgress => &report["server_output_json"],
        Dir::PodIngress => &report,
    };
    let mut intervals = Vec::new();
    let mut bytes = 0.0;
    for i in receiver["intervals"]
        .as_array()
        .expect("receiver intervals")
    {
        let sum = &i["sum"];
        let start = sum["start"].as_f64().expect("interval start");
        bytes += sum["bytes"].as_f64().expect("interval bytes");
        // iperf3 may end with a sliver of an interval: its rate says little
        if sum["seconds"].as_f64().expect("interval seconds") >= MIN_INTERVAL_S {
            intervals.push((
                start,
                sum["bits_per_second"].as_f64().expect("interval rate"),
            ));
        }
    }
    Bulk {
        goodput: crate::common::iperf::received_bps(&report),
        intervals,
        bytes,
    }
}

/// A bulk flow run to its end.
pub fn run_bulk(pair: &Pair, dir: Dir, port: u16, secs: u32, omit: u32) -> Bulk {
    finish(dir, start(pair, dir, port, secs, omit))
}
