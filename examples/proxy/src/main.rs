//! `rpc-proxy`: a resilient JSON-RPC proxy built by stacking the rpc-* layers.
//!
//! ```text
//! rpc-proxy --listen 127.0.0.1:8545 --upstream http://127.0.0.1:9000
//! ```
//!
//! For now it forwards every call through the HTTP front, an optional method
//! filter and one `HttpBackend`. Failover groups, retries, caching and metrics
//! join the stack as their crates land.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use rpc_core::filter::{MethodFilter, MethodFilterLayer};
use rpc_core::server::{serve, ServerConfig};
use rpc_core::{HttpBackend, HttpBackendBuilder};
use tower::ServiceBuilder;

const USAGE: &str = "\
rpc-proxy: a resilient JSON-RPC proxy

USAGE:
    rpc-proxy --upstream URL [OPTIONS]

OPTIONS:
    --listen ADDR             address to listen on [default: 127.0.0.1:8545]
    --upstream URL            the backend (http:// or https://; user:pass@ becomes basic auth)
    --name NAME               the backend's name in logs and errors [default: upstream]
    --timeout SECS            backend timeout per call [default: 10]
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
    upstream: String,
    name: String,
    timeout: Duration,
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
    let upstream = match upstreams.len() {
        0 => return Err("missing --upstream URL (see --help)".to_owned()),
        1 => upstreams.remove(0),
        n => {
            return Err(format!(
                "{n} --upstream given; this build forwards to one backend (failover groups come with rpc-failover)"
            ))
        }
    };
    Ok(Command::Run(Box::new(Args {
        listen: listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8545))),
        upstream,
        name: name.unwrap_or_else(|| "upstream".to_owned()),
        timeout,
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
    init_logging();
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

async fn run(args: Args) -> Result<(), String> {
    let backend = HttpBackend::builder(args.name.as_str(), args.upstream)
        .timeout(args.timeout)
        .max_response_size(args.max_response)
        .build()
        .map_err(|e| e.to_string())?;

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

    // The stack, outermost first. Later layers (metrics, cache, retry,
    // failover) slot in here.
    let stack = ServiceBuilder::new()
        .option_layer(filter.map(MethodFilterLayer::new))
        .service(backend);

    let config = ServerConfig::default()
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
    println!(
        "rpc-proxy listening on http://{local} (backend `{}`)",
        args.name
    );

    serve(listener, stack, config, shutdown_signal()).await;
    println!("rpc-proxy stopped");
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

fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .with(filter)
        .init();
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
        assert_eq!(a.upstream, "http://h:1");
        assert_eq!((a.allow.len(), a.max_batch), (1, 5));
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
