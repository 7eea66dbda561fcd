//! The metrics this crate records through the [`metrics`] facade (it never
//! installs a recorder). The full table, with the client- and backend-side
//! metrics, is in `rpc_metrics`' documentation; `rpc_metrics::describe()`
//! registers descriptions for all of them.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `rpc_backend_in_service` | gauge (1/0) | `backend` |
//! | `rpc_backend_out_of_service_total` | counter | `backend`, `reason` (`stall`, `timeout`, `error`, `refused`, `probe`) |
//! | `rpc_backend_stalls_total` | counter | `backend` (attempts past their stall deadline) |
//! | `rpc_backend_concurrency_limit` | gauge | `backend` (members with a concurrency limit) |
//! | `rpc_failovers_total` | counter | `backend` (the one the call left) |
//! | `rpc_hedges_total` | counter | — |
//! | `rpc_multicalls_total` | counter | — (broadcasts sent to every member) |
//! | `rpc_quorum_failures_total` | counter | — |
//! | `rpc_retries_total` | counter | — |
//! | `rpc_retry_budget_exhausted_total` | counter | — |
//! | `rpc_backend_head` | gauge | `backend` (head tracking) |
//! | `rpc_backend_head_lag` | gauge (blocks behind the best) | `backend` |
//! | `rpc_backend_lagging` | gauge (1/0: out of rotation for its head) | `backend` |
//! | `rpc_backend_suspect` | gauge (1/0) | `backend`, `reason` (`ahead`, `unconfirmed`, `fork`) |
//! | `rpc_chain_reorgs_total` | counter | — |
//! | `rpc_chain_split` | gauge (1/0) | — (members disagree at one height, no majority) |

/// Gauge: 1 while a member is in service, 0 while its out-of-service window runs.
pub const IN_SERVICE: &str = "rpc_backend_in_service";
/// Counter: a member went out of service, by reason.
pub const OUT_OF_SERVICE: &str = "rpc_backend_out_of_service_total";
/// Counter: an attempt passed its stall deadline without an answer.
pub const STALLS: &str = "rpc_backend_stalls_total";
/// Gauge: a member's concurrency limit now (it moves when adaptive).
pub const CONCURRENCY_LIMIT: &str = "rpc_backend_concurrency_limit";
/// Counter: a call moved on from this member to the next.
pub const FAILOVERS: &str = "rpc_failovers_total";
/// Counter: a broadcast was sent to every member at once (multicall).
pub const MULTICALLS: &str = "rpc_multicalls_total";
/// Counter: a hedge was sent.
pub const HEDGES: &str = "rpc_hedges_total";
/// Counter: a quorum call ended without agreement.
pub const QUORUM_FAILURES: &str = "rpc_quorum_failures_total";
/// Counter: a retry was made.
pub const RETRIES: &str = "rpc_retries_total";
/// Counter: a retry, hedge or failover was refused because the budget was spent.
pub const RETRY_BUDGET_EXHAUSTED: &str = "rpc_retry_budget_exhausted_total";
/// Gauge: a member's chain head, as the group's head tracker knows it.
pub const HEAD: &str = "rpc_backend_head";
/// Gauge: blocks a member is behind the reference head of its group.
pub const HEAD_LAG: &str = "rpc_backend_head_lag";
/// Gauge: 1 while a member is out of rotation for lagging, else 0.
pub const LAGGING: &str = "rpc_backend_lagging";
/// Gauge: 1 while a member's head is not believed, by reason.
pub const SUSPECT: &str = "rpc_backend_suspect";
/// Counter: a head-tracking group saw the chain reorganise.
pub const REORGS: &str = "rpc_chain_reorgs_total";
/// Gauge: 1 while a head-tracking group's members disagree on the block at
/// one height with no majority to decide (an even split), else 0.
pub const SPLIT: &str = "rpc_chain_split";
