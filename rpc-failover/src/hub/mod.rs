//! A subscription hub: `eth_subscribe("newHeads")`, `("logs", filter)` and
//! `("newPendingTransactions")` for every client from shared sources, kept
//! whole across failover.
//!
//! [`SubscriptionHub`] is a [`SubscriptionSource`](rpc_core::subscription::SubscriptionSource)
//! (give it to `WsConfig::subscriptions`). Its source is polling through a
//! service — typically a head-tracking [failover group](crate::failover),
//! so the poll reaches a member at the agreed head and moves to another
//! when one dies, freezes or lags; a user whose providers have no
//! WebSocket still gets subscriptions:
//!
//! * **one source per kind**: every `newHeads` subscriber shares one poller
//!   (`eth_getBlockByNumber("latest", false)` every `poll_interval`),
//!   started with the first subscriber and stopped with the last; like a
//!   node, it notifies the blocks after the one current when it started;
//! * **nothing missed, nothing twice**: each new head is linked to the
//!   last one delivered by its parent hash; a gap (several blocks between
//!   polls, or a source that was down) is backfilled by parent hash, oldest
//!   first; a block already delivered is never sent again;
//! * **reorganisations**: when the new head does not descend from the last
//!   delivered one, the branch is walked back to the block it forks from
//!   and its blocks are announced (the replaced heights again, with their
//!   new hashes), as a node does;
//! * **never backwards**: a head below the last one delivered (a member
//!   behind) is ignored.
//!
//! Notifications are the block header as the node returns it, without its
//! transaction list.
//!
//! **`logs`** (`address` and `topics`, as `eth_getLogs` takes them): one
//! poller per distinct filter follows the head poller — for every new block
//! its logs (`eth_getLogs` by `blockHash`, so a reorganisation cannot mix
//! branches), in order; for every block a reorganisation replaced, the logs
//! sent for it again with `"removed": true` (newest first), before the new
//! branch's. A block whose logs cannot be fetched in three tries is logged
//! as a gap.
//!
//! **WebSocket members** ([`push_source`](SubscriptionHubBuilder::push_source),
//! e.g. `rpc_core::WsBackend`): their own `newHeads` wake the head poller
//! as soon as a block is announced — a cue, never a fact: the head is still
//! read through the service, so a source that lies or freezes changes
//! nothing but how soon the hub looks.
//!
//! **`newPendingTransactions`** (hashes): from the push sources' own
//! subscriptions, one at a time, moving to the next when one fails; without
//! push sources, from a pending-transaction filter polled through the
//! service (`eth_newPendingTransactionFilter`, `eth_getFilterChanges`; made
//! again when its member is lost). Each hash is sent once; a mempool has no
//! history, so hashes seen only while no source was reachable are not
//! backfilled. `["newPendingTransactions", true]` (full transactions) is
//! refused with `-32602`.
//!
//! ```
//! use std::time::Duration;
//! use rpc_core::test_util::MockBackend;
//! use rpc_failover::SubscriptionHub;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let source = MockBackend::ok("node", r#"{"number":"0x1","hash":"0xa","parentHash":"0x0"}"#);
//! let hub = SubscriptionHub::builder(source)
//!     .poll_interval(Duration::from_millis(500))
//!     .build();
//! # drop(hub);
//! # }
//! ```

mod heads;

pub use heads::{SubscriptionHub, SubscriptionHubBuilder};
