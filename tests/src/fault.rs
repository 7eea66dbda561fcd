//! An in-repo upstream for faults a real node cannot produce on demand
//! (errors, stalls, lies, forks), and a scripted chain behind it.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// An in-repo HTTP upstream that answers JSON-RPC and injects faults by method
/// name. Anything else is echoed as `{"method": .., "params": ..}`.
///
/// | method | answer |
/// |---|---|
/// | `fault_status` `[code]` | that HTTP status, text body |
/// | `fault_429` | 429 with `Retry-After: 3` |
/// | `fault_garbage` | 200 with an HTML body |
/// | `fault_truncated` | 200 with half a JSON object |
/// | `fault_wrong_id` | 200, answer under another id |
/// | `fault_slow` `[ms]` | echo after the delay (in a batch: the whole answer, after the longest) |
/// | `fault_drop` | connection closed without an answer |
/// | `fault_huge` `[bytes]` | a string result of that size (in a batch too) |
/// | `fault_rpc_error` | 200 with error object code 3 |
/// | `fault_400_rpc_error` | 400 with a `-32602` error object |
/// | `echo_request` | the request's headers and raw body (in a batch: the headers) |
pub struct FaultUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// HTTP requests received, by anyone (a batch is one).
    pub calls: Arc<AtomicUsize>,
    /// JSON-RPC calls received (each item of a batch counts).
    pub items: Arc<AtomicUsize>,
    /// TCP connections accepted.
    pub connections: Arc<AtomicUsize>,
    batch: Arc<std::sync::Mutex<BatchMode>>,
    task: tokio::task::JoinHandle<()>,
}

/// How a [`FaultUpstream`] answers a JSON-RPC batch (an array body): each
/// item as a single call would be answered (the chain's methods,
/// `fault_rpc_error`, else the echo), shaped by the mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchMode {
    /// Every item answered, in order.
    #[default]
    Answer,
    /// Every item answered, in reverse order.
    Reversed,
    /// The last item's answer left out.
    DropLast,
    /// The first item's answer sent twice (the second time last).
    DuplicateFirst,
    /// One error object (id null) for the whole batch, status 200.
    OneError,
    /// HTTP 400 with an error object: batches are not served.
    Refuse400,
    /// Batches of more than this many items get one error object.
    Limit(usize),
    /// Batches are answered with this HTTP status (a text body).
    Status(u16),
}

impl Drop for FaultUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultUpstream {
    /// Starts it on an ephemeral loopback port.
    pub async fn start() -> FaultUpstream {
        Self::start_with(None, None).await
    }

    /// Starts one that treats *every* call as `method` (e.g. `fault_garbage`:
    /// a backend that only ever answers garbage).
    pub async fn start_always(method: &'static str) -> FaultUpstream {
        Self::start_with(None, Some(method)).await
    }

    /// Starts one that answers every call (as [`start`](Self::start) does)
    /// only after `delay`: keeps calls in flight, e.g. to see them coalesce.
    pub async fn start_delayed(delay: Duration) -> FaultUpstream {
        Self::start_full(None, None, delay).await
    }

    /// Starts one whose node is at `head`: `eth_blockNumber` answers it (as
    /// a hex quantity), everything else as [`start`](Self::start) does. For
    /// a backend that is connected and answering but behind.
    pub async fn start_at_head(head: Arc<std::sync::atomic::AtomicU64>) -> FaultUpstream {
        Self::start_chain(ScriptedChain::at(head)).await
    }

    /// Starts one serving a scripted chain (see [`ScriptedChain`]):
    /// heads, blocks with hashes, forks and finality a test sets at will,
    /// for nodes that lie, roll back or fork.
    pub async fn start_chain(chain: ScriptedChain) -> FaultUpstream {
        Self::start_inner(None, None, Duration::ZERO, Some(chain)).await
    }

