//! The pool's verified chain against in-repo Electrum servers that lie in
//! ways a real ElectrumX cannot be made to: a tip without proof of work, a
//! branch with less work, a fake merkle proof, a tip they cannot serve.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpc_core::{Id, Request};
use rpc_electrum::chain::{
    hash_to_hex, hash_value, sha256d, target_from_bits, ChainParams, ChainVerifier, Hash, Header,
    Verdict, VerifyError,
};
use rpc_electrum::ElectrumBackend;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tower::ServiceExt;

const REGTEST_BITS: u32 = 0x207f_ffff;

/// A block: its header and its two transactions' ids.
#[derive(Clone)]
struct Block {
    header: Header,
    txids: [Hash; 2],
}

/// Mines a regtest block on `prev` whose merkle root commits to two txids
/// derived from `tag`.
fn mine(prev: Hash, time: u32, tag: u32, valid_pow: bool) -> Block {
    let txids = [
        sha256d(&[tag.to_le_bytes(), [0; 4]].concat()),
        sha256d(&[tag.to_le_bytes(), [1; 4]].concat()),
    ];
    let root = sha256d(&[txids[0], txids[1]].concat());
    let target = target_from_bits(REGTEST_BITS).expect("bits");
    let mut raw = [0u8; 80];
    raw[0..4].copy_from_slice(&0x2000_0000u32.to_le_bytes());
    raw[4..36].copy_from_slice(&prev);
    raw[36..68].copy_from_slice(&root);
    raw[68..72].copy_from_slice(&time.to_le_bytes());
    raw[72..76].copy_from_slice(&REGTEST_BITS.to_le_bytes());
    for nonce in 0u32.. {
        raw[76..80].copy_from_slice(&nonce.to_le_bytes());
        if (hash_value(&sha256d(&raw)) <= target) == valid_pow {
            break;
        }
    }
    Block {
        header: Header::from_bytes(raw),
        txids,
    }
}

/// `n` blocks on `prev` (heights from `first`).
fn blocks(prev: Hash, first: u32, n: u32, tag: u32) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut prev = prev;
    for h in first..first + n {
        let b = mine(prev, 1_700_000_000 + 600 * h, tag * 10_000 + h, true);
        prev = b.header.hash();
        out.push(b);
    }
    out
}

fn genesis() -> Hash {
    ChainParams::bitcoin_regtest().checkpoint.hash
}

/// What a stub server serves: its chain (index 0 = height 1) and whether
/// its merkle proofs are honest.
#[derive(Clone)]
struct Served {
    chain: Vec<Block>,
    honest_proofs: bool,
}

/// A stub Electrum server; `set` changes what it serves and announces the
/// new tip to connected clients.
struct Stub {
    url: String,
    served: Arc<Mutex<Served>>,
    tips: broadcast::Sender<String>,
}

impl Stub {
    async fn start(chain: Vec<Block>, honest_proofs: bool) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("tcp://{}", listener.local_addr().expect("addr"));
        let served = Arc::new(Mutex::new(Served {
            chain,
            honest_proofs,
        }));
        let (tips, _) = broadcast::channel(16);
        let (s, t) = (served.clone(), tips.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (served, mut tips) = (s.clone(), t.subscribe());
                tokio::spawn(async move {
                    let (r, w) = stream.into_split();
                    let w = Arc::new(tokio::sync::Mutex::new(w));
                    let notify = w.clone();
                    tokio::spawn(async move {
                        while let Ok(tip) = tips.recv().await {
                            let line = format!(
                                "{{\"jsonrpc\":\"2.0\",\"method\":\"blockchain.headers.subscribe\",\"params\":[{tip}]}}\n"
                            );
                            let _ = notify.lock().await.write_all(line.as_bytes()).await;
                        }
                    });
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let Ok(v) = serde_json::from_str::<Value>(&line) else {
                            continue;
                        };
                        let result = answer(&served.lock().expect("lock"), &v);
                        let out = format!(
                            "{}\n",
                            json!({"jsonrpc": "2.0", "id": v["id"], "result": result})
                        );
                        let _ = w.lock().await.write_all(out.as_bytes()).await;
                    }
                });
            }
        });
        Stub { url, served, tips }
    }

    /// Serves `chain` from now on and announces its tip.
    fn set(&self, chain: Vec<Block>) {
        let tip = {
            let mut s = self.served.lock().expect("lock");
            s.chain = chain;
            tip_json(&s.chain)
        };
        let _ = self.tips.send(tip.to_string());
    }
}

