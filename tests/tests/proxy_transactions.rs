//! Transactions through the shipped binary against real anvil nodes,
//! signed by the test (k256, alloy's EIP-1559 encoding): a per-sender rate
//! limit recovers the sender and holds it to its own budget (another
//! sender is not charged); a `multicall` group puts one transaction in
//! every node's pool.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, TxKind, U256};
use serde_json::json;
use tests::{body, call, post, start_anvil, start_proxy_config};

/// anvil's first two dev accounts (the same on every node).
const KEY0: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ACCOUNT0: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const KEY1: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// A 1-wei transfer from `key`'s account with `nonce`, signed here: `0x`
/// hex of its EIP-2718 encoding.
fn signed(key: &str, nonce: u64) -> String {
    let secret = hex::decode(key).expect("hex key");
    let signer = k256::ecdsa::SigningKey::from_slice(&secret).expect("a valid key");
    let tx = TxEip1559 {
        chain_id: 31337,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1,
        to: TxKind::Call(Address::repeat_byte(0x42)),
        value: U256::from(1),
        ..Default::default()
    };
    let (sig, recid) = signer
        .sign_prehash_recoverable(tx.signature_hash().as_slice())
        .expect("sign");
    let signature = alloy_primitives::Signature::from_signature_and_parity(sig, recid.is_y_odd());
    let envelope: TxEnvelope = tx.into_signed(signature).into();
    format!("0x{}", hex::encode(envelope.encoded_2718()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_over_its_budget_is_refused_and_another_sender_is_not() {
    let (_node, node) = start_anvil();
    let (_proxy, addr) = start_proxy_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[backends.n]\nurl = \"http://{node}\"\n\
         [rate_limit]\nper_sender = {{ rate = 1, burst = 2 }}\n"
    ));
    // Two transactions of account 0 pass and are mined.
    for nonce in 0..2 {
        let (status, v) = call(addr, "eth_sendRawTransaction", json!([signed(KEY0, nonce)])).await;
        assert_eq!(status, 200, "{v}");
        assert!(v["result"].as_str().is_some_and(|h| h.len() == 66), "{v}");
    }
    // The third, at once: refused before reaching the node.
    let (status, headers, text) = post(
        addr,
        body("eth_sendRawTransaction", json!([signed(KEY0, 2)])),
    )
    .await;
    assert_eq!(status, 429, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["error"]["code"], -32017, "{v}");
    let wait: u64 = headers
        .get("retry-after")
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.parse().ok())
        .expect("Retry-After");
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    let (_, nonce) = call(node, "eth_getTransactionCount", json!([ACCOUNT0, "latest"])).await;
    assert_eq!(
        nonce["result"], "0x2",
        "the refused one never reached the node"
    );
    // Another sender is not charged for account 0's transactions.
    let (status, v) = call(addr, "eth_sendRawTransaction", json!([signed(KEY1, 0)])).await;
    assert_eq!(status, 200, "{v}");
    // After the wait, account 0 may send again.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (status, v) = call(addr, "eth_sendRawTransaction", json!([signed(KEY0, 2)])).await;
    assert_eq!(status, 200, "{v}");
}

/// Whether `node` knows the transaction (pending or mined).
async fn knows(node: SocketAddr, hash: &str) -> bool {
    let (_, v) = call(node, "eth_getTransactionByHash", json!([hash])).await;
    v["result"].is_object()
}

fn group_config(nodes: &[SocketAddr], multicall: bool) -> String {
    let mut text = "[server]\nlisten = \"127.0.0.1:0\"\n".to_owned();
    for (i, n) in nodes.iter().enumerate() {
        text += &format!("[backends.n{i}]\nurl = \"http://{n}\"\n");
    }
    text +=
        &format!("[groups.main]\nmembers = [\"n0\", \"n1\", \"n2\"]\nmulticall = {multicall}\n");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multicast_transaction_reaches_every_node_and_a_plain_one_reaches_one() {
    let nodes: Vec<_> = (0..3).map(|_| start_anvil()).collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|(_, a)| *a).collect();

    let (_multi, multi) = start_proxy_config(&group_config(&addrs, true));
    let raw = signed(KEY0, 0);
    let (status, v) = call(multi, "eth_sendRawTransaction", json!([raw])).await;
    assert_eq!(status, 200, "{v}");
    let hash = v["result"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    // Each node got it (anvil mines at once); the others may still be
    // answering when the client has its hash.
    let deadline = Instant::now() + Duration::from_secs(10);
    for node in &addrs {
        while !knows(*node, &hash).await {
            assert!(Instant::now() < deadline, "{node} never got {hash}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Sent again: every node has it mined, none accepts it; the client
    // gets one answer, a node's error, not a hang.
    let (_, again) = call(multi, "eth_sendRawTransaction", json!([raw])).await;
    assert!(again["error"]["message"].is_string(), "{again}");

    // Without multicall, the next transaction reaches the first node only.
    let (_plain, plain) = start_proxy_config(&group_config(&addrs, false));
    let (_, v) = call(plain, "eth_sendRawTransaction", json!([signed(KEY0, 1)])).await;
    let hash = v["result"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen = Vec::new();
    for node in &addrs {
        seen.push(knows(*node, &hash).await);
    }
    assert_eq!(seen, vec![true, false, false]);
}
