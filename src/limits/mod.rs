//! Turning requested limits (bits/s, bits — as Kubernetes and the CNI
//! `bandwidth` capability speak) into the dataplane's parameters: the pod
//! bucket of each direction, its layers, and the flow sketch that tells mice
//! from heavy flows (docs/dataplane.md).
//!
//! Burst sanitising (docs/limits.md): containerd asks for 4294967295 bits
//! (~512 MiB) of burst, which taken literally lets tens of seconds of traffic
//! through unshaped. natra clamps every burst into
//! `[BURST_FLOOR_BYTES, max(BURST_FLOOR_BYTES, rate x BURST_WINDOW_MS)]`.
use crate::contract::{
    NATRA_MAX_BURST_BYTES, NATRA_MAX_EDT_DEBT_BYTES, NATRA_NSEC_PER_SEC, NATRA_SKETCH_MAX_DEPTH,
};
use crate::error::{Error, ErrorKind, Result};
use crate::units;

/// The smallest rate kubelet accepts: 1 kbit/s.
pub const MIN_RATE_BITS: u64 = 1_000;
/// The largest rate kubelet accepts: 1 Pbit/s.
pub const MAX_RATE_BITS: u64 = 1_000_000_000_000_000;
/// Most time worth of traffic a burst may hold. Measured (docs/limits.md):
/// TCP through a policer recovers from a loss burst only if the bucket
/// refills for longer than Linux's 200 ms minimum RTO; at 200 ms a 20 Mbit/s
/// cap gave TCP 67% of the cap, at 500 ms 96% goodput (~100% on the wire).
pub const BURST_WINDOW_MS: u64 = 500;
/// Smallest bucket: two 64 KiB GSO packets, so that the largest packet veth
/// hands us can always conform, even with the ECN band held back.
pub const BURST_FLOOR_BYTES: u64 = 128 * 1024;
/// Largest bucket the dataplane's byte-nanosecond arithmetic holds.
pub const BURST_CEILING_BYTES: u64 = NATRA_MAX_BURST_BYTES;
/// Share of the bucket, just above the mice reserve, kept for heavy ECT
/// packets, which are CE-marked when they use it.
pub const ECN_BAND_DIVISOR: u64 = 4;
/// Share of the bucket at its bottom that only mice may use (R = burst / 4:
/// 125 ms of the rate, a few dozen short replies, while heavy non-ECT
/// traffic keeps half the bucket, 250 ms, above the 200 ms minimum RTO).
pub const MICE_RESERVE_DIVISOR: u64 = 4;
/// Sketch window: a flow's estimate is about its bytes over the last window;
/// an idle flow is forgotten within one window. Epochs are half of it. The
/// default is 1 s, stretched at low rates (below 4.2 Mbit/s) so that a
/// window holds 8 x MIN_HEAVY_THRESHOLD_BYTES: else the 64 KiB floor of the
/// threshold exceeds what a steady flow at the whole cap shows (rate x
/// window / 2 at an epoch's start) and an elephant would pass for a mouse.
pub const DEFAULT_WINDOW_MS: u64 = 1_000;
pub const MIN_WINDOW_MS: u64 = 10;
pub const MAX_WINDOW_MS: u64 = 10_000;
/// Heavy threshold: `max(MIN_HEAVY_THRESHOLD_BYTES, rate x window /
/// HEAVY_WINDOW_DIVISOR)`. A 16 KB reply is always a mouse; a flow that
/// takes an eighth of what the pod may send in a window is heavy.
pub const MIN_HEAVY_THRESHOLD_BYTES: u64 = 64 * 1024;
pub const HEAVY_WINDOW_DIVISOR: u64 = 8;
/// Sketch cells hold 40 bits of bytes; thresholds stay below their saturation.
pub const MAX_HEAVY_THRESHOLD_BYTES: u64 = 1 << 39;
/// Rows of the sketch: δ = e^-4 ≈ 1.8% per flow for an error above ε·N.
pub const DEFAULT_SKETCH_DEPTH: u32 = 4;
pub const MAX_SKETCH_DEPTH: u32 = NATRA_SKETCH_MAX_DEPTH as u32;
/// Default width: the smallest power of two with ε·N ≤ T/4 (ε = e/w,
/// N = rate x window), at least this.
pub const MIN_DEFAULT_SKETCH_WIDTH: u32 = 128;
/// Bounds of a `sketchWidth` override (a power of two).
pub const MIN_SKETCH_WIDTH: u32 = 16;
pub const MAX_SKETCH_WIDTH: u32 = 1 << 16;
/// What a default-sized sketch (both directions) may take; with the other
/// maps (< 1 KiB) the pod stays under 256 KiB of BPF map memory.
pub const SKETCH_BUDGET_BYTES: u64 = 192 * 1024;
/// EDT: longest departure delay given to a heavy packet before dropping
/// instead. Short, like TBF's 25 ms queue: the heavy queue is what mice
/// leave on top of (they pass unpaced down to -D, D = horizon x rate), so it
/// bounds how far over the cap one second can go (burst + D, docs/dataplane.md),
/// and a sender hears of congestion within a few ms by loss.
pub const DEFAULT_EDT_HORIZON_MS: u64 = 20;
/// EDT: longest departure delay given to a mouse below its floor before
/// dropping it. Shorter than TCP's 200 ms minimum RTO (a paced mouse never
/// times out for its pacing), long enough to hold a few dozen short replies
/// at once where policing dropped them into 200 ms+ retransmission timers.
pub const DEFAULT_MICE_HORIZON_MS: u64 = 180;
/// EDT: longest departure delay given to a mouse's SYN or SYN-ACK before
/// dropping it. Its sender's timer is TCP's initial RTO, 1 s (RFC 6298),
/// not the 200 ms minimum: a handshake waits past the mice horizon rather
/// than being dropped into that second.
pub const DEFAULT_HANDSHAKE_HORIZON_MS: u64 = 500;
/// EDT: the mice reserve is half the (small) burst. Mice pass unpaced down
/// to -D, i.e. R below the lowest level paced heavy packets reach (R - D):
/// R is the mice's headroom beside a full heavy queue, and costs nothing
/// on the wire bound (what leaves unpaced is B + D whatever R is).
pub const EDT_MICE_RESERVE_DIVISOR: u64 = 2;
/// EDT: a paced heavy ECT packet delayed more than this is CE-marked too,
/// so an ECN elephant backs off before it fills the heavy horizon.
pub const DEFAULT_CE_DELAY_MS: u64 = 5;
/// EDT: the burst window when a queue (fq) serves the direction. What does
/// not conform is paced, not dropped, so the bucket need not ride out a
/// retransmission timeout; a small one keeps any second within
/// ~(EDT_BURST_WINDOW_MS + DEFAULT_EDT_HORIZON_MS) ms of the cap.
pub const EDT_BURST_WINDOW_MS: u64 = 20;
/// EDT: smallest burst, a dozen full-size frames.
pub const EDT_BURST_FLOOR_BYTES: u64 = 16 * 1024;
pub const MAX_EDT_HORIZON_MS: u64 = 10_000;
/// The dataplane's cap on the EDT debt (NATRA_MAX_EDT_DEBT_BYTES).
pub const MAX_EDT_DEBT_BYTES: u64 = NATRA_MAX_EDT_DEBT_BYTES;
const NSEC_PER_SEC: u128 = NATRA_NSEC_PER_SEC as u128;
const NSEC_PER_MSEC: u64 = 1_000_000;

