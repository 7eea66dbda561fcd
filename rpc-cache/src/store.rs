//! Where cached answers live: a small async trait, and the in-memory LRU.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use lru::LruCache;
use rpc_core::Payload;
use tokio::time::Instant;

use crate::CacheKey;

/// Storage for cached answers. Implement it for a shared store (Redis, ...);
/// [`MemoryStore`] is the default.
///
/// Methods are `async` so a networked store fits; an implementation must not
/// hold a lock across an `.await`, and must never fail the call: a store that
/// cannot answer returns `None` (a miss) and drops writes.
///
/// ```
/// use std::collections::HashMap;
/// use std::future::Future;
/// use std::sync::Mutex;
/// use std::time::Duration;
/// use rpc_cache::{CacheKey, CacheStore};
/// use rpc_core::Payload;
///
/// /// A toy store without expiry or bounds, to show the shape.
/// #[derive(Default)]
/// struct MapStore(Mutex<HashMap<CacheKey, Payload>>);
///
/// impl CacheStore for MapStore {
///     fn get(&self, key: &CacheKey) -> impl Future<Output = Option<Payload>> + Send {
///         let hit = self.0.lock().ok().and_then(|m| m.get(key).cloned());
///         std::future::ready(hit)
///     }
///     fn put(&self, key: CacheKey, value: Payload, _ttl: Option<Duration>) -> impl Future<Output = ()> + Send {
///         if let Ok(mut m) = self.0.lock() {
///             m.insert(key, value);
///         }
///         std::future::ready(())
///     }
/// }
/// ```
pub trait CacheStore: Send + Sync + 'static {
    /// The answer stored under `key`, if present and not expired.
    fn get(&self, key: &CacheKey) -> impl Future<Output = Option<Payload>> + Send;

    /// Stores `value` under `key`, for `ttl` (`None`: until evicted).
    fn put(
        &self,
        key: CacheKey,
        value: Payload,
        ttl: Option<Duration>,
    ) -> impl Future<Output = ()> + Send;
}

/// Bytes counted per entry beyond its key and answer: map slot and its
/// growth slack, list links, expiry, buffer handles, the key's and the
/// answer's allocation headers. Measured (`cargo bench -p rpc-cache --bench
/// cache_memory`, keys held by clones as the cache layer holds them):
/// 242–248.
const ENTRY_OVERHEAD: usize = 248;

struct Entry {
    payload: Payload,
    expires: Option<Instant>,
    size: usize,
}

struct Shard {
    lru: LruCache<CacheKey, Entry, crate::key::KeyHash>,
    bytes: usize,
}

/// An in-memory LRU bounded by entry count **and** total bytes.
///
/// Split into shards (each a `Mutex` around an [`lru::LruCache`]) so that
/// concurrent calls rarely wait for each other; every critical section is a
/// map operation, never an `.await`. Expired entries are dropped when met.
///
/// | setting | default |
/// |---|---|
/// | [`max_entries`](Self::max_entries) | 100 000 |
/// | [`max_bytes`](Self::max_bytes) | 64 MiB (keys + answers + ~250 bytes per entry, as measured) |
/// | [`shards`](Self::shards) | 16 |
///
/// ```
/// use rpc_cache::MemoryStore;
///
/// let store = MemoryStore::new().max_entries(10_000).max_bytes(16 << 20);
/// assert_eq!(store.len(), 0);
/// ```
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    max_entries: usize,
    max_bytes: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.len())
            .field("bytes", &self.bytes())
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl MemoryStore {
    /// A store with the defaults.
    pub fn new() -> Self {
        MemoryStore::with_shards(16, 100_000, 64 << 20)
    }

    fn with_shards(shards: usize, max_entries: usize, max_bytes: usize) -> Self {
        let shards = shards.clamp(1, 1024);
        MemoryStore {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        lru: LruCache::unbounded_with_hasher(Default::default()),
                        bytes: 0,
                    })
                })
                .collect(),
            max_entries,
            max_bytes,
        }
    }

    /// The most entries kept (default 100 000); split evenly over shards.
    pub fn max_entries(self, n: usize) -> Self {
        MemoryStore::with_shards(self.shards.len(), n.max(1), self.max_bytes)
    }

    /// The most bytes kept (default 64 MiB); split evenly over shards.
    pub fn max_bytes(self, n: usize) -> Self {
        MemoryStore::with_shards(self.shards.len(), self.max_entries, n.max(1))
    }

    /// The number of shards (default 16; 1 makes it one exact global LRU).
    pub fn shards(self, n: usize) -> Self {
        MemoryStore::with_shards(n, self.max_entries, self.max_bytes)
    }

    /// Entries held now (including expired ones not yet met).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.lru.len()))
            .sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held now, as counted against `max_bytes`.
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.bytes))
            .sum()
    }

    fn shard(&self, key: &CacheKey) -> &Mutex<Shard> {
        // The key's own hash (its high bits: the maps use the low ones).
        let i = ((key.hash_value() >> 32) as usize) % self.shards.len();
        &self.shards[i]
    }

    fn per_shard(&self, total: usize) -> usize {
        total.div_ceil(self.shards.len()).max(1)
    }

    /// The synchronous lookup behind [`CacheStore::get`].
    pub fn get_now(&self, key: &CacheKey) -> Option<Payload> {
        let mut shard = self.shard(key).lock().ok()?;
        let expired = match shard.lru.get(key) {
            None => return None,
            Some(e) => match e.expires {
                Some(at) if Instant::now() >= at => true,
                _ => return Some(e.payload.clone()),
            },
        };
        if expired {
            if let Some(e) = shard.lru.pop(key) {
                shard.bytes -= e.size;
            }
        }
        None
    }

    /// The synchronous insert behind [`CacheStore::put`]. The answer is
    /// copied into its own buffer (see [`RawJson::detached`](rpc_core::RawJson::detached)),
    /// so the store holds exactly the bytes it counts.
    pub fn put_now(&self, key: CacheKey, payload: Payload, ttl: Option<Duration>) {
        let payload = match payload {
            Payload::Result(raw) => Payload::Result(raw.detached()),
            Payload::Error(e) => Payload::Error(e),
        };
        let size = key.len() + payload_len(&payload) + ENTRY_OVERHEAD;
        let (max_entries, max_bytes) = (
            self.per_shard(self.max_entries),
            self.per_shard(self.max_bytes),
        );
        if size > max_bytes {
            return; // would evict everything and still not fit
        }
        let Ok(mut shard) = self.shard(&key).lock() else {
            return;
        };
        let entry = Entry {
            payload,
            expires: ttl.map(|d| Instant::now() + d),
            size,
        };
        if let Some(old) = shard.lru.put(key, entry) {
            shard.bytes -= old.size;
        }
        shard.bytes += size;
        while shard.lru.len() > max_entries || shard.bytes > max_bytes {
            match shard.lru.pop_lru() {
                Some((_, e)) => shard.bytes -= e.size,
                None => break,
            }
        }
    }
}

fn payload_len(p: &Payload) -> usize {
    match p {
        Payload::Result(raw) => raw.as_bytes().len(),
        Payload::Error(e) => e.message().len() + e.data().map_or(0, |d| d.as_bytes().len()) + 16,
    }
}

impl CacheStore for MemoryStore {
    fn get(&self, key: &CacheKey) -> impl Future<Output = Option<Payload>> + Send {
        std::future::ready(self.get_now(key))
    }

    fn put(
        &self,
        key: CacheKey,
        value: Payload,
        ttl: Option<Duration>,
    ) -> impl Future<Output = ()> + Send {
        self.put_now(key, value, ttl);
        std::future::ready(())
    }
}
