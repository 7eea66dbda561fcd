//! A chain view shared by replicas through Redis (cargo feature `redis`):
//! a replica never serves below the head its fleet agreed on.
//!
//! Each replica publishes its group's **agreed head** (from the group's
//! [`ChainView`]: reached by `agree` members there, never one member's word)
//! every [`interval`](FleetHead::interval) (default 250 ms), and reads back
//! the fleet's: the highest head any replica published within
//! [`stale_after`](FleetHead::stale_after) (default 3 s). That head is the
//! **fleet floor**: [`FleetFloorLayer`] puts it on the group's calls as a
//! [`MinHead`] (with [`FleetHead::protocol`], not on calls whose answer does
//! not depend on the head: writes, node-state calls, constants such as
//! `eth_chainId`), so a replica that starts cold, or whose members have not
//! been probed since the chain moved, answers only from members that
//! reached it (the group probes members below at once, see
//! [`HeadPolicy::consistency_wait`](crate::HeadPolicy::consistency_wait)).
//!
//! One replica's word is checked like a member's: a fleet head more than
//! [`max_ahead`](FleetHead::max_ahead) blocks above this replica's own
//! agreed head (default 1 024, the group's rule for members) is not
//! believed (counted in `rpc_fleet_head_rejected_total{group}`, logged once
//! per episode); the floor then stays at this replica's own head.
//!
//! One round trip per interval per group (a script on Redis' clock), never
//! on a call's path. When Redis cannot be asked, or this replica's group
//! saw a reorganisation since the last round, the floor is dropped: the
//! replica follows its own group only (per-process behaviour, counted in
//! `rpc_redis_fallbacks_total{feature="chain"}`), never a floor it cannot
//! check. `rpc_fleet_head{group}` shows the floor.
//!
//! ```no_run
//! use rpc_core::redis::{RedisConfig, RedisLink};
//! use rpc_core::ChainView;
//! use rpc_failover::fleet::FleetHead;
//! use tower::ServiceBuilder;
//!
//! # async fn demo(view: ChainView, group: rpc_core::BoxJsonRpcService) -> Result<(), Box<dyn std::error::Error>> {
//! let link = RedisLink::new(RedisConfig::new("redis://127.0.0.1:6379"))?;
//! let fleet = FleetHead::new(link, "main", view);
//! let service = ServiceBuilder::new().layer(fleet.layer()).service(group);
//! fleet.sync().await; // before serving: start at the fleet's head
//! tokio::spawn(fleet.run());
//! # drop(service); Ok(()) }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use redis::Script;
use rpc_core::protocol::{CacheRule, Protocol};
use rpc_core::redis::RedisLink;
use rpc_core::{ChainView, MinHead, Request, Response, RpcError};
use tower::{Layer, Service};

/// Publishes this replica's head, returns the fleet's. KEYS[1]: the group's
/// hash; ARGV: replica id, head (0: none yet), stale after (ms).
const SYNC: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stale = tonumber(ARGV[3])
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. now)
end
redis.call('PEXPIRE', KEYS[1], stale * 10)
local best = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local v = all[i + 1]
  local sep = string.find(v, ':', 1, true)
  local h = sep and tonumber(string.sub(v, 1, sep - 1))
  local at = sep and tonumber(string.sub(v, sep + 1))
  if not h or not at or now - at > stale then
    redis.call('HDEL', KEYS[1], all[i])
  elseif h > best then
    best = h
  end
end
return best
";

/// Shares one group's agreed head with the other replicas; see the
/// [module docs](self).
pub struct FleetHead {
    link: RedisLink,
    group: Arc<str>,
    key: String,
    replica: String,
    view: ChainView,
    floor: Arc<AtomicU64>,
    interval: Duration,
    stale_after: Duration,
    script: Script,
    reorgs_seen: AtomicU64,
    exempt: Option<Arc<Protocol>>,
    max_ahead: u64,
    /// Whether the last round's fleet head was not believed (for one log
    /// line per episode).
    doubted: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for FleetHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetHead")
            .field("group", &self.group)
            .field("replica", &self.replica)
            .field("floor", &self.floor.load(Ordering::Relaxed))
            .field("interval", &self.interval)
            .field("stale_after", &self.stale_after)
            .finish()
    }
}