/// What one direction asked for, in the units of the CNI capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestedLimit {
    pub rate_bits: u64,
    pub burst_bits: u64,
}

/// The netconf's dataplane overrides (`None`: derive from the rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tuning {
    pub sketch_width: Option<u64>,
    pub sketch_depth: Option<u64>,
    pub heavy_threshold_bytes: Option<u64>,
    pub window_ms: Option<u64>,
    /// Longest EDT delay, when EDT is on (the control plane turns it on with
    /// [`BucketParams::with_edt`] once fq is known to be there).
    pub edt_horizon_ms: Option<u64>,
}

/// A direction's bucket and sketch as the dataplane runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketParams {
    pub rate_bytes_per_sec: u64,
    pub burst_bytes: u64,
    pub ecn_band_bytes: u64,
    /// Idle time that refills the bucket from its floor (0, or -debt) to full.
    pub refill_full_ns: u64,
    pub mice_reserve_bytes: u64,
    pub heavy_threshold_bytes: u64,
    /// Half the window.
    pub epoch_ns: u64,
    /// EDT pacing of heavy packets (pod egress only; see `with_edt`).
    pub edt: bool,
    /// Longest EDT delay of a heavy packet.
    pub edt_horizon_ns: u64,
    /// How far below 0 EDT may take the bucket: horizon x rate (0 without EDT).
    pub edt_debt_bytes: u64,
    /// Longest EDT delay of a mouse below its floor (0 without EDT: dropped).
    pub mice_horizon_ns: u64,
    /// How far below -edt_debt paced mice may take the level (0 without EDT).
    pub mice_debt_bytes: u64,
    /// Longest EDT delay of a mouse's SYN or SYN-ACK (0 without EDT).
    pub handshake_horizon_ns: u64,
    /// How far below -(edt_debt + mice_debt) a paced handshake may take the
    /// level: the handshake horizon's worth of the rate beyond the mice's.
    pub handshake_extra_bytes: u64,
    /// A paced heavy ECT packet delayed more than this is marked CE (0: never).
    pub ce_delay_ns: u64,
    /// The pod's sketch geometry, the same for both directions.
    pub sketch_width: u32,
    pub sketch_depth: u32,
}

