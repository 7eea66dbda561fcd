//! `WsBackend` against real sockets: rpc-core's own WebSocket front as a
//! node, and raw tokio-tungstenite servers for nodes that freeze or drop.
#![cfg(all(feature = "ws-backend", feature = "websocket"))]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rpc_core::server::{serve, ServerConfig, WsConfig};
use rpc_core::subscription::{PushSource, Subscription, SubscriptionSource};
use rpc_core::{
    Delivery, ErrorObject, Id, Payload, RawJson, Request, Response, RpcError, ServedBy, WsBackend,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tower::{service_fn, ServiceExt};

/// Echoes `{"method": .., "params": ..}`; `slow` [ms] waits first.
async fn echo(req: Request) -> Result<Response, RpcError> {
    let params: Value = req
        .params()
        .map(|p| serde_json::from_slice(p.as_bytes()).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    if req.method() == "slow" {
        tokio::time::sleep(Duration::from_millis(params[0].as_u64().unwrap_or(0))).await;
    }
    Ok(Response::result(
        req.id().cloned().unwrap_or_default(),
        RawJson::from_serialize(&json!({"method": req.method(), "params": params})).expect("json"),
    ))
}

/// `["count"]` notifies 1, 2, 3, ... every 10 ms; anything else is refused.
struct Count;

impl SubscriptionSource for Count {
    fn subscribe(&self, params: Option<&RawJson>) -> Result<Subscription, ErrorObject> {
        let p: Value = params
            .and_then(|p| serde_json::from_slice(p.as_bytes()).ok())
            .unwrap_or(Value::Null);
        if p[0] != "count" {
            return Err(ErrorObject::new(-32602, "unsupported subscription"));
        }
        Ok(futures_util::stream::unfold(1u64, |i| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Some((RawJson::from_serialize(&i).expect("json"), i + 1))
        })
        .boxed())
    }
}

/// rpc-core's front as a node; dropping the sender shuts it down.
async fn node() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config =
        ServerConfig::default().websocket(WsConfig::default().subscriptions(Arc::new(Count)));
    tokio::spawn(serve(listener, service_fn(echo), config, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

fn call(method: &str, id: Id) -> Request {
    Request::new(method)
        .with_id(id)
        .with_params(RawJson::from_static("[7]").expect("json"))
}

#[tokio::test]
async fn calls_are_pipelined_on_one_connection_under_the_clients_ids() {
    let (addr, _stop) = node().await;
    let backend = WsBackend::builder("node", format!("ws://{addr}/"))
        .build()
        .expect("backend");
    // Slow calls first: the quick ones are answered before them.
    let calls = (0..50u64).map(|i| {
        let backend = backend.clone();
        async move {
            let id = Id::from(format!("client-{i}").as_str());
            let req = if i % 2 == 0 {
                Request::new("slow")
                    .with_id(id.clone())
                    .with_params(RawJson::from_static("[50]").expect("json"))
            } else {
                call("quick", id.clone())
            };
            let resp = backend.oneshot(req).await.expect("answered");
            (id, resp)
        }
    });
    for (id, resp) in futures_util::future::join_all(calls).await {
        assert_eq!(resp.id(), &id);
        assert_eq!(
            resp.extensions().get::<ServedBy>().map(|s| &*s.0),
            Some("node")
        );
        let Payload::Result(raw) = resp.payload() else {
            panic!("an error: {:?}", resp.payload());
        };
        let v: Value = raw.deserialize().expect("json");
        assert!(v["method"] == "slow" || v["method"] == "quick", "{v}");
    }
}

#[tokio::test]
async fn upstream_subscriptions_stream_in_order_and_end_with_the_connection() {
    let (addr, stop) = node().await;
    let backend = WsBackend::builder("node", format!("ws://{addr}/"))
        .build()
        .expect("backend");
    let params = RawJson::from_static(r#"["count"]"#).expect("json");
    let mut a = backend.subscribe(params.clone()).await.expect("subscribed");
    let mut b = backend.subscribe(params).await.expect("subscribed");
    for expected in 1..=3u64 {
        for sub in [&mut a, &mut b] {
            let n = tokio::time::timeout(Duration::from_secs(5), sub.next())
                .await
                .expect("in time")
                .expect("a notification");
            assert_eq!(n.deserialize::<u64>().expect("number"), expected);
        }
    }
    // The node's refusal is its own error object.
    let Err(err) = backend
        .subscribe(RawJson::from_static(r#"["nope"]"#).expect("json"))
        .await
    else {
        panic!("refused");
    };
    assert_eq!(err.to_error_object().code(), -32602, "{err}");

    // The node goes away: the subscriptions end (no silent wait) and the
    // next call says it could not connect.
    drop(stop);
    for sub in [&mut a, &mut b] {
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            while sub.next().await.is_some() {}
        });
        end.await.expect("the subscription ended");
    }
    let err = backend
        .oneshot(call("x", Id::from(1u64)))
        .await
        .expect_err("the node is gone");
    assert!(matches!(err, RpcError::Connect { .. }), "{err}");
    assert_eq!(err.delivery(), Delivery::NotSent);
}

/// A raw WebSocket node: the handler of the n-th connection (from 0) gets
/// the socket. Returns the address and the count of connections.
async fn raw_node<F, Fut>(handler: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(usize, tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Fut
        + Send
        + Sync
        + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                tokio::spawn(handler(n, ws));
            }
        }
    });
    (addr, accepted)
}

/// Answers every call `"ok"` under its id.
async fn answer_all(mut ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) {
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).expect("json");
            let answer = json!({"jsonrpc": "2.0", "id": v["id"], "result": "ok"});
            let _ = ws.send(Message::text(answer.to_string())).await;
        }
    }
}

