//! The command line (on `clap`): `--config FILE`, `check`, `--demo`, or the
//! quick flags, which build the same [`Config`] a file would.
//!
//! Conventions, shared with `electrum-gateway`: every option has a long
//! flag and an environment variable (`RPC_PROXY_LISTEN`, ...); a flag wins
//! over its variable, which wins over the file, which wins over the default.
//! Durations are `250ms`, `5s`, `2m`, `1h` or a number of seconds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::cli_shared::Parsed;
use toml::Spanned;

use crate::config::{Backend, Config, EnvString, Group, LogFormat, Protocol, Secs, Strategy};
use crate::demo::DemoArgs;

const AFTER_HELP: &str = "\
Start with `rpc-proxy --demo` (simulated flaky upstreams, live), then copy
examples/proxy/proxy.toml. With --config, the server options above override
the file; backends, groups and policies are set in the file only.
Logs go to stderr; set RUST_LOG (e.g. `info`, `rpc_core=debug`) to change the level.";

/// `rpc-proxy --version`: the crate version and the commit it was built
/// from (see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RPC_PROXY_COMMIT"),
    ")"
);

/// rpc-proxy: a resilient JSON-RPC proxy
#[derive(Debug, Parser)]
#[command(
    name = "rpc-proxy",
    version = VERSION,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,

    /// Run from a config file (examples/proxy/proxy.toml documents every key)
    #[arg(
        short,
        long,
        value_name = "FILE",
        env = "RPC_PROXY_CONFIG",
        hide_env_values = true
    )]
    config: Option<PathBuf>,

    #[command(flatten)]
    demo: DemoFlags,

    #[command(flatten)]
    server: ServerFlags,

    #[command(flatten)]
    quick: QuickFlags,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Validate a config file, print what it builds, and exit
    Check {
        /// The config file
        #[arg(
            short,
            long,
            value_name = "FILE",
            env = "RPC_PROXY_CONFIG",
            hide_env_values = true
        )]
        config: PathBuf,
    },
}

#[derive(Debug, Args)]
#[group(id = "demo_flags", multiple = true)]
#[command(next_help_heading = "Demo")]
struct DemoFlags {
    /// Start simulated upstreams and the full stack in this process, drive a
    /// bounded load with live progress, print a summary, keep serving
    #[arg(long, conflicts_with_all = ["config", "quick"])]
    demo: bool,
    /// Calls the demo's client sends
    #[arg(long, value_name = "N", requires = "demo", value_parser = positive, allow_negative_numbers = true, default_value_t = 6000)]
    calls: usize,
    /// Exit after the summary (status 1 if a client saw an error)
    #[arg(long, alias = "once", requires = "demo")]
    exit: bool,
}

/// Settings of the front; with --config they override the file.
#[derive(Debug, Args)]
#[command(next_help_heading = "Server (override the file)")]
struct ServerFlags {
    /// Address to listen on [default: 127.0.0.1:8545]
    #[arg(
        long,
        value_name = "ADDR",
        env = "RPC_PROXY_LISTEN",
        hide_env_values = true
    )]
    listen: Option<SocketAddr>,
    /// Serve Prometheus metrics at http://ADDR/metrics [default: off]
    #[arg(
        long,
        value_name = "ADDR",
        env = "RPC_PROXY_METRICS_LISTEN",
        hide_env_values = true
    )]
    metrics_listen: Option<SocketAddr>,
    /// Log format [default: text]
    #[arg(
        long,
        value_name = "FORMAT",
        env = "RPC_PROXY_LOG_FORMAT",
        hide_env_values = true
    )]
    log_format: Option<LogFormatArg>,
    /// Deadline of each client call [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = secs, allow_negative_numbers = true, env = "RPC_PROXY_REQUEST_TIMEOUT", hide_env_values = true)]
    request_timeout: Option<Secs>,
    /// Time in-flight calls get on SIGINT/SIGTERM [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = secs, allow_negative_numbers = true, env = "RPC_PROXY_SHUTDOWN_TIMEOUT", hide_env_values = true)]
    shutdown_timeout: Option<Secs>,
    /// Largest request body, in bytes [default: 10485760]
    #[arg(long, value_name = "BYTES", value_parser = positive, allow_negative_numbers = true, env = "RPC_PROXY_MAX_BODY", hide_env_values = true)]
    max_body: Option<usize>,
    /// Most calls per batch [default: 1000]
    #[arg(long, value_name = "N", value_parser = positive, allow_negative_numbers = true, env = "RPC_PROXY_MAX_BATCH", hide_env_values = true)]
    max_batch: Option<usize>,
    /// Time a client gets to send its body [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = secs, allow_negative_numbers = true, env = "RPC_PROXY_BODY_TIMEOUT", hide_env_values = true)]
    body_timeout: Option<Secs>,
    /// Answer single calls with `x-cache: HIT|MISS|COALESCED|BYPASS`
    #[arg(long, action = ArgAction::SetTrue)]
    cache_header: bool,
    /// Answer single calls with `x-served-by: NAME` (the backend's name)
    #[arg(long, action = ArgAction::SetTrue)]
    served_by_header: bool,
}