impl BucketParams {
    /// Cells of one direction in the sketch map.
    pub fn sketch_cells(&self) -> u32 {
        self.sketch_width * self.sketch_depth
    }

    /// The same direction with EDT pacing on (a queue, fq, right after the
    /// program): heavy packets over the rate are paced up to the horizon,
    /// mice below their floor up to the mice horizon, which lets the bucket
    /// go into a debt of (horizon + mice horizon) x rate (so the refill runs
    /// from there). Retuned for a queue: the burst shrinks to
    /// EDT_BURST_WINDOW_MS of the rate, the mice reserve to half of it, the
    /// ECN band to a quarter. A direction without a horizon is returned
    /// unchanged. Idempotent.
    pub fn with_edt(self) -> BucketParams {
        if self.edt_horizon_ns == 0 || self.edt {
            return self;
        }
        let rate = self.rate_bytes_per_sec;
        let burst = self.burst_bytes.min(edt_burst_bytes(rate));
        let debt = edt_debt_bytes(rate, self.edt_horizon_ns);
        let mice_debt = edt_debt_bytes(rate, self.mice_horizon_ns)
            .min(MAX_EDT_DEBT_BYTES - debt.min(MAX_EDT_DEBT_BYTES));
        let handshake_extra = edt_debt_bytes(rate, self.handshake_horizon_ns)
            .min(MAX_EDT_DEBT_BYTES - debt.min(MAX_EDT_DEBT_BYTES))
            .saturating_sub(mice_debt);
        BucketParams {
            edt: true,
            burst_bytes: burst,
            ecn_band_bytes: burst / ECN_BAND_DIVISOR,
            mice_reserve_bytes: burst / EDT_MICE_RESERVE_DIVISOR,
            edt_debt_bytes: debt,
            mice_debt_bytes: mice_debt,
            handshake_extra_bytes: handshake_extra,
            ce_delay_ns: DEFAULT_CE_DELAY_MS * NSEC_PER_MSEC,
            refill_full_ns: refill_full_ns(burst + debt + mice_debt + handshake_extra, rate),
            ..self
        }
    }

    /// The longest delay EDT may stamp on a packet of this direction (heavy
    /// or mouse): what the fq after the program must take as it is.
    pub fn longest_edt_delay_ns(&self) -> u64 {
        let e = self.with_edt();
        e.edt_horizon_ns
            .max(e.mice_horizon_ns)
            .max(e.handshake_horizon_ns)
    }

