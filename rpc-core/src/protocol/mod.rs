//! One vocabulary of chain facts: what each method of a protocol is.
//!
//! Failover asks whether a call may be repeated and which block it needs;
//! the cache asks how long an answer holds and which calls are writes;
//! metrics ask which method names are bounded label values; head tracking
//! asks which method reveals a node's head; a gateway asks which methods
//! are safe to expose. Each of those crates reads the answer here, from one
//! [`Protocol`] — a [`MethodTable`] of [`MethodFacts`] plus where heads come
//! from — so changing one Ethereum method is one line in this module.
//!
//! | fact | read by |
//! |---|---|
//! | [`MethodFacts::repeat`] ([`Idempotency`]) | `rpc_failover::MethodRules` (failover, retry, hedging, quorum) |
//! | [`MethodFacts::block`] | `MethodRules::min_head` / `block_tag` (head-aware routing) |
//! | [`MethodFacts::cache`] ([`CacheRule`]) | `rpc_cache::CacheRules` |
//! | [`MethodFacts::write`] | `CacheRules::is_write` (reads your writes) |
//! | [`MethodFacts::mined`] | the cache (a client never reads from before a block it saw) |
//! | [`MethodFacts::stateful`] | the gateway's default allow-list |
//! | exact names | `rpc_metrics::MethodLabels` (bounded label values) |
//! | [`Protocol::head`] ([`HeadSource`]) | head tracking, the cache's head |
//!
//! ```
//! use rpc_core::protocol::{CacheRule, Idempotency, Protocol};
//!
//! let eth = Protocol::ethereum();
//! let call = eth.facts("eth_call");
//! assert_eq!(call.repeat, Idempotency::Read);
//! assert_eq!(call.block, Some(1));
//! assert_eq!(call.cache, CacheRule::BlockParam(1));
//! assert!(eth.facts("eth_sendRawTransaction").write);
//! assert!(eth.facts("anvil_mine").write); // by prefix
//! assert_eq!(eth.facts("who_knows").repeat, Idempotency::Unsafe);
//! assert_eq!(eth.head().unwrap().method, "eth_blockNumber");
//!
//! // Binaries pick a protocol in one line:
//! let p = Protocol::named("electrum").unwrap();
//! assert_eq!(p.facts("blockchain.transaction.broadcast").repeat, Idempotency::Idempotent);
//! ```

mod electrum;
mod ethereum;
mod table;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

pub use table::{MethodSet, MethodTable, Pattern, PatternError};

use crate::methods::hex_quantity;
use crate::Request;

/// Whether a method may be sent more than once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Idempotency {
    /// Reads state; repeating it, sending it to several backends or racing it
    /// is harmless. Hedging and quorum fan-out apply only to reads.
    Read,
    /// Changes state, but repeating it has no further effect (a signed
    /// transaction broadcast: the same transaction cannot be included twice).
    Idempotent,
    /// Repeating it may do the work twice (`eth_sendTransaction` signs with the
    /// next nonce; filters and subscriptions are per-node state). Never
    /// repeated once it may have been delivered.
    Unsafe,
}

impl Idempotency {
    /// `true` for [`Read`](Self::Read) and [`Idempotent`](Self::Idempotent).
    pub fn is_safe_to_repeat(self) -> bool {
        !matches!(self, Idempotency::Unsafe)
    }
}

/// A named block in a block param.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockTag {
    /// `latest`.
    Latest,
    /// `safe`.
    Safe,
    /// `finalized`.
    Finalized,
    /// `pending`.
    Pending,
    /// `earliest`.
    Earliest,
}

impl BlockTag {
    /// The tag for its name.
    pub fn parse(name: &str) -> Option<BlockTag> {
        Some(match name {
            "latest" => BlockTag::Latest,
            "safe" => BlockTag::Safe,
            "finalized" => BlockTag::Finalized,
            "pending" => BlockTag::Pending,
            "earliest" => BlockTag::Earliest,
            _ => return None,
        })
    }
}

