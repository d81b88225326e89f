//! Unit tests of the limits: units, burst sanitising, defaults, validation.
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

fn req(rate_bits: u64) -> RequestedLimit {
    RequestedLimit {
        rate_bits,
        burst_bits: 0,
    }
}

#[test]
fn containerd_burst_is_clamped_to_the_window() {
    // 100 Mbit/s = 12.5 MB/s; 500 ms of it = 6.25 MB, not 512 MiB.
    let p = params(100_000_000, 4_294_967_295);
    assert_eq!(p.rate_bytes_per_sec, 12_500_000);
    assert_eq!(p.burst_bytes, 6_250_000);
    assert_eq!(p.ecn_band_bytes, 1_562_500);
    assert_eq!(p.mice_reserve_bytes, 1_562_500);
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

#[test]
fn heavy_threshold_is_an_eighth_of_the_window_at_least_64k() {
    // 20 Mbit/s x 1 s = 2.5 MB; an eighth is 312.5 kB
    assert_eq!(params(20_000_000, 0).heavy_threshold_bytes, 312_500);
    // below 4.2 Mbit/s the window stretches to hold 8 x 64 KiB (rounded
    // up to the ms): 125 kB/s x 4.195 s / 8
    assert_eq!(params(1_000_000, 0).heavy_threshold_bytes, 65_546);
    assert_eq!(params(1_000_000, 0).epoch_ns, 2_097_500_000);
    assert_eq!(params(4_194_304, 0).epoch_ns, 500_000_000);
    assert_eq!(params(MIN_RATE_BITS, 0).epoch_ns, 5_000_000_000);
    assert_eq!(
        params(MAX_RATE_BITS, 0).heavy_threshold_bytes,
        MAX_HEAVY_THRESHOLD_BYTES
    );
    assert_eq!(params(20_000_000, 0).epoch_ns, 500_000_000);
}

#[test]
fn default_sketch_keeps_the_error_under_a_quarter_threshold_and_256k() {
    for rate_bits in [
        MIN_RATE_BITS,
        1_000_000,
        20_000_000,
        10_000_000_000,
        MAX_RATE_BITS,
    ] {
        let p = params(rate_bits, 0);
        assert_eq!(p.sketch_depth, 4);
        assert!(2 * 8 * u64::from(p.sketch_cells()) <= SKETCH_BUDGET_BYTES);
        if rate_bits == MAX_RATE_BITS {
            // T is capped at 2^39 there: the widest sketch the budget holds
            assert_eq!(p.sketch_width, 2048);
            continue;
        }
        let window_ms = p.epoch_ns * 2 / 1_000_000;
        let n = window_bytes(p.rate_bytes_per_sec, window_ms) as f64;
        let eps = std::f64::consts::E / f64::from(p.sketch_width);
        assert!(
            eps * n <= p.heavy_threshold_bytes as f64 / 4.0,
            "{rate_bits}"
        );
        assert_eq!(p.sketch_width, 128, "{rate_bits}");
    }
    // a small threshold asks for more columns, up to the budget
    let t = Tuning {
        heavy_threshold_bytes: Some(1000),
        ..Default::default()
    };
    let l = pod_limits(req(100_000_000), req(0), &t).unwrap();
    assert_eq!(l.sketch_geometry(), Some((2048, 4)));
    let t = Tuning {
        heavy_threshold_bytes: Some(1_000_000),
        ..Default::default()
    };
    // 4e x 12.5e6 / 1e6 = 136 -> 256
    let l = pod_limits(req(100_000_000), req(0), &t).unwrap();
    assert_eq!(l.sketch_geometry(), Some((256, 4)));
}

#[test]
fn both_directions_share_the_wider_sketch() {
    let t = Tuning {
        heavy_threshold_bytes: Some(1_000_000),
        ..Default::default()
    };
    let l = pod_limits(req(100_000_000), req(1_000_000), &t).unwrap();
    assert_eq!(l.pod_ingress.unwrap().sketch_width, 256);
    assert_eq!(l.pod_egress.unwrap().sketch_width, 256);
}

#[test]
fn edt_either_way_retunes_for_a_queue() {
    let t = Tuning::default();
    let l = pod_limits(req(20_000_000), req(20_000_000), &t).unwrap();
    for p in [l.pod_ingress.unwrap(), l.pod_egress.unwrap()] {
        assert!(!p.edt && p.edt_debt_bytes == 0 && p.refill_full_ns == 500_000_000);
        assert_eq!((p.mice_debt_bytes, p.ce_delay_ns), (0, 0));
        let e = p.with_edt();
        assert!(e.edt);
        assert_eq!(e.with_edt(), e, "idempotent");
        assert_eq!(e.edt_horizon_ns, DEFAULT_EDT_HORIZON_MS * 1_000_000);
        assert_eq!(e.mice_horizon_ns, DEFAULT_MICE_HORIZON_MS * 1_000_000);
        assert!(e.mice_horizon_ns < 200_000_000, "below TCP's minimum RTO");
        assert_eq!(e.ce_delay_ns, DEFAULT_CE_DELAY_MS * 1_000_000);
        // 2.5 MB/s: burst 20 ms = 50 kB, heavy debt 20 ms = 50 kB, mice 180 ms = 450 kB
        assert_eq!(e.burst_bytes, 50_000);
        assert_eq!((e.mice_reserve_bytes, e.ecn_band_bytes), (25_000, 12_500));
        assert_eq!(e.edt_debt_bytes, 50_000);
        assert_eq!(e.mice_debt_bytes, 450_000);
        // handshakes: 500 ms (under TCP's 1 s initial RTO) = 1.25 MB
        assert_eq!(
            e.handshake_horizon_ns,
            DEFAULT_HANDSHAKE_HORIZON_MS * 1_000_000
        );
        assert!(
            e.handshake_horizon_ns < 1_000_000_000,
            "below TCP's initial RTO"
        );
        assert!(e.handshake_horizon_ns > e.mice_horizon_ns);
        assert_eq!(e.mice_debt_bytes + e.handshake_extra_bytes, 1_250_000);
        // the refill runs from the lowest floor, -(D + M + X), to full: 1.35 MB / 2.5 MB/s
        assert_eq!(e.refill_full_ns, 540_000_000);
        assert_eq!(e.edt_queue_bytes(), 1_350_000);
        assert_eq!(e.longest_edt_delay_ns(), 500_000_000);
        assert_eq!(p.handshake_extra_bytes, 0);
    }
    // a slow Pod keeps the floor of a dozen frames
    let slow = pod_limits(req(1_000_000), req(0), &t).unwrap();
    assert_eq!(
        slow.pod_ingress.unwrap().with_edt().burst_bytes,
        EDT_BURST_FLOOR_BYTES
    );
    let huge = pod_limits(req(0), req(MAX_RATE_BITS), &t).unwrap();
    let h = huge.pod_egress.unwrap().with_edt();
    assert!(h.edt_debt_bytes + h.mice_debt_bytes <= MAX_EDT_DEBT_BYTES);
    assert!(h.edt_debt_bytes + h.mice_debt_bytes + h.handshake_extra_bytes <= MAX_EDT_DEBT_BYTES);
}

#[test]
fn pod_limits_with_edt_change_only_what_a_load_with_edt_writes() {
    let t = Tuning::default();
    let l = pod_limits(req(20_000_000), req(20_000_000), &t).unwrap();
    assert_eq!(l.with_edt(false), l);
    let on = l.with_edt(true);
    assert_eq!(on.pod_ingress, l.pod_ingress);
    assert_eq!(on.pod_egress, Some(l.pod_egress.unwrap().with_edt()));
    assert!(on.pod_egress.unwrap().edt);
    let both = l.with_edt_dirs(true, true);
    assert!(both.pod_ingress.unwrap().edt && both.pod_egress.unwrap().edt);
    assert_eq!(l.with_edt_dirs(true, false).pod_egress, l.pod_egress);
}

#[test]
fn bad_tuning_is_an_invalid_config() {
    for (t, field) in [
        (
            Tuning {
                sketch_width: Some(100),
                ..Default::default()
            },
            "sketchWidth",
        ),
        (
            Tuning {
                sketch_width: Some(1 << 20),
                ..Default::default()
            },
            "sketchWidth",
        ),
        (
            Tuning {
                sketch_depth: Some(0),
                ..Default::default()
            },
            "sketchDepth",
        ),
        (
            Tuning {
                sketch_depth: Some(9),
                ..Default::default()
            },
            "sketchDepth",
        ),
        (
            Tuning {
                heavy_threshold_bytes: Some(0),
                ..Default::default()
            },
            "heavyThresholdBytes",
        ),
        (
            Tuning {
                window_ms: Some(5),
                ..Default::default()
            },
            "windowMs",
        ),
        (
            Tuning {
                edt_horizon_ms: Some(0),
                ..Default::default()
            },
            "edtHorizonMs",
        ),
    ] {
        let e = pod_limits(req(20_000_000), req(0), &t).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig, "{t:?}");
        assert!(e.msg.contains(field), "{}", e.msg);
    }
}

#[test]
fn limits_print_in_the_operators_units() {
    let l = pod_limits(
        RequestedLimit {
            rate_bits: 20_000_000,
            burst_bits: 4_294_967_295,
        },
        RequestedLimit::default(),
        &Tuning::default(),
    )
    .unwrap();
    let text = l.with_edt(true).to_string();
    assert!(
        text.starts_with("pod ingress 20 Mbit/s, burst 1.25 MB, heavy above ")
            && text.ends_with("; pod egress not limited"),
        "{text}"
    );
    assert!(
        !text.contains("BucketParams") && !text.contains("EDT"),
        "{text}"
    );
}
