//! Addresses to Electrum script hashes: base58 (P2PKH, P2SH), bech32 and
//! bech32m (segwit v0 and v1+), and Bitcoin Cash cashaddr.
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
            return cashaddr(&lower, prefix);
        }
        return Err(AddressError::Invalid("unknown prefix"));
    }
    let hrp = match network {
        Network::Mainnet => "bc",
        Network::Testnet => "tb",
        Network::Regtest => "bcrt",
    };
    if let Some(pos) = lower.rfind('1') {
        let candidate = &lower[..pos];
        if ["bc", "tb", "bcrt"].contains(&candidate) {
            if candidate != hrp {
                return Err(AddressError::WrongNetwork);
            }
            return segwit(address, hrp);
        }
    }
    // A bare cashaddr payload (no prefix) is common in BCH wallets.
    if lower.starts_with('q') || lower.starts_with('p') {
        if let Ok(script) = cashaddr(&format!("{cash_prefix}:{lower}"), cash_prefix) {
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

// ---------------------------------------------------------------- base58

const BASE58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

fn base58(address: &str, network: Network) -> Result<Vec<u8>, AddressError> {
    if address.is_empty() || address.len() > 64 {
        return Err(AddressError::Invalid("length"));
    }
    let mut bytes: Vec<u8> = Vec::with_capacity(32);
    for c in address.bytes() {
        let mut carry = BASE58
            .iter()
            .position(|&b| b == c)
            .ok_or(AddressError::Invalid("not base58"))? as u32;
        for b in bytes.iter_mut().rev() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = address.bytes().take_while(|&c| c == b'1').count();
    let mut full = vec![0u8; zeros];
    full.extend_from_slice(&bytes);
    if full.len() != 25 {
        return Err(AddressError::Invalid("not a 20-byte hash with a checksum"));
    }
    let (payload, check) = full.split_at(21);
    let once = ring::digest::digest(&ring::digest::SHA256, payload);
    let twice = ring::digest::digest(&ring::digest::SHA256, once.as_ref());
    if &twice.as_ref()[..4] != check {
        return Err(AddressError::Invalid("base58 checksum"));
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

const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

fn bech32_polymod(values: &[u8]) -> u32 {
    const GEN: [u32; 5] = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
    let mut chk: u32 = 1;
    for &v in values {
        let top = chk >> 25;
        chk = ((chk & 0x1ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

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

fn segwit(address: &str, hrp: &str) -> Result<Vec<u8>, AddressError> {
    let invalid = AddressError::Invalid;
    if address.len() > 90 {
        return Err(invalid("length"));
    }
    let has_lower = address.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = address.bytes().any(|b| b.is_ascii_uppercase());
    if has_lower && has_upper {
        return Err(invalid("mixed case"));
    }
    let lower = address.to_ascii_lowercase();
    let data_part = &lower[hrp.len() + 1..];
    if data_part.len() < 6 {
        return Err(invalid("too short"));
    }
    let data: Vec<u8> = data_part
        .bytes()
        .map(|c| CHARSET.iter().position(|&x| x == c).map(|p| p as u8))
        .collect::<Option<_>>()
        .ok_or(invalid("not bech32"))?;
    let mut values: Vec<u8> = hrp.bytes().map(|b| b >> 5).collect();
    values.push(0);
    values.extend(hrp.bytes().map(|b| b & 31));
    values.extend_from_slice(&data);
    let check = bech32_polymod(&values);
    let (payload, _) = data.split_at(data.len() - 6);
    let version = *payload.first().ok_or(invalid("no witness version"))?;
    // BIP173 (bech32) for v0, BIP350 (bech32m) for v1+.
    let want = if version == 0 { 1 } else { 0x2bc8_30a3 };
    if check != want {
        return Err(invalid("bech32 checksum"));
    }
    if version > 16 {
        return Err(invalid("witness version"));
    }
    let program = convert_bits(&payload[1..], 5, 8, false).ok_or(invalid("witness program"))?;
    if program.len() < 2
        || program.len() > 40
        || (version == 0 && program.len() != 20 && program.len() != 32)
    {
        return Err(invalid("witness program length"));
    }
    let op = if version == 0 { 0 } else { 0x50 + version };
    let mut script = vec![op, program.len() as u8];
    script.extend_from_slice(&program);
    Ok(script)
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

fn cashaddr(lower: &str, prefix: &str) -> Result<Vec<u8>, AddressError> {
    let invalid = AddressError::Invalid;
    let payload = &lower[prefix.len() + 1..];
    let data: Vec<u8> = payload
        .bytes()
        .map(|c| CHARSET.iter().position(|&x| x == c).map(|p| p as u8))
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
    let (version, hash) = bytes.split_first().ok_or(invalid("cashaddr payload"))?;
    if hash.len() != 20 {
        return Err(invalid("only 160-bit cashaddr hashes are supported"));
    }
    match version >> 3 {
        0 => Ok(p2pkh(hash)),
        1 => Ok(p2sh(hash)),
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
