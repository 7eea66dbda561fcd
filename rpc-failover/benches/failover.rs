//! Costs of the group layers. Run: `cargo bench -p rpc-failover --bench failover`.

#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rpc_core::{Id, JsonRpcService, RawJson, Request, Response, RpcError};
use rpc_failover::{FailoverLayer, HeadPolicy, Member, QuorumLayer, RetryLayer};
use tower::{service_fn, Layer, ServiceExt};

fn call() -> Request {
    Request::new("eth_getBalance")
        .with_id(Id::from(1u64))
        .with_params(
            RawJson::from_static(r#"["0x6b175474e89094c44da98b954eedeac495271d0f","latest"]"#)
                .expect("json"),
        )
}

/// A member that answers at once.
fn noop() -> impl JsonRpcService {
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

/// A member that answers after `ms` milliseconds.
fn after(ms: u64) -> impl JsonRpcService {
    service_fn(move |req: Request| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, RpcError>(Response::result(
            req.id().cloned().unwrap_or_default(),
            RawJson::from_static("\"0x10\"").expect("json"),
        ))
    })
}

fn healthy_group(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let req = call();
    let call = || req.clone();
    let mut g = c.benchmark_group("healthy_group");
    g.throughput(Throughput::Elements(1));

    let bare = noop();
    g.bench_function("bare_member", |b| {
        b.iter(|| rt.block_on(bare.clone().oneshot(call())))
    });

    let members = || {
        (0..3)
            .map(|i| Member::new(format!("m{i}"), noop()))
            .collect::<Vec<_>>()
    };
    let failover = FailoverLayer::new().build(members()).expect("group");
    g.bench_function("failover_3", |b| {
        b.iter(|| rt.block_on(failover.clone().oneshot(call())))
    });

    let stacked = RetryLayer::new().layer(FailoverLayer::new().build(members()).expect("group"));
    g.bench_function("retry_failover_3", |b| {
        b.iter(|| rt.block_on(stacked.clone().oneshot(call())))
    });

    // Head tracking on (no prober: built outside the runtime's task, heads
    // learned from live answers): what each call pays for the masks, the
    // block-param look-up, the answer's ChainHead and AgreedChain.
    let tracked = FailoverLayer::new()
        .head_tracking(HeadPolicy::ethereum().max_probes_per_second(0.0))
        .build(members())
        .expect("group");
    rt.block_on(tracked.clone().oneshot(block_number()))
        .expect("warm");
    g.bench_function("failover_3_head_tracked", |b| {
        b.iter(|| rt.block_on(tracked.clone().oneshot(call())))
    });
    // A head-method call: its answer is parsed and observed (same head).
    g.bench_function("failover_3_head_tracked_eth_blockNumber", |b| {
        b.iter(|| rt.block_on(tracked.clone().oneshot(block_number())))
    });
    g.finish();
}

fn block_number() -> Request {
    Request::new("eth_blockNumber")
        .with_id(Id::from(1u64))
        .with_params(RawJson::from_static("[]").expect("json"))
}

fn quorum_latency(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("quorum_latency");
    g.sample_size(20);

    // Members answering in 2, 6 and 30 ms: 2-of-3 should cost ~6 ms.
    let second_fastest = after(6);
    g.bench_function("second_fastest_member_alone_6ms", |b| {
        b.iter(|| rt.block_on(second_fastest.clone().oneshot(call())))
    });
    let members = vec![
        Member::new("fast", after(2)),
        Member::new("medium", after(6)),
        Member::new("slow", after(30)),
    ];
    let quorum = QuorumLayer::new(2).build(members).expect("quorum");
    g.bench_function("quorum_2_of_3_members_2_6_30ms", |b| {
        b.iter(|| rt.block_on(quorum.clone().oneshot(call())))
    });
    g.finish();
}

criterion_group!(benches, healthy_group, quorum_latency);
criterion_main!(benches);
