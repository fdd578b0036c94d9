//! Latency summaries and small statistics helpers.

use serde::{Deserialize, Serialize};

/// Percentiles of a set of latency samples, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// How many samples the figures come from.
    pub samples: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

/// Summarises latency samples given in nanoseconds (sorts them in place).
pub fn summarize(samples: &mut [u64]) -> LatencySummary {
    if samples.is_empty() {
        return LatencySummary::default();
    }
    samples.sort_unstable();
    let n = samples.len();
    let ms = |ns: u64| ns as f64 / 1e6;
    let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
    LatencySummary {
        samples: n as u64,
        p50_ms: ms(samples[rank(n, 0.50)]),
        p99_ms: ms(samples[rank(n, 0.99)]),
        max_ms: ms(samples[n - 1]),
        mean_ms: sum as f64 / n as f64 / 1e6,
    }
}

/// Index of the nearest-rank `p` percentile in a sorted slice of length `n > 0`.
fn rank(n: usize, p: f64) -> usize {
    let r = (p * n as f64).ceil() as usize;
    r.clamp(1, n) - 1
}

/// The median of some figures (the mean of the middle two for an even count); `None` when
/// there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut s: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        let l = summarize(&mut s);
        assert_eq!(l.samples, 100);
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        assert!((l.mean_ms - 50.5).abs() < 1e-9);
        assert_eq!(summarize(&mut []), LatencySummary::default());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
