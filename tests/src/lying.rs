//! An in-repo Electrum server that can lie: it serves a small regtest
//! chain whose blocks hold real (made-up) transactions paying one address,
//! with honest headers, proofs, histories, balances and transactions —
//! until told to lie in one of the ways a real ElectrumX cannot be made to
//! ([`Lie`]). Used to prove that the verified pool and the shipped gateway
//! catch every lie and still answer correctly from the honest servers.

use std::sync::{Arc, Mutex};

use rpc_electrum::chain::{
    hash_to_hex, hash_value, sha256d, target_from_bits, ChainParams, Hash, Header,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Regtest's fixed bits.
const BITS: u32 = 0x207f_ffff;

/// The address every payment goes to (regtest P2PKH; the harness's A).
pub const LIE_ADDRESS: &str = "myxkh5cD5UFyCRdMv6btddc3AY3Zwg5zjm";

/// How a [`LyingElectrum`] lies (it answers honestly otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lie {
    /// Honest.
    None,
    /// Reports a tip one block higher whose header misses its target.
    TipWithoutWork,
    /// Serves a valid branch from three blocks below the tip with less
    /// work (its tip one block lower than the real one).
    LessWorkFork,
    /// Merkle proofs with a made-up sibling.
    FakeMerkleProof,
    /// Lists an extra confirmed "transaction" in the address's history: the
    /// first half of a 64-byte transaction that is the merkle tree's
    /// leaves in the [`LyingChain::ambiguous_height`] block; its proof's
    /// inner node reads as a transaction (CVE-2017-12842).
    InnerNodeAsTransaction,
    /// Proves the last transaction of the three-transaction block
    /// ([`LyingChain::odd_height`]) at the position of its duplicate
    /// (CVE-2012-2459).
    DuplicatedLastNode,
    /// `blockchain.transaction.get` answers with another transaction.
    FakeTransaction,
    /// A balance one coin higher and an extra unspent output.
    FakeBalance,
    /// Reports a tip three blocks lower (it rolled back).
    Rollback,
    /// `blockchain.block.header(h, cp_height)` proofs with a made-up
    /// branch (they do not lead to the checkpoint's root).
    FakeCheckpointProof,
}

/// A block: its header, its transactions' ids (the merkle leaves) and raw
/// transactions by id.
#[derive(Clone)]
pub struct LyingBlock {
    /// Its header.
    pub header: Header,
    /// Its transactions' ids, in order (the merkle tree's leaves).
    pub leaves: Vec<Hash>,
}

/// The chain every [`LyingElectrum`] serves (index 0 = height 1).
#[derive(Clone)]
pub struct LyingChain {
    /// The blocks.
    pub blocks: Vec<LyingBlock>,
    /// Raw transactions by id (payments and coinbases).
    pub txs: Vec<(Hash, Vec<u8>)>,
    /// The payments to [`LIE_ADDRESS`]: txid, height, value.
    pub payments: Vec<(Hash, u32, u64)>,
    /// The height of the block whose two leaves are a 64-byte transaction.
    pub ambiguous_height: u32,
    /// The height of the block with three transactions (the last one paying
    /// the address).
    pub odd_height: u32,
    /// The less-work branch [`Lie::LessWorkFork`] serves (from
    /// `len - 2`).
    pub fork: Vec<LyingBlock>,
    /// A transaction that is not any of the chain's.
    pub stranger: Vec<u8>,
}

/// A transaction spending a made-up outpoint (`tag`) to `script`.
fn payment(tag: u32, script: &[u8], value: u64) -> Vec<u8> {
    let mut tx = 2u32.to_le_bytes().to_vec();
    tx.push(1);
    tx.extend_from_slice(&sha256d(&tag.to_le_bytes()));
    tx.extend_from_slice(&0u32.to_le_bytes());
    tx.push(0);
    tx.extend_from_slice(&u32::MAX.to_le_bytes());
    tx.push(1);
    tx.extend_from_slice(&value.to_le_bytes());
    tx.push(script.len() as u8);
    tx.extend_from_slice(script);
    tx.extend_from_slice(&0u32.to_le_bytes());
    tx
}

/// The merkle root of `leaves` (Bitcoin's: an odd level repeats its last).
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        if level.len() % 2 == 1 {
            level.push(*level.last().expect("non-empty"));
        }
        level = level
            .chunks(2)
            .map(|p| sha256d(&[p[0], p[1]].concat()))
            .collect();
    }
    level[0]
}

