//! The shipped `rpc-proxy` serving JSON-RPC over WebSocket in front of a
//! real anvil: calls and batches on one socket through the configured stack
//! (the method filter included), and a connection flood held at the
//! configured cap while the admitted sockets keep working.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tests::{start_anvil, start_proxy_config, start_ws_proxy, ws_ask as ask};
use tokio_tungstenite::tungstenite::Message;

type Socket = tests::WsSocket;

async fn open(addr: SocketAddr) -> Result<Socket, u16> {
    match tokio_tungstenite::connect_async(format!("ws://{addr}/")).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_batches_and_the_filter_over_websocket_then_a_flood_held_at_the_cap() {
    let (_anvil, node) = start_anvil();
    let (_proxy, addr) = start_proxy_config(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[server.websocket]
max_connections_per_ip = 20
[backends.anvil]
url = "http://{node}"
[methods]
deny = ["eth_sendTransaction"]
"#
    ));
    let mut ws = open(addr).await.expect("upgrade");
    let v = ask(
        &mut ws,
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}),
    )
    .await;
    assert_eq!(v, json!({"jsonrpc": "2.0", "id": 1, "result": "0x7a69"}));
    let v = ask(
        &mut ws,
        json!([
            {"jsonrpc": "2.0", "id": "a", "method": "eth_blockNumber"},
            {"jsonrpc": "2.0", "id": "b", "method": "eth_sendTransaction", "params": [{}]},
        ]),
    )
    .await;
    let items = v.as_array().expect("a batch answer");
    assert!(items[0]["result"].is_string(), "{v}");
    // The same method filter as over HTTP, with the same error code.
    assert_eq!(items[1]["error"]["code"], -32601, "{v}");

    // A flood: 40 more sockets from one address; 19 fit beside the first.
    let mut admitted = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        match open(addr).await {
            Ok(s) => admitted.push(s),
            Err(503) => refused += 1,
            Err(other) => panic!("refused with {other}"),
        }
    }
    assert_eq!((admitted.len(), refused), (19, 21));
    // Every admitted socket still answers.
    for (i, s) in admitted.iter_mut().enumerate() {
        let v = ask(
            s,
            json!({"jsonrpc": "2.0", "id": i, "method": "eth_chainId"}),
        )
        .await;
        assert_eq!(v["result"], "0x7a69", "{v}");
    }
    // Closed sockets free their places.
    for mut s in admitted.drain(..) {
        let _ = s.close(None).await;
    }
    let started = std::time::Instant::now();
    loop {
        match open(addr).await {
            Ok(_) => break,
            Err(_) if started.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("still refused with {s} after the others closed"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_heads_subscriptions_get_every_block_once_in_order() {
    let (_anvil, node) = start_anvil();
    let (_proxy, addr) = start_ws_proxy(node, "");
    // Two clients share the source.
    let mut a = open(addr).await.expect("upgrade");
    let mut b = open(addr).await.expect("upgrade");
    let mut subs = Vec::new();
    for ws in [&mut a, &mut b] {
        let v = ask(
            ws,
            json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}),
        )
        .await;
        subs.push(v["result"].as_str().expect("a subscription id").to_owned());
    }
    // The shared poller takes the head it starts from on its first poll,
    // which runs after the subscribe is answered: a block mined before that
    // poll is its start, not news. So blocks are mined one at a time until
    // one is announced (bounded), and the count starts from there.
    let mut live = None;
    for _ in 0..20 {
        let (_, v) = tests::call(node, "anvil_mine", json!(["0x1"])).await;
        assert!(v.get("error").is_none(), "{v}");
        let announced =
            tokio::time::timeout(Duration::from_millis(1500), head_number(&mut a, &subs[0])).await;
        if let Ok(n) = announced {
            live = Some(n);
            break;
        }
    }
    let before = live.expect("the poller announces a mined block");
    // The other socket shares the poller: it has what the first one had.
    while head_number(&mut b, &subs[1]).await < before {}
    // Blocks one at a time and in bursts (several between two polls).
    for burst in ["0x1", "0x3", "0x1", "0x4"] {
        let (_, v) = tests::call(node, "anvil_mine", json!([burst])).await;
        assert!(v.get("error").is_none(), "{v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, tip) = tests::call(node, "eth_blockNumber", json!([])).await;
    let tip = u64::from_str_radix(
        tip["result"]
            .as_str()
            .expect("hex")
            .trim_start_matches("0x"),
        16,
    )
    .expect("hex");
    // (One more when a warm-up block was announced after its wait.)
    assert!(tip >= before + 9, "{before} {tip}");
    for (ws, sub) in [(&mut a, &subs[0]), (&mut b, &subs[1])] {
        let mut numbers = Vec::new();
        while numbers.last() != Some(&tip) {
            numbers.push(head_number(ws, sub).await);
        }
        // Every block mined since, once each, in order.
        assert_eq!(
            numbers,
            (before + 1..=tip).collect::<Vec<_>>(),
            "{numbers:?}"
        );
    }
}

/// The number of the next head announced on `ws` for subscription `sub`:
/// the next text message must be that notification (pings and other
/// frames skipped; 10 s at most).
async fn head_number(ws: &mut Socket, sub: &str) -> u64 {
    let v = tests::ws_next_json(ws).await;
    assert_eq!(v["method"], "eth_subscription", "{v}");
    assert_eq!(v["params"]["subscription"], sub, "{v}");
    let n = v["params"]["result"]["number"].as_str().expect("number");
    u64::from_str_radix(n.trim_start_matches("0x"), 16).expect("hex")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_subscriptions_get_each_log_once_and_a_reorg_marks_them_removed() {
    let (_anvil, node) = start_anvil();
    let (_proxy, addr) = start_ws_proxy(node, "");
    let contract = tests::deploy_logger(node).await;
    let mut ws = open(addr).await.expect("upgrade");
    let v = ask(
        &mut ws,
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
               "params": ["logs", {"address": contract}]}),
    )
    .await;
    let sub = v["result"].as_str().expect("a subscription id").to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Three calls, each mined in its own block (automine): three logs.
    let from = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    let mut txs = Vec::new();
    for _ in 0..3 {
        let (_, v) = tests::call(
            node,
            "eth_sendTransaction",
            json!([{"from": from, "to": contract}]),
        )
        .await;
        txs.push(v["result"].as_str().expect("tx").to_owned());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        let n = next_notification(&mut ws).await;
        assert_eq!(n["params"]["subscription"], sub.as_str(), "{n}");
        let log = &n["params"]["result"];
        assert_eq!(log["removed"], false, "{n}");
        assert_eq!(
            log["address"].as_str().map(str::to_lowercase),
            Some(contract.to_lowercase())
        );
        seen.push(log["transactionHash"].as_str().expect("tx").to_owned());
    }
    assert_eq!(seen, txs, "each call's log once, in order");
    // The last two blocks are replaced by empty ones: their logs again,
    // removed, newest first.
    let (_, v) = tests::call(node, "anvil_reorg", json!([2, []])).await;
    assert!(v.get("error").is_none(), "{v}");
    let mut removed = Vec::new();
    for _ in 0..2 {
        let n = next_notification(&mut ws).await;
        assert_eq!(n["params"]["result"]["removed"], true, "{n}");
        removed.push(
            n["params"]["result"]["transactionHash"]
                .as_str()
                .expect("tx")
                .to_owned(),
        );
    }
    assert_eq!(removed, [txs[2].clone(), txs[1].clone()]);
}

/// The next `eth_subscription` notification on a socket (other messages
/// skipped).
async fn next_notification(ws: &mut Socket) -> Value {
    loop {
        let v = tests::ws_next_json(ws).await;
        if v["method"] == "eth_subscription" {
            return v;
        }
    }
}

/// The proxy process's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_with_bounded_memory_while_others_are_served() {
    let (_anvil, node) = start_anvil();
    let (proxy, addr) = start_proxy_config(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[server.websocket]
send_queue = 16
[backends.anvil]
url = "http://{node}"
[cache]
enabled = true
"#
    ));
    // Warm the cache: eth_chainId answers from it from now on.
    let mut other = open(addr).await.expect("upgrade");
    ask(
        &mut other,
        json!({"jsonrpc": "2.0", "id": 0, "method": "eth_chainId"}),
    )
    .await;
    let before = rss_kib(proxy.pid());
    // A client sends 400 batches of 500 calls (≈ 17 KB of answers each,
    // ≈ 7 MB in all) and never reads.
    let batch: Vec<Value> = (0..500)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_chainId"}))
        .collect();
    let text = serde_json::to_string(&batch).expect("json");
    let mut slow = open(addr).await.expect("upgrade");
    for _ in 0..400 {
        if slow.send(Message::text(text.clone())).await.is_err() {
            break;
        }
    }
    // Others are served meanwhile.
    for i in 1..=20 {
        let v = ask(
            &mut other,
            json!({"jsonrpc": "2.0", "id": i, "method": "eth_chainId"}),
        )
        .await;
        assert_eq!(v["result"], "0x7a69", "{v}");
    }
    // The slow client is closed (1008) after what was already written.
    let mut answers = 0;
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(20), slow.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => answers += 1,
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => break None,
            Err(_) => panic!("never closed ({answers} answers read)"),
        }
    };
    assert!(
        answers < 400,
        "every answer was held for a client that did not read"
    );
    assert!(matches!(closed, Some(1008) | None), "{closed:?}");
    let after = rss_kib(proxy.pid());
    assert!(
        after < before + 64 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );
}

