//! What sharing state through Redis costs and buys (issue: scale-out):
//! cache hits from the local tier against hits from Redis, a rate-limit
//! check local against shared, the hit rate of 1, 2 and 3 replicas on one
//! workload with and without a shared store, and upstream calls when many
//! clients of several replicas ask for the same new key at once.
//!
//! `bash bench/redis.sh` starts a `redis-server` on a free port and runs
//! this; or `cargo run --release -p rpc-bench --bin redis-cost -- redis://127.0.0.1:PORT`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rpc_cache::{CacheKey, CacheLayer, CacheRules, CacheStore, MemoryStore, RedisStore, Rule};
use rpc_core::ratelimit::{Limit, RateLimitLayer, WhenRedisDown};
use rpc_core::redis::{RedisConfig, RedisLink};
use rpc_core::{BoxJsonRpcService, Id, Payload, RawJson, RemoteAddr, Request, Response, RpcError};
use tower::{service_fn, Layer, Service, ServiceExt};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    println!("Redis at {url}\n");
    cache_hits(link(&url, "hits").await).await;
    rate_limit(link(&url, "limits").await).await;
    hit_rates(&url).await;
    fleet_coalescing(&url).await;
}

/// A link to `url` whose keys are this run's and `scope`'s alone.
/// Connected before use (as `rpc-proxy` does at start-up).
async fn link(url: &str, scope: &str) -> RedisLink {
    let link = RedisLink::new(
        RedisConfig::new(url)
            .deadline(Duration::from_millis(50))
            .prefix(format!("bench:{}:{scope}:", std::process::id())),
    )
    .expect("redis url");
    assert!(link.connect().await, "no Redis at {url}");
    link
}

fn request(method: &str, params: &str) -> Request {
    Request::new(method.to_owned())
        .with_params(RawJson::from_bytes(params.to_owned()).expect("json"))
        .with_id(Id::from(1u64))
}

fn key(i: usize) -> CacheKey {
    CacheKey::for_request(&request("bench_get", &format!("[{i}]")), false).expect("key")
}

