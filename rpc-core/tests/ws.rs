//! JSON-RPC over WebSocket through `serve` on a real loopback listener,
//! with tokio-tungstenite as the client.
#![cfg(feature = "websocket")]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rpc_core::server::{serve, ServerConfig, WsConfig};
use rpc_core::{JsonRpcService, RawJson, Request, Response, RpcError};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tower::service_fn;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Answers `{"method": .., "params": ..}`; `slow` [ms] waits first; `big`
/// [bytes] answers a string that long.
fn service() -> impl JsonRpcService {
    service_fn(|req: Request| async move {
        let params: Value = req
            .params()
            .map(|p| serde_json::from_slice(p.as_bytes()).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        if req.method() == "slow" {
            let ms = params[0].as_u64().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let result = if req.method() == "big" {
            json!("x".repeat(params[0].as_u64().unwrap_or(0) as usize))
        } else {
            json!({"method": req.method(), "params": params})
        };
        Ok::<_, RpcError>(Response::result(
            req.id().cloned().unwrap_or_default(),
            RawJson::from_serialize(&result).expect("json"),
        ))
    })
}

/// A server on a free port; dropping the sender shuts it down.
async fn server(config: ServerConfig) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, service(), config, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

async fn connect(addr: SocketAddr) -> Client {
    let (ws, resp) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .expect("upgrade");
    assert_eq!(resp.status(), 101);
    ws
}

/// The next text message as JSON (within 5 s).
async fn next_json(ws: &mut Client) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer in time")
            .expect("open")
            .expect("a message");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Reads until the server's close frame (or the end); its code.
async fn close_code(ws: &mut Client) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test]
async fn calls_and_batches_go_through_the_service_with_json_rpc_errors() {
    let (addr, _stop) = server(ServerConfig::default()).await;
    let mut ws = connect(addr).await;
    ws.send(Message::text(
        r#"{"jsonrpc":"2.0","id":7,"method":"eth_blockNumber"}"#,
    ))
    .await
    .expect("send");
    let v = next_json(&mut ws).await;
    assert_eq!(
        (&v["id"], &v["result"]["method"]),
        (&json!(7), &json!("eth_blockNumber"))
    );
    // A batch with a notification: answered as one message, the
    // notification left out.
    ws.send(Message::text(
        r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":"b","method":"b","params":[1]}]"#,
    ))
    .await
    .expect("send");
    let v = next_json(&mut ws).await;
    let ids: Vec<&Value> = v
        .as_array()
        .expect("batch")
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, [&json!(1), &json!("b")]);
    // Not JSON, and not a request: errors, and the socket stays open.
    ws.send(Message::text("{nope")).await.expect("send");
    assert_eq!(next_json(&mut ws).await["error"]["code"], -32700);
    ws.send(Message::text(r#"{"jsonrpc":"2.0","id":2}"#))
        .await
        .expect("send");
    assert_eq!(next_json(&mut ws).await["error"]["code"], -32600);
    // A lone notification gets nothing; binary frames are JSON too.
    ws.send(Message::text(r#"{"jsonrpc":"2.0","method":"n"}"#))
        .await
        .expect("send");
    ws.send(Message::binary(
        br#"{"jsonrpc":"2.0","id":3,"method":"c"}"#.to_vec(),
    ))
    .await
    .expect("send");
    assert_eq!(next_json(&mut ws).await["id"], 3);
}

#[tokio::test]
async fn pipelined_calls_are_answered_as_they_complete() {
    let (addr, _stop) = server(ServerConfig::default()).await;
    let mut ws = connect(addr).await;
    ws.send(Message::text(
        r#"{"jsonrpc":"2.0","id":1,"method":"slow","params":[300]}"#,
    ))
    .await
    .expect("send");
    ws.send(Message::text(r#"{"jsonrpc":"2.0","id":2,"method":"fast"}"#))
        .await
        .expect("send");
    assert_eq!(next_json(&mut ws).await["id"], 2);
    assert_eq!(next_json(&mut ws).await["id"], 1);
}

#[tokio::test]
async fn a_message_over_the_size_limit_closes_with_1009() {
    let (addr, _stop) = server(ServerConfig::default().max_body_size(4096)).await;
    let mut ws = connect(addr).await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"a","params":["{}"]}}"#,
        "x".repeat(8192)
    );
    let _ = ws.send(Message::text(big)).await;
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Size));
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_and_others_are_served() {
    let (addr, _stop) = server(
        ServerConfig::default().websocket(WsConfig::default().send_queue(4).max_in_flight(1024)),
    )
    .await;
    let mut slow = connect(addr).await;
    // 400 answers of 64 KiB (25 MB) that the client never reads: the
    // socket buffers fill, then the 4-message queue, then the server
    // closes the socket instead of holding the rest.
    for i in 0..400 {
        let call = format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"big","params":[65536]}}"#);
        if slow.send(Message::text(call)).await.is_err() {
            break;
        }
    }
    // Another client is served meanwhile.
    let mut other = connect(addr).await;
    other
        .send(Message::text(r#"{"jsonrpc":"2.0","id":1,"method":"a"}"#))
        .await
        .expect("send");
    assert_eq!(next_json(&mut other).await["id"], 1);
    // The slow one: what was written before the close, then the end.
    let started = std::time::Instant::now();
    let mut answers = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => answers += 1,
            Ok(Some(Ok(Message::Close(frame)))) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Policy));
                break;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => break,
            Err(_) => panic!("never closed after {answers} answers"),
        }
        assert!(started.elapsed() < Duration::from_secs(20));
    }
    assert!(
        answers < 400,
        "the server held every answer for a client that did not read"
    );
}

