//! The command line.

use std::net::SocketAddr;
use std::time::Duration;

use rpc_electrum::address::Network;

pub const USAGE: &str = "\
electrum-gateway: HTTP JSON-RPC and REST in front of a pool of Electrum servers

USAGE:
    electrum-gateway --server [NAME=]tcp://HOST:PORT [--server [NAME=]tls://HOST:PORT ...] [OPTIONS]
    electrum-gateway --config gateway.toml [OPTIONS]

OPTIONS:
    --config FILE           read settings from a TOML file (examples/electrum-gateway/gateway.toml
                            documents every key); flags given as well override it
    --listen ADDR           address to listen on [default: 127.0.0.1:8080]
    --server [NAME=]URL     an Electrum server (tcp:// or tls://); repeat for a pool, tried in
                            the order given (unnamed: server-1, server-2, ...)
    --network NET           mainnet | testnet | regtest: which addresses are accepted [default: mainnet]
    --request-timeout SECS  time one server gets to answer one attempt [default: 10]
    --call-timeout SECS     deadline of a client's call, all attempts included
                            [default: 3 x --request-timeout]
    --max-lag BLOCKS        a server more blocks behind the best leaves rotation [default: 2]
    --max-stall SECS        a server behind whose tip has not moved this long leaves rotation [default: 120]
    --probe-interval SECS   ask a server for its tip when none was learned for this long [default: 5]
    --max-probes N          tip probes per second per server, at most [default: 0.5]
    --broadcast-to N        servers a transaction is sent to at once [default: 3]
    --allow METHOD          also let clients call METHOD through POST / (repeatable)
    --insecure-tls          accept any certificate from tls:// servers (testing only)
    --log-format FORMAT     text or json [default: text]
    -h, --help              print this help
    -V, --version           print the version

ROUTES:
    POST /                                 Electrum JSON-RPC (an allow-list of read methods and broadcast)
    GET  /v1/address/{address}/balance     confirmed and unconfirmed balance, in satoshis
    GET  /v1/address/{address}/utxos       unspent outputs
    GET  /v1/address/{address}/history    confirmed and mempool transactions
    GET  /v1/tx/{txid}                     raw hex and decoded basics
    POST /v1/tx                            broadcast (body: raw hex, or {\"hex\": \"...\"}) to several servers
    GET  /v1/tip                           the best block: height and header
    GET  /v1/block/{height}/header         a block header
    GET  /v1/events?address=A&address=B    server-sent events: new tips and address status changes
    GET  /healthz                          200 while a server is connected and current, else 503
    GET  /metrics                          Prometheus metrics";

/// Everything the command line says.
#[derive(Debug, Clone)]
pub struct Args {
    pub listen: SocketAddr,
    pub servers: Vec<(String, String)>,
    pub network: Network,
    pub request_timeout: Duration,
    /// The deadline of a client's call (several attempts fit in it).
    pub call_timeout: Option<Duration>,
    pub max_lag: u64,
    pub max_stall: Duration,
    pub probe_interval: Duration,
    pub max_probes_per_second: f64,
    /// Servers that must reach a tip before it is agreed (None: the library
    /// default, 2, or 1 with one server).
    pub agree: Option<usize>,
    pub max_ahead: u64,
    pub confirm_within: Duration,
    pub broadcast_to: usize,
    pub allow: Vec<String>,
    pub insecure_tls: bool,
    pub log_json: bool,
}

impl Args {
    /// The deadline of a client's call: `--call-timeout`, else three
    /// attempts' worth, so a call survives two frozen servers in a row.
    pub fn call_deadline(&self) -> Duration {
        self.call_timeout.unwrap_or(self.request_timeout * 3)
    }
}

pub enum Command {
    Run(Box<Args>),
    Help,
    Version,
}

pub fn parse_args(it: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        servers: Vec::new(),
        network: Network::Mainnet,
        request_timeout: Duration::from_secs(10),
        call_timeout: None,
        max_lag: 2,
        max_stall: Duration::from_secs(120),
        probe_interval: Duration::from_secs(5),
        max_probes_per_second: 0.5,
        agree: None,
        max_ahead: 1024,
        confirm_within: Duration::from_secs(600),
        broadcast_to: 3,
        allow: Vec::new(),
        insecure_tls: false,
        log_json: false,
    };
    let mut specs = Vec::new();
    let mut specs_from_flags = false;
    let all: Vec<String> = it.collect();
    // The file first, so flags override it.
    if let Some(i) = all
        .iter()
        .position(|a| a == "--config" || a.starts_with("--config="))
    {
        let path = match all[i].strip_prefix("--config=") {
            Some(p) => p.to_owned(),
            None => all.get(i + 1).cloned().ok_or("--config needs a file")?,
        };
        let file = crate::config::load(&path)?;
        file.apply(&mut args, &mut specs)?;
    }
    let mut it = all.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--listen" => {
                let v = value()?;
                args.listen = v.parse().map_err(|_| {
                    format!("--listen: `{v}` is not an address like 127.0.0.1:8080")
                })?;
            }
            "--config" => {
                value()?; // read above
            }
            "--server" => {
                if !specs_from_flags {
                    // Servers on the command line replace the file's.
                    specs.clear();
                    specs_from_flags = true;
                }
                specs.push(value()?)
            }
            "--network" => {
                args.network = match value()?.as_str() {
                    "mainnet" => Network::Mainnet,
                    "testnet" => Network::Testnet,
                    "regtest" => Network::Regtest,
                    v => {
                        return Err(format!(
                            "--network: `{v}` is not mainnet, testnet or regtest"
                        ))
                    }
                }
            }
            "--request-timeout" => args.request_timeout = seconds(&flag, &value()?)?,
            "--call-timeout" => args.call_timeout = Some(seconds(&flag, &value()?)?),
            "--max-lag" => args.max_lag = whole(&flag, &value()?)?,
            "--max-stall" => args.max_stall = seconds(&flag, &value()?)?,
            "--probe-interval" => args.probe_interval = seconds(&flag, &value()?)?,
            "--max-probes" => {
                let v = value()?;
                args.max_probes_per_second = match v.parse::<f64>() {
                    Ok(n) if n.is_finite() && n >= 0.0 => n,
                    _ => {
                        return Err(format!(
                            "{flag}: `{v}` is not a number of probes per second"
                        ))
                    }
                }
            }
            "--broadcast-to" => {
                args.broadcast_to = usize::try_from(whole(&flag, &value()?)?.max(1))
                    .map_err(|_| format!("{flag}: too large"))?
            }
            "--allow" => args.allow.push(value()?),
            "--insecure-tls" => args.insecure_tls = true,
            "--log-format" => {
                args.log_json = match value()?.as_str() {
                    "text" => false,
                    "json" => true,
                    v => return Err(format!("--log-format: `{v}` is not text or json")),
                }
            }
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        }
    }
    if specs.is_empty() {
        return Err("missing --server URL (see --help)".to_owned());
    }
    for (i, spec) in specs.into_iter().enumerate() {
        let (name, url) = match spec.split_once('=') {
            Some((n, url)) if !n.contains("://") && url.contains("://") => {
                (n.to_owned(), url.to_owned())
            }
            _ => (format!("server-{}", i + 1), spec),
        };
        if !(url.starts_with("tcp://") || url.starts_with("tls://")) {
            return Err(format!(
                "--server {name}: the URL must start with tcp:// or tls://"
            ));
        }
        if name.is_empty() || args.servers.iter().any(|(n, _)| *n == name) {
            return Err(format!(
                "--server: the name `{name}` is empty or used twice"
            ));
        }
        args.servers.push((name, url));
    }
    if args.servers.len() > rpc_failover::MAX_MEMBERS {
        return Err(format!("at most {} servers", rpc_failover::MAX_MEMBERS));
    }
    Ok(Command::Run(Box::new(args)))
}

