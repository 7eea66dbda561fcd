//! Decoding the basics of a raw Bitcoin (or Bitcoin Cash) transaction for
//! `GET /v1/tx/{txid}`: version, inputs, outputs, lock time, size, and the
//! txid recomputed from the bytes (so a server cannot hand back another
//! transaction than the one asked for).

use serde_json::{json, Value};

/// Why a transaction could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(DecodeError("length overflow"))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(DecodeError("truncated"))?;
        self.at = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn varint(&mut self) -> Result<u64, DecodeError> {
        Ok(match self.u8()? {
            0xfd => {
                let b = self.take(2)?;
                u64::from(u16::from_le_bytes([b[0], b[1]]))
            }
            0xfe => u64::from(self.u32()?),
            0xff => self.u64()?,
            n => u64::from(n),
        })
    }
    /// A count that must fit what is left (so a hostile count cannot make
    /// us allocate).
    fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        let left = self.bytes.len() - self.at;
        let n = usize::try_from(n).map_err(|_| DecodeError("count too large"))?;
        if n.saturating_mul(min_item.max(1)) > left {
            return Err(DecodeError("count larger than the transaction"));
        }
        Ok(n)
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// A hash as shown to people: byte-reversed hex.
fn display_hash(bytes: &[u8]) -> String {
    let mut b = bytes.to_vec();
    b.reverse();
    hex(&b)
}

/// Parses hex into bytes (surrounding whitespace ignored).
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    rpc_electrum::chain::hex_bytes(text.trim())
}

/// Decodes `raw` into a JSON summary, with its txid.
pub fn decode(raw: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader { bytes: raw, at: 0 };
    let version = r.u32()?;
    let mut segwit = false;
    // BIP144: marker 0x00, flag 0x01.
    if raw.get(4) == Some(&0) && raw.get(5) == Some(&1) {
        segwit = true;
        r.take(2)?;
    }
    let body_start = r.at;
    let n_in = r.count(41)?;
    let mut inputs = Vec::with_capacity(n_in);
    for _ in 0..n_in {
        let prev = r.take(32)?;
        let vout = r.u32()?;
        let script_len = r.count(1)?;
        let script = r.take(script_len)?;
        let sequence = r.u32()?;
        let coinbase = prev.iter().all(|&b| b == 0) && vout == u32::MAX;
        inputs.push(json!({
            "txid": display_hash(prev),
            "vout": vout,
            "script_sig": hex(script),
            "sequence": sequence,
            "coinbase": coinbase,
        }));
    }
    let n_out = r.count(9)?;
    let mut outputs = Vec::with_capacity(n_out);
    let mut total_out: u64 = 0;
    for n in 0..n_out {
        let value = r.u64()?;
        total_out = total_out.saturating_add(value);
        let script_len = r.count(1)?;
        let script = r.take(script_len)?;
        outputs.push(json!({
            "n": n,
            "value": value,
            "script_pubkey": hex(script),
            "scripthash": rpc_electrum::address::script_to_scripthash(script),
        }));
    }
    let body_end = r.at;
    if segwit {
        for _ in 0..n_in {
            let items = r.count(1)?;
            for _ in 0..items {
                let len = r.count(1)?;
                r.take(len)?;
            }
        }
    }
    let lock_time = r.u32()?;
    if r.at != raw.len() {
        return Err(DecodeError("trailing bytes"));
    }
    // The txid covers the transaction without its witness.
    let mut stripped = Vec::with_capacity(raw.len());
    stripped.extend_from_slice(&raw[..4]);
    stripped.extend_from_slice(&raw[body_start..body_end]);
    stripped.extend_from_slice(&lock_time.to_le_bytes());
    Ok(json!({
        "txid": rpc_electrum::chain::hash_to_hex(&rpc_electrum::chain::sha256d(&stripped)),
        "version": version,
        "size": raw.len(),
        "segwit": segwit,
        "lock_time": lock_time,
        "inputs": inputs,
        "outputs": outputs,
        "total_output_value": total_out,
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
    /// 1000 sat to OP_TRUE, lock time 0.
    fn legacy() -> Vec<u8> {
        let mut tx = 2u32.to_le_bytes().to_vec();
        tx.push(1);
        tx.extend_from_slice(&[0xaa; 32]);
        tx.extend_from_slice(&7u32.to_le_bytes());
        tx.push(0);
        tx.extend_from_slice(&u32::MAX.to_le_bytes());
        tx.push(1);
        tx.extend_from_slice(&1000u64.to_le_bytes());
        tx.extend_from_slice(&[1, 0x51]);
        tx.extend_from_slice(&0u32.to_le_bytes());
        tx
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
    fn the_witness_is_not_part_of_the_txid() {
        let plain = legacy();
        let mut segwit = plain[..4].to_vec();
        segwit.extend_from_slice(&[0, 1]);
        segwit.extend_from_slice(&plain[4..plain.len() - 4]);
        segwit.extend_from_slice(&[1, 2, 0xde, 0xad]); // one witness item
        segwit.extend_from_slice(&0u32.to_le_bytes());
        let a = decode(&plain).expect("legacy");
        let b = decode(&segwit).expect("segwit");
        assert_eq!(b["segwit"], true);
        assert_eq!(a["txid"], b["txid"]);
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        for bad in ["", "00", "0200000001", "02000000ff", "0200000001fdffff"] {
            let raw = from_hex(bad).expect("hex");
            assert!(decode(&raw).is_err(), "{bad}");
        }
        let mut raw = legacy();
        raw.push(0);
        assert_eq!(decode(&raw), Err(DecodeError("trailing bytes")));
        assert!(from_hex("abc").is_none());
        assert!(from_hex("zz").is_none());
        assert!(!is_txid("12"));
    }
}
