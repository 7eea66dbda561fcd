//! `rpc-proxy --demo`: three simulated upstreams that fail the way public
//! providers do, the full stack in front of them (configured from the TOML
//! text below, the same format as `--config`), a bounded client load with
//! live progress, a summary, then the proxy left running for `curl`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::{Config, Source};
use crate::sim::{self, Chain, Fault, Upstream};

/// The demo's options.
#[derive(Debug, Clone)]
pub struct DemoArgs {
    /// Calls the client sends.
    pub calls: usize,
    /// Exit after the summary instead of serving until Ctrl-C.
    pub exit: bool,
    /// Where the proxy listens (default: 127.0.0.1:8545, or a free port if taken).
    pub listen: Option<SocketAddr>,
}

impl Default for DemoArgs {
    fn default() -> Self {
        DemoArgs {
            calls: 6000,
            exit: false,
            listen: None,
        }
    }
}

/// Client concurrency (connections) and pace of the load.
const WORKERS: usize = 8;
const CALLS_PER_SECOND: u64 = 400;

/// The demo's configuration: the same TOML a user writes.
fn demo_toml(listen: SocketAddr, up: &[Upstream], metrics: SocketAddr) -> String {
    format!(
        r#"# rpc-proxy --demo: the configuration in front of the simulated upstreams
protocol = "ethereum"

[server]
listen = "{listen}"
request_timeout = "10s"
cache_header = true
served_by_header = true

[metrics]
listen = "{metrics}"

[backends.flappy]          # up 4 s, down 2 s: cut connections and 503s
url = "http://{a}"
timeout = "1s"

[backends.laggy]           # 30 blocks behind, cuts one call in 25
url = "http://{c}"
timeout = "1s"

[backends.slow-limited]    # 10-20 ms, a 1.5 s stall every 40th call, 429 over 300 calls/s
url = "http://{b}"
timeout = "1s"

# laggy comes second: without head tracking it would take the calls whenever
# flappy is down; with it, it is out of rotation while 30 blocks behind.
[groups.main]
members = ["flappy", "laggy", "slow-limited"]
strategy = "failover"
failure_threshold = 2
out_of_service = "2s"

[groups.main.head]
max_lag = 3
probe_interval = "1s"
max_probes_per_second = 2.0

# Each client connection never sees the chain go backwards.
[consistency]
enabled = true

[methods]
deny = ["eth_sendTransaction", "personal_*", "admin_*", "debug_*"]

[retry]
max_retries = 3
initial_backoff = "50ms"
max_backoff = "500ms"

[cache]
enabled = true
tip_ttl = "1s"
"#,
        a = up[0].addr,
        b = up[1].addr,
        c = up[2].addr,
    )
}

/// Live numbers shared by the client workers.
#[derive(Default)]
struct Stats {
    /// `eth_blockNumber` answers lower than one the same connection saw before.
    backwards: AtomicUsize,
    /// `newHeads` notifications on the demo's WebSocket subscriber.
    heads: AtomicUsize,
    /// Heads that skipped a number, or repeated or went below one seen.
    head_gaps: AtomicUsize,
    head_repeats: AtomicUsize,
    /// The subscriber could not subscribe, or its socket ended early.
    head_error: std::sync::Mutex<Option<String>>,
    sent: AtomicUsize,
    ok: AtomicUsize,
    errors: AtomicUsize,
    cache_hits: AtomicUsize,
    cacheable: AtomicUsize,
    latency: Histogram,
    first_error: std::sync::Mutex<Option<String>>,
}

/// Latencies in ~5 % buckets from 10 µs to hours; lock-free.
struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..400).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Histogram {
    fn index(d: Duration) -> usize {
        let us = (d.as_secs_f64() * 1e6).max(10.0);
        (((us / 10.0).ln() / 1.05f64.ln()) as usize).min(399)
    }
    fn record(&self, d: Duration) {
        self.buckets[Self::index(d)].fetch_add(1, Ordering::Relaxed);
    }
    fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let target = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                // The bucket's upper edge.
                return Some(Duration::from_secs_f64(
                    10.0 * 1.05f64.powi(i as i32 + 1) / 1e6,
                ));
            }
        }
        None
    }
}

fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) if d < Duration::from_millis(10) => format!("{:.2} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.0} ms", d.as_secs_f64() * 1e3),
        None => "-".to_owned(),
    }
}

/// Runs the demo; `Ok(true)` when no client saw an error.
pub async fn run(args: DemoArgs) -> Result<bool, String> {
    let chain = Chain::new();
    let upstreams = vec![
        sim::start(
            "flappy",
            Fault::Flapping {
                up: Duration::from_secs(4),
                down: Duration::from_secs(2),
            },
            chain,
        )
        .await,
        sim::start(
            "slow-limited",
            Fault::SlowAndLimited {
                base: Duration::from_millis(10),
                stall_every: 40,
                stall: Duration::from_millis(1500),
                max_per_second: 300,
            },
            chain,
        )
        .await,
        sim::start(
            "laggy",
            Fault::Lagging {
                blocks: 30,
                drop_every: 25,
            },
            chain,
        )
        .await,
    ]
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| format!("cannot start the simulated upstreams: {e}"))?;

    let metrics = crate::metrics_http::start_metrics(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let listen = match args.listen {
        Some(a) => a,
        None => match std::net::TcpListener::bind("127.0.0.1:8545") {
            // The usual port if free (released at once), else any free one.
            Ok(l) => l.local_addr().map_err(|e| e.to_string())?,
            Err(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
        },
    };
    let text = demo_toml(listen, &upstreams, metrics);
    let config = Config::from_toml("<demo>", &text).map_err(|e| e.to_string())?;
    config
        .validate(&Source {
            file: "<demo>",
            text: &text,
        })
        .map_err(|e| e.to_string())?;

    println!("Simulated upstreams (on 127.0.0.1, sharing one chain, a block a second):");
    for u in &upstreams {
        println!("  {:<13} http://{}  {}", u.name, u.addr, describe(u.fault));
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let proxy = tokio::spawn(async move {
        let shutdown = async {
            let _ = stop_rx.await;
        };
        crate::stack::run(&config, None, shutdown, move |addr| {
            let _ = bound_tx.send(addr);
        })
        .await
    });
    let addr = match bound_rx.await {
        Ok(a) => a,
        Err(_) => {
            return Err(match proxy.await {
                Ok(Err(e)) => e,
                _ => "the proxy did not start".to_owned(),
            })
        }
    };

    println!(
        "\nDriving {} calls ({} connections, about {} calls/s): eth_blockNumber, eth_chainId, eth_getBalance, \
eth_getBlockByNumber (old blocks), eth_call, eth_gasPrice.\n",
        args.calls, WORKERS, CALLS_PER_SECOND
    );
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let bar = progress_bar(args.calls as u64);
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            tokio::spawn(worker(
                addr,
                args.calls,
                next.clone(),
                stats.clone(),
                started,
            ))
        })
        .collect();
    // A WebSocket client follows newHeads meanwhile (served by the proxy's
    // hub through the same flapping upstreams).
    let subscriber = tokio::spawn(follow_heads(addr, stats.clone()));
    let ticker = {
        let (stats, bar, upstreams) = (stats.clone(), bar.clone(), counters(&upstreams));
        tokio::spawn(async move {
            let mut last_line = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let line = live_line(&stats, &upstreams);
                bar.set_position(stats.sent.load(Ordering::Relaxed) as u64);
                if bar.is_hidden() {
                    if last_line.elapsed() >= Duration::from_secs(2) {
                        println!(
                            "  {}/{} calls · {line}",
                            stats.sent.load(Ordering::Relaxed),
                            bar.length().unwrap_or(0)
                        );
                        last_line = Instant::now();
                    }
                } else {
                    bar.set_message(line);
                }
            }
        })
    };
    for w in workers {
        let _ = w.await;
    }
    ticker.abort();
    subscriber.abort();
    let elapsed = started.elapsed();
    bar.set_position(stats.sent.load(Ordering::Relaxed) as u64);
    bar.finish_and_clear();

    let errors = stats.errors.load(Ordering::Relaxed);
    summary(&stats, &upstreams, elapsed);
    if let Some(e) = stats
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        println!("  first client-visible error: {e}");
    }
    println!(
        "\nThe proxy is at http://{addr} — try:\n  curl -s http://{addr} -H 'content-type: application/json' \
-d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_blockNumber\"}}'\n  curl -s http://{metrics}/metrics | grep rpc_"
    );
    if args.exit {
        let _ = stop_tx.send(());
    } else {
        println!("Ctrl-C to stop.");
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop_tx.send(());
    }
    match proxy.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => return Err(format!("the proxy task failed: {e}")),
    }
    Ok(errors == 0)
}

