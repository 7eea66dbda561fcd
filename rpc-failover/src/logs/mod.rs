//! `eth_getLogs` block ranges: refused above a cap before any upstream
//! call, split into chunks sent in parallel, and a provider's own
//! range-limit error turned into smaller chunks instead of reaching the
//! client.
//!
//! [`LogRangeLayer`] sits above a group's retry and failover, so each chunk
//! is retried and failed over on its own:
//!
//! * **the range** is read from `fromBlock` / `toBlock` (absent: `latest`);
//!   `latest`, `pending`, `safe` and `finalized` are resolved against the
//!   group's agreed chain ([`ChainView`]) — never one member's claim — or,
//!   without one, `eth_blockNumber` through the group; a `blockHash` query
//!   is one block and passes through;
//! * **a cap** ([`max_block_range`](LogRangeLayer::max_block_range)): a
//!   wider range is refused with `-32602` naming the range and the cap
//!   (also for `eth_newFilter`, whose range cannot be split);
//! * **splitting** ([`chunk`](LogRangeLayer::chunk)): a range wider than a
//!   chunk is cut into chunks sent `concurrency` at a time, their logs
//!   joined in block order without re-parsing them; a chunk that fails
//!   fails the call with an error naming its blocks;
//! * **provider limits**: an answer such as "query returned more than
//!   10000 results", "block range is too wide" or "exceed maximum block
//!   range" (the big providers' shapes, see [`is_range_limit`]) splits the
//!   range in two (or where the provider suggests) and tries again, down to
//!   single blocks;
//! * **bounded**: the joined answer is at most
//!   [`max_response_bytes`](LogRangeLayer::max_response_bytes) (`-32020`
//!   beyond), and chunks are joined as they arrive in order, so at most
//!   `concurrency` chunk answers are held beside it.
//!
//! ```
//! use rpc_core::test_util::MockBackend;
//! use rpc_failover::logs::LogRangeLayer;
//! use tower::Layer;
//!
//! let group = MockBackend::ok("node", "[]");
//! let service = LogRangeLayer::new()
//!     .max_block_range(100_000)
//!     .chunk(2_000)
//!     .concurrency(4)
//!     .layer(group);
//! # drop(service);
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{StreamExt, TryFutureExt};
use rpc_core::{codes, ChainView, ErrorObject, Id, Payload, RawJson, Request, Response, RpcError};
use serde_json::{Map, Value};
use tower::{Layer, Service, ServiceExt};

/// The `eth_getLogs` range policy of a group; see the [module docs](self).
///
/// | setting | default |
/// |---|---|
/// | [`max_block_range`](Self::max_block_range) | none |
/// | [`chunk`](Self::chunk) | none (ranges are split only when a provider refuses them) |
/// | [`concurrency`](Self::concurrency) | 4 chunks at once |
/// | [`max_response_bytes`](Self::max_response_bytes) | 128 MiB |
/// | [`chain_view`](Self::chain_view) | none (`eth_blockNumber` resolves tags) |
#[derive(Clone, Debug)]
pub struct LogRangeLayer {
    max_range: Option<u64>,
    chunk: Option<u64>,
    concurrency: usize,
    max_bytes: usize,
    view: Option<ChainView>,
}

impl Default for LogRangeLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl LogRangeLayer {
    /// No cap, no splitting until a provider refuses a range.
    pub fn new() -> Self {
        LogRangeLayer {
            max_range: None,
            chunk: None,
            concurrency: 4,
            max_bytes: 128 * 1024 * 1024,
            view: None,
        }
    }

    /// Ranges of more than `blocks` blocks are refused with `-32602`
    /// before any upstream call.
    pub fn max_block_range(mut self, blocks: u64) -> Self {
        self.max_range = Some(blocks.max(1));
        self
    }

    /// Ranges of more than `blocks` blocks are split into chunks of that
    /// many.
    pub fn chunk(mut self, blocks: u64) -> Self {
        self.chunk = Some(blocks.max(1));
        self
    }

    /// Chunks in flight at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The largest joined answer.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Resolves `latest` and friends against the group's agreed chain.
    pub fn chain_view(mut self, view: ChainView) -> Self {
        self.view = Some(view);
        self
    }
}

impl<S> Layer<S> for LogRangeLayer {
    type Service = LogRange<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LogRange {
            inner,
            policy: std::sync::Arc::new(self.clone()),
        }
    }
}

