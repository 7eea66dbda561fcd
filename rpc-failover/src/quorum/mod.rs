//! Ask *n* members at once; answer as soon as *k* agree.
//!
//! [`QuorumLayer`] turns a `Vec` of [`Member`](crate::Member)s into a
//! [`Quorum`] service. For a read or a broadcast, the call goes to `n`
//! healthy members concurrently (in priority order, like failover). The first
//! moment `k` of them have given the *same* answer — byte-equal raw `result`,
//! or equal error objects — that answer is returned and the stragglers are
//! cancelled: latency is that of the k-th fastest agreeing member, not the
//! slowest. As soon as agreement has become impossible (too many failures or
//! too many different answers), the call fails at once with
//! [`RpcError::QuorumNotReached`](rpc_core::RpcError::QuorumNotReached)
//! (`-32019`, HTTP 502), whose `votes` say which member answered what (by
//! name). Methods that are [unsafe to repeat](crate::Idempotency::Unsafe) are
//! not fanned out: they go to one member, with failover's rules.
//!
//! Members' health is tracked as in a failover group (out-of-service window,
//! trial call), so a dead member is not asked until it is back.
//!
//! ```
//! use std::time::Duration;
//! use rpc_core::HttpBackend;
//! use rpc_failover::{Member, QuorumLayer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let members = (0..3)
//!     .map(|i| {
//!         let name = format!("node{i}");
//!         let url = format!("http://127.0.0.1:{}", 8545 + i);
//!         Ok(Member::new(name.clone(), HttpBackend::builder(name, url).build()?))
//!     })
//!     .collect::<Result<Vec<_>, rpc_core::BuildError>>()?;
//! let two_of_three = QuorumLayer::new(2).timeout(Duration::from_secs(3)).build(members)?;
//! # let _ = two_of_three;
//! # Ok(())
//! # }
//! ```

mod layer;
mod service;

pub use layer::QuorumLayer;
pub use service::Quorum;
