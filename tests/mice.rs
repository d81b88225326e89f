//! Mice next to an elephant, through libcni and real traffic: a "client"
//! Pod limited to 20 Mbit/s both ways and an unlimited "server" Pod. In each
//! direction of the client Pod, one iperf3 TCP elephant fills the cap while a
//! stream of short request/response flows (a fresh TCP connection each, a
//! 16 KB reply) crosses the same limit. Each mouse's completion time
//! (connect to last reply byte) is measured first without the elephant, then
//! with it.
//!
//! Asserted per direction: the mice's p99 under load is at most 1.5x their
//! unloaded p99 (natra's mice never wait for the elephant: they pass from
//! the reserve the elephant cannot touch), and the elephant gets the cap
//! minus what the mice used, within ±10% (every byte is charged to one
//! bucket). Both sides of that are natra's own counters over the time the
//! mice ran (passed_heavy_bytes and passed_mouse_bytes, wire bytes), so the
//! windows match; iperf3's goodput over its whole run (which includes
//! seconds without mice) is printed beside them. The figures are printed (--nocapture) and written to
//! CARGO_TARGET_TMPDIR/mice-table.txt.
//!
//! The mice client and server are tests/common/mice.rs.
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::iperf::{self, client_command};
use common::kernel;
use common::mice::{paced_client, MiceServer};
use common::pod::{bandwidth, pod_ip, run, Pod, TestNet};
use common::stats::percentile_ms;

const CAP_BITS: u64 = 20_000_000;
const REPLY_BYTES: usize = 16 * 1024;
/// One mouse every 20 ms: 50/s x 16 KB = 6.6 Mbit/s of replies (a third of
/// the cap), 400 mice per phase, so that the p99 is the 4th-worst mouse
/// rather than one scheduler hiccup on a small VM.
const MOUSE_INTERVAL: Duration = Duration::from_millis(20);
const MICE_PHASE: Duration = Duration::from_secs(8);
const ELEPHANT_S: u32 = 11;
const OMIT_S: u32 = 1;
const P99_FACTOR: f64 = 1.5;
const TOLERANCE: f64 = 0.10;
const MICE_PORT: u16 = 7070;
const IPERF_PORT: u16 = 5411;

/// passed_mouse_bytes and passed_heavy_bytes of one direction (index) of
/// the client Pod, summed over CPUs: its own slot of the counters map.
fn class_bytes(pod: &Pod, key: usize) -> (u64, u64) {
    let mut out = (0, 0);
    for (dir, cpus) in kernel::slot_dump_per_cpu(&pod.pin_dir(), "counters") {
        if dir != key as u64 {
            continue;
        }
        for v in cpus {
            out.0 += v["passed_mouse_bytes"].as_u64().unwrap_or(0);
            out.1 += v["passed_heavy_bytes"].as_u64().unwrap_or(0);
        }
    }
    out
}

/// iperf3 server (one test) in `pod`, killed on drop.
struct Iperf(Child);