/// The service of [`LogRangeLayer`].
#[derive(Clone, Debug)]
pub struct LogRange<S> {
    inner: S,
    policy: std::sync::Arc<LogRangeLayer>,
}

/// The future of [`LogRange`]: the inner call's for other methods, boxed
/// for `eth_getLogs` and `eth_newFilter` (one allocation beside an
/// upstream round trip or several).
pub type LogRangeFuture<F> = futures_util::future::Either<
    F,
    Pin<Box<dyn Future<Output = Result<Response, RpcError>> + Send>>,
>;

impl<S> Service<Request> for LogRange<S>
where
    S: Service<Request, Response = Response, Error = RpcError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = RpcError;
    type Future = LogRangeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let kind = match req.method() {
            "eth_getLogs" => Kind::GetLogs,
            "eth_newFilter" => Kind::NewFilter,
            _ => return futures_util::future::Either::Left(self.inner.call(req)),
        };
        // The ready service takes this call; a clone serves the next.
        let inner = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, inner);
        let policy = self.policy.clone();
        futures_util::future::Either::Right(Box::pin(run(inner, policy, kind, req)))
    }
}

impl<S> Service<rpc_core::batch::Batch> for LogRange<S>
where
    S: rpc_core::batch::JsonRpcBatchService,
{
    type Response = rpc_core::batch::BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = rpc_core::batch::PassOrBoxed<<S as Service<rpc_core::batch::Batch>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<rpc_core::batch::Batch>::poll_ready(&mut self.inner, cx)
    }

    /// `eth_getLogs` and `eth_newFilter` calls as single calls (checked,
    /// split); the others go on as one batch.
    fn call(&mut self, batch: rpc_core::batch::Batch) -> Self::Future {
        let this = self.clone();
        rpc_core::batch::split_apart(this, &mut self.inner, batch, |call| {
            matches!(call.method(), "eth_getLogs" | "eth_newFilter")
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    GetLogs,
    NewFilter,
}

/// The filter object of a call, if it has one to check.
fn filter_of(req: &Request) -> Option<Map<String, Value>> {
    let params: Vec<Value> = req.params()?.deserialize().ok()?;
    match params.into_iter().next()? {
        Value::Object(filter) if !filter.contains_key("blockHash") => Some(filter),
        _ => None,
    }
}

/// A block parameter: a number, or a tag to resolve.
enum Block {
    Number(u64),
    Tag(Tag),
}

#[derive(Clone, Copy)]
enum Tag {
    Latest,
    Finalized,
    Earliest,
}

fn block_param(v: Option<&Value>) -> Option<Block> {
    match v {
        None | Some(Value::Null) => Some(Block::Tag(Tag::Latest)),
        Some(Value::String(s)) => match s.as_str() {
            "latest" | "pending" => Some(Block::Tag(Tag::Latest)),
            "safe" | "finalized" => Some(Block::Tag(Tag::Finalized)),
            "earliest" => Some(Block::Tag(Tag::Earliest)),
            hex => u64::from_str_radix(hex.strip_prefix("0x")?, 16)
                .ok()
                .map(Block::Number),
        },
        _ => None,
    }
}

/// The agreed head: the chain view's, else `eth_blockNumber` through the
/// group.
async fn head<S>(inner: S, policy: &LogRangeLayer, req: &Request) -> Option<u64>
where
    S: Service<Request, Response = Response, Error = RpcError>,
{
    if let Some(view) = &policy.view {
        let agreed = view.get();
        if agreed.head > 0 {
            return Some(agreed.head);
        }
    }
    let mut ask = Request::new("eth_blockNumber")
        .with_id(Id::from(1u64))
        .with_params(RawJson::from_static("[]").ok()?);
    *ask.extensions_mut() = req.extensions().clone();
    let resp = inner.oneshot(ask).await.ok()?;
    match resp.payload() {
        Payload::Result(raw) => {
            let hex: String = raw.deserialize().ok()?;
            u64::from_str_radix(hex.strip_prefix("0x")?, 16).ok()
        }
        Payload::Error(_) => None,
    }
}

/// Resolves a block parameter.
async fn resolve<S>(inner: S, policy: &LogRangeLayer, req: &Request, block: Block) -> Option<u64>
where
    S: Service<Request, Response = Response, Error = RpcError>,
{
    match block {
        Block::Number(n) => Some(n),
        Block::Tag(Tag::Earliest) => Some(0),
        Block::Tag(Tag::Latest) => head(inner, policy, req).await,
        Block::Tag(Tag::Finalized) => match policy.view.as_ref().and_then(|v| v.get().finalized) {
            Some(n) => Some(n),
            // Without a known finalized block the node resolves it: at most
            // the head, which is what the range is checked against.
            None => head(inner, policy, req).await,
        },
    }
}

fn hex(n: u64) -> String {
    format!("{n:#x}")
}

fn refuse(id: Id, code: i64, message: String) -> Response {
    Response::error(id, ErrorObject::new(code, message))
}

async fn run<S>(
    inner: S,
    policy: std::sync::Arc<LogRangeLayer>,
    kind: Kind,
    req: Request,
) -> Result<Response, RpcError>
where
    S: Service<Request, Response = Response, Error = RpcError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let Some(filter) = filter_of(&req) else {
        return inner.oneshot(req).await;
    };
    let (Some(from), Some(to)) = (
        block_param(filter.get("fromBlock")),
        block_param(filter.get("toBlock")),
    ) else {
        // Not a range we understand: the node says what is wrong.
        return inner.oneshot(req).await;
    };
    let numeric = matches!((&from, &to), (Block::Number(_), Block::Number(_)));
    if !numeric && policy.max_range.is_none() && policy.chunk.is_none() {
        // Nothing to check before the call; a provider's range error is
        // still handled below (tags resolved then).
        let first = inner.clone().oneshot(req.clone()).await?;
        if kind == Kind::NewFilter || !refused_for_range(&first) {
            return Ok(first);
        }
        let (Some(from), Some(to)) = (
            resolve(inner.clone(), &policy, &req, from).await,
            resolve(inner.clone(), &policy, &req, to).await,
        ) else {
            return Ok(first);
        };
        return split(inner, &policy, req, filter, from, to, Some(first)).await;
    }
    let id = req.id().cloned().unwrap_or(Id::Null);
    let (Some(from), Some(to)) = (
        resolve(inner.clone(), &policy, &req, from).await,
        resolve(inner.clone(), &policy, &req, to).await,
    ) else {
        return inner.oneshot(req).await;
    };
    if from > to {
        // The node's own answer (empty, or its error).
        return inner.oneshot(req).await;
    }
    let blocks = to - from + 1;
    if let Some(max) = policy.max_range {
        if blocks > max {
            return Ok(refuse(
                id,
                codes::INVALID_PARAMS,
                format!(
                    "{} over {blocks} blocks ({}..{}); this endpoint serves at most {max} blocks per call: narrow fromBlock/toBlock",
                    req.method(),
                    hex(from),
                    hex(to)
                ),
            ));
        }
    }
    if kind == Kind::NewFilter {
        return inner.oneshot(req).await;
    }
    match policy.chunk {
        Some(chunk) if blocks > chunk => split(inner, &policy, req, filter, from, to, None).await,
        _ => {
            let first = inner.clone().oneshot(req.clone()).await?;
            if !refused_for_range(&first) {
                return Ok(first);
            }
            split(inner, &policy, req, filter, from, to, Some(first)).await
        }
    }
}

/// Whether an answer is a provider's range-limit refusal.
fn refused_for_range(resp: &Response) -> bool {
    match resp.payload() {
        Payload::Error(e) => is_range_limit(e.message()),
        Payload::Result(_) => false,
    }
}

/// Whether `message` is one of the big providers' range-limit refusals:
/// "query returned more than 10000 results" (Infura, Alchemy), "block
/// range is too wide" / "block range too large" / "exceed maximum block
/// range: 5000" / "block range limit exceeded" (QuickNode, Ankr, BlastAPI,
/// nodes' `--rpc.getlogs` limits), "eth_getLogs is limited to a 10,000
/// range", "ranges over 10000 blocks are not supported", "Log response
/// size exceeded", "query exceeds max results".
///
/// ```
/// use rpc_failover::logs::is_range_limit;
///
/// assert!(is_range_limit("query returned more than 10000 results. Try with this block range [0x1, 0x2]."));
/// assert!(is_range_limit("exceed maximum block range: 5000"));
/// assert!(!is_range_limit("execution reverted"));
/// ```
pub fn is_range_limit(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("query returned more than")
        || m.contains("query exceeds max results")
        || m.contains("response size exceeded")
        || m.contains("response size should not")
        || m.contains("limited to a")
        || (m.contains("ranges over") && m.contains("not supported"))
        || (m.contains("range")
            && (m.contains("too large")
                || m.contains("too wide")
                || m.contains("too big")
                || m.contains("exceed")
                || m.contains("limit")))
}

/// A provider's suggested range ("[0x1, 0x2]" in its message), if any.
fn suggested_end(message: &str, from: u64, to: u64) -> Option<u64> {
    let open = message.find('[')?;
    let close = message[open..].find(']')? + open;
    let mut parts = message[open + 1..close].split(',');
    let start = u64::from_str_radix(parts.next()?.trim().strip_prefix("0x")?, 16).ok()?;
    let end = u64::from_str_radix(parts.next()?.trim().strip_prefix("0x")?, 16).ok()?;
    (start == from && end >= from && end < to).then_some(end)
}

/// The most chunks one call is cut into (single blocks at worst).
const MAX_CHUNKS: usize = 100_000;

/// Splits `from..=to` (by `policy.chunk`, else in two — or where the
/// provider suggested — after `first`, its refusal), sends the chunks
/// `concurrency` at a time and joins their logs in order; a refused chunk
/// is split again.
async fn split<S>(
    inner: S,
    policy: &LogRangeLayer,
    req: Request,
    filter: Map<String, Value>,
    from: u64,
    to: u64,
    first: Option<Response>,
) -> Result<Response, RpcError>
where
    S: Service<Request, Response = Response, Error = RpcError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let id = req.id().cloned().unwrap_or(Id::Null);
    // Work list of ranges, in block order.
    let mut ranges: std::collections::VecDeque<(u64, u64)> = std::collections::VecDeque::new();
    match (policy.chunk, &first) {
        (_, Some(refusal)) => {
            let message = match refusal.payload() {
                Payload::Error(e) => e.message().to_owned(),
                Payload::Result(_) => String::new(),
            };
            let mid = suggested_end(&message, from, to).unwrap_or(from + (to - from) / 2);
            if from == to {
                return Ok(first.unwrap_or_else(|| refuse(id, codes::INVALID_PARAMS, message)));
            }
            ranges.push_back((from, mid));
            ranges.push_back((mid + 1, to));
        }
        (Some(chunk), None) => {
            let mut start = from;
            while start <= to {
                let end = start.saturating_add(chunk - 1).min(to);
                ranges.push_back((start, end));
                if end == u64::MAX {
                    break;
                }
                start = end + 1;
            }
        }
        (None, None) => ranges.push_back((from, to)),
    }
    metrics::counter!("rpc_getlogs_split_total").increment(1);
    let mut joined = rpc_core::ArrayJoiner::new(policy.max_bytes);
    let mut chunks = 0usize;
    // Ranges are taken in order, `concurrency` in flight; a refused one is
    // replaced by its halves at the front of the list.
    while !ranges.is_empty() {
        let wave: Vec<(u64, u64)> = ranges
            .drain(..policy.concurrency.min(ranges.len()))
            .collect();
        chunks += wave.len();
        if chunks > MAX_CHUNKS {
            return Ok(refuse(
                id,
                codes::INVALID_PARAMS,
                format!(
                    "{} over blocks {}..{} needs more than {MAX_CHUNKS} calls; narrow the range or the filter",
                    req.method(),
                    hex(from),
                    hex(to)
                ),
            ));
        }
        let calls = wave.iter().map(|&(a, b)| {
            let mut chunk_filter = filter.clone();
            chunk_filter.insert("fromBlock".to_owned(), Value::String(hex(a)));
            chunk_filter.insert("toBlock".to_owned(), Value::String(hex(b)));
            let params = RawJson::from_serialize(&[Value::Object(chunk_filter)]);
            let mut chunk = req.clone();
            let inner = inner.clone();
            async move {
                let params = params.map_err(|e| RpcError::Internal(e.to_string()))?;
                chunk = chunk.with_params(params);
                inner.oneshot(chunk).await
            }
            .map_ok(move |resp| ((a, b), resp))
        });
        // Made now: each future owns its clones (nothing borrowed is held
        // across the awaits below).
        let calls: Vec<_> = calls.collect();
        let mut answers = futures_util::stream::iter(calls).buffered(policy.concurrency);
        let mut refused: Vec<(u64, u64)> = Vec::new();
        let mut done: Vec<((u64, u64), Response)> = Vec::new();
        while let Some(answer) = answers.next().await {
            let ((a, b), resp) = match answer {
                Ok(x) => x,
                Err(e) => {
                    return Ok(refuse(
                        id,
                        e.to_error_object().code(),
                        format!(
                            "{} failed for blocks {}..{}: {e}",
                            req.method(),
                            hex(from),
                            hex(to)
                        ),
                    ))
                }
            };
            match resp.payload() {
                Payload::Error(e) if is_range_limit(e.message()) && a < b => {
                    refused.push((a, b));
                    done.push(((a, b), resp));
                }
                Payload::Error(e) => {
                    return Ok(refuse(
                        id,
                        e.code(),
                        format!(
                            "{} failed for blocks {}..{}: {}",
                            req.method(),
                            hex(a),
                            hex(b),
                            e.message()
                        ),
                    ))
                }
                Payload::Result(_) => done.push(((a, b), resp)),
            }
        }
        if refused.is_empty() {
            for (_, resp) in done {
                if let Err(e) = append(&mut joined, &resp) {
                    return Ok(Response::error(id, e));
                }
            }
            continue;
        }
        // Keep order: the wave's answers before the first refused range are
        // joined; that range is halved, and it and the rest go back first.
        let mut redo: Vec<(u64, u64)> = Vec::new();
        let mut ok_prefix = true;
        for ((a, b), resp) in done {
            if ok_prefix && !refused.contains(&(a, b)) {
                if let Err(e) = append(&mut joined, &resp) {
                    return Ok(Response::error(id, e));
                }
                continue;
            }
            ok_prefix = false;
            if refused.contains(&(a, b)) {
                let message = match resp.payload() {
                    Payload::Error(e) => e.message().to_owned(),
                    Payload::Result(_) => String::new(),
                };
                let mid = suggested_end(&message, a, b).unwrap_or(a + (b - a) / 2);
                redo.push((a, mid));
                redo.push((mid + 1, b));
            } else {
                redo.push((a, b));
            }
        }
        for r in redo.into_iter().rev() {
            ranges.push_front(r);
        }
    }
    let result = joined.finish();
    Ok(Response::result(id, result))
}

