//! Failover, retry, quorum and hedging over groups of JSON-RPC backends.
//!
//! * [`FailoverLayer`] — the settings of a group of [`Member`]s tried in
//!   priority order, with out-of-service windows, background re-tests and
//!   optional load spreading; [`FailoverLayer::hedge`] races a slow read
//!   against the next member. `build(members)` returns the group (a service)
//!   or a [`GroupError`].
//! * [`QuorumLayer`] — asks *n* members at once and answers as soon as *k*
//!   agree (built the same way).
//! * [`RetryLayer`] — waits and tries again (backoff with jitter,
//!   `Retry-After`, deadline, budget).
//! * [Head tracking](head) ([`FailoverLayer::head_tracking`]) — members that
//!   answer but are behind (or frozen behind) leave rotation; explicit blocks
//!   go to members that have them; [`ConsistencyLayer`] keeps each client
//!   session from seeing the chain go backwards.
//!
//! All of them share one rule: a call that may already have reached a
//! backend is repeated only if its method is safe to repeat ([`Classifier`],
//! with [`MethodRules`] for Ethereum and Electrum).
//!
//! ```
//! use std::time::Duration;
//! use rpc_core::{HttpBackend, JsonRpcService};
//! use rpc_failover::{FailoverLayer, Member, RetryLayer};
//! use tower::ServiceBuilder;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let members = ["http://127.0.0.1:8545", "http://127.0.0.1:8546"]
//!     .iter()
//!     .enumerate()
//!     .map(|(i, url)| {
//!         let name = format!("node{i}");
//!         Ok(Member::new(name.clone(), HttpBackend::builder(name, *url).build()?))
//!     })
//!     .collect::<Result<Vec<_>, rpc_core::BuildError>>()?;
//!
//! let group = FailoverLayer::new()
//!     .out_of_service(Duration::from_secs(5))
//!     .build(members)?;
//! let service = ServiceBuilder::new()
//!     .layer(RetryLayer::new().max_retries(2))
//!     .service(group);
//! # fn check(_: impl JsonRpcService) {}
//! # check(service);
//! # Ok(())
//! # }
//! ```

pub mod classify;
pub mod deadline;
pub mod failover;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod fleet;
mod group;
pub mod handle;
pub mod head;
pub mod hedge;
mod histogram;
pub mod hub;
pub mod logs;
mod member;
pub mod names;
pub mod quorum;
pub mod retry;

pub use classify::{BlockTag, Classifier, FailureRules, Idempotency, MethodRules};
pub use deadline::AttemptDeadline;
pub use failover::{Failover, FailoverLayer};
pub use group::{
    GroupError, HealthCheck, MemberStatus, OutReason, Spread, WhenAllDown, MAX_MEMBERS,
};
pub use handle::{HandleLayer, Handles};
pub use head::{ConsistencyLayer, HeadPolicy, HeadProbe, Suspicion};
pub use hedge::HedgePolicy;
pub use hub::{SubscriptionHub, SubscriptionHubBuilder};
pub use logs::{LogRange, LogRangeLayer};
pub use member::{ConcurrencyLimit, Member};
pub use quorum::{Quorum, QuorumLayer};
pub use retry::{Retry, RetryBudget, RetryLayer, RetryPolicy};

/// A request extension: send this call only to the group member with this
/// name (node-side state lives there); no other member is tried. Set by
/// [`HandleLayer`]; a name no member has fails the call as
/// [`NoBackendAvailable`](rpc_core::RpcError::NoBackendAvailable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin(pub std::sync::Arc<str>);
