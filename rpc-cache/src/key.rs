//! Cache keys: the method and the params, normalised so that formatting does
//! not cause misses.

use std::cell::RefCell;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::io::Write as _;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

/// A cache key: the method name and the call's params in a canonical form
/// (no whitespace, object keys sorted, hex strings lowercased when the rule
/// set says hex case is meaningless). The id is never part of it.
///
/// ```
/// use rpc_cache::CacheKey;
/// use rpc_core::{RawJson, Request};
///
/// let a = Request::new("eth_getBalance").with_params(RawJson::from_static(
///     r#"["0xAbC0000000000000000000000000000000000001", {"blockNumber": "0x1", "requireCanonical": true}]"#,
/// )?);
/// let b = Request::new("eth_getBalance").with_params(RawJson::from_static(
///     r#"[ "0xabc0000000000000000000000000000000000001",{"requireCanonical":true,"blockNumber":"0x1"} ]"#,
/// )?);
/// assert_eq!(CacheKey::for_request(&a, true), CacheKey::for_request(&b, true));
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// The key is hashed once, when made (SipHash with a per-process random
/// key, so clients cannot aim keys at one bucket), and every map that holds
/// keys reuses that hash: a call's key is looked up in a shard, the
/// in-flight map and the LRU without being hashed again.
///
/// Its bytes are shared, not copied, by its clones (the store, the
/// in-flight table and the call each hold one).
#[derive(Clone)]
pub struct CacheKey {
    bytes: Arc<[u8]>,
    hash: u64,
    /// How many of `bytes` are the method and params, before the scope (a
    /// tip epoch or a settled generation), so that the key can be scoped
    /// again without parsing the params again.
    base: usize,
    /// Whether the key means the same to every process (not scoped by
    /// this process' own tip epoch or a settled generation after a
    /// reorganisation): only such keys go to a store shared by replicas.
    fleet: bool,
}

/// What a key is scoped by, after its method and params.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Nothing: answers kept forever, the same in every process.
    Unscoped,
    /// This process' tip epoch: answers that follow the chain tip.
    Epoch(u64),
    /// The settled generation: answers about blocks taken as permanent.
    Settled(u64),
}

impl Scope {
    /// The separator written before the scope's number, and the number.
    fn suffix(self) -> Option<(u8, u64)> {
        match self {
            Scope::Unscoped => None,
            Scope::Epoch(n) => Some((b'\n', n)),
            Scope::Settled(n) => Some((b'\r', n)),
        }
    }

    /// Whether a key in this scope means the same in every process: not
    /// one scoped by this process' own head moves and writes, nor by a
    /// settled generation this process counted after a reorganisation.
    fn fleet_wide(self) -> bool {
        match self {
            Scope::Unscoped | Scope::Settled(0) => true,
            Scope::Epoch(_) | Scope::Settled(_) => false,
        }
    }
}

/// Scratch space keys are written into before they get their exact-size
/// allocation (one allocation per key, whatever the params' shape). A
/// buffer per thread because keys are made on every worker; one grown past
/// [`SCRATCH_KEEP`] by a huge key is not kept.
const SCRATCH_KEEP: usize = 16 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `write` on an empty scratch buffer and returns the key made of what
/// it wrote, with `base` bytes before the scope.
fn with_scratch(
    base_hint: usize,
    write: impl FnOnce(&mut Vec<u8>) -> usize,
    scope: Scope,
) -> CacheKey {
    let finish = |buf: &mut Vec<u8>| {
        buf.clear();
        buf.reserve(base_hint + 21);
        let base = write(buf);
        if let Some((separator, n)) = scope.suffix() {
            buf.push(separator);
            let _ = write!(buf, "{n}");
        }
        CacheKey {
            hash: hash_of(buf),
            bytes: Arc::from(&buf[..]),
            base,
            fleet: scope.fleet_wide(),
        }
    };
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            let key = finish(&mut buf);
            if buf.capacity() > SCRATCH_KEEP {
                *buf = Vec::new();
            }
            key
        }
        // Not reached (keys are not made while one is being made); a
        // buffer of its own then.
        Err(_) => finish(&mut Vec::new()),
    })
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.bytes == other.bytes
    }
}

impl Eq for CacheKey {}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The hasher of maps keyed by [`CacheKey`]: the key's own hash, as is.
#[derive(Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `CacheKey`; anything else still hashes.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Builds [`KeyHasher`]s.
pub(crate) type KeyHash = BuildHasherDefault<KeyHasher>;

fn hash_of(bytes: &[u8]) -> u64 {
    static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    KEY.get_or_init(Default::default).hash_one(bytes)
}

impl CacheKey {
    /// The key of `request`, or `None` when its params cannot be normalised
    /// safely (not JSON, nested too deeply, holding a number that is not an
    /// exact integer, whose text could not be kept, or an object with a
    /// duplicated key: the backend may read another value than the key
    /// would, so such calls are never cached).
    pub fn for_request(request: &rpc_core::Request, lowercase_hex: bool) -> Option<CacheKey> {
        let params = parse_params(request)?;
        Some(Self::from_parts(
            request.method(),
            &params,
            lowercase_hex,
            Scope::Unscoped,
        ))
    }