fn describe(f: Fault) -> String {
    match f {
        Fault::Flapping { up, down } => format!(
            "flapping: up {} s, down {} s (cut connections, 503s)",
            up.as_secs(),
            down.as_secs()
        ),
        Fault::SlowAndLimited {
            base,
            stall_every,
            stall,
            max_per_second,
        } => format!(
            "slow: {}-{} ms, a {:.1} s stall every {stall_every} calls; 429 over {max_per_second} calls/s",
            base.as_millis(),
            base.as_millis() * 2,
            stall.as_secs_f64()
        ),
        Fault::Lagging { blocks, drop_every } => {
            format!("lagging: {blocks} blocks behind; cuts one call in {drop_every}")
        }
    }
}

fn counters(upstreams: &[Upstream]) -> Vec<Arc<sim::Counters>> {
    upstreams.iter().map(|u| u.counters.clone()).collect()
}

fn progress_bar(len: u64) -> ProgressBar {
    use std::io::IsTerminal;
    let target = if std::io::stdout().is_terminal() {
        ProgressDrawTarget::stdout_with_hz(10)
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = ProgressStyle::with_template("{bar:16.green/dim} {pos:>5}/{len}  {wide_msg}")
    {
        bar.set_style(style.progress_chars("━╸ "));
    }
    bar
}

/// The progress line's message: short enough that bar, count and all of it
/// fit an 80-column terminal. The cache share is of all calls sent, as in
/// the summary.
fn live_line(stats: &Stats, upstreams: &[Arc<sim::Counters>]) -> String {
    let faults: u64 = upstreams.iter().map(|c| c.faults()).sum();
    let sent = stats.sent.load(Ordering::Relaxed).max(1);
    format!(
        "faults {faults} · errors {} · cache {:.0}% · p50 {} p99 {}",
        stats.errors.load(Ordering::Relaxed),
        100.0 * stats.cache_hits.load(Ordering::Relaxed) as f64 / sent as f64,
        ms(stats.latency.quantile(0.5)),
        ms(stats.latency.quantile(0.99)),
    )
}

fn summary(stats: &Stats, upstreams: &[Upstream], elapsed: Duration) {
    let sent = stats.sent.load(Ordering::Relaxed);
    let ok = stats.ok.load(Ordering::Relaxed);
    let errors = stats.errors.load(Ordering::Relaxed);
    let hits = stats.cache_hits.load(Ordering::Relaxed);
    println!("Summary after {:.1} s", elapsed.as_secs_f64());
    println!(
        "  calls sent           {sent} ({:.0}/s)",
        sent as f64 / elapsed.as_secs_f64().max(0.001)
    );
    println!("  answered             {ok}");
    println!(
        "  client-visible errors {errors}{}",
        if errors == 0 { "  (target: 0)" } else { "" }
    );
    println!(
        "  cache hits           {hits} of {sent} calls ({:.0}%), each one a call no upstream saw",
        100.0 * hits as f64 / sent.max(1) as f64
    );
    println!(
        "  latency              p50 {} · p90 {} · p99 {} · max {}",
        ms(stats.latency.quantile(0.5)),
        ms(stats.latency.quantile(0.9)),
        ms(stats.latency.quantile(0.99)),
        ms(stats.latency.quantile(1.0)),
    );
    println!(
        "  chain seen going back {} times by a client connection (head tracking + read-your-head)",
        stats.backwards.load(Ordering::Relaxed)
    );
    match stats
        .head_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        Some(e) => println!("  newHeads subscriber   failed: {e}"),
        None => println!(
            "  newHeads over WebSocket {} heads, {} gaps, {} repeated or backwards (one subscriber, through the same upstreams)",
            stats.heads.load(Ordering::Relaxed),
            stats.head_gaps.load(Ordering::Relaxed),
            stats.head_repeats.load(Ordering::Relaxed),
        ),
    }
    println!(
        "  upstreams            calls  probes  cut  5xx  429  stalled  stale blockNumber answers"
    );
    for u in upstreams {
        let c = &u.counters;
        println!(
            "    {:<16} {:>7} {:>7} {:>4} {:>4} {:>4} {:>8} {:>6}",
            u.name,
            c.calls.load(Ordering::Relaxed),
            c.probes.load(Ordering::Relaxed),
            c.cut.load(Ordering::Relaxed),
            c.unavailable.load(Ordering::Relaxed),
            c.limited.load(Ordering::Relaxed),
            c.stalled.load(Ordering::Relaxed),
            c.stale.load(Ordering::Relaxed),
        );
    }
    for u in upstreams {
        let (calls, probes) = (
            u.counters.calls.load(Ordering::Relaxed),
            u.counters.probes.load(Ordering::Relaxed),
        );
        if probes > 0 && calls == probes {
            // A healthy standby gets only probes too: say what is known.
            println!(
                "  {} received only background probes ({probes}): no call needed it (a standby behind the others in priority, or out of rotation)",
                u.name
            );
        }
    }
    let faults: u64 = upstreams.iter().map(|u| u.counters.faults()).sum();
    println!("  {faults} upstream faults were absorbed by failover and retry; {errors} reached a client.");
}

