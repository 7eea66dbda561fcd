//! The shipped `electrum-gateway` in front of pools of real ElectrumX servers
//! (Bitcoin and Bitcoin Cash, on the harness's deterministic regtest chain):
//! every REST route against known balances and transactions, JSON-RPC
//! pass-through and its allow-list, a real broadcast to several servers,
//! server-sent events, and servers killed and frozen under a bounded load.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::{get, post, post_to, spend_op_true, start_gateway, ElectrumX, ElectrumXOptions};

/// Address A of the fixed chain: 61 BTC confirmed, 0.5 unconfirmed.
const ADDRESS_A: &str = "myxkh5cD5UFyCRdMv6btddc3AY3Zwg5zjm";
const CASHADDR_A: &str = "bchreg:qr99xe9h87llfuw7sperpt44ethul3882gzjpf4pht";
const OP_TRUE_SCRIPTHASH: &str = "6032c38c0bc0e91e726f1e55e1832e434509001a7aed5cfd881b6ef07215e84a";

fn pool(n: usize, bch: bool) -> ElectrumX {
    ElectrumX::start(ElectrumXOptions {
        instances: n,
        bch,
        ..Default::default()
    })
}

fn gateway(ex: &ElectrumX, n: usize, extra: &[&str]) -> (tests::Process, SocketAddr) {
    let mut args: Vec<String> = vec!["--network".into(), "regtest".into()];
    for i in 0..n {
        args.push("--server".into());
        args.push(format!("ex{i}={}", ex.tcp_url(i)));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    start_gateway(&refs)
}

async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = get(addr, path).await;
    let v =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
    (status.as_u16(), v)
}

