//! A method-aware JSON-RPC response cache with in-flight coalescing, as a
//! tower layer.
//!
//! A wrong cache entry is a correctness bug, so what is cached is decided per
//! method, and for many methods per call, by [`CacheRules`]: shipped sets for
//! [Ethereum](CacheRules::ethereum) (block tags, numbers, hashes, EIP-1898
//! objects, log filters, receipts by their block) and
//! [Electrum](CacheRules::electrum) (heights, raw transactions), overridable
//! per method. Keys ([`CacheKey`]) are the method and the params normalised
//! (whitespace, object key order, hex case); the id is never part of a key
//! and every hit is answered under the caller's id. Params that cannot be
//! keyed exactly — with a duplicated object key (`{"to":A,"to":B}`: the
//! backend may read another value than the key would), a float or an
//! oversized number — are never cached: the call passes through (`BYPASS`).
//!
//! Answers kept for a TTL (those that follow the chain tip) are never served
//! across a change the cache can see: a higher head (learned from
//! `eth_blockNumber` / `blockchain.headers.subscribe` answers or
//! [`Cache::observe_head`]) or a successful write passing through
//! ([`CacheRules::write`]: `eth_sendRawTransaction`, dev-node controls,
//! `blockchain.transaction.broadcast`) starts a new *tip epoch*, and such
//! answers are keyed by their epoch. A client that sends a transaction and
//! then reads its balance or the block number sees the new state, not a copy
//! from before its write (found by the `viem` end-to-end test).
//!
//! Identical cacheable calls in flight share one upstream call; if it fails,
//! every waiter gets the error. Each response carries a [`CacheStatus`] in
//! its extensions (for metrics and an `X-Cache`-style header).
//!
//! ```
//! use rpc_cache::{CacheLayer, CacheRules, CacheStatus};
//! use rpc_core::{Id, RawJson, Request, Response, RpcError};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), RpcError> {
//! let node = service_fn(|req: Request| async move {
//!     let id = req.id().cloned().unwrap_or_default();
//!     Ok::<_, RpcError>(Response::result(id, RawJson::from_static("\"0x1\"").expect("json")))
//! });
//! let cached = CacheLayer::new(CacheRules::ethereum()).layer(node);
//!
//! let first = cached.clone().oneshot(Request::new("eth_chainId").with_id(Id::from(1u64))).await?;
//! let second = cached.clone().oneshot(Request::new("eth_chainId").with_id(Id::from(2u64))).await?;
//! assert_eq!(first.extensions().get::<CacheStatus>(), Some(&CacheStatus::Miss));
//! assert_eq!(second.extensions().get::<CacheStatus>(), Some(&CacheStatus::Hit));
//! assert_eq!(second.id(), &Id::from(2u64));
//! # Ok(())
//! # }
//! ```

mod key;
mod layer;
#[cfg(feature = "redis")]
mod redis_store;
mod rules;
mod service;
mod store;

pub use key::CacheKey;
pub use layer::CacheLayer;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_store::RedisStore;
pub use rules::{CacheRules, Rule};
pub use service::{Cache, Refresh, ResponseFuture};
pub use store::{CacheStore, MemoryStore};

pub use rpc_core::CacheStatus;
