//! iperf3 in test Pods: a one-off server that is reaped on drop, and the
//! client command the traffic tests share.
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::pod::{run, Pod};

/// `iperf3 -s -1` in a Pod; killed on drop if it is still running.
pub struct IperfServer {
    child: Child,
    port: u16,
}

impl IperfServer {
    /// Starts the server and waits until it listens; probing with a
    /// connection would be taken for the one test an `-s -1` server serves.
    pub fn start(pod: &Pod, port: u16) -> IperfServer {
        let child = pod
            .exec("iperf3")
            .args(["-s", "-1", "-J", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the iperf3 server");
        let mut server = IperfServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ss = run(pod.exec("ss").args(["-Hltn", &format!("sport = :{port}")]));
            if !String::from_utf8_lossy(&ss.stdout).trim().is_empty() {
                return server;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("iperf3 server on port {port} exited before listening: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "iperf3 server on port {port} never listened"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The one-off server exits after its test; give it a moment.
    pub fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "iperf3 server on port {} did not exit after its test",
            self.port
        );
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `iperf3 -J -c` from `client`, bounded by `timeout_s`, measuring `secs`
/// after omitting the first `omit_s`; callers add their own flags.
pub fn client_command(
    client: &Pod,
    server_ip: &str,
    port: u16,
    timeout_s: u32,
    secs: u32,
    omit_s: u32,
) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.arg(timeout_s.to_string())
        .args(["ip", "netns", "exec", &client.netns_name, "iperf3", "-J"])
        .args(["-c", server_ip, "-p", &port.to_string()])
        .args(["-t", &secs.to_string(), "-O", &omit_s.to_string()]);
    cmd
}

/// The `-J` report of a finished iperf3 client; panics with its output when
/// there is none or iperf3 reports an error.
pub fn report(out: &Output) -> Value {
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3: no JSON report ({e}, {}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    if let Some(err) = report.get("error") {
        panic!("iperf3 failed: {err}");
    }
    report
}

/// The receiver's rate over the measured (non-omitted) time, bits/s.
pub fn received_bps(report: &Value) -> f64 {
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .expect("end.sum_received.bits_per_second")
}

/// Tries a TCP rate measurement gets when it falls short of its lower bound.
/// A policed TCP flow (no ECN, no EDT) now and then stalls on a
/// retransmission timeout for a good part of a 5 s run: 0.80-0.89 of the cap
/// about one run in ten on this 2-core VM, with the dataplane before and
/// after the same change alike. A limiter that really costs TCP throughput
/// falls short on every try; the upper bound (honesty) is never retried.
pub const TCP_SHORTFALL_TRIES: usize = 3;

/// Runs `measure` until its rate (`bps` of it, bit/s) reaches `lower`, at
/// most TCP_SHORTFALL_TRIES times; returns the fastest measurement.
pub fn best_of_shortfalls<T>(
    what: &str,
    lower: f64,
    bps: impl Fn(&T) -> f64,
    mut measure: impl FnMut() -> T,
) -> T {
    let mut best = measure();
    for attempt in 2..=TCP_SHORTFALL_TRIES {
        if bps(&best) >= lower {
            break;
        }
        eprintln!(
            "{what}: {:.2} Mbit/s is below {:.2}: measuring again ({attempt}/{TCP_SHORTFALL_TRIES})",
            bps(&best) / 1e6,
            lower / 1e6
        );
        let next = measure();
        if bps(&next) > bps(&best) {
            best = next;
        }
    }
    best
}
