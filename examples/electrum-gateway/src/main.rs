//! `electrum-gateway`: HTTP JSON-RPC and REST in front of a pool of Electrum
//! servers, built from the rpc-* crates.
//!
//! ```text
//! electrum-gateway --listen 127.0.0.1:8080 --network mainnet \
//!     --server a=tls://electrum.example.org:50002 --server b=tcp://10.0.0.5:50001
//! ```
//!
//! The stack, outermost first: the HTTP front (`rpc_core::server`, with this
//! binary's REST, events, health and metrics routes as an HTTP layer in front
//! of it), client metrics, the method allow-list, the cache (Electrum rules),
//! retry, then a failover group with head tracking over metered
//! `ElectrumBackend`s. Broadcasts go to several servers at once; events come
//! from subscriptions on every server (`PoolSubscriptions`).

// A binary: `pub` marks what each module offers the others.
#![allow(unreachable_pub)]

mod args;
mod broadcast;
#[path = "../../proxy/src/cli_shared.rs"]
mod cli_shared;
mod config;
mod crosscheck;
#[path = "../../proxy/src/duration.rs"]
mod duration;
mod events;
mod http;
mod rest;
mod tx;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rpc_cache::{CacheLayer, CacheRules};
use rpc_core::filter::{MethodFilter, MethodFilterLayer};
use rpc_core::protocol::{Pattern, Protocol};
use rpc_core::server::{serve_with_layer, ServerConfig};
use rpc_core::BoxJsonRpcService;
use rpc_electrum::ElectrumBackend;
use rpc_failover::{Failover, FailoverLayer, HeadPolicy, Member, MethodRules, RetryLayer};
use rpc_metrics::{MethodLabels, MetricsLayer};
use tower::{Layer, ServiceBuilder};

use args::{parse_args, Args, CoinArg, Command, VerifyArg};
use broadcast::{BroadcastLayer, Broadcaster};
use rpc_electrum::address::Network;
use rpc_electrum::chain::{ChainParams, ChainVerifier};

/// Methods a client may call through `POST /` unless `--allow` adds more:
/// what the Electrum vocabulary calls safe to repeat and stateless (reads and
/// the broadcast), plus the tip (`blockchain.headers.subscribe`, a
/// subscription the pool keeps on every server anyway). Not subscriptions:
/// HTTP has no channel for their notifications (use `GET /v1/events`).
pub fn default_allowed(protocol: &Protocol) -> Vec<String> {
    let head = protocol.head().map(|h| h.method);
    let mut allowed: Vec<String> = protocol
        .methods()
        .iter()
        .filter(|(pattern, facts)| {
            (facts.repeat.is_safe_to_repeat() && !facts.stateful)
                || matches!(pattern, Pattern::Exact(m) if Some(*m) == head)
        })
        .map(|(pattern, _)| pattern.to_string())
        .collect();
    allowed.sort();
    allowed
}

/// Methods no `--allow` can open: calls that are neither safe to repeat nor
/// writes would act on the gateway's own connections (`server.version`
/// negotiation, `server.add_peer`, `blockchain.scripthash.unsubscribe`).
pub fn always_denied(protocol: &Protocol) -> Vec<String> {
    protocol
        .methods()
        .iter()
        .filter(|(_, f)| !f.repeat.is_safe_to_repeat() && !f.write)
        .map(|(pattern, _)| pattern.to_string())
        .collect()
}

/// What every route shares.
pub struct Gateway {
    /// The command line.
    pub args: Args,
    /// The whole stack: metrics, allow-list, cache, retry, failover group.
    pub stack: BoxJsonRpcService,
    /// The group itself, for its members' health.
    pub group: Failover<MetricsService>,
    /// The servers, for broadcasts and health.
    pub servers: Vec<ElectrumBackend>,
    /// The subscriptions behind `GET /v1/events`.
    pub events: events::Hub,
    /// The Prometheus recorder's handle, for `GET /metrics`.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The verified chain (`--verify spv`): every server's tip checked,
    /// liars out of rotation, confirmations proven.
    pub verifier: Option<ChainVerifier>,
    /// Sends transactions to several servers at once (both routes).
    pub broadcaster: Broadcaster,
}