impl FleetHead {
    /// Shares the agreed head of group `group` (its [`ChainView`]) through
    /// `link`. Replicas share a group's head when they use the same Redis,
    /// key prefix and group name.
    pub fn new(link: RedisLink, group: &str, view: ChainView) -> Self {
        let replica = format!(
            "{:016x}",
            std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                (std::process::id(), group)
            )
        );
        FleetHead {
            key: format!("{}head:{group}", link.prefix()),
            link,
            group: Arc::from(group),
            replica,
            view,
            floor: Arc::new(AtomicU64::new(0)),
            interval: Duration::from_millis(250),
            stale_after: Duration::from_secs(3),
            script: Script::new(SYNC),
            reorgs_seen: AtomicU64::new(0),
            exempt: None,
            max_ahead: 1024,
            doubted: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// How far above this replica's own agreed head the fleet's may be and
    /// still be believed (default 1 024 blocks; use the group's
    /// [`HeadPolicy::max_ahead`](crate::HeadPolicy::max_ahead)). Until this
    /// replica has a head of its own (a cold start), the fleet's is taken
    /// as is.
    pub fn max_ahead(mut self, blocks: u64) -> Self {
        self.max_ahead = blocks;
        self
    }

    /// Leaves the floor off calls whose answer does not depend on the
    /// chain's head, by `protocol`'s facts: writes (a broadcast is not an
    /// older chain), node-state calls (filters: pinned to their node) and
    /// answers that never change (`Forever`-cached: `eth_chainId`). Without
    /// it, every call of the group carries the floor.
    pub fn protocol(mut self, protocol: &Protocol) -> Self {
        self.exempt = Some(Arc::new(protocol.clone()));
        self
    }

    /// How often the head is published and the fleet's read (default
    /// 250 ms).
    pub fn interval(mut self, d: Duration) -> Self {
        self.interval = d.max(Duration::from_millis(10));
        self
    }

    /// How long a replica's published head counts after it stops
    /// publishing (default 3 s): a stopped replica's head ages out.
    pub fn stale_after(mut self, d: Duration) -> Self {
        self.stale_after = d.max(Duration::from_millis(10));
        self
    }

    /// The layer that puts the fleet floor on the group's calls.
    pub fn layer(&self) -> FleetFloorLayer {
        FleetFloorLayer {
            floor: self.floor.clone(),
            exempt: self.exempt.clone(),
        }
    }

    /// The fleet floor now (0: none).
    pub fn floor(&self) -> u64 {
        self.floor.load(Ordering::Relaxed)
    }

    /// One round: publishes this replica's agreed head and takes the
    /// fleet's as the floor. Returns the floor (`None`: Redis could not be
    /// asked, no floor).
    pub async fn sync(&self) -> Option<u64> {
        let chain = self.view.get();
        let reorged = self.reorgs_seen.swap(chain.reorgs, Ordering::Relaxed) != chain.reorgs;
        let answer: Result<u64, _> = self
            .link
            .run("chain_sync", |mut conn| {
                let mut call = self.script.key(&self.key);
                call.arg(&self.replica)
                    .arg(chain.head)
                    .arg(self.stale_after.as_millis() as u64);
                async move { call.invoke_async(&mut conn).await }
            })
            .await;
        let floor = match answer {
            // After a reorganisation here, the fleet's head may be of the
            // replaced chain until the other replicas follow: no floor
            // this round.
            Ok(_) if reorged => 0,
            Ok(fleet) if chain.head != 0 && fleet > chain.head.saturating_add(self.max_ahead) => {
                // One replica's word (a bug, another chain under the same
                // prefix) does not stop this one serving.
                metrics::counter!("rpc_fleet_head_rejected_total", "group" => self.group.to_string())
                    .increment(1);
                if !self.doubted.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        group = %self.group,
                        fleet, own = chain.head,
                        "the fleet's head is more than {} blocks above this replica's: not believed",
                        self.max_ahead
                    );
                }
                chain.head
            }
            Ok(fleet) => {
                self.doubted.store(false, Ordering::Relaxed);
                fleet
            }
            Err(_) => {
                RedisLink::fell_back("chain");
                0
            }
        };
        self.floor.store(floor, Ordering::Relaxed);
        metrics::gauge!("rpc_fleet_head", "group" => self.group.to_string()).set(floor as f64);
        answer.ok().map(|_| floor)
    }

    /// Syncs every interval until every [`FleetFloorLayer`] service of this
    /// group is dropped. Spawn it.
    pub async fn run(self) {
        let weak: Weak<AtomicU64> = Arc::downgrade(&self.floor);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Only this task holds it: the group is gone.
            if weak.strong_count() <= 1 {
                return;
            }
            self.sync().await;
        }
    }
}

