//! `rpc-proxy`: a resilient JSON-RPC proxy built by stacking the rpc-* layers.
//!
//! ```text
//! rpc-proxy --demo                          # simulated flaky upstreams, live progress
//! rpc-proxy --config proxy.toml             # everything from a file
//! rpc-proxy check --config proxy.toml       # validate it
//! rpc-proxy --upstream a=http://127.0.0.1:9001 --upstream b=http://127.0.0.1:9002
//! ```
//!
//! `stack.rs` builds the layers from a [`config::Config`]; `config/` is the
//! file format (every key documented in `examples/proxy/proxy.toml`):
//! `schema.rs` the keys, types and defaults, `env.rs` `${ENV}` expansion and
//! secret masking, `validate.rs` the checks types cannot make;
//! `cli.rs` the command line; `demo.rs` and `sim.rs` the embedded demo.

// A binary: `pub` marks what each module offers the others (and what users
// copying a module get), not a library API.
#![allow(unreachable_pub)]

mod cli;
mod cli_shared;
mod config;
mod demo;
mod duration;
mod metrics_http;
mod sim;
mod stack;

use std::process::ExitCode;

// With `--features mimalloc`: fewer instructions per call than glibc's
// allocator but a larger peak RSS (BENCHMARKS.md), so not the default.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cli::{parse_args, Command};
use config::{Config, LogFormat};

const NOTHING_TO_DO: &str = "\
rpc-proxy: nothing to do. Try one of:
    rpc-proxy --demo                        see it absorb failing upstreams (simulated, in-process)
    rpc-proxy --config proxy.toml           run from a config file (examples/proxy/proxy.toml)
    rpc-proxy --upstream http://HOST:PORT   quick start in front of one node
    rpc-proxy --help                        every option";

fn main() -> ExitCode {
    let command = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(reason) => {
            eprintln!("rpc-proxy: {reason}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Print(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Command::Nothing => {
            eprintln!("{NOTHING_TO_DO}");
            ExitCode::from(2)
        }
        Command::Check(path) => match Config::load(&path) {
            Ok(config) => {
                println!("{path}: ok");
                match stack::build(&config) {
                    Ok(built) => {
                        println!("  groups: {}", built.summary);
                        for rule in &built.head_rules {
                            println!("  head rule: {rule}");
                        }
                        if let Some(keys) = &built.api_keys {
                            let auth = config.auth.as_ref().map(|a| a.get_ref());
                            let path = auth
                                .and_then(|a| a.path_prefix.as_ref())
                                .map(|p| format!(", or POST {}<key>", p.get_ref()))
                                .unwrap_or_default();
                            println!(
                                "  auth: {} key(s) in header {}{path}; without a key: {}",
                                keys.len(),
                                config.rate_limit.key_header.get_ref(),
                                if auth.is_some_and(|a| a.public) {
                                    "served"
                                } else {
                                    "401"
                                }
                            );
                        }
                        if let Some(redis) = stack::redis_summary(&config) {
                            println!("  redis: {redis}");
                        }
                        println!("  listen: http://{}", config.server.listen);
                        if config.server.websocket.enabled {
                            println!(
                                "  websocket: ws://{} (same listener, same stack)",
                                config.server.listen
                            );
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("rpc-proxy: {path}: {e}");
                        ExitCode::from(2)
                    }
                }
            }
            Err(e) => {
                eprintln!("rpc-proxy: {e}");
                ExitCode::from(2)
            }
        },
        Command::Demo(args) => {
            // The demo's own output is the show; logs only for errors.
            init_logging(LogFormat::Text, Some("error"));
            let exit = args.exit;
            match runtime().map(|rt| rt.block_on(demo::run(args))) {
                Ok(Ok(true)) => ExitCode::SUCCESS,
                Ok(Ok(false)) if exit => ExitCode::FAILURE,
                Ok(Ok(false)) => ExitCode::SUCCESS,
                Ok(Err(e)) | Err(e) => {
                    eprintln!("rpc-proxy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(config, reload) => {
            init_logging(
                config.log.format,
                config.log.level.as_ref().map(|l| l.get_ref().as_str()),
            );
            match runtime().map(|rt| rt.block_on(serve(*config, reload))) {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) | Err(e) => {
                    eprintln!("rpc-proxy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

async fn serve(config: Config, reload: Option<cli::ReloadSource>) -> Result<(), String> {
    // The recorder comes first: layers register their handles on first use.
    if let Some(addr) = config.metrics.listen {
        metrics_http::start_metrics(addr).await?;
    }
    stack::run(&config, reload, rpc_core::server::shutdown_signal(), |_| {}).await?;
    println!("rpc-proxy stopped");
    Ok(())
}

fn init_logging(format: LogFormat, level: Option<&str>) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .or_else(|| level.and_then(|l| l.parse::<Targets>().ok()))
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if format == LogFormat::Json {
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
