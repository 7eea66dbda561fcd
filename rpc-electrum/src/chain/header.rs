//! Block headers: the 80 bytes, their hash, their target and their work.

use std::fmt;

use ruint::aliases::U256;

/// A block header: 80 bytes (version, previous block hash, merkle root,
/// time, bits, nonce), as the Electrum protocol serves it in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header([u8; 80]);

/// A block or transaction hash in internal byte order (the reverse of how
/// explorers and the Electrum protocol print it).
pub type Hash = [u8; 32];

/// Double SHA-256.
pub fn sha256d(bytes: &[u8]) -> Hash {
    let once = ring::digest::digest(&ring::digest::SHA256, bytes);
    let twice = ring::digest::digest(&ring::digest::SHA256, once.as_ref());
    let mut out = [0u8; 32];
    out.copy_from_slice(twice.as_ref());
    out
}

/// A hash as the protocol prints it (byte-reversed hex).
pub fn hash_to_hex(hash: &Hash) -> String {
    let mut out = String::with_capacity(64);
    for b in hash.iter().rev() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A printed hash (byte-reversed hex, 64 digits) in internal byte order.
pub fn hash_from_hex(text: &str) -> Option<Hash> {
    let bytes = hex_bytes(text)?;
    let mut out: Hash = bytes.try_into().ok()?;
    out.reverse();
    Some(out)
}

/// Hex to bytes; `None` unless every pair is hex.
pub fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Header {
    /// The header in these 80 bytes.
    pub fn from_bytes(bytes: [u8; 80]) -> Self {
        Header(bytes)
    }

    /// The header in 160 hex digits; `None` for anything else.
    pub fn from_hex(text: &str) -> Option<Self> {
        Some(Header(hex_bytes(text)?.try_into().ok()?))
    }

    /// The 80 bytes.
    pub fn as_bytes(&self) -> &[u8; 80] {
        &self.0
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]])
    }

    fn hash_at(&self, at: usize) -> Hash {
        let mut h = [0u8; 32];
        h.copy_from_slice(&self.0[at..at + 32]);
        h
    }

    /// The block version.
    pub fn version(&self) -> u32 {
        self.u32_at(0)
    }

    /// The previous block's hash.
    pub fn prev(&self) -> Hash {
        self.hash_at(4)
    }

    /// The root of the block's transaction merkle tree.
    pub fn merkle_root(&self) -> Hash {
        self.hash_at(36)
    }

    /// The block time (seconds since 1970).
    pub fn time(&self) -> u32 {
        self.u32_at(68)
    }

    /// The target in compact form.
    pub fn bits(&self) -> u32 {
        self.u32_at(72)
    }

    /// The nonce.
    pub fn nonce(&self) -> u32 {
        self.u32_at(76)
    }

    /// The block hash (double SHA-256 of the 80 bytes).
    pub fn hash(&self) -> Hash {
        sha256d(&self.0)
    }

    /// Whether the hash meets the target its own `bits` state (and the
    /// target is valid).
    pub fn meets_own_target(&self) -> bool {
        target_from_bits(self.bits()).is_some_and(|t| hash_value(&self.hash()) <= t)
    }
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Header")
            .field("hash", &hash_to_hex(&self.hash()))
            .field("prev", &hash_to_hex(&self.prev()))
            .field("time", &self.time())
            .field("bits", &format_args!("{:#010x}", self.bits()))
            .finish()
    }
}

/// A hash as the 256-bit number proof of work compares (little-endian).
pub fn hash_value(hash: &Hash) -> U256 {
    U256::from_le_bytes(*hash)
}

/// The target a compact `bits` value stands for; `None` for a negative,
/// zero or overflowing one (consensus refuses those).
pub fn target_from_bits(bits: u32) -> Option<U256> {
    let exponent = bits >> 24;
    let mantissa = bits & 0x007f_ffff;
    if bits & 0x0080_0000 != 0 || mantissa == 0 {
        return None;
    }
    let m = U256::from(mantissa);
    if exponent <= 3 {
        let t = m >> (8 * (3 - exponent) as usize);
        return (t != U256::ZERO).then_some(t);
    }
    let shift = 8 * (exponent as usize - 3);
    // Overflow: the mantissa's top byte would leave the 256 bits.
    let top_bits = 256 - m.leading_zeros();
    if shift + top_bits > 256 {
        return None;
    }
    Some(m << shift)
}

/// The compact form of a target (the smallest exponent that holds it).
pub fn bits_from_target(target: U256) -> u32 {
    let bytes = (256 - target.leading_zeros()).div_ceil(8) as u32;
    let mut mantissa: u32 = if bytes <= 3 {
        (target.to::<u64>() << (8 * (3 - bytes))) as u32
    } else {
        (target >> (8 * (bytes as usize - 3))).to::<u64>() as u32
    };
    let mut exponent = bytes;
    // The mantissa's sign bit must stay clear.
    if mantissa & 0x0080_0000 != 0 {
        mantissa >>= 8;
        exponent += 1;
    }
    (exponent << 24) | mantissa
}

/// The expected number of hashes to meet `target`: 2²⁵⁶ / (target + 1).
pub fn work(target: U256) -> U256 {
    // (2^256 - 1 - target) / (target + 1) + 1, which fits in 256 bits.
    let not_target = !target;
    not_target / (target + U256::from(1u8)) + U256::from(1u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Bitcoin genesis block's header.
    const GENESIS: &str = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";

    #[test]
    fn genesis_hashes_and_meets_its_target() {
        let h = Header::from_hex(GENESIS).expect("80 bytes");
        assert_eq!(
            hash_to_hex(&h.hash()),
            "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
        );
        assert_eq!(h.bits(), 0x1d00ffff);
        assert_eq!(h.time(), 1231006505);
        assert_eq!(h.prev(), [0u8; 32]);
        assert!(h.meets_own_target());
        let mut tampered = *h.as_bytes();
        tampered[76] ^= 1; // another nonce
        assert!(!Header::from_bytes(tampered).meets_own_target());
    }

    #[test]
    fn compact_targets_round_trip_and_refuse_bad_forms() {
        for bits in [0x1d00ffff, 0x207fffff, 0x1b0404cb, 0x1804dafe, 0x03123456] {
            let t = target_from_bits(bits).expect("valid");
            assert_eq!(bits_from_target(t), bits, "{bits:#x}");
        }
        assert_eq!(
            target_from_bits(0x1d00ffff),
            Some(U256::from(0xffffu64) << 208)
        );
        assert_eq!(target_from_bits(0x04923456), None, "negative");
        assert_eq!(target_from_bits(0x21010000), None, "overflow");
        assert_eq!(target_from_bits(0x1d000000), None, "zero");
    }

    #[test]
    fn work_is_two_to_the_256_over_target_plus_one() {
        // Difficulty-1 work is 2^32 + 2^16 + 1 ish: 0x100010001.
        let t = target_from_bits(0x1d00ffff).expect("valid");
        assert_eq!(work(t), U256::from(0x1_0001_0001u64));
        // Regtest's target is about 2^255: two hashes on average.
        assert_eq!(
            work(target_from_bits(0x207fffff).expect("valid")),
            U256::from(2u8)
        );
    }
}