    /// Starts it serving HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with `tls`.
    pub async fn start_tls(tls: Arc<rustls::ServerConfig>) -> FaultUpstream {
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(tls)), None).await
    }

    async fn start_with(
        tls: Option<tokio_rustls::TlsAcceptor>,
        always: Option<&'static str>,
    ) -> FaultUpstream {
        Self::start_full(tls, always, Duration::ZERO).await
    }

    async fn start_full(
        tls: Option<tokio_rustls::TlsAcceptor>,
        always: Option<&'static str>,
        delay: Duration,
    ) -> FaultUpstream {
        Self::start_inner(tls, always, delay, None).await
    }

    async fn start_inner(
        tls: Option<tokio_rustls::TlsAcceptor>,
        always: Option<&'static str>,
        delay: Duration,
        head: Option<ScriptedChain>,
    ) -> FaultUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let calls = Arc::new(AtomicUsize::new(0));
        let items = Arc::new(AtomicUsize::new(0));
        let batch = Arc::new(std::sync::Mutex::new(BatchMode::default()));
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Counters {
            requests: calls.clone(),
            items: items.clone(),
            batch: batch.clone(),
        };
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let counter = counter.clone();
                let tls = tls.clone();
                let head = head.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        let head = head.clone();
                        async move {
                            tokio::time::sleep(delay).await;
                            fault_answer(req, &counter, always, head.as_ref()).await
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(tls) => {
                            let handshake =
                                tokio::time::timeout(Duration::from_secs(5), tls.accept(stream));
                            if let Ok(Ok(stream)) = handshake.await {
                                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                    }
                });
            }
        });
        FaultUpstream {
            addr,
            calls,
            items,
            connections,
            batch,
            task,
        }
    }

    /// How batches are answered from now on.
    pub fn set_batch_mode(&self, mode: BatchMode) {
        *self.batch.lock().expect("lock") = mode;
    }

    /// Waits (up to 10 s) until at least `n` calls have arrived.
    pub async fn wait_for_calls(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.calls.load(Ordering::SeqCst) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fewer than {n} calls arrived within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `http://` URL of the upstream.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

pub(crate) type Answer = Result<http::Response<Full<Bytes>>, std::io::Error>;

/// The contract address every block of a [`ScriptedChain`] has one log from.
pub const LOG_ADDRESS: &str = "0x00000000000000000000000000000000000c0ffe";

/// A chain a [`FaultUpstream`] serves, scripted by the test through shared
/// atomics: its head, which fork its recent blocks are on, its finalized
/// block. Answers `eth_blockNumber`, `eth_getBlockByNumber` (a tag or a
/// number: number, hash, parent hash), `eth_getBlockByHash`, `eth_getLogs`
/// by block hash (one log per block, see [`ScriptedChain::log`]),
/// `eth_getBalance` (a value that names the block and fork it was read at:
/// `block * 256 + fork`) and `eth_chainId`; anything else as the plain
/// upstream does.
#[derive(Clone, Debug, Default)]
pub struct ScriptedChain {
    /// The head it reports.
    pub head: Arc<std::sync::atomic::AtomicU64>,
    /// The fork blocks above `fork_from` are on (0: the common chain).
    pub fork: Arc<std::sync::atomic::AtomicU64>,
    /// The last block of the common chain.
    pub fork_from: Arc<std::sync::atomic::AtomicU64>,
    /// Its finalized block + 1 (0: it does not report finality).
    pub finalized: Arc<std::sync::atomic::AtomicU64>,
    /// `eth_getLogs` over more blocks than this is refused the way
    /// Infura and Alchemy do (0: no limit).
    pub log_limit: Arc<std::sync::atomic::AtomicU64>,
    /// `eth_getLogs` over a range holding this block - 1 fails with
    /// `-32000` (0: none).
    pub log_fail: Arc<std::sync::atomic::AtomicU64>,
    /// `eth_getLogs` calls answered.
    pub log_calls: Arc<AtomicUsize>,
}

impl ScriptedChain {
    /// A chain at `head`, on the common chain, without finality.
    pub fn new(head: u64) -> Self {
        Self::at(Arc::new(std::sync::atomic::AtomicU64::new(head)))
    }

    fn at(head: Arc<std::sync::atomic::AtomicU64>) -> Self {
        ScriptedChain {
            head,
            ..Default::default()
        }
    }

    /// Moves its head (up or down).
    pub fn set_head(&self, head: u64) {
        self.head.store(head, Ordering::SeqCst);
    }

    /// Its blocks above `from` are on fork `fork` from now on (0: back on
    /// the common chain).
    pub fn fork(&self, fork: u64, from: u64) {
        self.fork_from.store(from, Ordering::SeqCst);
        self.fork.store(fork, Ordering::SeqCst);
    }

    /// Reports `n` as finalized (and safe).
    pub fn finalize(&self, n: u64) {
        self.finalized.store(n + 1, Ordering::SeqCst);
    }

    fn fork_at(&self, n: u64) -> u64 {
        if n > self.fork_from.load(Ordering::SeqCst) {
            self.fork.load(Ordering::SeqCst)
        } else {
            0
        }
    }

    /// The hash of block `n` on this chain.
    pub fn hash(&self, n: u64) -> String {
        format!(
            "0x{:016x}{:048x}",
            self.fork_at(n) * 1_000_000_007 + n + 1,
            0
        )
    }

    /// The block number and fork a hash of this chain names, if it is
    /// one of its blocks now.
    fn block_of(&self, hash: &str) -> Option<u64> {
        let hex = hash.strip_prefix("0x")?;
        let tag = u64::from_str_radix(hex.get(..16)?, 16).ok()?;
        let n = (tag % 1_000_000_007).checked_sub(1)?;
        (n <= self.head.load(Ordering::SeqCst) && self.hash(n) == hash).then_some(n)
    }

    /// The one log of block `n`: from [`LOG_ADDRESS`], its data the block
    /// number.
    pub fn log(&self, n: u64) -> Value {
        json!({
            "address": LOG_ADDRESS,
            "topics": [format!("0x{:064x}", 0xfeed)],
            "data": format!("0x{n:064x}"),
            "blockNumber": format!("{n:#x}"),
            "blockHash": self.hash(n),
            "transactionHash": format!("0x{:064x}", n + 0xabc),
            "transactionIndex": "0x0",
            "logIndex": "0x0",
            "removed": false,
        })
    }

    pub(crate) fn block(&self, n: u64) -> Value {
        json!({
            "number": format!("{n:#x}"),
            "hash": self.hash(n),
            "parentHash": self.hash(n.saturating_sub(1)),
            "timestamp": format!("{:#x}", 1_700_000_000 + n),
            "transactions": [],
        })
    }

    fn block_at(&self, tag: &Value) -> Option<u64> {
        let head = self.head.load(Ordering::SeqCst);
        match tag.as_str().unwrap_or("latest") {
            "latest" | "pending" => Some(head),
            "earliest" => Some(0),
            "finalized" | "safe" => self.finalized.load(Ordering::SeqCst).checked_sub(1),
            hex => u64::from_str_radix(hex.trim_start_matches("0x"), 16)
                .ok()
                .filter(|&n| n <= head),
        }
    }

    /// The answer to a call of one of its methods: a result, or an error
    /// object.
    pub(crate) fn answer_call(&self, method: &str, params: &Value) -> Option<Result<Value, Value>> {
        if method == "eth_getLogs" && !params[0]["blockHash"].is_string() {
            return Some(self.logs_in_range(&params[0]));
        }
        self.answer(method, params).map(Ok)
    }

    /// `eth_getLogs` by range: one log per block, limits and failures as
    /// scripted.
    fn logs_in_range(&self, q: &Value) -> Result<Value, Value> {
        self.log_calls.fetch_add(1, Ordering::SeqCst);
        let head = self.head.load(Ordering::SeqCst);
        let at = |v: &Value| match v.as_str().unwrap_or("latest") {
            "latest" | "pending" | "safe" | "finalized" => Some(head),
            "earliest" => Some(0),
            hex => u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok(),
        };
        let (Some(from), Some(to)) = (at(&q["fromBlock"]), at(&q["toBlock"])) else {
            return Err(json!({"code": -32602, "message": "invalid block range"}));
        };
        let to = to.min(head);
        if from > to {
            return Ok(json!([]));
        }
        let limit = self.log_limit.load(Ordering::SeqCst);
        if limit > 0 && to - from + 1 > limit {
            let end = from + limit - 1;
            return Err(json!({"code": -32005, "message": format!(
                "query returned more than 10000 results. Try with this block range [{from:#x}, {end:#x}]."
            )}));
        }
        let fail = self.log_fail.load(Ordering::SeqCst);
        if fail > 0 && (from..=to).contains(&(fail - 1)) {
            return Err(json!({"code": -32000, "message": "header not found"}));
        }
        let address_ok = match &q["address"] {
            Value::Null => true,
            Value::String(a) => a.eq_ignore_ascii_case(LOG_ADDRESS),
            _ => true,
        };
        if !address_ok {
            return Ok(json!([]));
        }
        Ok(Value::Array((from..=to).map(|n| self.log(n)).collect()))
    }

    pub(crate) fn answer(&self, method: &str, params: &Value) -> Option<Value> {
        Some(match method {
            "eth_getBlockByHash" => match params[0].as_str().and_then(|h| self.block_of(h)) {
                Some(n) => self.block(n),
                None => Value::Null,
            },
            // By block hash (EIP-234): the block's one log if the filter's
            // address matches.
            "eth_getLogs" if params[0]["blockHash"].is_string() => {
                let q = &params[0];
                let address_ok = match &q["address"] {
                    Value::Null => true,
                    Value::String(a) => a.eq_ignore_ascii_case(LOG_ADDRESS),
                    Value::Array(list) => list.iter().any(|a| {
                        a.as_str()
                            .is_some_and(|a| a.eq_ignore_ascii_case(LOG_ADDRESS))
                    }),
                    _ => false,
                };
                match q["blockHash"].as_str().and_then(|h| self.block_of(h)) {
                    Some(n) if address_ok => json!([self.log(n)]),
                    Some(_) => json!([]),
                    None => return Some(json!({"unknown block": q["blockHash"]})),
                }
            }
            "eth_blockNumber" => json!(format!("{:#x}", self.head.load(Ordering::SeqCst))),
            "eth_chainId" => json!("0x1"),
            "eth_getBlockByNumber" => match self.block_at(&params[0]) {
                Some(n) => self.block(n),
                None => Value::Null,
            },
            "eth_getBalance" => match self.block_at(&params[1]) {
                Some(n) => json!(format!("{:#x}", n * 256 + self.fork_at(n))),
                None => json!({"unknown block": params[1]}),
            },
            _ => return None,
        })
    }
}

/// What a [`FaultUpstream`] counts, and its batch mode.
#[derive(Clone)]
struct Counters {
    requests: Arc<AtomicUsize>,
    items: Arc<AtomicUsize>,
    batch: Arc<std::sync::Mutex<BatchMode>>,
}

/// The answer to one item of a batch.
fn batch_item(item: &Value, chain: Option<&ScriptedChain>) -> Value {
    let (id, method, params) = (
        &item["id"],
        item["method"].as_str().unwrap_or(""),
        &item["params"],
    );
    match chain.and_then(|c| c.answer_call(method, params)) {
        Some(Ok(result)) => return json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Some(Err(error)) => return json!({"jsonrpc": "2.0", "id": id, "error": error}),
        None => {}
    }
    if method == "fault_rpc_error" {
        return json!({"jsonrpc": "2.0", "id": id, "error": {"code": 3, "message": "execution reverted", "data": "0x08c379a0"}});
    }
    if method == "fault_huge" {
        let len = params[0].as_u64().unwrap_or(0) as usize;
        return json!({"jsonrpc": "2.0", "id": id, "result": "x".repeat(len)});
    }
    json!({"jsonrpc": "2.0", "id": id, "result": {"method": method, "params": params}})
}

/// An answer with `status` and a JSON `body`.
pub(crate) fn reply(status: u16, body: String) -> Answer {
    let mut resp = http::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).map_err(std::io::Error::other)?;
    resp.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// A batch body's answer, shaped by `mode`.
fn batch_answer(
    body: &[u8],
    mode: BatchMode,
    counters: &Counters,
    chain: Option<&ScriptedChain>,
    headers: &serde_json::Map<String, Value>,
) -> Answer {
    let items: Vec<Value> = serde_json::from_slice(body).unwrap_or_default();
    counters.items.fetch_add(items.len(), Ordering::SeqCst);
    let refusal = |message: String| {
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": message}})
            .to_string()
    };
    match mode {
        BatchMode::Refuse400 => {
            return reply(400, refusal("batch requests are not supported".to_owned()))
        }
        BatchMode::OneError => {
            return reply(200, refusal("batch requests are not supported".to_owned()))
        }
        BatchMode::Status(code) => return reply(code, "upstream trouble".to_owned()),
        BatchMode::Limit(n) if items.len() > n => {
            return reply(
                200,
                refusal(format!("batch of {} exceeds the limit of {n}", items.len())),
            )
        }
        _ => {}
    }
    let mut answers: Vec<Value> = items
        .iter()
        .map(|item| match item["method"].as_str() {
            // The batch request's headers, for each item that asks.
            Some("echo_request") => {
                json!({"jsonrpc": "2.0", "id": item["id"], "result": {"headers": headers}})
            }
            _ => batch_item(item, chain),
        })
        .collect();
    match mode {
        BatchMode::Reversed => answers.reverse(),
        BatchMode::DropLast => {
            answers.pop();
        }
        BatchMode::DuplicateFirst => {
            if let Some(first) = answers.first().cloned() {
                answers.push(first);
            }
        }
        _ => {}
    }
    reply(200, Value::Array(answers).to_string())
}

async fn fault_answer(
    req: http::Request<hyper::body::Incoming>,
    counters: &Counters,
    always: Option<&'static str>,
    chain: Option<&ScriptedChain>,
) -> Answer {
    counters.requests.fetch_add(1, Ordering::SeqCst);
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                Value::String(v.to_str().unwrap_or("").to_owned()),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    if always.is_none() && body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        let mode = *counters.batch.lock().expect("lock");
        // A slow item holds the whole batch's answer.
        let slowest = serde_json::from_slice::<Vec<Value>>(&body)
            .unwrap_or_default()
            .iter()
            .filter(|item| item["method"] == "fault_slow")
            .filter_map(|item| item["params"][0].as_u64())
            .max();
        if let Some(ms) = slowest {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        return batch_answer(&body, mode, counters, chain, &headers);
    }
    counters.items.fetch_add(1, Ordering::SeqCst);
    // Read id and method without building a tree, so deeply nested params
    // (which `Value` refuses past 128 levels) are still answered.
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        id: Option<&'a serde_json::value::RawValue>,
        method: Option<String>,
        #[serde(borrow)]
        params: Option<&'a serde_json::value::RawValue>,
    }
    let head: Head<'_> = serde_json::from_slice(&body).unwrap_or(Head {
        id: None,
        method: None,
        params: None,
    });
    let id: Value = head.id.map_or(Value::Null, |raw| {
        serde_json::from_str(raw.get()).unwrap_or(Value::Null)
    });
    let method = always.map_or_else(|| head.method.unwrap_or_default(), str::to_owned);
    let params_bytes = head.params.map_or(0, |p| p.get().len());
    let params: Value = head
        .params
        .and_then(|p| serde_json::from_str(p.get()).ok())
        .unwrap_or(Value::Null);
    let arg = params[0].as_u64().unwrap_or(0);
    let ok = |result: Value| {
        reply(
            200,
            json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string(),
        )
    };
    if let Some(chain) = chain {
        match chain.answer_call(&method, &params) {
            Some(Ok(result)) => return ok(result),
            Some(Err(error)) => {
                return reply(
                    200,
                    json!({"jsonrpc": "2.0", "id": id, "error": error}).to_string(),
                )
            }
            None => {}
        }
    }
    match method.as_str() {
        "fault_status" => reply(arg as u16, "upstream trouble".to_owned()),
        "fault_429" => {
            let mut resp = reply(429, "slow down".to_owned())?;
            resp.headers_mut().insert("retry-after", http::HeaderValue::from_static("3"));
            Ok(resp)
        }
        "fault_garbage" => reply(200, "<html><body>502 Bad Gateway</body></html>".to_owned()),
        "fault_truncated" => reply(200, format!(r#"{{"jsonrpc":"2.0","id":{id},"resu"#)),
        "fault_wrong_id" => reply(200, json!({"jsonrpc": "2.0", "id": 424242, "result": 1}).to_string()),
        "fault_slow" => {
            tokio::time::sleep(Duration::from_millis(arg)).await;
            ok(json!({"method": method, "params": params}))
        }
        "fault_drop" => Err(std::io::Error::other("dropping the connection on purpose")),
        "fault_huge" => ok(Value::String("x".repeat(arg as usize))),
        "fault_rpc_error" => reply(
            200,
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": 3, "message": "execution reverted", "data": "0x08c379a0"}}).to_string(),
        ),
        "fault_400_rpc_error" => reply(
            400,
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": "invalid argument 0"}}).to_string(),
        ),
        "echo_request" => ok(json!({
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        })),
        _ => ok(json!({"method": method, "params": params, "params_bytes": params_bytes})),
    }
}