    /// Bytes EDT may have charged ahead of the wire (paced, not yet gone):
    /// what an fq after the program must hold without dropping.
    pub fn edt_queue_bytes(&self) -> u64 {
        self.edt_debt_bytes + self.mice_debt_bytes + self.handshake_extra_bytes + self.burst_bytes
    }
}

/// Limits of both directions of one Pod interface; `None` = not limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PodLimits {
    pub pod_ingress: Option<BucketParams>,
    pub pod_egress: Option<BucketParams>,
}

impl PodLimits {
    pub fn is_unlimited(&self) -> bool {
        self.pod_ingress.is_none() && self.pod_egress.is_none()
    }

    /// The limits as written to the config map of a load with EDT `edt`
    /// on pod egress (and on pod ingress with [`PodLimits::with_edt_dirs`]).
    pub fn with_edt(self, edt: bool) -> PodLimits {
        self.with_edt_dirs(false, edt)
    }

    /// EDT per direction: each paced direction gets [`BucketParams::with_edt`].
    pub fn with_edt_dirs(self, ingress: bool, egress: bool) -> PodLimits {
        let pick =
            |p: Option<BucketParams>, on: bool| if on { p.map(BucketParams::with_edt) } else { p };
        PodLimits {
            pod_ingress: pick(self.pod_ingress, ingress),
            pod_egress: pick(self.pod_egress, egress),
        }
    }

    /// (width, depth) of the pod's sketch, if any direction is limited.
    pub fn sketch_geometry(&self) -> Option<(u32, u32)> {
        self.pod_ingress
            .or(self.pod_egress)
            .map(|p| (p.sketch_width, p.sketch_depth))
    }
}

impl std::fmt::Display for BucketParams {
    /// In the operator's units: `20 Mbit/s, burst 1.25 MB, heavy above
    /// 312.5 kB, sketch 4x128[, EDT within 250 ms]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, burst {}, heavy above {}, sketch {}x{}",
            units::rate(self.rate_bytes_per_sec),
            units::bytes(self.burst_bytes),
            units::bytes(self.heavy_threshold_bytes),
            self.sketch_depth,
            self.sketch_width
        )?;
        if self.edt {
            write!(
                f,
                ", EDT within {} (mice {})",
                units::millis(self.edt_horizon_ns),
                units::millis(self.mice_horizon_ns)
            )?;
        }
        Ok(())
    }
}

impl std::fmt::Display for PodLimits {
    /// `pod ingress <params>; pod egress not limited`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, params)) in [
            ("pod ingress", self.pod_ingress),
            ("pod egress", self.pod_egress),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                f.write_str("; ")?;
            }
            match params {
                Some(p) => write!(f, "{name} {p}")?,
                None => write!(f, "{name} not limited")?,
            }
        }
        Ok(())
    }
}

fn invalid(msg: String) -> Error {
    Error::new(ErrorKind::InvalidConfig, msg)
}

/// Both directions with the netconf's tuning; EDT off (see
/// [`BucketParams::with_edt`]), with pod egress carrying its horizon.
pub fn pod_limits(
    ingress: RequestedLimit,
    egress: RequestedLimit,
    t: &Tuning,
) -> Result<PodLimits> {
    validate_tuning(t)?;
    let mut ingress = direction_params("ingress", ingress, t, true)?;
    let mut egress = direction_params("egress", egress, t, true)?;
    // One sketch map for both directions: the wider need wins.
    let width = ingress
        .iter()
        .chain(egress.iter())
        .map(|p| p.sketch_width)
        .max();
    if let Some(width) = width {
        for p in ingress.iter_mut().chain(egress.iter_mut()) {
            p.sketch_width = width;
        }
    }
    Ok(PodLimits {
        pod_ingress: ingress,
        pod_egress: egress,
    })
}