#[tokio::test]
async fn a_frozen_node_times_calls_out_and_its_connection_is_replaced() {
    // The first connection is frozen (open, never read: no answers, no
    // pongs); later ones answer.
    let (addr, accepted) = raw_node(|n, ws| async move {
        if n == 0 {
            let _held = ws;
            std::future::pending::<()>().await;
        } else {
            answer_all(ws).await;
        }
    })
    .await;
    let backend = WsBackend::builder("frozen", format!("ws://{addr}"))
        .timeout(Duration::from_millis(300))
        .pong_timeout(Duration::from_millis(200))
        .build()
        .expect("backend");
    let err = backend
        .clone()
        .oneshot(call("x", Id::from(1u64)))
        .await
        .expect_err("frozen");
    assert!(matches!(err, RpcError::Timeout { .. }), "{err}");
    // The timeout made it ping; no pong within 200 ms closes the
    // connection, and the next call opens a new one.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let resp = backend
        .oneshot(call("x", Id::from(2u64)))
        .await
        .expect("answered on a new connection");
    assert_eq!(
        resp.result_json().map(|r| r.as_bytes().to_vec()),
        Some(b"\"ok\"".to_vec())
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_closed_mid_call_fails_it_and_the_next_call_reconnects() {
    // The first connection reads one call and closes; later ones answer.
    let (addr, accepted) = raw_node(|n, mut ws| async move {
        if n == 0 {
            let _ = ws.next().await;
            let _ = ws.close(None).await;
        } else {
            answer_all(ws).await;
        }
    })
    .await;
    let backend = WsBackend::builder("flaky", format!("ws://{addr}"))
        .build()
        .expect("backend");
    let err = backend
        .clone()
        .oneshot(call("x", Id::from(1u64)))
        .await
        .expect_err("closed");
    assert!(matches!(err, RpcError::ConnectionClosed { .. }), "{err}");
    assert_eq!(err.delivery(), Delivery::MaybeSent);
    let resp = backend
        .oneshot(call("x", Id::from(2u64)))
        .await
        .expect("answered");
    assert!(resp.result_json().is_some());
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_node_that_accepts_but_never_upgrades_fails_within_the_connect_timeout() {
    // TCP accepted (the kernel's backlog), the upgrade never answered.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let backend = WsBackend::builder("mute", format!("ws://{addr}"))
        .connect_timeout(Duration::from_millis(200))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("backend");
    let started = std::time::Instant::now();
    let err = backend
        .oneshot(call("x", Id::from(1u64)))
        .await
        .expect_err("no upgrade");
    assert!(matches!(err, RpcError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("no connection within"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn bad_urls_are_refused_without_showing_them() {
    for (url, reason) in [
        ("http://h/key-abc123", "ws or wss"),
        ("h/key-abc123", "not a valid URL"),
        ("ws://h:99999/key-abc123", "port"),
    ] {
        let err = WsBackend::builder("paid", url)
            .build()
            .expect_err("refused")
            .to_string();
        assert!(err.contains("paid") && err.contains(reason), "{err}");
        assert!(!err.contains("abc123"), "{err}");
    }
    let b = WsBackend::builder("n", "wss://alice:sekret@example.com/v1/key")
        .build()
        .expect("ok");
    assert!(!format!("{b:?}").contains("sekret"));
}
