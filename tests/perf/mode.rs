//! How much `make bench` measures: the quick subset `make test` runs (and
//! gates on), or the full run that rewrites docs/perf-vs-vanilla.md.
use std::time::Duration;

use super::setup::Limiter;

pub struct Mode {
    pub full: bool,
    /// Every scenario is repeated this often; figures are min/median/max.
    pub runs: usize,
    /// The limiters compared (no-limit is added where it means something).
    pub limiters: Vec<Limiter>,
    pub rate_caps: Vec<u64>,
    pub rate_secs: u32,
    /// Bulk runs per cap, direction and limiter within one run: TCP through
    /// a policer stalls on a retransmission timeout now and then (natra at
    /// 10M once read 0.72 of the cap in a 3 s run, 0.98-1.04 in nine
    /// others), so the quick subset judges the median of three.
    pub rate_repeats: usize,
    pub mice_cap: u64,
    pub mice_sizes: Vec<usize>,
    pub mice_interval: Duration,
    pub mice_phase: Duration,
    pub many_cap: u64,
    pub many_mice: usize,
    pub many_phase: Duration,
    pub scale_pods: usize,
    pub bpf_repeat: u32,
}

pub const KB: usize = 1024;

impl Mode {
    /// NATRA_BENCH=full for `make bench`; anything else is the quick subset.
    pub fn from_env() -> Mode {
        if std::env::var("NATRA_BENCH").as_deref() == Ok("full") {
            Mode::full()
        } else {
            Mode::quick()
        }
    }

    fn full() -> Mode {
        Mode {
            full: true,
            runs: 3,
            limiters: vec![
                Limiter::Natra,
                Limiter::Upstream,
                Limiter::UpstreamNatraBurst,
            ],
            rate_caps: vec![10_000_000, 100_000_000, 1_000_000_000],
            rate_secs: 4,
            rate_repeats: 1,
            mice_cap: 20_000_000,
            mice_sizes: vec![4 * KB, 16 * KB, 64 * KB],
            // 33 mice/s of 28 KB on average: 7.5 Mbit/s, a third of the cap;
            // 111 of each size per phase (a full run: ~6.5 min on 2 cores)
            mice_interval: Duration::from_millis(30),
            mice_phase: Duration::from_secs(10),
            many_cap: 100_000_000,
            many_mice: 200,
            many_phase: Duration::from_secs(6),
            scale_pods: 110,
            bpf_repeat: 200_000,
        }
    }

    fn quick() -> Mode {
        Mode {
            full: false,
            runs: 1,
            limiters: vec![Limiter::Natra, Limiter::Upstream],
            rate_caps: vec![10_000_000, 100_000_000],
            rate_secs: 3,
            rate_repeats: 3,
            mice_cap: 20_000_000,
            mice_sizes: vec![16 * KB],
            // 6.6 Mbit/s of replies, 250 mice: the p99 is the 3rd-worst
            mice_interval: Duration::from_millis(20),
            mice_phase: Duration::from_secs(5),
            many_cap: 100_000_000,
            many_mice: 200,
            many_phase: Duration::from_secs(4),
            scale_pods: 20,
            bpf_repeat: 200_000,
        }
    }

    pub fn name(&self) -> &'static str {
        if self.full {
            "full"
        } else {
            "quick"
        }
    }
}
