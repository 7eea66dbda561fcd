//! Which calls may be cached, for how long, and what a call's key is.

use std::fmt;
use std::time::Duration;

use rpc_core::methods::hex_quantity;
use rpc_core::protocol::{HeadSource, MethodSet, MethodTable, MinedAt, Pattern, Protocol};
use rpc_core::{Payload, Response};
use serde_json::Value;

/// How one method is cached: the vocabulary's [`CacheRule`](rpc_core::protocol::CacheRule).
pub use rpc_core::protocol::CacheRule as Rule;

/// Per-method cache rules, with the shipped sets for Ethereum and Electrum.
///
/// ```
/// use std::time::Duration;
/// use rpc_cache::{CacheRules, Rule};
///
/// let rules = CacheRules::ethereum()
///     .method("eth_getLogs", Rule::Never)                 // we do not cache logs
///     .method("myco_price", Rule::Ttl(Duration::from_secs(5)))
///     .tip_ttl(Duration::from_millis(500))
///     .confirmations(32);
/// assert_eq!(rules.rule("eth_chainId"), Rule::Forever);
/// assert_eq!(rules.rule("eth_getLogs"), Rule::Never);
/// assert_eq!(rules.rule("eth_sendRawTransaction"), Rule::Never);
/// ```
#[derive(Clone)]
pub struct CacheRules {
    methods: MethodTable<Rule>,
    tip_ttl: Duration,
    confirmations: u64,
    lowercase_hex: bool,
    head_from: Option<HeadSource>,
    /// Methods (exact, or prefixes) whose success makes every tip answer
    /// stale: writes.
    writes: MethodSet,
    /// Methods whose answers name their block.
    mined: MethodTable<MinedAt>,
}

impl fmt::Debug for CacheRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheRules")
            .field("methods", &self.methods.len())
            .field("tip_ttl", &self.tip_ttl)
            .field("confirmations", &self.confirmations)
            .field("lowercase_hex", &self.lowercase_hex)
            .finish_non_exhaustive()
    }
}

impl CacheRules {
    /// No method is cached until added; hex strings are compared as given.
    pub fn empty() -> Self {
        CacheRules {
            methods: MethodTable::new(),
            tip_ttl: Duration::from_secs(1),
            confirmations: 64,
            lowercase_hex: false,
            head_from: None,
            writes: MethodSet::new(),
            mined: MethodTable::new(),
        }
    }

    /// The Ethereum set. Forever: `eth_chainId`, `net_version`, and calls by
    /// block hash (`eth_getBlockByHash`, ...). By block param:
    /// `eth_getBalance`, `eth_getCode`, `eth_getTransactionCount`,
    /// `eth_getStorageAt`, `eth_call`, `eth_estimateGas`,
    /// `eth_createAccessList`, `eth_getProof`, `eth_getBlockByNumber`,
    /// `eth_getBlockReceipts`, `eth_feeHistory`, the `...ByNumber...` counts.
    /// `eth_getLogs` by its filter; transactions and receipts by hash by
    /// their `blockNumber`. Tip: `eth_blockNumber`, `eth_gasPrice`,
    /// `eth_maxPriorityFeePerGas`, `eth_blobBaseFee`. Everything else
    /// (writes, filters, `web3_clientVersion`, traces) is never cached.
    ///
    /// `tip_ttl` 1 s, 64 confirmations, hex case ignored in keys (addresses,
    /// hashes and data are case-insensitive), the head learned from
    /// `eth_blockNumber` answers.
    pub fn ethereum() -> Self {
        Self::for_protocol(&Protocol::ethereum())
    }

    /// The rules of a [`Protocol`]: each method's
    /// [`cache`](rpc_core::protocol::MethodFacts::cache) rule, its
    /// [writes](rpc_core::protocol::MethodFacts::write) and its
    /// [head source](Protocol::head); hex case ignored in keys where the
    /// protocol says it means nothing
    /// ([`Protocol::hex_case_insensitive`]), the protocol's
    /// [confirmations](Protocol::confirmations).
    pub fn for_protocol(protocol: &Protocol) -> Self {
        let mut r = CacheRules::empty();
        r.lowercase_hex = protocol.hex_case_insensitive();
        r.head_from = protocol.head().copied();
        r.confirmations = protocol.confirmations();
        for (pattern, facts) in protocol.methods().iter() {
            if facts.cache != Rule::Never {
                r.methods.insert_pattern(pattern, facts.cache);
            }
            if facts.write {
                r.writes.insert_pattern(pattern, ());
            }
            if let Some(at) = facts.mined {
                r.mined.insert_pattern(pattern, at);
            }
        }
        r
    }

