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

/// A W3C trace context from the client (`traceparent`, and `tracestate`
/// with it), read by the front when
/// [`ServerConfig::trace_context`](crate::server::ServerConfig::trace_context)
/// is on and passed on by `HttpBackend` to the backend, so a client's trace
/// continues at the provider. Only a well-formed `traceparent` is kept
/// ([`TraceContext::parse`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// `traceparent`: `00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2 hex>`.
    pub traceparent: http::HeaderValue,
    /// `tracestate`, vendor data that goes with it (at most 512 bytes kept).
    pub tracestate: Option<http::HeaderValue>,
}

impl TraceContext {
    /// The trace context in `headers`, if its `traceparent` is well formed
    /// (version not `ff`, lower-case hex, trace and parent ids not all
    /// zero); anything else is ignored, as the W3C rules say.
    ///
    /// ```
    /// use rpc_core::TraceContext;
    ///
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
    /// assert!(TraceContext::parse(&headers).is_some());
    /// headers.insert("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01".parse().unwrap());
    /// assert!(TraceContext::parse(&headers).is_none());
    /// ```
    pub fn parse(headers: &http::HeaderMap) -> Option<TraceContext> {
        let value = headers.get("traceparent")?;
        let text = value.to_str().ok()?;
        let parts: Vec<&str> = text.split('-').collect();
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        let ok = match parts.as_slice() {
            // Version 00 has exactly four fields; later versions may add more.
            [version, trace, parent, flags, rest @ ..] => {
                hex(version, 2)
                    && *version != "ff"
                    && (rest.is_empty() || *version != "00")
                    && hex(trace, 32)
                    && !zero(trace)
                    && hex(parent, 16)
                    && !zero(parent)
                    && hex(flags, 2)
            }
            _ => false,
        };
        if !ok {
            return None;
        }
        let tracestate = headers
            .get("tracestate")
            .filter(|v| v.len() <= 512)
            .cloned();
        Some(TraceContext {
            traceparent: value.clone(),
            tracestate,
        })
    }
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

/// The group a call should go to, whatever its method: set by
/// `auth::KeyPolicyLayer` for client keys bound to a group, read by
/// [`MethodRouter`](crate::route::MethodRouter), which sends the call to
/// the service registered under that name
/// ([`routes_named`](crate::route::MethodRouterBuilder::routes_named)) or
/// answers `-32601` when it has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTo(pub Arc<str>);
