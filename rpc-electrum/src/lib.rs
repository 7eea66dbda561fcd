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
pub mod chain;
mod config;
pub mod netgroup;
mod pool;
mod tip;
mod tls;
pub mod tx;
mod worker;

pub use backend::{ElectrumBackend, ElectrumBackendBuilder, ResponseFuture, Unchecked};
pub use config::{BuildError, TlsVerify};
pub use netgroup::NetworkGroup;
pub use pool::{PoolSubscriptions, Subscriber};
pub use tip::{TipBoard, TipSlot};
pub use worker::{parse_line, Line, Notification};