pub fn seconds(flag: &str, v: &str) -> Result<Duration, String> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("{flag}: `{v}` is not a positive number of seconds")),
    }
}

fn whole(flag: &str, v: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .map_err(|_| format!("{flag}: `{v}` is not a whole number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(a: &[&str]) -> Result<Command, String> {
        parse_args(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn servers_are_named_and_checked() {
        let Ok(Command::Run(a)) = parse(&[
            "--server",
            "a=tcp://h:1",
            "--server",
            "tls://h:2",
            "--network",
            "regtest",
        ]) else {
            panic!("parses")
        };
        assert_eq!(a.servers[0], ("a".to_owned(), "tcp://h:1".to_owned()));
        assert_eq!(a.servers[1].0, "server-2");
        assert_eq!(a.network, Network::Regtest);
        for (bad, needle) in [
            (&[][..], "missing --server"),
            (&["--server", "http://h:1"][..], "tcp:// or tls://"),
            (
                &["--server", "a=tcp://h:1", "--server", "a=tcp://h:2"][..],
                "used twice",
            ),
            (
                &["--server", "tcp://h:1", "--network", "moon"][..],
                "--network",
            ),
            (
                &["--server", "tcp://h:1", "--bogus"][..],
                "unknown argument",
            ),
        ] {
            let Err(e) = parse(bad) else {
                panic!("{bad:?} should fail")
            };
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn flags_override_the_config_file() {
        let path = std::env::temp_dir().join(format!("gateway-args-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "network = \"testnet\"\nbroadcast_to = 5\n[[servers]]\nname = \"f\"\nurl = \"tcp://h:1\"\n[head]\nmax_lag = 7\n",
        )
        .expect("write");
        let p = path.to_string_lossy().into_owned();
        let Ok(Command::Run(a)) = parse(&["--config", &p, "--max-lag", "4"]) else {
            panic!("parses")
        };
        assert_eq!(a.network, Network::Testnet);
        assert_eq!((a.broadcast_to, a.max_lag), (5, 4), "the flag wins");
        assert_eq!(a.servers, [("f".to_owned(), "tcp://h:1".to_owned())]);
        let Ok(Command::Run(a)) = parse(&["--config", &p, "--server", "g=tcp://h:2"]) else {
            panic!("parses")
        };
        assert_eq!(
            a.servers,
            [("g".to_owned(), "tcp://h:2".to_owned())],
            "flags replace the file's servers"
        );
        let _ = std::fs::remove_file(&path);
        let Err(e) = parse(&["--config", "/nonexistent/gateway.toml"]) else {
            panic!("missing file")
        };
        assert!(e.contains("cannot read"), "{e}");
    }
}
