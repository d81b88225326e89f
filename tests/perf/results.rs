//! Everything one `make bench` measured: scalar figures (one value per run,
//! keyed by name) and the time series and samples the plots draw (kept from
//! the last run).
use std::collections::BTreeMap;

use crate::common::stats::spread;

/// One line of a plot: its label and (x, y) points.
pub type Line = (String, Vec<(f64, f64)>);

#[derive(Default)]
pub struct Results {
    figures: BTreeMap<String, Vec<f64>>,
    /// plot name -> (line label, points)
    pub series: BTreeMap<String, Vec<Line>>,
}

impl Results {
    pub fn record(&mut self, key: impl Into<String>, value: f64) {
        self.figures.entry(key.into()).or_default().push(value);
    }

    /// Replaces the line `label` of plot `plot` (the last run wins).
    pub fn line(&mut self, plot: &str, label: &str, points: Vec<(f64, f64)>) {
        let lines = self.series.entry(plot.to_owned()).or_default();
        lines.retain(|(l, _)| l != label);
        lines.push((label.to_owned(), points));
    }

    /// (min, median, max) over the runs, if the figure was measured.
    pub fn get(&self, key: &str) -> Option<(f64, f64, f64)> {
        self.figures
            .get(key)
            .filter(|v| !v.is_empty())
            .map(|v| spread(v))
    }

    pub fn median(&self, key: &str) -> Option<f64> {
        self.get(key).map(|(_, m, _)| m)
    }

    /// The figure of the latest run.
    pub fn last(&self, key: &str) -> Option<f64> {
        self.figures.get(key)?.last().copied()
    }

    pub fn runs(&self, key: &str) -> usize {
        self.figures.get(key).map_or(0, Vec::len)
    }
}

impl Results {
    /// (min, median, max) of `a / b` run by run: a ratio of two figures
    /// measured in the same run, never of two runs.
    pub fn ratio(&self, a: &str, b: &str) -> Option<(f64, f64, f64)> {
        let (a, b) = (self.figures.get(a)?, self.figures.get(b)?);
        let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        (!r.is_empty()).then(|| spread(&r))
    }
}
