//! Small types that layers leave in request and response extensions for each
//! other: the shared vocabulary of the crate family (a feature crate never
//! depends on another, so what one writes and another reads lives here).

use std::sync::Arc;

/// The API key a client presented, in each call's extensions when the HTTP
/// front is configured with [`ServerConfig::api_key_header`](crate::server::ServerConfig::api_key_header)
/// and the request carried that header (for rate limits and metrics per key).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ApiKey(pub Arc<str>);

impl std::fmt::Debug for ApiKey {
    /// A key is a secret: `Debug` shows only its length.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey(<{} bytes, redacted>)", self.0.len())
    }
}

/// Which backend answered a call; put in the [`Response`](crate::Response)'s
/// extensions by backends and groups (for a `served-by` header, logs and
/// metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedBy(pub Arc<str>);

/// How many backends a group tried for this answer (1 when the first one
/// answered); in the response's extensions after a failover or hedged group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempts(pub u32);

/// Where a call sits in the client's batch; in the request's extensions when
/// the HTTP front split a batch (absent for single calls).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPosition {
    /// 0-based position in the batch.
    pub index: u32,
    /// Number of calls in the batch.
    pub len: u32,
}

/// How a call met a cache; in every [`Response`](crate::Response)'s
/// extensions after `rpc_cache::CacheLayer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// Answered from the store.
    Hit,
    /// Cacheable, not stored: this call went upstream (and stored the answer
    /// if the rules allow).
    Miss,
    /// Cacheable, not stored, but an identical call was already in flight:
    /// this call shared its answer.
    Coalesced,
    /// Not cacheable (a `Never` rule, a notification, params that cannot be
    /// keyed): passed through.
    Bypass,
}

impl CacheStatus {
    /// `HIT`, `MISS`, `COALESCED` or `BYPASS`, for a header.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Coalesced => "COALESCED",
            CacheStatus::Bypass => "BYPASS",
        }
    }
}

/// The chain head (block number or height) of the backend that produced an
/// answer, as far as the layer that set it knows; in a
/// [`Response`](crate::Response)'s extensions. Adapters that follow the tip
/// themselves (Electrum's header subscription) set it; a group with head
/// tracking sets it from its tracker. Consistency layers and caches read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChainHead(pub u64);

/// The lowest chain head a call may be answered from; in a
/// [`Request`](crate::Request)'s extensions. Set by a read-your-head layer
/// from what the client's session has already seen; a group with head
/// tracking sends the call only to members at or above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MinHead(pub u64);

/// A block a backend reported as its head, with 64-bit fingerprints of its
/// hash and of its parent's hash (the first eight bytes of each, as the
/// protocol writes them; `0` where unknown); in a [`Response`](crate::Response)'s
/// extensions. Adapters that follow the tip themselves (Electrum's header
/// subscription) set it; a head-tracking group compares these across members
/// to find forks and reorganisations. Fingerprints are compared, never
/// shown: two blocks with equal fingerprints at one height are the same block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadBlock {
    /// Its height (block number).
    pub number: u64,
    /// Fingerprint of its hash.
    pub hash: u64,
    /// Fingerprint of its parent's hash (`0`: unknown).
    pub parent: u64,
}

/// What a head-tracking group believes the chain is, as of one answer; in a
/// [`Response`](crate::Response)'s extensions (set by
/// `rpc_failover`'s head tracking, read by caches).
///
/// Unlike [`ChainHead`] (one member's head), these are the group's agreed
/// values: no single member can move them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgreedChain {
    /// The agreed head (block number or height): what enough members
    /// reached. Decides what is settled.
    pub head: u64,
    /// The highest head the group believes (at least `head`; a member a
    /// block ahead of the others, not a suspect). Answers that follow the
    /// tip are fresh only at this head.
    pub tip: u64,
    /// The agreed finalized block, when the chain reports finality.
    pub finalized: Option<u64>,
    /// How many reorganisations the group has seen (a different block at a
    /// height it knew, or the agreed head going back). A change means
    /// answers about recent blocks may be stale.
    pub reorgs: u64,
    /// The lowest height the latest reorganisation may have replaced
    /// (`0`: unknown depth, anything may have changed).
    pub reorg_floor: u64,
}

/// A client session named by the client (a header configured with
/// [`ServerConfig::session_header`](crate::server::ServerConfig::session_header));
/// in each call's extensions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionId(pub Arc<str>);

/// The client connection a call arrived on (a number unique within the
/// process); in each call's extensions when served by
/// [`serve`](crate::server::serve).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u64);

/// A head-tracking group's [`AgreedChain`], shared live: the group publishes
/// into it whenever its agreed values change (a probe is enough, no client
/// call needed), and layers above read it before they serve from memory (a
/// cache checks it before every lookup, so a reorganisation the group saw
/// drops cached answers at once). Clones share one view. Lock-free.
///
/// ```
/// use rpc_core::{AgreedChain, ChainView};
///
/// let view = ChainView::new();
/// view.publish(AgreedChain { head: 100, tip: 101, finalized: Some(36), reorgs: 1, reorg_floor: 98 });
/// let seen = view.clone().get();
/// assert_eq!((seen.head, seen.tip, seen.finalized, seen.reorgs), (100, 101, Some(36), 1));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ChainView(Arc<ViewCell>);

#[derive(Debug, Default)]
struct ViewCell {
    head: std::sync::atomic::AtomicU64,
    tip: std::sync::atomic::AtomicU64,
    /// Finalized + 1 (0: unknown).
    finalized: std::sync::atomic::AtomicU64,
    reorg_floor: std::sync::atomic::AtomicU64,
    reorgs: std::sync::atomic::AtomicU64,
}

impl ChainView {
    /// An empty view (nothing agreed yet).
    pub fn new() -> Self {
        ChainView::default()
    }

    /// Publishes the group's current values.
    pub fn publish(&self, chain: AgreedChain) {
        use std::sync::atomic::Ordering;
        let c = &self.0;
        c.head.store(chain.head, Ordering::Relaxed);
        c.tip.store(chain.tip, Ordering::Relaxed);
        c.finalized.store(
            chain.finalized.map_or(0, |f| f.saturating_add(1)),
            Ordering::Relaxed,
        );
        c.reorg_floor.store(chain.reorg_floor, Ordering::Relaxed);
        // Last, with release: a reader that sees the new count sees the rest.
        c.reorgs.store(chain.reorgs, Ordering::Release);
    }

    /// How many reorganisations the group has seen (one atomic load: cheap
    /// enough to check on every call).
    pub fn reorgs(&self) -> u64 {
        self.0.reorgs.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The values as of now.
    pub fn get(&self) -> AgreedChain {
        use std::sync::atomic::Ordering;
        let c = &self.0;
        let reorgs = c.reorgs.load(Ordering::Acquire);
        AgreedChain {
            head: c.head.load(Ordering::Relaxed),
            tip: c.tip.load(Ordering::Relaxed),
            finalized: c.finalized.load(Ordering::Relaxed).checked_sub(1),
            reorgs,
            reorg_floor: c.reorg_floor.load(Ordering::Relaxed),
        }
    }
}
