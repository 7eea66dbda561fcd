//! Hot-path costs of rpc-core. Run: `cargo bench -p rpc-core --bench core`.

#![allow(missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use http_body_util::{BodyExt, Full};
use rpc_core::parse::parse_message;
use rpc_core::server::{serve, HttpFront, ServerConfig};
use rpc_core::{HttpBackend, Id, RawJson, Request, Response, RpcError};
use tower::{service_fn, ServiceExt};

const CALL: &str = r#"{"jsonrpc":"2.0","id":42,"method":"eth_call","params":[{"to":"0x6b175474e89094c44da98b954eedeac495271d0f","data":"0x70a08231000000000000000000000000f977814e90da44bfa03b6295a0616a897441acec"},"latest"]}"#;

fn batch(n: usize) -> String {
    format!("[{}]", vec![CALL; n].join(","))
}

fn noop() -> impl rpc_core::JsonRpcService {
    service_fn(|req: Request| async move {
        Ok::<_, RpcError>(Response::result(
            req.id().cloned().unwrap_or_default(),
            RawJson::NULL,
        ))
    })
}

fn parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    let single = Bytes::from_static(CALL.as_bytes());
    g.throughput(Throughput::Elements(1));
    g.bench_function("single_call", |b| {
        b.iter(|| parse_message(black_box(single.clone()), 100))
    });
    let body = Bytes::from(batch(100));
    g.throughput(Throughput::Elements(100));
    g.bench_function("batch_100", |b| {
        b.iter(|| parse_message(black_box(body.clone()), 100))
    });
    // A backend's answer to a batch of 100 `eth_getBlockByNumber` (blocks
    // shaped like anvil's: hashes, a 512-digit bloom, short quantities).
    let answers = (0..100)
        .map(|i| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{i},"result":{{"hash":"0x{h}","parentHash":"0x{h}","sha3Uncles":"0x{h}","miner":"0x{a}","stateRoot":"0x{h}","transactionsRoot":"0x{h}","receiptsRoot":"0x{h}","logsBloom":"0x{bloom}","difficulty":"0x0","number":"{i:#x}","gasLimit":"0x1c9c380","gasUsed":"0x0","timestamp":"0x6b0a1814","extraData":"0x","mixHash":"0x{h}","nonce":"0x0000000000000000","baseFeePerGas":"0x3b9aca00","size":"0x244","uncles":[],"transactions":[]}}}}"#,
                h = "5e".repeat(32),
                a = "00".repeat(20),
                bloom = "0".repeat(512)
            )
        })
        .collect::<Vec<_>>();
    let answer = Bytes::from(format!("[{}]", answers.join(",")));
    g.throughput(Throughput::Bytes(answer.len() as u64));
    g.bench_function("backend_batch_answer_100_blocks", |b| {
        b.iter(|| rpc_core::parse::parse_batch_response(black_box(&answer)))
    });
    // A batch of 100 small answers (`eth_chainId`, `eth_getBalance`): the
    // cost per answer object, not per byte.
    let small = Bytes::from(format!(
        "[{}]",
        (0..100)
            .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"result":"0x7a69"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    ));
    g.throughput(Throughput::Elements(100));
    g.bench_function("backend_batch_answer_100_small", |b| {
        b.iter(|| rpc_core::parse::parse_batch_response(black_box(&small)))
    });
    g.throughput(Throughput::Bytes(answer.len() as u64));
    // The same answer read the way rpc-core did before `json_scan`:
    // serde_json with borrowed `&RawValue` members.
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Wire<'a> {
        #[serde(borrow, default)]
        id: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        result: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        error: Option<&'a serde_json::value::RawValue>,
    }
    g.bench_function("backend_batch_answer_100_blocks_serde_json", |b| {
        b.iter(|| serde_json::from_slice::<Vec<Wire<'_>>>(black_box(&answer)).map(|v| v.len()))
    });
    g.finish();
}

