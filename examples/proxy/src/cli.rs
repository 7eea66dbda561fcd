//! The command line: `--config FILE`, `check`, `--demo`, or the quick flags,
//! which build the same [`Config`] a file would.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use toml::Spanned;

use crate::config::{Backend, Config, EnvString, Group, LogFormat, Protocol, Secs, Strategy};
use crate::demo::DemoArgs;

pub const USAGE: &str = "\
rpc-proxy: a resilient JSON-RPC proxy

USAGE:
    rpc-proxy --demo [--calls N] [--exit]   see it work: three flaky simulated upstreams, live
    rpc-proxy --config proxy.toml           run from a config file (see examples/proxy/proxy.toml)
    rpc-proxy check --config proxy.toml     validate a config file and exit
    rpc-proxy --upstream [NAME=]URL ...     quick start from flags (below)

DEMO:
    --demo                    start simulated upstreams and the full stack in this process, drive a
                              bounded load with live progress, print a summary, keep serving
    --calls N                 calls the demo's client sends [default: 6000]
    --exit                    exit after the summary (status 1 if a client saw an error)

QUICK FLAGS:
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
    --max-batch N             most calls per batch [default: 1000]
    --max-response BYTES      largest backend response [default: 33554432]
    --body-timeout SECS       time a client gets to send its body [default: 10]
    --allow PATTERN           allow only matching methods (repeatable; `eth_*` globs)
    --deny PATTERN            refuse matching methods (repeatable; wins over --allow)
    --shutdown-timeout SECS   time in-flight calls get on SIGINT/SIGTERM [default: 10]
    -h, --help                print this help
    -V, --version             print the version

Logs go to stderr; set RUST_LOG (e.g. `info`, `rpc_core=debug`) to change the level.";

/// What to do.
pub enum Command {
    /// Serve with this configuration (from a file or the quick flags).
    Run(Box<Config>),
    /// Load and validate the file, print a summary, exit.
    Check(String),
    /// The embedded demo.
    Demo(DemoArgs),
    Help,
    Version,
    /// No arguments at all: say how to start.
    Nothing,
}

/// Where the configuration came from (for messages).
pub fn parse_args(args: impl Iterator<Item = String>) -> Result<Command, String> {
    let args: Vec<String> = args.collect();
    if args.is_empty() {
        return Ok(Command::Nothing);
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Command::Help);
    }
    if args.iter().any(|a| a == "-V" || a == "--version") {
        return Ok(Command::Version);
    }
    let (check, args) = match args.split_first() {
        Some((first, rest)) if first == "check" => (true, rest.to_vec()),
        _ => (false, args),
    };
    if let Some(path) = config_path(&args)? {
        return Ok(if check {
            Command::Check(path)
        } else {
            Command::Run(Box::new(Config::load(&path).map_err(|e| e.to_string())?))
        });
    }
    if check {
        return Err("check needs --config FILE".to_owned());
    }
    if args.iter().any(|a| a == "--demo") {
        return demo_args(&args).map(Command::Demo);
    }
    quick_flags(args.into_iter()).map(|c| Command::Run(Box::new(c)))
}

/// `--config FILE` (or `--config=FILE`), which excludes every other flag.
fn config_path(args: &[String]) -> Result<Option<String>, String> {
    let mut path = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" || a == "-c" {
            path = Some(it.next().ok_or("--config needs a file")?.clone());
        } else if let Some(p) = a.strip_prefix("--config=") {
            path = Some(p.to_owned());
        } else {
            rest.push(a.as_str());
        }
    }
    match (path, rest.first()) {
        (Some(_), Some(other)) => Err(format!(
            "`{other}`: with --config, everything is set in the file"
        )),
        (path, _) => Ok(path),
    }
}

fn demo_args(args: &[String]) -> Result<DemoArgs, String> {
    let mut demo = DemoArgs::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = split_inline(a);
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--demo" => {}
            "--exit" | "--once" => demo.exit = true,
            "--calls" => demo.calls = positive(&flag, &value()?)?,
            "--listen" => demo.listen = Some(address(&flag, &value()?)?),
            other => return Err(format!("`{other}` does not go with --demo (see --help)")),
        }
    }
    Ok(demo)
}

fn split_inline(arg: &str) -> (String, Option<String>) {
    match arg.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
        _ => (arg.to_owned(), None),
    }
}