/// A WebSocket client subscribed to `newHeads`: counts heads, and any that
/// skip a number or repeat (or go below) one seen.
async fn follow_heads(addr: SocketAddr, stats: Arc<Stats>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let fail = |why: String| {
        *stats.head_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    };
    let mut ws = match tokio_tungstenite::connect_async(format!("ws://{addr}/")).await {
        Ok((ws, _)) => ws,
        Err(e) => return fail(format!("cannot connect: {e}")),
    };
    let subscribe = r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#;
    if let Err(e) = ws.send(Message::text(subscribe)).await {
        return fail(format!("cannot subscribe: {e}"));
    }
    let mut last: Option<u64> = None;
    while let Some(msg) = ws.next().await {
        let Ok(Message::Text(text)) = msg else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if let Some(e) = v.get("error") {
            return fail(format!("subscribe refused: {e}"));
        }
        let Some(n) = v["params"]["result"]["number"]
            .as_str()
            .and_then(|n| u64::from_str_radix(n.trim_start_matches("0x"), 16).ok())
        else {
            continue;
        };
        stats.heads.fetch_add(1, Ordering::Relaxed);
        match last {
            Some(l) if n <= l => {
                stats.head_repeats.fetch_add(1, Ordering::Relaxed);
            }
            Some(l) if n > l + 1 => {
                stats.head_gaps.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        last = Some(last.map_or(n, |l| l.max(n)));
    }
}

/// One client connection sending calls until `total` are sent, paced so all
/// workers together stay near `CALLS_PER_SECOND`.
async fn worker(
    addr: SocketAddr,
    total: usize,
    next: Arc<AtomicUsize>,
    stats: Arc<Stats>,
    started: Instant,
) {
    let mut conn: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
    let mut highest_head = 0u64;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return;
        }
        // Pace: call i is due at i / rate seconds after the start.
        let due = started + Duration::from_micros(i as u64 * 1_000_000 / CALLS_PER_SECOND);
        tokio::time::sleep_until(due.into()).await;
        let (body, cacheable) = call_for(i);
        let asks_head = body.contains("\"eth_blockNumber\"");
        let t0 = Instant::now();
        let outcome = send(addr, &mut conn, body).await;
        stats.latency.record(t0.elapsed());
        stats.sent.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok((hit, body)) => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
                if let Some(head) = block_number_in(&body).filter(|_| asks_head) {
                    if head < highest_head {
                        stats.backwards.fetch_add(1, Ordering::Relaxed);
                    }
                    highest_head = highest_head.max(head);
                }
                if cacheable {
                    stats.cacheable.fetch_add(1, Ordering::Relaxed);
                }
                if hit {
                    stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = stats.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert(e);
                conn = None;
                // A new connection is a new session.
                highest_head = 0;
            }
        }
    }
}

