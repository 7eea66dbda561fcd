use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use crate::service::{Cache, Epochs, State};
use crate::{CacheRules, CacheStore, MemoryStore};

/// Caches answers per [`CacheRules`], coalescing identical calls in flight.
///
/// | setting | default |
/// |---|---|
/// | rules | given to [`new`](Self::new) ([`CacheRules::ethereum`] or [`CacheRules::electrum`]) |
/// | [`store`](Self::store) | [`MemoryStore::new`] (100 000 entries, 64 MiB) |
/// | [`coalesce`](Self::coalesce) | on |
/// | [`negative_ttl`](Self::negative_ttl) | off: `null` results and error objects are not cached |
/// | [`chain_view`](Self::chain_view) | none: the chain is learned from answers only |
///
/// Services built by one layer share its store; each has its own in-flight
/// table and learned head (build the stack once and clone it, as servers do).
///
/// ```
/// use std::time::Duration;
/// use rpc_cache::{CacheLayer, CacheRules, MemoryStore};
/// use rpc_core::{HttpBackend, JsonRpcService};
/// use tower::ServiceBuilder;
///
/// # fn main() -> Result<(), rpc_core::BuildError> {
/// let backend = HttpBackend::builder("node", "http://127.0.0.1:8545").build()?;
/// let cached = ServiceBuilder::new()
///     .layer(
///         CacheLayer::new(CacheRules::ethereum())
///             .store(MemoryStore::new().max_bytes(128 << 20))
///             .negative_ttl(Duration::from_millis(250)),
///     )
///     .service(backend);
/// # fn check(_: impl JsonRpcService) {}
/// # check(cached);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct CacheLayer<St = MemoryStore> {
    rules: Arc<CacheRules>,
    store: Arc<St>,
    coalesce: bool,
    negative_ttl: Option<Duration>,
    view: Option<rpc_core::ChainView>,
    epochs: Arc<Epochs>,
}

impl<St> Clone for CacheLayer<St> {
    fn clone(&self) -> Self {
        CacheLayer {
            rules: self.rules.clone(),
            store: self.store.clone(),
            coalesce: self.coalesce,
            negative_ttl: self.negative_ttl,
            view: self.view.clone(),
            epochs: self.epochs.clone(),
        }
    }
}

impl CacheLayer<MemoryStore> {
    /// A cache with these rules and the default in-memory store.
    pub fn new(rules: CacheRules) -> Self {
        CacheLayer {
            rules: Arc::new(rules),
            store: Arc::new(MemoryStore::new()),
            coalesce: true,
            negative_ttl: None,
            view: None,
            epochs: Arc::default(),
        }
    }
}

impl<St: CacheStore> CacheLayer<St> {
    /// Uses another store.
    pub fn store<T: CacheStore>(self, store: T) -> CacheLayer<T> {
        self.shared_store(Arc::new(store))
    }

    /// Uses a store shared with other layers (or kept to inspect it).
    pub fn shared_store<T: CacheStore>(self, store: Arc<T>) -> CacheLayer<T> {
        CacheLayer {
            rules: self.rules,
            store,
            coalesce: self.coalesce,
            negative_ttl: self.negative_ttl,
            view: self.view,
            // Another store: epochs of its own.
            epochs: Arc::default(),
        }
    }

    /// Takes over `previous`'s store and the generations its entries are
    /// keyed by: the cache of a stack built on a configuration reload, with
    /// the entries the running one kept. Answers kept forever and answers
    /// about settled blocks are found again (unless a reorganisation
    /// reached them, here or there); answers that follow the tip are not
    /// (the new cache has not seen their head). The rules, view and other
    /// settings are this layer's.
    ///
    /// ```
    /// use rpc_cache::{CacheLayer, CacheRules};
    ///
    /// let running = CacheLayer::new(CacheRules::ethereum());
    /// let reloaded = CacheLayer::new(CacheRules::ethereum()).continue_from(&running);
    /// # drop(reloaded);
    /// ```
    pub fn continue_from<T: CacheStore>(self, previous: &CacheLayer<T>) -> CacheLayer<T> {
        CacheLayer {
            rules: self.rules,
            store: previous.store.clone(),
            coalesce: self.coalesce,
            negative_ttl: self.negative_ttl,
            view: self.view,
            epochs: previous.epochs.clone(),
        }
    }

    /// Follows a head-tracking group's live [`ChainView`](rpc_core::ChainView)
    /// (`Failover::chain_view`): before every lookup the cache checks it, so a
    /// reorganisation the group saw (through its probes, with no client call
    /// in between) drops the answers it replaced at once, and blocks settle
    /// at the group's agreed finalized block. Without it the cache learns the
    /// same from the [`AgreedChain`](rpc_core::AgreedChain) on answers that
    /// pass through it.
    pub fn chain_view(mut self, view: rpc_core::ChainView) -> Self {
        self.view = Some(view);
        self
    }

    /// Whether identical cacheable calls in flight share one upstream call
    /// (default on).
    pub fn coalesce(mut self, on: bool) -> Self {
        self.coalesce = on;
        self
    }

    /// Also cache `null` results and error objects, for at most this long
    /// (default: not cached). Refusals that pass with time (codes 429,
    /// -32005, -32011, -32015, -32016) are never cached.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }
}

impl<S, St: CacheStore> Layer<S> for CacheLayer<St> {
    type Service = Cache<S, St>;

    fn layer(&self, inner: S) -> Cache<S, St> {
        Cache::new(
            inner,
            Arc::new(State::new(
                self.rules.clone(),
                self.store.clone(),
                self.coalesce,
                self.negative_ttl,
                self.view.clone(),
                self.epochs.clone(),
            )),
        )
    }
}