fn tip_json(chain: &[Block]) -> Value {
    let last = chain.last().expect("a chain");
    json!({"height": chain.len(), "hex": hex(last.header.as_bytes())})
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn answer(s: &Served, v: &Value) -> Value {
    let p = &v["params"];
    match v["method"].as_str().unwrap_or("") {
        "server.version" => json!(["stub-verify 1.0", "1.4"]),
        "server.ping" => Value::Null,
        "blockchain.headers.subscribe" => tip_json(&s.chain),
        "blockchain.block.headers" => {
            let start = p[0].as_u64().unwrap_or(0) as usize;
            let count = p[1].as_u64().unwrap_or(0) as usize;
            let slice: Vec<&Block> = s
                .chain
                .iter()
                .skip(start.saturating_sub(1))
                .take(count)
                .collect();
            let text: String = slice.iter().map(|b| hex(b.header.as_bytes())).collect();
            json!({"count": slice.len(), "hex": text, "max": 2016})
        }
        "blockchain.transaction.get_merkle" => {
            let txid = p[0].as_str().unwrap_or("");
            let height = p[1].as_u64().unwrap_or(0) as usize;
            let Some(block) = s.chain.get(height.wrapping_sub(1)) else {
                return Value::Null;
            };
            let pos = block
                .txids
                .iter()
                .position(|t| hash_to_hex(t) == txid)
                .unwrap_or(0);
            let sibling = if s.honest_proofs {
                block.txids[pos ^ 1]
            } else {
                sha256d(b"made up")
            };
            json!({"block_height": height, "merkle": [hash_to_hex(&sibling)], "pos": pos})
        }
        _ => Value::Null,
    }
}

fn backend(name: &str, url: &str) -> ElectrumBackend {
    ElectrumBackend::builder(name, url)
        .request_timeout(Duration::from_secs(2))
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .build()
        .expect("backend")
}

/// Polls `cond` every 20 ms for at most 10 s.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn verdict(v: &ChainVerifier, name: &str) -> Verdict {
    v.servers()
        .into_iter()
        .find(|s| &*s.name == name)
        .map(|s| s.verdict)
        .expect("server")
}

