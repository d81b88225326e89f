//! Kubernetes resource quantities, as in `kubernetes.io/egress-bandwidth: 10M`.
//!
//! Grammar (k8s.io/apimachinery resource.Quantity): a non-negative decimal
//! number (`12`, `1.5`, `.5`) followed by an optional suffix — binary `Ki Mi
//! Gi Ti Pi Ei`, decimal `m k M G T P E` (`m` is milli), or an exponent
//! `e3`/`E-2`. Like `Quantity.Value()`, a fractional result rounds up.

/// Parses a quantity into a whole number, rounding a fraction up. `None` for
/// anything outside the grammar or beyond u64.
pub fn parse_quantity(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 64 {
        return None;
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if frac_part.contains('.') {
        return None;
    }
    // value = digits / 10^frac_len x 2^bin x 10^dec
    let digits: String = [int_part, frac_part].concat();
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return None;
    }
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let (binary_shift, decimal_exp): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().ok()?;
            if !(-30..=30).contains(&exp) {
                return None;
            }
            (0, exp)
        }
        _ => return None,
    };
    let exp10 = decimal_exp - frac_part.len() as i32;
    let scaled = mantissa.checked_mul(1u128 << binary_shift)?;
    let value = if exp10 >= 0 {
        scaled.checked_mul(10u128.checked_pow(exp10 as u32)?)?
    } else {
        let div = 10u128.checked_pow(exp10.unsigned_abs())?;
        scaled.div_ceil(div)
    };
    u64::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suffixes_kubernetes_users_write() {
        for (text, value) in [
            ("10M", 10_000_000),
            ("1k", 1_000),
            ("100", 100),
            ("1G", 1_000_000_000),
            ("1T", 1_000_000_000_000),
            ("1P", 1_000_000_000_000_000),
            ("1Ki", 1_024),
            ("10Mi", 10 * 1_048_576),
            ("1Gi", 1 << 30),
            ("2Ti", 2 << 40),
            ("1.5M", 1_500_000),
            (".5k", 500),
            ("1e6", 1_000_000),
            ("5E3", 5_000),
            ("+20M", 20_000_000),
            ("1500m", 2),
            ("0", 0),
        ] {
            assert_eq!(parse_quantity(text), Some(value), "{text}");
        }
    }

    #[test]
    fn fractions_round_up_like_quantity_value() {
        assert_eq!(parse_quantity("1.0000001k"), Some(1_001));
        assert_eq!(parse_quantity("1m"), Some(1));
        assert_eq!(parse_quantity("2.5"), Some(3));
    }

    #[test]
    fn garbage_is_refused() {
        for text in [
            "",
            "M",
            "-10M",
            "10 M",
            "10mb",
            "10MB",
            "1.2.3",
            "10Mi ",
            "ten",
            "1e",
            "1e+",
            "0x10",
            "1Ki1",
            "99999999999999999999999E",
            "1E30",
        ] {
            assert_eq!(parse_quantity(text), None, "{text:?}");
        }
    }

    /// A property test over random strings of the grammar's alphabet: never
    /// panics, and whatever it accepts agrees with exact arithmetic.
    /// `NATRA_FUZZ_ITERS` runs it longer (`make fuzz`).
    #[test]
    fn random_strings_never_panic_and_accepted_values_are_exact() {
        let iters: u64 = std::env::var("NATRA_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000);
        let alphabet: Vec<char> = "0123456789.+-eEkKMGTPimn x".chars().collect();
        let suffixes = [
            ("", 1u128),
            ("k", 1_000),
            ("M", 1_000_000),
            ("G", 1_000_000_000),
            ("Ki", 1 << 10),
            ("Mi", 1 << 20),
            ("Gi", 1 << 30),
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for _ in 0..iters {
            let len = (next() % 12) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if let Some(v) = parse_quantity(&text) {
                accepted += 1;
                if !text.starts_with('+') {
                    assert_eq!(parse_quantity(&format!("+{text}")), Some(v), "{text:?}");
                }
            }
            // A well-formed integer with a suffix parses to exactly n x multiplier.
            let n = next() % 1_000_000;
            let (suffix, mult) = suffixes[(next() % suffixes.len() as u64) as usize];
            assert_eq!(
                parse_quantity(&format!("{n}{suffix}")).map(u128::from),
                Some(n as u128 * mult)
            );
        }
        assert!(accepted > 0, "the generator reached the grammar");
    }
}
