//! Header verification cost: mines a synthetic regtest chain of N headers
//! (default 1 000 000), then connects it to a `HeaderChain` in chunks of
//! 2 016 (as the verifier fetches them) and reports the time, the rate, the
//! memory the chain holds, and the cost of one merkle-proof check.
//!
//! `cargo run --release -p rpc-bench --bin header-sync -- [N]`

use std::time::Instant;

use rpc_electrum::chain::{
    hash_to_hex, hash_value, sha256d, target_from_bits, verify_merkle, ChainParams, Hash, Header,
    HeaderChain,
};

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let bits = 0x207f_ffff;
    let target = target_from_bits(bits).expect("regtest bits");
    let params = ChainParams::bitcoin_regtest();

    let started = Instant::now();
    let mut headers = Vec::with_capacity(n as usize);
    let mut prev: Hash = params.checkpoint.hash;
    for height in 1..=n {
        let mut raw = [0u8; 80];
        raw[0..4].copy_from_slice(&0x2000_0000u32.to_le_bytes());
        raw[4..36].copy_from_slice(&prev);
        raw[36..68].copy_from_slice(&sha256d(&height.to_le_bytes()));
        raw[68..72].copy_from_slice(&(1_700_000_000 + 600 * height).to_le_bytes());
        raw[72..76].copy_from_slice(&bits.to_le_bytes());
        for nonce in 0u32.. {
            raw[76..80].copy_from_slice(&nonce.to_le_bytes());
            if hash_value(&sha256d(&raw)) <= target {
                break;
            }
        }
        let h = Header::from_bytes(raw);
        prev = h.hash();
        headers.push(h);
    }
    println!(
        "mined {n} regtest headers in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let mut chain = HeaderChain::new(params);
    let started = Instant::now();
    for (i, chunk) in headers.chunks(2016).enumerate() {
        chain
            .connect(1 + (i * 2016) as u32, chunk)
            .expect("a valid chain connects");
    }
    let took = started.elapsed().as_secs_f64();
    assert_eq!(chain.tip_height(), n);
    println!(
        "verified and connected {n} headers in {took:.2} s ({:.0} headers/s, {:.2} µs each): linkage, bits, target limit, proof of work",
        f64::from(n) / took,
        took * 1e6 / f64::from(n)
    );
    println!(
        "chain memory: {} bytes a header, {:.1} MB for {n}",
        std::mem::size_of::<Header>(),
        (std::mem::size_of::<Header>() as f64 * f64::from(n)) / 1e6
    );

    // One confirmation: a 12-level branch (a block of up to 4 096 txs).
    let txid = sha256d(b"tx");
    let mut node = txid;
    let mut branch = Vec::new();
    for level in 0..12u8 {
        let sibling = sha256d(&[level]);
        branch.push(hash_to_hex(&sibling));
        node = sha256d(&[node, sibling].concat());
    }
    let refs: Vec<&str> = branch.iter().map(String::as_str).collect();
    let rounds = 100_000;
    let started = Instant::now();
    for _ in 0..rounds {
        verify_merkle(&txid, 0, &refs, &node).expect("valid proof");
    }
    println!(
        "merkle proof check (12 levels, with the inner-node and duplicate guards): {:.2} µs",
        started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
    );
}