    /// The key of a call to `method` with `params` (parsed by
    /// [`parse_params`]), within `scope`.
    pub(crate) fn from_parts(
        method: &str,
        params: &Value,
        lowercase_hex: bool,
        scope: Scope,
    ) -> CacheKey {
        with_scratch(
            method.len() + 64,
            |out| {
                out.extend_from_slice(method.as_bytes());
                out.push(b'\n');
                write_canonical(params, lowercase_hex, out);
                out.len()
            },
            scope,
        )
    }

    /// The same method and params within `scope` instead (an answer kept in
    /// the tip epoch it turned out to be fresh for).
    pub(crate) fn rescoped(&self, scope: Scope) -> CacheKey {
        let base = &self.bytes[..self.base];
        with_scratch(
            base.len(),
            |out| {
                out.extend_from_slice(base);
                out.len()
            },
            scope,
        )
    }

    /// The hash every map of keys uses (computed once, with the key).
    pub(crate) fn hash_value(&self) -> u64 {
        self.hash
    }

    /// Whether the key means the same in every process, so a store shared
    /// by replicas may hold it: false for keys scoped by this process' tip
    /// epoch (answers that follow the chain tip: each replica counts its own
    /// head moves) or by a settled generation after a deep reorganisation.
    pub fn is_fleet_wide(&self) -> bool {
        self.fleet
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The key's size in bytes, for memory accounting.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the key is empty (never, for a key built from a request).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({:?})", String::from_utf8_lossy(&self.bytes))
    }
}

/// The params as a tree (absent params are `[]`), or `None` when they cannot
/// be keyed exactly.
pub(crate) fn parse_params(request: &rpc_core::Request) -> Option<Value> {
    let params = match request.params() {
        None => Value::Array(Vec::new()),
        Some(raw) => serde_json::from_slice::<Strict>(raw.as_bytes()).ok()?.0,
    };
    exact(&params).then_some(params)
}

/// A JSON value that refuses objects with a duplicated key (serde_json's
/// `Value` keeps the last one silently; a backend may keep the first).
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value without duplicated object keys")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.insert(key, v).is_some() {
                return Err(serde::de::Error::custom("duplicated object key"));
            }
        }
        Ok(Value::Object(out))
    }
}

/// Whether every number is an integer serde_json holds exactly (a float or a
/// huge integer would be rewritten, and two different texts could collide).
fn exact(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_i64() || n.is_u64(),
        Value::Array(a) => a.iter().all(exact),
        Value::Object(o) => o.values().all(exact),
        _ => true,
    }
}

fn is_hex(s: &str) -> bool {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_hexdigit())
}

