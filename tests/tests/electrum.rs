//! `ElectrumBackend` against real ElectrumX servers (tests/electrumx) over
//! the deterministic regtest chain: the protocol, subscriptions with live
//! notifications, TLS, and servers that die, freeze and come back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rpc_core::{Deadline, Id, RawJson, Request, Response, RpcError};
use rpc_electrum::{ElectrumBackend, TlsVerify};
use rpc_failover::{FailoverLayer, Member, MethodRules};
use serde_json::{json, Value};
use tests::{spend_op_true, ElectrumX, ElectrumXOptions};
use tower::ServiceExt;

/// Address A of the fixed chain (see tests/electrumx).
const A_SCRIPTHASH: &str = "3d4d2ea7c2eb16116423852a609a7dd47130c2fa9f099c1ae90610533f768ba8";
const OP_TRUE_SCRIPTHASH: &str = "6032c38c0bc0e91e726f1e55e1832e434509001a7aed5cfd881b6ef07215e84a";
const GENESIS: &str = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206";

fn req(id: u64, method: &str, params: Value) -> Request {
    Request::new(method)
        .with_id(Id::from(id))
        .with_params(RawJson::from_bytes(params.to_string()).expect("json"))
}

fn result(r: &Response) -> Value {
    serde_json::from_slice(r.result_json().expect("a result").as_bytes()).expect("json")
}

async fn call(b: &ElectrumBackend, method: &str, params: Value) -> Result<Value, RpcError> {
    let r = b.clone().oneshot(req(7, method, params)).await?;
    assert_eq!(r.id(), &Id::from(7u64), "the caller's id is restored");
    match r.result_json() {
        Some(raw) => Ok(serde_json::from_slice(raw.as_bytes()).expect("json")),
        None => Ok(json!({"error": r.error_object().map(|e| e.code())})),
    }
}

