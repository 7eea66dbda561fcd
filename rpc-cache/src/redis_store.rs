//! A cache store shared by replicas through Redis (cargo feature `redis`).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use rpc_core::redis::RedisLink;
use rpc_core::{ErrorObject, Payload, RawJson};

use crate::{CacheKey, CacheStore, MemoryStore};

/// A [`CacheStore`] in Redis, with a small [`MemoryStore`] in front: what
/// one replica stored, the others hit.
///
/// * **Reads**: the local tier first (no round trip); on a local miss, one
///   pipelined round trip (`GET` + `PTTL`) within the link's deadline; a
///   Redis hit is copied into the local tier for the time Redis still
///   keeps it.
/// * **Writes**: to the local tier, and once to Redis with the entry's TTL
///   (`SET key value PX ttl`; no TTL for answers about settled blocks: Redis'
///   own eviction bounds them, run it with `maxmemory` and
///   `maxmemory-policy allkeys-lru`). Writes are awaited within the
///   deadline, so a replica that answered a call has shared it before its
///   client can ask another replica.
/// * **What is shared**: keys that mean the same to every process
///   ([`CacheKey::is_fleet_wide`]): answers kept forever (`eth_chainId`,
///   [`Rule::Forever`](crate::Rule::Forever)) and answers about settled blocks
///   and mined transactions. Answers kept for a TTL or that follow the
///   chain tip are keyed by each process' own tip epoch (it moves with
///   each new head and write this process sees) and stay in the local tier.
/// * **Redis down, frozen or slow**: a read is a miss, a write stays local
///   (counted in `rpc_redis_fallbacks_total{feature="cache"}`); never an
///   error, never more than the deadline.
///
/// Coalescing of identical calls stays per process: the first call of each
/// replica to a key the fleet has not stored yet goes upstream (at most one
/// per replica, not one per client).
///
/// `rpc_cache_store_hits_total{tier}` counts hits by tier (`local`,
/// `redis`) and `rpc_cache_store_misses_total` what neither had.
///
/// ```no_run
/// use rpc_cache::{CacheLayer, CacheRules, MemoryStore, RedisStore};
/// use rpc_core::redis::{RedisConfig, RedisLink};
///
/// let link = RedisLink::new(RedisConfig::new("redis://127.0.0.1:6379").prefix("rpc:mainnet:"))?;
/// let store = RedisStore::new(link, MemoryStore::new().max_bytes(16 << 20));
/// let layer = CacheLayer::new(CacheRules::ethereum()).store(store);
/// # drop(layer); Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RedisStore {
    link: RedisLink,
    local: MemoryStore,
}

/// First byte of a stored value: what follows.
const RESULT: u8 = b'r';
const ERROR: u8 = b'e';

impl RedisStore {
    /// A store in Redis through `link`, with `local` as its front tier.
    pub fn new(link: RedisLink, local: MemoryStore) -> Self {
        RedisStore { link, local }
    }

    /// The local tier.
    pub fn local(&self) -> &MemoryStore {
        &self.local
    }

    fn redis_key(&self, key: &CacheKey) -> Vec<u8> {
        let prefix = self.link.prefix().as_bytes();
        let mut k = Vec::with_capacity(prefix.len() + 2 + key.len());
        k.extend_from_slice(prefix);
        k.extend_from_slice(b"c:");
        k.extend_from_slice(key.as_bytes());
        k
    }

    async fn fetch(&self, key: &CacheKey) -> Option<Payload> {
        let rkey = self.redis_key(key);
        let answer: Result<(Option<Vec<u8>>, i64), _> = self
            .link
            .run("cache_get", |mut conn| async move {
                redis::pipe()
                    .get(&rkey)
                    .pttl(&rkey)
                    .query_async(&mut conn)
                    .await
            })
            .await;
        let (value, pttl) = match answer {
            Ok(found) => found,
            Err(_) => {
                RedisLink::fell_back("cache");
                return None;
            }
        };
        let payload = decode(Bytes::from(value?))?;
        // -1: no expiry; -2: gone between the two commands (kept locally
        // only briefly then).
        let ttl = match pttl {
            -1 => None,
            ms if ms > 0 => Some(Duration::from_millis(ms as u64)),
            _ => Some(Duration::from_millis(1)),
        };
        self.local.put_now(key.clone(), payload.clone(), ttl);
        Some(payload)
    }
}

impl CacheStore for RedisStore {
    fn get(&self, key: &CacheKey) -> impl Future<Output = Option<Payload>> + Send {
        let local = self.local.get_now(key);
        async move {
            if local.is_some() {
                metrics::counter!("rpc_cache_store_hits_total", "tier" => "local").increment(1);
                return local;
            }
            if !key.is_fleet_wide() {
                metrics::counter!("rpc_cache_store_misses_total").increment(1);
                return None;
            }
            let found = self.fetch(key).await;
            match found {
                Some(_) => {
                    metrics::counter!("rpc_cache_store_hits_total", "tier" => "redis").increment(1)
                }
                None => metrics::counter!("rpc_cache_store_misses_total").increment(1),
            }
            found
        }
    }

    fn put(
        &self,
        key: CacheKey,
        value: Payload,
        ttl: Option<Duration>,
    ) -> impl Future<Output = ()> + Send {
        let shared = key
            .is_fleet_wide()
            .then(|| (self.redis_key(&key), encode(&value)));
        self.local.put_now(key, value, ttl);
        async move {
            let Some((rkey, bytes)) = shared else { return };
            let written: Result<(), _> = self
                .link
                .run("cache_put", |mut conn| async move {
                    let mut cmd = redis::cmd("SET");
                    cmd.arg(&rkey).arg(bytes);
                    if let Some(ttl) = ttl {
                        cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
                    }
                    cmd.query_async(&mut conn).await
                })
                .await;
            if written.is_err() {
                RedisLink::fell_back("cache");
            }
        }
    }
}

fn encode(payload: &Payload) -> Vec<u8> {
    match payload {
        Payload::Result(raw) => {
            let mut v = Vec::with_capacity(1 + raw.len());
            v.push(RESULT);
            v.extend_from_slice(raw.as_bytes());
            v
        }
        Payload::Error(e) => {
            let mut v = vec![ERROR];
            e.write_json(&mut v);
            v
        }
    }
}

/// A stored value back into an answer; `None` (a miss) for anything that
/// is not one of ours.
fn decode(value: Bytes) -> Option<Payload> {
    match *value.first()? {
        RESULT => RawJson::from_bytes(value.slice(1..))
            .ok()
            .map(Payload::Result),
        ERROR => ErrorObject::from_json(value.slice(1..)).map(Payload::Error),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let r = Payload::Result(RawJson::from_static(r#"{"a":[1,2]}"#).unwrap());
        assert_eq!(decode(Bytes::from(encode(&r))), Some(r));
        let e = Payload::Error(ErrorObject::new(3, "execution reverted"));
        assert_eq!(decode(Bytes::from(encode(&e))), Some(e));
        assert_eq!(decode(Bytes::from_static(b"x{}")), None);
        assert_eq!(decode(Bytes::from_static(b"r{not json")), None);
        assert_eq!(decode(Bytes::new()), None);
    }
}
