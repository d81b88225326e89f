//! Scenario 2, elephant + mice: in each direction of a capped Pod, a paced
//! stream of mice (a fresh TCP connection each, replies of each size in
//! turn) first alone, then beside one iperf3 elephant that fills the cap.
//! Reported per reply size: completion time p50/p90/p99 unloaded and
//! loaded; the mice completed per second under load; the elephant's
//! goodput/cap.
use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::bulk::{self, Dir};
use crate::common;
use crate::common::mice::{paced_client, MiceServer, Mouse};
use crate::mode::{Mode, KB};
use crate::results::Results;
use crate::setup::{pair, Pair, Rig};

const MICE_PORT: u16 = 7080;
const ELEPHANT_PORT: u16 = 5621;
/// The elephant fills the cap and turns heavy before the mice start.
const WARM_UP: Duration = Duration::from_millis(1500);
/// The reply size the CDF plots show.
pub const CDF_SIZE: usize = 16 * KB;

/// (netns, ip) of the mice server and the netns of the mice client: the
/// replies cross the cap in `dir` of the capped Pod.
pub fn ends<'p>(p: &'p Pair, dir: Dir) -> (&'p Path, &'p str, &'p Path) {
    match dir {
        Dir::PodEgress => (&p.client.netns_path, &p.client_ip, &p.server.netns_path),
        Dir::PodIngress => (&p.server.netns_path, &p.server_ip, &p.client.netns_path),
    }
}

pub fn run(rig: &Rig, mode: &Mode, res: &mut Results) {
    for &limiter in &mode.limiters {
        let p = pair(rig, limiter, mode.mice_cap, "m");
        for (i, dir) in Dir::BOTH.into_iter().enumerate() {
            let _exclusive = common::quiet::measuring();
            let (srv_ns, srv_ip, cli_ns) = ends(&p, dir);
            let _srv = MiceServer::start(srv_ns, srv_ip, MICE_PORT);
            let addr: SocketAddr = format!("{srv_ip}:{MICE_PORT}").parse().unwrap();
            let mice = || {
                paced_client(
                    cli_ns,
                    addr,
                    mode.mice_interval,
                    mode.mice_phase,
                    mode.mice_sizes.clone(),
                )
                .join()
                .expect("mice client")
            };
            let unloaded = mice();
            thread::sleep(Duration::from_millis(600)); // the bucket refills

            let secs = (WARM_UP + mode.mice_phase).as_secs() as u32 + 2;
            let elephant = bulk::start(&p, dir, ELEPHANT_PORT + i as u16, secs, 1);
            thread::sleep(WARM_UP);
            let t0 = Instant::now();
            let loaded = mice();
            let mice_per_s = loaded.len() as f64 / t0.elapsed().as_secs_f64();
            let ele = bulk::finish(dir, elephant);

            let base = format!("mice.{}.{}", dir.key(), limiter.key());
            for &size in &mode.mice_sizes {
                for (phase, mice) in [("unloaded", &unloaded), ("loaded", &loaded)] {
                    let times = times_of(mice, size);
                    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
                        let v = common::stats::percentile_ms(&times, q);
                        res.record(format!("{base}.{}k.{phase}.{name}", size / KB), v);
                    }
                }
                let plot = format!("mice-cdf-{}", dir.key());
                if size == CDF_SIZE {
                    for (phase, mice) in [("alone", &unloaded), ("+ elephant", &loaded)] {
                        let label = format!("{} {phase}", limiter.label());
                        res.line(&plot, &label, cdf(&times_of(mice, size)));
                    }
                }
            }
            res.record(format!("{base}.mice_per_s"), mice_per_s);
            res.record(
                format!("{base}.elephant_over_cap"),
                ele.goodput / mode.mice_cap as f64,
            );
            println!(
                "mice {:<28} {:<12} {} mice, {}k p99 {:.2} ms alone, {:.2} ms beside the elephant ({:.2} Mbit/s)",
                limiter.label(),
                dir.label(),
                loaded.len(),
                mode.mice_sizes[0] / KB,
                common::stats::percentile_ms(&times_of(&unloaded, mode.mice_sizes[0]), 0.99),
                common::stats::percentile_ms(&times_of(&loaded, mode.mice_sizes[0]), 0.99),
                ele.goodput / 1e6
            );
        }
    }
}

fn times_of(mice: &[Mouse], size: usize) -> Vec<Duration> {
    mice.iter()
        .filter(|m| m.reply_bytes == size)
        .map(|m| m.took)
        .collect()
}

/// (ms, fraction of mice done within it), one point per mouse.
pub fn cdf(times: &[Duration]) -> Vec<(f64, f64)> {
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len() as f64;
    ms.iter()
        .enumerate()
        .map(|(i, &t)| (t, (i + 1) as f64 / n))
        .collect()
}