    /// The Electrum set. Forever: `blockchain.transaction.get` (not
    /// verbose). By height: `blockchain.block.header`,
    /// `blockchain.block.headers`, `blockchain.transaction.get_merkle`,
    /// `blockchain.transaction.id_from_pos`. Tip: address (`scripthash`)
    /// queries, `blockchain.headers.subscribe`, fee estimates,
    /// `mempool.get_fee_histogram`. Never: `server.*` (each server answers
    /// for itself), broadcasts, unknown methods.
    ///
    /// `tip_ttl` 1 s, 6 confirmations, hex case ignored, the head learned
    /// from `blockchain.headers.subscribe` answers.
    pub fn electrum() -> Self {
        Self::for_protocol(&Protocol::electrum())
    }

    /// Sets the rule of one method (overrides the shipped one).
    pub fn method(mut self, method: &str, rule: Rule) -> Self {
        self.methods
            .insert_pattern(Pattern::Exact(method.trim()), rule);
        self
    }

    /// The TTL of answers that follow the chain tip (default 1 s).
    pub fn tip_ttl(mut self, ttl: Duration) -> Self {
        self.tip_ttl = ttl;
        self
    }

    /// How deep below the head a block must be before answers pinned to it
    /// are cached forever (Ethereum 64, Electrum 6).
    pub fn confirmations(mut self, n: u64) -> Self {
        self.confirmations = n;
        self
    }

    /// Whether `0x..` and plain hex strings in params are lowercased in the
    /// key (on in both shipped sets).
    pub fn lowercase_hex(mut self, on: bool) -> Self {
        self.lowercase_hex = on;
        self
    }

    /// Marks `pattern` (an exact method name, or a prefix ending in `*`) as a
    /// write: once such a call succeeds, every answer cached by a TTL (the
    /// tip's, or a method's own) is treated as stale, so a client reads its
    /// own writes. Shipped: Ethereum's `eth_sendRawTransaction`,
    /// `eth_sendRawTransactionConditional`, `eth_sendRawTransactionSync`,
    /// `eth_sendTransaction` and the dev-node `evm_*`, `anvil_*`,
    /// `hardhat_*`; Electrum's `blockchain.transaction.broadcast`.
    ///
    /// A pattern with `*` anywhere but at the end names a method literally.
    pub fn write(mut self, pattern: &str) -> Self {
        let parsed = Pattern::parse(pattern).unwrap_or(Pattern::Exact(pattern));
        self.writes.insert_pattern(parsed, ());
        self
    }

    /// Whether a successful `method` makes cached tip answers stale.
    pub fn is_write(&self, method: &str) -> bool {
        self.writes.matches(method)
    }

    /// The rule for `method`.
    pub fn rule(&self, method: &str) -> Rule {
        self.methods.get(method).copied().unwrap_or(Rule::Never)
    }

    /// The head this answer reveals, if the rule set learns from it.
    pub(crate) fn head_in(&self, method: &str, response: &Response) -> Option<u64> {
        let source = self.head_from.as_ref()?;
        if source.method != method {
            return None;
        }
        source.parse(response.result_json()?.as_bytes())
    }