/// Per-operation time of `n` sequential calls and of `n` calls from 64 tasks.
async fn time<F, Fut>(n: usize, f: F) -> (Duration, f64)
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    for i in 0..n {
        f(i).await;
    }
    let sequential = start.elapsed() / n as u32;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (f, next) = (f.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    f(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    (sequential, n as f64 / start.elapsed().as_secs_f64())
}

async fn cache_hits(link: RedisLink) {
    let value = Payload::Result(RawJson::from_static(r#"{"number":"0x10","hash":"0x00000000000000000000000000000000000000000000000000000000000000aa","transactions":[]}"#).expect("json"));
    let n = 20_000;
    // The local tier: a memory store holding every key.
    let local = Arc::new(MemoryStore::new());
    for i in 0..1000 {
        local.put_now(key(i), value.clone(), None);
    }
    let keys: Arc<Vec<CacheKey>> = Arc::new((0..1000).map(key).collect());
    let (l, k) = (local.clone(), keys.clone());
    let (seq_local, rate_local) = time(n, move |i| {
        let hit = l.get_now(&k[i % 1000]);
        assert!(hit.is_some());
        std::future::ready(())
    })
    .await;
    // From Redis: a local tier of one entry, keys cycling, so every get
    // goes to Redis.
    let remote = Arc::new(RedisStore::new(
        link,
        MemoryStore::new().max_entries(1).shards(1),
    ));
    for i in 0..1000 {
        remote.put(key(i), value.clone(), None).await;
    }
    let (r, k) = (remote.clone(), keys.clone());
    let (seq_redis, rate_redis) = time(n, move |i| {
        let (r, k) = (r.clone(), k.clone());
        async move {
            let hit = r.get(&k[(i * 7) % 1000]).await;
            assert!(hit.is_some(), "a Redis hit");
        }
    })
    .await;
    println!(
        "cache hit (a {}-byte answer)",
        match &value {
            Payload::Result(r) => r.len(),
            Payload::Error(_) => 0,
        }
    );
    println!("  local tier   {seq_local:>10.2?} per hit, {rate_local:>10.0} hits/s from 64 tasks");
    println!("  from Redis   {seq_redis:>10.2?} per hit, {rate_redis:>10.0} hits/s from 64 tasks");
}

fn ok_service() -> impl Service<Request, Response = Response, Error = RpcError, Future = impl Send>
       + Clone
       + Send
       + 'static {
    service_fn(|req: Request| async move {
        Ok::<_, RpcError>(Response::result(
            req.id().cloned().unwrap_or_default(),
            RawJson::NULL,
        ))
    })
}

async fn rate_limit(link: RedisLink) {
    let n = 20_000;
    let limit = Limit::per_second(1_000_000).burst(1_000_000);
    let local = RateLimitLayer::new().per_ip(limit).layer(ok_service());
    let shared = RateLimitLayer::new()
        .per_ip(limit)
        .shared(link, WhenRedisDown::FailClosed)
        .layer(ok_service());
    let call = move |i: usize| {
        let mut req = request("eth_call", "[]");
        let addr = SocketAddr::from(([10, 0, (i % 200) as u8, 1], 5000));
        req.extensions_mut().insert(RemoteAddr(addr));
        req
    };
    let run = |svc: BoxJsonRpcService| {
        time(n, move |i| {
            let svc = svc.clone();
            async move {
                svc.oneshot(call(i)).await.expect("passes");
            }
        })
    };
    let (seq_local, rate_local) = run(BoxJsonRpcService::new(local)).await;
    let (seq_shared, rate_shared) = run(BoxJsonRpcService::new(shared)).await;
    println!("\nrate-limit check (per IP, 200 clients)");
    println!(
        "  local        {seq_local:>10.2?} per call, {rate_local:>10.0} calls/s from 64 tasks"
    );
    println!(
        "  shared       {seq_shared:>10.2?} per call, {rate_shared:>10.0} calls/s from 64 tasks"
    );
}

/// A workload of 30 000 calls over 5 000 keys (a few hot, many cold:
/// key = 5000 · u², u uniform), spread round-robin over `replicas` caches
/// with their own memory (or local tier); the hit rate and the upstream
/// calls.
async fn workload(replicas: usize, shared: Option<(&str, &str)>) -> (f64, usize) {
    let upstream = Arc::new(AtomicUsize::new(0));
    let backend = {
        let upstream = upstream.clone();
        service_fn(move |req: Request| {
            upstream.fetch_add(1, Ordering::Relaxed);
            async move {
                Ok::<_, RpcError>(Response::result(
                    req.id().cloned().unwrap_or_default(),
                    RawJson::from_static(r#""0xabcdef""#).expect("json"),
                ))
            }
        })
    };
    let rules = CacheRules::for_protocol(&rpc_core::protocol::Protocol::generic())
        .method("bench_get", Rule::Forever);
    // Each replica's memory could hold every key: what differs is only
    // who has seen which.
    let local = || MemoryStore::new().max_entries(10_000);
    let mut caches = Vec::new();
    for _ in 0..replicas {
        let layer = CacheLayer::new(rules.clone());
        let svc = match shared {
            Some((url, scope)) => tower::util::Either::Left(
                layer
                    .store(RedisStore::new(link(url, scope).await, local()))
                    .layer(backend.clone()),
            ),
            None => tower::util::Either::Right(layer.store(local()).layer(backend.clone())),
        };
        caches.push(svc);
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let calls = 30_000;
    for i in 0..calls {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let u = (seed >> 11) as f64 / (1u64 << 53) as f64;
        let k = (5000.0 * u * u) as usize;
        caches[i % replicas]
            .clone()
            .oneshot(request("bench_get", &format!("[{k}]")))
            .await
            .expect("answer");
    }
    let up = upstream.load(Ordering::Relaxed);
    (1.0 - up as f64 / calls as f64, up)
}

async fn hit_rates(url: &str) {
    println!("\nhit rate, 30 000 calls over 5 000 keys (skewed), round-robin over the replicas");
    println!("  replicas   per-process cache        shared through Redis");
    for n in 1..=3 {
        // A fresh prefix per run: nothing left from the last.
        let (alone, up_alone) = workload(n, None).await;
        let (together, up_shared) = workload(n, Some((url, &format!("rate{n}")))).await;
        println!(
            "  {n}          {:>5.1} % ({up_alone:>5} upstream)   {:>5.1} % ({up_shared:>5} upstream)",
            alone * 100.0,
            together * 100.0
        );
    }
}

/// 3 replicas × 50 clients ask for the same new key at once (upstream
/// answers in 20 ms): coalescing is per process.
async fn fleet_coalescing(url: &str) {
    let upstream = Arc::new(AtomicUsize::new(0));
    let backend = {
        let upstream = upstream.clone();
        service_fn(move |req: Request| {
            upstream.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, RpcError>(Response::result(
                    req.id().cloned().unwrap_or_default(),
                    RawJson::from_static("1").expect("json"),
                ))
            }
        })
    };
    let rules = CacheRules::for_protocol(&rpc_core::protocol::Protocol::generic())
        .method("bench_get", Rule::Forever);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            CacheLayer::new(rules.clone())
                .store(RedisStore::new(
                    link(url, "coalesce").await,
                    MemoryStore::new(),
                ))
                .layer(backend.clone()),
        );
    }
    let mut tasks = Vec::new();
    for r in &replicas {
        for _ in 0..50 {
            let svc = r.clone();
            tasks.push(tokio::spawn(async move {
                svc.oneshot(request("bench_get", r#"["new"]"#))
                    .await
                    .expect("answer");
            }));
        }
    }
    for t in tasks {
        t.await.expect("task");
    }
    println!(
        "\n150 clients on 3 replicas ask for one new key at once: {} upstream calls (one per replica)",
        upstream.load(Ordering::Relaxed)
    );
}
