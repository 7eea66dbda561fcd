//! The shipped `rpc-proxy` in front of three real upstream processes (anvil):
//! killing, freezing and garbage-answering backends during client traffic.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::{call, post, start_anvil, start_anvil_with, start_proxy, FaultUpstream, Process};

/// Anvil's default chain id, 31337.
const CHAIN_ID: &str = "0x7a69";

fn three_anvils() -> Vec<(Process, SocketAddr)> {
    (0..3).map(|_| start_anvil()).collect()
}

fn upstream_args(names: &[&str], nodes: &[(Process, SocketAddr)]) -> Vec<String> {
    names
        .iter()
        .zip(nodes)
        .flat_map(|(n, (_, addr))| ["--upstream".to_owned(), format!("{n}=http://{addr}")])
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_mid_load_loses_no_call() {
    let nodes = three_anvils();
    let mut args = upstream_args(&["a", "b", "c"], &nodes);
    args.extend(["--spread", "round-robin", "--timeout", "5"].map(str::to_owned));
    let (proxy, addr) = start_proxy(&strs(&args));

    // 8 clients x 60 calls, spread over all three; `b` dies after 120 answers.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let answered = answered.clone();
            tokio::spawn(async move {
                let mut bad = Vec::new();
                for i in 0..60 {
                    let (method, params) = match i % 3 {
                        0 => ("eth_chainId", json!([])),
                        1 => ("eth_blockNumber", json!([])),
                        _ => (
                            "eth_getBalance",
                            json!(["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "latest"]),
                        ),
                    };
                    let (status, body) = call(addr, method, params).await;
                    if status != 200 || body.get("result").is_none() {
                        bad.push(format!("client {client} call {i}: {status} {body}"));
                    }
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                bad
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 120 {
        assert!(Instant::now() < deadline, "load did not progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nodes[1].0.signal("KILL");

    let mut bad = Vec::new();
    for client in clients {
        bad.extend(client.await.expect("client"));
    }
    assert!(bad.is_empty(), "client-visible errors: {bad:#?}");
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 480);
    let log = proxy.output_text();
    assert!(
        log.contains("backend out of service") && log.contains("backend=b"),
        "the dead backend was taken out: {log}"
    );
    assert!(!log.contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_backend_is_cut_by_its_timeout_and_then_skipped() {
    let nodes = three_anvils();
    let mut args = upstream_args(&["a", "b", "c"], &nodes);
    args.extend(["--timeout", "1", "--out-of-service", "60"].map(str::to_owned));
    let (proxy, addr) = start_proxy(&strs(&args));
    let (s, body) = call(addr, "eth_chainId", json!([])).await;
    assert_eq!((s.as_u16(), body["result"].as_str()), (200, Some(CHAIN_ID)));

    // The primary freezes (a stopped process keeps its socket open: no error,
    // no answer, exactly what hung the first user's prototypes).
    nodes[0].0.signal("STOP");
    let mut took = Vec::new();
    for _ in 0..8 {
        let started = Instant::now();
        let (s, body) = call(addr, "eth_blockNumber", json!([])).await;
        took.push(started.elapsed());
        assert_eq!(s, 200, "{body}");
        assert!(body["result"].is_string(), "{body}");
    }
    nodes[0].0.signal("CONT");

    // Each call was answered within the backend timeout plus a healthy
    // backend's answer; after two timeouts (the threshold) the frozen member
    // is out of service and not tried: those calls never wait for a timeout.
    for t in &took {
        assert!(*t < Duration::from_secs(3), "{took:?}");
    }
    // The first call met the frozen member: cut by its 1 s timeout, or
    // sooner by its learned stall deadline (never under 150 ms) once the
    // health checks gave it 20 answers of that method before the freeze (a
    // slow machine); a healthy answer takes milliseconds.
    assert!(
        took[0] >= Duration::from_millis(150),
        "the first call met the frozen member: {took:?}"
    );
    for t in &took[2..] {
        assert!(
            *t < Duration::from_secs(1),
            "skipped, not timed out: {took:?}"
        );
    }
    let log = proxy.output_text();
    assert!(
        log.contains("backend out of service") && log.contains("backend=a"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_answering_garbage_is_skipped() {
    let garbage = FaultUpstream::start_always("fault_garbage").await;
    let (_node, node) = start_anvil();
    let (_proxy, addr) = start_proxy(&[
        "--upstream",
        &format!("junk={}", garbage.url()),
        "--upstream",
        &format!("anvil=http://{node}"),
        "--out-of-service",
        "60",
    ]);
    for _ in 0..10 {
        let (s, body) = call(addr, "eth_chainId", json!([])).await;
        assert_eq!(
            (s.as_u16(), body["result"].as_str()),
            (200, Some(CHAIN_ID)),
            "{body}"
        );
    }
    assert_eq!(
        garbage.calls.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "asked until the failure threshold (2), then skipped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_backend_fails_the_client_gets_the_documented_error() {
    let garbage = FaultUpstream::start_always("fault_garbage").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let (_proxy, addr) = start_proxy(&[
        "--upstream",
        &format!("junk={}", garbage.url()),
        "--upstream",
        &format!("gone=http://{closed}"),
        "--retries",
        "1",
    ]);
    let (s, body) = call(addr, "eth_chainId", json!([])).await;
    assert_eq!(
        (s.as_u16(), body["error"]["code"].as_i64()),
        (503, Some(-32011)),
        "{body}"
    );
    assert_eq!(body["id"], 1);

    // In a batch: HTTP 200, one error per call, in order.
    let batch = json!([
        {"jsonrpc": "2.0", "id": "x", "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": "y", "method": "eth_blockNumber"},
    ]);
    let (s, _, text) = post(addr, batch.to_string()).await;
    assert_eq!(s, 200);
    let answers: Vec<Value> = serde_json::from_str(&text).expect("array");
    assert_eq!(answers.len(), 2);
    for (a, id) in answers.iter().zip(["x", "y"]) {
        assert_eq!(
            (a["id"].as_str(), a["error"]["code"].as_i64()),
            (Some(id), Some(-32011))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_answers_when_two_agree_and_reports_disagreement() {
    let nodes = vec![
        start_anvil(),
        start_anvil(),
        start_anvil_with(&["--chain-id", "5"]),
    ];
    let mut args = upstream_args(&["a", "b", "odd"], &nodes);
    args.extend(["--quorum", "2"].map(str::to_owned));
    let (_proxy, addr) = start_proxy(&strs(&args));
    let (s, body) = call(addr, "eth_chainId", json!([])).await;
    assert_eq!(
        (s.as_u16(), body["result"].as_str()),
        (200, Some(CHAIN_ID)),
        "{body}"
    );

    // Two nodes of different chains cannot make 2 of 2.
    let pair = vec![start_anvil(), start_anvil_with(&["--chain-id", "5"])];
    let mut args = upstream_args(&["main", "odd"], &pair);
    args.extend(["--quorum", "2"].map(str::to_owned));
    let (_proxy, addr) = start_proxy(&strs(&args));
    let (s, body) = call(addr, "eth_chainId", json!([])).await;
    assert_eq!(
        (s.as_u16(), body["error"]["code"].as_i64()),
        (502, Some(-32019)),
        "{body}"
    );
    let mut votes: Vec<(String, String)> = body["error"]["data"]["votes"]
        .as_array()
        .expect("votes")
        .iter()
        .map(|v| {
            (
                v["backend"].as_str().unwrap_or("").to_owned(),
                v["answer"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    votes.sort();
    assert_eq!(
        votes,
        [
            ("main".to_owned(), format!("result \"{CHAIN_ID}\"")),
            ("odd".to_owned(), "result \"0x5\"".to_owned()),
        ]
    );
}
