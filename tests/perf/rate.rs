//! Scenario 1, rate accuracy: one bulk TCP flow per cap and direction.
//! Reported: goodput/cap, the wire rate/cap (goodput x Ethernet bytes per
//! payload byte of full segments: what natra and TBF both count) over the
//! measured seconds, the largest 1 s window / cap (the first second shows
//! the burst), and the
//! machine's softirq time per GB moved (the dataplane's CPU cost) at caps
//! of 1 Gbit/s and more: /proc/stat counts 10 ms ticks, too coarse for the
//! few MB a slower run moves.
use crate::bulk::{run_bulk, Dir};
use crate::mode::Mode;
use crate::results::Results;
use crate::setup::{pair, Limiter, Rig};
use crate::{common, softirq};

const OMIT_S: u32 = 1;
const PORT: u16 = 5601;
const SOFTIRQ_MIN_CAP: u64 = 1_000_000_000;

pub fn cap_label(cap: u64) -> String {
    if cap >= 1_000_000_000 {
        format!("{}G", cap / 1_000_000_000)
    } else {
        format!("{}M", cap / 1_000_000)
    }
}

pub fn run(rig: &Rig, mode: &Mode, res: &mut Results) {
    let mut cases: Vec<(Limiter, u64)> = Vec::new();
    for &cap in &mode.rate_caps {
        for &l in &mode.limiters {
            cases.push((l, cap));
        }
    }
    // without a limit the cap means nothing: one pair, run once per direction
    cases.push((Limiter::Unlimited, *mode.rate_caps.last().unwrap()));
    for (limiter, cap) in cases {
        let p = pair(rig, limiter, cap, "r");
        let repeats = if limiter == Limiter::Unlimited {
            1
        } else {
            mode.rate_repeats
        };
        for dir in Dir::BOTH
            .into_iter()
            .flat_map(|d| std::iter::repeat_n(d, repeats))
        {
            let _exclusive = common::quiet::measuring();
            let cpu0 = softirq::total();
            let b = run_bulk(&p, dir, PORT, mode.rate_secs, OMIT_S);
            let cpu = softirq::total() - cpu0;
            let capf = cap as f64;
            let (l, d) = (limiter.key(), dir.key());
            let key = if limiter == Limiter::Unlimited {
                format!("rate.{d}.{l}")
            } else {
                format!("rate.{}.{d}.{l}", cap_label(cap))
            };
            res.record(format!("{key}.goodput_mbit"), b.goodput / 1e6);
            res.record(format!("{key}.good_over_cap"), b.goodput / capf);
            res.record(
                format!("{key}.wire_over_cap"),
                b.goodput * p.wire_factor() / capf,
            );
            let peak = b.intervals.iter().map(|i| i.1).fold(0.0, f64::max);
            res.record(format!("{key}.peak_over_cap"), peak / capf);
            if cap >= SOFTIRQ_MIN_CAP && cap == *mode.rate_caps.last().unwrap() {
                let ms_per_gb = cpu.as_secs_f64() * 1e3 / (b.bytes / 1e9);
                res.record(format!("cost.softirq.{d}.{l}"), ms_per_gb);
            }
            let plot = format!("rate-{}-{d}", cap_label(cap));
            if limiter != Limiter::Unlimited {
                // iperf3 restarts its clock after the omitted second: number
                // the intervals instead
                let pts = b
                    .intervals
                    .iter()
                    .enumerate()
                    .map(|(i, &(_, r))| (i as f64, r / 1e6))
                    .collect();
                res.line(&plot, limiter.label(), pts);
            }
            println!(
                "rate {:<28} {:>5} {:<12} goodput {:>9.2} Mbit/s = {:.3} of cap, peak 1 s {:.2}x, softirq {:.0} ms",
                limiter.label(),
                cap_label(cap),
                dir.label(),
                b.goodput / 1e6,
                b.goodput / capf,
                peak / capf,
                cpu.as_secs_f64() * 1e3
            );
        }
    }
}