async fn client_call(b: &ElectrumBackend) -> Result<(), String> {
    let req = Request::new("server.ping").with_id(Id::from(1u64));
    b.clone()
        .oneshot(req)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liars_leave_rotation_on_their_first_lie_and_honest_servers_agree() {
    let honest = blocks(genesis(), 1, 12, 1);
    // A tip at 13 whose header misses its target.
    let mut no_pow = honest.clone();
    no_pow.push(mine(honest[11].header.hash(), 1_700_100_000, 99, false));
    // A valid branch from 9 with less work (tip 10 < 12).
    let mut fork = honest[..8].to_vec();
    fork.extend(blocks(honest[7].header.hash(), 9, 2, 2));
    let stubs = [
        Stub::start(honest.clone(), true).await,
        Stub::start(honest.clone(), true).await,
        Stub::start(no_pow, true).await,
        Stub::start(fork, true).await,
    ];
    let names = ["a", "b", "no_pow", "fork"];
    let backends: Vec<ElectrumBackend> = names
        .iter()
        .zip(&stubs)
        .map(|(n, s)| backend(n, &s.url))
        .collect();
    let v = ChainVerifier::builder(ChainParams::bitcoin_regtest(), backends.clone())
        .fork_grace(Duration::from_millis(300))
        .build();
    v.start();

    until("the honest servers agree on 12", || {
        v.agreed_tip() == Some(12)
    })
    .await;
    until("the liar is found out", || {
        matches!(verdict(&v, "no_pow"), Verdict::Lied(_))
    })
    .await;
    let Verdict::Lied(why) = verdict(&v, "no_pow") else {
        unreachable!()
    };
    assert!(why.contains("proof of work"), "{why}");
    assert_eq!(v.tip_height(), 12, "the lie never became the chain");
    let err = client_call(&backends[2])
        .await
        .expect_err("a liar takes no calls");
    assert!(err.contains("not trusted"), "{err}");
    client_call(&backends[0])
        .await
        .expect("an honest server does");

    until("the fork is seen", || {
        matches!(verdict(&v, "fork"), Verdict::Fork { .. })
    })
    .await;
    until("the fork leaves rotation after its grace", || {
        backends[3].distrusted().is_some()
    })
    .await;
    assert_eq!(verdict(&v, "a"), Verdict::OnChain);

    // The chain grows: announced tips move the verified and agreed tips.
    let mut longer = honest.clone();
    longer.extend(blocks(honest[11].header.hash(), 13, 3, 1));
    stubs[0].set(longer.clone());
    until("a's new tip is verified", || v.tip_height() == 15).await;
    assert_eq!(v.agreed_tip(), Some(12), "one server is not an agreement");
    stubs[1].set(longer.clone());
    until("b agrees", || v.agreed_tip() == Some(15)).await;

    // The fork server joins the verified chain: trusted again.
    stubs[3].set(longer);
    until("the fork server is back", || {
        verdict(&v, "fork") == Verdict::OnChain
    })
    .await;
    assert!(backends[3].distrusted().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heavier_branch_reorganises_the_verified_chain() {
    let main = blocks(genesis(), 1, 10, 1);
    let stubs = [
        Stub::start(main.clone(), true).await,
        Stub::start(main.clone(), true).await,
    ];
    let backends: Vec<ElectrumBackend> = ["a", "b"]
        .iter()
        .zip(&stubs)
        .map(|(n, s)| backend(n, &s.url))
        .collect();
    let file = std::env::temp_dir().join(format!("rpc-verify-{}.headers", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let v = ChainVerifier::builder(ChainParams::bitcoin_regtest(), backends.clone())
        .header_file(&file)
        .build();
    v.start();
    until("synced", || v.agreed_tip() == Some(10)).await;
    // Both servers move to a branch from 8 that is two blocks longer.
    let mut heavier = main[..7].to_vec();
    heavier.extend(blocks(main[6].header.hash(), 8, 5, 3));
    let new_tip = heavier[11].header.hash();
    for s in &stubs {
        s.set(heavier.clone());
    }
    until("reorganised", || v.agreed_tip() == Some(12)).await;
    assert_eq!(v.header(12).map(|h| h.hash()), Some(new_tip));
    assert_eq!(v.header(7).map(|h| h.hash()), Some(main[6].header.hash()));
    assert_eq!(verdict(&v, "a"), Verdict::OnChain); // A verifier built on the same file starts with the reorganised
                                                    // chain, verified again, before any server is asked.
    let again = ChainVerifier::builder(ChainParams::bitcoin_regtest(), backends)
        .header_file(&file)
        .build();
    assert_eq!(again.tip_height(), 12);
    assert_eq!(again.header(12).map(|h| h.hash()), Some(new_tip));
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmations_are_checked_by_merkle_proof_against_verified_headers() {
    let chain = blocks(genesis(), 1, 6, 1);
    let stubs = [
        Stub::start(chain.clone(), true).await,
        Stub::start(chain.clone(), true).await,
        Stub::start(chain.clone(), false).await,
    ];
    let backends: Vec<ElectrumBackend> = ["a", "b", "bad_proofs"]
        .iter()
        .zip(&stubs)
        .map(|(n, s)| backend(n, &s.url))
        .collect();
    let v = ChainVerifier::builder(ChainParams::bitcoin_regtest(), backends.clone()).build();
    v.start();
    until("synced", || v.agreed_tip() == Some(6)).await;
    let txid = hash_to_hex(&chain[3].txids[1]);
    v.verify_tx(&backends[0], &txid, 4)
        .await
        .expect("a true confirmation verifies");
    // The same transaction claimed in another block: refused.
    assert!(matches!(
        v.verify_tx(&backends[0], &txid, 5).await,
        Err(VerifyError::Proof(_))
    ));
    // A server's made-up proof: refused.
    assert!(matches!(
        v.verify_tx(&backends[2], &txid, 4).await,
        Err(VerifyError::Proof(_))
    ));
    // Above the agreed tip there is nothing to check against.
    assert!(matches!(
        v.verify_tx(&backends[0], &txid, 7).await,
        Err(VerifyError::NoHeader(7))
    ));
    assert!(matches!(
        v.verify_tx(&backends[0], "zz", 4).await,
        Err(VerifyError::BadTxid)
    ));
}