async fn rpc(addr: SocketAddr, method: &str, params: Value) -> (u16, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let (status, _, text) = post(addr, body.to_string()).await;
    (status.as_u16(), serde_json::from_str(&text).expect("JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_routes_answer_from_the_known_chain() {
    let ex = pool(2, false);
    let (_gw, addr) = gateway(&ex, 2, &[]);
    // Ready once both servers are connected and agree on a verified tip.
    until_all_healthy(addr, 2).await;
    let (_, v) = get_json(addr, "/healthz").await;
    assert_eq!(
        (v["verified_tip"].as_u64(), v["agreed_tip"].as_u64()),
        (Some(10), Some(10)),
        "{v}"
    );
    assert!(
        v["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .all(|s| s["verified"] == "on_chain"),
        "{v}"
    );

    let (s, v) = get_json(addr, &format!("/v1/address/{ADDRESS_A}/balance")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["confirmed"].as_u64(), v["unconfirmed"].as_u64()),
        (Some(6_100_000_000), Some(50_000_000))
    );

    let (s, v) = get_json(addr, &format!("/v1/address/{ADDRESS_A}/utxos")).await;
    assert_eq!(s, 200, "{v}");
    let utxos = v["utxos"].as_array().expect("utxos");
    let total: u64 = utxos.iter().filter_map(|u| u["value"].as_u64()).sum();
    assert_eq!(total, 6_150_000_000, "{v}");
    assert!(utxos
        .iter()
        .all(|u| u["txid"].as_str().is_some_and(|t| t.len() == 64)));

    let (s, v) = get_json(addr, &format!("/v1/address/{ADDRESS_A}/history")).await;
    assert_eq!(s, 200, "{v}");
    let history = v["history"].as_array().expect("history");
    assert_eq!(history.len(), 4, "3 confirmed and 1 in the mempool: {v}");
    // Confirmations are proven against verified headers; the mempool's is not.
    for t in history {
        let want = if t["height"].as_i64().unwrap_or(0) > 0 {
            "spv"
        } else {
            "unverified"
        };
        assert_eq!(t["verified"], want, "{t}");
    }
    let confirmed = history
        .iter()
        .find(|t| t["height"].as_i64().unwrap_or(0) > 0)
        .expect("a confirmed tx");
    let txid = confirmed["txid"].as_str().expect("txid");

    let (s, v) = get_json(addr, &format!("/v1/tx/{txid}")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["txid"], txid,
        "the decoded txid matches the one asked for"
    );
    assert!(v["hex"].as_str().is_some_and(|h| h.len() > 100));
    let a_scripthash = "3d4d2ea7c2eb16116423852a609a7dd47130c2fa9f099c1ae90610533f768ba8";
    assert!(
        v["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .any(|o| o["scripthash"] == a_scripthash),
        "one output pays A: {v}"
    );

    let (s, v) = get_json(addr, "/v1/tip").await;
    assert_eq!((s, v["height"].as_u64()), (200, Some(10)), "{v}");
    assert_eq!(v["verified"], "spv", "{v}");
    assert_eq!(v["header"].as_str().map(str::len), Some(160));
    let (s, v) = get_json(addr, "/v1/block/1/header").await;
    assert_eq!((s, v["height"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(v["header"].as_str().map(str::len), Some(160));

    // Clear 4xx errors with a JSON body.
    for (path, status, code) in [
        ("/v1/address/not-an-address/balance", 400, "bad_address"),
        (
            "/v1/address/1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2/balance",
            400,
            "bad_address",
        ),
        ("/v1/tx/xyz", 400, "bad_txid"),
        (
            "/v1/tx/0000000000000000000000000000000000000000000000000000000000000001",
            404,
            "not_found",
        ),
        ("/v1/block/abc/header", 400, "bad_height"),
        ("/v1/block/999999/header", 404, "not_found"),
        ("/v1/nothing", 404, "not_found"),
    ] {
        let (s, v) = get_json(addr, path).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {v}"
        );
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }

    // JSON-RPC pass-through, with its allow-list.
    let (s, v) = rpc(
        addr,
        "blockchain.scripthash.get_balance",
        json!([a_scripthash]),
    )
    .await;
    assert_eq!(
        (s, v["result"]["confirmed"].as_u64()),
        (200, Some(6_100_000_000)),
        "{v}"
    );
    for refused in [
        "server.version",
        "server.add_peer",
        "blockchain.scripthash.subscribe",
    ] {
        let (s, v) = rpc(addr, refused, json!([])).await;
        assert_eq!(
            (s, v["error"]["code"].as_i64()),
            (403, Some(-32601)),
            "{refused}: {v}"
        );
    }

    let (s, v) = get_json(addr, "/healthz").await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
    assert_eq!(v["servers"].as_array().map(Vec::len), Some(2));
    let (s, text) = get(addr, "/metrics").await;
    assert_eq!(s, 200);
    assert!(
        text.contains("rpc_backend_requests_total{backend=\"ex0\""),
        "{text}"
    );
}

/// A transaction spending a confirmed OP_TRUE output (found through the
/// gateway), as raw hex.
async fn op_true_spend(addr: SocketAddr) -> String {
    let (_, v) = rpc(
        addr,
        "blockchain.scripthash.listunspent",
        json!([OP_TRUE_SCRIPTHASH]),
    )
    .await;
    let utxo = v["result"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["height"].as_u64().unwrap_or(0) > 0))
        .cloned()
        .unwrap_or_else(|| panic!("an OP_TRUE output: {v}"));
    spend_op_true(
        utxo["tx_hash"].as_str().expect("txid"),
        utxo["tx_pos"].as_u64().expect("vout") as u32,
        utxo["value"].as_u64().expect("value"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_several_servers_and_a_repeat_counts_as_accepted() {
    let ex = pool(3, false);
    let (_gw, addr) = gateway(&ex, 3, &[]);
    let raw = op_true_spend(addr).await;
    let (status, _, text) = post_to(
        addr,
        "/v1/tx",
        raw.clone(),
        &[("content-type", "text/plain")],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    let accepted = v["accepted_by"].as_array().expect("accepted_by");
    assert_eq!(accepted.len(), 3, "sent to all three servers at once: {v}");
    assert_eq!(v["outcome"], "accepted", "{v}");
    let txid = v["txid"].as_str().expect("txid").to_owned();

    // Through JSON-RPC too: the same fan-out, and the answer is the txid
    // (never "already in block chain" for a transaction that got in).
    for _ in 0..2 {
        let (s, v) = rpc(addr, "blockchain.transaction.broadcast", json!([raw])).await;
        assert_eq!((s, v["result"].as_str()), (200, Some(txid.as_str())), "{v}");
    }
    let (s, v) = rpc(addr, "blockchain.transaction.broadcast", json!(["beef"])).await;
    assert_eq!((s, v["error"]["code"].as_i64()), (200, Some(-32602)), "{v}");

    // The same transaction again, as JSON: accepted again (the harness's
    // daemon re-accepts a known transaction; a real node's "already known"
    // refusal is counted as accepted too, see the gateway's unit tests).
    let (status, _, text) = post_to(
        addr,
        "/v1/tx",
        json!({"hex": raw}).to_string(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["txid"], txid);
    assert_eq!(v["accepted_by"].as_array().map(Vec::len), Some(3), "{v}");
    // It is in the mempool, readable through the gateway.
    let (s, v) = get_json(addr, &format!("/v1/tx/{txid}")).await;
    assert_eq!((s, v["txid"].as_str()), (200, Some(txid.as_str())), "{v}");

    // Not a transaction: 400. A transaction spending nothing real: 422.
    let (status, _, text) =
        post_to(addr, "/v1/tx", "beef", &[("content-type", "text/plain")]).await;
    assert_eq!(status, 400, "{text}");
    let bogus = spend_op_true(&"ab".repeat(32), 0, 100_000);
    let (status, _, text) = post_to(addr, "/v1/tx", bogus, &[("content-type", "text/plain")]).await;
    assert_eq!(status, 422, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert!(
        v["rejected_by"].as_array().is_some_and(|r| !r.is_empty()),
        "{v}"
    );
    assert_eq!(v["outcome"], "rejected", "{v}");
    assert!(
        v["txid"].as_str().is_some_and(|t| t.len() == 64),
        "the txid, always: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_that_may_have_arrived_is_unknown_not_failed() {
    let ex = pool(2, false);
    let (_gw, addr) = gateway(&ex, 2, &["--request-timeout", "500ms"]);
    until_all_healthy(addr, 2).await;
    let raw = op_true_spend(addr).await;
    // Both servers freeze: the transaction is written to them, and no
    // answer comes. It may have arrived: "unknown", with its txid; never
    // "unavailable" (which would tell a wallet it is safe to pay again).
    ex.signal(0, "STOP");
    ex.signal(1, "STOP");
    let (status, _, text) = post_to(
        addr,
        "/v1/tx",
        raw.clone(),
        &[("content-type", "text/plain")],
    )
    .await;
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        (status.as_u16(), v["outcome"].as_str()),
        (504, Some("unknown")),
        "{v}"
    );
    assert!(v["txid"].as_str().is_some_and(|t| t.len() == 64), "{v}");
    assert!(
        v["unreachable"]
            .as_array()
            .is_some_and(|u| u.iter().all(|x| x["delivery"] == "maybe_sent")),
        "{v}"
    );
    let (_, v) = rpc(addr, "blockchain.transaction.broadcast", json!([raw])).await;
    assert_eq!(v["error"]["code"].as_i64(), Some(-32022), "{v}");
    assert!(
        v["error"]["data"]["txid"]
            .as_str()
            .is_some_and(|t| t.len() == 64),
        "{v}"
    );
    ex.signal(0, "CONT");
    ex.signal(1, "CONT");
}

/// A regtest P2PKH address for the 20-byte hash `i, i, ...`.
fn regtest_address(i: u16) -> String {
    let mut payload = vec![0x6f];
    payload.extend(std::iter::repeat_n(i.to_le_bytes(), 10).flatten());
    bs58::encode(payload).with_check().into_string()
}

/// `/healthz`: addresses watched, and each server's kept subscriptions.
async fn subscriptions(addr: SocketAddr) -> (u64, Vec<u64>) {
    let (_, v) = get_json(addr, "/healthz").await;
    let per_server = v["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| s["subscriptions"].as_u64().expect("a count"))
        .collect();
    (
        v["watched_addresses"].as_u64().expect("watched"),
        per_server,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_release_their_subscriptions_when_they_close() {
    use tokio::io::AsyncWriteExt;
    let ex = pool(2, false);
    let (_gw, addr) = gateway(&ex, 2, &[]);
    until_all_healthy(addr, 2).await;
    let (_, base) = subscriptions(addr).await;
    // Five streams of 100 addresses; neighbours share 50 (300 distinct).
    let mut streams = Vec::new();
    for k in 0..5u16 {
        let query: Vec<String> = (k * 50..k * 50 + 100)
            .map(|i| format!("address={}", regtest_address(i)))
            .collect();
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(
                format!(
                    "GET /v1/events?{} HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n\r\n",
                    query.join("&")
                )
                .as_bytes(),
            )
            .await
            .expect("write");
        let mut seen = String::new();
        read_until(&mut stream, &mut seen, "100 address events", |s| {
            s.matches("event: address").count() == 100
        })
        .await;
        streams.push(stream);
    }
    let (watched, subs) = subscriptions(addr).await;
    assert_eq!(watched, 300);
    assert!(
        subs.iter().zip(&base).all(|(s, b)| *s == b + 300),
        "{subs:?} over {base:?}"
    );
    // The first stream closes: only its own 50 addresses are released.
    drop(streams.remove(0));
    until_watched(addr, &base, 250).await;
    // All close: nothing is left subscribed on any server.
    streams.clear();
    until_watched(addr, &base, 0).await;
}

/// Waits (at most 10 s) until `want` addresses are watched and each server
/// keeps `want` subscriptions above `base`.
async fn until_watched(addr: SocketAddr, base: &[u64], want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (watched, subs) = subscriptions(addr).await;
        if watched == want && subs.iter().zip(base).all(|(s, b)| *s == b + want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "watched {watched}, subscriptions {subs:?}; want {want} over {base:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the event stream until `want` is seen (or 30 s pass).
async fn read_events(stream: &mut tokio::net::TcpStream, seen: &mut String, want: &str) {
    read_until(stream, seen, want, |s| s.contains(want)).await;
}

/// Reads the event stream until `done` holds for everything read so far.
async fn read_until(
    stream: &mut tokio::net::TcpStream,
    seen: &mut String,
    want: &str,
    done: impl Fn(&str) -> bool,
) {
    use tokio::io::AsyncReadExt;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no `{want}` in the stream:\n{seen}");
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("the stream ended:\n{seen}"),
            Ok(Ok(n)) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Ok(Err(e)) => panic!("read: {e}"),
            Err(_) => panic!("no `{want}` within 30 s:\n{seen}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_new_tips_and_address_changes() {
    use tokio::io::AsyncWriteExt;
    let ex = pool(2, false);
    let (_gw, addr) = gateway(&ex, 2, &[]);
    // The gateway subscribes to tips in the background: wait for the first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!(
                "GET /v1/events?address={ADDRESS_A} HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let mut seen = String::new();
    read_events(&mut stream, &mut seen, "text/event-stream").await;
    read_events(&mut stream, &mut seen, "\"height\":10").await;
    read_events(&mut stream, &mut seen, "event: address").await;

    ex.daemon("generate", json!([1])).await;
    read_events(&mut stream, &mut seen, "\"height\":11").await;
    // The first server dies: the stream goes on from the other one.
    ex.signal(0, "KILL");
    ex.daemon("generate", json!([1])).await;
    read_events(&mut stream, &mut seen, "\"height\":12").await;
    // A payment to A: its status changes, on every server.
    let before = seen.matches("event: address").count();
    ex.daemon("fake_send", json!(["A", 12_345])).await;
    read_until(&mut stream, &mut seen, "a second address event", |s| {
        s.matches("event: address").count() > before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_fails_while_a_server_is_healthy_even_as_others_die_and_freeze() {
    let ex = pool(3, false);
    let (_gw, addr) = gateway(
        &ex,
        3,
        &["--request-timeout", "3", "--verify", "cross-check"],
    );
    // Warm up: every server connected.
    until_all_healthy(addr, 3).await;
    // The truth, from before the chaos: headers, the history.
    let mut headers = Vec::new();
    for h in 0..10 {
        let (s, v) = get_json(addr, &format!("/v1/block/{h}/header")).await;
        assert_eq!(s, 200, "{v}");
        headers.push(v["header"].clone());
    }
    let (s, history) = get_json(addr, &format!("/v1/address/{ADDRESS_A}/history")).await;
    assert_eq!(s, 200, "{history}");
    let truth = std::sync::Arc::new((headers, history["history"].clone()));

    let started = Instant::now();
    let clients = 6;
    let per_client = 20;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let truth = truth.clone();
            tokio::spawn(async move {
                let mut worst = Duration::ZERO;
                let mut failures = Vec::new();
                let mut wrong = Vec::new();
                for i in 0..per_client {
                    let t0 = Instant::now();
                    let kind = (c + i) % 4;
                    let (status, body) = match kind {
                        // Not cached: reaches a server every time.
                        0 => {
                            let (s, _, b) = post(
                                addr,
                                json!({"jsonrpc":"2.0","id":i,"method":"server.ping","params":[]})
                                    .to_string(),
                            )
                            .await;
                            (s, b)
                        }
                        1 => get(addr, &format!("/v1/address/{ADDRESS_A}/balance")).await,
                        2 => get(addr, &format!("/v1/block/{}/header", i % 10)).await,
                        _ => get(addr, &format!("/v1/address/{ADDRESS_A}/history")).await,
                    };
                    worst = worst.max(t0.elapsed());
                    if status != 200 || body.contains("\"error\"") {
                        failures.push(format!("{status}: {body}"));
                        continue;
                    }
                    // Every answer is checked against the truth.
                    let v: Value = serde_json::from_str(&body).unwrap_or_default();
                    let right = match kind {
                        0 => v["result"].is_null(),
                        1 => v["confirmed"] == 6_100_000_000u64 && v["unconfirmed"] == 50_000_000,
                        2 => v["header"] == truth.0[i % 10] && v["verified"] == "spv",
                        _ => v["history"] == truth.1,
                    };
                    if !right {
                        wrong.push(body);
                    }
                }
                (worst, failures, wrong)
            })
        })
        .collect();
    // A third of the way in, freeze the first server and kill the second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ex.signal(0, "STOP");
    ex.signal(1, "KILL");
    let mut worst = Duration::ZERO;
    for t in tasks {
        let (w, failures, wrong) = t.await.expect("client task");
        assert!(
            failures.is_empty(),
            "calls failed while a server was healthy: {failures:?}"
        );
        assert!(wrong.is_empty(), "wrong answers: {wrong:?}");
        worst = worst.max(w);
    }
    assert!(worst < Duration::from_secs(15), "a call took {worst:?}");
    let (s, v) = get_json(addr, "/healthz").await;
    assert_eq!(s, 200, "one server is still healthy: {v}");
    // The last one dies too: unhealthy, and calls fail fast and clearly.
    ex.signal(2, "KILL");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, v) = get_json(addr, "/healthz").await;
        if s == 503 {
            assert_eq!(v["status"], "unavailable", "{v}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still healthy with every server down: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let t0 = Instant::now();
    let (s, v) = get_json(addr, "/v1/block/3/header").await;
    assert_eq!(s, 200, "cached headers are still served: {v}");
    // Address B's balance was never asked (nothing cached): no server can answer.
    let b = "0a090df1efe2780add89a840e366df9c527c0d59d7f48079334e59e6924ec513";
    let (s, v) = rpc(addr, "blockchain.scripthash.get_balance", json!([b])).await;
    assert!(s == 503 || s == 504, "{s}: {v}");
    assert!(
        matches!(v["error"]["code"].as_i64(), Some(-32011 | -32015)),
        "{v}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "answered within the deadline"
    );
    ex.signal(0, "CONT");
    eprintln!(
        "{} calls in {:?}, slowest {worst:?}",
        clients * per_client,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitcoin_cash_addresses_work_in_cashaddr_form_with_a_config_file() {
    let ex = pool(1, true);
    let config = tests::write_config(
        "gateway.toml",
        &format!(
            "network = \"regtest\"\n[[servers]]\nname = \"bch\"\nurl = \"{}\"\n[head]\nmax_lag = 1\n",
            ex.tcp_url(0)
        ),
    );
    let config = config.to_string_lossy().into_owned();
    let (gw, addr) = start_gateway(&["--config", &config]);
    assert!(
        gw.output_text().contains("servers bch"),
        "{}",
        gw.output_text()
    );
    let without_prefix = CASHADDR_A.trim_start_matches("bchreg:");
    for form in [
        CASHADDR_A.replace(':', "%3A"),
        without_prefix.to_owned(),
        CASHADDR_A.to_owned(),
    ] {
        let (s, v) = get_json(addr, &format!("/v1/address/{form}/balance")).await;
        assert_eq!(s, 200, "{form}: {v}");
        assert_eq!(v["confirmed"].as_u64(), Some(6_100_000_000), "{form}: {v}");
    }
}

/// The header of block `height` as the daemon has it now (hex).
async fn daemon_header(ex: &ElectrumX, height: u64) -> String {
    let hash = ex.daemon("getblockhash", json!([height])).await;
    let header = ex.daemon("getblockheader", json!([hash, false])).await;
    header.as_str().expect("hex header").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_reorg_replaces_headers_the_gateway_kept() {
    let ex = pool(2, false);
    let (_gw, addr) = gateway(&ex, 2, &[]);
    ex.daemon("generate", json!([10])).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_json(addr, "/v1/tip").await.1["height"] != 20 {
        assert!(Instant::now() < deadline, "the gateway never reached 20");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Block 12 is 8 deep: kept for good (6 confirmations), on both routes.
    let old = daemon_header(&ex, 12).await;
    for _ in 0..2 {
        assert_eq!(get_json(addr, "/v1/block/12/header").await.1["header"], old);
        assert_eq!(
            rpc(addr, "blockchain.block.header", json!([12])).await.1["result"],
            old
        );
    }
    // A 9-block reorganisation replaces blocks 12..20 and adds one.
    ex.daemon("fake_reorg", json!([9, 10])).await;
    let new = daemon_header(&ex, 12).await;
    assert_ne!(new, old);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_json(addr, "/v1/tip").await.1["height"] != 21 {
        assert!(
            Instant::now() < deadline,
            "the gateway never saw the new chain"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Once the gateway has seen the new chain, the orphaned header is gone
    // (the pool noticed the reorganisation within a probe or two).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rest = get_json(addr, "/v1/block/12/header").await.1["header"].clone();
        let json_rpc = rpc(addr, "blockchain.block.header", json!([12])).await.1["result"].clone();
        if rest == new && json_rpc == new {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still the orphaned header: {rest} / {json_rpc}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..5 {
        assert_eq!(get_json(addr, "/v1/block/12/header").await.1["header"], new);
    }
}

/// Waits (at most 20 s) until `/healthz` is 200 with servers ex0..exN all
/// healthy: connections and first tips take a moment after the gateway
/// prints its address.
async fn until_all_healthy(addr: SocketAddr, n: usize) {
    let started = Instant::now();
    loop {
        let (s, v) = get_json(addr, "/healthz").await;
        if s == 200 && (0..n).all(|i| server_healthy(&v, &format!("ex{i}"))) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never all healthy: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `/healthz` lists server `name` as healthy (connected, in
/// service, current).
fn server_healthy(health: &Value, name: &str) -> bool {
    health["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["name"] == name && s["healthy"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_killed_and_restarted_without_traffic_are_back_within_5s() {
    let mut ex = pool(3, false);
    let (_gw, addr) = gateway(&ex, 3, &[]);
    until_all_healthy(addr, 3).await;

    // Every server dies; no client calls from here on.
    for i in 0..3 {
        ex.signal(i, "KILL");
    }
    let started = Instant::now();
    loop {
        let (s, v) = get_json(addr, "/healthz").await;
        if s == 503 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still healthy: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Long enough for reconnect backoffs to reach their cap.
    tokio::time::sleep(Duration::from_secs(15)).await;

    for i in 0..3 {
        ex = tokio::task::spawn_blocking(move || {
            ex.restart(i);
            ex
        })
        .await
        .expect("restart");
        let restarted = Instant::now();
        let name = format!("ex{i}");
        loop {
            let (s, v) = get_json(addr, "/healthz").await;
            if s == 200 && server_healthy(&v, &name) {
                break;
            }
            assert!(
                restarted.elapsed() < Duration::from_secs(5),
                "{name} not back within 5 s of its restart, with no traffic: {s} {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("{name} back {:?} after its restart", restarted.elapsed());
    }
}

/// Runs `electrum-gateway ARGS` to its end: success, and stdout + stderr.
fn gateway_check(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(tests::binary("electrum-gateway", "electrum-gateway"))
        .args(args)
        .output()
        .expect("run electrum-gateway");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The SHA-256 fingerprint of a PEM certificate, as `openssl` prints it.
fn fingerprint(cert: &std::path::Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .rsplit('=')
        .next()
        .expect("fingerprint")
        .to_owned()
}

/// `/healthz`'s entry for server `name`.
fn server_entry<'a>(health: &'a Value, name: &str) -> &'a Value {
    health["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {health}"))
}

/// Polls `/healthz` until server `name`'s entry satisfies `done`.
async fn until_server(addr: SocketAddr, name: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (_, v) = get_json(addr, "/healthz").await;
        let entry = server_entry(&v, name).clone();
        if done(&entry) {
            return entry;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name} never got there: {entry}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_servers_are_trusted_by_pin_or_private_ca_never_by_default() {
    let ex = ElectrumX::start(ElectrumXOptions {
        instances: 2,
        tls: true,
        ..Default::default()
    });
    let ca = ex.ca.clone().expect("a private CA");
    let pin = fingerprint(ex.cert.as_ref().expect("cert"));
    let ca_path = ca.to_string_lossy().into_owned();
    let wrong_pin = "00".repeat(32);
    let servers = [
        format!("by-ca={}", ex.tls_url(0)),
        format!("by-pin={}", ex.tls_url(1)),
        format!("wrong-pin={}", ex.tls_url(1)),
    ];
    let pins = [format!("by-pin={pin}"), format!("wrong-pin={wrong_pin}")];
    let mut args = vec!["--network", "regtest", "--tls-ca", &ca_path];
    for s in &servers {
        args.extend(["--server", s.as_str()]);
    }
    for p in &pins {
        args.extend(["--tls-pin", p.as_str()]);
    }
    let check = gateway_check(&[&["check"][..], &args].concat());
    assert!(check.0, "check: {}", check.1);
    assert!(
        check.1.contains("tls by-ca: trusts the CA in")
            && check
                .1
                .contains("tls by-pin: trusts its pinned certificate")
            && check.1.contains("network check: genesis 0f9188f1"),
        "{}",
        check.1
    );
    let (_gw, addr) = start_gateway(&args);
    // The CA-signed and the pinned server serve; the wrong pin is refused
    // and /healthz says why.
    until_server(addr, "by-ca", |s| s["healthy"] == true).await;
    until_server(addr, "by-pin", |s| s["healthy"] == true).await;
    let refused = until_server(addr, "wrong-pin", |s| s["last_failure"].is_string()).await;
    assert_eq!(refused["connected"], false);
    assert!(
        refused["last_failure"]
            .as_str()
            .is_some_and(|w| w.contains("pinned")),
        "{refused}"
    );
    let (s, v) = get_json(addr, &format!("/v1/address/{ADDRESS_A}/balance")).await;
    assert_eq!((s, &v["confirmed"]), (200, &json!(6_100_000_000u64)), "{v}");

    // Without a pin or a CA the public roots refuse the private CA.
    let (_gw, addr) = start_gateway(&["--network", "regtest", "--server", &servers[0]]);
    let refused = until_server(addr, "by-ca", |s| s["last_failure"].is_string()).await;
    assert!(
        refused["last_failure"]
            .as_str()
            .is_some_and(|w| w.contains("certificate")),
        "{refused}"
    );
    // A pin that is not a fingerprint, or names no server, is refused at
    // start (and by `check`).
    for bad in [format!("by-ca={}", "AB"), format!("nobody={pin}")] {
        let out = gateway_check(&["check", "--server", &servers[0], "--tls-pin", &bad]);
        assert!(!out.0 && out.1.contains("--tls-pin"), "{bad}: {}", out.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_another_network_is_refused() {
    // Regtest servers behind a gateway for testnet: their genesis differs.
    let ex = pool(1, false);
    let (_gw, addr) = start_gateway(&[
        "--network",
        "testnet",
        "--server",
        &format!("ex0={}", ex.tcp_url(0)),
    ]);
    let refused = until_server(addr, "ex0", |s| s["last_failure"].is_string()).await;
    assert_eq!(refused["healthy"], false);
    assert!(
        refused["last_failure"]
            .as_str()
            .is_some_and(|w| w.contains("wrong network")),
        "{refused}"
    );
    let (s, _) = get_json(addr, "/healthz").await;
    assert_eq!(s, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmations_below_a_checkpoint_are_proven_with_its_root() {
    let ex = pool(2, false);
    // The chain up to block 9 as verified from genesis: its headers, and
    // the merkle root of their hashes (what an operator reads from a
    // server they run).
    let (_gw, addr) = gateway(&ex, 2, &[]);
    until_all_healthy(addr, 2).await;
    let mut hashes = Vec::new();
    let mut last = Vec::new();
    for h in 0..=9 {
        let (s, v) = get_json(addr, &format!("/v1/block/{h}/header")).await;
        assert_eq!((s, &v["verified"]), (200, &json!("spv")), "{v}");
        last = rpc_electrum::chain::hex_bytes(v["header"].as_str().expect("hex")).expect("hex");
        hashes.push(rpc_electrum::chain::sha256d(&last));
    }
    let time = u32::from_le_bytes([last[68], last[69], last[70], last[71]]);
    let hash = rpc_electrum::chain::hash_to_hex(&hashes[9]);
    let root = rpc_electrum::chain::hash_to_hex(&tests::merkle_root(&hashes));
    let checkpoint = format!("9:{hash}:{time}:207fffff:{root}");
    // Real ElectrumX proves each older header against that root: every
    // confirmed entry of A (all at or below 9) is proven.
    let (_gw2, addr) = gateway(&ex, 2, &["--checkpoint", &checkpoint]);
    until_all_healthy(addr, 2).await;
    let (s, v) = get_json(addr, &format!("/v1/address/{ADDRESS_A}/history")).await;
    assert_eq!(s, 200, "{v}");
    let history = v["history"].as_array().expect("history");
    let confirmed: Vec<&Value> = history
        .iter()
        .filter(|t| t["height"].as_i64().unwrap_or(0) > 0)
        .collect();
    assert_eq!(confirmed.len(), 3, "{v}");
    for t in confirmed {
        assert!(t["height"].as_i64() <= Some(9), "{t}");
        assert_eq!(t["verified"], "spv", "{t}");
    }
    let (_, health) = get_json(addr, "/healthz").await;
    assert!(!health.to_string().contains("distrusted"), "{health}");
}