    /// What to do with a call under `rule` (its method's [`rule`](Self::rule)),
    /// before it is made.
    pub(crate) fn plan(&self, rule: Rule, params: &Value, line: Line) -> Plan {
        let arg = |i: usize| -> Option<&Value> {
            match params {
                Value::Array(a) => a.get(i),
                _ => None,
            }
        };
        match rule {
            Rule::Never => Plan::Skip,
            Rule::Forever => Plan::Store(None),
            Rule::Ttl(d) => Plan::Store(Some(d)),
            Rule::Tip => Plan::Store(Some(self.tip_ttl)),
            Rule::BlockParam(i) => self.by_block(block_ref(arg(i)), line),
            Rule::LogsFilter => match arg(0) {
                Some(Value::Object(filter)) => {
                    if filter.contains_key("blockHash") {
                        return Plan::Store(None);
                    }
                    let from = block_ref(filter.get("fromBlock"));
                    let to = block_ref(filter.get("toBlock"));
                    match (from, to) {
                        (BlockRef::Number(a), BlockRef::Number(b)) => {
                            self.by_block(BlockRef::Number(a.max(b)), line)
                        }
                        (BlockRef::Pending, _) | (_, BlockRef::Pending) => Plan::Skip,
                        (BlockRef::Unknown, _) | (_, BlockRef::Unknown) => Plan::Skip,
                        _ => Plan::Store(Some(self.tip_ttl)),
                    }
                }
                _ => Plan::Skip,
            },
            Rule::BlockInResult => Plan::AfterResult,
            Rule::HeightParam(i) => match arg(i).and_then(Value::as_u64) {
                Some(h) => self.by_height(h, line),
                None => Plan::Skip,
            },
            Rule::HeightRange => match (
                arg(0).and_then(Value::as_u64),
                arg(1).and_then(Value::as_u64),
            ) {
                (Some(start), Some(count)) if count > 0 => {
                    self.by_height(start.saturating_add(count - 1), line)
                }
                _ => Plan::Skip,
            },
            Rule::ElectrumTransaction => match arg(1) {
                None | Some(Value::Bool(false)) => Plan::Store(None),
                Some(Value::Bool(true)) => Plan::Store(Some(self.tip_ttl)),
                Some(_) => Plan::Skip,
            },
            // A rule this version does not know (the enum is open): not cached.
            _ => Plan::Skip,
        }
    }

    /// For [`Plan::AfterResult`]: how long to keep this answer.
    pub(crate) fn after_result(&self, response: &Response, line: Line) -> Option<Option<Duration>> {
        let n = MinedAt::BlockNumber.read(response.result_json()?.as_bytes())?;
        match self.by_block(BlockRef::Number(n), line) {
            Plan::Store(ttl) => Some(ttl),
            Plan::Settled => Some(None),
            _ => None,
        }
    }

    fn by_block(&self, block: BlockRef, line: Line) -> Plan {
        match block {
            BlockRef::Hash => Plan::Store(None),
            BlockRef::Earliest => Plan::Settled,
            BlockRef::Tip => Plan::Store(Some(self.tip_ttl)),
            BlockRef::Number(n) => self.by_height(n, line),
            BlockRef::Pending | BlockRef::Unknown => Plan::Skip,
        }
    }

    fn by_height(&self, height: u64, line: Line) -> Plan {
        if line.settles(height, self.confirmations) {
            Plan::Settled
        } else {
            Plan::Store(Some(self.tip_ttl))
        }
    }

    /// The block number an answer shows was mined (receipts' and
    /// transactions' `blockNumber`, blocks' `number`): after a client holds
    /// it, no answer from before that block may be served to it.
    pub(crate) fn block_in(&self, method: &str, response: &Response) -> Option<u64> {
        let at = self.mined.get(method)?;
        at.read(response.result_json()?.as_bytes())
    }

    pub(crate) fn confirmations_of(&self) -> u64 {
        self.confirmations
    }

    pub(crate) fn lowercases_hex(&self) -> bool {
        self.lowercase_hex
    }
}

/// Where the cache takes blocks as permanent: at or below the finalized
/// block when the chain reports one, else `confirmations` below the head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Line {
    /// The trusted head (0: unknown).
    pub(crate) head: u64,
    /// The agreed finalized block, when known.
    pub(crate) finalized: Option<u64>,
}

impl Line {
    /// A line from a head alone (no finality known).
    #[cfg(test)]
    pub(crate) fn head(head: u64) -> Line {
        Line {
            head,
            finalized: None,
        }
    }

    pub(crate) fn settles(self, height: u64, confirmations: u64) -> bool {
        match self.finalized {
            Some(f) => height <= f,
            None => self.head != 0 && height.saturating_add(confirmations) <= self.head,
        }
    }

    /// The highest settled height, if any.
    pub(crate) fn settled_to(self, confirmations: u64) -> Option<u64> {
        match self.finalized {
            Some(f) => Some(f),
            None if self.head != 0 => self.head.checked_sub(confirmations),
            None => None,
        }
    }
}

/// The decision before a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Do not cache.
    Skip,
    /// Cache an answer for this long (`None`: until evicted; the answer
    /// cannot change, e.g. pinned to a block hash).
    Store(Option<Duration>),
    /// Cache an answer about a block taken as permanent (at or below the
    /// finalized block, or deep enough) until evicted or until a
    /// reorganisation reaches it.
    Settled,
    /// Decide from the result.
    AfterResult,
}