/// How a method's answers are cached.
///
/// The parameter-dependent rules decide per call: a call pinned to a block
/// hash never changes; a call pinned to an explicit block number or height is
/// immutable once that block is settled (finalized, or deep enough below the
/// head), and gets the short tip TTL until then; a call on the moving tip
/// (`latest`, no tag) gets the tip TTL; `pending` is never cached.
/// `rpc_cache` re-exports this as `rpc_cache::Rule`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheRule {
    /// Never cached (writes, per-node state, anything unknown).
    Never,
    /// Cached until evicted (the answer cannot change: `eth_chainId`).
    Forever,
    /// Cached for this long.
    Ttl(Duration),
    /// Cached for the rule set's `tip_ttl`: the answer follows the chain tip.
    Tip,
    /// Ethereum: the param at this index is a block tag, number, hash or an
    /// EIP-1898 `{"blockHash"|"blockNumber": ..}` object (missing = `latest`).
    BlockParam(usize),
    /// Ethereum: `eth_getLogs`' filter object (`blockHash`, or
    /// `fromBlock`/`toBlock`).
    LogsFilter,
    /// Ethereum: decided by the result's `blockNumber` (transactions and
    /// receipts by hash; a pending or unknown one is not cached).
    BlockInResult,
    /// Electrum: the param at this index is a block height.
    HeightParam(usize),
    /// Electrum: `blockchain.block.headers`' `start_height` and `count`.
    HeightRange,
    /// Electrum: `blockchain.transaction.get`: forever when not verbose
    /// (the raw transaction), the tip TTL when verbose (confirmations change).
    ElectrumTransaction,
}

/// What one method is. Build with the `const` constructors (tables of facts
/// are `static`):
///
/// ```
/// use rpc_core::protocol::{CacheRule, Idempotency, MethodFacts};
/// let quote = MethodFacts::read().cache(CacheRule::Tip);
/// let order = MethodFacts::unsafe_write();
/// assert!(quote.repeat.is_safe_to_repeat() && !order.repeat.is_safe_to_repeat());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MethodFacts {
    /// Whether the call may be sent more than once.
    pub repeat: Idempotency,
    /// How its answers are cached.
    pub cache: CacheRule,
    /// The index of its param that names a block (number, tag, hash) or a
    /// height, if any: a head-aware group sends it only to members that have
    /// the block.
    pub block: Option<usize>,
    /// Its success changes the chain as clients see it (a broadcast, a
    /// dev-node control): cached tip answers become stale.
    pub write: bool,
    /// It creates or uses state on the node that answered (filters,
    /// subscriptions, connection negotiation): a later call must reach the
    /// same node, and it is not for a stateless public endpoint.
    pub stateful: bool,
    /// Where its answer says which block it belongs to, if it does: a
    /// client that saw it must not be served anything older afterwards.
    pub mined: Option<MinedAt>,
    /// Its part in node-side state named by an id (a filter): creates it,
    /// uses it, or removes it; the id is the answer, or the first param.
    pub handle: Option<Handle>,
}

/// A method's part in node-side state named by an id (`eth_newFilter`'s
/// filter): whoever serves a group must send the later calls to the node
/// that created it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Handle {
    /// Its answer is a new id (`eth_newFilter`).
    Creates,
    /// Its first param is an id (`eth_getFilterChanges`).
    Uses,
    /// Its first param is an id it removes (`eth_uninstallFilter`).
    Removes,
}

/// Where an answer names the block it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MinedAt {
    /// The result's `blockNumber` (a transaction, a receipt).
    BlockNumber,
    /// The result's `number` (the result is a block).
    Number,
}

impl MinedAt {
    /// The block number in a result (raw JSON), if it has one.
    ///
    /// ```
    /// use rpc_core::protocol::MinedAt;
    /// assert_eq!(MinedAt::BlockNumber.read(br#"{"blockNumber":"0x10","status":"0x1"}"#), Some(16));
    /// assert_eq!(MinedAt::Number.read(br#"{"number":"0x11","hash":"0xab"}"#), Some(17));
    /// assert_eq!(MinedAt::BlockNumber.read(br#"{"blockNumber":null}"#), None);
    /// ```
    pub fn read(self, result: &[u8]) -> Option<u64> {
        #[derive(serde::Deserialize)]
        struct Mined<'a> {
            #[serde(rename = "blockNumber", borrow)]
            block_number: Option<&'a str>,
            #[serde(borrow)]
            number: Option<&'a str>,
        }
        let mined: Mined<'_> = serde_json::from_slice(result).ok()?;
        let text = match self {
            MinedAt::BlockNumber => mined.block_number,
            MinedAt::Number => mined.number,
        };
        hex_quantity(text?)
    }
}

