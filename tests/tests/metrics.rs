//! Exact metric deltas for a scripted sequence through the real HTTP front and
//! the full stack (client metrics, filter, cache, failover, per-backend
//! metrics), recorded by metrics-util's debugging recorder.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use rpc_cache::{CacheLayer, CacheRules};
use rpc_core::filter::{MethodFilter, MethodFilterLayer};
use rpc_core::server::{HttpFront, ServerConfig};
use rpc_core::{BoxJsonRpcService, ErrorObject, RawJson, Request, Response, RpcError};
use rpc_failover::{FailoverLayer, Member};
use rpc_metrics::MetricsLayer;
use serde_json::Value;
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};

/// `a` refuses its first connection, then answers `eth_call` with error 3;
/// `b` answers everything.
fn backends() -> Vec<Member<BoxJsonRpcService>> {
    let a_calls = Arc::new(AtomicUsize::new(0));
    let a = service_fn(move |r: Request| {
        let n = a_calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let id = r.id().cloned().unwrap_or_default();
            if n == 0 {
                return Err(RpcError::Connect {
                    backend: "a".into(),
                    source: "refused".into(),
                });
            }
            Ok(match r.method() {
                "eth_call" => Response::error(id, ErrorObject::new(3, "execution reverted")),
                _ => Response::result(id, RawJson::from_static("\"a\"").expect("json")),
            })
        }
    });
    let b = service_fn(|r: Request| async move {
        Ok::<_, RpcError>(Response::result(
            r.id().cloned().unwrap_or_default(),
            RawJson::from_static("\"0x1\"").expect("json"),
        ))
    });
    vec![
        Member::new(
            "a",
            BoxJsonRpcService::new(MetricsLayer::backend("a").layer(a)),
        ),
        Member::new(
            "b",
            BoxJsonRpcService::new(MetricsLayer::backend("b").layer(b)),
        ),
    ]
}

type Snapshot = HashMap<String, DebugValue>;

fn snapshot(recorder: &metrics_util::debugging::Snapshotter) -> Snapshot {
    recorder
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let mut labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (
                format!("{}{{{}}}", key.key().name(), labels.join(",")),
                value,
            )
        })
        .collect()
}

fn counter(s: &Snapshot, key: &str) -> u64 {
    match s.get(key) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        other => panic!("{key}: {other:?}"),
    }
}

#[test]
fn a_scripted_sequence_moves_each_metric_by_exactly_what_happened() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let snap = metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let group = FailoverLayer::new().build(backends()).expect("group");
            let stack = ServiceBuilder::new()
                .layer(MetricsLayer::client())
                .layer(MethodFilterLayer::new(
                    MethodFilter::allow_all().deny(["admin_*"]).expect("pattern"),
                ))
                .layer(CacheLayer::new(CacheRules::ethereum()))
                .service(group);
            let front = HttpFront::new(stack, ServerConfig::default());
            let post = |body: &'static str| {
                let front = front.clone();
                async move {
                    let req = http::Request::post("/")
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(body.as_bytes())))
                        .expect("request");
                    let resp = front.oneshot(req).await.expect("infallible");
                    let body = resp.into_body().collect().await.expect("body").to_bytes();
                    serde_json::from_slice::<Value>(&body).expect("json")
                }
            };
            // 1. success after a failover (a refuses, b answers); cache miss
            let r = post(r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#).await;
            assert_eq!(r["result"], "0x1");
            // 2. cache hit
            post(r#"{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}"#).await;
            // 3. the backend's own error code (a is back in the rotation)
            let r = post(r#"{"jsonrpc":"2.0","id":3,"method":"eth_call","params":[{"to":"0x1"},"latest"]}"#).await;
            assert_eq!(r["error"]["code"], 3);
            // 4. rejection by the filter; the method is not a known label
            let r = post(r#"{"jsonrpc":"2.0","id":4,"method":"admin_peers"}"#).await;
            assert_eq!(r["error"]["code"], -32601);
            // 5. a batch of three (two hits, one new method)
            post(r#"[{"jsonrpc":"2.0","id":5,"method":"eth_chainId"},{"jsonrpc":"2.0","id":6,"method":"eth_chainId"},{"jsonrpc":"2.0","id":7,"method":"net_version"}]"#).await;
        });
        snapshot(&snapshotter)
    });

    let expected_counters: &[(&str, u64)] = &[
        ("rpc_requests_total{method=eth_chainId,outcome=ok}", 4),
        ("rpc_requests_total{method=eth_chainId,outcome=failed}", 0),
        ("rpc_requests_total{method=eth_call,outcome=error}", 1),
        ("rpc_requests_total{method=other,outcome=rejected}", 1),
        ("rpc_requests_total{method=net_version,outcome=ok}", 1),
        ("rpc_response_errors_total{code=3,method=eth_call}", 1),
        ("rpc_response_errors_total{code=-32601,method=other}", 1),
        (
            "rpc_cache_requests_total{method=eth_chainId,status=miss}",
            1,
        ),
        ("rpc_cache_requests_total{method=eth_chainId,status=hit}", 3),
        ("rpc_cache_requests_total{method=eth_call,status=miss}", 1),
        (
            "rpc_backend_requests_total{backend=a,method=eth_chainId,outcome=failed}",
            1,
        ),
        ("rpc_backend_failures_total{backend=a,reason=connect}", 1),
        (
            "rpc_backend_requests_total{backend=b,method=eth_chainId,outcome=ok}",
            1,
        ),
        (
            "rpc_backend_requests_total{backend=a,method=eth_call,outcome=error}",
            1,
        ),
        (
            "rpc_backend_errors_total{backend=a,code=3,method=eth_call}",
            1,
        ),
        (
            "rpc_backend_requests_total{backend=a,method=net_version,outcome=ok}",
            1,
        ),
        ("rpc_failovers_total{backend=a}", 1),
        ("rpc_backend_out_of_service_total{backend=a}", 0),
    ];
    let mut wrong = Vec::new();
    for (key, want) in expected_counters {
        let got = counter(&snap, key);
        if got != *want {
            wrong.push(format!("{key}: {got}, expected {want}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{wrong:#?}\nall: {:#?}",
        snap.keys().collect::<Vec<_>>()
    );

    // Latency histograms got one sample per answered call; batch size one sample of 3.
    match snap.get("rpc_request_duration_seconds{method=eth_chainId}") {
        Some(DebugValue::Histogram(v)) => assert_eq!(v.len(), 4),
        other => panic!("{other:?}"),
    }
    match snap.get("rpc_batch_size{}") {
        Some(DebugValue::Histogram(v)) => {
            assert_eq!(v.iter().map(|x| x.into_inner()).collect::<Vec<_>>(), [3.0])
        }
        other => panic!("{other:?}"),
    }
    match snap.get("rpc_requests_in_flight{}") {
        Some(DebugValue::Gauge(g)) => assert_eq!(g.into_inner(), 0.0, "every call finished"),
        other => panic!("{other:?}"),
    }
    // No method name outside the known set became a label.
    assert!(!snap.keys().any(|k| k.contains("admin_peers")));
}
