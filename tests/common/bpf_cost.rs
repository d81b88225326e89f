//! The dataplane's cost per packet, measured with BPF_PROG_RUN's `repeat`
//! (the kernel runs the program N times on one skb and reports the mean),
//! for each path a packet can take, IPv4 and IPv6, next to a pass-through
//! program (`bench_pass_through`, never loaded in production) measured in
//! the same run, so the figures show natra's own cost above the harness's.
//! Shared by `make bench-bpf` (tests/bench_bpf.rs) and `make bench`
//! (tests/perf).
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, ProgramMut};
use natra::dataplane::maps::{write_bucket, write_config};
use natra::dataplane::skeleton::types::natra_bucket_state;
use natra::dataplane::skeleton::{NatraSkel, NatraSkelBuilder};
use natra::dataplane::Direction;
use natra::dataplane::Placement;
use natra::limits::{pod_limits, BucketParams, RequestedLimit, Tuning};

const NSEC_PER_SEC: u64 = 1_000_000_000;

fn packet(v6: bool) -> Vec<u8> {
    let mut p = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    let mut tcp = vec![0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10];
    tcp.extend_from_slice(&[0xfa, 0xf0, 0, 0, 0, 0]);
    tcp.extend(std::iter::repeat_n(0xab, 1000));
    if v6 {
        p.extend_from_slice(&0x86ddu16.to_be_bytes());
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        p.extend_from_slice(&[6, 64]);
        p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    } else {
        p.extend_from_slice(&0x0800u16.to_be_bytes());
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    }
    p.extend(tcp);
    p
}

/// Where a Pod's stub points in production: a slot other than 0, a
/// generation other than 0 (the program runs called directly with a zero
/// skb->cb as slot 0, generation 0).
const STUBBED: Placement = Placement {
    layout: 1,
    slot: 3,
    generation: 5,
};

fn freeze(skel: &NatraSkel<'_>, key: u32, level: i64) {
    let st = natra_bucket_state {
        level,
        last_ns: u64::MAX,
        epoch: 7,
        epoch_start_ns: u64::MAX,
        ..Default::default()
    };
    write_bucket(skel.maps.natra_bucket.as_fd(), key, &st).expect("write the bucket");
}

/// Zeroes the cells both placements use (slots 0 to 3).
fn clear_sketch(skel: &NatraSkel<'_>) {
    let cells = 8 * 512u32;
    let keys: Vec<u8> = (0..cells).flat_map(u32::to_ne_bytes).collect();
    let values = vec![0u8; cells as usize * 8];
    skel.maps
        .natra_sketch
        .update_batch(&keys, &values, cells, MapFlags::ANY, MapFlags::ANY)
        .expect("clear the sketch");
}

/// Rounds per path; each figure is the best of them. The rounds go round
/// robin over every path, so a burst of noise from this VM's neighbours (one
/// path read 209 ns beside 102 in one sequential run) lands on one round of
/// each path rather than on every round of one. Many short rounds (2e5 runs,
/// ~20 ms each) rather than a few long ones: the host's preemption of this
/// vCPU, which BPF_PROG_RUN's timer cannot leave out, spoils fewer of them.
pub const ROUNDS: usize = 25;

/// Mean ns per run of `prog` on `pkt` over one round of `repeat` runs.
fn time(prog: &ProgramMut<'_>, pkt: &[u8], expect: u32, repeat: u32) -> f64 {
    time_fd(prog.as_fd(), pkt, expect, repeat)
}

fn time_fd(prog: BorrowedFd<'_>, pkt: &[u8], expect: u32, repeat: u32) -> f64 {
    let (ret, mean) = natra::dataplane::prog_test_run(prog, pkt, repeat).expect("BPF_PROG_RUN");
    assert_eq!(ret, expect, "the path under test was not taken");
    mean.as_nanos() as f64
}

fn params(rate_bits: u64, horizon_ms: u64) -> BucketParams {
    let req = RequestedLimit {
        rate_bits,
        burst_bits: 0,
    };
    let t = Tuning {
        edt_horizon_ms: Some(horizon_ms),
        ..Default::default()
    };
    pod_limits(req, req, &t).unwrap().pod_egress.unwrap()
}

