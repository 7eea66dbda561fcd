//! Raw Bitcoin (and Bitcoin Cash) transactions: parsed without copying,
//! with the txid computed as the chain does (segwit transactions hash
//! without their marker, flag and witnesses).
//!
//! Used to check that a server's `blockchain.transaction.get` answer is
//! the transaction asked for, by the merkle-proof check (an inner node that
//! reads as a transaction is CVE-2017-12842), and by the gateway's decoder.
//!
//! ```
//! use rpc_electrum::tx::Transaction;
//! // Version 1, one input (a coinbase), one output of 50 BTC, lock time 0.
//! let raw = rpc_electrum::chain::hex_bytes(concat!(
//!     "01000000010000000000000000000000000000000000000000000000000000000000000000",
//!     "ffffffff0100ffffffff0100f2052a010000000151",
//!     "00000000",
//! ))
//! .unwrap();
//! let tx = Transaction::parse(&raw).unwrap();
//! assert!(tx.inputs[0].is_coinbase());
//! assert_eq!(tx.outputs[0].value, 5_000_000_000);
//! assert_eq!(tx.outputs[0].script_pubkey, &[0x51]);
//! assert_eq!(tx.txid(), rpc_electrum::chain::sha256d(&raw));
//! ```

use crate::chain::Hash;

/// Why bytes are not a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a transaction: {0}")]
pub struct TxError(pub &'static str);

/// One input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxIn<'a> {
    /// The spent output's transaction (internal byte order).
    pub prev_txid: Hash,
    /// The spent output's index.
    pub vout: u32,
    /// The unlocking script.
    pub script_sig: &'a [u8],
    /// The sequence number.
    pub sequence: u32,
}

impl TxIn<'_> {
    /// Whether this is a coinbase input (no previous output).
    pub fn is_coinbase(&self) -> bool {
        self.prev_txid == [0; 32] && self.vout == u32::MAX
    }
}

/// One output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxOut<'a> {
    /// Its value in satoshis.
    pub value: u64,
    /// The locking script.
    pub script_pubkey: &'a [u8],
}

/// A transaction, borrowing its scripts from the raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction<'a> {
    /// The version field.
    pub version: u32,
    /// Whether it was serialised with witnesses (BIP 144).
    pub segwit: bool,
    /// Its inputs.
    pub inputs: Vec<TxIn<'a>>,
    /// Its outputs.
    pub outputs: Vec<TxOut<'a>>,
    /// The lock time.
    pub lock_time: u32,
    txid: Hash,
}

impl<'a> Transaction<'a> {
    /// Parses a whole transaction (trailing bytes are an error). Counts are
    /// checked against the bytes left before anything is allocated, so a
    /// hostile count cannot reserve memory.
    pub fn parse(raw: &'a [u8]) -> Result<Self, TxError> {
        let mut r = Reader { bytes: raw, at: 0 };
        let version = r.u32()?;
        let segwit = raw.get(4) == Some(&0) && raw.get(5) == Some(&1);
        if segwit {
            r.take(2)?;
        }
        let body_start = r.at;
        let n_in = r.count(41)?;
        let mut inputs = Vec::with_capacity(n_in);
        for _ in 0..n_in {
            let mut prev_txid = [0u8; 32];
            prev_txid.copy_from_slice(r.take(32)?);
            let vout = r.u32()?;
            let len = r.count(1)?;
            let script_sig = r.take(len)?;
            let sequence = r.u32()?;
            inputs.push(TxIn {
                prev_txid,
                vout,
                script_sig,
                sequence,
            });
        }
        let n_out = r.count(9)?;
        let mut outputs = Vec::with_capacity(n_out);
        for _ in 0..n_out {
            let value = r.u64()?;
            let len = r.count(1)?;
            let script_pubkey = r.take(len)?;
            outputs.push(TxOut {
                value,
                script_pubkey,
            });
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
            return Err(TxError("trailing bytes"));
        }
        let txid = if segwit {
            // Version, inputs and outputs, lock time: the legacy bytes.
            let mut first = ring::digest::Context::new(&ring::digest::SHA256);
            first.update(&raw[..4]);
            first.update(&raw[body_start..body_end]);
            first.update(&lock_time.to_le_bytes());
            let once = first.finish();
            let twice = ring::digest::digest(&ring::digest::SHA256, once.as_ref());
            let mut out = [0u8; 32];
            out.copy_from_slice(twice.as_ref());
            out
        } else {
            crate::chain::sha256d(raw)
        };
        Ok(Transaction {
            version,
            segwit,
            inputs,
            outputs,
            lock_time,
            txid,
        })
    }

