//! The HTTP front: turns HTTP requests into calls of any
//! [`JsonRpcService`](crate::JsonRpcService).
//!
//! [`HttpFront`] is a plain `tower::Service<http::Request<B>>`, so it can be
//! mounted in axum or any tower-based server; [`serve`] runs it on a
//! `TcpListener` with HTTP/1.1 and h2c, timeouts and graceful shutdown.
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
//! * Every call carries a [`Deadline`](crate::Deadline) (the request timeout) in
//!   its extensions, and the front itself stops waiting at it (`504`, `-32015`).
//!   A panic in the inner service becomes `500`, `-32603`; the front never
//!   answers a JSON-RPC failure with a non-JSON body.

mod config;
mod front;
mod serve;
mod signal;

pub use config::ServerConfig;
pub use front::{HttpFront, ResponseBody};
pub use serve::{serve, serve_with_layer};
pub use signal::shutdown_signal;
