//! Percentiles from the kernel's latency histograms (bucket layout in
//! `tracer_common::hist`).

use tracer_common::hist::{BUCKETS, bucket_bounds};

use crate::{summary::LatencyNs, trace::Bucket};

/// A latency histogram with exact count, sum and max beside the buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Count per bucket index; missing tail entries are zero.
    pub counts: Vec<u64>,
    /// Exact sum of all durations, ns.
    pub sum: u64,
    /// Exact largest duration, ns.
    pub max: u64,
}

impl Histogram {
    /// Number of recorded durations (saturating: a histogram merged from
    /// untrusted records may claim more than `u64::MAX`).
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.saturating_add(c))
    }

    /// The `q`-quantile (0 < q ≤ 1), reported as the upper edge of the bucket
    /// that holds it, never above the exact max: an estimate that errs high
    /// by at most one bucket width (≤ 12.5 %). `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        // The rank of the quantile, 1-based, as the nearest-rank method defines it.
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen = c.saturating_add(seen);
            if seen >= rank {
                let (_, hi) = bucket_bounds(i as u32);
                return Some(hi.saturating_sub(1).min(self.max));
            }
        }
        Some(self.max)
    }

    /// p50/p90/p99/max/sum; `None` when empty.
    pub fn latency(&self) -> Option<LatencyNs> {
        Some(LatencyNs {
            p50: self.quantile(0.50)?,
            p90: self.quantile(0.90)?,
            p99: self.quantile(0.99)?,
            max: self.max,
            sum: self.sum,
        })
    }

    /// The non-empty buckets, for the trace file.
    pub fn buckets(&self) -> Vec<Bucket> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(i, c)| **c > 0 && (*i as u32) < BUCKETS)
            .map(|(i, &count)| {
                let (lo, hi) = bucket_bounds(i as u32);
                Bucket { lo, hi, count }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::hist::bucket_of;

    use super::*;

    fn of(samples: &[u64]) -> Histogram {
        let mut h = Histogram { counts: vec![0; BUCKETS as usize], ..Default::default() };
        for &s in samples {
            h.counts[bucket_of(s) as usize] += 1;
            h.sum += s;
            h.max = h.max.max(s);
        }
        h
    }

    #[test]
    fn quantiles_err_high_by_at_most_an_eighth() {
        let samples: Vec<u64> = (1..=1000).map(|i| i * 7919 % 1_000_003 + 2_000_000).collect();
        let mut sorted = samples.clone();
        sorted.sort_unstable();
        let h = of(&samples);
        for q in [0.5, 0.9, 0.99] {
            let exact = sorted[((q * 1000.0) as usize).saturating_sub(1)];
            let est = h.quantile(q).unwrap();
            assert!(est >= exact && (est - exact) * 8 <= exact, "q{q}: {est} vs {exact}");
        }
        assert_eq!(h.latency().unwrap().max, *sorted.last().unwrap());
        assert_eq!(h.count(), 1000);
    }

    #[test]
    fn empty_has_no_latency() {
        assert_eq!(of(&[]).latency(), None);
    }

    #[test]
    fn a_single_value_is_its_own_percentiles() {
        let l = of(&[2_100_000]).latency().unwrap();
        assert_eq!((l.p50, l.p99, l.max, l.sum), (2_100_000, 2_100_000, 2_100_000, 2_100_000));
    }
}