/// `eth_subscribe` passes the proxy's method filter and rate limit like any
/// call (counted in `rpc_requests_total`), and is served by the hub, never
/// forwarded to the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_calls_meet_the_method_filter_and_the_rate_limit() {
    let upstream = tests::FaultUpstream::start_chain(tests::ScriptedChain::new(7)).await;
    let (_denied, denied) = start_proxy_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[backends.up]\nurl = \"{}\"\n\
         [methods]\ndeny = [\"eth_subscribe\"]\n",
        upstream.url()
    ));
    let mut ws = open(denied).await.expect("upgrade");
    let v = ask(
        &mut ws,
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}),
    )
    .await;
    assert_eq!(v["error"]["code"], -32601, "{v}");

    let (limited, addr) = start_proxy_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [backends.up]\nurl = \"{}\"\n[rate_limit]\nper_ip = {{ rate = 1, burst = 2 }}\n",
        upstream.url()
    ));
    let mut ws = open(addr).await.expect("upgrade");
    let mut answers = Vec::new();
    for id in 1..=3 {
        answers.push(
            ask(
                &mut ws,
                json!({"jsonrpc": "2.0", "id": id, "method": "eth_subscribe", "params": ["newPendingTransactions", true]}),
            )
            .await,
        );
    }
    // Two admitted (and refused by the hub: full transactions are not
    // served), the third over the budget.
    assert_eq!(answers[0]["error"]["code"], -32602, "{answers:?}");
    assert_eq!(answers[1]["error"]["code"], -32602, "{answers:?}");
    assert_eq!(answers[2]["error"]["code"], -32016, "{answers:?}");
    let metrics = tests::scrape(tests::metrics_addr(&limited)).await;
    let lines = |prefix: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix) && l.contains("method=\"eth_subscribe\""))
            .count()
    };
    assert!(lines("rpc_requests_total") > 0, "{metrics}");
    assert_eq!(
        lines("rpc_backend_"),
        0,
        "a subscribe call reached the node: {metrics}"
    );
}