impl Drop for Iperf {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn iperf_server(pod: &Pod, port: u16) -> Iperf {
    let server = Iperf(
        pod.exec("iperf3")
            .args(["-s", "-1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start iperf3 -s"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ss = run(pod.exec("ss").args(["-Hltn", &format!("sport = :{port}")]));
        if !String::from_utf8_lossy(&ss.stdout).trim().is_empty() {
            return server;
        }
        assert!(Instant::now() < deadline, "iperf3 never listened");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the elephant: iperf3 from `client` to `server_ip`, `-R` for pod
/// ingress. Returns the running child (JSON on stdout).
fn elephant(client: &Pod, server_ip: &str, port: u16, reverse: bool) -> Child {
    let mut cmd = client_command(client, server_ip, port, 40, ELEPHANT_S, OMIT_S);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if reverse {
        cmd.arg("-R");
    }
    cmd.spawn().expect("start iperf3 -c")
}

/// The elephant's receiver-side rate over its measured (non-omitted) time.
fn elephant_rate(child: Child) -> f64 {
    let out = child.wait_with_output().expect("wait for iperf3");
    iperf::received_bps(&iperf::report(&out))
}

struct Figures {
    direction: &'static str,
    unloaded: Vec<Duration>,
    loaded: Vec<Duration>,
    elephant_bits: f64,
    mice_bits: f64,
    heavy_bits: f64,
}

/// One direction: mice alone, then mice + elephant.
fn measure(
    direction: &'static str,
    client: &Pod,
    server: &Pod,
    client_ip: &str,
    server_ip: &str,
    port: u16,
) -> Figures {
    let _exclusive = common::quiet::measuring();
    let egress = direction == "pod egress";
    // replies leave the limited Pod for pod egress, enter it for pod ingress
    let (srv_pod, srv_ip, cli_pod) = if egress {
        (client, client_ip, server)
    } else {
        (server, server_ip, client)
    };
    let key = usize::from(egress); // natra's key: 0 = pod ingress
    let srv = MiceServer::start(&srv_pod.netns_path, srv_ip, MICE_PORT);
    let addr: SocketAddr = format!("{srv_ip}:{MICE_PORT}").parse().unwrap();
    let mice = || {
        paced_client(
            &cli_pod.netns_path,
            addr,
            MOUSE_INTERVAL,
            MICE_PHASE,
            vec![REPLY_BYTES],
        )
        .join()
        .expect("mice client")
        .iter()
        .map(|m| m.took)
        .collect::<Vec<_>>()
    };

    let unloaded = mice();
    thread::sleep(Duration::from_millis(600)); // the bucket refills

    let _iperf = iperf_server(server, port);
    let ele = elephant(client, server_ip, port, !egress);
    // let the elephant fill the cap and turn heavy before the mice start
    thread::sleep(Duration::from_millis(1500));
    let c0 = class_bytes(client, key);
    let t0 = Instant::now();
    let loaded = mice();
    let c1 = class_bytes(client, key);
    let secs = t0.elapsed().as_secs_f64();
    let elephant_bits = elephant_rate(ele);
    drop(srv);
    Figures {
        direction,
        unloaded,
        loaded,
        elephant_bits,
        mice_bits: (c1.0 - c0.0) as f64 * 8.0 / secs,
        heavy_bits: (c1.1 - c0.1) as f64 * 8.0 / secs,
    }
}

/// Mice p99 under the elephant over mice p99 alone.
fn p99_factor(f: &Figures) -> f64 {
    percentile_ms(&f.loaded, 0.99) / percentile_ms(&f.unloaded, 0.99)
}

#[test]
#[ignore = "needs root: netns + bpffs + real traffic (run via make test)"]
fn mice_are_not_slowed_by_an_elephant_and_share_the_cap_honestly() {
    common::require_root();
    let net = TestNet::new("mice", 151);
    let server = net.pod("srv");
    let client = net.pod("cli");
    let server_ip = pod_ip(&server.add(None).ok());
    let bw = bandwidth(Some(CAP_BITS), Some(CAP_BITS));
    let client_ip = pod_ip(&client.add(Some(&bw)).ok());

    let cap = CAP_BITS as f64;
    let mut all = Vec::new();
    for (i, direction) in ["pod egress", "pod ingress"].into_iter().enumerate() {
        let attempt =
            |port: u16| measure(direction, &client, &server, &client_ip, &server_ip, port);
        let mut f = attempt(IPERF_PORT + i as u16);
        if p99_factor(&f) > P99_FACTOR {
            // Measured once more, and judged on that: this 2-core VM's
            // scheduling jitter moves a ~2 ms p99 by a millisecond now and
            // then (1.58x seen once in about ten runs), while mice queued
            // behind the elephant — what this test is for — are ~50x slower
            // (upstream bandwidth, docs/perf-vs-vanilla.md) and miss twice.
            println!(
                "{direction}: mice p99 {:.2}x unloaded on the first attempt; measuring again",
                p99_factor(&f)
            );
            f = attempt(IPERF_PORT + 2 + i as u16);
        }
        all.push(f);
    }

    let mut table = format!(
        "\nnatra mice vs elephant: cap {} Mbit/s, a {} KB reply per mouse every {} ms for {} s\n\
         {:<12} {:>6} {:>11} {:>11} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>7} {:>11}\n",
        cap / 1e6,
        REPLY_BYTES / 1024,
        MOUSE_INTERVAL.as_millis(),
        MICE_PHASE.as_secs(),
        "direction",
        "mice",
        "p50 unload",
        "p99 unload",
        "p50 load",
        "p99 load",
        "p99 x",
        "mice Mb/s",
        "heavy Mb/s",
        "cap-mice",
        "ratio",
        "iperf3 Mb/s",
    );
    let mut failures = Vec::new();
    for f in &all {
        let (pu, pl) = (
            percentile_ms(&f.unloaded, 0.99),
            percentile_ms(&f.loaded, 0.99),
        );
        let factor = p99_factor(f);
        let expected = cap - f.mice_bits;
        let ratio = f.heavy_bits / expected;
        table += &format!(
            "{:<12} {:>6} {:>9.2}ms {:>9.2}ms {:>7.2}ms {:>7.2}ms {:>8.2} {:>9.2} {:>9.2} {:>9.2} {:>7.3} {:>11.2}\n",
            f.direction,
            f.loaded.len(),
            percentile_ms(&f.unloaded, 0.5),
            pu,
            percentile_ms(&f.loaded, 0.5),
            pl,
            factor,
            f.mice_bits / 1e6,
            f.heavy_bits / 1e6,
            expected / 1e6,
            ratio,
            f.elephant_bits / 1e6,
        );
        if factor > P99_FACTOR {
            failures.push(format!(
                "{}: mice p99 {:.2} ms under load is {factor:.2}x the unloaded {:.2} ms (> {P99_FACTOR}x)",
                f.direction, pl, pu
            ));
        }
        if (ratio - 1.0).abs() > TOLERANCE {
            failures.push(format!(
                "{}: elephant {:.2} Mbit/s (heavy, wire) is {ratio:.3} of cap - mice ({:.2} Mbit/s)",
                f.direction,
                f.heavy_bits / 1e6,
                expected / 1e6
            ));
        }
    }
    table += "(mice / heavy Mb/s: natra's passed_mouse_bytes / passed_heavy_bytes in that \
              direction while the mice ran, wire bytes; iperf3: the elephant's receiver goodput \
              over its whole run, 1 s omitted, partly without mice)\n";
    println!("{table}");
    let _ = std::fs::write(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mice-table.txt"),
        &table,
    );
    assert!(failures.is_empty(), "{}\n{table}", failures.join("\n"));

    for pod in [&client, &server] {
        pod.del(None).ok();
    }
    net.assert_pin_root_clean();
}