/// The merkle branch of leaf `pos` (hex, as Electrum sends it).
pub fn merkle_branch(leaves: &[Hash], pos: usize) -> Vec<String> {
    let mut level = leaves.to_vec();
    let mut pos = pos;
    let mut branch = Vec::new();
    while level.len() > 1 {
        if level.len() % 2 == 1 {
            level.push(*level.last().expect("non-empty"));
        }
        branch.push(hash_to_hex(&level[pos ^ 1]));
        level = level
            .chunks(2)
            .map(|p| sha256d(&[p[0], p[1]].concat()))
            .collect();
        pos /= 2;
    }
    branch
}

/// Mines a regtest block on `prev` committing to `leaves`; `valid` false
/// finds a nonce whose hash misses the target.
pub fn mine_block(prev: Hash, time: u32, leaves: Vec<Hash>, valid: bool) -> LyingBlock {
    let target = target_from_bits(BITS).expect("bits");
    let mut raw = [0u8; 80];
    raw[0..4].copy_from_slice(&0x2000_0000u32.to_le_bytes());
    raw[4..36].copy_from_slice(&prev);
    raw[36..68].copy_from_slice(&merkle_root(&leaves));
    raw[68..72].copy_from_slice(&time.to_le_bytes());
    raw[72..76].copy_from_slice(&BITS.to_le_bytes());
    for nonce in 0u32.. {
        raw[76..80].copy_from_slice(&nonce.to_le_bytes());
        if (hash_value(&sha256d(&raw)) <= target) == valid {
            break;
        }
    }
    LyingBlock {
        header: Header::from_bytes(raw),
        leaves,
    }
}

impl LyingChain {
    /// Twelve blocks on regtest's genesis: blocks 2 to 6 pay the address
    /// 1..5 coins, block 8 has three transactions (the last pays 0.5), and
    /// block 9's two leaves are the halves of a 64-byte transaction.
    pub fn new() -> LyingChain {
        let script = rpc_electrum::address::script_pubkey(
            LIE_ADDRESS,
            rpc_electrum::address::Network::Regtest,
        )
        .expect("regtest address");
        let (ambiguous_height, odd_height) = (9u32, 8u32);
        let mut prev = ChainParams::bitcoin_regtest().genesis;
        let (mut blocks, mut txs, mut payments) = (Vec::new(), Vec::new(), Vec::new());
        for h in 1..=12u32 {
            let coinbase = payment(1_000_000 + h, &[0x51], 5_000_000_000);
            let cb_id = rpc_electrum::tx::txid(&coinbase).expect("tx");
            txs.push((cb_id, coinbase));
            let mut leaves = vec![cb_id];
            if (2..=6).contains(&h) || h == odd_height {
                if h == odd_height {
                    let other = payment(2_000_000 + h, &[0x51], 1_000);
                    let id = rpc_electrum::tx::txid(&other).expect("tx");
                    txs.push((id, other));
                    leaves.push(id);
                }
                let value = if h == odd_height {
                    50_000_000
                } else {
                    u64::from(h - 1) * 100_000_000
                };
                let pay = payment(h, &script, value);
                let id = rpc_electrum::tx::txid(&pay).expect("tx");
                txs.push((id, pay));
                leaves.push(id);
                payments.push((id, h, value));
            }
            if h == ambiguous_height {
                // Version 1, one input, one output with a 4-byte script,
                // lock time 0: exactly 64 bytes, halved into two leaves.
                let mut t64 = 1u32.to_le_bytes().to_vec();
                t64.push(1);
                t64.extend_from_slice(&[0x77; 36]);
                t64.push(0);
                t64.extend_from_slice(&u32::MAX.to_le_bytes());
                t64.push(1);
                t64.extend_from_slice(&100_000_000u64.to_le_bytes());
                t64.extend_from_slice(&[4, 0x51, 0x51, 0x51, 0x51]);
                t64.extend_from_slice(&0u32.to_le_bytes());
                assert_eq!(t64.len(), 64);
                let mut l0 = [0u8; 32];
                let mut l1 = [0u8; 32];
                l0.copy_from_slice(&t64[..32]);
                l1.copy_from_slice(&t64[32..]);
                leaves = vec![l0, l1];
            }
            let b = mine_block(prev, 1_700_000_000 + 600 * h, leaves, true);
            prev = b.header.hash();
            blocks.push(b);
        }
        // A branch from height 10 (on block 9) with two blocks: tip 11.
        let mut fork = Vec::new();
        let mut fprev = blocks[8].header.hash();
        for h in 10..=11u32 {
            let cb = sha256d(&[h.to_le_bytes(), [9; 4]].concat());
            let b = mine_block(fprev, 1_700_000_001 + 600 * h, vec![cb], true);
            fprev = b.header.hash();
            fork.push(b);
        }
        LyingChain {
            blocks,
            txs,
            payments,
            ambiguous_height,
            odd_height,
            fork,
            stranger: payment(9_999, &script, 7),
        }
    }

    /// The tip's height.
    pub fn tip(&self) -> u32 {
        self.blocks.len() as u32
    }

