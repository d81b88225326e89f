//! Reading and writing natra's maps by fd, in the skeleton's generated types.
use std::os::fd::BorrowedFd;

use super::direction::Direction;
use super::placement::Placement;
use super::skeleton::types::{
    natra_bucket_state, natra_config, natra_config_flags, natra_counters, natra_direction,
};
use super::sys;
use crate::error::Result;
use crate::limits::BucketParams;

pub fn config_for(dir: Direction, p: &BucketParams, place: &Placement) -> natra_config {
    natra_config {
        direction: natra_direction(dir.index()),
        flags: if p.edt {
            natra_config_flags::NATRA_CFG_EDT
        } else {
            natra_config_flags(0)
        },
        rate_bytes_per_sec: p.rate_bytes_per_sec,
        burst_bytes: p.burst_bytes,
        ecn_band_bytes: p.ecn_band_bytes,
        refill_full_ns: p.refill_full_ns,
        mice_reserve_bytes: p.mice_reserve_bytes,
        edt_debt_bytes: p.edt_debt_bytes,
        edt_horizon_ns: p.edt_horizon_ns,
        heavy_threshold_bytes: p.heavy_threshold_bytes,
        epoch_ns: p.epoch_ns,
        sketch_depth: p.sketch_depth,
        sketch_width: p.sketch_width,
        sketch_shift: 64 - p.sketch_width.trailing_zeros(),
        sketch_base: place.sketch_base(dir, p.sketch_cells()),
        generation: place.generation,
        reserved: 0,
        mice_debt_bytes: p.mice_debt_bytes,
        mice_horizon_ns: p.mice_horizon_ns,
        ce_delay_ns: p.ce_delay_ns,
        handshake_extra_bytes: p.handshake_extra_bytes,
        handshake_horizon_ns: p.handshake_horizon_ns,
    }
}

/// Entries of the sketch map for a pod whose directions use `p`'s geometry.
pub fn sketch_entries(p: &BucketParams) -> u32 {
    2 * p.sketch_cells()
}

/// Linear-counting estimate of the distinct heavy flows behind a bitmap of
/// 64 hash buckets (`heavy_seen | heavy_seen_prev` of the bucket state).
pub fn heavy_flows_estimate(bitmap: u64) -> f64 {
    let zeros = f64::from(bitmap.count_zeros());
    if zeros == 0.0 {
        // saturated: at least this many
        return 64.0 * (64f64).ln();
    }
    -64.0 * (zeros / 64.0).ln()
}

pub fn write_config(
    map: BorrowedFd<'_>,
    dir: Direction,
    p: &BucketParams,
    place: &Placement,
) -> Result<()> {
    write_config_raw(map, place.key(dir), &config_for(dir, p, place))
}

/// Writes the config at `key` as given (live changes keep the sketch's
/// geometry from the load).
pub fn write_config_raw(map: BorrowedFd<'_>, key: u32, c: &natra_config) -> Result<()> {
    sys::update(map, &key, c, "cannot write the config map")
}

/// Starts a direction's bucket full as of `now_ns` (CLOCK_MONOTONIC_COARSE,
/// the program's clock), instead of relying on the first packet's refill, which
/// is short on a freshly booted host at low rates.
pub fn write_bucket_full(
    map: BorrowedFd<'_>,
    key: u32,
    p: &BucketParams,
    now_ns: u64,
) -> Result<()> {
    let state = natra_bucket_state {
        level: (p.burst_bytes * 1_000_000_000) as i64,
        last_ns: now_ns,
        epoch_start_ns: now_ns,
        ..Default::default()
    };
    write_bucket(map, key, &state)
}

/// Writes the whole bucket state at `key`.
pub fn write_bucket(map: BorrowedFd<'_>, key: u32, state: &natra_bucket_state) -> Result<()> {
    sys::update(map, &key, state, "cannot write the bucket map")
}

/// Reads the whole bucket state at `key`.
pub fn read_bucket(map: BorrowedFd<'_>, key: u32) -> Result<natra_bucket_state> {
    sys::lookup(map, &key, "cannot read the bucket map")
}

pub fn read_config(map: BorrowedFd<'_>, key: u32) -> Result<natra_config> {
    sys::lookup(map, &key, "cannot read the config map")
}

/// Zeroes the counters at `key` on every CPU (a slot given to a new Pod).
pub fn zero_counters(map: BorrowedFd<'_>, key: u32) -> Result<()> {
    let cpus = libbpf_rs::num_possible_cpus().unwrap_or(1);
    let zeros = vec![natra_counters::default(); cpus];
    sys::update_per_cpu(map, &key, &zeros, "cannot zero the counters map")
}

/// The counters at `key` summed over every possible CPU.
pub fn read_counters(map: BorrowedFd<'_>, key: u32) -> Result<natra_counters> {
    let per_cpu: Vec<natra_counters> =
        sys::lookup_per_cpu(map, &key, "cannot read the counters map")?;
    Ok(per_cpu
        .iter()
        .fold(natra_counters::default(), |mut sum, c| {
            sum.passed_packets += c.passed_packets;
            sum.passed_bytes += c.passed_bytes;
            sum.passed_mouse_packets += c.passed_mouse_packets;
            sum.passed_mouse_bytes += c.passed_mouse_bytes;
            sum.passed_heavy_packets += c.passed_heavy_packets;
            sum.passed_heavy_bytes += c.passed_heavy_bytes;
            sum.paced_packets += c.paced_packets;
            sum.paced_bytes += c.paced_bytes;
            sum.ce_marked_packets += c.ce_marked_packets;
            sum.ce_marked_bytes += c.ce_marked_bytes;
            sum.dropped_packets += c.dropped_packets;
            sum.dropped_bytes += c.dropped_bytes;
            sum.malformed_packets += c.malformed_packets;
            sum.non_ip_packets += c.non_ip_packets;
            sum.paced_mouse_packets += c.paced_mouse_packets;
            sum.paced_mouse_bytes += c.paced_mouse_bytes;
            sum
        }))
}