impl MethodFacts {
    /// What an unknown method is: never repeated once it may have been
    /// delivered, never cached, no block, not a write, not stateful.
    pub const UNKNOWN: MethodFacts = MethodFacts {
        repeat: Idempotency::Unsafe,
        cache: CacheRule::Never,
        block: None,
        write: false,
        stateful: false,
        mined: None,
        handle: None,
    };

    /// A read, not cached until [`cache`](Self::cache) says so.
    pub const fn read() -> Self {
        MethodFacts {
            repeat: Idempotency::Read,
            ..Self::UNKNOWN
        }
    }

    /// A write that may be repeated (a signed transaction's broadcast).
    pub const fn broadcast() -> Self {
        MethodFacts {
            repeat: Idempotency::Idempotent,
            write: true,
            ..Self::UNKNOWN
        }
    }

    /// A write that must not be repeated (`eth_sendTransaction`, dev-node
    /// controls).
    pub const fn unsafe_write() -> Self {
        MethodFacts {
            write: true,
            ..Self::UNKNOWN
        }
    }

    /// Not safe to repeat, not a write (signing, admin calls).
    pub const fn unsafe_() -> Self {
        Self::UNKNOWN
    }

    /// With this repeat class.
    pub const fn repeat(mut self, repeat: Idempotency) -> Self {
        self.repeat = repeat;
        self
    }

    /// With this cache rule.
    pub const fn cache(mut self, rule: CacheRule) -> Self {
        self.cache = rule;
        self
    }

    /// With its block (or height) at param `index`.
    pub const fn block(mut self, index: usize) -> Self {
        self.block = Some(index);
        self
    }

    /// Marked stateful.
    pub const fn stateful(mut self) -> Self {
        self.stateful = true;
        self
    }

    /// Stateful, with this part in a node-side handle.
    pub const fn handle(mut self, role: Handle) -> Self {
        self.stateful = true;
        self.handle = Some(role);
        self
    }

    /// Its answer names its block at `at`.
    pub const fn mined(mut self, at: MinedAt) -> Self {
        self.mined = Some(at);
        self
    }

    /// Marked a write.
    pub const fn write(mut self) -> Self {
        self.write = true;
        self
    }
}

/// How a head appears in an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeadFormat {
    /// A hex quantity result (`"0x1b4"`: `eth_blockNumber`).
    HexQuantity,
    /// An object with a `height` field (`blockchain.headers.subscribe`).
    HeightField,
}

/// The method whose answers are a node's head, and how to read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadSource {
    /// The method (`eth_blockNumber`, `blockchain.headers.subscribe`).
    pub method: &'static str,
    /// How its result carries the head.
    pub format: HeadFormat,
}

impl HeadSource {
    /// Ethereum: `eth_blockNumber`, a hex quantity.
    pub const ETHEREUM: HeadSource = HeadSource {
        method: "eth_blockNumber",
        format: HeadFormat::HexQuantity,
    };

    /// Electrum: `blockchain.headers.subscribe`, `{"height": n, "hex": ..}`.
    pub const ELECTRUM: HeadSource = HeadSource {
        method: "blockchain.headers.subscribe",
        format: HeadFormat::HeightField,
    };

