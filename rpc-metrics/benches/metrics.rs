//! The metrics layer's cost per call, with the Prometheus recorder installed.
//! Run: `cargo bench -p rpc-metrics --bench metrics`.

#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use rpc_core::{Id, JsonRpcService, RawJson, Request, Response, RpcError};
use rpc_metrics::MetricsLayer;
use tower::{service_fn, Layer, ServiceExt};

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

fn overhead(c: &mut Criterion) {
    let _handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &[0.001, 0.01, 0.1, 1.0])
        .expect("buckets")
        .install_recorder()
        .expect("recorder");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let req = Request::new("eth_getBalance")
        .with_id(Id::from(1u64))
        .with_params(
            RawJson::from_static(r#"["0x6b175474e89094c44da98b954eedeac495271d0f","latest"]"#)
                .expect("json"),
        );
    let mut g = c.benchmark_group("metrics");
    g.throughput(Throughput::Elements(1));

    let bare = node();
    g.bench_function("bare_node", |b| {
        b.iter(|| rt.block_on(bare.clone().oneshot(req.clone())))
    });

    let client = MetricsLayer::client().layer(node());
    g.bench_function("client_layer", |b| {
        b.iter(|| rt.block_on(client.clone().oneshot(req.clone())))
    });

    let backend = MetricsLayer::backend("node").layer(node());
    g.bench_function("backend_layer", |b| {
        b.iter(|| rt.block_on(backend.clone().oneshot(req.clone())))
    });

    let both = MetricsLayer::client().layer(MetricsLayer::backend("node").layer(node()));
    g.bench_function("client_and_backend_layers", |b| {
        b.iter(|| rt.block_on(both.clone().oneshot(req.clone())))
    });
    g.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
