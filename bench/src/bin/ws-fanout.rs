//! Notifications per second fanned out to many WebSocket subscribers of one
//! shared source, through `serve` on the loopback.
//!
//! `cargo run --release -p rpc-bench --bin ws-fanout -- [SUBSCRIBERS] [NOTIFICATIONS]`
//! (default 1000 subscribers, 200 notifications each). The source sends
//! each notification (a 600-byte header-like object) to every subscriber
//! through a broadcast channel, as `SubscriptionHub` does; the clients read
//! everything; the rate is notifications delivered (and parsed as JSON by
//! the clients) per second, all subscribers together.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rpc_core::server::{serve, ServerConfig, WsConfig};
use rpc_core::subscription::{Subscription, SubscriptionSource};
use rpc_core::{ErrorObject, RawJson, Request, Response, RpcError};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

/// One broadcast channel every subscriber reads.
struct Shared(broadcast::Sender<RawJson>);

impl SubscriptionSource for Shared {
    fn subscribe(&self, _params: Option<&RawJson>) -> Result<Subscription, ErrorObject> {
        let rx = self.0.subscribe();
        Ok(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.ok().map(|v| (v, rx))
        })
        .boxed())
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let subscribers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let notifications: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(subscribers, notifications));
}

async fn run(subscribers: usize, notifications: usize) {
    let (tx, _) = broadcast::channel::<RawJson>(4096);
    let source = Arc::new(Shared(tx.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = ServerConfig::default()
        .max_connections_per_ip(subscribers + 10)
        .websocket(
            WsConfig::default()
                .max_connections(subscribers + 10)
                .max_connections_per_ip(subscribers + 10)
                .send_queue(4096)
                .subscriptions(source),
        );
    let noop = tower::service_fn(|r: Request| async move {
        Ok::<_, RpcError>(Response::result(
            r.id().cloned().unwrap_or_default(),
            RawJson::NULL,
        ))
    });
    tokio::spawn(serve(listener, noop, config, std::future::pending()));

    // Every subscriber connected and subscribed before the first notification.
    let mut readers = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
            .await
            .expect("upgrade");
        ws.send(Message::text(
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#,
        ))
        .await
        .expect("send");
        // The answer (the subscription id).
        let _ = ws.next().await;
        readers.push(tokio::spawn(async move {
            let mut got = 0usize;
            while got < notifications {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
                        assert_eq!(v["method"], "eth_subscription");
                        got += 1;
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
            got
        }));
    }
    let header = serde_json::json!({
        "number": "0x1", "hash": format!("0x{}", "ab".repeat(32)),
        "parentHash": format!("0x{}", "cd".repeat(32)), "miner": format!("0x{}", "00".repeat(20)),
        "stateRoot": format!("0x{}", "11".repeat(32)), "transactionsRoot": format!("0x{}", "22".repeat(32)),
        "receiptsRoot": format!("0x{}", "33".repeat(32)), "gasLimit": "0x1c9c380", "gasUsed": "0x5208",
        "timestamp": "0x6560f000", "baseFeePerGas": "0x3b9aca00", "extraData": "0x",
    });
    let raw = RawJson::from_serialize(&header).expect("json");
    let started = Instant::now();
    for i in 0..notifications {
        let _ = tx.send(raw.clone());
        // The channel holds 4096: pace the source so nobody lags it.
        if i % 64 == 63 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mut delivered = 0usize;
    for r in readers {
        delivered += r.await.unwrap_or(0);
    }
    let took = started.elapsed();
    println!(
        "{subscribers} subscribers x {notifications} notifications: {delivered} delivered in {:.2} s = {:.0} notifications/s ({} bytes each)",
        took.as_secs_f64(),
        delivered as f64 / took.as_secs_f64(),
        raw.as_bytes().len()
    );
}
