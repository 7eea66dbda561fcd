//! The lie corpus through the shipped gateway: three in-repo Electrum
//! servers serve one regtest chain, the first of them (the failover
//! group's favourite) lies in one way per test. Every lie is detected, the
//! liar leaves rotation on its first lie, and every REST and JSON-RPC
//! answer is the honest one — 0 wrong answers. With no honest server left,
//! the answer is a clear error or says `"unverified"`, never the lie.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rpc_electrum::chain::hash_to_hex;
use serde_json::{json, Value};
use tests::{get, post, start_gateway, Lie, LyingChain, LyingElectrum, Process, LIE_ADDRESS};

struct Case {
    chain: Arc<LyingChain>,
    _servers: Vec<LyingElectrum>,
    _gateway: Process,
    addr: SocketAddr,
}

/// The liar first, then `honest` honest servers, behind a gateway that
/// cross-checks; returns once the honest servers agree on the tip.
async fn case(lie: Lie, honest: usize) -> Case {
    let chain = Arc::new(LyingChain::new());
    let mut servers = vec![LyingElectrum::start(chain.clone(), lie).await];
    for _ in 0..honest {
        servers.push(LyingElectrum::start(chain.clone(), Lie::None).await);
    }
    gateway_over(chain, servers, &[]).await
}