/// Validates one direction with the default tuning; `field` names it in
/// errors. Rate 0 = unlimited.
pub fn bucket_params(field: &str, req: RequestedLimit) -> Result<Option<BucketParams>> {
    direction_params(field, req, &Tuning::default(), false)
}

fn validate_tuning(t: &Tuning) -> Result<()> {
    if let Some(w) = t.sketch_width {
        if !(u64::from(MIN_SKETCH_WIDTH)..=u64::from(MAX_SKETCH_WIDTH)).contains(&w)
            || !w.is_power_of_two()
        {
            return Err(invalid(format!(
                "sketchWidth {w} is not a power of two in {MIN_SKETCH_WIDTH}..={MAX_SKETCH_WIDTH}"
            )));
        }
    }
    if let Some(d) = t.sketch_depth {
        if !(1..=u64::from(MAX_SKETCH_DEPTH)).contains(&d) {
            return Err(invalid(format!(
                "sketchDepth {d} is outside 1..={MAX_SKETCH_DEPTH}"
            )));
        }
    }
    if let Some(b) = t.heavy_threshold_bytes {
        if !(1..=MAX_HEAVY_THRESHOLD_BYTES).contains(&b) {
            return Err(invalid(format!(
                "heavyThresholdBytes {b} is outside 1..={MAX_HEAVY_THRESHOLD_BYTES}"
            )));
        }
    }
    if let Some(ms) = t.window_ms {
        if !(MIN_WINDOW_MS..=MAX_WINDOW_MS).contains(&ms) {
            return Err(invalid(format!(
                "windowMs {ms} is outside {MIN_WINDOW_MS}..={MAX_WINDOW_MS}"
            )));
        }
    }
    if let Some(ms) = t.edt_horizon_ms {
        if !(1..=MAX_EDT_HORIZON_MS).contains(&ms) {
            return Err(invalid(format!(
                "edtHorizonMs {ms} is outside 1..={MAX_EDT_HORIZON_MS}"
            )));
        }
    }
    Ok(())
}

fn direction_params(
    field: &str,
    req: RequestedLimit,
    t: &Tuning,
    pacable: bool,
) -> Result<Option<BucketParams>> {
    if req.rate_bits == 0 {
        return Ok(None);
    }
    if !(MIN_RATE_BITS..=MAX_RATE_BITS).contains(&req.rate_bits) {
        return Err(invalid(format!(
            "{field}Rate {} bit/s is outside {MIN_RATE_BITS}..={MAX_RATE_BITS}",
            req.rate_bits
        )));
    }
    let rate = req.rate_bits / 8;
    let burst = sanitise_burst(req.burst_bits / 8, rate);
    let window_ms = t.window_ms.unwrap_or_else(|| default_window_ms(rate));
    let threshold = t
        .heavy_threshold_bytes
        .unwrap_or_else(|| default_heavy_threshold(rate, window_ms));
    let depth = t.sketch_depth.map_or(DEFAULT_SKETCH_DEPTH, |d| d as u32);
    let width = t.sketch_width.map_or_else(
        || default_sketch_width(rate, window_ms, threshold, depth),
        |w| w as u32,
    );
    let (edt_horizon_ns, mice_horizon_ns, handshake_horizon_ns) = if pacable {
        (
            t.edt_horizon_ms.unwrap_or(DEFAULT_EDT_HORIZON_MS) * NSEC_PER_MSEC,
            DEFAULT_MICE_HORIZON_MS * NSEC_PER_MSEC,
            DEFAULT_HANDSHAKE_HORIZON_MS * NSEC_PER_MSEC,
        )
    } else {
        (0, 0, 0)
    };
    Ok(Some(BucketParams {
        rate_bytes_per_sec: rate,
        burst_bytes: burst,
        ecn_band_bytes: burst / ECN_BAND_DIVISOR,
        refill_full_ns: refill_full_ns(burst, rate),
        mice_reserve_bytes: burst / MICE_RESERVE_DIVISOR,
        heavy_threshold_bytes: threshold,
        epoch_ns: window_ms * NSEC_PER_MSEC / 2,
        edt: false,
        edt_horizon_ns,
        edt_debt_bytes: 0,
        mice_horizon_ns,
        mice_debt_bytes: 0,
        handshake_horizon_ns,
        handshake_extra_bytes: 0,
        ce_delay_ns: 0,
        sketch_width: width,
        sketch_depth: depth,
    }))
}

