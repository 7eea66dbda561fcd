//! `rpc-proxy`: a resilient JSON-RPC proxy built by stacking the rpc-* layers.
//!
//! ```text
//! rpc-proxy --listen 127.0.0.1:8545 \
//!     --upstream a=http://127.0.0.1:9001 --upstream b=http://127.0.0.1:9002
//! ```
//!
//! The stack, outermost first: the HTTP front (`rpc_core::server`), an
//! optional method filter, an optional cache, the retry layer, then a group of
//! `HttpBackend`s — a failover group (optionally spreading load or hedging
//! reads) or a quorum. Client-side metrics sit at the top; each backend has
//! its own metrics layer, labelled with its name.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use rpc_cache::{CacheLayer, CacheRules, CacheStatus, MemoryStore};
use rpc_core::filter::{MethodFilter, MethodFilterLayer};
use rpc_core::server::{serve, ServerConfig};
use rpc_core::{BoxJsonRpcService, HttpBackend, HttpBackendBuilder, ServedBy};
use rpc_failover::{FailoverLayer, HedgePolicy, Member, QuorumLayer, RetryLayer, Spread};
use rpc_metrics::{MethodLabels, MetricsLayer};
use tower::Layer;
use tower::ServiceBuilder;

const USAGE: &str = "\
rpc-proxy: a resilient JSON-RPC proxy

USAGE:
    rpc-proxy --upstream [NAME=]URL [--upstream [NAME=]URL ...] [OPTIONS]

