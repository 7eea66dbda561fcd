//! The per-call tracing span of the client metrics layer, with the events of
//! each backend attempt inside it. Alone in its test binary: tracing caches
//! each call site's interest process-wide, so a parallel test without a
//! subscriber could hide events from this one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rpc_cache::{CacheLayer, CacheRules};
use rpc_core::{BoxJsonRpcService, RawJson, Request, Response, RpcError};
use rpc_failover::{FailoverLayer, Member};
use rpc_metrics::MetricsLayer;
use serde_json::Value;
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};

/// `a` refuses its first connection; `b` answers.
fn backends() -> Vec<Member<BoxJsonRpcService>> {
    let a_calls = Arc::new(AtomicUsize::new(0));
    let a = service_fn(move |r: Request| {
        let n = a_calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                return Err(RpcError::Connect {
                    backend: "a".into(),
                    source: "refused".into(),
                });
            }
            Ok(Response::result(
                r.id().cloned().unwrap_or_default(),
                RawJson::from_static("\"a\"").expect("json"),
            ))
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

/// Collects what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn each_call_has_a_span_with_what_happened_to_it() {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let group = FailoverLayer::new().build(backends()).expect("group");
            let stack = ServiceBuilder::new()
                .layer(MetricsLayer::client())
                .layer(CacheLayer::new(CacheRules::ethereum()))
                .service(group);
            let req = Request::new("eth_chainId").with_id(rpc_core::Id::from("abc"));
            stack.oneshot(req).await.expect("answer");
        });
    });
    let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    // The backend that refused is logged inside the client's span ...
    let failed = lines
        .iter()
        .find(|l| l["fields"]["message"] == "backend failed")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(failed["fields"]["backend"], "a");
    assert_eq!(failed["fields"]["reason"], "connect");
    assert_eq!(failed["span"]["name"], "rpc.call");
    assert_eq!(failed["span"]["method"], "eth_chainId");
    // ... and the call's span ends with who served it, after how many tries.
    let done = lines
        .iter()
        .find(|l| l["fields"]["message"] == "call answered")
        .unwrap_or_else(|| panic!("{text}"));
    let span = &done["span"];
    assert_eq!(span["id"], "\"abc\"");
    assert_eq!(span["backend"], "b");
    assert_eq!(span["attempts"], 2, "{done}");
    assert_eq!(span["cache"], "MISS");
    assert!(span["ms"].as_f64().is_some(), "{done}");
}