/// Clamps a requested burst (0 = none requested: take the window) into
/// `[floor, max(floor, rate x window)]`, and never past the ceiling.
pub fn sanitise_burst(requested_bytes: u64, rate_bytes_per_sec: u64) -> u64 {
    let window = rate_bytes_per_sec.saturating_mul(BURST_WINDOW_MS) / 1000;
    let upper = window.clamp(BURST_FLOOR_BYTES, BURST_CEILING_BYTES);
    if requested_bytes == 0 {
        return upper;
    }
    requested_bytes.clamp(BURST_FLOOR_BYTES, upper)
}

/// 1 s, or long enough for 8 x 64 KiB at `rate`, at most MAX_WINDOW_MS.
pub fn default_window_ms(rate_bytes_per_sec: u64) -> u64 {
    (HEAVY_WINDOW_DIVISOR * MIN_HEAVY_THRESHOLD_BYTES * 1000)
        .div_ceil(rate_bytes_per_sec)
        .clamp(DEFAULT_WINDOW_MS, MAX_WINDOW_MS)
}

/// Bytes a direction may send in one window: N = rate x window.
pub fn window_bytes(rate_bytes_per_sec: u64, window_ms: u64) -> u64 {
    u64::try_from(rate_bytes_per_sec as u128 * window_ms as u128 / 1000).unwrap_or(u64::MAX)
}

/// T = max(64 KiB, N / 8), below the cells' saturation.
pub fn default_heavy_threshold(rate_bytes_per_sec: u64, window_ms: u64) -> u64 {
    (window_bytes(rate_bytes_per_sec, window_ms) / HEAVY_WINDOW_DIVISOR)
        .clamp(MIN_HEAVY_THRESHOLD_BYTES, MAX_HEAVY_THRESHOLD_BYTES)
}

/// The smallest power of two w >= 128 with e/w x N <= T/4, i.e.
/// w >= 4eN/T, capped so that both directions' cells fit the budget.
pub fn default_sketch_width(rate: u64, window_ms: u64, threshold: u64, depth: u32) -> u32 {
    let n = window_bytes(rate, window_ms) as f64;
    let need = (4.0 * std::f64::consts::E * n / threshold as f64).ceil();
    let need = if need >= f64::from(MAX_SKETCH_WIDTH) {
        MAX_SKETCH_WIDTH
    } else {
        (need as u32).max(1).next_power_of_two()
    };
    let budget_cells = SKETCH_BUDGET_BYTES / (2 * 8 * u64::from(depth));
    let cap = 1u32 << (63 - budget_cells.max(1).leading_zeros());
    need.max(MIN_DEFAULT_SKETCH_WIDTH)
        .min(cap.max(MIN_SKETCH_WIDTH))
}

/// The burst with EDT on: EDT_BURST_WINDOW_MS of the rate, at least the floor.
pub fn edt_burst_bytes(rate_bytes_per_sec: u64) -> u64 {
    (rate_bytes_per_sec.saturating_mul(EDT_BURST_WINDOW_MS) / 1000)
        .clamp(EDT_BURST_FLOOR_BYTES, BURST_CEILING_BYTES)
}

/// D = horizon x rate, at most the dataplane's cap.
fn edt_debt_bytes(rate: u64, horizon_ns: u64) -> u64 {
    let d = rate as u128 * horizon_ns as u128 / NSEC_PER_SEC;
    u64::try_from(d).unwrap_or(u64::MAX).min(MAX_EDT_DEBT_BYTES)
}

/// Idle time after which an empty bucket is full again, rounded up.
fn refill_full_ns(bytes: u64, rate_bytes_per_sec: u64) -> u64 {
    let ns = (bytes as u128 * NSEC_PER_SEC).div_ceil(rate_bytes_per_sec as u128);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
