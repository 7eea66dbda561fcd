//! A log-bucketed latency histogram of atomics, halved now and then so it
//! follows recent behaviour: the one shape behind hedge delays
//! ([`hedge`](crate::hedge)) and stall deadlines ([`deadline`](crate::deadline)).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latencies from 1 ns to 2^40 ns (about 18 minutes), `SUB` buckets per
/// power of two (resolution 2^(1/SUB): 19 % at 4, 41 % at 2).
pub(crate) struct LogHistogram<const SUB: u32> {
    counts: Box<[AtomicU64]>,
    total: AtomicU64,
    window: u64,
}

impl<const SUB: u32> LogHistogram<SUB> {
    const BUCKETS: usize = (40 * SUB) as usize;

    /// After `window` samples the counts are halved.
    pub(crate) fn new(window: u64) -> Self {
        LogHistogram {
            counts: (0..Self::BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
            window,
        }
    }

    fn bucket(ns: u64) -> usize {
        if ns <= 1 {
            return 0;
        }
        (((ns as f64).log2() * f64::from(SUB)) as usize).min(Self::BUCKETS - 1)
    }

    fn upper_bound(bucket: usize) -> Duration {
        Duration::from_nanos(2f64.powf((bucket as f64 + 1.0) / f64::from(SUB)) as u64)
    }

    /// Records one sample; returns the samples counted since the last
    /// halving (callers use it to refresh what they derive, now and then).
    pub(crate) fn record(&self, d: Duration) -> u64 {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[Self::bucket(ns)].fetch_add(1, Ordering::Relaxed);
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        if total >= self.window {
            // Halve everything; racing recorders may skew a count by one.
            let mut kept = 0;
            for c in self.counts.iter() {
                let v = c.load(Ordering::Relaxed) / 2;
                c.store(v, Ordering::Relaxed);
                kept += v;
            }
            self.total.store(kept, Ordering::Relaxed);
            return kept;
        }
        total
    }

    /// The upper bound of the bucket holding the `q` quantile, once at
    /// least `min_samples` are counted.
    pub(crate) fn quantile(&self, q: f64, min_samples: u64) -> Option<Duration> {
        let total: u64 = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        if total < min_samples.max(1) {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(Self::upper_bound(i));
            }
        }
        Some(Self::upper_bound(Self::BUCKETS - 1))
    }

    /// Samples counted now (after halvings).
    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}