OPTIONS:
    --listen ADDR             address to listen on [default: 127.0.0.1:8545]
    --upstream [NAME=]URL     a backend (http:// or https://; user:pass@ becomes basic auth);
                              repeat for a failover group, tried in the order given
    --name NAME               the name of a single unnamed backend [default: upstream;
                              several unnamed backends are upstream-1, upstream-2, ...]
    --timeout SECS            backend timeout per call [default: 10]
    --retries N               retries after a failed attempt, with backoff (0: none) [default: 3]
    --failure-threshold N     consecutive failures that take a backend out of service [default: 2]
    --out-of-service SECS     how long a failing backend is skipped before a trial call [default: 5]
    --spread MODE             off | round-robin | least-latency among backends [default: off]
    --hedge SECS              race a read still unanswered after SECS against the next backend
    --quorum K                ask every backend, answer when K agree (reads and broadcasts)
    --cache RULES             cache answers by the ethereum or electrum rule set [default: off]
    --cache-mb N              memory for cached answers, in MiB [default: 64]
    --cache-header            answer single calls with `x-cache: HIT|MISS|COALESCED|BYPASS`
    --served-by-header        answer single calls with `x-served-by: NAME` (the backend's name)
    --metrics-listen ADDR     serve Prometheus metrics at http://ADDR/metrics [default: off]
    --log-format FORMAT       text or json (one JSON object per line) [default: text]
    --request-timeout SECS    deadline of each client call [default: 30]
    --max-body BYTES          largest request body [default: 10485760]
    --max-batch N             most calls per batch [default: 100]
    --max-response BYTES      largest backend response [default: 33554432]
    --body-timeout SECS       time a client gets to send its body [default: 10]
    --allow PATTERN           allow only matching methods (repeatable; `eth_*` globs)
    --deny PATTERN            refuse matching methods (repeatable; wins over --allow)
    --shutdown-timeout SECS   time in-flight calls get on SIGINT/SIGTERM [default: 10]
    -h, --help                print this help
    -V, --version             print the version

Logs go to stderr; set RUST_LOG (e.g. `info`, `rpc_core=debug`) to change the level.";

/// Everything the command line can say.
struct Args {
    listen: SocketAddr,
    /// (name, URL), in priority order.
    upstreams: Vec<(String, String)>,
    timeout: Duration,
    retries: u32,
    failure_threshold: u32,
    out_of_service: Duration,
    spread: Spread,
    hedge: Option<Duration>,
    quorum: Option<usize>,
    cache: Option<CacheRules>,
    cache_mb: usize,
    cache_header: bool,
    served_by_header: bool,
    metrics_listen: Option<SocketAddr>,
    log_json: bool,
    request_timeout: Duration,
    max_body: usize,
    max_batch: usize,
    max_response: usize,
    body_timeout: Duration,
    allow: Vec<String>,
    deny: Vec<String>,
    shutdown_timeout: Duration,
}

enum Command {
    Run(Box<Args>),
    Help,
    Version,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut listen = None;
    let mut upstreams = Vec::new();
    let mut name = None;
    let mut timeout = HttpBackendBuilder::DEFAULT_TIMEOUT;
    let mut retries = 3;
    let mut failure_threshold = 2;
    let mut out_of_service = Duration::from_secs(5);
    let mut spread = Spread::Off;
    let mut hedge = None;
    let mut quorum = None;
    let mut cache = None;
    let mut cache_mb = 64;
    let mut cache_header = false;
    let mut served_by_header = false;
    let mut metrics_listen = None;
    let mut log_json = false;
    let mut request_timeout = ServerConfig::DEFAULT_REQUEST_TIMEOUT;
    let mut max_body = ServerConfig::DEFAULT_MAX_BODY_BYTES;
    let mut max_batch = ServerConfig::DEFAULT_MAX_BATCH;
    let mut max_response = HttpBackendBuilder::DEFAULT_MAX_RESPONSE_BYTES;
    let mut body_timeout = ServerConfig::DEFAULT_BODY_READ_TIMEOUT;
    let mut shutdown_timeout = ServerConfig::DEFAULT_SHUTDOWN_TIMEOUT;
    let (mut allow, mut deny) = (Vec::new(), Vec::new());

    while let Some(flag) = args.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (flag, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--listen" => {
                let v = value()?;
                listen = Some(v.parse().map_err(|_| {
                    format!("--listen: `{v}` is not an address like 127.0.0.1:8545")
                })?);
            }
            "--upstream" => upstreams.push(value()?),
            "--name" => name = Some(value()?),
            "--timeout" => timeout = seconds(&flag, &value()?)?,
            "--retries" => retries = whole(&flag, &value()?)?,
            "--failure-threshold" => {
                failure_threshold = u32::try_from(positive(&flag, &value()?)?)
                    .map_err(|_| format!("{flag}: too large"))?;
            }
            "--out-of-service" => out_of_service = seconds(&flag, &value()?)?,
            "--spread" => {
                spread = match value()?.as_str() {
                    "off" => Spread::Off,
                    "round-robin" => Spread::RoundRobin,
                    "least-latency" => Spread::least_latency(),
                    v => {
                        return Err(format!(
                            "--spread: `{v}` is not one of off, round-robin, least-latency"
                        ))
                    }
                }
            }
            "--hedge" => hedge = Some(seconds(&flag, &value()?)?),
            "--quorum" => quorum = Some(positive(&flag, &value()?)?),
            "--cache" => {
                cache = Some(match value()?.as_str() {
                    "ethereum" => CacheRules::ethereum(),
                    "electrum" => CacheRules::electrum(),
                    v => return Err(format!("--cache: `{v}` is not one of ethereum, electrum")),
                })
            }
            "--cache-mb" => cache_mb = positive(&flag, &value()?)?,
            "--cache-header" => cache_header = true,
            "--served-by-header" => served_by_header = true,
            "--metrics-listen" => {
                let v = value()?;
                metrics_listen = Some(v.parse().map_err(|_| {
                    format!("--metrics-listen: `{v}` is not an address like 127.0.0.1:9100")
                })?);
            }
            "--log-format" => {
                log_json = match value()?.as_str() {
                    "text" => false,
                    "json" => true,
                    v => return Err(format!("--log-format: `{v}` is not one of text, json")),
                }
            }
            "--request-timeout" => request_timeout = seconds(&flag, &value()?)?,
            "--shutdown-timeout" => shutdown_timeout = seconds(&flag, &value()?)?,
            "--max-body" => max_body = positive(&flag, &value()?)?,
            "--max-batch" => max_batch = positive(&flag, &value()?)?,
            "--max-response" => max_response = positive(&flag, &value()?)?,
            "--body-timeout" => body_timeout = seconds(&flag, &value()?)?,
            "--allow" => allow.push(value()?),
            "--deny" => deny.push(value()?),
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        }
    }
    if upstreams.is_empty() {
        return Err("missing --upstream URL (see --help)".to_owned());
    }
    if name.is_some() && upstreams.len() > 1 {
        return Err(
            "--name names a single backend; name several with --upstream NAME=URL".to_owned(),
        );
    }
    let count = upstreams.len();
    let mut named = Vec::with_capacity(count);
    for (i, spec) in upstreams.into_iter().enumerate() {
        let (n, url) = match spec.split_once('=') {
            Some((n, url)) if !n.contains("://") && url.contains("://") => {
                if n.is_empty() {
                    return Err(format!("--upstream: empty name in `{spec}`"));
                }
                (n.to_owned(), url.to_owned())
            }
            _ if count == 1 => (name.clone().unwrap_or_else(|| "upstream".to_owned()), spec),
            _ => (format!("upstream-{}", i + 1), spec),
        };
        if named
            .iter()
            .any(|(other, _): &(String, String)| *other == n)
        {
            return Err(format!("--upstream: the name `{n}` is used twice"));
        }
        named.push((n, url));
    }
    if let Some(k) = quorum {
        if k > count {
            return Err(format!("--quorum {k}: only {count} --upstream given"));
        }
        if hedge.is_some() || spread != Spread::Off {
            return Err(
                "--quorum asks every backend; it does not combine with --hedge or --spread"
                    .to_owned(),
            );
        }
    }
    Ok(Command::Run(Box::new(Args {
        listen: listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8545))),
        upstreams: named,
        timeout,
        retries,
        failure_threshold,
        out_of_service,
        spread,
        hedge,
        quorum,
        cache,
        cache_mb,
        cache_header,
        served_by_header,
        metrics_listen,
        log_json,
        request_timeout,
        max_body,
        max_batch,
        max_response,
        body_timeout,
        allow,
        deny,
        shutdown_timeout,
    })))
}

