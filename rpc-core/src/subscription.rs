//! Subscriptions a front serves to its clients (over WebSocket: see
//! `server::WsConfig::subscriptions`): the source trait a hub implements,
//! with no server or HTTP dependency, so layer crates can provide one; and
//! [`PushSource`], a backend that pushes notifications upstream (a
//! WebSocket node: `WsBackend`), which a hub can follow.
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

use crate::{ErrorObject, RawJson, RpcError};

/// A live subscription: the `result` of each notification, in order; it
/// ends when the source ends it.
pub type Subscription = futures_util::stream::BoxStream<'static, RawJson>;

/// Where WebSocket subscriptions come from (a hub shared by every
/// socket): `subscribe` starts one from the call's params (for Ethereum,
/// `["newHeads"]` and friends) or says why not.
pub trait SubscriptionSource: Send + Sync + 'static {
    /// Starts the subscription `params` describe.
    fn subscribe(&self, params: Option<&RawJson>) -> Result<Subscription, ErrorObject>;
}

impl<T: SubscriptionSource + ?Sized> SubscriptionSource for std::sync::Arc<T> {
    fn subscribe(&self, params: Option<&RawJson>) -> Result<Subscription, ErrorObject> {
        (**self).subscribe(params)
    }
}

impl std::fmt::Debug for dyn SubscriptionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubscriptionSource")
    }
}

/// A backend that pushes notifications: upstream subscriptions (for
/// Ethereum, `eth_subscribe` on a WebSocket node — `WsBackend` implements
/// it). A hub follows one to learn of new blocks at once instead of at its
/// next poll.
///
/// The stream ends when the upstream subscription does (the connection
/// closed or went quiet, or the subscriber fell too far behind); the
/// subscriber subscribes again.
///
/// ```
/// use futures_util::future::BoxFuture;
/// use futures_util::{FutureExt, StreamExt};
/// use rpc_core::subscription::{PushSource, Subscription};
/// use rpc_core::{RawJson, RpcError};
///
/// /// Pushes `1` once per subscription.
/// struct Once;
/// impl PushSource for Once {
///     fn name(&self) -> &str {
///         "once"
///     }
///     fn subscribe(&self, _params: RawJson) -> BoxFuture<'static, Result<Subscription, RpcError>> {
///         async { Ok(futures_util::stream::iter([RawJson::from_static("1").unwrap()]).boxed()) }
///             .boxed()
///     }
/// }
/// ```
pub trait PushSource: Send + Sync + 'static {
    /// The backend's name, for logs.
    fn name(&self) -> &str;
    /// Starts an upstream subscription with `params` (`["newHeads"]`):
    /// the `result` of each notification, in order.
    fn subscribe(
        &self,
        params: RawJson,
    ) -> futures_util::future::BoxFuture<'static, Result<Subscription, RpcError>>;
}

impl std::fmt::Debug for dyn PushSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PushSource({})", self.name())
    }
}
