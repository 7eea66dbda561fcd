//! Upstream batching and `eth_getLogs` ranges through the shipped
//! `rpc-proxy`, against the in-repo upstream (which counts HTTP requests and
//! calls, and answers batches in order, reversed, with an answer missing or
//! twice, with one error for the whole batch, refused with a 400, or over a
//! size limit; and refuses log ranges as the big providers do).

use std::sync::atomic::Ordering;

use serde_json::{json, Value};
use tests::{post, start_proxy_config, BatchMode, FaultUpstream, ScriptedChain, LOG_ADDRESS};

/// A proxy with one backend at `url`; `backend` and `group` are extra TOML
/// lines for `[backends.up]` and `[groups.main]`.
fn proxy(url: &str, backend: &str, group: &str) -> (tests::Process, std::net::SocketAddr) {
    start_proxy_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[backends.up]\nurl = \"{url}\"\n{backend}\n\
         [groups.main]\nmembers = [\"up\"]\nhealth_method = \"\"\n{group}\n"
    ))
}

/// A batch of `n` reads (`eth_getBlockByNumber` of distinct blocks the
/// echo upstream does not know: each answer names its call).
fn reads(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"jsonrpc": "2.0", "id": format!("c{i}"), "method": "eth_getTransactionByHash", "params": [format!("0x{i:064x}")]}))
            .collect(),
    )
}

/// Asserts every answer is the echo of its own call, in the client's order.
fn assert_echoes(n: usize, text: &str) {
    let answers: Vec<Value> = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(answers.len(), n, "{text}");
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a["id"], format!("c{i}"), "{a}");
        assert_eq!(a["result"]["params"][0], format!("0x{i:064x}"), "{a}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_batch_goes_upstream_as_ceil_n_over_max_batch_requests() {
    let upstream = FaultUpstream::start().await;
    for (max_batch, requests) in [(None, 1), (Some(30), 4), (Some(1), 100)] {
        let line = max_batch.map_or(String::new(), |n| format!("max_batch = {n}"));
        let (_proxy, addr) = proxy(&upstream.url(), &line, "");
        let (before, items) = (
            upstream.calls.load(Ordering::SeqCst),
            upstream.items.load(Ordering::SeqCst),
        );
        let (status, _, text) = post(addr, reads(100).to_string()).await;
        assert_eq!(status, 200);
        assert_echoes(100, &text);
        assert_eq!(
            upstream.calls.load(Ordering::SeqCst) - before,
            requests,
            "max_batch {max_batch:?}"
        );
        assert_eq!(upstream.items.load(Ordering::SeqCst) - items, 100);
    }
}