    /// The head in a result (raw JSON) of [`method`](Self::method).
    ///
    /// ```
    /// use rpc_core::protocol::HeadSource;
    /// assert_eq!(HeadSource::ETHEREUM.parse(br#""0x1b4""#), Some(436));
    /// assert_eq!(HeadSource::ELECTRUM.parse(br#"{"height":812345,"hex":"00"}"#), Some(812345));
    /// assert_eq!(HeadSource::ETHEREUM.parse(b"null"), None);
    /// ```
    pub fn parse(&self, result: &[u8]) -> Option<u64> {
        match self.format {
            HeadFormat::HexQuantity => {
                let s: &str = serde_json::from_slice(result).ok()?;
                hex_quantity(s)
            }
            HeadFormat::HeightField => {
                #[derive(serde::Deserialize)]
                struct Tip {
                    height: u64,
                }
                serde_json::from_slice::<Tip>(result).ok().map(|t| t.height)
            }
        }
    }
}

/// A protocol's vocabulary: each method's [`MethodFacts`] (exact names and
/// prefixes, in a [`MethodTable`]) and its [`HeadSource`]. Cheap to clone
/// (shared); customise with [`with`](Self::with).
///
/// ```
/// use rpc_core::protocol::{CacheRule, MethodFacts, Protocol};
///
/// // Our node has a private read that follows the tip.
/// let ours = Protocol::ethereum()
///     .with("myco_getQuote", MethodFacts::read().cache(CacheRule::Tip))?;
/// assert!(ours.facts("myco_getQuote").repeat.is_safe_to_repeat());
/// # Ok::<(), rpc_core::protocol::PatternError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Protocol {
    name: Arc<str>,
    methods: Arc<MethodTable<MethodFacts>>,
    head: Option<HeadSource>,
    confirmations: u64,
    health: Option<&'static str>,
    hex_case_insensitive: bool,
}

static ETHEREUM: LazyLock<Protocol> = LazyLock::new(|| {
    // 64 blocks: two beacon-chain epochs, where blocks finalize.
    Protocol::from_static(
        "ethereum",
        ethereum::METHODS,
        Some(HeadSource::ETHEREUM),
        64,
    )
    .health_method(Some("eth_blockNumber"))
});
static ELECTRUM: LazyLock<Protocol> = LazyLock::new(|| {
    // 6 blocks: Bitcoin's customary settlement depth.
    Protocol::from_static("electrum", electrum::METHODS, Some(HeadSource::ELECTRUM), 6)
        .health_method(Some("server.ping"))
});

impl Protocol {
    /// Ethereum JSON-RPC: the standard `eth_*`, `net_*`, `web3_*` methods,
    /// `debug_trace*` / `trace_*` reads, filters and subscriptions
    /// (stateful), signing (unsafe), broadcasts and the dev-node controls
    /// `evm_*`, `anvil_*`, `hardhat_*` (writes). Heads from
    /// `eth_blockNumber`.
    pub fn ethereum() -> Protocol {
        ETHEREUM.clone()
    }

    /// The Electrum protocol: `blockchain.*` reads by height and by script
    /// hash, subscriptions (stateful), `blockchain.transaction.broadcast`
    /// (a write that may be repeated), `server.*`. Heads from
    /// `blockchain.headers.subscribe`.
    pub fn electrum() -> Protocol {
        ELECTRUM.clone()
    }

    /// Any JSON-RPC service: no method is known (every method is
    /// [`MethodFacts::UNKNOWN`]), no head.
    pub fn generic() -> Protocol {
        Protocol {
            name: Arc::from("generic"),
            methods: Arc::new(MethodTable::new()),
            head: None,
            confirmations: 64,
            health: None,
            hex_case_insensitive: false,
        }
    }

    /// `ethereum`, `electrum` or `generic` by name.
    pub fn named(name: &str) -> Option<Protocol> {
        match name {
            "ethereum" => Some(Self::ethereum()),
            "electrum" => Some(Self::electrum()),
            "generic" => Some(Self::generic()),
            _ => None,
        }
    }

    fn from_static(
        name: &str,
        methods: &[(&str, MethodFacts)],
        head: Option<HeadSource>,
        confirmations: u64,
    ) -> Protocol {
        let mut table = MethodTable::new();
        for &(pattern, facts) in methods {
            // The shipped tables are checked by this module's tests.
            if let Ok(p) = Pattern::parse(pattern) {
                table.insert_pattern(p, facts);
            }
        }
        Protocol {
            name: Arc::from(name),
            methods: Arc::new(table),
            head,
            confirmations,
            health: None,
            // Addresses, hashes and data: hex whose case means nothing.
            hex_case_insensitive: true,
        }
    }