    /// Its txid (internal byte order; [`hash_to_hex`](crate::chain::hash_to_hex)
    /// prints it as explorers do).
    pub fn txid(&self) -> Hash {
        self.txid
    }

    /// The sum of its outputs' values (saturating).
    pub fn total_output_value(&self) -> u64 {
        self.outputs
            .iter()
            .fold(0u64, |sum, o| sum.saturating_add(o.value))
    }
}

/// The txid of raw transaction bytes.
pub fn txid(raw: &[u8]) -> Result<Hash, TxError> {
    Transaction::parse(raw).map(|t| t.txid)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TxError> {
        let end = self.at.checked_add(n).ok_or(TxError("length overflow"))?;
        let slice = self.bytes.get(self.at..end).ok_or(TxError("truncated"))?;
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32, TxError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, TxError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn varint(&mut self) -> Result<u64, TxError> {
        Ok(match self.take(1)?[0] {
            0xfd => {
                let b = self.take(2)?;
                u64::from(u16::from_le_bytes([b[0], b[1]]))
            }
            0xfe => u64::from(self.u32()?),
            0xff => self.u64()?,
            n => u64::from(n),
        })
    }

    /// A count of items at least `min_item` bytes each, refused when the
    /// bytes left cannot hold them.
    fn count(&mut self, min_item: usize) -> Result<usize, TxError> {
        let n = usize::try_from(self.varint()?).map_err(|_| TxError("count too large"))?;
        if n.saturating_mul(min_item.max(1)) > self.bytes.len() - self.at {
            return Err(TxError("count larger than the transaction"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::hex_bytes;

    /// Version 2, one input (prev `aa..aa`:7, empty scriptSig), one output
    /// of 1000 sat to OP_TRUE, lock time 0.
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
    fn parses_a_legacy_transaction() {
        let raw = legacy();
        let t = Transaction::parse(&raw).expect("parses");
        assert_eq!((t.version, t.segwit, t.lock_time), (2, false, 0));
        assert_eq!(t.inputs[0].prev_txid, [0xaa; 32]);
        assert_eq!(t.inputs[0].vout, 7);
        assert!(!t.inputs[0].is_coinbase());
        assert_eq!(t.outputs[0].script_pubkey, &[0x51]);
        assert_eq!(t.total_output_value(), 1000);
        assert_eq!(t.txid(), crate::chain::sha256d(&raw));
    }

    #[test]
    fn the_witness_is_not_part_of_the_txid() {
        let plain = legacy();
        let mut segwit = plain[..4].to_vec();
        segwit.extend_from_slice(&[0, 1]);
        segwit.extend_from_slice(&plain[4..plain.len() - 4]);
        segwit.extend_from_slice(&[1, 2, 0xde, 0xad]); // one witness item
        segwit.extend_from_slice(&0u32.to_le_bytes());
        let t = Transaction::parse(&segwit).expect("segwit");
        assert!(t.segwit);
        assert_eq!(t.txid(), txid(&plain).expect("legacy"));
        assert_ne!(t.txid(), crate::chain::sha256d(&segwit));
    }

    #[test]
    fn refuses_garbage_without_panicking_or_allocating_for_it() {
        for bad in [
            "",
            "00",
            "0200000001",
            "02000000ff",
            "0200000001fdffff",
            // A count of 2^64 - 1 inputs in a few bytes.
            "02000000ffffffffffffffffff00",
        ] {
            let raw = hex_bytes(bad).expect("hex");
            assert!(Transaction::parse(&raw).is_err(), "{bad}");
        }
        let mut raw = legacy();
        raw.push(0);
        assert_eq!(
            Transaction::parse(&raw).map(|t| t.txid()),
            Err(TxError("trailing bytes"))
        );
    }
}
