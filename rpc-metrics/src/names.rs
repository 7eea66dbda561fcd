//! Metric names (Prometheus conventions: `_total` counters, `_seconds`
//! histograms). The table is in the [crate documentation](crate).

/// Counter `{method, outcome}`: calls answered to clients.
pub const REQUESTS: &str = "rpc_requests_total";
/// Histogram `{method}`: time to answer a client's call, in seconds.
pub const REQUEST_DURATION: &str = "rpc_request_duration_seconds";
/// Gauge: client calls in progress.
pub const IN_FLIGHT: &str = "rpc_requests_in_flight";
/// Counter `{method, code}`: JSON-RPC error codes answered to clients.
pub const RESPONSE_ERRORS: &str = "rpc_response_errors_total";
/// Histogram: calls per client batch.
pub const BATCH_SIZE: &str = "rpc_batch_size";
/// Histogram `{backend}`: calls per upstream batch a backend sent.
pub const UPSTREAM_BATCH_SIZE: &str = "rpc_backend_batch_size";
/// Counter `{method, status}`: cache outcomes (`hit`, `miss`, `coalesced`, `bypass`).
pub const CACHE: &str = "rpc_cache_requests_total";
/// Counter `{backend, method, outcome}`: calls sent to a backend.
pub const BACKEND_REQUESTS: &str = "rpc_backend_requests_total";
/// Histogram `{backend, method}`: a backend's time to answer, in seconds.
pub const BACKEND_DURATION: &str = "rpc_backend_request_duration_seconds";
/// Counter `{backend, method, code}`: raw JSON-RPC error codes a backend answered.
pub const BACKEND_ERRORS: &str = "rpc_backend_errors_total";
/// Counter `{backend, reason}`: calls a backend did not answer.
pub const BACKEND_FAILURES: &str = "rpc_backend_failures_total";

/// Every metric of the crate family with its description, for
/// [`describe`](crate::describe) and the documentation table.
pub(crate) const ALL: &[(&str, Kind, &str)] = &[
    (REQUESTS, Kind::Counter, "Calls answered to clients, by method and outcome (ok, error, failed, rejected)."),
    (REQUEST_DURATION, Kind::Histogram, "Time to answer a client's call, by method."),
    (IN_FLIGHT, Kind::Gauge, "Client calls in progress."),
    (RESPONSE_ERRORS, Kind::Counter, "JSON-RPC error codes answered to clients, by method and code."),
    (BATCH_SIZE, Kind::Histogram, "Calls per client batch."),
    (UPSTREAM_BATCH_SIZE, Kind::Histogram, "Calls per upstream batch a backend sent (rpc-core HttpBackend, max_batch)."),
    ("rpc_getlogs_split_total", Kind::Counter, "eth_getLogs calls split into chunks (rpc-failover LogRangeLayer)."),
    (CACHE, Kind::Counter, "Cache outcomes by method and status (hit, miss, coalesced, bypass)."),
    (BACKEND_REQUESTS, Kind::Counter, "Calls sent to a backend, by backend, method and outcome (ok, error, failed)."),
    (BACKEND_DURATION, Kind::Histogram, "A backend's time to answer, by backend and method."),
    (BACKEND_ERRORS, Kind::Counter, "Raw JSON-RPC error codes answered by a backend, by backend, method and code."),
    (BACKEND_FAILURES, Kind::Counter, "Calls a backend did not answer, by backend and reason (connect, timeout, http_status, closed, invalid_response, too_large, deadline, other)."),
    ("rpc_backend_in_service", Kind::Gauge, "1 while a group member is in service, 0 while it is out (rpc-failover)."),
    ("rpc_backend_out_of_service_total", Kind::Counter, "A group member went out of service, by reason (rpc-failover)."),
    ("rpc_connections_open", Kind::Gauge, "Client connections open (rpc-core serve)."),
    ("rpc_connections_refused_total", Kind::Counter, "Connections closed at once because a connection cap was reached and none was idle."),
    ("rpc_connections_closed_total", Kind::Counter, "Connections the server closed: the longest idle at a cap, or idle past the idle timeout."),
    ("rpc_backend_stalls_total", Kind::Counter, "Attempts that passed their stall deadline without an answer (rpc-failover)."),
    ("rpc_backend_concurrency_limit", Kind::Gauge, "A member's concurrency limit now (rpc-failover)."),
    ("rpc_failovers_total", Kind::Counter, "A call moved on from this backend to the next (rpc-failover)."),
    ("rpc_hedges_total", Kind::Counter, "Hedged attempts sent (rpc-failover)."),
    ("rpc_quorum_failures_total", Kind::Counter, "Quorum calls that ended without agreement (rpc-failover)."),
    ("rpc_retries_total", Kind::Counter, "Retries made (rpc-failover)."),
    ("rpc_retry_budget_exhausted_total", Kind::Counter, "Retries, hedges and failovers refused because the budget was spent (rpc-failover)."),
    ("rpc_backend_head", Kind::Gauge, "A group member's chain head, as its group's head tracker knows it (rpc-failover)."),
    ("rpc_backend_head_lag", Kind::Gauge, "Blocks a group member is behind the best head of its group (rpc-failover)."),
    ("rpc_backend_lagging", Kind::Gauge, "1 while a group member is out of rotation for its head (lagging, stalling, or suspect), else 0 (rpc-failover)."),
    ("rpc_backend_suspect", Kind::Gauge, "1 while a group member's head is not believed, by reason: ahead, unconfirmed, fork (rpc-failover)."),
    ("rpc_chain_reorgs_total", Kind::Counter, "Reorganisations a head-tracking group saw (rpc-failover)."),
    ("rpc_chain_split", Kind::Gauge, "1 while a head-tracking group's members disagree on the block at one height with no majority, else 0 (rpc-failover)."),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}
