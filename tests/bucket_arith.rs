//! Host-side tests of the dataplane's arithmetic: the pod bucket and its
//! layers and EDT (`bpf/lib/bucket.h`), the Count-Min Sketch and its decay
//! (`bpf/lib/sketch.h`), the flow hash (`bpf/lib/flow.h`) and both stages
//! together (`bpf/lib/policy.h`), including the honest-aggregate simulation
//! (one elephant + many mice). The headers are pure arithmetic, so
//! `tests/c/bucket_arith.c` compiles them with the host's clang and drives
//! them with a deterministic clock. No root needed.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use natra::limits::{
    bucket_params, pod_limits, RequestedLimit, Tuning, BURST_CEILING_BYTES, BURST_FLOOR_BYTES,
    BURST_WINDOW_MS, DEFAULT_CE_DELAY_MS, DEFAULT_EDT_HORIZON_MS, DEFAULT_HANDSHAKE_HORIZON_MS,
    DEFAULT_MICE_HORIZON_MS, DEFAULT_SKETCH_DEPTH, DEFAULT_WINDOW_MS, ECN_BAND_DIVISOR,
    EDT_BURST_FLOOR_BYTES, EDT_BURST_WINDOW_MS, EDT_MICE_RESERVE_DIVISOR, HEAVY_WINDOW_DIVISOR,
    MAX_EDT_DEBT_BYTES, MAX_HEAVY_THRESHOLD_BYTES, MAX_RATE_BITS, MAX_SKETCH_WIDTH, MAX_WINDOW_MS,
    MICE_RESERVE_DIVISOR, MIN_DEFAULT_SKETCH_WIDTH, MIN_HEAVY_THRESHOLD_BYTES, MIN_RATE_BITS,
    MIN_SKETCH_WIDTH, SKETCH_BUDGET_BYTES,
};

/// Compiles the harness once per test binary, with the crate's own limits
/// constants so that its mirror of `src/limits.rs` cannot drift from them.
fn harness() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("bucket_arith-{}", std::process::id()));
        let status = Command::new("clang")
            .current_dir(&root)
            .args(["-O2", "-Wall", "-Werror", "-I", "include", "-I", "bpf"])
            .arg(format!("-DMIN_RATE_BITS={MIN_RATE_BITS}ULL"))
            .arg(format!("-DMAX_RATE_BITS={MAX_RATE_BITS}ULL"))
            .arg(format!("-DBURST_WINDOW_MS={BURST_WINDOW_MS}ULL"))
            .arg(format!("-DBURST_FLOOR_BYTES={BURST_FLOOR_BYTES}ULL"))
            .arg(format!("-DBURST_CEILING_BYTES={BURST_CEILING_BYTES}ULL"))
            .arg(format!("-DECN_BAND_DIVISOR={ECN_BAND_DIVISOR}ULL"))
            .arg(format!("-DMICE_RESERVE_DIVISOR={MICE_RESERVE_DIVISOR}ULL"))
            .arg(format!("-DDEFAULT_WINDOW_MS={DEFAULT_WINDOW_MS}ULL"))
            .arg(format!("-DMAX_WINDOW_MS={MAX_WINDOW_MS}ULL"))
            .arg(format!(
                "-DMIN_HEAVY_THRESHOLD_BYTES={MIN_HEAVY_THRESHOLD_BYTES}ULL"
            ))
            .arg(format!("-DHEAVY_WINDOW_DIVISOR={HEAVY_WINDOW_DIVISOR}ULL"))
            .arg(format!(
                "-DMAX_HEAVY_THRESHOLD_BYTES={MAX_HEAVY_THRESHOLD_BYTES}ULL"
            ))
            .arg(format!("-DDEFAULT_SKETCH_DEPTH={DEFAULT_SKETCH_DEPTH}U"))
            .arg(format!(
                "-DMIN_DEFAULT_SKETCH_WIDTH={MIN_DEFAULT_SKETCH_WIDTH}U"
            ))
            .arg(format!("-DMIN_SKETCH_WIDTH={MIN_SKETCH_WIDTH}U"))
            .arg(format!("-DMAX_SKETCH_WIDTH={MAX_SKETCH_WIDTH}U"))
            .arg(format!("-DSKETCH_BUDGET_BYTES={SKETCH_BUDGET_BYTES}ULL"))
            .arg(format!(
                "-DDEFAULT_EDT_HORIZON_MS={DEFAULT_EDT_HORIZON_MS}ULL"
            ))
            .arg(format!("-DMAX_EDT_DEBT_BYTES={MAX_EDT_DEBT_BYTES}ULL"))
            .arg(format!(
                "-DDEFAULT_MICE_HORIZON_MS={DEFAULT_MICE_HORIZON_MS}ULL"
            ))
            .arg(format!(
                "-DDEFAULT_HANDSHAKE_HORIZON_MS={DEFAULT_HANDSHAKE_HORIZON_MS}ULL"
            ))
            .arg(format!("-DDEFAULT_CE_DELAY_MS={DEFAULT_CE_DELAY_MS}ULL"))
            .arg(format!("-DEDT_BURST_WINDOW_MS={EDT_BURST_WINDOW_MS}ULL"))
            .arg(format!(
                "-DEDT_BURST_FLOOR_BYTES={EDT_BURST_FLOOR_BYTES}ULL"
            ))
            .arg(format!(
                "-DEDT_MICE_RESERVE_DIVISOR={EDT_MICE_RESERVE_DIVISOR}ULL"
            ))
            .arg("tests/c/bucket_arith.c")
            .arg("-lm")
            .arg("-pthread")
            .arg("-o")
            .arg(&out)
            .status()
            .expect("cannot run clang (is it installed?)");
        assert!(
            status.success(),
            "clang failed to build tests/c/bucket_arith.c: {status}"
        );
        out
    })
}

