//! The dataplane under test: loading the skeleton, configuring a direction,
//! freezing its bucket and sketch, running a packet through a program.
use std::os::fd::AsFd;

use libbpf_rs::{MapCore, MapFlags, ProgramInput, ProgramMut};
use natra::dataplane::maps::{read_bucket, write_bucket, write_config};
use natra::dataplane::skeleton::types::natra_bucket_state;
use natra::dataplane::skeleton::NatraSkel;
use natra::dataplane::Direction;
use natra::dataplane::Placement;
use natra::limits::{bucket_params, pod_limits, BucketParams, RequestedLimit, Tuning};

use crate::common;

pub const NSEC_PER_SEC: u64 = 1_000_000_000;
/// What the programs return for a packet they let through: TC_ACT_UNSPEC
/// (TCX_NEXT), -1, as the u32 BPF_PROG_RUN reports.
pub const RET_PASS: u32 = -1i32 as u32;
/// TC_ACT_SHOT.
pub const RET_DROP: u32 = 2;

/// 100 Mbit/s: a bucket of several MB, so a band of well over one packet.
pub const RATE_BITS: u64 = 100_000_000;

/// Every test's start: root, and the programs loaded into the kernel.
pub fn loaded() -> NatraSkel<'static> {
    common::require_root();
    common::skel::loaded()
}

pub fn prog<'a>(skel: &'a NatraSkel<'_>, dir: Direction) -> &'a ProgramMut<'a> {
    match dir {
        Direction::PodIngress => &skel.progs.pod_ingress,
        Direction::PodEgress => &skel.progs.pod_egress,
    }
}

pub fn params(rate_bits: u64) -> BucketParams {
    bucket_params(
        "test",
        RequestedLimit {
            rate_bits,
            burst_bits: 0,
        },
    )
    .expect("valid rate")
    .expect("limited")
}

pub fn configure(skel: &NatraSkel<'_>, dir: Direction, rate_bits: u64) -> BucketParams {
    let p = params(rate_bits);
    write_config(skel.maps.natra_cfg.as_fd(), dir, &p, &Placement::default())
        .expect("write config");
    p
}

/// The direction at `rate_bits` as a Pod gets it with EDT on (its
/// horizons and debts, `with_edt`), written to the config map.
pub fn configure_edt(skel: &NatraSkel<'_>, dir: Direction, rate_bits: u64) -> BucketParams {
    let req = RequestedLimit {
        rate_bits,
        burst_bits: 0,
    };
    let limits = pod_limits(req, req, &Tuning::default()).expect("valid rate");
    let p = dir.limit(&limits).expect("limited").with_edt();
    write_config(skel.maps.natra_cfg.as_fd(), dir, &p, &Placement::default())
        .expect("write config");
    p
}

/// The epoch frozen tests run in (any value works; not 0, to catch a cell
/// compared with the wrong epoch).
pub const FROZEN_EPOCH: u32 = 100;

/// Writes the direction's bucket state.
pub fn set_state(skel: &NatraSkel<'_>, dir: Direction, st: &natra_bucket_state) {
    write_bucket(skel.maps.natra_bucket.as_fd(), dir.index(), st).expect("write the bucket map");
}

/// The direction's whole bucket state.
pub fn state(skel: &NatraSkel<'_>, dir: Direction) -> natra_bucket_state {
    read_bucket(skel.maps.natra_bucket.as_fd(), dir.index()).expect("read the bucket map")
}

/// A bucket whose level no clock reading will refill, in an epoch that no
/// clock reading will advance.
pub fn freeze_bucket(skel: &NatraSkel<'_>, dir: Direction, level: i64) {
    set_state(
        skel,
        dir,
        &natra_bucket_state {
            level,
            last_ns: u64::MAX,
            epoch: FROZEN_EPOCH,
            epoch_start_ns: u64::MAX,
            ..Default::default()
        },
    );
}

/// (level, last_ns) of the direction's bucket.
pub fn bucket(skel: &NatraSkel<'_>, dir: Direction) -> (i64, u64) {
    let st = state(skel, dir);
    (st.level, st.last_ns)
}

// ---------------------------------------------------------------------------
// the sketch

/// A sketch cell: (epoch << 40) | bytes.
pub fn cell(epoch: u32, bytes: u64) -> u64 {
    (u64::from(epoch) << 40) | bytes
}

/// Indices of the direction's cells (configured with `p`'s geometry).
pub fn dir_cells(dir: Direction, p: &BucketParams) -> std::ops::Range<u32> {
    let n = p.sketch_cells();
    dir.index() * n..(dir.index() + 1) * n
}

pub fn read_cell(skel: &NatraSkel<'_>, idx: u32) -> u64 {
    let v = skel
        .maps
        .natra_sketch
        .lookup(&idx.to_ne_bytes(), MapFlags::ANY)
        .expect("read the sketch map")
        .expect("array maps always have the entry");
    u64::from_ne_bytes(v[..8].try_into().unwrap())
}

pub fn write_cell(skel: &NatraSkel<'_>, idx: u32, value: u64) {
    skel.maps
        .natra_sketch
        .update(&idx.to_ne_bytes(), &value.to_ne_bytes(), MapFlags::ANY)
        .expect("write the sketch map");
}

pub fn fill_cells(skel: &NatraSkel<'_>, dir: Direction, p: &BucketParams, value: u64) {
    for idx in dir_cells(dir, p) {
        write_cell(skel, idx, value);
    }
}

