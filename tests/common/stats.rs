//! Percentiles and spreads of measured figures.
use std::time::Duration;

/// Nearest-rank percentile (`p` in 0..=1) of unsorted durations, in ms.
pub fn percentile_ms(times: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    nearest_rank(&ms, p)
}

/// Nearest-rank percentile of sorted values: with 400 samples the p99 is the
/// 4th-worst, not an interpolation towards the single worst.
pub fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of nothing");
    let rank = (sorted.len() as f64 * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// (min, median, max) of a set of runs.
pub fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}