/// ns/packet of each path, [IPv4, IPv6], beside the pass-through floor:
/// `rows` through a Pod's stub and its tail call (what a packet runs),
/// `direct` the shared program called without the stub.
pub struct BpfCost {
    pub repeat: u32,
    pub pass: [f64; 2],
    pub rows: Vec<(&'static str, [f64; 2])>,
    pub direct: Vec<[f64; 2]>,
}

impl BpfCost {
    /// The worst heavy-path figure (the one the 100 ns target is about).
    pub fn worst_heavy(&self) -> f64 {
        self.rows
            .iter()
            .filter(|(name, _)| name.starts_with("heavy"))
            .flat_map(|(_, r)| r.iter().copied())
            .fold(0.0, f64::max)
    }
}

/// Loads the skeleton and times every path, `repeat` runs per round.
pub fn measure(repeat: u32) -> BpfCost {
    let mut storage = MaybeUninit::uninit();
    let mut open = NatraSkelBuilder::default().open(&mut storage).unwrap();
    open.progs.bench_pass_through.set_autoload(true);
    let skel = open.load().expect("load");
    const PASS: u32 = -1i32 as u32;
    const DROP: u32 = 2;

    // 8 Gbit/s, a 4 GiB bucket, a 4 s horizon: nothing runs out in a round
    // of 1e6 packets of 1 kB (every round starts from the same frozen
    // bucket), so each path stays the path measured.
    let mut base = params(8_000_000_000, 4_000);
    base.burst_bytes = 1 << 32;
    let full = (base.burst_bytes * NSEC_PER_SEC) as i64;
    let mice = BucketParams {
        heavy_threshold_bytes: 1 << 39,
        ..base
    };
    let heavy = BucketParams {
        heavy_threshold_bytes: 1,
        ..base
    };
    let reserve = (heavy.mice_reserve_bytes * NSEC_PER_SEC) as i64;
    // (path, direction, config, bucket level, verdict); None: pass-through
    type Case = (&'static str, Direction, BucketParams, i64, u32);
    let cases: [Option<Case>; 5] = [
        None,
        Some(("mouse", Direction::PodEgress, mice, full, PASS)),
        Some(("heavy, under rate", Direction::PodEgress, heavy, full, PASS)),
        Some((
            "heavy, over rate: drop",
            Direction::PodIngress,
            heavy,
            0,
            DROP,
        )),
        Some((
            "heavy, over rate: EDT pace",
            Direction::PodEgress,
            heavy.with_edt(),
            reserve,
            PASS,
        )),
    ];
    let programs = skel.maps.natra_progs.as_fd();
    for d in Direction::ALL {
        let prog = match d {
            Direction::PodIngress => skel.progs.pod_ingress.as_fd(),
            Direction::PodEgress => skel.progs.pod_egress.as_fd(),
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&prog) as u32;
        skel.maps
            .natra_progs
            .update(&d.index().to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .expect("fill the program array");
    }
    let stubs: Vec<_> = Direction::ALL
        .iter()
        .map(|&d| natra::dataplane::load_stub(programs, d, &STUBBED).expect("load a stub"))
        .collect();
    let mut best = [[f64::MAX; 2]; 5];
    let mut best_direct = [[f64::MAX; 2]; 5];
    for _ in 0..ROUNDS {
        for (c, case) in cases.iter().enumerate() {
            for (i, v6) in [false, true].into_iter().enumerate() {
                let Some((_, dir, p, level, expect)) = case else {
                    let ns = time(&skel.progs.bench_pass_through, &packet(v6), PASS, repeat);
                    best[c][i] = best[c][i].min(ns);
                    continue;
                };
                let cfg = skel.maps.natra_cfg.as_fd();
                write_config(cfg, *dir, p, &Placement::default()).unwrap();
                write_config(cfg, *dir, p, &STUBBED).unwrap();
                let prog = match dir {
                    Direction::PodIngress => &skel.progs.pod_ingress,
                    Direction::PodEgress => &skel.progs.pod_egress,
                };
                clear_sketch(&skel);
                freeze(&skel, dir.index(), *level);
                let ns = time(prog, &packet(v6), *expect, repeat);
                best_direct[c][i] = best_direct[c][i].min(ns);
                clear_sketch(&skel);
                freeze(&skel, STUBBED.key(*dir), *level);
                let stub = stubs[dir.index() as usize].as_fd();
                let ns = time_fd(stub, &packet(v6), *expect, repeat);
                best[c][i] = best[c][i].min(ns);
            }
        }
    }
    let pass = best[0];
    let rows = cases
        .iter()
        .zip(best)
        .filter_map(|(case, r)| case.map(|(name, ..)| (name, r)))
        .collect();
    let direct = best_direct[1..].to_vec();
    BpfCost {
        repeat,
        pass,
        rows,
        direct,
    }
}

impl BpfCost {
    /// The table `make bench-bpf` prints.
    pub fn render(&self) -> String {
        let (pass, repeat) = (self.pass, self.repeat);
        let mut table = format!(
            "\nnatra dataplane, ns/packet (BPF_PROG_RUN, repeat {repeat}, best of {ROUNDS} interleaved rounds; 1054 B IPv4 / 1074 B IPv6 TCP)\n\
             {:<28} {:>8} {:>8} {:>10} {:>10} {:>14} {:>14}\n",
            "path (through the stub)", "IPv4", "IPv6", "IPv4/pass", "IPv6/pass", "IPv4 - pass", "IPv6 - pass"
        );
        table += &format!(
            "{:<28} {:>8.1} {:>8.1} {:>10} {:>10} {:>14} {:>14}\n",
            "pass-through (floor)", pass[0], pass[1], "1.00", "1.00", "-", "-"
        );
        for (name, r) in &self.rows {
            table += &format!(
                "{:<28} {:>8.1} {:>8.1} {:>10.2} {:>10.2} {:>14.1} {:>14.1}\n",
                name,
                r[0],
                r[1],
                r[0] / pass[0],
                r[1] / pass[1],
                r[0] - pass[0],
                r[1] - pass[1]
            );
        }
        table += "the stub and its tail call, over the shared program called directly:";
        for ((name, r), d) in self.rows.iter().zip(&self.direct) {
            table += &format!(" {name} {:+.1}/{:+.1}", r[0] - d[0], r[1] - d[1]);
        }
        table += " ns (IPv4/IPv6)\n";
        let worst = self.worst_heavy();
        table += &format!(
            "heavy path worst {worst:.1} ns/packet: target <= 100 ns {}\n",
            if worst <= 100.0 { "met" } else { "MISSED" }
        );
        table
    }
}
