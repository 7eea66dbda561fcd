//! Simulated Ethereum upstreams for the demo: small HTTP JSON-RPC servers on
//! 127.0.0.1 that fail the way public providers do. They share one simulated
//! chain (a block a second) so their answers agree, except where a fault
//! says otherwise.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};

/// How an upstream misbehaves.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Up for `up`, then down for `down` (connections accepted and cut
    /// without an answer, or 503s), over and over: a load balancer with dead
    /// nodes behind it.
    Flapping { up: Duration, down: Duration },
    /// Slow (a base latency plus jitter, and now and then a long stall) and
    /// rate limited: over `max_per_second` calls it answers 429 with
    /// `Retry-After: 1`.
    SlowAndLimited {
        base: Duration,
        stall_every: u64,
        stall: Duration,
        max_per_second: u64,
    },
    /// Its node is `blocks` behind the chain, and it drops one call in
    /// `drop_every` mid-request.
    Lagging { blocks: u64, drop_every: u64 },
}

/// What an upstream did, for the demo's summary.
#[derive(Debug, Default)]
pub struct Counters {
    pub calls: AtomicU64,
    /// Connections cut without an answer.
    pub cut: AtomicU64,
    /// 5xx answers.
    pub unavailable: AtomicU64,
    /// 429 answers.
    pub limited: AtomicU64,
    /// Answers held back for longer than a backend timeout.
    pub stalled: AtomicU64,
    /// `eth_blockNumber` answers to clients from a head behind the chain.
    pub stale: AtomicU64,
    /// Head probes, as the proxy sends them: `eth_getBlockByNumber` for
    /// `latest`, `finalized` or `safe`, and `eth_blockNumber` with `[]`
    /// params (the demo's clients send neither).
    pub probes: AtomicU64,
}

impl Counters {
    /// Faults injected so far.
    pub fn faults(&self) -> u64 {
        self.cut.load(Ordering::Relaxed)
            + self.unavailable.load(Ordering::Relaxed)
            + self.limited.load(Ordering::Relaxed)
            + self.stalled.load(Ordering::Relaxed)
    }
}

/// The shared simulated chain: block `GENESIS_HEIGHT` at the start, one more
/// every `BLOCK_TIME`.
#[derive(Clone, Copy, Debug)]
pub struct Chain {
    start: Instant,
}

const GENESIS_HEIGHT: u64 = 19_000_000;
const BLOCK_TIME: Duration = Duration::from_secs(1);
pub const CHAIN_ID: u64 = 420;

impl Chain {
    pub fn new() -> Self {
        Chain {
            start: Instant::now(),
        }
    }

    pub fn head(&self) -> u64 {
        GENESIS_HEIGHT + self.start.elapsed().as_secs() / BLOCK_TIME.as_secs().max(1)
    }
}

/// A running simulated upstream.
pub struct Upstream {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub fault: Fault,
    pub counters: Arc<Counters>,
}

struct State {
    fault: Fault,
    chain: Chain,
    counters: Arc<Counters>,
    started: Instant,
    /// (second, calls in that second) for the rate limit.
    window: Mutex<(u64, u64)>,
}

/// Starts an upstream on 127.0.0.1 (a free port); it runs until the runtime ends.
pub async fn start(name: &'static str, fault: Fault, chain: Chain) -> std::io::Result<Upstream> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let counters = Arc::new(Counters::default());
    let state = Arc::new(State {
        fault,
        chain,
        counters: counters.clone(),
        started: Instant::now(),
        window: Mutex::new((0, 0)),
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), svc);
                let _ = tokio::time::timeout(Duration::from_secs(600), conn).await;
            });
        }
    });
    Ok(Upstream {
        name,
        addr,
        fault,
        counters,
    })
}

/// An error type that makes hyper cut the connection without an answer.
#[derive(Debug)]
struct Cut;
impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection cut by the simulation")
    }
}
impl std::error::Error for Cut {}

type Answer = Result<http::Response<Full<Bytes>>, Cut>;