#[tokio::test]
async fn connections_past_the_per_address_cap_are_refused_with_503() {
    let (addr, _stop) =
        server(ServerConfig::default().websocket(WsConfig::default().max_connections_per_ip(2)))
            .await;
    let _a = connect(addr).await;
    let _b = connect(addr).await;
    match tokio_tungstenite::connect_async(format!("ws://{addr}/")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            let body: Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or(b"{}")).expect("JSON");
            assert_eq!(body["error"]["code"], -32005, "{body}");
        }
        other => panic!("not refused: {:?}", other.map(|(_, r)| r.status())),
    }
    // One closes: room for another.
    drop(_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _c = connect(addr).await;
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed() {
    let (addr, _stop) = server(
        ServerConfig::default().websocket(
            WsConfig::default()
                .ping_interval(Duration::from_millis(100))
                .pong_timeout(Duration::from_millis(100)),
        ),
    )
    .await;
    // A raw client: the handshake, then silence (it never reads, so it
    // never answers a ping).
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("handshake");
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.expect("response");
    assert_eq!(&head, b"HTTP/1.1 101");
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Everything the server sent, up to its end of the connection.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the server kept the silent socket open");
    // Its close frame (0x88) carries 1001 (going away).
    let close = rest
        .windows(4)
        .any(|w| w[0] == 0x88 && w[2..4] == 1001u16.to_be_bytes());
    assert!(close, "no close frame with 1001 in {} bytes", rest.len());
}

#[tokio::test]
async fn a_draining_server_answers_calls_in_flight_then_closes_with_1001() {
    let (addr, stop) = server(ServerConfig::default()).await;
    let mut ws = connect(addr).await;
    ws.send(Message::text(
        r#"{"jsonrpc":"2.0","id":9,"method":"slow","params":[300]}"#,
    ))
    .await
    .expect("send");
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(stop);
    assert_eq!(next_json(&mut ws).await["id"], 9);
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Away));
}

#[tokio::test]
async fn bad_or_disabled_upgrades_get_http_errors() {
    let (addr, _stop) = server(ServerConfig::default().without_websocket()).await;
    match tokio_tungstenite::connect_async(format!("ws://{addr}/")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 405),
        other => panic!("upgraded: {:?}", other.map(|(_, r)| r.status())),
    }
    let (addr, _stop) = server(ServerConfig::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    .await
    .expect("request");
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.expect("response");
    assert_eq!(&head, b"HTTP/1.1 400");
}

/// A subscription source for the tests: `["ticks", n]` notifies 1..=n
/// every 10 ms, `["never"]` never notifies, anything else is refused.
struct Ticks;