fn seconds(flag: &str, v: &str) -> Result<Duration, String> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("{flag}: `{v}` is not a positive number of seconds")),
    }
}

fn whole(flag: &str, v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .map_err(|_| format!("{flag}: `{v}` is not a whole number"))
}

fn positive(flag: &str, v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{flag}: `{v}` is not a positive whole number")),
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("rpc-proxy {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(reason) => {
            eprintln!("rpc-proxy: {reason}");
            return ExitCode::from(2);
        }
    };
    init_logging(args.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rpc-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(*args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("rpc-proxy: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// The group of backends: failover (the default) or quorum.
fn backend_group(args: &Args) -> Result<BoxJsonRpcService, String> {
    let mut members = Vec::with_capacity(args.upstreams.len());
    for (name, url) in &args.upstreams {
        let backend = HttpBackend::builder(name.as_str(), url.as_str())
            .timeout(args.timeout)
            .max_response_size(args.max_response)
            .build()
            .map_err(|e| format!("--upstream {name}: {e}"))?;
        let backend = MetricsLayer::backend(name.as_str()).layer(backend);
        members.push(Member::new(name.as_str(), backend));
    }
    let group = FailoverLayer::new()
        .failure_threshold(args.failure_threshold)
        .out_of_service(args.out_of_service)
        .spread(args.spread);
    if let Some(k) = args.quorum {
        let quorum = QuorumLayer::new(k).group(group).build(members);
        return quorum
            .map(BoxJsonRpcService::new)
            .map_err(|e| e.to_string());
    }
    let group = match args.hedge {
        Some(delay) => group.hedge(HedgePolicy::fixed(delay)),
        None => group,
    };
    group
        .build(members)
        .map(BoxJsonRpcService::new)
        .map_err(|e| e.to_string())
}

async fn run(args: Args) -> Result<(), String> {
    // The recorder comes first: layers register their handles on first use.
    if let Some(addr) = args.metrics_listen {
        start_metrics(addr).await?;
    }
    let backends = backend_group(&args)?;

    let filter = if args.allow.is_empty() && args.deny.is_empty() {
        None
    } else {
        let filter = if args.allow.is_empty() {
            MethodFilter::allow_all()
        } else {
            MethodFilter::allow(&args.allow).map_err(|e| format!("--allow: {e}"))?
        };
        Some(
            filter
                .deny(&args.deny)
                .map_err(|e| format!("--deny: {e}"))?,
        )
    };

    // The stack, outermost first. Metrics slot in here with their crate.
    let cache = args.cache.clone().map(|rules| {
        CacheLayer::new(rules)
            .store(MemoryStore::new().max_bytes(args.cache_mb.saturating_mul(1 << 20)))
    });
    let labels =
        MethodLabels::default().with(args.allow.iter().filter(|p| !p.contains('*')).cloned());
    let stack = ServiceBuilder::new()
        .layer(MetricsLayer::client().method_labels(labels))
        .option_layer(filter.map(MethodFilterLayer::new))
        .option_layer(cache)
        .layer(RetryLayer::new().max_retries(args.retries))
        .service(backends);

    let mut config = ServerConfig::default();
    let (cache_header, served_by_header) = (args.cache_header, args.served_by_header);
    if cache_header || served_by_header {
        config = config.response_headers(move |answer, headers| {
            if let Some(status) = answer
                .extensions()
                .get::<CacheStatus>()
                .filter(|_| cache_header)
            {
                headers.insert("x-cache", http::HeaderValue::from_static(status.as_str()));
            }
            if let Some(ServedBy(name)) = answer
                .extensions()
                .get::<ServedBy>()
                .filter(|_| served_by_header)
            {
                if let Ok(v) = http::HeaderValue::from_str(name) {
                    headers.insert("x-served-by", v);
                }
            }
        });
    }
    let config = config
        .max_body_size(args.max_body)
        .max_batch_len(args.max_batch)
        .request_timeout(args.request_timeout)
        .body_read_timeout(args.body_timeout)
        .shutdown_timeout(args.shutdown_timeout);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Scripts and tests read this line to find the port (with --listen …:0).
    let names: Vec<String> = args
        .upstreams
        .iter()
        .map(|(n, _)| format!("`{n}`"))
        .collect();
    let mode = match (args.quorum, args.upstreams.len()) {
        (Some(k), n) => format!("quorum {k} of {n}"),
        (None, 1) => "backend".to_owned(),
        (None, _) => "failover".to_owned(),
    };
    println!(
        "rpc-proxy listening on http://{local} ({mode} {})",
        names.join(", ")
    );

    serve(listener, stack, config, shutdown_signal()).await;
    println!("rpc-proxy stopped");
    Ok(())
}

/// Installs the Prometheus recorder and serves `GET /metrics` on `addr`.
async fn start_metrics(addr: SocketAddr) -> Result<(), String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    // Histograms (not summaries): buckets for latencies and batch sizes.
    let seconds = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let sizes = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full("rpc_batch_size".into()), &sizes))
        .map_err(|e| format!("metrics: {e}"))?
        .install_recorder()
        .map_err(|e| format!("metrics: {e}"))?;
    rpc_metrics::describe();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("rpc-proxy metrics on http://{local}/metrics");
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let handle = handle.clone();
                        async move {
                            let (status, body) = if req.uri().path() != "/metrics" {
                                (
                                    http::StatusCode::NOT_FOUND,
                                    "not found: try /metrics\n".to_owned(),
                                )
                            } else if req.method() != http::Method::GET {
                                (http::StatusCode::METHOD_NOT_ALLOWED, "use GET\n".to_owned())
                            } else {
                                (http::StatusCode::OK, handle.render())
                            };
                            let mut resp = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(body),
                            ));
                            *resp.status_mut() = status;
                            resp.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("text/plain; version=0.0.4"),
                            );
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                let conn = hyper::server::conn::http1::Builder::new()
                    .header_read_timeout(Duration::from_secs(10))
                    .timer(hyper_util::rt::TokioTimer::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                // A scrape is small; a connection that lingers is cut.
                let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
            });
        }
    });
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