fn run(args: &[String]) -> Output {
    let out = Command::new(harness())
        .args(args)
        .output()
        .expect("cannot run the bucket_arith harness");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Every check of the harness: refill and charge against 128-bit references
/// for every rate and burst (EDT floor included), the layers case by case,
/// EDT delays in ns from bytes and bytes/s and the horizon, heavy-only
/// simulations, sketch epochs and decay (mouse -> heavy -> light), the
/// sketch never underestimating, the flow hash (IPv6 high 96 bits, avalanche,
/// uniform and independent rows), the false-heavy fraction of 10,000 light
/// flows, and the honest aggregate: one elephant + many mice over 10
/// simulated seconds, where no mouse is ever dropped or delayed while the
/// mice are within the cap and everything passed stays within rate x t +
/// burst (+ EDT debt). Run with --nocapture for the figures.
#[test]
fn bucket_arithmetic_holds_on_the_host() {
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().last().expect("the harness printed nothing");
    let (passed, failed) = summary
        .strip_prefix("bucket_arith: ")
        .and_then(|s| s.strip_suffix(" failed"))
        .and_then(|s| s.split_once(" passed, "))
        .and_then(|(p, f)| Some((p.parse::<u64>().ok()?, f.parse::<u64>().ok()?)))
        .unwrap_or_else(|| panic!("unexpected summary line {summary:?}"));
    assert!(
        out.status.success() && failed == 0,
        "bucket_arith: {failed} check(s) failed (see the FAIL lines above), exit {}",
        out.status
    );
    assert!(passed > 100, "only {passed} checks ran");
}

/// The harness derives its parameters (bucket, layers, sketch, EDT) like
/// `src/limits.rs` does; prove it, value for value, against the crate.
#[test]
fn harness_params_mirror_limits_rs() {
    let rates = [
        MIN_RATE_BITS,
        8_000,
        1_000_000,
        20_000_000,
        100_000_000,
        1_000_000_000,
        10_000_000_000,
        100_000_000_000,
        1_000_000_000_000,
        MAX_RATE_BITS,
        1_000_000_007,
    ];
    let bursts = [0, 8, 1_048_576, 8_000_000, 4_294_967_295, u64::MAX];
    let mut args = vec!["--params".to_string()];
    let mut expected = Vec::new();
    for rate in rates {
        for burst in bursts {
            args.push(rate.to_string());
            args.push(burst.to_string());
            let p = bucket_params(
                "test",
                RequestedLimit {
                    rate_bits: rate,
                    burst_bits: burst,
                },
            )
            .expect("valid rate")
            .expect("limited");
            let req = RequestedLimit {
                rate_bits: rate,
                burst_bits: burst,
            };
            let e = pod_limits(req, req, &Tuning::default())
                .expect("valid rate")
                .pod_egress
                .expect("limited")
                .with_edt();
            expected.push(format!(
                "{rate} {burst} {} {} {} {} {} {} {} {} {} {} {} {}",
                p.rate_bytes_per_sec,
                p.burst_bytes,
                p.ecn_band_bytes,
                p.refill_full_ns,
                p.mice_reserve_bytes,
                p.heavy_threshold_bytes,
                p.epoch_ns,
                p.sketch_width,
                p.sketch_depth,
                e.edt_horizon_ns,
                e.edt_debt_bytes,
                e.refill_full_ns
            ));
        }
    }
    let out = run(&args);
    assert!(
        out.status.success(),
        "harness --params failed: {}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let got: Vec<&str> = stdout.lines().collect();
    assert_eq!(got.len(), expected.len(), "one line per (rate, burst) pair");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(
            *g, e,
            "C mirror (left) and src/limits.rs (right) disagree: rate_bits burst_bits rate burst \
             band refill_full_ns reserve threshold epoch width depth edt_horizon edt_debt \
             edt_refill"
        );
    }
}