type MetricsService = rpc_metrics::Metrics<ElectrumBackend>;

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Check(args)) => {
            return match describe(&args) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(reason) => {
                    eprintln!("electrum-gateway: {reason}");
                    ExitCode::from(2)
                }
            };
        }
        Ok(Command::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(reason) => {
            eprintln!("electrum-gateway: {reason}");
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
            eprintln!("electrum-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(*args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("electrum-gateway: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// The pool's head-tracking policy from the settings.
fn head_policy(args: &Args) -> HeadPolicy {
    let policy = HeadPolicy::electrum()
        .max_lag(args.max_lag)
        .max_stall(args.max_stall)
        .probe_interval(args.probe_interval)
        .max_probes_per_second(args.max_probes_per_second)
        .max_ahead(args.max_ahead)
        .confirm_within(args.confirm_within);
    match args.agree {
        Some(k) => policy.agree(k),
        None => policy,
    }
}

/// The verified chain's rules: the network's, the coin's difficulty rule,
/// from `--checkpoint` or the genesis block.
fn chain_params(args: &Args) -> ChainParams {
    let params = match (args.network, args.coin) {
        (Network::Regtest, _) => ChainParams::bitcoin_regtest(),
        (Network::Testnet, _) => ChainParams::bitcoin_testnet(),
        (Network::Mainnet, CoinArg::Bitcoin) => ChainParams::bitcoin(),
        (Network::Mainnet, CoinArg::BitcoinCash) => ChainParams::bitcoin_cash(),
    };
    let params = match args.checkpoint {
        Some(c) => params.checkpoint(c),
        None => params,
    };
    match args.checkpoint_root {
        Some(root) => params.checkpoint_root(root),
        None => params,
    }
}

/// What `electrum-gateway check` prints: the settings as they will be used.
fn describe(args: &Args) -> Result<String, String> {
    use std::fmt::Write;
    let mut out = String::new();
    let source = args.config.as_deref().unwrap_or("flags");
    let _ = writeln!(out, "{source}: ok");
    let servers: Vec<String> = args
        .servers
        .iter()
        .map(|(n, url)| format!("{n} {}", url_without_userinfo(url)))
        .collect();
    let _ = writeln!(out, "  servers: {}", servers.join(", "));
    let _ = writeln!(out, "  network: {:?}", args.network);
    let _ = match (args.verify, args.checkpoint) {
        (VerifyArg::Off, _) => writeln!(out, "  verification: off (servers are believed)"),
        (VerifyArg::Spv | VerifyArg::CrossCheck, c) => writeln!(
            out,
            "  verification: headers ({:?} rules) from {}, tips agreed, confirmations by merkle proof",
            args.coin,
            c.map_or("the genesis block".to_owned(), |c| match args.checkpoint_root {
                Some(_) => format!("checkpoint {} (older headers proven against its root)", c.height),
                None => format!("checkpoint {} (confirmations below it unverified)", c.height),
            }),
        ),
    };
    if let (Some(path), false) = (&args.header_file, args.verify == VerifyArg::Off) {
        let _ = writeln!(out, "  verified headers kept in {}", path.display());
    }
    if args.verify == VerifyArg::CrossCheck {
        let _ = writeln!(
            out,
            "  cross-check: balances and unspent outputs asked of two servers (distinct networks first) and compared"
        );
    }
    let _ = writeln!(
        out,
        "  head rule: {}",
        head_policy(args).describe(args.servers.len())
    );
    let _ = writeln!(
        out,
        "  deadlines: {:?} per attempt, {:?} per call",
        args.request_timeout,
        args.call_deadline()
    );
    let protocol = Protocol::electrum();
    let mut allowed = default_allowed(&protocol);
    allowed.extend(args.allow.iter().cloned());
    MethodFilter::allow(&allowed).map_err(|e| format!("--allow: {e}"))?;
    let _ = writeln!(out, "  methods through POST /: {}", allowed.join(", "));
    for (name, _) in &args.servers {
        let trust = match args.tls_for(name) {
            None => continue,
            Some(rpc_electrum::TlsVerify::Pinned(_)) => "its pinned certificate".to_owned(),
            Some(rpc_electrum::TlsVerify::Roots(_)) => format!(
                "the CA in {}",
                args.tls_ca.as_ref().map_or("", |(p, _)| p.as_str())
            ),
            Some(rpc_electrum::TlsVerify::InsecureAcceptAny) => {
                "ANY certificate (--insecure-tls: not authenticated)".to_owned()
            }
            Some(_) => "the public roots".to_owned(),
        };
        let _ = writeln!(out, "  tls {name}: trusts {trust}");
    }
    let _ = writeln!(
        out,
        "  network check: genesis {}",
        rpc_electrum::chain::hash_to_hex(&chain_params(args).genesis)
    );
    let _ = writeln!(out, "  listen: http://{}", args.listen);
    Ok(out)
}

/// `tcp://user:pw@host:port` → `tcp://host:port` (never print credentials).
fn url_without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

async fn run(args: Args) -> Result<(), String> {
    let metrics = install_metrics()?;
    let protocol = Protocol::electrum();
    let genesis = rpc_electrum::chain::hash_to_hex(&chain_params(&args).genesis);
    let mut servers = Vec::with_capacity(args.servers.len());
    let mut members = Vec::with_capacity(args.servers.len());
    for (name, url) in &args.servers {
        let mut b = ElectrumBackend::builder(name.as_str(), url)
            .request_timeout(args.request_timeout)
            // A frozen server is noticed within about 5 s even without
            // traffic (ElectrumX answers a ping within its ~1 s hold-back).
            .ping_interval(Duration::from_secs(2))
            .ping_timeout(Duration::from_secs(3))
            .client_name(concat!("electrum-gateway/", env!("CARGO_PKG_VERSION")))
            // A server of another network (its genesis) is refused.
            .expect_genesis(genesis.clone());
        if let Some(tls) = args.tls_for(name) {
            b = b.tls(tls);
        }
        let backend = b.build().map_err(|e| format!("--server {name}: {e}"))?;
        members.push(Member::named(
            MetricsLayer::backend_of(&backend).layer(backend.clone()),
        ));
        servers.push(backend);
    }
    let group = FailoverLayer::new()
        .classifier(MethodRules::for_protocol(&protocol))
        .failure_threshold(2)
        .out_of_service(Duration::from_secs(5))
        .head_tracking(head_policy(&args))
        .build(members)
        .map_err(|e| e.to_string())?;
    group.start_head_probes();

    let mut allowed = default_allowed(&protocol);
    allowed.extend(args.allow.iter().cloned());
    let filter = MethodFilter::allow(&allowed)
        .map_err(|e| format!("--allow: {e}"))?
        .deny(always_denied(&protocol))
        .map_err(|e| e.to_string())?
        .message("method not allowed through the gateway");
    let broadcaster = {
        let group = group.clone();
        Broadcaster::new(
            servers.clone(),
            move |name| {
                group
                    .members()
                    .any(|m| &*m.name == name && m.in_service && !m.lagging)
            },
            args.broadcast_to,
            args.request_timeout,
        )
    };
    let stack = BoxJsonRpcService::new(
        ServiceBuilder::new()
            .layer(MetricsLayer::client().method_labels(MethodLabels::none().protocol(&protocol)))
            .layer(MethodFilterLayer::new(filter))
            // Broadcasts go to several servers at once, with an exact outcome.
            .layer(BroadcastLayer(broadcaster.clone()))
            .layer(match group.chain_view() {
                Some(view) => CacheLayer::new(CacheRules::for_protocol(&protocol)).chain_view(view),
                None => CacheLayer::new(CacheRules::for_protocol(&protocol)),
            })
            .layer(
                RetryLayer::new()
                    .max_retries(2)
                    .classifier(MethodRules::for_protocol(&protocol)),
            )
            .service(group.clone()),
    );
    let events = events::Hub::start(servers.clone(), args.max_watched);
    let verifier = (args.verify != VerifyArg::Off).then(|| {
        let mut b = ChainVerifier::builder(chain_params(&args), servers.clone())
            .agree(args.agree.unwrap_or(2))
            .call_timeout(args.request_timeout);
        if let Some(path) = &args.header_file {
            b = b.header_file(path);
        }
        let v = b.build();
        v.start();
        v
    });
    let gateway = Arc::new(Gateway {
        args: args.clone(),
        stack: stack.clone(),
        group,
        servers,
        events,
        metrics,
        verifier,
        broadcaster,
    });

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let names: Vec<&str> = args.servers.iter().map(|(n, _)| n.as_str()).collect();
    // Scripts and tests read this line to find the port.
    println!(
        "electrum-gateway listening on http://{local} ({:?}; servers {})",
        args.network,
        names.join(", ")
    );
    let config = ServerConfig::default()
        .request_timeout(args.call_deadline())
        .max_batch_len(50)
        .max_body_size(2 * 1024 * 1024);
    serve_with_layer(
        listener,
        stack,
        config,
        http::RoutesLayer::new(gateway),
        rpc_core::server::shutdown_signal(),
    )
    .await;
    println!("electrum-gateway stopped");
    Ok(())
}

fn install_metrics() -> Result<Option<metrics_exporter_prometheus::PrometheusHandle>, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use rpc_metrics::buckets;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), buckets::SECONDS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Suffix("batch_size".into()), buckets::BATCH_SIZE)
        })
        .map_err(|e| format!("metrics: {e}"))?
        .install_recorder()
        .map_err(|e| format!("metrics: {e}"))?;
    rpc_metrics::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(Some(handle))
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
            .with(fmt.json())
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

    #[test]
    fn check_describes_without_credentials_and_refuses_bad_patterns() {
        let Ok(Command::Check(args)) = parse_args(
            [
                "check",
                "--server",
                "a=tls://u:secret@h:50002",
                "--agree",
                "1",
            ]
            .into_iter()
            .map(String::from),
        ) else {
            panic!("check parses")
        };
        let text = describe(&args).expect("valid");
        assert!(text.starts_with("flags: ok"), "{text}");
        assert!(
            text.contains("a tls://h:50002") && !text.contains("secret"),
            "{text}"
        );
        assert!(text.contains("head rule: "), "{text}");
        let Ok(Command::Check(args)) = parse_args(
            ["check", "--server", "tcp://h:1", "--allow", "a*b"]
                .into_iter()
                .map(String::from),
        ) else {
            panic!("check parses")
        };
        assert!(describe(&args).unwrap_err().contains("--allow"));
    }

    #[test]
    fn public_methods_come_from_the_vocabulary() {
        let p = Protocol::electrum();
        let allowed = default_allowed(&p);
        for m in [
            "blockchain.block.header",
            "blockchain.block.headers",
            "blockchain.estimatefee",
            "blockchain.headers.subscribe",
            "blockchain.relayfee",
            "blockchain.scripthash.get_balance",
            "blockchain.scripthash.get_history",
            "blockchain.scripthash.get_mempool",
            "blockchain.scripthash.listunspent",
            "blockchain.transaction.broadcast",
            "blockchain.transaction.get",
            "blockchain.transaction.get_merkle",
            "blockchain.transaction.id_from_pos",
            "mempool.get_fee_histogram",
            "server.banner",
            "server.donation_address",
            "server.features",
            "server.ping",
        ] {
            assert!(allowed.iter().any(|a| a == m), "{m} not allowed");
        }
        assert_eq!(allowed.len(), 18, "{allowed:?}");
        let denied = always_denied(&p);
        for m in [
            "server.version",
            "server.add_peer",
            "blockchain.scripthash.unsubscribe",
        ] {
            assert!(denied.iter().any(|d| d == m), "{m} not denied");
        }
        assert!(!denied
            .iter()
            .any(|d| d == "blockchain.transaction.broadcast"));
    }
}