    /// The merkle root of the block hashes from genesis to `height` (what
    /// a checkpoint at `height` is configured with).
    pub fn root_at(&self, height: u32) -> Hash {
        let mut leaves = vec![ChainParams::bitcoin_regtest().genesis];
        leaves.extend(
            self.blocks[..height as usize]
                .iter()
                .map(|b| b.header.hash()),
        );
        merkle_root(&leaves)
    }

    /// The address's confirmed balance.
    pub fn balance(&self) -> u64 {
        self.payments.iter().map(|p| p.2).sum()
    }
}

impl Default for LyingChain {
    fn default() -> Self {
        Self::new()
    }
}

/// A running lying server.
pub struct LyingElectrum {
    /// `tcp://127.0.0.1:PORT`.
    pub url: String,
    lie: Arc<Mutex<Lie>>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl LyingElectrum {
    /// Starts a server for `chain` telling `lie`.
    pub async fn start(chain: Arc<LyingChain>, lie: Lie) -> LyingElectrum {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("tcp://{}", listener.local_addr().expect("addr"));
        let lie = Arc::new(Mutex::new(lie));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (told, log) = (lie.clone(), calls.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (chain, lie, log) = (chain.clone(), told.clone(), log.clone());
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let Ok(v) = serde_json::from_str::<Value>(&line) else {
                            continue;
                        };
                        let lie = *lie.lock().expect("lock");
                        if let (Some(m), Ok(mut log)) = (v["method"].as_str(), log.lock()) {
                            log.push(m.to_owned());
                        }
                        let out = match answer(&chain, lie, &v) {
                            Ok(result) => {
                                json!({"jsonrpc": "2.0", "id": v["id"], "result": result})
                            }
                            Err(message) => json!({
                                "jsonrpc": "2.0",
                                "id": v["id"],
                                "error": {"code": 1, "message": message},
                            }),
                        };
                        let text = format!("{out}\n");
                        if w.write_all(text.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        LyingElectrum { url, lie, calls }
    }

    /// How many calls of `method` the server has answered (`""`: all).
    pub fn calls(&self, method: &str) -> usize {
        let log = self.calls.lock().expect("lock");
        log.iter()
            .filter(|m| method.is_empty() || *m == method)
            .count()
    }

    /// Lies `lie` from now on.
    pub fn set(&self, lie: Lie) {
        *self.lock() = lie;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lie> {
        self.lie.lock().expect("lock")
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The headers this server serves by height (1-based): the chain, or the
/// lie's version of it.
fn served_headers(chain: &LyingChain, lie: Lie) -> Vec<Header> {
    let mut headers: Vec<Header> = chain.blocks.iter().map(|b| b.header).collect();
    match lie {
        Lie::TipWithoutWork => {
            let last = headers.last().expect("tip").hash();
            headers.push(mine_block(last, 1_800_000_000, vec![[5; 32]], false).header);
        }
        Lie::LessWorkFork => {
            headers.truncate(9);
            headers.extend(chain.fork.iter().map(|b| b.header));
        }
        Lie::Rollback => {
            headers.truncate(headers.len() - 3);
        }
        _ => {}
    }
    headers
}

fn answer(chain: &LyingChain, lie: Lie, v: &Value) -> Result<Value, String> {
    let p = &v["params"];
    let headers = served_headers(chain, lie);
    let tip = headers.len() as u32;
    let sh =
        rpc_electrum::address::scripthash(LIE_ADDRESS, rpc_electrum::address::Network::Regtest)
            .expect("address");
    let txid_param = || p[0].as_str().and_then(rpc_electrum::chain::hash_from_hex);
    Ok(match v["method"].as_str().unwrap_or("") {
        "server.version" => json!(["lying-electrum 1.0", "1.4"]),
        "server.ping" => Value::Null,
        "server.features" => json!({
            "genesis_hash": hash_to_hex(&ChainParams::bitcoin_regtest().genesis),
            "protocol_min": "1.4",
            "protocol_max": "1.4",
            "hash_function": "sha256",
        }),
        "blockchain.headers.subscribe" => {
            json!({"height": tip, "hex": hex(headers[tip as usize - 1].as_bytes())})
        }
        "blockchain.block.header" if p[1].is_u64() => {
            // A header with its proof against the root of the block hashes
            // from genesis to cp_height.
            let h = p[0].as_u64().unwrap_or(0) as usize;
            let cp = p[1].as_u64().unwrap_or(0) as usize;
            if h == 0 || h > cp || cp > headers.len() {
                return Err(format!("height {h} / cp_height {cp} out of range"));
            }
            let mut leaves = vec![ChainParams::bitcoin_regtest().genesis];
            leaves.extend(headers[..cp].iter().map(Header::hash));
            let mut branch = merkle_branch(&leaves, h);
            if lie == Lie::FakeCheckpointProof {
                branch[0] = hash_to_hex(&sha256d(b"made up"));
            }
            json!({
                "header": hex(headers[h - 1].as_bytes()),
                "root": hash_to_hex(&merkle_root(&leaves)),
                "branch": branch,
            })
        }
        "blockchain.block.header" => {
            let h = p[0].as_u64().unwrap_or(0) as usize;
            match headers.get(h.wrapping_sub(1)) {
                Some(header) => json!(hex(header.as_bytes())),
                None if h == 0 => return Err("genesis not served".into()),
                None => return Err(format!("height {h} out of range")),
            }
        }
        "blockchain.block.headers" => {
            let start = p[0].as_u64().unwrap_or(0) as usize;
            let count = p[1].as_u64().unwrap_or(0).min(2016) as usize;
            let slice: Vec<&Header> = headers
                .iter()
                .skip(start.saturating_sub(1))
                .take(count)
                .collect();
            let text: String = slice.iter().map(|h| hex(h.as_bytes())).collect();
            json!({"count": slice.len(), "hex": text, "max": 2016})
        }
        "blockchain.scripthash.subscribe" => Value::Null,
        "blockchain.scripthash.unsubscribe" => json!(true),
        "blockchain.scripthash.get_mempool" => json!([]),
        "blockchain.scripthash.get_history" if p[0] == sh.as_str() => {
            let mut items: Vec<Value> = chain
                .payments
                .iter()
                .filter(|(_, h, _)| *h <= tip)
                .map(|(id, h, _)| json!({"tx_hash": hash_to_hex(id), "height": h}))
                .collect();
            if lie == Lie::InnerNodeAsTransaction {
                let b = &chain.blocks[chain.ambiguous_height as usize - 1];
                items.push(
                    json!({"tx_hash": hash_to_hex(&b.leaves[0]), "height": chain.ambiguous_height}),
                );
            }
            json!(items)
        }
        "blockchain.scripthash.get_history" => json!([]),
        "blockchain.scripthash.get_balance" if p[0] == sh.as_str() => {
            let extra = if lie == Lie::FakeBalance {
                100_000_000
            } else {
                0
            };
            json!({"confirmed": chain.balance() + extra, "unconfirmed": 0})
        }
        "blockchain.scripthash.get_balance" => json!({"confirmed": 0, "unconfirmed": 0}),
        "blockchain.scripthash.listunspent" if p[0] == sh.as_str() => {
            let mut items: Vec<Value> = chain
                .payments
                .iter()
                .map(|(id, h, value)| json!({"tx_hash": hash_to_hex(id), "tx_pos": 0, "height": h, "value": value}))
                .collect();
            if lie == Lie::FakeBalance {
                items.push(json!({"tx_hash": hash_to_hex(&[0x42; 32]), "tx_pos": 0, "height": 3, "value": 100_000_000}));
            }
            json!(items)
        }
        "blockchain.scripthash.listunspent" => json!([]),
        "blockchain.transaction.get" => {
            let want = txid_param().ok_or("bad txid")?;
            let raw = chain
                .txs
                .iter()
                .find(|(id, _)| *id == want)
                .map(|(_, raw)| raw.clone())
                .ok_or_else(|| "No such mempool or blockchain transaction".to_owned())?;
            let raw = if lie == Lie::FakeTransaction {
                chain.stranger.clone()
            } else {
                raw
            };
            if p[1] == true {
                json!({"hex": hex(&raw), "txid": p[0]})
            } else {
                json!(hex(&raw))
            }
        }
        "blockchain.transaction.get_merkle" => {
            let want = txid_param().ok_or("bad txid")?;
            let height = p[1].as_u64().unwrap_or(0) as u32;
            let block = chain
                .blocks
                .get((height as usize).wrapping_sub(1))
                .filter(|_| height <= tip)
                .ok_or("no such block")?;
            let pos = block
                .leaves
                .iter()
                .position(|l| *l == want)
                .ok_or("tx not in block")?;
            let mut branch = merkle_branch(&block.leaves, pos);
            let mut pos = pos;
            match lie {
                Lie::FakeMerkleProof => branch[0] = hash_to_hex(&sha256d(b"made up")),
                Lie::DuplicatedLastNode if height == chain.odd_height && pos == 2 => {
                    // The duplicate's position: its sibling is itself.
                    pos = 3;
                    branch[0] = hash_to_hex(&block.leaves[2]);
                }
                _ => {}
            }
            json!({"block_height": height, "merkle": branch, "pos": pos})
        }
        "blockchain.estimatefee" => json!(0.0001),
        "blockchain.relayfee" => json!(0.00001),
        other => return Err(format!("unknown method {other}")),
    })
}
