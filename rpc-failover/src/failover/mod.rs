//! Failover over a group of backends, in priority order, with out-of-service
//! windows and half-open recovery.
//!
//! [`FailoverLayer`] turns a `Vec` of [`Member`](crate::Member)s into a
//! [`Failover`] service. Each call goes to the first healthy member; when that
//! member fails in a way that is *its* fault (connect error, timeout, HTTP 5xx
//! or 429, garbage, a rate-limit error object — not `execution reverted`),
//! the call moves on to the next one, if that is safe:
//!
//! * always, when the call certainly was not sent;
//! * when it may have been sent, only for methods the
//!   [classifier](crate::Classifier) calls safe to repeat.
//!
//! After `failure_threshold` consecutive failures a member is out of service
//! for the `out_of_service` window; after the window one trial decides
//! whether it is back: a background re-test when the group has a
//! [`HealthCheck`](crate::HealthCheck) method or head tracking (then every
//! `recheck` until it answers), else the next client call. Health lives in
//! atomics shared by all clones; picking a member is one pass over the
//! group, without allocation or locks.
//!
//! Silent members are failures too. Every attempt has a *stall deadline*
//! learned from the member's own latency ([`AttemptDeadline`](crate::AttemptDeadline)):
//! an attempt past it counts against the member however it ends, and a
//! call that may be repeated moves on at once. Moving a call on after a
//! failure that may have reached the member, and hedges, take a token from
//! the group's [`RetryBudget`](crate::RetryBudget). A member may cap the
//! calls in flight on it ([`ConcurrencyLimit`](crate::ConcurrencyLimit));
//! calls beyond every member's cap wait in a bounded queue.
//!
//! | setting | default |
//! |---|---|
//! | [`failure_threshold`](FailoverLayer::failure_threshold) | 2 consecutive failures |
//! | [`out_of_service`](FailoverLayer::out_of_service) | 5 s |
//! | [`when_all_down`](FailoverLayer::when_all_down) | [`TrySoonest`](crate::WhenAllDown::TrySoonest) |
//! | [`spread`](FailoverLayer::spread) | [`Off`](crate::Spread::Off) (priority order) |
//! | [`classifier`](FailoverLayer::classifier) | [`MethodRules::ethereum`](crate::MethodRules::ethereum) |
//! | [`failure_rules`](FailoverLayer::failure_rules) | [`FailureRules::default`](crate::FailureRules) |
//! | [`hedge`](FailoverLayer::hedge) | none |
//! | [`attempt_deadline`](FailoverLayer::attempt_deadline) | adaptive: p99 × 4, within 150 ms – 3 s |
//! | [`budget`](FailoverLayer::budget) | 10 % of successful attempts, 20 tokens |
//! | [`health_check`](FailoverLayer::health_check) | none (head probes with head tracking); re-test every 1 s |
//! | [`queue`](FailoverLayer::queue) | 1024 calls, 5 s |

pub(crate) mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::FailoverLayer;
pub use service::Failover;
