//! Per-method latency quantiles for hedge delays: a [`LogHistogram`] per
//! method, halved now and then so it follows recent traffic.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::{HedgeDelay, HedgePolicy};
use crate::histogram::LogHistogram;

/// Methods tracked separately; the rest share one histogram.
const MAX_METHODS: usize = 256;
/// Observations before the quantile is trusted.
const MIN_SAMPLES: u64 = 20;
/// After this many observations the counts are halved.
const WINDOW: u64 = 2_000;

/// 4 buckets per power of two: resolution about 19 %.
type Histogram = LogHistogram<4>;

/// Latency per method, shared by all clones of a hedged group.
pub(crate) struct LatencyTracker {
    policy: HedgePolicy,
    methods: RwLock<HashMap<Arc<str>, Arc<Histogram>>>,
    other: Arc<Histogram>,
}

impl LatencyTracker {
    pub(crate) fn new(policy: HedgePolicy) -> Self {
        LatencyTracker {
            policy,
            methods: RwLock::new(HashMap::new()),
            other: Arc::new(Histogram::new(WINDOW)),
        }
    }

    pub(crate) fn max_hedges(&self) -> u32 {
        self.policy.max_hedges
    }

    fn histogram(&self, method: &Arc<str>) -> Arc<Histogram> {
        if let Ok(map) = self.methods.read() {
            if let Some(h) = map.get(method) {
                return h.clone();
            }
            if map.len() >= MAX_METHODS {
                return self.other.clone();
            }
        }
        match self.methods.write() {
            Ok(mut map) => map
                .entry(method.clone())
                .or_insert_with(|| Arc::new(Histogram::new(WINDOW)))
                .clone(),
            Err(_) => self.other.clone(),
        }
    }

    /// The hedge delay for `method` now.
    pub(crate) fn delay(&self, method: &Arc<str>) -> Duration {
        match self.policy.delay {
            HedgeDelay::Fixed(d) => d,
            HedgeDelay::Quantile(q) => self
                .histogram(method)
                .quantile(q, MIN_SAMPLES)
                .map_or(self.policy.fallback_delay, |d| d.max(self.policy.min_delay)),
        }
    }

    /// Records a successful attempt's latency (quantile policies only).
    pub(crate) fn record(&self, method: &Arc<str>, elapsed: Duration) {
        if let HedgeDelay::Quantile(_) = self.policy.delay {
            self.histogram(method).record(elapsed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_follows_observations() {
        let t = LatencyTracker::new(
            HedgePolicy::quantile(0.9).fallback_delay(Duration::from_millis(777)),
        );
        let m: Arc<str> = "eth_call".into();
        assert_eq!(
            t.delay(&m),
            Duration::from_millis(777),
            "too few samples: fallback"
        );
        for i in 0..100u64 {
            // 90 fast calls (10 ms), 10 slow ones (500 ms)
            let d = if i % 10 == 0 { 500 } else { 10 };
            t.record(&m, Duration::from_millis(d));
        }
        let d = t.delay(&m);
        assert!(
            d >= Duration::from_millis(10) && d < Duration::from_millis(13),
            "{d:?}"
        );
        let other: Arc<str> = "eth_getLogs".into();
        assert_eq!(t.delay(&other), Duration::from_millis(777), "per method");
    }

    #[test]
    fn min_delay_applies() {
        let t =
            LatencyTracker::new(HedgePolicy::quantile(0.5).min_delay(Duration::from_millis(50)));
        let m: Arc<str> = "m".into();
        for _ in 0..50 {
            t.record(&m, Duration::from_millis(1));
        }
        assert_eq!(t.delay(&m), Duration::from_millis(50));
    }

    #[test]
    fn histogram_halves_and_keeps_shape() {
        let h = Histogram::new(WINDOW);
        for _ in 0..(WINDOW + 10) {
            h.record(Duration::from_millis(3));
        }
        assert!(h.total() < WINDOW);
        let q = h.quantile(0.5, MIN_SAMPLES).expect("enough samples");
        assert!(
            q >= Duration::from_millis(3) && q < Duration::from_millis(4),
            "{q:?}"
        );
    }
}