/// The quick flags, turned into the configuration a file would give.
pub fn quick_flags(mut args: impl Iterator<Item = String>) -> Result<Config, String> {
    let mut config: Config =
        Config::from_toml("<flags>", "[backends]\n").map_err(|e| e.to_string())?;
    let mut upstreams = Vec::new();
    let mut name = None;
    let mut timeout = None;
    let mut max_response = None;
    let mut group = Group::failover(Vec::new());
    let mut quorum = None;
    let mut hedge = None;
    let (mut allow, mut deny) = (Vec::new(), Vec::new());

    while let Some(arg) = args.next() {
        let (flag, inline) = split_inline(&arg);
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--listen" => config.server.listen = address(&flag, &value()?)?,
            "--upstream" => upstreams.push(value()?),
            "--name" => name = Some(value()?),
            "--timeout" => timeout = Some(seconds(&flag, &value()?)?),
            "--retries" => config.retry.max_retries = whole(&flag, &value()?)?,
            "--failure-threshold" => {
                group.failure_threshold = u32::try_from(positive(&flag, &value()?)?)
                    .map_err(|_| format!("{flag}: too large"))?;
            }
            "--out-of-service" => group.out_of_service = seconds(&flag, &value()?)?,
            "--spread" => {
                group.strategy = match value()?.as_str() {
                    "off" => Strategy::Failover,
                    "round-robin" => Strategy::RoundRobin,
                    "least-latency" => Strategy::LeastLatency,
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
                config.protocol = match value()?.as_str() {
                    "ethereum" => Protocol::Ethereum,
                    "electrum" => Protocol::Electrum,
                    v => return Err(format!("--cache: `{v}` is not one of ethereum, electrum")),
                };
                config.cache.enabled = true;
            }
            "--cache-mb" => config.cache.max_mb = positive(&flag, &value()?)?,
            "--cache-header" => config.server.cache_header = true,
            "--served-by-header" => config.server.served_by_header = true,
            "--metrics-listen" => config.metrics.listen = Some(address(&flag, &value()?)?),
            "--log-format" => {
                config.log.format = match value()?.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    v => return Err(format!("--log-format: `{v}` is not one of text, json")),
                }
            }
            "--request-timeout" => config.server.request_timeout = seconds(&flag, &value()?)?,
            "--shutdown-timeout" => config.server.shutdown_timeout = seconds(&flag, &value()?)?,
            "--max-body" => config.server.max_body_bytes = positive(&flag, &value()?)?,
            "--max-batch" => config.server.max_batch = positive(&flag, &value()?)?,
            "--max-response" => max_response = Some(positive(&flag, &value()?)?),
            "--body-timeout" => config.server.body_timeout = seconds(&flag, &value()?)?,
            "--allow" => allow.push(value()?),
            "--deny" => deny.push(value()?),
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        }
    }
    if upstreams.is_empty() {
        return Err("missing --upstream URL (see --help, or try --demo)".to_owned());
    }
    if name.is_some() && upstreams.len() > 1 {
        return Err(
            "--name names a single backend; name several with --upstream NAME=URL".to_owned(),
        );
    }
    let count = upstreams.len();
    let mut members = Vec::with_capacity(count);
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
        if config.backends.contains_key(&n) {
            return Err(format!("--upstream: the name `{n}` is used twice"));
        }
        let backend = Backend {
            url: Spanned::new(0..0, EnvString(url)),
            timeout,
            connect_timeout: None,
            max_response_bytes: max_response,
            headers: BTreeMap::new(),
            basic_auth: None,
            max_concurrency: None,
            adaptive_concurrency: false,
        };
        config
            .backends
            .insert(n.clone(), Spanned::new(0..0, backend));
        members.push(Spanned::new(0..0, n));
    }
    if let Some(k) = quorum {
        if k > count {
            return Err(format!("--quorum {k}: only {count} --upstream given"));
        }
        if hedge.is_some() || group.strategy != Strategy::Failover {
            return Err(
                "--quorum asks every backend; it does not combine with --hedge or --spread"
                    .to_owned(),
            );
        }
        group.strategy = Strategy::Quorum;
        group.quorum = Some(Spanned::new(0..0, k));
    } else if let Some(d) = hedge {
        group.strategy = Strategy::Hedged;
        group.hedge_delay = Some(d);
    }
    group.members = Spanned::new(0..0, members);
    config
        .groups
        .insert("default".to_owned(), Spanned::new(0..0, group));
    if !allow.is_empty() {
        config.methods.allow = Some(Spanned::new(0..0, allow));
    }
    if !deny.is_empty() {
        config.methods.deny = Some(Spanned::new(0..0, deny));
    }
    config
        .validate(&crate::config::Source {
            file: "<flags>",
            text: "",
        })
        .map_err(|e| {
            // Flags have no lines; name the setting in flag terms.
            format!("{}: {}", e.key, e.message)
        })?;
    Ok(config)
}

fn address(flag: &str, v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("{flag}: `{v}` is not an address like 127.0.0.1:8545"))
}

fn seconds(flag: &str, v: &str) -> Result<Secs, String> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => {
            Ok(Secs(std::time::Duration::from_secs_f64(s)))
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    fn run(args: &[&str]) -> Config {
        match parse(args) {
            Ok(Command::Run(c)) => *c,
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
    fn commands_are_recognised() {
        assert!(matches!(parse(&[]), Ok(Command::Nothing)));
        assert!(matches!(parse(&["--help"]), Ok(Command::Help)));
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
            (&["--upstream", "ftp://a"][..], "http://"),
            (
                &["--upstream", "http://a", "--allow", "e*th"][..],
                "methods.allow",
            ),
            (
                &["--config", "x.toml", "--listen", "127.0.0.1:1"][..],
                "in the file",
            ),
            (&["check"][..], "--config"),
            (
                &["--demo", "--upstream", "http://a"][..],
                "does not go with --demo",
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
