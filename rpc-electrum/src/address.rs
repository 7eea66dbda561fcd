//! Addresses to Electrum script hashes: base58 (P2PKH, P2SH; the `bs58`
//! crate), bech32 and bech32m (segwit v0 and v1+; the `bech32` crate), and
//! Bitcoin Cash cashaddr (P2PKH, P2SH with 20- or 32-byte hashes, and their
//! CashTokens-aware forms; written here: no maintained crate covers it).
//!
//! An Electrum server indexes outputs by *script hash*: the SHA-256 of the
//! output script, byte-reversed, in hex. Gateways take addresses; these
//! helpers turn one into the other, checking every checksum.
//!
//! ```
//! use rpc_electrum::address::{scripthash, Network};
//!
//! // The same regtest key hash as a legacy address and as a cashaddr.
//! let legacy = scripthash("myxkh5cD5UFyCRdMv6btddc3AY3Zwg5zjm", Network::Regtest)?;
//! let cash = scripthash("bchreg:qr99xe9h87llfuw7sperpt44ethul3882gzjpf4pht", Network::Regtest)?;
//! assert_eq!(legacy, cash);
//! assert_eq!(legacy, "3d4d2ea7c2eb16116423852a609a7dd47130c2fa9f099c1ae90610533f768ba8");
//! # Ok::<(), rpc_electrum::address::AddressError>(())
//! ```

use std::fmt::Write as _;

/// Which chain an address must belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// Bitcoin / Bitcoin Cash main network.
    Mainnet,
    /// Test networks (testnet3, testnet4, signet; `bchtest:`).
    Testnet,
    /// Regression test networks (`bcrt1`, `bchreg:`).
    Regtest,
}

/// Why an address was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// Not base58, bech32 or cashaddr, or a bad checksum.
    #[error("not a valid address: {0}")]
    Invalid(&'static str),
    /// Valid, but for another network.
    #[error("the address is for another network")]
    WrongNetwork,
}

/// The output script an address pays to.
pub fn script_pubkey(address: &str, network: Network) -> Result<Vec<u8>, AddressError> {
    let lower = address.to_ascii_lowercase();
    let cash_prefix = match network {
        Network::Mainnet => "bitcoincash",
        Network::Testnet => "bchtest",
        Network::Regtest => "bchreg",
    };
    if let Some((prefix, _)) = lower.split_once(':') {
        if ["bitcoincash", "bchtest", "bchreg"].contains(&prefix) {
            if prefix != cash_prefix {
                return Err(AddressError::WrongNetwork);
            }
            return cashaddr(address, &lower, prefix);
        }
        return Err(AddressError::Invalid("unknown prefix"));
    }
    let hrp = match network {
        Network::Mainnet => bech32::hrp::BC,
        Network::Testnet => bech32::hrp::TB,
        Network::Regtest => bech32::hrp::BCRT,
    };
    if let Some(pos) = lower.rfind('1') {
        if ["bc", "tb", "bcrt"].contains(&&lower[..pos]) {
            return segwit(address, hrp);
        }
    }
    // A bare cashaddr payload (no prefix) is common in BCH wallets.
    if lower.starts_with('q') || lower.starts_with('p') {
        if let Ok(script) = cashaddr(address, &format!("{cash_prefix}:{lower}"), cash_prefix) {
            return Ok(script);
        }
    }
    base58(address, network)
}

/// The Electrum script hash of an address (hex, as the protocol wants it).
pub fn scripthash(address: &str, network: Network) -> Result<String, AddressError> {
    Ok(script_to_scripthash(&script_pubkey(address, network)?))
}

/// The Electrum script hash of an output script: SHA-256, byte-reversed, hex.
pub fn script_to_scripthash(script: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, script);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref().iter().rev() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn p2pkh(hash: &[u8]) -> Vec<u8> {
    let mut s = vec![0x76, 0xa9, 0x14];
    s.extend_from_slice(hash);
    s.extend_from_slice(&[0x88, 0xac]);
    s
}