    /// The protocol's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// With `pattern` (`myco_quote`, `myco_*`) described by `facts`
    /// (replacing what the table said).
    pub fn with(mut self, pattern: &str, facts: MethodFacts) -> Result<Self, PatternError> {
        Arc::make_mut(&mut self.methods).insert(pattern, facts)?;
        Ok(self)
    }

    /// With heads read from `head` (or none).
    pub fn head_source(mut self, head: Option<HeadSource>) -> Self {
        self.head = head;
        self
    }

    /// The facts of `method` ([`MethodFacts::UNKNOWN`] for a method the
    /// table does not know).
    pub fn facts(&self, method: &str) -> MethodFacts {
        self.methods
            .get(method)
            .copied()
            .unwrap_or(MethodFacts::UNKNOWN)
    }

    /// Whether the table knows `method` (by name or by prefix).
    pub fn knows(&self, method: &str) -> bool {
        self.methods.matches(method)
    }

    /// How deep below the head a block is settled when the chain says
    /// nothing about finality (Ethereum 64, Electrum 6).
    pub fn confirmations(&self) -> u64 {
        self.confirmations
    }

    /// With blocks settled at `depth` below the head.
    pub fn with_confirmations(mut self, depth: u64) -> Self {
        self.confirmations = depth;
        self
    }

    /// Whether hex strings in params mean the same in either case
    /// (addresses, hashes, data: true for Ethereum and Electrum), so a
    /// cache may key them lower-cased.
    pub fn hex_case_insensitive(&self) -> bool {
        self.hex_case_insensitive
    }

    /// The cheapest call that shows a node is serving (Ethereum
    /// `eth_blockNumber`, Electrum `server.ping`; none for generic): the
    /// default of background health checks.
    pub fn health(&self) -> Option<&'static str> {
        self.health
    }

    /// With health checks calling `method` (or none).
    pub fn health_method(mut self, method: Option<&'static str>) -> Self {
        self.health = method;
        self
    }

    /// The whole table.
    pub fn methods(&self) -> &MethodTable<MethodFacts> {
        &self.methods
    }

    /// Where heads come from, if the protocol has them.
    pub fn head(&self) -> Option<&HeadSource> {
        self.head.as_ref()
    }

    /// The block `request` names in its [block param](MethodFacts::block):
    /// an explicit number or height, or a tag; `(None, None)` for hashes,
    /// missing params and methods without one.
    ///
    /// ```
    /// use rpc_core::protocol::{BlockTag, Protocol};
    /// use rpc_core::{RawJson, Request};
    ///
    /// let eth = Protocol::ethereum();
    /// let call = |m: &str, p: &'static str| Request::new(m).with_params(RawJson::from_static(p).unwrap());
    /// assert_eq!(eth.block(&call("eth_getBalance", r#"["0xab","0x20"]"#)), (Some(0x20), None));
    /// assert_eq!(eth.block(&call("eth_call", r#"[{},{"blockNumber":"0x30"}]"#)), (Some(0x30), None));
    /// assert_eq!(eth.block(&call("eth_call", r#"[{},"safe"]"#)), (None, Some(BlockTag::Safe)));
    /// ```
    pub fn block(&self, request: &Request) -> (Option<u64>, Option<BlockTag>) {
        match self.methods.get(request.method()).and_then(|f| f.block) {
            Some(index) => block_at(request, index),
            None => (None, None),
        }
    }
}

/// The block named by param `index` of `request`: an explicit number
/// (`"0x10f"`, `271`, EIP-1898 `{"blockNumber": "0x10f"}`) or a tag.
pub fn block_at(request: &Request, index: usize) -> (Option<u64>, Option<BlockTag>) {
    let Some(params) = request.params() else {
        return (None, None);
    };
    // Borrowed: only the one param is looked at, once.
    let Ok(list) = serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(params.as_bytes())
    else {
        return (None, None);
    };
    let Some(raw) = list.get(index).map(|r| r.get()) else {
        return (None, None);
    };
    match block_number(raw) {
        Some(n) => (Some(n), None),
        None => (
            None,
            serde_json::from_str::<&str>(raw)
                .ok()
                .and_then(BlockTag::parse),
        ),
    }
}

