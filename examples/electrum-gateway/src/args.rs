//! The command line (on `clap`).
//!
//! Conventions, shared with `rpc-proxy`: every option has a long flag and an
//! environment variable (`ELECTRUM_GATEWAY_LISTEN`, ...); a flag wins over
//! its variable, which wins over the `--config` file, which wins over the
//! default (servers given by flag or variable replace the file's). Durations
//! are `250ms`, `5s`, `2m`, `1h` or a number of seconds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args as ClapArgs, Parser, Subcommand, ValueEnum};
use rpc_electrum::address::Network;
use rpc_electrum::chain::{Checkpoint, Hash};
use rpc_electrum::TlsVerify;

use crate::cli_shared::Parsed;

const ROUTES: &str = "\
Routes:
    POST /                                 Electrum JSON-RPC (an allow-list of read methods and broadcast)
    GET  /v1/address/{address}/balance     confirmed and unconfirmed balance, in satoshis
    GET  /v1/address/{address}/utxos       unspent outputs
    GET  /v1/address/{address}/history     confirmed and mempool transactions
    GET  /v1/tx/{txid}                     raw hex and decoded basics
    POST /v1/tx                            broadcast (body: raw hex, or {\"hex\": \"...\"}) to several servers
    GET  /v1/tip                           the best block: height and header
    GET  /v1/block/{height}/header         a block header
    GET  /v1/events?address=A&address=B    server-sent events: new tips and address status changes
    GET  /healthz                          200 while a server is connected and current, else 503
    GET  /metrics                          Prometheus metrics

Logs go to stderr; set RUST_LOG (e.g. `info`, `rpc_electrum=debug`) to change the level.";

/// electrum-gateway: HTTP JSON-RPC and REST in front of a pool of Electrum servers
#[derive(Debug, Parser)]
#[command(
    name = "electrum-gateway",
    version,
    after_help = ROUTES,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Validate the settings (file, variables and flags), print what they
    /// build, and exit without connecting
    Check(Opts),
}

#[derive(Debug, Clone, ClapArgs)]
struct Opts {
    /// Read settings from a TOML file (examples/electrum-gateway/gateway.toml
    /// documents every key); flags and variables override it
    #[arg(
        short,
        long,
        value_name = "FILE",
        env = "ELECTRUM_GATEWAY_CONFIG",
        hide_env_values = true
    )]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(
        long,
        value_name = "ADDR",
        env = "ELECTRUM_GATEWAY_LISTEN",
        hide_env_values = true
    )]
    listen: Option<SocketAddr>,
    /// An Electrum server (tcp:// or tls://); repeat (or separate with
    /// commas) for a pool, tried in the order given (unnamed: server-1, ...)
    #[arg(
        long,
        value_name = "[NAME=]URL",
        env = "ELECTRUM_GATEWAY_SERVERS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    server: Vec<String>,
    /// Which addresses are accepted [default: mainnet]
    #[arg(
        long,
        value_name = "NET",
        env = "ELECTRUM_GATEWAY_NETWORK",
        hide_env_values = true
    )]
    network: Option<NetworkArg>,
    /// Time one server gets to answer one attempt [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = secs, allow_negative_numbers = true, env = "ELECTRUM_GATEWAY_REQUEST_TIMEOUT", hide_env_values = true)]
    request_timeout: Option<Duration>,
    /// Deadline of a client's call, all attempts included [default: 3 x --request-timeout]
    #[arg(long, value_name = "DURATION", value_parser = secs, allow_negative_numbers = true, env = "ELECTRUM_GATEWAY_CALL_TIMEOUT", hide_env_values = true)]
    call_timeout: Option<Duration>,
    /// A server more blocks behind the best leaves rotation [default: 2]
    #[arg(
        long,
        value_name = "BLOCKS",
        env = "ELECTRUM_GATEWAY_MAX_LAG",
        hide_env_values = true
    )]
    max_lag: Option<u64>,
    /// A server behind whose tip has not moved this long leaves rotation [default: 120s]
    #[arg(long, value_name = "DURATION", value_parser = secs, allow_negative_numbers = true, env = "ELECTRUM_GATEWAY_MAX_STALL", hide_env_values = true)]
    max_stall: Option<Duration>,
    /// Ask a server for its tip when none was learned for this long [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = secs, allow_negative_numbers = true, env = "ELECTRUM_GATEWAY_PROBE_INTERVAL", hide_env_values = true)]
    probe_interval: Option<Duration>,
    /// Tip probes per second per server, at most [default: 0.5]
    #[arg(long, value_name = "N", value_parser = rate, allow_negative_numbers = true, env = "ELECTRUM_GATEWAY_MAX_PROBES", hide_env_values = true)]
    max_probes: Option<f64>,
    /// Servers that must reach a tip before it is believed [default: 2, or 1 with one server]
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..), env = "ELECTRUM_GATEWAY_AGREE", hide_env_values = true)]
    agree: Option<u64>,
    /// A tip more blocks above the agreed one is not believed [default: 1024]
    #[arg(
        long,
        value_name = "BLOCKS",
        env = "ELECTRUM_GATEWAY_MAX_AHEAD",
        hide_env_values = true
    )]
    max_ahead: Option<u64>,
    /// A claimed tip the others do not reach within this is not believed [default: 600s]
    #[arg(long, value_name = "DURATION", value_parser = secs, allow_negative_numbers = true, env = "ELECTRUM_GATEWAY_CONFIRM_WITHIN", hide_env_values = true)]
    confirm_within: Option<Duration>,
    /// Servers a transaction is sent to at once [default: 3]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), env = "ELECTRUM_GATEWAY_BROADCAST_TO", hide_env_values = true)]
    broadcast_to: Option<u64>,
    /// Which coin's rules the verified header chain follows [default: bitcoin]
    #[arg(
        long,
        value_name = "COIN",
        env = "ELECTRUM_GATEWAY_COIN",
        hide_env_values = true
    )]
    coin: Option<CoinArg>,
    /// Verify headers (proof of work, most work) and confirmations (merkle
    /// proofs) instead of believing servers: `spv`, `cross-check` (spv, and
    /// balances and unspent outputs compared across two servers) or `off`
    /// [default: spv]
    #[arg(
        long,
        value_name = "MODE",
        env = "ELECTRUM_GATEWAY_VERIFY",
        hide_env_values = true
    )]
    verify: Option<VerifyArg>,
    /// Start verifying after this block instead of the genesis block:
    /// HEIGHT:HASH:TIME:NEXT_BITS or HEIGHT:HASH:TIME:NEXT_BITS:ROOT (the hash as explorers print it;
    /// NEXT_BITS the next block's bits, hex; on Bitcoin the last block of a
    /// 2016-block period; ROOT, optional, the merkle root of the block
    /// hashes up to it, `root` of blockchain.block.header(H, H) on a server
    /// you run: confirmations below the checkpoint are then proven too)
    #[arg(long, value_name = "CHECKPOINT", value_parser = checkpoint, env = "ELECTRUM_GATEWAY_CHECKPOINT", hide_env_values = true)]
    checkpoint: Option<(Checkpoint, Option<Hash>)>,
    /// Keep the verified headers in this file, so a restart fetches only
    /// newer ones (they are verified again on load) [default: memory only]
    #[arg(
        long,
        value_name = "FILE",
        env = "ELECTRUM_GATEWAY_HEADER_FILE",
        hide_env_values = true
    )]
    header_file: Option<PathBuf>,
    /// Addresses the event streams may watch at once, all streams together
    /// (each is a subscription on every server) [default: 10000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), env = "ELECTRUM_GATEWAY_MAX_WATCHED", hide_env_values = true)]
    max_watched: Option<u64>,
    /// Also let clients call METHOD through POST / (repeatable)
    #[arg(long, value_name = "METHOD")]
    allow: Vec<String>,
    /// Accept only this certificate from server NAME: the SHA-256 of its
    /// DER bytes, hex (`openssl x509 -noout -fingerprint -sha256`); the
    /// safe way to use a self-signed server; repeatable
    #[arg(
        long,
        value_name = "NAME=SHA256",
        env = "ELECTRUM_GATEWAY_TLS_PINS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    tls_pin: Vec<String>,
    /// Trust the certificate authorities in this PEM file (a private CA)
    /// for tls:// servers without a pin, instead of the public roots
    #[arg(
        long,
        value_name = "FILE",
        env = "ELECTRUM_GATEWAY_TLS_CA",
        hide_env_values = true
    )]
    tls_ca: Option<PathBuf>,
    /// Accept any certificate from tls:// servers without a pin (testing
    /// only: anyone in the middle can read and change every answer)
    #[arg(long, action = ArgAction::SetTrue, env = "ELECTRUM_GATEWAY_INSECURE_TLS", hide_env_values = true)]
    insecure_tls: bool,
    /// Log format [default: text]
    #[arg(
        long,
        value_name = "FORMAT",
        env = "ELECTRUM_GATEWAY_LOG_FORMAT",
        hide_env_values = true
    )]
    log_format: Option<LogFormatArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum NetworkArg {
    Mainnet,
    Testnet,
    Regtest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CoinArg {
    Bitcoin,
    BitcoinCash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerifyArg {
    /// Verified headers, merkle-proven confirmations, liars out of rotation
    Spv,
    /// `spv`, and balances and unspent outputs (which no proof covers)
    /// asked of two servers in distinct networks and compared
    CrossCheck,
    /// Believe the servers (only for servers you run yourself)
    Off,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

/// Everything the command line (and the file) says.
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
    /// Addresses watched at once by all event streams.
    pub max_watched: usize,
    /// Whose rules the verified chain follows.
    pub coin: CoinArg,
    /// Whether headers and confirmations are verified.
    pub verify: VerifyArg,
    /// Where verification starts (None: the genesis block).
    pub checkpoint: Option<Checkpoint>,
    /// The merkle root of the block hashes up to the checkpoint, if given.
    pub checkpoint_root: Option<Hash>,
    /// Where the verified headers are kept (None: memory only).
    pub header_file: Option<PathBuf>,
    pub allow: Vec<String>,
    /// Pinned certificate fingerprints by server name.
    pub tls_pins: Vec<(String, String)>,
    /// A private CA's PEM file, and the roots read from it.
    pub tls_ca: Option<(String, TlsVerify)>,
    pub insecure_tls: bool,
    pub log_json: bool,
    /// The file the settings came from, if any (for `check`).
    pub config: Option<String>,
}

impl Default for Args {
    fn default() -> Self {
        Args {
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
            max_watched: 10_000,
            coin: CoinArg::Bitcoin,
            verify: VerifyArg::Spv,
            checkpoint: None,
            checkpoint_root: None,
            header_file: None,
            allow: Vec::new(),
            tls_pins: Vec::new(),
            tls_ca: None,
            insecure_tls: false,
            log_json: false,
            config: None,
        }
    }
}

impl Args {
    /// The deadline of a client's call: `--call-timeout`, else three
    /// attempts' worth, so a call survives two frozen servers in a row.
    pub fn call_deadline(&self) -> Duration {
        self.call_timeout.unwrap_or(self.request_timeout * 3)
    }

    /// How server `name`'s certificate is checked (`None`: a tcp://
    /// server): its pin, else the private CA, else any certificate with
    /// `--insecure-tls`, else the public roots.
    pub fn tls_for(&self, name: &str) -> Option<TlsVerify> {
        let (_, url) = self.servers.iter().find(|(n, _)| n == name)?;
        if !url.starts_with("tls://") {
            return None;
        }
        if let Some((_, pin)) = self.tls_pins.iter().find(|(n, _)| n == name) {
            return Some(TlsVerify::Pinned(pin.clone()));
        }
        Some(match (&self.tls_ca, self.insecure_tls) {
            (Some((_, roots)), _) => roots.clone(),
            (None, true) => TlsVerify::InsecureAcceptAny,
            (None, false) => TlsVerify::WebPki,
        })
    }
}

/// Reads a private CA's PEM file (for `--tls-ca` and `tls_ca`).
pub fn load_ca(path: &str) -> Result<(String, TlsVerify), String> {
    let pem = std::fs::read(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
    let roots = TlsVerify::roots_from_pem(&pem).map_err(|e| format!("{path}: {e}"))?;
    Ok((path.to_owned(), roots))
}

pub enum Command {
    Run(Box<Args>),
    /// Validate and describe, without connecting.
    Check(Box<Args>),
    /// `--help` / `--version`: print this to stdout and exit 0.
    Print(String),
}

/// Parses the arguments (without the program name). Errors are one line.
pub fn parse_args(it: impl Iterator<Item = String>) -> Result<Command, String> {
    let cli = match crate::cli_shared::parse::<Cli>("electrum-gateway", it)? {
        Parsed::Args(cli) => cli,
        Parsed::Print(text) => return Ok(Command::Print(text)),
    };
    match cli.command {
        Some(Sub::Check(opts)) => opts.resolve().map(|a| Command::Check(Box::new(a))),
        None => cli.opts.resolve().map(|a| Command::Run(Box::new(a))),
    }
}

impl Opts {
    /// Defaults, then the file, then variables and flags.
    fn resolve(self) -> Result<Args, String> {
        let mut args = Args::default();
        let mut specs = Vec::new();
        if let Some(path) = &self.config {
            let path = path.to_string_lossy().into_owned();
            let file = crate::config::load(&path)?;
            file.apply(&mut args, &mut specs)?;
            args.config = Some(path);
        }
        if !self.server.is_empty() {
            // Servers from flags or the environment replace the file's
            // (and the file's pins with them).
            specs = self.server;
            args.tls_pins.clear();
        }
        if let Some(a) = self.listen {
            args.listen = a;
        }
        if let Some(n) = self.network {
            args.network = match n {
                NetworkArg::Mainnet => Network::Mainnet,
                NetworkArg::Testnet => Network::Testnet,
                NetworkArg::Regtest => Network::Regtest,
            };
        }
        if let Some(t) = self.request_timeout {
            args.request_timeout = t;
        }
        if let Some(t) = self.call_timeout {
            args.call_timeout = Some(t);
        }
        if let Some(n) = self.max_lag {
            args.max_lag = n;
        }
        if let Some(t) = self.max_stall {
            args.max_stall = t;
        }
        if let Some(t) = self.probe_interval {
            args.probe_interval = t;
        }
        if let Some(n) = self.max_probes {
            args.max_probes_per_second = n;
        }
        if let Some(k) = self.agree {
            args.agree = Some(usize::try_from(k).map_err(|_| "--agree: too large")?);
        }
        if let Some(n) = self.max_ahead {
            args.max_ahead = n;
        }
        if let Some(t) = self.confirm_within {
            args.confirm_within = t;
        }
        if let Some(n) = self.broadcast_to {
            args.broadcast_to = usize::try_from(n).map_err(|_| "--broadcast-to: too large")?;
        }
        if let Some(n) = self.max_watched {
            args.max_watched = usize::try_from(n).map_err(|_| "--max-watched: too large")?;
        }
        if let Some(c) = self.coin {
            args.coin = c;
        }
        if let Some(v) = self.verify {
            args.verify = v;
        }
        if let Some((c, root)) = self.checkpoint {
            args.checkpoint = Some(c);
            args.checkpoint_root = root;
        }
        if let Some(p) = self.header_file {
            args.header_file = Some(p);
        }
        args.allow.extend(self.allow);
        args.insecure_tls |= self.insecure_tls;
        if let Some(path) = &self.tls_ca {
            args.tls_ca = Some(load_ca(&path.to_string_lossy())?);
        }
        for spec in self.tls_pin {
            let (name, pin) = spec
                .split_once('=')
                .ok_or_else(|| format!("--tls-pin `{spec}`: expected NAME=SHA256"))?;
            args.tls_pins.retain(|(n, _)| n != name);
            args.tls_pins.push((name.to_owned(), pin.to_owned()));
        }
        if let Some(f) = self.log_format {
            args.log_json = matches!(f, LogFormatArg::Json);
        }
        servers(&mut args, specs)?;
        Ok(args)
    }
}

/// Names and checks the server specs (`[NAME=]tcp://HOST:PORT`).
fn servers(args: &mut Args, specs: Vec<String>) -> Result<(), String> {
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
    for (name, pin) in &args.tls_pins {
        match args.servers.iter().find(|(n, _)| n == name) {
            None => return Err(format!("--tls-pin {name}: no server has that name")),
            Some((_, url)) if !url.starts_with("tls://") => {
                return Err(format!("--tls-pin {name}: the server is not tls://"))
            }
            Some(_) => {}
        }
        TlsVerify::pinned(pin).map_err(|e| format!("--tls-pin {name}: {e}"))?;
    }
    Ok(())
}

/// `HEIGHT:HASH:TIME:NEXT_BITS`, optionally with `:ROOT`.
pub fn checkpoint(v: &str) -> Result<(Checkpoint, Option<Hash>), String> {
    let parts: Vec<&str> = v.split(':').collect();
    let (height, hash, time, bits, root) = match parts[..] {
        [height, hash, time, bits] => (height, hash, time, bits, None),
        [height, hash, time, bits, root] => (height, hash, time, bits, Some(root)),
        _ => return Err(format!("`{v}` is not HEIGHT:HASH:TIME:NEXT_BITS[:ROOT]")),
    };
    let root = match root {
        Some(r) => Some(
            rpc_electrum::chain::hash_from_hex(r)
                .ok_or_else(|| format!("`{r}` is not a merkle root (64 hex digits)"))?,
        ),
        None => None,
    };
    let checkpoint = Checkpoint {
        height: height
            .parse()
            .map_err(|_| format!("`{height}` is not a height"))?,
        hash: rpc_electrum::chain::hash_from_hex(hash)
            .ok_or_else(|| format!("`{hash}` is not a block hash (64 hex digits)"))?,
        time: time
            .parse()
            .map_err(|_| format!("`{time}` is not a block time"))?,
        next_bits: u32::from_str_radix(bits.trim_start_matches("0x"), 16)
            .map_err(|_| format!("`{bits}` is not compact bits in hex"))?,
    };
    Ok((checkpoint, root))
}

/// A duration flag (`250ms`, `5s`, `2m`, or seconds).
pub fn secs(v: &str) -> Result<Duration, String> {
    crate::duration::parse_duration(v)
}

fn rate(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err(format!("`{v}` is not a number of probes per second")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(a: &[&str]) -> Result<Command, String> {
        parse_args(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn a_pin_wins_over_the_insecure_flag_and_only_tls_servers_are_pinned() {
        let pin = "ab".repeat(32);
        let Ok(Command::Run(a)) = parse(&[
            "--server",
            "a=tls://h:1,b=tls://h:2,c=tcp://h:3",
            "--tls-pin",
            &format!("a={pin}"),
            "--insecure-tls",
        ]) else {
            panic!("parses")
        };
        assert!(matches!(a.tls_for("a"), Some(TlsVerify::Pinned(p)) if p == pin));
        assert!(matches!(a.tls_for("b"), Some(TlsVerify::InsecureAcceptAny)));
        assert!(a.tls_for("c").is_none());
        let Ok(Command::Run(a)) = parse(&["--server", "b=tls://h:2"]) else {
            panic!("parses")
        };
        assert!(matches!(a.tls_for("b"), Some(TlsVerify::WebPki)));
        for (bad, says) in [
            (format!("c={pin}"), "not tls://"),
            (format!("z={pin}"), "no server has that name"),
            ("a=12".to_owned(), "64 hex digits"),
            (pin.clone(), "NAME=SHA256"),
        ] {
            let err = parse(&["--server", "a=tls://h:1,c=tcp://h:3", "--tls-pin", &bad])
                .err()
                .expect("refused");
            assert!(err.contains(says), "{bad}: {err}");
        }
        let err = parse(&["--server", "a=tls://h:1", "--tls-ca", "/nonexistent.pem"])
            .err()
            .expect("refused");
        assert!(err.contains("cannot read"), "{err}");
    }

    #[test]
    fn a_checkpoint_takes_an_optional_root() {
        let hash = "00".repeat(31) + "0a";
        let (cp, root) = checkpoint(&format!("9:{hash}:1700000000:207fffff")).expect("four parts");
        assert_eq!(
            (cp.height, cp.time, cp.next_bits, root),
            (9, 1_700_000_000, 0x207f_ffff, None)
        );
        let (_, root) = checkpoint(&format!("9:{hash}:1:207fffff:{hash}")).expect("five parts");
        assert_eq!(root, rpc_electrum::chain::hash_from_hex(&hash));
        for bad in [
            format!("9:{hash}:1:207fffff:zz"),
            format!("9:{hash}:1"),
            "x".to_owned(),
        ] {
            assert!(checkpoint(&bad).is_err(), "{bad}");
        }
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
                "unexpected argument",
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