fn p2sh(hash: &[u8]) -> Vec<u8> {
    let mut s = vec![0xa9, 0x14];
    s.extend_from_slice(hash);
    s.push(0x87);
    s
}

/// `OP_HASH256 <32 bytes> OP_EQUAL` (Bitcoin Cash P2SH32).
fn p2sh32(hash: &[u8]) -> Vec<u8> {
    let mut s = vec![0xaa, 0x20];
    s.extend_from_slice(hash);
    s.push(0x87);
    s
}

// ---------------------------------------------------------------- base58

fn base58(address: &str, network: Network) -> Result<Vec<u8>, AddressError> {
    if address.is_empty() || address.len() > 64 {
        return Err(AddressError::Invalid("length"));
    }
    // Version byte + 20-byte hash, checksum verified and removed.
    let payload = bs58::decode(address)
        .with_check(None)
        .into_vec()
        .map_err(|e| match e {
            bs58::decode::Error::InvalidChecksum { .. } => AddressError::Invalid("base58 checksum"),
            _ => AddressError::Invalid("not base58"),
        })?;
    if payload.len() != 21 {
        return Err(AddressError::Invalid("not a 20-byte hash with a checksum"));
    }
    let (p2pkh_v, p2sh_v) = match network {
        Network::Mainnet => (0x00, 0x05),
        Network::Testnet | Network::Regtest => (0x6f, 0xc4),
    };
    match payload[0] {
        v if v == p2pkh_v => Ok(p2pkh(&payload[1..])),
        v if v == p2sh_v => Ok(p2sh(&payload[1..])),
        0x00 | 0x05 | 0x6f | 0xc4 => Err(AddressError::WrongNetwork),
        _ => Err(AddressError::Invalid("unknown version byte")),
    }
}

// ---------------------------------------------------------------- bech32

fn segwit(address: &str, network_hrp: bech32::Hrp) -> Result<Vec<u8>, AddressError> {
    use bech32::primitives::decode::{SegwitHrpstring, SegwitHrpstringError};
    // Checksum (bech32 for v0, bech32m for v1+), case, length, witness
    // version and program length are all checked by the crate.
    let parsed = SegwitHrpstring::new(address).map_err(|e| {
        AddressError::Invalid(match e {
            SegwitHrpstringError::Checksum(_) => "bech32 checksum",
            _ => "not a segwit address",
        })
    })?;
    if parsed.hrp() != network_hrp {
        return Err(AddressError::WrongNetwork);
    }
    let version = parsed.witness_version().to_u8();
    let program: Vec<u8> = parsed.byte_iter().collect();
    let op = if version == 0 { 0 } else { 0x50 + version };
    let mut script = vec![op, program.len() as u8];
    script.extend_from_slice(&program);
    Ok(script)
}

/// Regroups `from`-bit values into `to`-bit values (cashaddr's 5-bit
/// characters into bytes); `None` on out-of-range values or non-zero padding.
fn convert_bits(data: &[u8], from: u32, to: u32, pad: bool) -> Option<Vec<u8>> {
    let (mut acc, mut bits) = (0u32, 0u32);
    let maxv = (1u32 << to) - 1;
    let mut out = Vec::with_capacity(data.len() * from as usize / to as usize + 1);
    for &v in data {
        if u32::from(v) >> from != 0 {
            return None;
        }
        acc = (acc << from) | u32::from(v);
        bits += from;
        while bits >= to {
            bits -= to;
            out.push(((acc >> bits) & maxv) as u8);
        }
    }
    if pad {
        if bits > 0 {
            out.push(((acc << (to - bits)) & maxv) as u8);
        }
    } else if bits >= from || ((acc << (to - bits)) & maxv) != 0 {
        return None;
    }
    Some(out)
}

// ---------------------------------------------------------------- cashaddr

