//! Node-side handles (Ethereum filters) kept on the node that made them,
//! whatever the group's spreading.
//!
//! `eth_newFilter` creates a filter on the node that answered; a later
//! `eth_getFilterChanges` sent to another node finds nothing ("filter not
//! found" for half the calls under round-robin; a client polling
//! `watchContractEvent` gets no events). [`HandleLayer`], put directly
//! above a [failover group](crate::failover), pins each handle to its node:
//!
//! * a call that [creates](rpc_core::protocol::Handle::Creates) one is
//!   answered with a new id of the layer's own (128 random bits, so ids of
//!   different nodes never collide and cannot be guessed), remembered with
//!   the member that answered ([`ServedBy`](rpc_core::ServedBy)) and the
//!   node's id;
//! * a call that [uses](rpc_core::protocol::Handle::Uses) or
//!   [removes](rpc_core::protocol::Handle::Removes) one has its first param
//!   put back to the node's id and goes only to that member
//!   ([`Pin`](crate::Pin));
//! * an unknown (or expired, or uninstalled) id is answered `-32000
//!   "filter not found"` (what a node says; clients then create a new
//!   filter); when its member cannot be reached the call fails like any
//!   call (`-32011`) and the filter is kept for when the node is back —
//!   it is never sent to another node, whose same id is another filter.
//!
//! Which methods do what comes from the protocol vocabulary
//! ([`MethodFacts::handle`](rpc_core::protocol::MethodFacts::handle)).
//! Handles unused for the TTL (5 minutes, a node's own filter timeout) are
//! forgotten, and at most `max_handles` (100 000) are kept. The router
//! above must send a handle's methods to the same group (they share a
//! default route in `rpc-proxy`).
//!
//! ```
//! use rpc_core::protocol::Protocol;
//! use rpc_failover::HandleLayer;
//!
//! let layer = HandleLayer::new(&Protocol::ethereum());
//! # drop(layer);
//! ```

mod layer;
mod service;

pub use layer::HandleLayer;
pub use service::Handles;
