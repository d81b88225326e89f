//! Reading and writing natra's maps by fd, in the skeleton's generated types.
use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::skeleton::types::{
    natra_bucket_state, natra_config, natra_config_flags, natra_counters, natra_direction,
};
use super::Direction;
use crate::error::{Error, ErrorKind, Result};
use crate::limits::BucketParams;

pub fn config_for(dir: Direction, p: &BucketParams) -> natra_config {
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
        sketch_base: dir.index() * p.sketch_cells(),
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

pub fn write_config(map: BorrowedFd<'_>, dir: Direction, p: &BucketParams) -> Result<()> {
    let key = dir.index();
    let value = config_for(dir, p);
    // SAFETY: key and value are live, properly sized values of the map's key
    // (u32) and value (struct natra_config) types; the kernel copies them.
    let rc = unsafe {
        libbpf_sys::bpf_map_update_elem(
            map.as_raw_fd(),
            (&key as *const u32).cast::<c_void>(),
            (&value as *const natra_config).cast::<c_void>(),
            libbpf_sys::BPF_ANY as u64,
        )
    };
    check(rc, "cannot write the config map")
}

/// Starts a direction's bucket full as of `now_ns` (CLOCK_MONOTONIC_COARSE,
/// the program's clock), instead of relying on the first packet's refill, which
/// is short on a freshly booted host at low rates.
pub fn write_bucket_full(
    map: BorrowedFd<'_>,
    dir: Direction,
    p: &BucketParams,
    now_ns: u64,
) -> Result<()> {
    let state = natra_bucket_state {
        level: (p.burst_bytes * 1_000_000_000) as i64,
        last_ns: now_ns,
        epoch_start_ns: now_ns,
        ..Default::default()
    };
    write_bucket(map, dir, &state)
}

/// Writes a direction's whole bucket state.
pub fn write_bucket(map: BorrowedFd<'_>, dir: Direction, state: &natra_bucket_state) -> Result<()> {
    let key = dir.index();
    // SAFETY: key and state are live values of the map's key (u32) and value
    // (struct natra_bucket_state) types; the kernel copies them.
    let rc = unsafe {
        libbpf_sys::bpf_map_update_elem(
            map.as_raw_fd(),
            (&key as *const u32).cast::<c_void>(),
            (state as *const natra_bucket_state).cast::<c_void>(),
            libbpf_sys::BPF_ANY as u64,
        )
    };
    check(rc, "cannot write the bucket map")
}

/// Reads a direction's whole bucket state.
pub fn read_bucket(map: BorrowedFd<'_>, dir: Direction) -> Result<natra_bucket_state> {
    let key = dir.index();
    let mut state = natra_bucket_state::default();
    // SAFETY: state is a writable natra_bucket_state, the map's value type;
    // the kernel writes exactly value_size bytes into it.
    let rc = unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            map.as_raw_fd(),
            (&key as *const u32).cast::<c_void>(),
            (&mut state as *mut natra_bucket_state).cast::<c_void>(),
        )
    };
    check(rc, "cannot read the bucket map")?;
    Ok(state)
}

pub fn read_config(map: BorrowedFd<'_>, dir: Direction) -> Result<natra_config> {
    let key = dir.index();
    let mut value = natra_config::default();
    // SAFETY: value is a writable natra_config, the map's value type; the
    // kernel writes exactly value_size bytes into it.
    let rc = unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            map.as_raw_fd(),
            (&key as *const u32).cast::<c_void>(),
            (&mut value as *mut natra_config).cast::<c_void>(),
        )
    };
    check(rc, "cannot read the config map")?;
    Ok(value)
}

/// The direction's counters summed over every possible CPU.
pub fn read_counters(map: BorrowedFd<'_>, dir: Direction) -> Result<natra_counters> {
    let key = dir.index();
    // SAFETY: plain query of a libbpf global; no pointers involved.
    let cpus = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
    let cpus = usize::try_from(cpus).map_err(|_| {
        Error::new(ErrorKind::Dataplane, "cannot count possible CPUs")
            .with_details(io::Error::from_raw_os_error(-cpus))
    })?;
    // natra_counters is all u64, so its size is already the 8-byte multiple
    // the kernel lays per-CPU values out in.
    let mut per_cpu = vec![natra_counters::default(); cpus];
    // SAFETY: per_cpu holds one natra_counters per possible CPU, the buffer
    // size a per-CPU lookup writes.
    let rc = unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            map.as_raw_fd(),
            (&key as *const u32).cast::<c_void>(),
            per_cpu.as_mut_ptr().cast::<c_void>(),
        )
    };
    check(rc, "cannot read the counters map")?;
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
            sum
        }))
}

fn check(rc: i32, msg: &str) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Dataplane, msg).with_details(io::Error::last_os_error()))
    }
}