fn cashaddr_polymod(values: &[u8]) -> u64 {
    const GEN: [u64; 5] = [
        0x98_f2bc_8e61,
        0x79_b76d_99e2,
        0xf3_3e5f_b3c4,
        0xae_2eab_e2a8,
        0x1e_4f43_e470,
    ];
    let mut c: u64 = 1;
    for &d in values {
        let c0 = (c >> 35) as u8;
        c = ((c & 0x07_ffff_ffff) << 5) ^ u64::from(d);
        for (i, g) in GEN.iter().enumerate() {
            if (c0 >> i) & 1 == 1 {
                c ^= g;
            }
        }
    }
    c ^ 1
}

/// A cashaddr (`lower`: the address with its prefix, lower-cased;
/// `original`: as given, for the case rule). Types 0 / 1 are P2PKH / P2SH,
/// 2 / 3 the same with CashTokens; P2SH may hash 20 bytes (HASH160) or 32
/// (HASH256, "P2SH32").
fn cashaddr(original: &str, lower: &str, prefix: &str) -> Result<Vec<u8>, AddressError> {
    let invalid = AddressError::Invalid;
    if original.bytes().any(|b| b.is_ascii_lowercase())
        && original.bytes().any(|b| b.is_ascii_uppercase())
    {
        return Err(invalid("mixed case"));
    }
    let payload = &lower[prefix.len() + 1..];
    let data: Vec<u8> = payload
        .chars()
        .map(|c| bech32::Fe32::from_char(c).ok().map(|f| f.to_u8()))
        .collect::<Option<_>>()
        .ok_or(invalid("not cashaddr"))?;
    if data.len() < 9 {
        return Err(invalid("too short"));
    }
    let mut values: Vec<u8> = prefix.bytes().map(|b| b & 31).collect();
    values.push(0);
    values.extend_from_slice(&data);
    if cashaddr_polymod(&values) != 0 {
        return Err(invalid("cashaddr checksum"));
    }
    let bytes =
        convert_bits(&data[..data.len() - 8], 5, 8, false).ok_or(invalid("cashaddr payload"))?;
    let (&version, hash) = bytes.split_first().ok_or(invalid("cashaddr payload"))?;
    if version & 0x80 != 0 {
        return Err(invalid("cashaddr version"));
    }
    let size = match version & 0x07 {
        0 => 20,
        1 => 24,
        2 => 28,
        3 => 32,
        4 => 40,
        5 => 48,
        6 => 56,
        _ => 64,
    };
    if hash.len() != size {
        return Err(invalid("cashaddr hash length"));
    }
    match ((version >> 3) & 0x0f, size) {
        // P2PKH, plain or token-aware.
        (0 | 2, 20) => Ok(p2pkh(hash)),
        // P2SH, plain or token-aware.
        (1 | 3, 20) => Ok(p2sh(hash)),
        (1 | 3, 32) => Ok(p2sh32(hash)),
        (0..=3, _) => Err(invalid("cashaddr hash size for its type")),
        _ => Err(invalid("cashaddr type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn the_fixed_chains_address_a() {
        let want = "3d4d2ea7c2eb16116423852a609a7dd47130c2fa9f099c1ae90610533f768ba8";
        assert_eq!(
            scripthash("myxkh5cD5UFyCRdMv6btddc3AY3Zwg5zjm", Network::Regtest).as_deref(),
            Ok(want)
        );
        assert_eq!(
            scripthash(
                "bchreg:qr99xe9h87llfuw7sperpt44ethul3882gzjpf4pht",
                Network::Regtest
            )
            .as_deref(),
            Ok(want)
        );
        assert_eq!(
            scripthash(
                "qr99xe9h87llfuw7sperpt44ethul3882gzjpf4pht",
                Network::Regtest
            )
            .as_deref(),
            Ok(want)
        );
        assert_eq!(
            scripthash(
                "BCHREG:QR99XE9H87LLFUW7SPERPT44ETHUL3882GZJPF4PHT",
                Network::Regtest
            )
            .as_deref(),
            Ok(want)
        );
        assert_eq!(
            script_to_scripthash(&[0x51]),
            "6032c38c0bc0e91e726f1e55e1832e434509001a7aed5cfd881b6ef07215e84a"
        );
    }

    #[test]
    fn bip173_and_bip350_vectors() {
        let v0 = script_pubkey(
            "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
            Network::Mainnet,
        )
        .expect("v0");
        assert_eq!(hex(&v0), "0014751e76e8199196d454941c45d1b3a323f1433bd6");
        let v1 = script_pubkey(
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
            Network::Mainnet,
        )
        .expect("taproot");
        assert_eq!(
            hex(&v1),
            "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
        );
        // A v0 address with a bech32m checksum, and a v1 with bech32: refused.
        assert!(script_pubkey(
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",
            Network::Mainnet
        )
        .is_err());
        assert!(script_pubkey(
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",
            Network::Mainnet
        )
        .is_err());
        assert_eq!(
            script_pubkey(
                "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
                Network::Mainnet
            ),
            Err(AddressError::WrongNetwork)
        );
    }

    #[test]
    fn base58_vectors() {
        // The genesis coinbase address and a well-known P2SH.
        let p2pkh =
            script_pubkey("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", Network::Mainnet).expect("p2pkh");
        assert_eq!(
            hex(&p2pkh),
            "76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac"
        );
        let p2sh =
            script_pubkey("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", Network::Mainnet).expect("p2sh");
        assert_eq!(hex(&p2sh), "a914b472a266d0bd89c13706a4132ccfb16f7c3b9fcb87");
        assert_eq!(
            script_pubkey("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", Network::Mainnet),
            Err(AddressError::Invalid("base58 checksum"))
        );
        assert_eq!(
            script_pubkey("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", Network::Testnet),
            Err(AddressError::WrongNetwork)
        );
        assert!(script_pubkey("0OIl", Network::Mainnet).is_err());
        assert!(script_pubkey("", Network::Mainnet).is_err());
    }

    /// A cashaddr encoder for tests (checked against the spec's vectors
    /// below before it is trusted for others).
    fn encode_cashaddr(prefix: &str, version: u8, hash: &[u8]) -> String {
        let mut bytes = vec![version];
        bytes.extend_from_slice(hash);
        let data = convert_bits(&bytes, 8, 5, true).expect("bits");
        let mut values: Vec<u8> = prefix.bytes().map(|b| b & 31).collect();
        values.push(0);
        values.extend_from_slice(&data);
        values.extend_from_slice(&[0; 8]);
        let check = cashaddr_polymod(&values);
        let mut out = format!("{prefix}:");
        for &d in &data {
            out.push(bech32::Fe32::try_from(d).expect("5 bits").to_char());
        }
        for i in 0..8 {
            let d = ((check >> (5 * (7 - i))) & 31) as u8;
            out.push(bech32::Fe32::try_from(d).expect("5 bits").to_char());
        }
        out
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn cashaddr_sizes_tokens_and_case() {
        // The cashaddr spec's vectors (20- and 32-byte payloads).
        let h20 = unhex("f5bf48b397dae70be82b3cca4793f8eb2b6cdac9");
        let h32 = unhex("3173ef6623c6b48ffd1a3dcc0cc6489b0a07bb47a37f47cfef4fe69de825c060");
        let p2pkh20 = "bitcoincash:qr6m7j9njldwwzlg9v7v53unlr4jkmx6eylep8ekg2";
        assert_eq!(encode_cashaddr("bitcoincash", 0, &h20), p2pkh20);
        assert_eq!(
            script_pubkey(p2pkh20, Network::Mainnet).map(|s| hex(&s)),
            Ok(format!("76a914{}88ac", hex(&h20)))
        );
        let p2sh32 = "bchtest:pvch8mmxy0rtfrlarg7ucrxxfzds5pamg73h7370aa87d80gyhqxq7fqng6m6";
        assert_eq!(encode_cashaddr("bchtest", 0x0b, &h32), p2sh32);
        assert_eq!(
            script_pubkey(p2sh32, Network::Testnet).map(|s| hex(&s)),
            Ok(format!("aa20{}87", hex(&h32))),
            "P2SH32: OP_HASH256 <32> OP_EQUAL"
        );
        // A 32-byte P2PKH does not exist.
        assert!(script_pubkey(
            "bitcoincash:qvch8mmxy0rtfrlarg7ucrxxfzds5pamg73h7370aa87d80gyhqxq5nlegake",
            Network::Mainnet
        )
        .is_err());
        // CashTokens: token-aware addresses (types 2 and 3) pay to the same
        // scripts as plain ones (the CHIP's vector for type 2).
        let tokens_p2pkh = "bitcoincash:zr6m7j9njldwwzlg9v7v53unlr4jkmx6eycnjehshe";
        assert_eq!(encode_cashaddr("bitcoincash", 2 << 3, &h20), tokens_p2pkh);
        assert_eq!(
            script_pubkey(tokens_p2pkh, Network::Mainnet),
            script_pubkey(p2pkh20, Network::Mainnet)
        );
        let tokens_p2sh = encode_cashaddr("bitcoincash", 3 << 3, &h20);
        assert!(tokens_p2sh.starts_with("bitcoincash:r"), "{tokens_p2sh}");
        assert_eq!(
            script_pubkey(&tokens_p2sh, Network::Mainnet),
            script_pubkey(
                &encode_cashaddr("bitcoincash", 1 << 3, &h20),
                Network::Mainnet
            )
        );
        let tokens_p2sh32 = encode_cashaddr("bitcoincash", (3 << 3) | 3, &h32);
        assert_eq!(
            script_pubkey(&tokens_p2sh32, Network::Mainnet).map(|s| hex(&s)),
            Ok(format!("aa20{}87", hex(&h32)))
        );
        // Unknown types and a size that does not match the payload: refused.
        assert!(script_pubkey(
            &encode_cashaddr("bitcoincash", 4 << 3, &h20),
            Network::Mainnet
        )
        .is_err());
        assert!(script_pubkey(&encode_cashaddr("bitcoincash", 3, &h20), Network::Mainnet).is_err());
        // One case or the other, never both (the checksum is over lower case).
        assert_eq!(
            script_pubkey(&p2pkh20.to_ascii_uppercase(), Network::Mainnet),
            script_pubkey(p2pkh20, Network::Mainnet)
        );
        assert_eq!(
            script_pubkey(
                "bitcoincash:Qr6m7j9njldwwzlg9v7v53unlr4jkmx6eylep8ekg2",
                Network::Mainnet
            ),
            Err(AddressError::Invalid("mixed case"))
        );
        assert_eq!(
            script_pubkey(
                "BITCOINCASH:qr6m7j9njldwwzlg9v7v53unlr4jkmx6eylep8ekg2",
                Network::Mainnet
            ),
            Err(AddressError::Invalid("mixed case"))
        );
    }

    #[test]
    fn cashaddr_vectors() {
        // The same hash as 1BpEi6DfDAUFd7GtittLSdBeYJvcoaVggu.
        let a = script_pubkey(
            "bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a",
            Network::Mainnet,
        )
        .expect("cashaddr");
        let b =
            script_pubkey("1BpEi6DfDAUFd7GtittLSdBeYJvcoaVggu", Network::Mainnet).expect("legacy");
        assert_eq!(a, b);
        assert!(script_pubkey(
            "bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6b",
            Network::Mainnet
        )
        .is_err());
        assert_eq!(
            script_pubkey(
                "bchtest:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a",
                Network::Mainnet
            ),
            Err(AddressError::WrongNetwork)
        );
    }
}