fn init_logging(json: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json {
        tracing_subscriber::registry()
            .with(fmt.json().with_current_span(true).with_span_list(false))
            .with(filter)
            .init();
    } else {
        tracing_subscriber::registry()
            .with(fmt.with_ansi(std::io::stderr().is_terminal()))
            .with(filter)
            .init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_the_quick_flags() {
        let Ok(Command::Run(a)) = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--upstream=http://h:1",
            "--allow",
            "eth_*",
            "--max-batch",
            "5",
        ]) else {
            panic!("should parse")
        };
        assert_eq!(a.listen.port(), 0);
        assert_eq!(
            a.upstreams,
            [("upstream".to_owned(), "http://h:1".to_owned())]
        );
        assert_eq!((a.allow.len(), a.max_batch), (1, 5));
        assert_eq!((a.retries, a.failure_threshold), (3, 2));
    }

    #[test]
    fn several_upstreams_form_a_group() {
        let Ok(Command::Run(a)) = parse(&[
            "--upstream",
            "alpha=http://a:1",
            "--upstream",
            "http://b:2",
            "--upstream",
            "https://user:p=w@c:3",
            "--spread",
            "round-robin",
            "--hedge",
            "0.25",
            "--retries",
            "0",
        ]) else {
            panic!("should parse")
        };
        let names: Vec<&str> = a.upstreams.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["alpha", "upstream-2", "upstream-3"]);
        assert_eq!(
            a.upstreams[2].1, "https://user:p=w@c:3",
            "`=` inside a URL is not a name"
        );
        assert_eq!(a.spread, Spread::RoundRobin);
        assert_eq!(a.hedge, Some(Duration::from_millis(250)));
        assert_eq!(a.retries, 0);

        let Ok(Command::Run(a)) = parse(&[
            "--upstream",
            "http://a",
            "--upstream",
            "http://b",
            "--quorum",
            "2",
        ]) else {
            panic!("should parse")
        };
        assert_eq!(a.quorum, Some(2));
    }

    #[test]
    fn bad_arguments_have_one_line_reasons() {
        for (args, needle) in [
            (
                &["--listen", "nope", "--upstream", "http://h"][..],
                "--listen",
            ),
            (&[][..], "missing --upstream"),
            (&["--upstream"][..], "needs a value"),
            (
                &["--upstream", "http://a", "--bogus"][..],
                "unknown argument",
            ),
            (
                &["--upstream", "http://a", "--timeout", "-1"][..],
                "--timeout",
            ),
            (
                &["--upstream", "http://a", "--max-batch", "0"][..],
                "--max-batch",
            ),
            (&["--upstream", "http://a", "--quorum", "2"][..], "--quorum"),
            (
                &["--upstream", "a=http://a", "--upstream", "a=http://b"][..],
                "used twice",
            ),
            (
                &[
                    "--upstream",
                    "http://a",
                    "--upstream",
                    "http://b",
                    "--name",
                    "x",
                ][..],
                "--name",
            ),
            (
                &["--upstream", "http://a", "--spread", "random"][..],
                "--spread",
            ),
            (
                &[
                    "--upstream",
                    "http://a",
                    "--upstream",
                    "http://b",
                    "--quorum",
                    "2",
                    "--hedge",
                    "1",
                ][..],
                "--quorum",
            ),
            (
                &["--upstream", "http://a", "--retries", "x"][..],
                "--retries",
            ),
            (
                &["--upstream", "http://a", "--log-format", "xml"][..],
                "--log-format",
            ),
            (
                &["--upstream", "http://a", "--metrics-listen", "9100"][..],
                "--metrics-listen",
            ),
            (
                &["--upstream", "http://a", "--cache", "redis"][..],
                "--cache",
            ),
        ] {
            let Err(reason) = parse(args) else {
                panic!("{args:?} should fail")
            };
            assert!(
                reason.contains(needle) && !reason.contains('\n'),
                "{reason}"
            );
        }
    }
}