/// `cross_client_batching` with a window: single calls from different
/// clients (each on its own connection) within the window share one
/// upstream request; each client gets its own answer. Without it, each
/// call is its own request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_calls_of_different_clients_share_an_upstream_request_within_the_window() {
    let upstream = FaultUpstream::start().await;
    for (line, requests) in [("cross_client_batching = \"2s\"", 1), ("", 8)] {
        let (_proxy, addr) = proxy(&upstream.url(), line, "");
        let before = upstream.calls.load(Ordering::SeqCst);
        let clients = (0..8).map(|i| {
            let body = json!({"jsonrpc": "2.0", "id": format!("c{i}"), "method": "eth_getTransactionByHash", "params": [format!("0x{i:064x}")]});
            tokio::spawn(post(addr, body.to_string()))
        });
        for (i, client) in futures_util::future::join_all(clients)
            .await
            .into_iter()
            .enumerate()
        {
            let (status, _, text) = client.expect("client");
            assert_eq!(status, 200, "{text}");
            let answer: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(answer["id"], format!("c{i}"), "{answer}");
            assert_eq!(
                answer["result"]["params"][0],
                format!("0x{i:064x}"),
                "{answer}"
            );
        }
        assert_eq!(
            upstream.calls.load(Ordering::SeqCst) - before,
            requests,
            "{line:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_answers_out_of_order_missing_or_doubled_still_reach_the_right_calls() {
    let upstream = FaultUpstream::start().await;
    let (_proxy, addr) = proxy(&upstream.url(), "", "");
    for (mode, extra_requests) in [
        (BatchMode::Reversed, 0),
        (BatchMode::DuplicateFirst, 0),
        // The missing answer's call is retried alone (a read, safe to repeat).
        (BatchMode::DropLast, 1),
    ] {
        upstream.set_batch_mode(mode);
        let before = upstream.calls.load(Ordering::SeqCst);
        let (status, _, text) = post(addr, reads(20).to_string()).await;
        assert_eq!(status, 200, "{mode:?}");
        assert_echoes(20, &text);
        assert_eq!(
            upstream.calls.load(Ordering::SeqCst) - before,
            1 + extra_requests,
            "{mode:?}"
        );
    }
    // Duplicate client ids are the client's business: each gets its answer.
    upstream.set_batch_mode(BatchMode::Answer);
    let dup = json!([
        {"jsonrpc": "2.0", "id": 7, "method": "eth_getTransactionByHash", "params": ["0x01"]},
        {"jsonrpc": "2.0", "id": 7, "method": "eth_getTransactionByHash", "params": ["0x02"]},
    ]);
    let (_, _, text) = post(addr, dup.to_string()).await;
    let answers: Vec<Value> = serde_json::from_str(&text).expect("json");
    assert_eq!(answers[0]["result"]["params"][0], "0x01", "{text}");
    assert_eq!(answers[1]["result"]["params"][0], "0x02", "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_sent_call_by_call_and_later_batches_shrink() {
    for mode in [
        BatchMode::OneError,
        BatchMode::Refuse400,
        BatchMode::Limit(10),
    ] {
        let upstream = FaultUpstream::start().await;
        upstream.set_batch_mode(mode);
        let (proxy, addr) = proxy(&upstream.url(), "", "");
        // Refused as a batch: every call still answered, one by one.
        let (status, _, text) = post(addr, reads(20).to_string()).await;
        assert_eq!(status, 200, "{mode:?}");
        assert_echoes(20, &text);
        // The next batch is half as large (10): within the limit of 10,
        // accepted as two batches; refused outright, ten singles each.
        let before = upstream.calls.load(Ordering::SeqCst);
        let (_, _, text) = post(addr, reads(20).to_string()).await;
        assert_echoes(20, &text);
        let requests = upstream.calls.load(Ordering::SeqCst) - before;
        match mode {
            BatchMode::Limit(_) => assert_eq!(requests, 2, "{mode:?}"),
            _ => assert_eq!(requests, 2 + 20, "{mode:?}"),
        }
        assert!(
            proxy.output_text().contains("one by one"),
            "the fallback is logged: {}",
            proxy.output_text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upstream_batch_fails_over_as_a_unit() {
    let (a, b) = (FaultUpstream::start().await, FaultUpstream::start().await);
    a.set_batch_mode(BatchMode::Status(503));
    let (_proxy, addr) = start_proxy_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[backends.a]\nurl = \"{}\"\n[backends.b]\nurl = \"{}\"\n\
         [groups.main]\nmembers = [\"a\", \"b\"]\nhealth_method = \"\"\n",
        a.url(),
        b.url()
    ));
    let (status, _, text) = post(addr, reads(20).to_string()).await;
    assert_eq!(status, 200);
    assert_echoes(20, &text);
    // One batch to a (503), the same calls as one batch to b.
    assert_eq!(a.calls.load(Ordering::SeqCst), 1);
    assert_eq!(b.calls.load(Ordering::SeqCst), 1);
    assert_eq!(b.items.load(Ordering::SeqCst), 20);
}

/// `eth_getLogs` from `from` to `to` (hex or tags) for the scripted chain's
/// contract.
fn get_logs(from: &str, to: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [{"address": LOG_ADDRESS, "fromBlock": from, "toBlock": to}]}).to_string()
}

/// The block numbers of an `eth_getLogs` answer's logs.
fn log_blocks(text: &str) -> Vec<u64> {
    let v: Value = serde_json::from_str(text).expect("json");
    v["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{text}"))
        .iter()
        .map(|l| {
            u64::from_str_radix(
                l["blockNumber"]
                    .as_str()
                    .expect("n")
                    .trim_start_matches("0x"),
                16,
            )
            .expect("hex")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_ranges_are_capped_split_and_provider_limits_are_split_around() {
    let chain = ScriptedChain::new(6000);
    let upstream = FaultUpstream::start_chain(chain.clone()).await;
    // The direct answer, one call.
    let direct = {
        let (_, _, text) = post(upstream.addr, get_logs("0x0", "0x1387")).await;
        text
    };
    assert_eq!(log_blocks(&direct), (0..5000).collect::<Vec<_>>());

    // A cap: refused before any upstream call, naming the range.
    let (_capped, addr) = proxy(
        &upstream.url(),
        "",
        "[groups.main.get_logs]\nmax_block_range = 1000\n",
    );
    let calls = chain.log_calls.load(Ordering::SeqCst);
    let (_, _, text) = post(addr, get_logs("0x0", "0x1387")).await;
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["error"]["code"], -32602, "{text}");
    let message = v["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("5000 blocks") && message.contains("1000"),
        "{message}"
    );
    // `latest` is resolved (head 6000: 1001 blocks from 5000).
    let (_, _, text) = post(addr, get_logs("0x1388", "latest")).await;
    assert!(text.contains("1001 blocks"), "{text}");
    let (_, _, text) = post(addr, get_logs("0x1389", "latest")).await;
    assert_eq!(log_blocks(&text).len(), 1000, "{text}");
    assert_eq!(chain.log_calls.load(Ordering::SeqCst) - calls, 1);

    // Split into chunks of 1000: five calls, the same logs in order, and
    // the same bytes as the direct answer.
    let (_split, split_addr) = proxy(
        &upstream.url(),
        "",
        "[groups.main.get_logs]\nchunk = 1000\nconcurrency = 3\n",
    );
    let calls = chain.log_calls.load(Ordering::SeqCst);
    let (_, _, text) = post(split_addr, get_logs("0x0", "0x1387")).await;
    assert_eq!(chain.log_calls.load(Ordering::SeqCst) - calls, 5);
    let result = |t: &str| serde_json::from_str::<Value>(t).expect("json")["result"].to_string();
    assert_eq!(result(&text), result(&direct));

    // A provider that refuses more than 700 blocks, no chunk configured:
    // the refusal never reaches the client; the range is cut where the
    // provider suggests.
    chain.log_limit.store(700, Ordering::SeqCst);
    let (_plain, addr) = proxy(&upstream.url(), "", "");
    let (_, _, text) = post(addr, get_logs("0x0", "0x1387")).await;
    assert_eq!(result(&text), result(&direct));

    // A chunk that keeps failing fails the call, naming its blocks.
    chain.log_limit.store(0, Ordering::SeqCst);
    chain.log_fail.store(2501, Ordering::SeqCst);
    let (_, _, text) = post(split_addr, get_logs("0x0", "0x1387")).await;
    let v: Value = serde_json::from_str(&text).expect("json");
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{text}"));
    assert!(message.contains("0x7d0..0xbb7"), "{message}");
}

/// A batch that walks the whole stack — the cache on, two groups — is one
/// upstream request per group, each with its group's calls, and the
/// answers come back in the client's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_through_the_cache_and_two_groups_is_one_upstream_request_per_group() {
    let (a, b) = (FaultUpstream::start().await, FaultUpstream::start().await);
    let (_proxy, addr) = start_proxy_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[cache]\nenabled = true\n\
         [backends.a]\nurl = \"{}\"\n[backends.b]\nurl = \"{}\"\n\
         [groups.main]\nmembers = [\"a\"]\nhealth_method = \"\"\n\
         [groups.other]\nmembers = [\"b\"]\nhealth_method = \"\"\n\
         [routing]\ndefault = \"main\"\nmethods = {{ \"x_*\" = \"other\" }}\n",
        a.url(),
        b.url()
    ));
    // Reads the cache may keep, calls it never keeps, and calls of the
    // other group, interleaved.
    let calls: Vec<Value> = (0..30)
        .map(|i| match i % 3 {
            0 => json!({"jsonrpc": "2.0", "id": i, "method": "eth_getBalance", "params": [format!("0x{i:040x}"), "latest"]}),
            1 => json!({"jsonrpc": "2.0", "id": i, "method": "eth_estimateGas", "params": [{"to": format!("0x{i:040x}")}]}),
            _ => json!({"jsonrpc": "2.0", "id": i, "method": "x_thing", "params": [format!("{i}")]}),
        })
        .collect();
    let (status, _, text) = post(addr, Value::Array(calls.clone()).to_string()).await;
    assert_eq!(status, 200, "{text}");
    let answers: Vec<Value> = serde_json::from_str(&text).expect("json");
    assert_eq!(answers.len(), 30);
    for (call, answer) in calls.iter().zip(&answers) {
        assert_eq!(answer["id"], call["id"], "{answer}");
        assert_eq!(answer["result"]["method"], call["method"], "{answer}");
        assert_eq!(answer["result"]["params"], call["params"], "{answer}");
    }
    assert_eq!(a.calls.load(Ordering::SeqCst), 1, "group main");
    assert_eq!(a.items.load(Ordering::SeqCst), 20);
    assert_eq!(b.calls.load(Ordering::SeqCst), 1, "group other");
    assert_eq!(b.items.load(Ordering::SeqCst), 10);
}
