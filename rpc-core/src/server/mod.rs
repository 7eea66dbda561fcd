//! The HTTP front: turns HTTP requests into calls of any
//! [`JsonRpcService`](crate::JsonRpcService).
//!
//! [`HttpFront`] is a plain `tower::Service<http::Request<B>>`, so it can be
//! mounted in axum or any tower-based server; [`serve`] runs it on a
//! `TcpListener` with HTTP/1.1 and h2c, timeouts and graceful shutdown.
//!
//! [`serve`] holds the process, not just each request, within budgets:
//!
//! * **Connections**: at most [`ServerConfig::max_connections`] in all and
//!   [`ServerConfig::max_connections_per_ip`] per client address (trusted
//!   proxies exempt). At a cap the connection idle longest (one that never
//!   sent a request first) is closed to make room; with none idle the new
//!   connection is closed at once, counted (`rpc_connections_refused_total`)
//!   and logged at most every 10 s.
//! * **Idle**: a connection must send its first bytes within the header
//!   timeout (before the HTTP/1 vs h2 sniff), and any connection with no
//!   request in progress for [`ServerConfig::idle_timeout`] is closed, for
//!   both protocols. h2 allows [`ServerConfig::h2_max_concurrent_streams`]
//!   streams per connection.
//!
//! What the front does with a request:
//!
//! * `GET /healthz` (configurable) answers `200 {"status":"ok"}`, or `503
//!   {"status":"unavailable"}` while a configured readiness check says the
//!   service cannot take calls ([`ServerConfig::readiness`]).
//! * A `POST` on any path is JSON-RPC (so the front can be mounted under a
//!   prefix); any other method is `405`. A `Content-Type` other than JSON is
//!   `415` (a missing one is accepted, for `curl` users).
//! * A body over the limit is `413` with `-32021`, checked against
//!   `Content-Length` first and enforced while reading; a body not received
//!   within the read timeout is `408` and the connection is closed.
//! * Not JSON: `400` with `-32700`. Valid JSON that is not a call, or `[]`:
//!   `400` with `-32600`. A batch over the limit: `413` with `-32014`, decided
//!   while scanning the array, before any item is parsed.
//! * A single call is answered with the inner service's response (`200`, also
//!   when the backend answered with its own error object), or with the
//!   [`RpcError`](crate::RpcError)'s error object and HTTP status (`Retry-After`
//!   when known).
//! * A batch runs its calls concurrently (bounded by
//!   [`ServerConfig::batch_concurrency`]) and answers `200` with one element per
//!   call, in request order; an invalid item gets its own error under its own id.
//! * Notifications are executed but get no answer: a single notification, or a
//!   batch of only notifications, is answered `204 No Content` with an empty body.
//! * Request bodies draw from one process-wide [`ByteBudget`](crate::ByteBudget)
//!   ([`ServerConfig::body_budget`]): a body that cannot get its bytes is
//!   answered `503` with `-32005` and `Retry-After: 1` before it is read.
//! * The client address in each call ([`RemoteAddr`](crate::RemoteAddr)) is
//!   the TCP peer, or, for a peer among [`ServerConfig::trusted_proxies`], the
//!   first address that is not a trusted proxy in its `Forwarded` /
//!   `X-Forwarded-For` chain; anyone else's forwarding headers are ignored.
//!   With [`ServerConfig::proxy_protocol`], a connection from a trusted proxy
//!   starts with a PROXY protocol header (v1 or v2) naming the client instead
//!   (a connection without one is closed).
//! * While [`serve`] drains after its shutdown signal, every new request (on
//!   a new or an open connection) is answered `503` with `-32011`,
//!   `Retry-After: 1` and `Connection: close`; calls already in progress
//!   finish.
//! * Every call carries a [`Deadline`](crate::Deadline) (the request timeout) in
//!   its extensions, and the front itself stops waiting at it (`504`, `-32015`).
//!   A panic in the inner service becomes `500`, `-32603`; the front never
//!   answers a JSON-RPC failure with a non-JSON body.

mod client_ip;
mod config;
mod conn;
mod front;
mod proxy_protocol;
mod serve;
mod signal;
#[cfg(feature = "websocket")]
mod ws;

pub use client_ip::{Cidr, CidrError, TrustedProxies};
pub use config::ServerConfig;
pub use front::{FrontFuture, HttpFront, ResponseBody};
pub use serve::{serve, serve_front, serve_with_layer};
pub use signal::shutdown_signal;
#[cfg(feature = "websocket")]
pub use ws::{Subscription, SubscriptionMethods, SubscriptionSource, WsConfig};
