//! Scenario 3, many mice: 200 clients fetching 16 KB replies back to back
//! (200 concurrent short flows) beside one elephant, in each direction of a
//! capped Pod. Reported: the aggregate rate over 1 s windows / cap (is the
//! cap honest when most bytes take the mice's fast pass?) and the mice's
//! p99 completion time.
//!
//! The aggregate is measured after the limiter, independently of its own
//! counters: tx_bytes of the host veth that delivers into the receiving Pod,
//! sampled every second. veth counts an unsegmented GSO packet as one, with
//! one set of headers, so bytes are scaled by the Ethernet bytes per payload
//! byte of full segments: that overstates the wire bytes slightly (by one
//! scaled header per packet), never understates them.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::bulk::{self, Dir};
use crate::common;
use crate::common::mice::{concurrent_clients, MiceServer};
use crate::mice_load::ends;
use crate::mode::{Mode, KB};
use crate::results::Results;
use crate::setup::{pair, Rig};

const MICE_PORT: u16 = 7090;
const ELEPHANT_PORT: u16 = 5631;
const REPLY_BYTES: usize = 16 * KB;
const WARM_UP: Duration = Duration::from_secs(2);
/// Sampling and thread wake-up jitter allowed when matching windows to the
/// mice phase.
const SLACK_S: f64 = 0.1;

pub fn run(rig: &Rig, mode: &Mode, res: &mut Results) {
    for &limiter in &mode.limiters {
        let p = pair(rig, limiter, mode.many_cap, "n");
        for (i, dir) in Dir::BOTH.into_iter().enumerate() {
            let _exclusive = common::quiet::measuring();
            let (srv_ns, srv_ip, cli_ns) = ends(&p, dir);
            let _srv = MiceServer::start(srv_ns, srv_ip, MICE_PORT);
            let addr: SocketAddr = format!("{srv_ip}:{MICE_PORT}").parse().unwrap();
            let secs = (WARM_UP + mode.many_phase).as_secs() as u32 + 2;
            // the veth delivering into the Pod that receives the capped direction
            let veth = match dir {
                Dir::PodEgress => &p.server_veth,
                Dir::PodIngress => &p.client_veth,
            };
            let sampler = Sampler::start(veth);
            let elephant = bulk::start(&p, dir, ELEPHANT_PORT + i as u16, secs, 0);
            // the mice start on a sample, so that the first 1 s window of
            // the mice phase (where the fast pass shows most) is a full one
            sampler.sleep_until(WARM_UP);
            let mice_start = sampler.elapsed();
            let (mice, failed) =
                concurrent_clients(cli_ns, addr, mode.many_mice, mode.many_phase, REPLY_BYTES);
            let mice_end = sampler.elapsed();
            bulk::finish(dir, elephant);
            let samples = sampler.stop();

            let cap = mode.many_cap as f64;
            let windows = windows(&samples, p.wire_factor());
            let inside: Vec<f64> = windows
                .iter()
                .filter(|(t, _)| *t + SLACK_S >= mice_start && t + 1.0 <= mice_end + SLACK_S)
                .map(|(_, bps)| bps / cap)
                .collect();
            assert!(!inside.is_empty(), "no full 1 s window while the mice ran");
            let max = inside.iter().copied().fold(0.0, f64::max);
            let mean = inside.iter().sum::<f64>() / inside.len() as f64;
            let times: Vec<Duration> = mice.iter().map(|m| m.took).collect();
            let p99 = common::stats::percentile_ms(&times, 0.99);
            let base = format!("many.{}.{}", dir.key(), limiter.key());
            res.record(format!("{base}.agg_max_over_cap"), max);
            res.record(format!("{base}.agg_mean_over_cap"), mean);
            res.record(format!("{base}.mice_p99"), p99);
            res.record(
                format!("{base}.mice_per_s"),
                mice.len() as f64 / (mice_end - mice_start),
            );
            let pts = windows.iter().map(|&(t, b)| (t, b / 1e6)).collect();
            res.line(&format!("many-{}", dir.key()), limiter.label(), pts);
            res.record(format!("{base}.mice_failed"), failed as f64);
            println!(
                "many mice {:<28} {:<12} {} mice ({failed} failed), aggregate max {:.3} mean {:.3} of cap, mice p99 {:.1} ms",
                limiter.label(),
                dir.label(),
                mice.len(),
                max,
                mean,
                p99
            );
        }
    }
}

/// tx_bytes of a host interface, sampled every second on a thread.
struct Sampler {
    t0: Instant,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Vec<(f64, u64)>>,
}

impl Sampler {
    fn start(ifname: &str) -> Sampler {
        let path = format!("/sys/class/net/{ifname}/statistics/tx_bytes");
        let read = move || -> u64 {
            let s = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            s.trim().parse().expect("tx_bytes is a number")
        };
        let t0 = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::spawn(move || {
            let mut samples = vec![(0.0, read())];
            let mut k = 1;
            while !stopping.load(Ordering::Relaxed) {
                let next = t0 + Duration::from_secs(k);
                thread::sleep(next.saturating_duration_since(Instant::now()));
                samples.push((t0.elapsed().as_secs_f64(), read()));
                k += 1;
            }
            samples
        });
        Sampler { t0, stop, thread }
    }

    fn sleep_until(&self, since_start: Duration) {
        thread::sleep((self.t0 + since_start).saturating_duration_since(Instant::now()));
    }

    fn elapsed(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn stop(self) -> Vec<(f64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler")
    }
}

/// (window start s, wire bit/s) between consecutive samples.
fn windows(samples: &[(f64, u64)], wire: f64) -> Vec<(f64, f64)> {
    samples
        .windows(2)
        .map(|w| {
            let ((t0, b0), (t1, b1)) = (w[0], w[1]);
            (t0, (b1 - b0) as f64 * wire * 8.0 / (t1 - t0))
        })
        .collect()
}