/// The gateway (with `extra` arguments) over these servers, the first
/// named `liar`.
async fn gateway_over(chain: Arc<LyingChain>, servers: Vec<LyingElectrum>, extra: &[&str]) -> Case {
    let honest = servers.len() - 1;
    let mut args: Vec<String> = ["--network", "regtest", "--verify", "cross-check"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (i, s) in servers.iter().enumerate() {
        let name = if i == 0 {
            "liar".to_owned()
        } else {
            format!("honest{i}")
        };
        args.push("--server".into());
        args.push(format!("{name}={}", s.url));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (gateway, addr) = start_gateway(&refs);
    let c = Case {
        chain,
        _servers: servers,
        _gateway: gateway,
        addr,
    };
    if honest >= 2 {
        let started = Instant::now();
        loop {
            let (s, v) = get_json(addr, "/v1/tip").await;
            if s == 200 && v["height"] == c.chain.tip() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no agreed tip: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    c
}

async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = get(addr, path).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status.as_u16(), v)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `/healthz`'s entry for the liar.
async fn liar(addr: SocketAddr) -> Value {
    let (_, v) = get_json(addr, "/healthz").await;
    v["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "liar").cloned())
        .unwrap_or_else(|| panic!("no liar in {v}"))
}

/// Waits until the liar is out of rotation and returns its entry.
async fn until_liar_out(addr: SocketAddr, why: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let entry = liar(addr).await;
        if entry["healthy"] == false && why(&entry) {
            return entry;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the liar stayed: {entry}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the liar is out of rotation, distrusted with a reason
/// that mentions `why`.
async fn distrusted_for(addr: SocketAddr, why: &str) {
    let entry = until_liar_out(addr, |e| e["distrusted"].is_string()).await;
    assert!(
        entry["distrusted"]
            .as_str()
            .is_some_and(|w| w.contains(why)),
        "{entry}"
    );
}

/// Every answer the gateway gives about the address and the chain is the
/// honest one.
async fn all_answers_are_true(c: &Case) {
    let chain = &c.chain;
    // The tip: the real one, with its header.
    let (s, tip) = get_json(c.addr, "/v1/tip").await;
    let real_tip = &chain.blocks[chain.blocks.len() - 1].header;
    assert_eq!(s, 200, "{tip}");
    assert_eq!(tip["height"], chain.tip(), "{tip}");
    assert_eq!(tip["header"], hex(real_tip.as_bytes()), "{tip}");
    // History: exactly the payments, each proven.
    let (s, h) = get_json(c.addr, &format!("/v1/address/{LIE_ADDRESS}/history")).await;
    assert_eq!(s, 200, "{h}");
    let got: BTreeSet<String> = h["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| {
            assert_eq!(e["verified"], "spv", "{e}");
            e["txid"].as_str().expect("txid").to_owned()
        })
        .collect();
    let want: BTreeSet<String> = chain.payments.iter().map(|p| hash_to_hex(&p.0)).collect();
    assert_eq!(got, want, "{h}");
    // Balance and unspent outputs: the honest ones, cross-checked.
    let (s, b) = get_json(c.addr, &format!("/v1/address/{LIE_ADDRESS}/balance")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (&b["confirmed"], &b["verified"]),
        (&json!(chain.balance()), &json!("cross-checked")),
        "{b}"
    );
    let (s, u) = get_json(c.addr, &format!("/v1/address/{LIE_ADDRESS}/utxos")).await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(
        u["utxos"].as_array().map(Vec::len),
        Some(chain.payments.len()),
        "{u}"
    );
    assert_eq!(u["verified"], "cross-checked", "{u}");
    // A transaction by id, on both routes: the transaction asked for.
    let (txid, _, _) = chain.payments[0];
    let raw = &chain.txs.iter().find(|t| t.0 == txid).expect("raw").1;
    let (s, t) = get_json(c.addr, &format!("/v1/tx/{}", hash_to_hex(&txid))).await;
    assert_eq!((s, &t["hex"]), (200, &json!(hex(raw))), "{t}");
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "blockchain.transaction.get",
        "params": [hash_to_hex(&chain.payments[1].0)]});
    let (_, _, text) = post(c.addr, body.to_string()).await;
    let v: Value = serde_json::from_str(&text).expect("JSON");
    let raw1 = &chain
        .txs
        .iter()
        .find(|t| t.0 == chain.payments[1].0)
        .expect("raw")
        .1;
    assert_eq!(v["result"], hex(raw1), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tip_without_proof_of_work() {
    let c = case(Lie::TipWithoutWork, 2).await;
    let entry = until_liar_out(c.addr, |e| {
        e["verified"]
            .as_str()
            .is_some_and(|v| v.starts_with("lied"))
    })
    .await;
    assert!(entry["distrusted"].is_string(), "{entry}");
    all_answers_are_true(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_branch_with_less_work() {
    let c = case(Lie::LessWorkFork, 2).await;
    until_liar_out(c.addr, |e| e["verified"] == "fork").await;
    all_answers_are_true(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tip_rolled_back() {
    let c = case(Lie::Rollback, 2).await;
    until_liar_out(c.addr, |e| e["lagging"] == true).await;
    all_answers_are_true(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_merkle_proof() {
    let c = case(Lie::FakeMerkleProof, 2).await;
    all_answers_are_true(&c).await;
    distrusted_for(c.addr, "merkle").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inner_node_that_reads_as_a_64_byte_transaction() {
    let c = case(Lie::InnerNodeAsTransaction, 2).await;
    all_answers_are_true(&c).await;
    distrusted_for(c.addr, "no server proves").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_at_the_position_of_a_duplicated_last_node() {
    let c = case(Lie::DuplicatedLastNode, 2).await;
    all_answers_are_true(&c).await;
    distrusted_for(c.addr, "merkle").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_raw_transaction_for_a_txid() {
    let c = case(Lie::FakeTransaction, 2).await;
    all_answers_are_true(&c).await;
    distrusted_for(c.addr, "is not transaction").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balance_that_differs_from_the_other_servers() {
    let c = case(Lie::FakeBalance, 2).await;
    all_answers_are_true(&c).await;
    distrusted_for(c.addr, "majority").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_only_a_liar_left_the_answer_is_an_error_or_unverified_never_the_lie() {
    // A fake transaction: refused, a clear error.
    let c = case(Lie::FakeTransaction, 0).await;
    let (txid, _, _) = c.chain.payments[0];
    let started = Instant::now();
    let (s, body) = loop {
        let (s, body) = get(c.addr, &format!("/v1/tx/{}", hash_to_hex(&txid))).await;
        if s.as_u16() != 503 || started.elapsed() > Duration::from_secs(10) {
            break (s.as_u16(), body);
        }
        // Not connected yet.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(s >= 500, "{s} {body}");
    assert!(!body.contains(&hex(&c.chain.stranger)), "{body}");
    // A balance one server alone reports: said to be unverified.
    let c = case(Lie::FakeBalance, 0).await;
    let started = Instant::now();
    let b = loop {
        let (s, b) = get_json(c.addr, &format!("/v1/address/{LIE_ADDRESS}/balance")).await;
        if s == 200 || started.elapsed() > Duration::from_secs(10) {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(b["verified"], "unverified", "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_calls_per_rest_call() {
    // Three honest servers; what each REST call costs in server calls (the
    // verifier's own header sync and the pings are not counted).
    let c = case(Lie::None, 2).await;
    let servers = &c._servers;
    let count = |method: &str| servers.iter().map(|s| s.calls(method)).sum::<usize>();
    const REST_METHODS: [&str; 6] = [
        "blockchain.scripthash.get_balance",
        "blockchain.scripthash.listunspent",
        "blockchain.scripthash.get_history",
        "blockchain.transaction.get_merkle",
        "blockchain.transaction.get",
        "blockchain.block.header",
    ];
    let total = || REST_METHODS.iter().map(|m| count(m)).sum::<usize>();
    let cost = |before: usize| total() - before;
    let txid = hash_to_hex(&c.chain.payments[0].0);
    let routes = [
        (
            "balance (cross-checked)",
            format!("/v1/address/{LIE_ADDRESS}/balance"),
        ),
        (
            "balance again",
            format!("/v1/address/{LIE_ADDRESS}/balance"),
        ),
        (
            "utxos (cross-checked)",
            format!("/v1/address/{LIE_ADDRESS}/utxos"),
        ),
        (
            "history, 6 confirmed entries, first",
            format!("/v1/address/{LIE_ADDRESS}/history"),
        ),
        (
            "history again",
            format!("/v1/address/{LIE_ADDRESS}/history"),
        ),
        ("tx, first", format!("/v1/tx/{txid}")),
        ("tx again", format!("/v1/tx/{txid}")),
        ("tip", "/v1/tip".to_owned()),
        ("verified header", "/v1/block/5/header".to_owned()),
    ];
    let mut costs = Vec::new();
    for (what, path) in &routes {
        let before = total();
        let (s, v) = get_json(c.addr, path).await;
        assert_eq!(s, 200, "{path}: {v}");
        costs.push((*what, cost(before)));
    }
    for (what, n) in &costs {
        eprintln!("{what}: {n} server calls");
    }
    let of = |what: &str| {
        costs
            .iter()
            .find(|c| c.0 == what)
            .map(|c| c.1)
            .expect("measured")
    };
    assert_eq!(of("balance (cross-checked)"), 2);
    assert_eq!(
        of("balance again"),
        2,
        "a cross-check is never a cached answer"
    );
    assert_eq!(of("utxos (cross-checked)"), 2);
    // One history call and one proof per confirmed entry; settled proofs
    // (and the 1 s cached history) are not asked again.
    assert_eq!(
        of("history, 6 confirmed entries, first"),
        1 + c.chain.payments.len()
    );
    assert!(of("history again") < of("history, 6 confirmed entries, first"));
    assert_eq!((of("tx, first"), of("tx again")), (1, 0));
    assert_eq!((of("tip"), of("verified header")), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_headers_kept_in_a_file_are_not_fetched_again_after_a_restart() {
    let file = std::env::temp_dir().join(format!("gateway-headers-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let path = file.to_string_lossy().into_owned();
    let chain = Arc::new(LyingChain::new());
    let start = |chain: Arc<LyingChain>| async move {
        let mut servers = Vec::new();
        for _ in 0..3 {
            servers.push(LyingElectrum::start(chain.clone(), Lie::None).await);
        }
        servers
    };
    let c = gateway_over(
        chain.clone(),
        start(chain.clone()).await,
        &["--header-file", &path],
    )
    .await;
    // The prefix (44 bytes) and the 12 headers above genesis.
    let len = std::fs::metadata(&file).expect("header file").len();
    assert_eq!(len, 44 + 80 * u64::from(chain.tip()));
    drop(c);
    // Restarted on the same file, with fresh servers: the tip is agreed
    // without a single header fetched.
    let c = gateway_over(
        chain.clone(),
        start(chain.clone()).await,
        &["--header-file", &path],
    )
    .await;
    let fetched: usize = c
        ._servers
        .iter()
        .map(|s| s.calls("blockchain.block.headers"))
        .sum();
    assert_eq!(fetched, 0, "headers fetched again");
    all_answers_are_true(&c).await;
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_proof_that_does_not_lead_to_the_root() {
    // Verification starts at block 7 (configured with the root of the
    // block hashes up to it): the payments at 2 to 6 are proven through
    // each header's cp_height proof, which the liar fakes.
    let chain = Arc::new(LyingChain::new());
    let mut servers = vec![LyingElectrum::start(chain.clone(), Lie::FakeCheckpointProof).await];
    for _ in 0..2 {
        servers.push(LyingElectrum::start(chain.clone(), Lie::None).await);
    }
    let b7 = &chain.blocks[6].header;
    let checkpoint = format!(
        "7:{}:{}:207fffff:{}",
        hash_to_hex(&b7.hash()),
        b7.time(),
        hash_to_hex(&chain.root_at(7))
    );
    let c = gateway_over(chain.clone(), servers, &["--checkpoint", &checkpoint]).await;
    all_answers_are_true(&c).await;
    distrusted_for(c.addr, "checkpoint's root").await;
    // Without the root, entries below the checkpoint are said unverified
    // (nobody is blamed); the one above it is proven.
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(LyingElectrum::start(chain.clone(), Lie::None).await);
    }
    let bare = checkpoint.rsplit_once(':').expect("root").0.to_owned();
    let c = gateway_over(chain.clone(), servers, &["--checkpoint", &bare]).await;
    let (s, h) = get_json(c.addr, &format!("/v1/address/{LIE_ADDRESS}/history")).await;
    assert_eq!(s, 200, "{h}");
    for e in h["history"].as_array().expect("history") {
        let want = if e["height"].as_u64() > Some(7) {
            "spv"
        } else {
            "unverified"
        };
        assert_eq!(e["verified"], want, "{e}");
    }
    let (_, health) = get_json(c.addr, "/healthz").await;
    assert!(!health.to_string().contains("distrusted"), "{health}");
}
