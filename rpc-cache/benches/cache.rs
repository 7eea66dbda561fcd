//! Cache hit path. Run: `cargo bench -p rpc-cache --bench cache`.

#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rpc_cache::{CacheLayer, CacheRules, MemoryStore};
use rpc_core::{Id, JsonRpcService, RawJson, Request, Response, RpcError};
use tower::{service_fn, Layer, ServiceExt};

fn call() -> Request {
    Request::new("eth_getBalance")
        .with_id(Id::from(1u64))
        .with_params(
            RawJson::from_static(r#"["0x6b175474e89094c44da98b954eedeac495271d0f","0x112a880"]"#)
                .expect("json"),
        )
}

fn node() -> impl JsonRpcService {
    let result = RawJson::from_static("\"0x1bc16d674ec80000\"").expect("json");
    service_fn(move |req: Request| {
        let result = result.clone();
        async move {
            Ok::<_, RpcError>(Response::result(
                req.id().cloned().unwrap_or_default(),
                result,
            ))
        }
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// `threads` OS threads, each with its own runtime, each making `per_thread`
/// hits on clones of one cache; returns the wall time.
fn parallel_hits(svc: &impl JsonRpcService, threads: usize, per_thread: u64) -> Duration {
    let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let svc = svc.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let rt = runtime();
                let req = call();
                barrier.wait();
                for _ in 0..per_thread {
                    let _ = rt.block_on(svc.clone().oneshot(req.clone()));
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("thread");
    }
    start.elapsed()
}

fn hits(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("cache");
    g.throughput(Throughput::Elements(1));

    let bare = node();
    let req = call();
    g.bench_function("no_cache_node_call", |b| {
        b.iter(|| rt.block_on(bare.clone().oneshot(req.clone())))
    });

    for shards in [16, 1] {
        // A block 0x112a880 deep below the head: kept for good.
        let cached = CacheLayer::new(CacheRules::ethereum())
            .store(MemoryStore::new().shards(shards))
            .layer(node());
        cached.observe_head(0x2000000);
        rt.block_on(cached.clone().oneshot(call())).expect("warm");

        g.bench_function(format!("hit_1_thread_{shards}_shards"), |b| {
            b.iter(|| rt.block_on(cached.clone().oneshot(req.clone())))
        });
        g.throughput(Throughput::Elements(2));
        g.bench_function(format!("hit_2_threads_{shards}_shards"), |b| {
            b.iter_custom(|iters| parallel_hits(&cached, 2, iters))
        });
        g.throughput(Throughput::Elements(1));
    }

    // Following a head-tracking group's live ChainView: what every lookup
    // pays to check it (a settled block; the view is current).
    let view = rpc_core::ChainView::new();
    view.publish(rpc_core::AgreedChain {
        head: 0x2000000,
        tip: 0x2000000,
        finalized: Some(0x2000000 - 64),
        reorgs: 0,
        reorg_floor: 0,
    });
    let followed = CacheLayer::new(CacheRules::ethereum())
        .chain_view(view)
        .layer(node());
    rt.block_on(followed.clone().oneshot(call())).expect("warm");
    g.bench_function("hit_1_thread_16_shards_chain_view", |b| {
        b.iter(|| rt.block_on(followed.clone().oneshot(req.clone())))
    });
    g.finish();
}

criterion_group!(benches, hits);
criterion_main!(benches);
