//! # rpc-core
//!
//! The foundation of a crate family for resilient JSON-RPC: the types every
//! layer passes around, the one service trait they all speak, an HTTP backend,
//! an HTTP front and a method filter.
//!
//! * [`Request`], [`Response`], [`Id`], [`ErrorObject`] and [`RawJson`]: params
//!   and results stay raw JSON, zero-copy slices of the bytes they arrived in.
//! * [`RpcError`]: every way a call can end without an answer, with whether it
//!   may have been delivered, whether a retry can help, and the one error the
//!   client sees.
//! * [`JsonRpcService`]: a trait alias over `tower::Service<Request>`;
//!   [`BoxJsonRpcService`] is its type-erased form, and
//!   [`SharedJsonRpcService`] one whose clones share the stack (a reference
//!   count each, for stacks cloned per call).
//! * `HttpBackend` (feature `http-backend`): a named backend on its own
//!   pool of keep-alive connections (http and https; HTTP/1.1, or HTTP/2
//!   on hyper when the server offers it).
//! * `WsBackend` (feature `ws-backend`): a named backend on one WebSocket
//!   (ws and wss), for calls and upstream subscriptions
//!   ([`subscription::PushSource`]).
//! * `server` (feature `server`): an HTTP front that turns HTTP bodies
//!   (single calls and batches) into calls of any `JsonRpcService`, usable on
//!   its own or mounted in axum.
//!
//! Cargo features, like tower-http's: `server`, `http-backend` and
//! `rate-limit` (all on by default). Without them the crate is the types,
//! the trait and the layers, with no HTTP stack and no TLS — what a crate
//! that only writes a layer needs (`default-features = false`).
//! * [`filter::MethodFilterLayer`]: allow- and deny-lists of methods.
//!
//! ```no_run
//! use std::time::Duration;
//! use rpc_core::filter::{MethodFilter, MethodFilterLayer};
//! use rpc_core::server::{serve, ServerConfig};
//! use rpc_core::HttpBackend;
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = HttpBackend::builder("node", "http://127.0.0.1:8545")
//!     .timeout(Duration::from_secs(10))
//!     .build()?;
//! let stack = ServiceBuilder::new()
//!     .layer(MethodFilterLayer::new(MethodFilter::allow(["eth_*", "net_version"])?))
//!     .service(backend);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8546").await?;
//! serve(listener, stack, ServerConfig::default(), std::future::pending()).await;
//! # Ok(()) }
//! ```
//!
//! ## Extensions: what layers tell each other
//!
//! Layers pass facts in the [`Extensions`] of calls and answers, never
//! by depending on each other. Who sets and who reads each type:
//!
//! | type | on | set by | read by |
//! |---|---|---|---|
//! | [`Deadline`] | call | the HTTP front (request timeout, or an earlier one already there) | every layer that waits: groups, retry, backends, the cache's coalescing |
//! | [`RemoteAddr`] | call | the front: the TCP peer, or the client named by a trusted proxy | rate limits, logs |
//! | [`ApiKey`] | call | the front, from `ServerConfig::api_key_header` | rate limits, metrics |
//! | [`SessionId`] | call | the front, from `ServerConfig::session_header` | `rpc_failover::ConsistencyLayer` |
//! | [`TraceContext`] | call | the front, with `ServerConfig::trace_context` | `HttpBackend` (sent on as `traceparent` / `tracestate`) |
//! | [`ConnectionId`] | call | `server::serve`, per connection | `ConsistencyLayer` (per-connection sessions) |
//! | [`BatchPosition`] | call | the front, for batch items | metrics, logs |
//! | [`MinHead`] | call | `ConsistencyLayer` | head-tracking groups (never answer from below it) |
//! | [`ServedBy`] | answer | backends (`HttpBackend`, `ElectrumBackend`), groups if missing | metrics, `x-served-by`, quorum reports |
//! | [`Attempts`] | answer | failover groups | metrics, logs |
//! | [`CacheStatus`] | answer | `rpc_cache::CacheLayer` | metrics, `x-cache` |
//! | [`ChainHead`] / [`HeadBlock`] | answer | adapters that follow the tip (Electrum), head-tracking groups | groups (head learning), the cache (tip epochs) |
//! | [`AgreedChain`] | answer | head-tracking groups | the cache (settled blocks, tip freshness) |
//!
//! [`ChainView`] is not an extension: a group hands it to the cache once
//! (`Failover::chain_view` → `CacheLayer::chain_view`) and both read it live.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod admission;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod auth;
#[cfg(any(feature = "http-backend", feature = "ws-backend"))]
mod backend_error;
pub mod batch;
#[cfg(any(feature = "server", feature = "http-backend"))]
mod body;
mod budget;
pub mod buffers;
mod error;
mod error_object;
mod ext;
mod extensions;
pub mod filter;
#[cfg(feature = "http-backend")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-backend")))]
mod http_backend;
mod id;
mod json_scan;
pub mod methods;
pub mod parse;
pub mod protocol;
#[cfg(feature = "rate-limit")]
pub mod ratelimit;
mod raw;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub mod reload;
mod request;
mod response;
pub mod route;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
mod service;
pub mod subscription;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod test_util;
#[cfg(any(feature = "http-backend", feature = "ws-backend"))]
mod userinfo;
#[cfg(feature = "ws-backend")]
#[cfg_attr(docsrs, doc(cfg(feature = "ws-backend")))]
mod ws_backend;

#[cfg(any(feature = "http-backend", feature = "ws-backend"))]
pub use backend_error::BuildError;
pub use batch::{Batch, BatchAnswers, JsonRpcBatchService};
pub use budget::{ByteBudget, BytePermit};
pub use error::{BoxError, Delivery, QuorumVote, RpcError};
pub use error_object::{codes, ErrorObject};
pub use ext::{
    AgreedChain, ApiKey, Attempts, BatchPosition, CacheStatus, ChainHead, ChainView, ConnectionId,
    HeadBlock, MinHead, RouteTo, ServedBy, SessionId, TraceContext,
};
pub use extensions::Extensions;
#[cfg(feature = "http-backend")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-backend")))]
pub use http_backend::{CrossClient, HttpBackend, HttpBackendBuilder};
pub use id::Id;
pub use raw::{ArrayJoiner, JoinError, RawJson};
pub use request::{Deadline, RemoteAddr, Request};
pub use response::{Payload, Response};
pub use service::{
    BoxJsonRpcService, BoxedResponseFuture, JsonRpcService, Named, SharedJsonRpcService,
};
#[cfg(feature = "ws-backend")]
#[cfg_attr(docsrs, doc(cfg(feature = "ws-backend")))]
pub use ws_backend::{WsBackend, WsBackendBuilder};
