//! Parsers for the values chain facts are made of (hex quantities, hashes,
//! block objects), shared by every crate that reads answers. Which method is
//! what lives in [`protocol`](crate::protocol).

/// A JSON-RPC hex quantity (`"0x1b4"`) as a number; `None` for anything
/// else (no `0x`, no digits, more than 64 bits).
///
/// ```
/// use rpc_core::methods::hex_quantity;
/// assert_eq!(hex_quantity("0x1b4"), Some(436));
/// assert_eq!(hex_quantity("0x"), None);
/// assert_eq!(hex_quantity("12"), None);
/// ```
pub fn hex_quantity(text: &str) -> Option<u64> {
    let digits = text.strip_prefix("0x")?;
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// The 64-bit fingerprint of a `0x`-prefixed hash (its first eight bytes),
/// as [`HeadBlock`](crate::HeadBlock) carries it; `None` unless the text is
/// `0x` and at least 16 hex digits.
///
/// ```
/// use rpc_core::methods::hash_fingerprint;
/// let h = "0x88e96d4537bea4d9c05d12549907b32561d3bf31f45aae734cdc119f13406cb6";
/// assert_eq!(hash_fingerprint(h), Some(0x88e96d4537bea4d9));
/// assert_eq!(hash_fingerprint("0x1234"), None);
/// ```
pub fn hash_fingerprint(hash: &str) -> Option<u64> {
    let digits = hash.strip_prefix("0x")?;
    let head = digits.get(..16)?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(head, 16).ok()
}

/// The number, hash and parent hash of an Ethereum block object (an
/// `eth_getBlockByNumber` / `eth_getBlockByHash` result, raw JSON), as a
/// [`HeadBlock`](crate::HeadBlock); `None` for `null` and anything that is
/// not a block.
///
/// ```
/// use rpc_core::methods::ethereum_block;
/// let block = br#"{"number":"0x10","hash":"0x00000000000000aa11","parentHash":"0x00000000000000bb22","transactions":[]}"#;
/// let b = ethereum_block(block).unwrap();
/// assert_eq!((b.number, b.hash, b.parent), (16, 0xaa, 0xbb));
/// assert!(ethereum_block(b"null").is_none());
/// ```
pub fn ethereum_block(result: &[u8]) -> Option<crate::HeadBlock> {
    #[derive(serde::Deserialize)]
    struct Block<'a> {
        #[serde(borrow)]
        number: Option<&'a str>,
        #[serde(borrow)]
        hash: Option<&'a str>,
        #[serde(rename = "parentHash", borrow)]
        parent_hash: Option<&'a str>,
    }
    let b: Block<'_> = serde_json::from_slice(result).ok()?;
    Some(crate::HeadBlock {
        number: hex_quantity(b.number?)?,
        hash: hash_fingerprint(b.hash?)?,
        parent: b.parent_hash.and_then(hash_fingerprint).unwrap_or(0),
    })
}
