//! `--config gateway.toml`: the same settings as the flags, in a file
//! (`examples/electrum-gateway/gateway.toml` documents every key). Unknown
//! keys and wrong types are refused with the file, line and key.

use std::net::SocketAddr;
use std::time::Duration;

use rpc_electrum::address::Network;
use serde::Deserialize;

use crate::args::Args;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    listen: Option<SocketAddr>,
    network: Option<NetworkName>,
    request_timeout: Option<Dur>,
    call_timeout: Option<Dur>,
    broadcast_to: Option<usize>,
    #[serde(default)]
    allow: Vec<String>,
    insecure_tls: Option<bool>,
    tls_ca: Option<String>,
    log_format: Option<LogFormat>,
    verify: Option<VerifyName>,
    coin: Option<CoinName>,
    checkpoint: Option<String>,
    header_file: Option<std::path::PathBuf>,
    #[serde(default)]
    servers: Vec<Server>,
    head: Option<Head>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Server {
    name: String,
    url: String,
    /// The SHA-256 fingerprint of the server's certificate.
    pin: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    max_lag: Option<u64>,
    max_stall: Option<Dur>,
    probe_interval: Option<Dur>,
    max_probes_per_second: Option<f64>,
    agree: Option<usize>,
    max_ahead: Option<u64>,
    confirm_within: Option<Dur>,
}

/// A duration as `rpc-proxy` writes them: `"250ms"`, `"5s"`, `"2m"`, `"1h"`,
/// or a number of seconds.
#[derive(Debug, Clone, Copy)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(f64),
            Text(String),
        }
        let parsed = match Raw::deserialize(d)? {
            Raw::Seconds(v) => crate::duration::seconds(v),
            Raw::Text(t) => crate::duration::parse_duration(&t),
        };
        parsed.map(Dur).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum NetworkName {
    Mainnet,
    Testnet,
    Regtest,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum VerifyName {
    Spv,
    CrossCheck,
    Off,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum CoinName {
    Bitcoin,
    BitcoinCash,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    Text,
    Json,
}

/// Reads and parses `path`; errors name the file, line and key.
pub fn load(path: &str) -> Result<File, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
    parse(path, &text)
}

fn parse(path: &str, text: &str) -> Result<File, String> {
    let de = toml::de::Deserializer::parse(text).map_err(|e| format!("{path}: {e}"))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        match line {
            Some(line) => format!("{path}:{line}: `{key}`: {}", inner.message().trim()),
            None => format!("{path}: `{key}`: {}", inner.message().trim()),
        }
    })
}

impl File {
    /// Puts the file's settings into `args` (flags are applied after).
    pub fn apply(self, args: &mut Args, specs: &mut Vec<String>) -> Result<(), String> {
        if let Some(l) = self.listen {
            args.listen = l;
        }
        if let Some(n) = self.network {
            args.network = match n {
                NetworkName::Mainnet => Network::Mainnet,
                NetworkName::Testnet => Network::Testnet,
                NetworkName::Regtest => Network::Regtest,
            };
        }
        if let Some(t) = self.request_timeout {
            args.request_timeout = t.0;
        }
        if let Some(t) = self.call_timeout {
            args.call_timeout = Some(t.0);
        }
        if let Some(n) = self.broadcast_to {
            args.broadcast_to = n.max(1);
        }
        args.allow.extend(self.allow);
        if let Some(b) = self.insecure_tls {
            args.insecure_tls = b;
        }
        if let Some(path) = &self.tls_ca {
            args.tls_ca = Some(crate::args::load_ca(path).map_err(|e| format!("tls_ca: {e}"))?);
        }
        if let Some(v) = self.verify {
            args.verify = match v {
                VerifyName::Spv => crate::args::VerifyArg::Spv,
                VerifyName::CrossCheck => crate::args::VerifyArg::CrossCheck,
                VerifyName::Off => crate::args::VerifyArg::Off,
            };
        }
        if let Some(c) = self.coin {
            args.coin = match c {
                CoinName::Bitcoin => crate::args::CoinArg::Bitcoin,
                CoinName::BitcoinCash => crate::args::CoinArg::BitcoinCash,
            };
        }
        if let Some(c) = &self.checkpoint {
            let (cp, root) = crate::args::checkpoint(c).map_err(|e| format!("checkpoint: {e}"))?;
            args.checkpoint = Some(cp);
            args.checkpoint_root = root;
        }
        if let Some(p) = self.header_file {
            args.header_file = Some(p);
        }
        if let Some(f) = self.log_format {
            args.log_json = matches!(f, LogFormat::Json);
        }
        for s in self.servers {
            if let Some(pin) = s.pin {
                args.tls_pins.push((s.name.clone(), pin));
            }
            specs.push(format!("{}={}", s.name, s.url));
        }
        if let Some(h) = self.head {
            if let Some(n) = h.max_lag {
                args.max_lag = n;
            }
            if let Some(s) = h.max_stall {
                args.max_stall = s.0;
            }
            if let Some(s) = h.probe_interval {
                args.probe_interval = s.0;
            }
            if let Some(n) = h.max_probes_per_second {
                if !(n.is_finite() && n >= 0.0) {
                    return Err("head.max_probes_per_second: must be 0 or more".to_owned());
                }
                args.max_probes_per_second = n;
            }
            if let Some(k) = h.agree {
                if k == 0 {
                    return Err("head.agree: must be at least 1".to_owned());
                }
                args.agree = Some(k);
            }
            if let Some(n) = h.max_ahead {
                args.max_ahead = n;
            }
            if let Some(s) = h.confirm_within {
                args.confirm_within = s.0;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses() {
        let f = parse("gateway.toml", include_str!("../gateway.toml")).expect("parses");
        assert_eq!(f.servers.len(), 2);
        assert!(f.head.is_some());
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let e = parse("g.toml", "listen = \"127.0.0.1:1\"\n[head]\nmax_lagg = 2\n").unwrap_err();
        assert!(e.starts_with("g.toml:3:") && e.contains("max_lagg"), "{e}");
        let e = parse("g.toml", "request_timeout = \"soon\"\n").unwrap_err();
        assert!(
            e.starts_with("g.toml:1:") && e.contains("`request_timeout`"),
            "{e}"
        );
    }

    #[test]
    fn durations_are_written_as_in_rpc_proxy() {
        let f = parse(
            "g.toml",
            "request_timeout = \"250ms\"\ncall_timeout = 2\n[head]\nmax_stall = \"2m\"\n",
        )
        .expect("parses");
        let mut args = crate::args::Args::default();
        f.apply(&mut args, &mut Vec::new()).expect("applies");
        assert_eq!(args.request_timeout, Duration::from_millis(250));
        assert_eq!(args.call_timeout, Some(Duration::from_secs(2)));
        assert_eq!(args.max_stall, Duration::from_secs(120));
    }
}
