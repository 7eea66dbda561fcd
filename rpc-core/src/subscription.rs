//! Subscriptions a front serves to its clients (over WebSocket: see
//! `server::WsConfig::subscriptions`): the source trait a hub implements,
//! with no server or HTTP dependency, so layer crates can provide one.
//!
//! ```
//! use futures_util::StreamExt;
//! use rpc_core::subscription::{Subscription, SubscriptionSource};
//! use rpc_core::{ErrorObject, RawJson};
//!
//! /// Notifies `1`, `2`, `3` to every subscriber.
//! struct Count;
//! impl SubscriptionSource for Count {
//!     fn subscribe(&self, _params: Option<&RawJson>) -> Result<Subscription, ErrorObject> {
//!         Ok(futures_util::stream::iter(1..=3)
//!             .map(|i| RawJson::from_serialize(&i).unwrap())
//!             .boxed())
//!     }
//! }
//! ```

use crate::ErrorObject;

/// A live subscription: the `result` of each notification, in order; it
/// ends when the source ends it.
pub type Subscription = futures_util::stream::BoxStream<'static, crate::RawJson>;

/// Where WebSocket subscriptions come from (a hub shared by every
/// socket): `subscribe` starts one from the call's params (for Ethereum,
/// `["newHeads"]` and friends) or says why not.
pub trait SubscriptionSource: Send + Sync + 'static {
    /// Starts the subscription `params` describe.
    fn subscribe(&self, params: Option<&crate::RawJson>) -> Result<Subscription, ErrorObject>;
}

impl std::fmt::Debug for dyn SubscriptionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubscriptionSource")
    }
}
