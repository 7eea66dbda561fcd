//! Metrics and per-call logs for JSON-RPC stacks: which calls fail, where and
//! why.
//!
//! [`MetricsLayer`] records through the [`metrics`] facade; the crates never
//! install a recorder (the binary does: `rpc-proxy --metrics-listen` uses
//! `metrics-exporter-prometheus`). Call [`describe`] once after installing
//! one to register the descriptions below.
//!
//! ## Metrics
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `rpc_requests_total` | counter | `method`, `outcome` | calls answered to clients; `outcome` is `ok` (a result), `error` (the backend's error object), `failed` (no answer: -32011, -32015, ...) or `rejected` (method not allowed, invalid params, rate limited) |
//! | `rpc_request_duration_seconds` | histogram | `method` | time to answer a client's call |
//! | `rpc_requests_in_flight` | gauge | — | client calls in progress |
//! | `rpc_response_errors_total` | counter | `method`, `code` | JSON-RPC error codes answered to clients (the backend's own codes and ours) |
//! | `rpc_batch_size` | histogram | — | calls per client batch |
//! | `rpc_backend_batch_size` | histogram | `backend` | calls per upstream batch a backend sent (rpc-core `HttpBackend`, `max_batch`) |
//! | `rpc_getlogs_split_total` | counter | — | `eth_getLogs` calls split into chunks (rpc-failover `LogRangeLayer`) |
//! | `rpc_cache_requests_total` | counter | `method`, `status` | cache outcome: `hit`, `miss`, `coalesced`, `bypass` |
//! | `rpc_backend_requests_total` | counter | `backend`, `method`, `outcome` | calls sent to a backend: `ok`, `error`, `failed` |
//! | `rpc_backend_request_duration_seconds` | histogram | `backend`, `method` | a backend's time to answer |
//! | `rpc_backend_errors_total` | counter | `backend`, `method`, `code` | the raw JSON-RPC error codes each backend answered |
//! | `rpc_backend_failures_total` | counter | `backend`, `reason` | calls a backend did not answer: `connect`, `timeout`, `http_status`, `closed`, `invalid_response`, `too_large`, `deadline`, `other` |
//! | `rpc_backend_in_service` | gauge | `backend` | 1 while a group member is in service, 0 while out (rpc-failover) |
//! | `rpc_backend_out_of_service_total` | counter | `backend`, `reason` | a group member went out of service, and why: `stall`, `timeout`, `error`, `refused`, `probe` (rpc-failover) |
//! | `rpc_connections_open` | gauge | — | client connections open (rpc-core's `serve`) |
//! | `rpc_connections_refused_total` | counter | `reason` (`max_connections`, `max_connections_per_ip`) | connections closed at once: a cap was reached and none was idle |
//! | `rpc_connections_closed_total` | counter | `reason` (`make_room`, `idle`) | connections the server closed: the longest idle one at a cap, or idle past the idle timeout |
//! | `rpc_backend_stalls_total` | counter | `backend` | attempts that passed their stall deadline without an answer (rpc-failover) |
//! | `rpc_backend_concurrency_limit` | gauge | `backend` | a member's concurrency limit now (rpc-failover, members with a limit) |
//! | `rpc_failovers_total` | counter | `backend` | a call moved on from this backend (rpc-failover) |
//! | `rpc_hedges_total` | counter | — | hedged attempts sent (rpc-failover) |
//! | `rpc_quorum_failures_total` | counter | — | quorum calls without agreement (rpc-failover) |
//! | `rpc_retries_total` | counter | — | retries made (rpc-failover) |
//! | `rpc_retry_budget_exhausted_total` | counter | — | retries, hedges and failovers refused by the budget (rpc-failover) |
//! | `rpc_backend_head` | gauge | `backend` | a member's chain head (rpc-failover head tracking) |
//! | `rpc_backend_head_lag` | gauge | `backend` | blocks a member is behind its group's best head |
//! | `rpc_backend_lagging` | gauge | `backend` | 1 while a member is out of rotation for its head (lagging, stalling, or suspect) |
//! | `rpc_backend_suspect` | gauge | `backend`, `reason` | 1 while a member's head is not believed: `ahead` (far above the agreed head), `unconfirmed` (a claim the agreed head never reached), `fork` (a minority fork) |
//! | `rpc_chain_reorgs_total` | counter | — | reorganisations a head-tracking group saw (a changed block at an agreed height, or the agreed head going back) |
//! | `rpc_chain_split` | gauge | — | 1 while a head-tracking group's members disagree on the block at one height with no majority (an even split: nobody is taken out) |
//!
//! The histograms are meant as histograms: a Prometheus exporter renders
//! them as summaries unless it is given buckets, which [`buckets`] provides.
//!
//! Labels are bounded: `method` is a known method name ([`MethodLabels`]) or
//! `other`; `code` is one of the first 64 distinct codes a layer saw, then
//! `other`; `backend` is a configured name, never a URL.
//!
//! ## Tracing
//!
//! The client-scope layer opens a `rpc.call` span (debug level) per call with
//! `method` and `id`, and records `backend`, `attempts`, `cache`, `code` and
//! `ms` when it ends, then logs `call answered` in it; each backend-scope layer
//! logs one debug event per attempt inside it. With debug disabled, nothing is
//! formatted.
//!
//! ```
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//! use rpc_core::{Id, RawJson, Request, Response, RpcError};
//! use rpc_metrics::MetricsLayer;
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! metrics::with_local_recorder(&recorder, || {
//!     let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//!     let node = service_fn(|r: Request| async move {
//!         Ok::<_, RpcError>(Response::result(r.id().cloned().unwrap_or_default(), RawJson::NULL))
//!     });
//!     let svc = MetricsLayer::client().layer(node);
//!     rt.block_on(svc.oneshot(Request::new("eth_chainId").with_id(Id::from(1u64)))).unwrap();
//! });
//! let ok = snapshotter.snapshot().into_vec().into_iter().find(|(key, ..)| {
//!     key.key().name() == "rpc_requests_total"
//!         && key.key().labels().any(|l| l.key() == "outcome" && l.value() == "ok")
//! });
//! assert!(matches!(ok, Some((_, _, _, DebugValue::Counter(1)))));
//! ```

pub mod buckets;
mod labels;
mod layer;
pub mod names;
mod service;

pub use labels::MethodLabels;
pub use layer::MetricsLayer;
pub use service::{Metrics, ResponseFuture};

/// Registers the description, type and unit of every metric in the table
/// above with the installed recorder. Call once, after installing it.
pub fn describe() {
    use names::Kind;
    for (name, kind, text) in names::ALL {
        let unit = if name.ends_with("_seconds") {
            Some(metrics::Unit::Seconds)
        } else {
            None
        };
        match (kind, unit) {
            (Kind::Counter, _) => metrics::describe_counter!(*name, *text),
            (Kind::Gauge, _) => metrics::describe_gauge!(*name, *text),
            (Kind::Histogram, Some(u)) => metrics::describe_histogram!(*name, u, *text),
            (Kind::Histogram, None) => metrics::describe_histogram!(*name, *text),
        }
    }
}
