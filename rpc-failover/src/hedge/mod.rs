//! Hedged requests: if the first member is slow, race a second one.
//!
//! A hedged group is a [failover group](crate::failover) that, for
//! [reads](crate::Idempotency::Read), does not wait for a slow member to time
//! out: after a delay it sends the same call to the next member, takes the
//! first good answer and cancels the other. The delay is fixed, or a latency
//! quantile observed per method (send a hedge only for the slowest few
//! percent of calls, which is where tail latency comes from). The number of
//! hedges per call is capped.
//!
//! A group hedges when its [`FailoverLayer::hedge`](crate::FailoverLayer::hedge)
//! is set:
//!
//! ```
//! use std::time::Duration;
//! use rpc_failover::{FailoverLayer, HedgePolicy};
//!
//! // Hedge after the method's observed p95 (at least 20 ms), at most once.
//! let settings = FailoverLayer::new()
//!     .hedge(HedgePolicy::quantile(0.95).min_delay(Duration::from_millis(20)));
//! # let _ = settings;
//! ```

mod latency;

pub(crate) use latency::LatencyTracker;

use std::time::Duration;

/// When to send a hedge, and how many.
#[derive(Clone, Debug, PartialEq)]
pub struct HedgePolicy {
    pub(crate) delay: HedgeDelay,
    pub(crate) max_hedges: u32,
    pub(crate) min_delay: Duration,
    pub(crate) fallback_delay: Duration,
}

/// How long to wait before hedging.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum HedgeDelay {
    Fixed(Duration),
    Quantile(f64),
}

impl HedgePolicy {
    /// Hedge after a fixed delay.
    pub fn fixed(delay: Duration) -> Self {
        HedgePolicy {
            delay: HedgeDelay::Fixed(delay),
            max_hedges: 1,
            min_delay: Duration::ZERO,
            fallback_delay: delay,
        }
    }

    /// Hedge after the `q` quantile (`0.0..=1.0`, clamped) of the method's
    /// recently observed latency. Until a method has 20 observations, the
    /// fallback delay (default 1 s) applies. The minimum delay defaults to 0.
    pub fn quantile(q: f64) -> Self {
        HedgePolicy {
            delay: HedgeDelay::Quantile(q.clamp(0.0, 1.0)),
            max_hedges: 1,
            min_delay: Duration::ZERO,
            fallback_delay: Duration::from_secs(1),
        }
    }

    /// At most this many hedges per call (default 1; 0 disables hedging).
    pub fn max_hedges(mut self, n: u32) -> Self {
        self.max_hedges = n;
        self
    }

    /// Never hedge sooner than this (quantile delays only).
    pub fn min_delay(mut self, d: Duration) -> Self {
        self.min_delay = d;
        self
    }

    /// The delay while a method has too few observations (quantile delays only).
    pub fn fallback_delay(mut self, d: Duration) -> Self {
        self.fallback_delay = d;
        self
    }
}