impl rpc_core::server::SubscriptionSource for Ticks {
    fn subscribe(
        &self,
        params: Option<&RawJson>,
    ) -> Result<rpc_core::server::Subscription, rpc_core::ErrorObject> {
        let p: Value = params
            .and_then(|p| serde_json::from_slice(p.as_bytes()).ok())
            .unwrap_or(Value::Null);
        match p[0].as_str() {
            Some("ticks") => {
                let n = p[1].as_u64().unwrap_or(0);
                Ok(Box::pin(futures_util::stream::unfold(
                    1u64,
                    move |i| async move {
                        if i > n {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        Some((RawJson::from_serialize(&i).expect("json"), i + 1))
                    },
                )))
            }
            Some("never") => Ok(Box::pin(futures_util::stream::pending())),
            _ => Err(rpc_core::ErrorObject::new(
                -32602,
                "unsupported subscription",
            )),
        }
    }
}

fn with_ticks(ws: WsConfig) -> ServerConfig {
    ServerConfig::default().websocket(ws.subscriptions(std::sync::Arc::new(Ticks)))
}

#[tokio::test]
async fn subscriptions_notify_in_order_under_their_id_until_unsubscribed() {
    let (addr, _stop) = server(with_ticks(WsConfig::default().max_subscriptions(2))).await;
    let mut ws = connect(addr).await;
    ws.send(Message::text(
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["ticks",5]}"#,
    ))
    .await
    .expect("send");
    // The answer (the id) comes before any notification.
    let answer = next_json(&mut ws).await;
    let sub = answer["result"].as_str().expect("an id").to_owned();
    assert!(sub.starts_with("0x") && sub.len() == 34, "{answer}");
    for i in 1..=5 {
        let n = next_json(&mut ws).await;
        assert_eq!(n["method"], "eth_subscription", "{n}");
        assert_eq!(
            (&n["params"]["subscription"], &n["params"]["result"]),
            (&json!(sub), &json!(i))
        );
    }
    // Refused params, the per-socket cap, unsubscribing.
    ws.send(Message::text(
        r#"{"jsonrpc":"2.0","id":2,"method":"eth_subscribe","params":["nope"]}"#,
    ))
    .await
    .expect("send");
    assert_eq!(next_json(&mut ws).await["error"]["code"], -32602);
    for id in [3, 4] {
        ws.send(Message::text(format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_subscribe","params":["never"]}}"#
        )))
        .await
        .expect("send");
    }
    let third = next_json(&mut ws).await;
    assert!(third["result"].is_string(), "{third}");
    // The first subscription ended but still counts until unsubscribed.
    assert_eq!(next_json(&mut ws).await["error"]["code"], -32005);
    ws.send(Message::text(format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"eth_unsubscribe","params":["{sub}"]}}"#
    )))
    .await
    .expect("send");
    assert_eq!(next_json(&mut ws).await["result"], true);
    ws.send(Message::text(format!(
        r#"{{"jsonrpc":"2.0","id":6,"method":"eth_unsubscribe","params":["{sub}"]}}"#
    )))
    .await
    .expect("send");
    assert_eq!(next_json(&mut ws).await["result"], false);
}

#[tokio::test]
async fn a_socket_with_a_subscription_is_not_idle() {
    let (addr, _stop) = server(with_ticks(
        WsConfig::default()
            .idle_timeout(Duration::from_millis(100))
            .ping_interval(Duration::from_millis(50)),
    ))
    .await;
    let mut ws = connect(addr).await;
    ws.send(Message::text(
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["never"]}"#,
    ))
    .await
    .expect("send");
    assert!(next_json(&mut ws).await["result"].is_string());
    // Well past the idle timeout, answering pings: still open.
    let until = tokio::time::Instant::now() + Duration::from_millis(500);
    while tokio::time::Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(50), ws.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => panic!("closed: {f:?}"),
            Ok(None) => panic!("ended"),
            _ => {}
        }
    }
    ws.send(Message::text(r#"{"jsonrpc":"2.0","id":2,"method":"a"}"#))
        .await
        .expect("send");
    assert_eq!(next_json(&mut ws).await["id"], 2);
}

#[tokio::test]
async fn subscribe_calls_can_be_admitted_by_the_stacks_policy_layers() {
    use rpc_core::admission::AdmissionLayer;
    use rpc_core::filter::{MethodFilter, MethodFilterLayer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // The policy refuses `eth_subscribe` for one server, allows it for the
    // other; the service below the admission layer is never reached by it.
    for (filter, admitted) in [
        (
            MethodFilter::allow_all()
                .deny(["eth_subscribe"])
                .expect("deny"),
            false,
        ),
        (MethodFilter::allow(["eth_*"]).expect("allow"), true),
    ] {
        let reached = Arc::new(AtomicUsize::new(0));
        let counter = reached.clone();
        let stack = tower::ServiceBuilder::new()
            .layer(MethodFilterLayer::new(filter))
            .layer(AdmissionLayer::new())
            .service(service_fn(move |req: Request| {
                counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    Ok::<_, RpcError>(Response::result(
                        req.id().cloned().unwrap_or_default(),
                        RawJson::from_static("\"node\"").expect("json"),
                    ))
                }
            }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = ServerConfig::default().websocket(
            WsConfig::default()
                .subscriptions(Arc::new(Ticks))
                .admit_subscriptions(true),
        );
        let server = tokio::spawn(serve(listener, stack, config, std::future::pending()));
        let mut ws = connect(addr).await;
        ws.send(Message::text(
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["ticks",2]}"#,
        ))
        .await
        .expect("send");
        let answer = next_json(&mut ws).await;
        if admitted {
            assert!(answer["result"].is_string(), "{answer}");
            assert_eq!(next_json(&mut ws).await["params"]["result"], 1);
            assert_eq!(next_json(&mut ws).await["params"]["result"], 2);
        } else {
            assert_eq!(answer["error"]["code"], -32601, "{answer}");
        }
        // Other calls still reach the service.
        ws.send(Message::text(
            r#"{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}"#,
        ))
        .await
        .expect("send");
        assert_eq!(next_json(&mut ws).await["result"], "node");
        assert_eq!(reached.load(Ordering::SeqCst), 1);
        server.abort();
    }
}