/// Puts the fleet floor on calls as [`MinHead`]; built by
/// [`FleetHead::layer`].
#[derive(Clone, Debug)]
pub struct FleetFloorLayer {
    floor: Arc<AtomicU64>,
    exempt: Option<Arc<Protocol>>,
}

impl<S> Layer<S> for FleetFloorLayer {
    type Service = FleetFloor<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FleetFloor {
            inner,
            floor: self.floor.clone(),
            exempt: self.exempt.clone(),
        }
    }
}

/// The service of [`FleetFloorLayer`].
#[derive(Clone, Debug)]
pub struct FleetFloor<S> {
    inner: S,
    floor: Arc<AtomicU64>,
    exempt: Option<Arc<Protocol>>,
}

impl<S> Service<Request> for FleetFloor<S>
where
    S: Service<Request, Response = Response, Error = RpcError>,
{
    type Response = Response;
    type Error = RpcError;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let floor = self.floor.load(Ordering::Relaxed);
        if floor != 0
            && !self
                .exempt
                .as_ref()
                .is_some_and(|p| head_free(p, req.method()))
        {
            let need = req.extensions().get::<MinHead>().map_or(0, |m| m.0);
            if need < floor {
                req.extensions_mut().insert(MinHead(floor));
            }
        }
        self.inner.call(req)
    }
}

impl<S> Service<rpc_core::batch::Batch> for FleetFloor<S>
where
    S: rpc_core::batch::JsonRpcBatchService,
{
    type Response = rpc_core::batch::BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = <S as Service<rpc_core::batch::Batch>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<rpc_core::batch::Batch>::poll_ready(&mut self.inner, cx)
    }

    /// Each call's need raised as a single call's is; the batch goes on
    /// whole.
    fn call(&mut self, mut batch: rpc_core::batch::Batch) -> Self::Future {
        let floor = self.floor.load(Ordering::Relaxed);
        if floor != 0 {
            for req in batch.calls_mut() {
                if self
                    .exempt
                    .as_ref()
                    .is_some_and(|p| head_free(p, req.method()))
                {
                    continue;
                }
                let need = req.extensions().get::<MinHead>().map_or(0, |m| m.0);
                if need < floor {
                    req.extensions_mut().insert(MinHead(floor));
                }
            }
        }
        self.inner.call(batch)
    }
}

/// Whether `method`'s answer does not depend on the head.
fn head_free(protocol: &Protocol, method: &str) -> bool {
    let facts = protocol.facts(method);
    facts.write || facts.stateful || facts.cache == CacheRule::Forever
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpc_core::{Id, RawJson};
    use tower::{service_fn, ServiceExt};

    #[tokio::test]
    async fn the_floor_raises_what_a_call_needs_and_never_lowers_it() {
        let floor = Arc::new(AtomicU64::new(0));
        let svc = FleetFloorLayer {
            floor: floor.clone(),
            exempt: Some(Arc::new(Protocol::ethereum())),
        }
        .layer(service_fn(|req: Request| async move {
            let need = req.extensions().get::<MinHead>().map_or(0, |m| m.0);
            Ok::<_, RpcError>(Response::result(
                Id::from(1u64),
                RawJson::from_serialize(&need).unwrap(),
            ))
        }));
        let call = |min: Option<u64>| {
            let mut req = Request::new("eth_getBalance").with_id(Id::from(1u64));
            if let Some(m) = min {
                req.extensions_mut().insert(MinHead(m));
            }
            req
        };
        let r = svc.clone().oneshot(call(None)).await.unwrap();
        assert_eq!(
            r.payload(),
            &rpc_core::Payload::Result(RawJson::from_static("0").unwrap())
        );
        floor.store(100, Ordering::Relaxed);
        let r = svc.clone().oneshot(call(Some(7))).await.unwrap();
        assert_eq!(
            r.payload(),
            &rpc_core::Payload::Result(RawJson::from_static("100").unwrap())
        );
        let r = svc.clone().oneshot(call(Some(150))).await.unwrap();
        assert_eq!(
            r.payload(),
            &rpc_core::Payload::Result(RawJson::from_static("150").unwrap())
        );
        // Answers that do not depend on the head carry no floor.
        for method in [
            "eth_chainId",
            "eth_sendRawTransaction",
            "eth_getFilterChanges",
        ] {
            let req = Request::new(method).with_id(Id::from(1u64));
            let r = svc.clone().oneshot(req).await.unwrap();
            let none = rpc_core::Payload::Result(RawJson::from_static("0").unwrap());
            assert_eq!(r.payload(), &none, "{method}");
        }
    }
}