/// One group from flags; not with --config.
#[derive(Debug, Args)]
#[group(id = "quick", multiple = true, conflicts_with = "config")]
#[command(next_help_heading = "Quick start (without --config)")]
struct QuickFlags {
    /// A backend (http(s):// or ws(s)://; user:pass@ becomes basic auth); repeat
    /// for a failover group, tried in the order given
    #[arg(long, value_name = "[NAME=]URL")]
    upstream: Vec<String>,
    /// The name of a single unnamed backend [default: upstream; several
    /// unnamed backends are upstream-1, upstream-2, ...]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Backend timeout per call [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = secs, allow_negative_numbers = true)]
    timeout: Option<Secs>,
    /// Retries after a failed attempt, with backoff (0: none) [default: 3]
    #[arg(long, value_name = "N")]
    retries: Option<u32>,
    /// Consecutive failures that take a backend out of service [default: 2]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    failure_threshold: Option<u32>,
    /// How long a failing backend is skipped before it is tried again [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = secs, allow_negative_numbers = true)]
    out_of_service: Option<Secs>,
    /// How calls are spread among backends [default: off]
    #[arg(long, value_name = "MODE")]
    spread: Option<Spread>,
    /// Race a read still unanswered after DURATION against the next backend
    #[arg(long, value_name = "DURATION", value_parser = secs, allow_negative_numbers = true, conflicts_with = "spread")]
    hedge: Option<Secs>,
    /// Ask every backend, answer when K agree (reads and broadcasts)
    #[arg(long, value_name = "K", value_parser = positive, allow_negative_numbers = true, conflicts_with_all = ["hedge", "spread"])]
    quorum: Option<usize>,
    /// Cache answers by the ethereum or electrum rule set [default: off]
    #[arg(long, value_name = "RULES")]
    cache: Option<CacheArg>,
    /// Memory for cached answers, in MiB [default: 64]
    #[arg(long, value_name = "N", value_parser = positive, allow_negative_numbers = true)]
    cache_mb: Option<usize>,
    /// Largest backend response, in bytes [default: 134217728]
    #[arg(long, value_name = "BYTES", value_parser = positive, allow_negative_numbers = true)]
    max_response: Option<usize>,
    /// Calls of a client batch sent to a backend as one upstream batch; 1:
    /// each alone [default: 100]
    #[arg(long, value_name = "N", value_parser = positive, allow_negative_numbers = true)]
    upstream_batch: Option<usize>,
    /// Allow only matching methods (repeatable; `eth_*` prefixes)
    #[arg(long, value_name = "PATTERN")]
    allow: Vec<String>,
    /// Refuse matching methods (repeatable; wins over --allow)
    #[arg(long, value_name = "PATTERN")]
    deny: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Spread {
    /// Priority order: the first healthy backend takes every call
    Off,
    /// Each call to the next healthy backend in turn
    RoundRobin,
    /// Peak-EWMA latency
    LeastLatency,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CacheArg {
    Ethereum,
    Electrum,
}

/// What to do.
pub enum Command {
    /// Serve with this configuration (from a file or the quick flags);
    /// with a file, how to read it again on `SIGHUP`.
    Run(Box<Config>, Option<ReloadSource>),
    /// Load and validate the file, print a summary, exit.
    Check(String),
    /// The embedded demo.
    Demo(DemoArgs),
    /// `--help` / `--version`: print this to stdout and exit 0.
    Print(String),
    /// No arguments at all: say how to start.
    Nothing,
}

/// Parses the arguments (without the program name). Errors are one line,
/// without the program name.
pub fn parse_args(args: impl Iterator<Item = String>) -> Result<Command, String> {
    let args: Vec<String> = args.collect();
    if args.is_empty() && std::env::var_os("RPC_PROXY_CONFIG").is_none() {
        return Ok(Command::Nothing);
    }
    let cli = match crate::cli_shared::parse::<Cli>("rpc-proxy", args)? {
        Parsed::Args(cli) => cli,
        Parsed::Print(text) => return Ok(Command::Print(text)),
    };
    cli.into_command()
}

impl Cli {
    fn into_command(self) -> Result<Command, String> {
        if let Some(Sub::Check { config }) = self.command {
            return Ok(Command::Check(config.to_string_lossy().into_owned()));
        }
        if self.demo.demo {
            return Ok(Command::Demo(DemoArgs {
                calls: self.demo.calls,
                exit: self.demo.exit,
                listen: self.server.listen,
            }));
        }
        let mut config = match &self.config {
            Some(path) => Config::load(&path.to_string_lossy()).map_err(|e| e.to_string())?,
            None => self.quick.into_config()?,
        };
        self.server.apply(&mut config);
        if self.config.is_none() {
            config
                .validate(&crate::config::Source {
                    file: "<flags>",
                    text: "",
                })
                // Flags have no lines; name the setting in flag terms.
                .map_err(|e| format!("{}: {}", e.key, e.message))?;
        }
        let reload = self.config.as_ref().map(|path| ReloadSource {
            path: path.to_string_lossy().into_owned(),
            flags: self.server,
        });
        Ok(Command::Run(Box::new(config), reload))
    }
}

/// Where a running proxy reads its configuration again (`SIGHUP`): the
/// file, loaded and validated exactly as `rpc-proxy check` does, with the
/// same command-line overrides as at start.
#[derive(Debug)]
pub struct ReloadSource {
    path: String,
    flags: ServerFlags,
}

impl ReloadSource {
    /// The file as it is now, overrides applied.
    pub fn load(&self) -> Result<Config, crate::config::ConfigError> {
        let mut config = Config::load(&self.path)?;
        self.flags.apply(&mut config);
        Ok(config)
    }

    /// The file's path, as given.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl ServerFlags {
    fn apply(&self, config: &mut Config) {
        let s = &mut config.server;
        if let Some(a) = self.listen {
            s.listen = a;
        }
        if let Some(t) = self.request_timeout {
            s.request_timeout = t;
        }
        if let Some(t) = self.shutdown_timeout {
            s.shutdown_timeout = t;
        }
        if let Some(n) = self.max_body {
            s.max_body_bytes = n;
        }
        if let Some(n) = self.max_batch {
            s.max_batch = n;
        }
        if let Some(t) = self.body_timeout {
            s.body_timeout = t;
        }
        s.cache_header |= self.cache_header;
        s.served_by_header |= self.served_by_header;
        if let Some(a) = self.metrics_listen {
            config.metrics.listen = Some(a);
        }
        if let Some(f) = self.log_format {
            config.log.format = match f {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            };
        }
    }
}

impl QuickFlags {
    /// The configuration a file with one group of these backends would give.
    fn into_config(self) -> Result<Config, String> {
        let mut config: Config =
            Config::from_toml("<flags>", "[backends]\n").map_err(|e| e.to_string())?;
        let mut group = Group::failover(Vec::new());
        if self.upstream.is_empty() {
            return Err("missing --upstream URL (see --help, or try --demo)".to_owned());
        }
        let count = self.upstream.len();
        if self.name.is_some() && count > 1 {
            return Err(
                "--name names a single backend; name several with --upstream NAME=URL".to_owned(),
            );
        }
        let mut members = Vec::with_capacity(count);
        for (i, spec) in self.upstream.into_iter().enumerate() {
            let (n, url) = match spec.split_once('=') {
                Some((n, url)) if !n.contains("://") && url.contains("://") => {
                    if n.is_empty() {
                        return Err(format!("--upstream: empty name in `{spec}`"));
                    }
                    (n.to_owned(), url.to_owned())
                }
                _ if count == 1 => (
                    self.name.clone().unwrap_or_else(|| "upstream".to_owned()),
                    spec,
                ),
                _ => (format!("upstream-{}", i + 1), spec),
            };
            if config.backends.contains_key(&n) {
                return Err(format!("--upstream: the name `{n}` is used twice"));
            }
            let backend = Backend {
                url: Spanned::new(0..0, EnvString(url)),
                timeout: self.timeout,
                connect_timeout: None,
                max_response_bytes: self.max_response,
                headers: BTreeMap::new(),
                basic_auth: None,
                max_concurrency: None,
                adaptive_concurrency: false,
                max_batch: self.upstream_batch.map(|n| Spanned::new(0..0, n)),
                batch_window: None,
                cross_client_batching: None,
            };
            config
                .backends
                .insert(n.clone(), Spanned::new(0..0, backend));
            members.push(Spanned::new(0..0, n));
        }
        if let Some(n) = self.retries {
            config.retry.max_retries = n;
        }
        if let Some(n) = self.failure_threshold {
            group.failure_threshold = n;
        }
        if let Some(d) = self.out_of_service {
            group.out_of_service = d;
        }
        group.strategy = match self.spread {
            None | Some(Spread::Off) => Strategy::Failover,
            Some(Spread::RoundRobin) => Strategy::RoundRobin,
            Some(Spread::LeastLatency) => Strategy::LeastLatency,
        };
        if let Some(k) = self.quorum {
            if k > count {
                return Err(format!("--quorum {k}: only {count} --upstream given"));
            }
            group.strategy = Strategy::Quorum;
            group.quorum = Some(Spanned::new(0..0, k));
        } else if let Some(d) = self.hedge {
            group.strategy = Strategy::Hedged;
            group.hedge_delay = Some(d);
        }
        if let Some(rules) = self.cache {
            config.protocol = match rules {
                CacheArg::Ethereum => Protocol::Ethereum,
                CacheArg::Electrum => Protocol::Electrum,
            };
            config.cache.enabled = true;
        }
        if let Some(mb) = self.cache_mb {
            config.cache.max_mb = mb;
        }
        group.members = Spanned::new(0..0, members);
        config
            .groups
            .insert("default".to_owned(), Spanned::new(0..0, group));
        if !self.allow.is_empty() {
            config.methods.allow = Some(Spanned::new(0..0, self.allow));
        }
        if !self.deny.is_empty() {
            config.methods.deny = Some(Spanned::new(0..0, self.deny));
        }
        Ok(config)
    }
}

fn secs(v: &str) -> Result<Secs, String> {
    crate::duration::parse_duration(v).map(Secs)
}

fn positive(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{v}` is not a positive whole number")),
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    fn run(args: &[&str]) -> Config {
        match parse(args) {
            Ok(Command::Run(c, _)) => *c,
            Ok(_) => panic!("{args:?}: not a run"),
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    fn group(c: &Config) -> &Group {
        c.groups["default"].get_ref()
    }

    fn names(c: &Config) -> Vec<String> {
        group(c)
            .members
            .get_ref()
            .iter()
            .map(|m| m.get_ref().clone())
            .collect()
    }

    #[test]
    fn parses_the_quick_flags() {
        let c = run(&[
            "--listen",
            "127.0.0.1:0",
            "--upstream=http://h:1",
            "--allow",
            "eth_*",
            "--max-batch",
            "5",
        ]);
        assert_eq!(c.server.listen.port(), 0);
        assert_eq!(names(&c), ["upstream"]);
        assert_eq!(
            c.backends["upstream"].get_ref().url.get_ref().0,
            "http://h:1"
        );
        assert_eq!(c.methods.allow.as_ref().map(|a| a.get_ref().len()), Some(1));
        assert_eq!(c.server.max_batch, 5);
        assert_eq!((c.retry.max_retries, group(&c).failure_threshold), (3, 2));
    }

    #[test]
    fn several_upstreams_form_a_group() {
        let c = run(&[
            "--upstream",
            "alpha=http://a:1",
            "--upstream",
            "http://b:2",
            "--upstream",
            "https://user:p=w@c:3",
            "--spread",
            "round-robin",
            "--retries",
            "0",
        ]);
        assert_eq!(names(&c), ["alpha", "upstream-2", "upstream-3"]);
        assert_eq!(
            c.backends["upstream-3"].get_ref().url.get_ref().0,
            "https://user:p=w@c:3",
            "`=` inside a URL is not a name"
        );
        assert_eq!(group(&c).strategy, Strategy::RoundRobin);
        assert_eq!(c.retry.max_retries, 0);

        let c = run(&[
            "--upstream",
            "http://a",
            "--upstream",
            "http://b",
            "--hedge",
            "0.25",
        ]);
        assert_eq!(group(&c).strategy, Strategy::Hedged);
        assert_eq!(
            group(&c).hedge_delay,
            Some(Secs(Duration::from_millis(250)))
        );

        let c = run(&[
            "--upstream",
            "http://a",
            "--upstream",
            "http://b",
            "--quorum",
            "2",
        ]);
        assert_eq!(group(&c).strategy, Strategy::Quorum);
        assert_eq!(group(&c).quorum.as_ref().map(|k| *k.get_ref()), Some(2));
    }

    #[test]
    fn server_flags_override_the_file() {
        let path = std::env::temp_dir().join(format!("proxy-cli-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "[server]\nlisten = \"127.0.0.1:7000\"\nmax_batch = 7\n[backends.a]\nurl = \"http://127.0.0.1:1\"\n[groups.main]\nmembers = [\"a\"]\n",
        )
        .expect("write");
        let p = path.to_string_lossy().into_owned();
        let c = run(&["--config", &p]);
        assert_eq!((c.server.listen.port(), c.server.max_batch), (7000, 7));
        let c = run(&[
            "--config",
            &p,
            "--listen",
            "127.0.0.1:7001",
            "--request-timeout",
            "250ms",
        ]);
        assert_eq!(c.server.listen.port(), 7001, "the flag wins");
        assert_eq!(c.server.max_batch, 7, "the file's other settings stay");
        assert_eq!(c.server.request_timeout, Secs(Duration::from_millis(250)));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn commands_are_recognised() {
        assert!(matches!(parse(&[]), Ok(Command::Nothing)));
        assert!(
            matches!(parse(&["--help"]), Ok(Command::Print(h)) if h.contains("--upstream <[NAME=]URL>"))
        );
        assert!(matches!(parse(&["-V"]), Ok(Command::Print(v)) if v.starts_with("rpc-proxy ")));
        assert!(
            matches!(parse(&["check", "--config", "x.toml"]), Ok(Command::Check(p)) if p == "x.toml")
        );
        let Ok(Command::Demo(d)) = parse(&["--demo", "--calls", "10", "--exit"]) else {
            panic!("demo")
        };
        assert_eq!((d.calls, d.exit), (10, true));
    }

    #[test]
    fn bad_arguments_have_one_line_reasons() {
        for (args, needle) in [
            (
                &["--listen", "nope", "--upstream", "http://h"][..],
                "--listen",
            ),
            (&["--listen", "127.0.0.1:1"][..], "missing --upstream"),
            (&["--upstream"][..], "a value is required"),
            (
                &["--upstream", "http://a", "--bogus"][..],
                "unexpected argument",
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
            (&["--upstream", "ftp://a"][..], "http://"),
            (
                &["--upstream", "http://a", "--allow", "e*th"][..],
                "methods.allow",
            ),
            (
                &["--config", "x.toml", "--upstream", "http://a"][..],
                "cannot be used with",
            ),
            (
                &["--config", "/nonexistent.toml", "--listen", "127.0.0.1:1"][..],
                "cannot read",
            ),
            (&["check"][..], "--config"),
            (
                &["--demo", "--upstream", "http://a"][..],
                "cannot be used with",
            ),
        ] {
            let Err(reason) = parse(args) else {
                panic!("{args:?} should fail")
            };
            assert!(
                reason.contains(needle) && !reason.contains('\n'),
                "{args:?}: {reason}"
            );
        }
    }
}