/// What a block parameter points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockRef {
    Hash,
    Earliest,
    Tip,
    Pending,
    Number(u64),
    Unknown,
}

fn block_ref(v: Option<&Value>) -> BlockRef {
    match v {
        None | Some(Value::Null) => BlockRef::Tip,
        Some(Value::String(s)) => match s.as_str() {
            "latest" | "safe" | "finalized" => BlockRef::Tip,
            "pending" => BlockRef::Pending,
            "earliest" => BlockRef::Earliest,
            s if s.len() == 66 && s.starts_with("0x") => BlockRef::Hash,
            s => hex_quantity(s).map_or(BlockRef::Unknown, BlockRef::Number),
        },
        Some(Value::Object(o)) => {
            if o.contains_key("blockHash") {
                BlockRef::Hash
            } else {
                match o.get("blockNumber") {
                    Some(n) => block_ref(Some(n)),
                    None => BlockRef::Unknown,
                }
            }
        }
        Some(_) => BlockRef::Unknown,
    }
}

/// Whether an answer is "empty": `null` results and error objects are cached
/// only with negative caching on.
pub(crate) fn is_negative(payload: &Payload) -> bool {
    match payload {
        Payload::Error(_) => true,
        Payload::Result(raw) => raw.as_bytes() == b"null",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(rules: &CacheRules, method: &str, params: Value, head: u64) -> Plan {
        rules.plan(rules.rule(method), &params, Line::head(head))
    }

    const S: Option<Duration> = Some(Duration::from_secs(1));

    #[test]
    fn ethereum_table() {
        let r = CacheRules::ethereum();
        let hash = format!("0x{}", "ab".repeat(32));
        let addr = "0x6b175474e89094c44da98b954eedeac495271d0f";
        for (method, params, head, expected) in [
            ("eth_chainId", json!([]), 0, Plan::Store(None)),
            ("eth_blockNumber", json!([]), 0, Plan::Store(S)),
            ("eth_sendRawTransaction", json!(["0x00"]), 0, Plan::Skip),
            ("eth_sendTransaction", json!([{}]), 0, Plan::Skip),
            ("eth_newFilter", json!([{}]), 0, Plan::Skip),
            ("web3_clientVersion", json!([]), 0, Plan::Skip),
            (
                "eth_getBlockByHash",
                json!([hash, false]),
                0,
                Plan::Store(None),
            ),
            (
                "eth_getBalance",
                json!([addr, "latest"]),
                100,
                Plan::Store(S),
            ),
            ("eth_getBalance", json!([addr]), 100, Plan::Store(S)),
            ("eth_getBalance", json!([addr, "pending"]), 100, Plan::Skip),
            (
                "eth_getBalance",
                json!([addr, "earliest"]),
                100,
                Plan::Settled,
            ),
            ("eth_getBalance", json!([addr, "0x10"]), 100, Plan::Settled),
            ("eth_getBalance", json!([addr, "0x60"]), 100, Plan::Store(S)),
            ("eth_getBalance", json!([addr, "0x10"]), 0, Plan::Store(S)),
            (
                "eth_getBalance",
                json!([addr, {"blockHash": hash}]),
                0,
                Plan::Store(None),
            ),
            (
                "eth_getBalance",
                json!([addr, {"blockNumber": "0x1"}]),
                100,
                Plan::Settled,
            ),
            ("eth_getBalance", json!([addr, 7]), 100, Plan::Skip),
            (
                "eth_call",
                json!([{"to": addr}, "0x1"]),
                1000,
                Plan::Settled,
            ),
            (
                "eth_getBlockByNumber",
                json!(["0x1", true]),
                1000,
                Plan::Settled,
            ),
            (
                "eth_getBlockByNumber",
                json!(["latest", true]),
                1000,
                Plan::Store(S),
            ),
            ("eth_getBlockReceipts", json!([hash]), 0, Plan::Store(None)),
            (
                "eth_getLogs",
                json!([{"blockHash": hash}]),
                0,
                Plan::Store(None),
            ),
            (
                "eth_getLogs",
                json!([{"fromBlock": "0x1", "toBlock": "0x2"}]),
                1000,
                Plan::Settled,
            ),
            (
                "eth_getLogs",
                json!([{"fromBlock": "0x1", "toBlock": "0x3e0"}]),
                1000,
                Plan::Store(S),
            ),
            (
                "eth_getLogs",
                json!([{"fromBlock": "0x1"}]),
                1000,
                Plan::Store(S),
            ),
            (
                "eth_getLogs",
                json!([{"toBlock": "pending"}]),
                1000,
                Plan::Skip,
            ),
            ("eth_getLogs", json!([]), 1000, Plan::Skip),
            (
                "eth_getTransactionReceipt",
                json!([hash]),
                0,
                Plan::AfterResult,
            ),
        ] {
            assert_eq!(
                plan(&r, method, params.clone(), head),
                expected,
                "{method} {params} head {head}"
            );
        }
    }

    #[test]
    fn electrum_table() {
        let r = CacheRules::electrum();
        let txid = "ab".repeat(32);
        for (method, params, head, expected) in [
            (
                "blockchain.transaction.get",
                json!([txid]),
                0,
                Plan::Store(None),
            ),
            (
                "blockchain.transaction.get",
                json!([txid, false]),
                0,
                Plan::Store(None),
            ),
            (
                "blockchain.transaction.get",
                json!([txid, true]),
                0,
                Plan::Store(S),
            ),
            ("blockchain.block.header", json!([100]), 106, Plan::Settled),
            ("blockchain.block.header", json!([101]), 106, Plan::Store(S)),
            ("blockchain.block.header", json!([100]), 0, Plan::Store(S)),
            ("blockchain.block.header", json!(["x"]), 106, Plan::Skip),
            (
                "blockchain.block.headers",
                json!([90, 11]),
                106,
                Plan::Settled,
            ),
            (
                "blockchain.block.headers",
                json!([90, 12]),
                106,
                Plan::Store(S),
            ),
            ("blockchain.block.headers", json!([90, 0]), 106, Plan::Skip),
            (
                "blockchain.transaction.get_merkle",
                json!([txid, 5]),
                106,
                Plan::Settled,
            ),
            (
                "blockchain.scripthash.get_balance",
                json!([txid]),
                0,
                Plan::Store(S),
            ),
            ("blockchain.headers.subscribe", json!([]), 0, Plan::Store(S)),
            ("server.version", json!(["x", "1.4"]), 0, Plan::Skip),
            ("server.features", json!([]), 0, Plan::Skip),
            ("server.peers.subscribe", json!([]), 0, Plan::Skip),
            (
                "blockchain.transaction.broadcast",
                json!(["00"]),
                0,
                Plan::Skip,
            ),
        ] {
            assert_eq!(
                plan(&r, method, params.clone(), head),
                expected,
                "{method} {params} head {head}"
            );
        }
    }

    #[test]
    fn heads_are_learned_from_the_right_answers() {
        use rpc_core::{Id, RawJson};
        let eth = CacheRules::ethereum();
        let r = Response::result(Id::Null, RawJson::from_static("\"0x1b4\"").expect("json"));
        assert_eq!(eth.head_in("eth_blockNumber", &r), Some(436));
        assert_eq!(eth.head_in("eth_gasPrice", &r), None);
        let el = CacheRules::electrum();
        let r = Response::result(
            Id::Null,
            RawJson::from_static(r#"{"hex":"00","height":812345}"#).expect("json"),
        );
        assert_eq!(el.head_in("blockchain.headers.subscribe", &r), Some(812345));
    }

    #[test]
    fn receipts_are_kept_by_their_block() {
        use rpc_core::{Id, RawJson};
        let r = CacheRules::ethereum();
        let mined = Response::result(
            Id::Null,
            RawJson::from_static(r#"{"blockNumber":"0x10","status":"0x1"}"#).expect("json"),
        );
        assert_eq!(r.after_result(&mined, Line::head(1000)), Some(None));
        assert_eq!(r.after_result(&mined, Line::head(20)), Some(S));
        let pending = Response::result(
            Id::Null,
            RawJson::from_static(r#"{"blockNumber":null}"#).expect("json"),
        );
        assert_eq!(r.after_result(&pending, Line::head(1000)), None);
        let unknown = Response::result(Id::Null, RawJson::NULL);
        assert_eq!(r.after_result(&unknown, Line::head(1000)), None);
    }
}