/// An explicit block number in a param: `"0x10f"`, `271`, or an EIP-1898
/// `{"blockNumber": "0x10f"}`; `None` for tags, hashes and anything else.
fn block_number(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    if let Ok(n) = raw.parse::<u64>() {
        return Some(n);
    }
    if raw.starts_with('{') {
        #[derive(serde::Deserialize)]
        struct ByNumber<'a> {
            #[serde(rename = "blockNumber", borrow)]
            block_number: Option<&'a str>,
        }
        let by: ByNumber<'_> = serde_json::from_str(raw).ok()?;
        return hex_quantity(by.block_number?);
    }
    let text: &str = serde_json::from_str(raw).ok()?;
    hex_quantity(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_tables_parse_and_have_no_duplicates() {
        for (name, methods) in [
            ("ethereum", ethereum::METHODS),
            ("electrum", electrum::METHODS),
        ] {
            let mut seen = std::collections::HashSet::new();
            for (pattern, _) in methods {
                assert!(Pattern::parse(pattern).is_ok(), "{name}: {pattern}");
                assert!(seen.insert(*pattern), "{name}: {pattern} twice");
            }
            let p = Protocol::named(name).unwrap();
            assert_eq!(p.methods().len(), methods.len());
        }
    }

    #[test]
    fn facts_are_consistent() {
        for p in [Protocol::ethereum(), Protocol::electrum()] {
            for (pattern, f) in p.methods().iter() {
                // A cached answer must come from a call safe to repeat.
                if f.cache != CacheRule::Never {
                    assert!(f.repeat == Idempotency::Read, "{pattern}: cached non-read");
                }
                // A block-pinned cache rule names the same param as `block`.
                if let CacheRule::BlockParam(i) | CacheRule::HeightParam(i) = f.cache {
                    assert_eq!(f.block, Some(i), "{pattern}");
                }
            }
        }
    }

    #[test]
    fn explicit_blocks_are_read_from_params() {
        let eth = Protocol::ethereum();
        let with = |m: &str, p: &'static str| {
            Request::new(m).with_params(crate::RawJson::from_static(p).expect("json"))
        };
        for (method, params, expected) in [
            ("eth_getBlockByNumber", r#"["0x10f",false]"#, Some(0x10f)),
            ("eth_getBalance", r#"["0xabc","0x20"]"#, Some(0x20)),
            (
                "eth_call",
                r#"[{"to":"0x1"},{"blockNumber":"0x30"}]"#,
                Some(0x30),
            ),
            ("eth_call", r#"[{"to":"0x1"},{"blockHash":"0xaa"}]"#, None),
            ("eth_getBalance", r#"["0xabc","latest"]"#, None),
            ("eth_getBalance", r#"["0xabc"]"#, None),
            ("eth_getStorageAt", r#"["0xabc","0x0","0x40"]"#, Some(0x40)),
            ("eth_getBlockByNumber", r#"["0x",false]"#, None),
            (
                "eth_getBlockByNumber",
                r#"["0x1ffffffffffffffff",false]"#,
                None,
            ),
            ("eth_blockNumber", "[]", None),
            ("eth_getBlockByNumber", r#"{"not":"a list"}"#, None),
        ] {
            assert_eq!(
                eth.block(&with(method, params)).0,
                expected,
                "{method} {params}"
            );
        }
        let electrum = Protocol::electrum();
        assert_eq!(
            electrum.block(&with("blockchain.block.header", "[271]")).0,
            Some(271)
        );
        assert_eq!(
            electrum
                .block(&with("blockchain.block.headers", "[100, 5]"))
                .0,
            Some(100)
        );
        assert_eq!(
            electrum
                .block(&with("blockchain.scripthash.get_balance", r#"["ab"]"#))
                .0,
            None
        );
    }
}
