//! Turning requested limits (bits/s, bits — as Kubernetes and the CNI
//! `bandwidth` capability speak) into the dataplane's byte-based bucket.
//!
//! Burst sanitising (docs/limits.md): containerd asks for 4294967295 bits
//! (~512 MiB) of burst, which taken literally lets tens of seconds of traffic
//! through unshaped. natra clamps every burst into
//! `[BURST_FLOOR_BYTES, max(BURST_FLOOR_BYTES, rate x BURST_WINDOW_MS)]`.
use crate::error::{Error, ErrorKind, Result};

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
pub const BURST_CEILING_BYTES: u64 = 1 << 32;
/// Share of the bucket kept for ECT packets, which are CE-marked when they use it.
pub const ECN_BAND_DIVISOR: u64 = 4;
const NSEC_PER_SEC: u128 = 1_000_000_000;

/// What one direction asked for, in the units of the CNI capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestedLimit {
    pub rate_bits: u64,
    pub burst_bits: u64,
}

/// A direction's bucket as the dataplane runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketParams {
    pub rate_bytes_per_sec: u64,
    pub burst_bytes: u64,
    pub ecn_band_bytes: u64,
    pub refill_full_ns: u64,
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
}

/// Validates one direction; `field` names it in errors. Rate 0 = unlimited.
pub fn bucket_params(field: &str, req: RequestedLimit) -> Result<Option<BucketParams>> {
    if req.rate_bits == 0 {
        return Ok(None);
    }
    if !(MIN_RATE_BITS..=MAX_RATE_BITS).contains(&req.rate_bits) {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "{field}Rate {} bit/s is outside {MIN_RATE_BITS}..={MAX_RATE_BITS}",
                req.rate_bits
            ),
        ));
    }
    let rate_bytes_per_sec = req.rate_bits / 8;
    let burst_bytes = sanitise_burst(req.burst_bits / 8, rate_bytes_per_sec);
    Ok(Some(BucketParams {
        rate_bytes_per_sec,
        burst_bytes,
        ecn_band_bytes: burst_bytes / ECN_BAND_DIVISOR,
        refill_full_ns: refill_full_ns(burst_bytes, rate_bytes_per_sec),
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

/// Idle time after which an empty bucket is full again, rounded up.
fn refill_full_ns(burst_bytes: u64, rate_bytes_per_sec: u64) -> u64 {
    let ns = (burst_bytes as u128 * NSEC_PER_SEC).div_ceil(rate_bytes_per_sec as u128);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(rate_bits: u64, burst_bits: u64) -> BucketParams {
        bucket_params(
            "ingress",
            RequestedLimit {
                rate_bits,
                burst_bits,
            },
        )
        .unwrap()
        .unwrap()
    }

    #[test]
    fn containerd_burst_is_clamped_to_the_window() {
        // 100 Mbit/s = 12.5 MB/s; 500 ms of it = 6.25 MB, not 512 MiB.
        let p = params(100_000_000, 4_294_967_295);
        assert_eq!(p.rate_bytes_per_sec, 12_500_000);
        assert_eq!(p.burst_bytes, 6_250_000);
        assert_eq!(p.ecn_band_bytes, 1_562_500);
    }

    #[test]
    fn small_rates_get_the_floor() {
        let p = params(1_000, 4_294_967_295);
        assert_eq!(p.rate_bytes_per_sec, 125);
        assert_eq!(p.burst_bytes, BURST_FLOOR_BYTES);
        let p = params(20_000_000, 8);
        assert_eq!(p.burst_bytes, BURST_FLOOR_BYTES);
        // below 2 Mbit/s (256 kB/s x 0.5 s < 128 KiB) the floor is the window
        assert_eq!(params(2_000_000, 0).burst_bytes, BURST_FLOOR_BYTES);
    }

    #[test]
    fn a_burst_inside_the_range_is_kept() {
        // 1 Gbit/s: window is 62.5 MB; ask for 1 MB (8e6 bits).
        assert_eq!(params(1_000_000_000, 8_000_000).burst_bytes, 1_000_000);
    }

    #[test]
    fn no_burst_requested_takes_the_window() {
        assert_eq!(params(1_000_000_000, 0).burst_bytes, 62_500_000);
    }

    #[test]
    fn huge_rates_hit_the_ceiling() {
        assert_eq!(
            params(MAX_RATE_BITS, u64::MAX).burst_bytes,
            BURST_CEILING_BYTES
        );
    }

    #[test]
    fn rate_zero_means_unlimited() {
        let r = bucket_params(
            "egress",
            RequestedLimit {
                rate_bits: 0,
                burst_bits: 4_294_967_295,
            },
        );
        assert_eq!(r, Ok(None));
    }

    #[test]
    fn rates_outside_kubelets_range_are_refused_with_the_field() {
        for bad in [1, 999, MAX_RATE_BITS + 1] {
            let e = bucket_params(
                "egress",
                RequestedLimit {
                    rate_bits: bad,
                    burst_bits: 0,
                },
            )
            .unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidConfig);
            assert!(e.msg.contains("egressRate"), "{}", e.msg);
        }
    }

    #[test]
    fn refill_time_is_burst_over_rate_rounded_up() {
        let p = params(20_000_000, 0); // 2.5 MB/s, window 1.25 MB
        assert_eq!(p.refill_full_ns, 500_000_000);
        let p = params(2_000_000, 0); // 250 kB/s, floor 131072 B
        assert_eq!(p.refill_full_ns, 524_288_000);
        let p = params(1_000, 0); // 125 B/s
        assert_eq!(p.refill_full_ns, 131_072 * 8_000_000);
    }
}
