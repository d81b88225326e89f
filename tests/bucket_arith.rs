//! Host-side tests of the token bucket arithmetic (`bpf/lib/bucket.h`): the
//! header is pure arithmetic, so `tests/c/bucket_arith.c` compiles it with the
//! host's clang and drives it with a deterministic clock. No root needed.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use natra::limits::{
    bucket_params, RequestedLimit, BURST_CEILING_BYTES, BURST_FLOOR_BYTES, BURST_WINDOW_MS,
    ECN_BAND_DIVISOR, MAX_RATE_BITS, MIN_RATE_BITS,
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
            .arg("tests/c/bucket_arith.c")
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

/// The harness derives its bucket parameters like `src/limits.rs` does; prove
/// it, value for value, against `bucket_params` itself.
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
            expected.push(format!(
                "{rate} {burst} {} {} {} {}",
                p.rate_bytes_per_sec, p.burst_bytes, p.ecn_band_bytes, p.refill_full_ns
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
            "C mirror (left) and src/limits.rs (right) disagree: rate_bits burst_bits rate burst band refill_full_ns"
        );
    }
}
