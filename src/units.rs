//! Quantities as an operator reads them: rates in bit/s with SI prefixes (as
//! Kubernetes' bandwidth annotations write them), byte amounts in B / kB /
//! MB / GB, durations in ms. For logs and CLI text; JSON keeps raw numbers.

/// Up to four significant digits, without trailing zeros: 1.25, 20, 312.5.
fn short(value: f64) -> String {
    let text = if value >= 100.0 {
        format!("{value:.1}")
    } else if value >= 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

fn scaled(value: u64, unit: &str) -> String {
    const PREFIXES: [(f64, &str); 5] =
        [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    let v = value as f64;
    for (scale, prefix) in PREFIXES {
        if v >= scale {
            return format!("{} {prefix}{unit}", short(v / scale));
        }
    }
    format!("{value} {unit}")
}

/// A rate given in bytes per second, as bit/s: 2_500_000 -> "20 Mbit/s".
pub fn rate(bytes_per_sec: u64) -> String {
    scaled(bytes_per_sec.saturating_mul(8), "bit/s")
}

/// A byte amount: 1_250_000 -> "1.25 MB".
pub fn bytes(n: u64) -> String {
    scaled(n, "B")
}

/// A duration in nanoseconds, as ms: 250_000_000 -> "250 ms".
pub fn millis(ns: u64) -> String {
    format!("{} ms", short(ns as f64 / 1e6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_an_operator_writes_them() {
        assert_eq!(rate(2_500_000), "20 Mbit/s");
        assert_eq!(rate(125), "1 kbit/s");
        assert_eq!(rate(100), "800 bit/s");
        assert_eq!(rate(187_500_000), "1.5 Gbit/s");
        assert_eq!(bytes(1_250_000), "1.25 MB");
        assert_eq!(bytes(312_500), "312.5 kB");
        assert_eq!(bytes(131_072), "131.1 kB");
        assert_eq!(bytes(900), "900 B");
        assert_eq!(millis(250_000_000), "250 ms");
        assert_eq!(millis(1_500_000), "1.5 ms");
    }
}
