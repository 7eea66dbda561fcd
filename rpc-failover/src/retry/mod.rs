//! Retrying calls that failed in a way that may pass: built on
//! [`tower::retry`] with a JSON-RPC aware [`RetryPolicy`].
//!
//! A call is repeated only when
//!
//! * the failure is [retryable](rpc_core::RpcError::is_retryable) (or the
//!   answer is an error object that [`FailureRules`](crate::FailureRules)
//!   count as a refusal, like a rate limit);
//! * it is *safe*: the call certainly was not sent, or the
//!   [classifier](crate::Classifier) says the method may be repeated;
//! * attempts remain, the backoff fits before the call's
//!   [`Deadline`](rpc_core::Deadline), and the [`RetryBudget`] has a token.
//!
//! Backoff is exponential with jitter; a backend's `Retry-After` (or a
//! group's "back in …") is honoured, clamped to `max_retry_after`.
//!
//! | setting | default |
//! |---|---|
//! | [`max_retries`](RetryLayer::max_retries) | 3 (4 attempts) |
//! | [`backoff`](RetryLayer::backoff) | 250 ms, doubling, at most 2 s |
//! | [`jitter`](RetryLayer::jitter) | 0.5 (each delay is 50–100 % of the schedule) |
//! | [`max_retry_after`](RetryLayer::max_retry_after) | 5 s |
//! | [`budget`](RetryLayer::budget) | 10 % of successful attempts, 20 tokens ([`RetryBudget`]) |
//! | [`classifier`](RetryLayer::classifier) | [`MethodRules::ethereum`](crate::MethodRules::ethereum) |
//!
//! Put it above a [failover group](crate::failover): the group tries each
//! member once, the retry layer waits and lets the group try again.
//!
//! ```
//! use std::time::Duration;
//! use rpc_failover::{RetryBudget, RetryLayer};
//!
//! let retry = RetryLayer::new()
//!     .max_retries(2)
//!     .backoff(Duration::from_millis(100), Duration::from_secs(1))
//!     .budget(RetryBudget::new(0.1));
//! # let _ = retry;
//! ```

mod budget;
mod layer;
mod policy;

pub use budget::RetryBudget;
pub use layer::{Retry, RetryLayer};
pub use policy::RetryPolicy;