async fn handle(state: Arc<State>, req: http::Request<hyper::body::Incoming>) -> Answer {
    let n = state.counters.calls.fetch_add(1, Ordering::Relaxed);
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(status(400, None)),
    };
    let mut lag = 0;
    match state.fault {
        Fault::Flapping { up, down } => {
            let period = (up + down).as_millis().max(1) as u64;
            let phase = state.started.elapsed().as_millis() as u64 % period;
            if phase >= up.as_millis() as u64 {
                // Down: half the calls see a cut connection, half a 503.
                if n % 2 == 0 {
                    state.counters.cut.fetch_add(1, Ordering::Relaxed);
                    return Err(Cut);
                }
                state.counters.unavailable.fetch_add(1, Ordering::Relaxed);
                return Ok(status(503, None));
            }
        }
        Fault::SlowAndLimited {
            base,
            stall_every,
            stall,
            max_per_second,
        } => {
            let second = state.started.elapsed().as_secs();
            let over = {
                let mut w = state.window.lock().unwrap_or_else(|p| p.into_inner());
                if w.0 != second {
                    *w = (second, 0);
                }
                w.1 += 1;
                w.1 > max_per_second
            };
            if over {
                state.counters.limited.fetch_add(1, Ordering::Relaxed);
                return Ok(status(429, Some(1)));
            }
            let jitter = Duration::from_micros(mix(n) % (base.as_micros() as u64 + 1));
            let delay = if stall_every > 0 && n % stall_every == stall_every - 1 {
                state.counters.stalled.fetch_add(1, Ordering::Relaxed);
                stall
            } else {
                base + jitter
            };
            tokio::time::sleep(delay).await;
        }
        Fault::Lagging { blocks, drop_every } => {
            if drop_every > 0 && n % drop_every == drop_every - 1 {
                state.counters.cut.fetch_add(1, Ordering::Relaxed);
                return Err(Cut);
            }
            lag = blocks;
        }
    }
    let head = state.chain.head().saturating_sub(lag);
    let answer = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => Value::Array(
            items
                .iter()
                .map(|call| answer(call, head, &state, lag))
                .collect(),
        ),
        Ok(call) => answer(&call, head, &state, lag),
        Err(_) => {
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}})
        }
    };
    let mut resp = http::Response::new(Full::new(Bytes::from(answer.to_string())));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn status(code: u16, retry_after: Option<u64>) -> http::Response<Full<Bytes>> {
    let mut resp = http::Response::new(Full::new(Bytes::from_static(b"unavailable")));
    *resp.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_GATEWAY);
    if let Some(s) = retry_after {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(s));
    }
    resp
}

/// One simulated answer.
fn answer(call: &Value, head: u64, state: &State, lag: u64) -> Value {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let params = call.get("params").cloned().unwrap_or(Value::Null);
    let method = call.get("method").and_then(Value::as_str).unwrap_or("");
    let result = match method {
        "eth_chainId" => json!(format!("{CHAIN_ID:#x}")),
        "net_version" => json!(CHAIN_ID.to_string()),
        "eth_gasPrice" => json!("0x3b9aca00"),
        "eth_blockNumber" => {
            // The proxy's head probes send `"params":[]`; the demo's clients
            // send no params.
            if params == json!([]) {
                state.counters.probes.fetch_add(1, Ordering::Relaxed);
            } else if lag > 0 {
                state.counters.stale.fetch_add(1, Ordering::Relaxed);
            }
            json!(format!("{head:#x}"))
        }
        "eth_getBalance" => json!(format!("{:#x}", mix(hash(&params[0])) >> 8)),
        "eth_call" => json!(format!("0x{:064x}", mix(hash(&params)))),
        "eth_getBlockByNumber" => {
            let tag = params.get(0).and_then(Value::as_str);
            if matches!(tag, Some("latest" | "finalized" | "safe")) {
                state.counters.probes.fetch_add(1, Ordering::Relaxed);
            }
            // Finality as on a proof-of-stake chain: 64 and 32 blocks back.
            let n = match tag {
                Some("latest") | None => Some(head),
                Some("finalized") => head.checked_sub(64),
                Some("safe") => head.checked_sub(32),
                Some(tag) => u64::from_str_radix(tag.trim_start_matches("0x"), 16).ok(),
            };
            match n {
                Some(n) if n <= head => json!({
                    "number": format!("{n:#x}"),
                    "hash": format!("0x{:064x}", mix(n)),
                    "parentHash": format!("0x{:064x}", mix(n.wrapping_sub(1))),
                    "timestamp": format!("{:#x}", 1_700_000_000 + n * 12),
                    "transactions": [],
                }),
                _ => Value::Null,
            }
        }
        _ => {
            return json!({"jsonrpc":"2.0","id":id,"error":{"code":-32601,"message":format!("the method {method} does not exist/is not available")}})
        }
    };
    json!({"jsonrpc":"2.0","id":id,"result":result})
}

fn hash(v: &Value) -> u64 {
    v.to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
}

/// A cheap, well-mixed function of `n` (splitmix64), for deterministic
/// "random" choices.
pub fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