fn writing(c: &mut Criterion) {
    let mut g = c.benchmark_group("write");
    // A typical eth_getBlockByNumber-sized result (~2 KB).
    let result = RawJson::from_bytes(format!(
        r#"{{"hash":"0x{}","transactions":[{}]}}"#,
        "ab".repeat(32),
        vec![r#""0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff""#; 28]
            .join(",")
    ))
    .expect("json");
    let resp = Response::result(Id::from(42u64), result);
    g.throughput(Throughput::Bytes(resp.to_json().len() as u64));
    g.bench_function("response_2kb", |b| b.iter(|| black_box(&resp).to_json()));
    let Ok(rpc_core::parse::Incoming::Single(Ok(req))) =
        parse_message(Bytes::from_static(CALL.as_bytes()), 1)
    else {
        unreachable!()
    };
    g.throughput(Throughput::Elements(1));
    g.bench_function("request", |b| b.iter(|| black_box(&req).to_json()));
    g.bench_function("clone_request", |b| b.iter(|| black_box(&req).clone()));
    // As the front hands it down: with a deadline and the client address.
    let mut with_ext = req.clone();
    with_ext
        .extensions_mut()
        .insert(rpc_core::Deadline(tokio::time::Instant::now()));
    with_ext
        .extensions_mut()
        .insert(rpc_core::RemoteAddr(([127, 0, 0, 1], 9).into()));
    g.bench_function("clone_request_with_extensions", |b| {
        b.iter(|| black_box(&with_ext).clone())
    });
    g.finish();
}

fn front(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let front = HttpFront::new(noop(), ServerConfig::default());
    let mut g = c.benchmark_group("front");
    g.throughput(Throughput::Elements(1));
    g.bench_function("single_call_noop_service", |b| {
        b.iter(|| {
            rt.block_on(async {
                let req = http::Request::post("/")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(CALL.as_bytes())))
                    .expect("request");
                let resp = front.clone().oneshot(req).await.expect("infallible");
                resp.into_body().collect().await.expect("body").to_bytes()
            })
        })
    });
    let body = Bytes::from(batch(100));
    g.throughput(Throughput::Elements(100));
    g.bench_function("batch_100_noop_service", |b| {
        b.iter(|| {
            rt.block_on(async {
                let req = http::Request::post("/")
                    .body(Full::new(body.clone()))
                    .expect("request");
                let resp = front.clone().oneshot(req).await.expect("infallible");
                resp.into_body().collect().await.expect("body").to_bytes()
            })
        })
    });
    g.finish();
}

/// Per-call cost of the router and the rate limiter over a no-op service.
fn layers(c: &mut Criterion) {
    use rpc_core::ratelimit::{Limit, RateLimitLayer};
    use rpc_core::route::MethodRouter;
    use rpc_core::{BoxJsonRpcService, RemoteAddr};
    use tower::Layer;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let call = || {
        let mut req = Request::new("eth_call").with_id(Id::from(1u64));
        req.extensions_mut()
            .insert(RemoteAddr(([10, 0, 0, 1], 4000).into()));
        req
    };
    let mut g = c.benchmark_group("layers");
    g.throughput(Throughput::Elements(1));
    let bare = BoxJsonRpcService::new(noop());
    g.bench_function("boxed_noop", |b| {
        b.iter(|| rt.block_on(bare.clone().oneshot(call())).expect("answer"))
    });
    let router = MethodRouter::builder()
        .route("eth_sendRawTransaction", BoxJsonRpcService::new(noop()))
        .expect("pattern")
        .route("debug_*", BoxJsonRpcService::new(noop()))
        .expect("pattern")
        .default_service(BoxJsonRpcService::new(noop()))
        .build();
    g.bench_function("method_router_default_route", |b| {
        b.iter(|| rt.block_on(router.clone().oneshot(call())).expect("answer"))
    });
    // A budget that never runs out during the run: the cost of the check.
    let limited = RateLimitLayer::new()
        .per_ip(Limit::per_second(u32::MAX).burst(u32::MAX))
        .weight("eth_getLogs", 10)
        .layer(BoxJsonRpcService::new(noop()));
    g.bench_function("rate_limit_per_ip_check", |b| {
        b.iter(|| {
            rt.block_on(limited.clone().oneshot(call()))
                .expect("answer")
        })
    });
    g.finish();
}

fn loopback(c: &mut Criterion) {
    // HttpBackend -> TCP loopback -> serve/HttpFront -> no-op: one full hop.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(
            listener,
            noop(),
            ServerConfig::default(),
            std::future::pending(),
        ));
        addr
    });
    let backend = HttpBackend::builder("bench", format!("http://{addr}"))
        .build()
        .expect("backend");
    let req = Request::new("eth_blockNumber").with_id(Id::from(1u64));
    let mut g = c.benchmark_group("http_backend");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("loopback_round_trip", |b| {
        b.iter(|| {
            rt.block_on(backend.clone().oneshot(req.clone()))
                .expect("answer")
        })
    });
    g.finish();

    // The same call over one WebSocket on the same listener: a text frame
    // out, the answer frame back (tokio-tungstenite as the client).
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut ws = rt.block_on(async {
        tokio_tungstenite::connect_async(format!("ws://{addr}/"))
            .await
            .expect("upgrade")
            .0
    });
    let text = r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}"#;
    let mut g = c.benchmark_group("websocket");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("loopback_round_trip", |b| {
        b.iter(|| {
            rt.block_on(async {
                ws.send(Message::text(text)).await.expect("send");
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) => break t,
                        Some(Ok(_)) => continue,
                        other => panic!("socket ended: {other:?}"),
                    }
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, parsing, writing, front, layers, loopback);
criterion_main!(benches);