/// Appends the logs of a chunk's answer (an array); the error to answer
/// with when they do not fit or are not logs.
fn append(joined: &mut rpc_core::ArrayJoiner, resp: &Response) -> Result<(), ErrorObject> {
    let Payload::Result(raw) = resp.payload() else {
        return Ok(());
    };
    joined.push(raw).map_err(|e| match e {
        rpc_core::JoinError::TooLarge(max) => ErrorObject::new(
            codes::RESPONSE_TOO_LARGE,
            format!(
                "the logs of this range are more than {max} bytes; narrow the range or the filter"
            ),
        ),
        rpc_core::JoinError::NotAnArray => ErrorObject::new(
            codes::INTERNAL_ERROR,
            "a node answered eth_getLogs with something other than a list",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_big_providers_range_refusals_are_recognised() {
        for message in [
            "query returned more than 10000 results. Try with this block range [0x1, 0x2710].",
            "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
            "eth_getLogs is limited to a 10,000 range",
            "block range is too wide",
            "exceed maximum block range: 5000",
            "Block range limit exceeded",
            "eth_getLogs block range too large, range: 20001, max: 10000",
            "ranges over 10000 blocks are not supported",
            "query exceeds max results 20000, retry with the range 1-500",
        ] {
            assert!(is_range_limit(message), "{message}");
        }
        for message in [
            "execution reverted",
            "header not found",
            "invalid argument 0: hex string without 0x prefix",
            "filter not found",
        ] {
            assert!(!is_range_limit(message), "{message}");
        }
    }

    #[test]
    fn a_suggested_range_is_taken_only_when_it_narrows_this_one() {
        let m = "query returned more than 10000 results. Try with this block range [0x10, 0x1f].";
        assert_eq!(suggested_end(m, 0x10, 0x100), Some(0x1f));
        // Another start, or no narrowing: ignored (halving instead).
        assert_eq!(suggested_end(m, 0x11, 0x100), None);
        assert_eq!(suggested_end(m, 0x10, 0x1f), None);
        assert_eq!(suggested_end("block range is too wide", 0, 9), None);
    }
}