/// The head in an `eth_blockNumber` answer (`{"result":"0x..."}`), if it is one.
fn block_number_in(body: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        result: Option<&'a str>,
    }
    let a: Answer<'_> = serde_json::from_slice(body).ok()?;
    let hex = a.result?.strip_prefix("0x")?;
    u64::from_str_radix(hex, 16).ok()
}

/// The `i`-th call of the load: a realistic mix of a dapp's reads.
fn call_for(i: usize) -> (String, bool) {
    let r = sim::mix(i as u64) % 100;
    let (method, params, cacheable) = match r {
        // Without params: the proxy's head probes send `[]`, which is how the
        // simulation tells them apart from client calls.
        0..=29 => ("eth_blockNumber", String::new(), true),
        30..=44 => ("eth_chainId", "[]".to_owned(), true),
        45..=64 => (
            "eth_getBalance",
            format!(
                "[\"0x{:040x}\",\"latest\"]",
                sim::mix(i as u64 % 2000) as u128
            ),
            true,
        ),
        65..=79 => (
            "eth_getBlockByNumber",
            format!("[\"{:#x}\",false]", 18_999_000 + sim::mix(i as u64) % 200),
            true,
        ),
        80..=94 => (
            "eth_call",
            format!(
                "[{{\"to\":\"0x{:040x}\",\"data\":\"0x70a08231{:064x}\"}},\"latest\"]",
                sim::mix(7) as u128,
                sim::mix(i as u64) % 5000
            ),
            true,
        ),
        _ => ("eth_gasPrice", "[]".to_owned(), false),
    };
    (
        if params.is_empty() {
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"{method}\"}}")
        } else {
            format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"{method}\",\"params\":{params}}}"
            )
        },
        cacheable,
    )
}

/// Sends one call on the worker's connection (opening one if needed);
/// `Ok((cache hit, body))` for a result, `Err(why)` for anything a client
/// would count as an error.
async fn send(
    addr: SocketAddr,
    conn: &mut Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    body: String,
) -> Result<(bool, Bytes), String> {
    let attempt = async {
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(connection);
            *conn = Some(sender);
        }
        let sender = conn.as_mut().ok_or("no connection")?;
        sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let req = http::Request::post("/")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::HOST, addr.to_string())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let hit = resp
            .headers()
            .get("x-cache")
            .is_some_and(|v| v.as_bytes() == b"HIT");
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        if status != http::StatusCode::OK || !text.contains("\"result\"") {
            return Err(format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            ));
        }
        Ok((hit, bytes))
    };
    match tokio::time::timeout(Duration::from_secs(15), attempt).await {
        Ok(r) => r,
        Err(_) => Err("no answer within 15 s".to_owned()),
    }
}