/// Every flow of `dir` heavy: all its cells far above any threshold, in the
/// frozen epoch.
pub fn make_heavy(skel: &NatraSkel<'_>, dir: Direction, p: &BucketParams) {
    fill_cells(skel, dir, p, cell(FROZEN_EPOCH, 1 << 39));
}

/// The (index, value) of the direction's non-zero cells.
pub fn nonzero_cells(skel: &NatraSkel<'_>, dir: Direction, p: &BucketParams) -> Vec<(u32, u64)> {
    dir_cells(dir, p)
        .map(|i| (i, read_cell(skel, i)))
        .filter(|&(_, v)| v != 0)
        .collect()
}

/// Which cells `pkt`'s flow maps to: one packet through a clean sketch and
/// a full, frozen bucket; the cells it raised (one per row, sorted).
pub fn flow_cells(skel: &NatraSkel<'_>, dir: Direction, p: &BucketParams, pkt: &[u8]) -> Vec<u32> {
    fill_cells(skel, dir, p, 0);
    freeze_bucket(skel, dir, full(p));
    let r = run(skel, dir, pkt);
    assert_eq!(
        r.retval, RET_PASS,
        "flow_cells: the probe packet was dropped"
    );
    let cells: Vec<u32> = nonzero_cells(skel, dir, p).iter().map(|c| c.0).collect();
    assert_eq!(
        cells.len(),
        p.sketch_depth as usize,
        "a flow raises one cell per row (two rows sharing an index would be a bug)"
    );
    fill_cells(skel, dir, p, 0);
    cells
}

pub fn full(p: &BucketParams) -> i64 {
    (p.burst_bytes * NSEC_PER_SEC) as i64
}

pub fn reserve(p: &BucketParams) -> i64 {
    (p.mice_reserve_bytes * NSEC_PER_SEC) as i64
}

pub fn band(p: &BucketParams) -> i64 {
    (p.ecn_band_bytes * NSEC_PER_SEC) as i64
}

pub fn clock_ns(id: nix::time::ClockId) -> u64 {
    let t = nix::time::clock_gettime(id).expect("clock_gettime");
    t.tv_sec() as u64 * NSEC_PER_SEC + t.tv_nsec() as u64
}

pub fn monotonic_ns() -> u64 {
    clock_ns(nix::time::ClockId::CLOCK_MONOTONIC)
}

/// One jiffy: the resolution of CLOCK_MONOTONIC_COARSE.
pub fn jiffy_ns() -> u64 {
    let t =
        nix::time::clock_getres(nix::time::ClockId::CLOCK_MONOTONIC_COARSE).expect("clock_getres");
    t.tv_sec() as u64 * NSEC_PER_SEC + t.tv_nsec() as u64
}

/// The program's clock: bpf_ktime_get_coarse_ns() is CLOCK_MONOTONIC_COARSE
/// (the monotonic time of the last tick).
pub fn coarse_ns() -> u64 {
    clock_ns(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
}

/// The program's verdict and the packet as it leaves the program.
pub struct Run {
    pub retval: u32,
    pub data: Vec<u8>,
}

pub fn run_ctx(
    skel: &NatraSkel<'_>,
    dir: Direction,
    pkt: &[u8],
    ctx: Option<&mut [u8]>,
) -> libbpf_rs::Result<Run> {
    let mut out = vec![0u8; pkt.len() + 256];
    let output = prog(skel, dir).test_run(ProgramInput {
        data_in: Some(pkt),
        data_out: Some(&mut out),
        context_in: ctx,
        repeat: 1,
        ..Default::default()
    })?;
    let retval = output.return_value;
    let data = output.data.expect("data_out was given").to_vec();
    Ok(Run { retval, data })
}

pub fn run(skel: &NatraSkel<'_>, dir: Direction, pkt: &[u8]) -> Run {
    run_ctx(skel, dir, pkt, None).expect("BPF_PROG_RUN")
}

/// A `struct __sk_buff` context (UAPI layout, 192 bytes) asking for a GSO
/// packet of `segs` segments of `size` bytes; every other field 0, as the
/// kernel demands of BPF_PROG_RUN contexts.
pub fn gso_ctx(segs: u32, size: u32) -> Vec<u8> {
    const SKB_SIZE: usize = 192;
    const GSO_SEGS: usize = 164;
    const GSO_SIZE: usize = 176;
    let mut ctx = vec![0u8; SKB_SIZE];
    ctx[GSO_SEGS..GSO_SEGS + 4].copy_from_slice(&segs.to_ne_bytes());
    ctx[GSO_SIZE..GSO_SIZE + 4].copy_from_slice(&size.to_ne_bytes());
    ctx
}

/// `pkt` run as a GSO packet of `segs` segments of `size` bytes.
pub fn run_gso(skel: &NatraSkel<'_>, dir: Direction, pkt: &[u8], segs: u32, size: u32) -> Run {
    let mut ctx = gso_ctx(segs, size);
    run_ctx(skel, dir, pkt, Some(&mut ctx)).expect("BPF_PROG_RUN with gso ctx")
}

pub fn byte_ns(bytes: usize) -> i64 {
    (bytes as u64 * NSEC_PER_SEC) as i64
}

pub fn other(dir: Direction) -> Direction {
    match dir {
        Direction::PodIngress => Direction::PodEgress,
        Direction::PodEgress => Direction::PodIngress,
    }
}

pub fn uptime_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/uptime").expect("read /proc/uptime");
    let secs: f64 = s.split_whitespace().next().unwrap().parse().unwrap();
    (secs * 1e9) as u64
}
