//! `GET /v1/tx/{txid}`'s view of a raw Bitcoin (or Bitcoin Cash)
//! transaction: version, inputs, outputs, lock time, size, and the txid
//! recomputed from the bytes (parsing and hashing are
//! [`rpc_electrum::tx`]'s).

use rpc_electrum::chain::hash_to_hex;
use rpc_electrum::tx::{Transaction, TxError};
use serde_json::{json, Value};

/// Lower-case hex of bytes.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Raw bytes from hex (whitespace around it allowed).
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    rpc_electrum::chain::hex_bytes(text.trim())
}

/// The transaction as JSON (txid as explorers print it).
pub fn decode(raw: &[u8]) -> Result<Value, TxError> {
    let t = Transaction::parse(raw)?;
    let inputs: Vec<Value> = t
        .inputs
        .iter()
        .map(|i| {
            json!({
                "txid": hash_to_hex(&i.prev_txid),
                "vout": i.vout,
                "script_sig": hex(i.script_sig),
                "sequence": i.sequence,
                "coinbase": i.is_coinbase(),
            })
        })
        .collect();
    let outputs: Vec<Value> = t
        .outputs
        .iter()
        .enumerate()
        .map(|(n, o)| {
            json!({
                "n": n,
                "value": o.value,
                "script_pubkey": hex(o.script_pubkey),
                "scripthash": rpc_electrum::address::script_to_scripthash(o.script_pubkey),
            })
        })
        .collect();
    Ok(json!({
        "txid": hash_to_hex(&t.txid()),
        "version": t.version,
        "size": raw.len(),
        "segwit": t.segwit,
        "lock_time": t.lock_time,
        "inputs": inputs,
        "outputs": outputs,
        "total_output_value": t.total_output_value(),
    }))
}

/// Whether `text` is a txid: 64 hex digits.
pub fn is_txid(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Version 2, one input (prev `aa..aa`:7, empty scriptSig), one output of
    /// 1000 sat to OP_TRUE, lock time 0 (the bytes `rpc_electrum::tx`'s
    /// tests build).
    fn legacy() -> Vec<u8> {
        let hex = format!(
            "0200000001{}0700000000ffffffff01e80300000000000001{}00000000",
            "aa".repeat(32),
            "51"
        );
        from_hex(&hex).expect("hex")
    }

    #[test]
    fn decodes_a_legacy_transaction() {
        let v = decode(&legacy()).expect("decodes");
        assert_eq!(v["version"], 2);
        assert_eq!(v["segwit"], false);
        assert_eq!(v["inputs"][0]["vout"], 7);
        assert_eq!(v["inputs"][0]["txid"], "aa".repeat(32));
        assert_eq!(v["outputs"][0]["script_pubkey"], "51");
        assert_eq!(v["outputs"][0]["value"], 1000);
        assert_eq!(v["size"], legacy().len());
        assert!(is_txid(v["txid"].as_str().expect("txid")));
    }

    #[test]
    fn refuses_what_is_not_hex_or_a_transaction() {
        // (rpc_electrum::tx tests the parser itself.)
        let mut raw = legacy();
        raw.push(0);
        assert_eq!(decode(&raw), Err(TxError("trailing bytes")));
        assert!(from_hex("abc").is_none());
        assert!(from_hex("zz").is_none());
        assert!(!is_txid("12"));
    }
}