fn fast(name: &str, url: &str) -> ElectrumBackend {
    ElectrumBackend::builder(name, url)
        .ping_interval(Duration::from_millis(500))
        .ping_timeout(Duration::from_millis(1000))
        .backoff(Duration::from_millis(100), Duration::from_millis(500))
        .request_timeout(Duration::from_secs(5))
        .build()
        .expect("backend")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_against_the_known_chain() {
    let ex = ElectrumX::start(ElectrumXOptions {
        instances: 1,
        ..Default::default()
    });
    let b = fast("ex", &ex.tcp_url(0));

    let balance = call(
        &b,
        "blockchain.scripthash.get_balance",
        json!([A_SCRIPTHASH]),
    )
    .await
    .expect("balance");
    assert_eq!(
        balance,
        json!({"confirmed": 6_100_000_000u64, "unconfirmed": 50_000_000})
    );
    let (software, protocol) = b.server_version().expect("handshake done");
    assert!(software.starts_with("ElectrumX"), "{software}");
    assert!(
        ["1.4", "1.5", "1.6"].contains(&protocol.as_str()),
        "{protocol}"
    );

    let tip = call(&b, "blockchain.headers.subscribe", json!([]))
        .await
        .expect("tip");
    assert_eq!(tip["height"], 10);
    let features = call(&b, "server.features", json!([]))
        .await
        .expect("features");
    assert_eq!(features["genesis_hash"], GENESIS);
    let history = call(
        &b,
        "blockchain.scripthash.get_history",
        json!([A_SCRIPTHASH]),
    )
    .await
    .expect("history");
    let txids: Vec<&str> = history
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|h| h["tx_hash"].as_str())
        .collect();
    assert!(txids.len() >= 3, "{history}");
    let raw = call(&b, "blockchain.transaction.get", json!([txids[0]]))
        .await
        .expect("raw tx");
    assert!(raw.as_str().is_some_and(|h| h.len() > 100));
    let header = call(&b, "blockchain.block.header", json!([0]))
        .await
        .expect("genesis header");
    assert_eq!(header.as_str().map(str::len), Some(160));
    // An unknown transaction is the server's own error (a small code), not a failure.
    let missing = call(&b, "blockchain.transaction.get", json!(["00".repeat(32)]))
        .await
        .expect("answer");
    assert!(missing["error"].as_i64().is_some(), "{missing}");

    // Many calls in flight on the one connection, each with its own id back.
    let calls: Vec<_> = (0..200u64)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move {
                let r = b
                    .oneshot(req(
                        i,
                        "blockchain.scripthash.get_balance",
                        json!([A_SCRIPTHASH]),
                    ))
                    .await
                    .expect("answer");
                assert_eq!(r.id(), &Id::from(i));
                result(&r)["confirmed"].as_u64()
            })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.expect("task"), Some(6_100_000_000));
    }
    assert_eq!(b.connects(), 1, "one connection for everything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_blocks_and_payments_are_notified() {
    let ex = ElectrumX::start(ElectrumXOptions {
        instances: 1,
        ..Default::default()
    });
    let b = fast("ex", &ex.tcp_url(0));
    let mut notes = b.notifications();
    let tip = call(&b, "blockchain.headers.subscribe", json!([]))
        .await
        .expect("tip");
    assert_eq!(tip["height"], 10);
    let status = call(&b, "blockchain.scripthash.subscribe", json!([A_SCRIPTHASH]))
        .await
        .expect("status");
    assert!(status.is_string());

    ex.daemon("generate", json!([1])).await;
    ex.daemon("fake_send", json!(["A", 12345])).await;
    let mut saw_tip = false;
    let mut saw_status = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !(saw_tip && saw_status) {
        let n = tokio::time::timeout_at(deadline, notes.recv())
            .await
            .expect("notifications within 20 s")
            .expect("not lagged");
        let params: Value = serde_json::from_slice(n.params.as_bytes()).expect("json");
        match &*n.method {
            "blockchain.headers.subscribe" => {
                assert_eq!(params[0]["height"], 11);
                saw_tip = true;
            }
            "blockchain.scripthash.subscribe" => {
                assert_eq!(params[0], A_SCRIPTHASH);
                assert_ne!(params[1], status, "a new status");
                saw_status = true;
            }
            other => panic!("unexpected {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_pinned_self_signed_certificate() {
    let ex = ElectrumX::start(ElectrumXOptions {
        instances: 1,
        tls: true,
        ..Default::default()
    });
    let cert = ex.cert.clone().expect("cert");
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    let pin = text
        .trim()
        .rsplit('=')
        .next()
        .expect("fingerprint")
        .to_owned();

    let pinned = ElectrumBackend::builder("pinned", &ex.tls_url(0))
        .tls(TlsVerify::Pinned(pin.clone()))
        .build()
        .expect("backend");
    let balance = call(
        &pinned,
        "blockchain.scripthash.get_balance",
        json!([A_SCRIPTHASH]),
    )
    .await
    .expect("over TLS");
    assert_eq!(balance["confirmed"], 6_100_000_000u64);

    let insecure = ElectrumBackend::builder("any", &ex.tls_url(0))
        .tls(TlsVerify::InsecureAcceptAny)
        .build()
        .expect("backend");
    call(&insecure, "server.ping", json!([]))
        .await
        .expect("accepted");

    // The wrong pin and the public roots both refuse the self-signed cert.
    let wrong = ElectrumBackend::builder("wrong", &ex.tls_url(0))
        .tls(TlsVerify::Pinned("00".repeat(32)))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("backend");
    let public = ElectrumBackend::builder("public", &ex.tls_url(0))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("backend");
    for b in [wrong, public] {
        let mut request = req(1, "server.ping", json!([]));
        request
            .extensions_mut()
            .insert(Deadline::after(Duration::from_secs(3)));
        let err = b.clone().oneshot(request).await.expect_err("refused");
        assert!(
            matches!(err, RpcError::Connect { .. } | RpcError::Timeout { .. }),
            "{err}"
        );
        assert!(!b.is_connected());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_is_detected_and_a_thawed_one_is_used_again() {
    let ex = ElectrumX::start(ElectrumXOptions {
        instances: 1,
        ..Default::default()
    });
    let b = fast("ex", &ex.tcp_url(0));
    call(&b, "server.ping", json!([])).await.expect("up");

    ex.signal(0, "STOP");
    // A call in flight on the frozen connection ends (no hang): either its
    // deadline or the liveness check (0.5 s + 1 s) answers.
    let started = std::time::Instant::now();
    let mut request = req(
        1,
        "blockchain.scripthash.get_balance",
        json!([A_SCRIPTHASH]),
    );
    request
        .extensions_mut()
        .insert(Deadline::after(Duration::from_secs(4)));
    let err = b.clone().oneshot(request).await.expect_err("frozen");
    assert!(
        matches!(
            err,
            RpcError::ConnectionClosed { .. } | RpcError::Timeout { .. }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // The connection is declared dead; while it cannot be re-established,
    // calls fail fast as not sent.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let started = std::time::Instant::now();
        match b.clone().oneshot(req(2, "server.ping", json!([]))).await {
            Err(RpcError::Connect { .. }) => {
                assert!(started.elapsed() < Duration::from_millis(500), "fast");
                break;
            }
            other => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "still waiting: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    ex.signal(0, "CONT");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if call(&b, "server.ping", json!([])).await.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reconnects after the thaw"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(b.connects() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_pool_keeps_answering_while_servers_die_and_freeze() {
    let ex = ElectrumX::start(ElectrumXOptions {
        instances: 3,
        ..Default::default()
    });
    let members: Vec<_> = (0..3)
        .map(|i| Member::new(format!("ex{i}"), fast(&format!("ex{i}"), &ex.tcp_url(i))))
        .collect();
    let pool = FailoverLayer::new()
        .classifier(MethodRules::electrum())
        .failure_threshold(1)
        .out_of_service(Duration::from_secs(30))
        .build(members)
        .expect("pool");

    let load = |pool: rpc_failover::Failover<ElectrumBackend>, rounds: u64| async move {
        let mut failures = Vec::new();
        for i in 0..rounds {
            let mut request = req(
                i,
                "blockchain.scripthash.get_balance",
                json!([OP_TRUE_SCRIPTHASH]),
            );
            request
                .extensions_mut()
                .insert(Deadline::after(Duration::from_secs(8)));
            match pool.clone().oneshot(request).await {
                Ok(r) if r.result_json().is_some() => {}
                other => failures.push(format!("{i}: {other:?}")),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        failures
    };
    let clients: Vec<_> = (0..8)
        .map(|_| tokio::spawn(load(pool.clone(), 20)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    ex.signal(0, "KILL");
    tokio::time::sleep(Duration::from_millis(500)).await;
    ex.signal(1, "STOP");
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.expect("client"));
    }
    ex.signal(1, "CONT");
    assert!(
        failures.is_empty(),
        "calls failed while a server was healthy: {failures:#?}"
    );
    let status: Vec<_> = pool
        .members()
        .map(|m| (m.name.to_string(), m.in_service))
        .collect();
    assert_eq!(status[2], ("ex2".to_owned(), true), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_another_network_is_refused() {
    let ex = ElectrumX::start(ElectrumXOptions {
        instances: 1,
        ..Default::default()
    });
    let mainnet = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f";
    let wrong = ElectrumBackend::builder("wrong-net", &ex.tcp_url(0))
        .expect_genesis(mainnet)
        .backoff(Duration::from_millis(100), Duration::from_millis(200))
        .build()
        .expect("backend");
    let right = ElectrumBackend::builder("right-net", &ex.tcp_url(0))
        .expect_genesis(GENESIS)
        .build()
        .expect("backend");
    call(&right, "server.ping", json!([]))
        .await
        .expect("same network");
    let mut request = req(1, "server.ping", json!([]));
    request
        .extensions_mut()
        .insert(Deadline::after(Duration::from_secs(5)));
    let err = wrong
        .clone()
        .oneshot(request)
        .await
        .expect_err("wrong network");
    assert!(matches!(err, RpcError::Connect { .. }), "{err}");
    assert!(!wrong.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_tip_stopped_is_avoided() {
    // Two deployments, each with its own node, on the same deterministic chain.
    let stuck = ElectrumX::start(ElectrumXOptions {
        instances: 1,
        ..Default::default()
    });
    let moving = ElectrumX::start(ElectrumXOptions {
        instances: 1,
        ..Default::default()
    });
    let board = rpc_electrum::TipBoard::new();
    let backend = |name: &str, url: String| {
        ElectrumBackend::builder(name, &url)
            .tip_board(board.clone(), 1)
            .build()
            .expect("backend")
    };
    let a = backend("stuck", stuck.tcp_url(0));
    let b = backend("moving", moving.tcp_url(0));
    let pool = FailoverLayer::new()
        .classifier(MethodRules::electrum())
        .failure_threshold(1)
        .build(vec![
            Member::new("stuck", a.clone()),
            Member::new("moving", b.clone()),
        ])
        .expect("pool");
    let r = pool
        .clone()
        .oneshot(req(1, "server.ping", json!([])))
        .await
        .expect("answer");
    assert_eq!(
        r.extensions().get::<rpc_core::ServedBy>().map(|s| &*s.0),
        Some("stuck"),
        "first in order"
    );

    moving.daemon("generate", json!([3])).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while b.tip() != Some(13) {
        assert!(std::time::Instant::now() < deadline, "tip {:?}", b.tip());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.tip(), Some(10));
    let r = pool
        .clone()
        .oneshot(req(2, "blockchain.headers.subscribe", json!([])))
        .await
        .expect("answer");
    assert_eq!(
        r.extensions().get::<rpc_core::ServedBy>().map(|s| &*s.0),
        Some("moving")
    );
    assert_eq!(result(&r)["height"], 13, "the client sees the real tip");
    let status: Vec<_> = pool
        .members()
        .map(|m| (m.name.to_string(), m.in_service))
        .collect();
    assert_eq!(status[0], ("stuck".to_owned(), false), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_tracking_pool_leaves_a_server_whose_daemon_stopped_and_returns_to_it() {
    // Two deployments on the same deterministic chain; only one daemon mines
    // (the other's is, in effect, frozen).
    let stuck = ElectrumX::start(ElectrumXOptions {
        instances: 1,
        ..Default::default()
    });
    let moving = ElectrumX::start(ElectrumXOptions {
        instances: 1,
        ..Default::default()
    });
    let backend = |name: &str, url: String| {
        ElectrumBackend::builder(name, &url)
            .build()
            .expect("backend")
    };
    let pool = FailoverLayer::new()
        .classifier(MethodRules::electrum())
        .head_tracking(
            rpc_failover::HeadPolicy::electrum()
                .max_lag(2)
                .max_stall(Duration::from_secs(3))
                .probe_interval(Duration::from_millis(500)),
        )
        .build(vec![
            Member::new("stuck", backend("stuck", stuck.tcp_url(0))),
            Member::new("moving", backend("moving", moving.tcp_url(0))),
        ])
        .expect("pool");
    pool.start_head_probes();
    let served_by = |r: &Response| {
        r.extensions()
            .get::<rpc_core::ServedBy>()
            .map(|s| s.0.to_string())
            .unwrap_or_default()
    };
    let ask = |pool: &rpc_failover::Failover<ElectrumBackend>, id| {
        pool.clone()
            .oneshot(req(id, "blockchain.block.header", json!([1])))
    };
    let r = ask(&pool, 1).await.expect("answer");
    assert_eq!(served_by(&r), "stuck", "first in order while level");
    // Each answer carries its server's tip, learned from header notifications.
    assert_eq!(
        r.extensions().get::<rpc_core::ChainHead>(),
        Some(&rpc_core::ChainHead(10))
    );

    // One block ahead (within max_lag): stuck keeps the calls until it has
    // been stalled behind for max_stall (3 s).
    moving.daemon("generate", json!([1])).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut id = 2;
    loop {
        let r = ask(&pool, id).await.expect("answer");
        id += 1;
        if served_by(&r) == "moving" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never left the stalled server"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stuck_status = pool
        .members()
        .find(|m| &*m.name == "stuck")
        .expect("member");
    assert_eq!((stuck_status.head, stuck_status.lagging), (Some(10), true));
    assert!(
        stuck_status.in_service,
        "it never failed a call: lagging, not down"
    );

    // A header only the moving server has goes there.
    let r = pool
        .clone()
        .oneshot(req(id, "blockchain.block.header", json!([11])))
        .await
        .expect("answer");
    assert_eq!(served_by(&r), "moving");

    // The stuck daemon catches up (it mines two blocks: now the highest).
    stuck.daemon("generate", json!([2])).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        id += 1;
        let r = ask(&pool, id).await.expect("answer");
        if served_by(&r) == "stuck" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never went back to the caught-up server"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_transaction_is_broadcast() {
    let ex = ElectrumX::start(ElectrumXOptions {
        instances: 1,
        ..Default::default()
    });
    let b = fast("ex", &ex.tcp_url(0));
    let utxos = call(
        &b,
        "blockchain.scripthash.listunspent",
        json!([OP_TRUE_SCRIPTHASH]),
    )
    .await
    .expect("utxos");
    let utxo = utxos
        .as_array()
        .and_then(|u| {
            u.iter()
                .find(|u| u["height"].as_u64().is_some_and(|h| h > 0))
        })
        .expect("a confirmed anyone-can-spend output");
    let raw = spend_op_true(
        utxo["tx_hash"].as_str().expect("hash"),
        u32::try_from(utxo["tx_pos"].as_u64().expect("pos")).expect("small"),
        utxo["value"].as_u64().expect("value"),
    );
    let txid = call(&b, "blockchain.transaction.broadcast", json!([raw]))
        .await
        .expect("broadcast");
    let txid = txid.as_str().expect("a txid").to_owned();
    assert_eq!(txid.len(), 64);
    let back = call(&b, "blockchain.transaction.get", json!([txid]))
        .await
        .expect("in the mempool");
    assert_eq!(back.as_str(), Some(raw.as_str()));
    // Spending it again is the node's own refusal, passed through as an answer.
    let again = call(&b, "blockchain.transaction.broadcast", json!([raw]))
        .await
        .expect("an answer");
    assert!(
        again["error"].as_i64().is_some() || again.as_str() == Some(txid.as_str()),
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitcoin_cash_mode_with_a_cashaddr() {
    use rpc_electrum::address::{scripthash, Network};
    let ex = ElectrumX::start(ElectrumXOptions {
        instances: 1,
        bch: true,
        ..Default::default()
    });
    let b = fast("bch", &ex.tcp_url(0));
    let sh = scripthash(
        "bchreg:qr99xe9h87llfuw7sperpt44ethul3882gzjpf4pht",
        Network::Regtest,
    )
    .expect("cashaddr");
    assert_eq!(sh, A_SCRIPTHASH);
    let balance = call(&b, "blockchain.scripthash.get_balance", json!([sh]))
        .await
        .expect("balance");
    assert_eq!(balance["confirmed"], 6_100_000_000u64);
    let (software, _) = b.server_version().expect("handshake");
    assert!(software.starts_with("ElectrumX"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_subscriptions_resume_and_the_missed_block_is_reported() {
    let mut ex = ElectrumX::start(ElectrumXOptions {
        instances: 1,
        ..Default::default()
    });
    let b = fast("ex", &ex.tcp_url(0));
    let mut notes = b.notifications();
    let tip = call(&b, "blockchain.headers.subscribe", json!([]))
        .await
        .expect("tip");
    assert_eq!(tip["height"], 10);

    // A call in flight when the server dies fails at once; calls while it is
    // down fail fast as not sent.
    let in_flight = tokio::spawn(b.clone().oneshot(req(
        1,
        "blockchain.scripthash.get_history",
        json!([A_SCRIPTHASH]),
    )));
    ex.signal(0, "KILL");
    match in_flight.await.expect("task") {
        Ok(_) => {} // it may have been answered before the kill landed
        Err(e) => assert!(
            matches!(
                e,
                RpcError::ConnectionClosed { .. } | RpcError::Connect { .. }
            ),
            "{e}"
        ),
    }
    // A block is mined while the server is down: the subscriber must still
    // learn about it.
    ex.daemon("generate", json!([1])).await;
    ex.restart(0);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = tokio::time::timeout_at(deadline, notes.recv())
            .await
            .expect("the missed block is reported after the reconnect")
            .expect("not lagged");
        let params: Value = serde_json::from_slice(n.params.as_bytes()).expect("json");
        if &*n.method == "blockchain.headers.subscribe" && params[0]["height"] == 11 {
            break;
        }
    }
    assert!(b.connects() >= 2);
    assert_eq!(b.tip(), Some(11));
    let balance = call(
        &b,
        "blockchain.scripthash.get_balance",
        json!([A_SCRIPTHASH]),
    )
    .await
    .expect("serving again");
    // Block 11 mined the mempool's 0.5 to A.
    assert_eq!(
        balance,
        json!({"confirmed": 6_150_000_000u64, "unconfirmed": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_subscriptions_survive_the_death_of_a_server() {
    let ex = ElectrumX::start(ElectrumXOptions {
        instances: 2,
        ..Default::default()
    });
    let servers = vec![fast("ex0", &ex.tcp_url(0)), fast("ex1", &ex.tcp_url(1))];
    let mut subs = rpc_electrum::PoolSubscriptions::new(servers);
    let tip = subs
        .subscribe(
            "blockchain.headers.subscribe",
            RawJson::from_static("[]").expect("json"),
        )
        .await
        .expect("subscribed");
    assert_eq!(result(&tip)["height"], 10);
    subs.subscribe(
        "blockchain.scripthash.subscribe",
        RawJson::from_bytes(format!("[\"{A_SCRIPTHASH}\"]")).expect("json"),
    )
    .await
    .expect("subscribed");

    // The server that answered first dies; updates keep coming from the other.
    ex.signal(0, "KILL");
    ex.daemon("generate", json!([1])).await;
    let mut heights = Vec::new();
    let mut statuses = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while heights.is_empty() || statuses == 0 {
        let n = tokio::time::timeout_at(deadline, subs.next())
            .await
            .expect("updates within 20 s")
            .expect("open");
        let params: Value = serde_json::from_slice(n.params.as_bytes()).expect("json");
        match &*n.method {
            "blockchain.headers.subscribe" => heights.push(params[0]["height"].clone()),
            "blockchain.scripthash.subscribe" => statuses += 1,
            _ => {}
        }
    }
    assert_eq!(heights, [json!(11)], "block 11 once, not once per server");
    // No duplicate of either update arrives from the other subscriptions.
    let extra = tokio::time::timeout(Duration::from_secs(2), subs.next()).await;
    assert!(extra.is_err(), "a duplicate: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_other_method_of_the_protocol_answers() {
    let ex = ElectrumX::start(ElectrumXOptions {
        instances: 1,
        ..Default::default()
    });
    let b = fast("ex", &ex.tcp_url(0));
    let mempool = call(
        &b,
        "blockchain.scripthash.get_mempool",
        json!([A_SCRIPTHASH]),
    )
    .await
    .expect("mempool");
    assert_eq!(
        mempool.as_array().map(Vec::len),
        Some(1),
        "the 0.5 to A waits in the mempool: {mempool}"
    );
    let headers = call(&b, "blockchain.block.headers", json!([0, 5]))
        .await
        .expect("headers");
    assert_eq!(headers["count"], 5);
    // Protocol 1.4 answers one hex string; 1.6 a list of headers.
    let total: usize = match (headers["hex"].as_str(), headers["headers"].as_array()) {
        (Some(hex), _) => hex.len(),
        (None, Some(list)) => list.iter().filter_map(Value::as_str).map(str::len).sum(),
        _ => 0,
    };
    assert_eq!(total, 5 * 160, "{headers}");
    let history = call(
        &b,
        "blockchain.scripthash.get_history",
        json!([A_SCRIPTHASH]),
    )
    .await
    .expect("history");
    let confirmed = history
        .as_array()
        .and_then(|h| {
            h.iter()
                .find(|t| t["height"].as_i64().is_some_and(|h| h > 0))
        })
        .cloned()
        .expect("a confirmed tx");
    let merkle = call(
        &b,
        "blockchain.transaction.get_merkle",
        json!([confirmed["tx_hash"], confirmed["height"]]),
    )
    .await
    .expect("merkle");
    assert_eq!(merkle["block_height"], confirmed["height"]);
    let txid = call(
        &b,
        "blockchain.transaction.id_from_pos",
        json!([confirmed["height"], merkle["pos"]]),
    )
    .await
    .expect("id");
    assert_eq!(txid, confirmed["tx_hash"]);
    for (method, params) in [
        ("blockchain.estimatefee", json!([2])),
        ("mempool.get_fee_histogram", json!([])),
        ("server.banner", json!([])),
        ("server.donation_address", json!([])),
        ("server.peers.subscribe", json!([])),
    ] {
        let v = call(&b, method, params).await.expect(method);
        assert!(v.get("error").is_none(), "{method}: {v}");
    }
    // Removed from the protocol in 1.6 (negotiated by default): the server's
    // own "method not found" is an answer, passed through.
    let gone = call(&b, "blockchain.relayfee", json!([]))
        .await
        .expect("an answer");
    assert!(gone.get("error").is_some() || gone.is_number(), "{gone}");
}

/// A minimal Electrum server whose tip the test sets: answers
/// `server.version`, `server.ping`, `blockchain.headers.subscribe` (its tip,
/// pushed again as a notification whenever the test moves it) and echoes
/// anything else. For what a real ElectrumX cannot be made to do: report a
/// tip below the one it reported before (a server restored from an old
/// state).
async fn electrum_stub(tip: Arc<AtomicU64>) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tip = tip.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                let header = |h: u64| json!({"height": h, "hex": format!("{h:0160x}")});
                let mut told = u64::MAX;
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                loop {
                    let out = tokio::select! {
                        line = lines.next_line() => {
                            let Ok(Some(line)) = line else { return };
                            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                            let result = match v["method"].as_str().unwrap_or("") {
                                "server.version" => json!(["stub 1.0", "1.4"]),
                                "server.ping" => Value::Null,
                                "blockchain.headers.subscribe" => {
                                    told = tip.load(Ordering::SeqCst);
                                    header(told)
                                }
                                _ => v["params"].clone(),
                            };
                            json!({"jsonrpc": "2.0", "id": v["id"], "result": result})
                        }
                        _ = tick.tick() => {
                            let now = tip.load(Ordering::SeqCst);
                            if told == u64::MAX || now == told {
                                continue;
                            }
                            told = now;
                            json!({"jsonrpc": "2.0", "method": "blockchain.headers.subscribe", "params": [header(now)]})
                        }
                    };
                    if w.write_all(format!("{out}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("tcp://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_tip_rolls_back_leaves_rotation() {
    let (rolled_tip, steady_tip) = (Arc::new(AtomicU64::new(10)), Arc::new(AtomicU64::new(10)));
    let rolled = electrum_stub(rolled_tip.clone()).await;
    let steady = electrum_stub(steady_tip.clone()).await;
    let backend = |name: &str, url: String| {
        ElectrumBackend::builder(name, &url)
            .build()
            .expect("backend")
    };
    let pool = FailoverLayer::new()
        .classifier(MethodRules::electrum())
        .head_tracking(
            rpc_failover::HeadPolicy::electrum()
                .max_lag(2)
                .probe_interval(Duration::from_millis(200)),
        )
        .build(vec![
            Member::new("rolled", backend("rolled", rolled)),
            Member::new("steady", backend("steady", steady)),
        ])
        .expect("pool");
    pool.start_head_probes();
    let served_by = |r: &Response| {
        r.extensions()
            .get::<rpc_core::ServedBy>()
            .map(|s| s.0.to_string())
            .unwrap_or_default()
    };
    let ping = |id| pool.clone().oneshot(req(id, "server.ping", json!([])));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        served_by(&ping(1).await.expect("answer")),
        "rolled",
        "first while level"
    );
    // Restored from an old state: its tip goes 10 -> 7.
    rolled_tip.store(7, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut id = 2;
    while served_by(&ping(id).await.expect("answer")) != "steady" {
        id += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "the rolled-back server kept the calls: {:?}",
            pool.members().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = pool
        .members()
        .find(|m| &*m.name == "rolled")
        .expect("member");
    assert_eq!((status.head, status.lagging), (Some(7), true), "{status:?}");
    // Both answer from their own view: the pool's answers say which head.
    let r = ping(100).await.expect("answer");
    assert_eq!(
        r.extensions().get::<rpc_core::ChainHead>(),
        Some(&rpc_core::ChainHead(10))
    );
    // It catches up: back in rotation.
    rolled_tip.store(10, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while served_by(&ping(id).await.expect("answer")) != "rolled" {
        id += 1;
        assert!(std::time::Instant::now() < deadline, "never back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