fn write_canonical(v: &Value, lowercase_hex: bool, out: &mut Vec<u8>) {
    match v {
        Value::Object(o) => {
            // serde_json's Map is ordered by key (no `preserve_order`).
            out.push(b'{');
            for (i, (k, v)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, false, out);
                out.push(b':');
                write_canonical(v, lowercase_hex, out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, lowercase_hex, out);
            }
            out.push(b']');
        }
        Value::String(s) => write_string(s, lowercase_hex && is_hex(s), out),
        other => {
            // null, booleans and exact integers: their compact text.
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// `s` as a JSON string; `lowercase` only for hex strings ([`is_hex`]), whose
/// characters need no escaping: written lowercased in place, not copied.
fn write_string(s: &str, lowercase: bool, out: &mut Vec<u8>) {
    if lowercase {
        debug_assert!(is_hex(s));
        out.push(b'"');
        out.extend(s.bytes().map(|b| b.to_ascii_lowercase()));
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpc_core::{RawJson, Request};

    #[test]
    fn duplicated_keys_are_never_keyed() {
        let dup = Request::new("eth_call").with_params(
            RawJson::from_static(r#"[{"to":"0x01","to":"0x02"},"latest"]"#).expect("json"),
        );
        assert_eq!(CacheKey::for_request(&dup, true), None);
        let nested = Request::new("eth_call")
            .with_params(RawJson::from_static(r#"[{"a":{"b":1,"b":1}}]"#).expect("json"));
        assert_eq!(CacheKey::for_request(&nested, true), None);
        let fine = Request::new("eth_call").with_params(
            RawJson::from_static(r#"[{"to":"0x01","data":"0x"},"latest"]"#).expect("json"),
        );
        assert!(CacheKey::for_request(&fine, true).is_some());
    }

    fn key(method: &str, params: &'static str, hex: bool) -> Option<CacheKey> {
        CacheKey::for_request(
            &Request::new(method).with_params(RawJson::from_static(params).expect("json")),
            hex,
        )
    }

    #[test]
    fn formatting_does_not_matter() {
        assert_eq!(
            key("m", r#"[1, {"b":2,"a":"x"}]"#, false),
            key("m", r#"[1,{"a":"x","b":2}]"#, false)
        );
        assert_eq!(
            key("m", r#"["0xABcd"]"#, true),
            key("m", r#"["0xabcd"]"#, true)
        );
        assert_eq!(key("m", r#"["ABCD"]"#, true), key("m", r#"["abcd"]"#, true));
        assert_eq!(
            key("m", r#"["a\u0062"]"#, false),
            key("m", r#"["ab"]"#, false)
        );
        let none = CacheKey::for_request(&Request::new("m"), true);
        assert_eq!(none, key("m", "[]", true), "absent params are []");
    }

    #[test]
    fn meaning_does() {
        assert_ne!(
            key("m", r#"["0xAB"]"#, false),
            key("m", r#"["0xab"]"#, false)
        );
        assert_ne!(
            key("m", r#"["Hello"]"#, true),
            key("m", r#"["hello"]"#, true),
            "not hex"
        );
        assert_ne!(key("m", "[1]", true), key("n", "[1]", true));
        assert_ne!(key("m", "[1]", true), key("m", r#"["1"]"#, true));
        assert_ne!(key("m", "[[1,2]]", true), key("m", "[[2,1]]", true));
    }

    fn scoped(params: &'static str, scope: Scope) -> CacheKey {
        let request = Request::new("m").with_params(RawJson::from_static(params).expect("json"));
        let params = parse_params(&request).expect("keyed");
        CacheKey::from_parts("m", &params, true, scope)
    }

    #[test]
    fn scopes_are_part_of_the_key_and_of_its_reach() {
        // The bytes are shared by replicas through a store: their layout is
        // kept as it is (method, newline, canonical params, then the scope).
        let plain = scoped(r#"[ "0xAB", 1 ]"#, Scope::Unscoped);
        assert_eq!(plain.as_bytes(), b"m\n[\"0xab\",1]");
        assert!(plain.is_fleet_wide());
        let epoch = scoped(r#"["0xab",1]"#, Scope::Epoch(42));
        assert_eq!(epoch.as_bytes(), b"m\n[\"0xab\",1]\n42");
        assert!(!epoch.is_fleet_wide(), "each process counts its own epochs");
        let settled = scoped(r#"["0xab",1]"#, Scope::Settled(0));
        assert_eq!(settled.as_bytes(), b"m\n[\"0xab\",1]\r0");
        assert!(settled.is_fleet_wide());
        let after_reorg = scoped(r#"["0xab",1]"#, Scope::Settled(3));
        assert!(!after_reorg.is_fleet_wide());
        assert_ne!(epoch, scoped(r#"["0xab",1]"#, Scope::Epoch(43)));
        assert_ne!(settled, after_reorg);
    }

    #[test]
    fn a_key_scoped_again_is_the_key_made_in_that_scope() {
        let asked = scoped(r#"[{"b":"0xCD","a":2}]"#, Scope::Epoch(7));
        for scope in [
            Scope::Epoch(8),
            Scope::Epoch(123_456_789_012),
            Scope::Settled(0),
            Scope::Settled(2),
            Scope::Unscoped,
        ] {
            let again = asked.rescoped(scope);
            let made = scoped(r#"[{"a":2,"b":"0xcd"}]"#, scope);
            assert_eq!(again, made, "{scope:?}");
            assert_eq!(again.as_bytes(), made.as_bytes());
            assert_eq!(again.hash_value(), made.hash_value());
            assert_eq!(again.is_fleet_wide(), made.is_fleet_wide());
            // And back: the base is kept through any number of scopings.
            assert_eq!(again.rescoped(Scope::Epoch(7)), asked);
        }
    }

    #[test]
    fn a_huge_key_is_made_whole_and_its_scratch_not_kept() {
        let big = format!("[\"0x{}\"]", "AB".repeat(20_000));
        let request =
            Request::new("m").with_params(RawJson::from_bytes(big.clone()).expect("json"));
        let key = CacheKey::for_request(&request, true).expect("keyed");
        assert_eq!(key.len(), 2 + big.len());
        assert!(key.as_bytes().ends_with(b"abab\"]"));
        SCRATCH.with(|buf| assert!(buf.borrow().capacity() <= SCRATCH_KEEP));
        // Small keys after it are still right.
        assert_eq!(
            scoped("[1]", Scope::Epoch(1)).as_bytes(),
            b"m\n[1]\n1".as_slice()
        );
    }

    #[test]
    fn inexact_numbers_are_not_keyed() {
        assert!(key("m", "[1.5]", true).is_none());
        assert!(key("m", "[1e3]", true).is_none());
        assert!(key("m", "[100000000000000000000000]", true).is_none());
        assert!(key("m", "[-5, 18446744073709551615]", true).is_some());
    }
}
