//! A resilient Electrum protocol backend for the JSON-RPC tower stack.
//!
//! [`ElectrumBackend`] speaks the Electrum protocol (newline-delimited
//! JSON-RPC 2.0 over TCP or TLS) to one server over one long-lived,
//! multiplexed connection, and is a [`JsonRpcService`](rpc_core::JsonRpcService):
//! put several in a `rpc_failover` group for a pool. It never hangs: a dead
//! or silent server is detected within seconds, calls in flight fail at once
//! as "maybe delivered", calls made while it is down fail at once as "not
//! sent", and every call has a deadline.

pub mod address;
mod backend;
mod config;
mod pool;
mod tls;
mod worker;

pub use backend::{ElectrumBackend, ElectrumBackendBuilder, ResponseFuture};
pub use config::{BuildError, TlsVerify};
pub use pool::PoolSubscriptions;
pub use worker::{parse_line, Line, Notification};

/// The best tip height among a pool of servers, shared by their backends
/// (see [`ElectrumBackendBuilder::tip_board`]). Lock-free.
///
/// ```
/// use rpc_electrum::TipBoard;
///
/// let board = TipBoard::new();
/// board.post(100);
/// board.post(98);
/// assert_eq!(board.best(), 100);
/// ```
#[derive(Clone, Debug, Default)]
pub struct TipBoard(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl TipBoard {
    /// An empty board (best tip 0).
    pub fn new() -> Self {
        TipBoard::default()
    }

    /// Reports a server's tip.
    pub fn post(&self, height: u64) {
        self.0
            .fetch_max(height, std::sync::atomic::Ordering::Relaxed);
    }

    /// The best tip reported so far.
    pub fn best(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}
