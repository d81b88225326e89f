//! natra_counters as the tests compare them, and what one run changed.
use std::ops::Sub;
use std::os::fd::AsFd;

use natra::dataplane::maps::read_counters;
use natra::dataplane::skeleton::types::natra_counters;
use natra::dataplane::skeleton::NatraSkel;
use natra::dataplane::Direction;

/// natra_counters, comparable.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub passed_packets: u64,
    pub passed_bytes: u64,
    pub passed_mouse_packets: u64,
    pub passed_mouse_bytes: u64,
    pub passed_heavy_packets: u64,
    pub passed_heavy_bytes: u64,
    pub paced_packets: u64,
    pub paced_bytes: u64,
    pub ce_marked_packets: u64,
    pub ce_marked_bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    pub malformed_packets: u64,
    pub non_ip_packets: u64,
    pub paced_mouse_packets: u64,
    pub paced_mouse_bytes: u64,
}

impl From<natra_counters> for Counters {
    fn from(c: natra_counters) -> Self {
        Counters {
            passed_packets: c.passed_packets,
            passed_bytes: c.passed_bytes,
            passed_mouse_packets: c.passed_mouse_packets,
            passed_mouse_bytes: c.passed_mouse_bytes,
            passed_heavy_packets: c.passed_heavy_packets,
            passed_heavy_bytes: c.passed_heavy_bytes,
            paced_packets: c.paced_packets,
            paced_bytes: c.paced_bytes,
            ce_marked_packets: c.ce_marked_packets,
            ce_marked_bytes: c.ce_marked_bytes,
            dropped_packets: c.dropped_packets,
            dropped_bytes: c.dropped_bytes,
            malformed_packets: c.malformed_packets,
            non_ip_packets: c.non_ip_packets,
            paced_mouse_packets: c.paced_mouse_packets,
            paced_mouse_bytes: c.paced_mouse_bytes,
        }
    }
}

/// `after - before`, field by field. Counters only grow; a field that
/// shrank wraps to a huge delta, which no expected count matches.
impl Sub for Counters {
    type Output = Counters;

    fn sub(self, before: Counters) -> Counters {
        let d = |after: u64, before: u64| after.wrapping_sub(before);
        Counters {
            passed_packets: d(self.passed_packets, before.passed_packets),
            passed_bytes: d(self.passed_bytes, before.passed_bytes),
            passed_mouse_packets: d(self.passed_mouse_packets, before.passed_mouse_packets),
            passed_mouse_bytes: d(self.passed_mouse_bytes, before.passed_mouse_bytes),
            passed_heavy_packets: d(self.passed_heavy_packets, before.passed_heavy_packets),
            passed_heavy_bytes: d(self.passed_heavy_bytes, before.passed_heavy_bytes),
            paced_packets: d(self.paced_packets, before.paced_packets),
            paced_bytes: d(self.paced_bytes, before.paced_bytes),
            ce_marked_packets: d(self.ce_marked_packets, before.ce_marked_packets),
            ce_marked_bytes: d(self.ce_marked_bytes, before.ce_marked_bytes),
            dropped_packets: d(self.dropped_packets, before.dropped_packets),
            dropped_bytes: d(self.dropped_bytes, before.dropped_bytes),
            malformed_packets: d(self.malformed_packets, before.malformed_packets),
            non_ip_packets: d(self.non_ip_packets, before.non_ip_packets),
            paced_mouse_packets: d(self.paced_mouse_packets, before.paced_mouse_packets),
            paced_mouse_bytes: d(self.paced_mouse_bytes, before.paced_mouse_bytes),
        }
    }
}

/// The direction's counters, summed over CPUs.
pub fn counters(skel: &NatraSkel<'_>, dir: Direction) -> Counters {
    read_counters(skel.maps.natra_stats.as_fd(), dir.index())
        .expect("read counters")
        .into()
}

/// Runs `f` and returns what it returned with what it changed in the
/// direction's counters (per field: after - before).
pub fn counted<T>(skel: &NatraSkel<'_>, dir: Direction, f: impl FnOnce() -> T) -> (T, Counters) {
    let before = counters(skel, dir);
    let out = f();
    (out, counters(skel, dir) - before)
}
