//! The TOML configuration of `rpc-proxy`: what each key means is documented
//! in `examples/proxy/proxy.toml`, which is parsed by the tests.
//!
//! Loading is two steps. [`Config::from_toml`] deserializes with unknown keys
//! refused, expanding `${ENV}` in the strings that may hold secrets; then
//! [`Config::validate`] checks what types cannot (references between
//! sections, patterns, ranges). Both report a [`ConfigError`] naming the
//! file, line, column and key.

use std::fmt;
use std::ops::Range;

use toml::Spanned;

mod env;
mod schema;
mod validate;

#[cfg(test)]
use env::expand_env;
pub use env::{missing_variables, redact_line, EnvString};
pub use schema::*;
pub use validate::{read_ca, read_keys_text};

/// Defaults shared with the quick flags and documented in `proxy.toml`.
pub mod defaults {
    use std::time::Duration;

    pub const RETRIES: u32 = 3;
    pub const FAILURE_THRESHOLD: u32 = 2;
    pub const OUT_OF_SERVICE: Duration = Duration::from_secs(5);
    pub const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
    pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
    pub const JITTER: f64 = 0.5;
    pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
    pub const BUDGET_RATIO: f64 = 0.1;
    pub const BUDGET_TOKENS: u32 = 20;
    pub const STALL_MIN: Duration = Duration::from_millis(150);
    pub const STALL_MAX: Duration = Duration::from_secs(3);
    pub const STALL_INITIAL: Duration = Duration::from_secs(3);
    pub const STALL_FACTOR: f64 = 4.0;
    pub const STALL_QUANTILE: f64 = 0.99;
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
    pub const RECHECK: Duration = Duration::from_secs(1);
    pub const QUEUE: usize = 1024;
    pub const QUEUE_WAIT: Duration = Duration::from_secs(5);
    pub const CACHE_MB: usize = 64;
    pub const CACHE_ENTRIES: usize = 100_000;
    pub const HEDGE_DELAY: Duration = Duration::from_millis(500);
    pub const KEY_HEADER: &str = "x-api-key";
    pub const CORS_MAX_AGE: Duration = Duration::from_secs(3600);
}

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as given.
    pub file: String,
    /// 1-based line and column, when the error has a place.
    pub position: Option<(usize, usize)>,
    /// The key path, e.g. `groups.main.members[1]`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// The offending line of the file, for display.
    pub snippet: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)?;
        } else {
            write!(f, ": `{}`: {}", self.key, self.message)?;
        }
        if let (Some(snippet), Some((line, col))) = (&self.snippet, self.position) {
            let gutter = line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{line} | {snippet}\n{:gutter$} | {:>col$}",
                "", "", "^"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Where errors point: the file's name and text.
pub struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    fn error(
        &self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (position, snippet) = match span {
            Some(span) if span.start <= self.text.len() && !self.text.is_empty() => {
                let before = &self.text[..span.start];
                let line = before.matches('\n').count() + 1;
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                let col = before[line_start..].chars().count() + 1;
                let snippet = self.text[line_start..]
                    .split('\n')
                    .next()
                    .unwrap_or("")
                    .trim_end_matches('\r');
                (Some((line, col)), Some(redact_line(snippet)))
            }
            _ => (None, None),
        };
        ConfigError {
            file: self.file.to_owned(),
            position,
            key: key.into(),
            message: message.into(),
            snippet,
        }
    }
}

impl Config {
    /// Parses `text` (the contents of `file`), refusing unknown keys and
    /// wrong types. Run [`validate`](Self::validate) next.
    pub fn from_toml(file: &str, text: &str) -> Result<Config, ConfigError> {
        let src = Source { file, text };
        let de = toml::de::Deserializer::parse(text)
            .map_err(|e| src.error(e.span(), "", first_line(e.message())))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            // Spanned values add an internal segment to the path; drop it.
            let key = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let key = if key == "." { String::new() } else { key };
            let inner = e.into_inner();
            let mut message = first_line(inner.message());
            if message.starts_with("environment variable `") {
                // Name every missing variable at once, not one per run.
                let missing = missing_variables(text, |n| std::env::var(n).ok());
                if missing.len() > 1 {
                    message = format!(
                        "environment variables {} are not set",
                        missing
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
            src.error(inner.span(), key, message)
        })
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &str) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            position: None,
            key: String::new(),
            message: format!("cannot read: {e}"),
            snippet: None,
        })?;
        let config = Config::from_toml(path, &text)?;
        config.validate(&Source {
            file: path,
            text: &text,
        })?;
        Ok(config)
    }

    /// The groups calls can reach, each with its members in priority order.
    /// Without a `[groups]` section, a single backend forms the group
    /// `default`.
    pub fn effective_groups(&self) -> Vec<(String, Group)> {
        if self.groups.is_empty() {
            if let Some(name) = self.backends.keys().next() {
                let member = Spanned::new(0..0, name.clone());
                return vec![("default".to_owned(), Group::failover(vec![member]))];
            }
        }
        self.groups
            .iter()
            .map(|(n, g)| (n.clone(), g.get_ref().clone()))
            .collect()
    }

    /// The group of methods no route matches, if any.
    pub fn default_group(&self) -> Option<String> {
        match &self.routing.default {
            Some(name) => Some(name.get_ref().clone()),
            None => {
                let groups = self.effective_groups();
                (groups.len() == 1).then(|| groups[0].0.clone())
            }
        }
    }
}

fn first_line(message: &str) -> String {
    message.trim().lines().next().unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let config = Config::from_toml("test.toml", text)?;
        config.validate(&Source {
            file: "test.toml",
            text,
        })?;
        Ok(config)
    }

    fn error(text: &str) -> ConfigError {
        match parse(text) {
            Ok(_) => panic!("should fail:\n{text}"),
            Err(e) => e,
        }
    }

    const ONE: &str = "[backends.a]\nurl = \"http://127.0.0.1:1\"\n";

    #[test]
    fn the_example_file_is_valid_and_documents_every_section() {
        let text = include_str!("../../proxy.toml");
        let config = Config::from_toml("proxy.toml", text);
        // Its secrets come from the environment, which the test does not set.
        let err = config.expect_err("PRIMARY_API_KEY is unset in tests");
        assert!(err.message.contains("PRIMARY_API_KEY"), "{err}");
        let text = text
            .replace("${PRIMARY_API_KEY}", "k")
            .replace("${PARTNER_API_KEY}", "p");
        let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.groups.len(), 2);
        assert_eq!(config.default_group().as_deref(), Some("main"));
        assert_eq!(config.rate_limit.keys.len(), 1);
        assert!(config.server.cors.is_some());
        for section in [
            "[server]",
            "[server.cors]",
            "[log]",
            "[metrics]",
            "[backends.",
            "[groups.",
            "[routing]",
            "[methods]",
            "[retry]",
            "[cache]",
            "[rate_limit]",
            "[[rate_limit.keys]]",
        ] {
            assert!(text.contains(section), "{section} is not documented");
        }
    }

    #[test]
    fn cross_client_batching_is_off_same_turn_or_a_window() {
        let mode = |value: &str| {
            let config = parse(&format!("{ONE}cross_client_batching = \"{value}\"\n"))
                .unwrap_or_else(|e| panic!("{value}: {e}"));
            config.backends["a"]
                .get_ref()
                .cross_client_batching
                .map(|m| m.0)
        };
        assert_eq!(mode("off"), Some(rpc_core::CrossClient::Off));
        assert_eq!(mode("same-turn"), Some(rpc_core::CrossClient::SameTurn));
        assert_eq!(
            mode("2ms"),
            Some(rpc_core::CrossClient::Window(Duration::from_millis(2)))
        );
        assert_eq!(
            mode("500us"),
            Some(rpc_core::CrossClient::Window(Duration::from_micros(500)))
        );
        let absent = parse(ONE).expect("valid");
        assert_eq!(absent.backends["a"].get_ref().cross_client_batching, None);
        let err = error(&format!("{ONE}cross_client_batching = \"sometimes\"\n"));
        assert!(err.message.contains("same-turn"), "{err}");
        assert!(err.to_string().contains("cross_client_batching"), "{err}");
    }

    #[test]
    fn auth_keys_are_checked_where_they_are_written() {
        let key = |body: &str| format!("{ONE}[auth]\n[[auth.keys]]\nid = \"k\"\n{body}");
        let ok = parse(&key("key = \"s3cret\"\nmethods = [\"eth_*\"]\nrate = 5\n")).unwrap();
        assert_eq!(ok.auth.map(|a| a.into_inner().keys.len()), Some(1));
        let cases = [
            (key(""), "auth.keys[0].id", "needs `key` or `sha256`"),
            (
                key("key = \"a\"\nsha256 = \"00\"\n"),
                "auth.keys[0].sha256",
                "not both",
            ),
            (key("sha256 = \"abc\"\n"), "auth.keys[0].sha256", "64 hexadecimal"),
            (key("key = \"a\"\ngroup = \"gold\"\n"), "auth.keys[0].group", "no group named `gold`"),
            (key("key = \"a\"\nmethods = [\"eth_*x\"]\n"), "auth.keys[0].methods", ""),
            (key("key = \"a\"\nburst = 3\n"), "auth.keys[0].burst", "needs a rate"),
            (
                format!("{ONE}[auth]\npath_prefix = \"v1\"\npublic = true\n"),
                "auth.path_prefix",
                "start and end with `/`",
            ),
            (format!("{ONE}[auth]\n"), "auth", "nobody could call"),
            (
                format!("{ONE}[auth]\nkeys_file = \"/nonexistent/keys\"\n"),
                "auth.keys_file",
                "cannot read",
            ),
            (
                format!(
                    "{ONE}[rate_limit]\n[[rate_limit.keys]]\nkey = \"x\"\nrate = 1\n[auth]\npublic = true\n"
                ),
                "rate_limit.keys",
                "[[auth.keys]]",
            ),
            (
                format!("{ONE}[rate_limit.methods]\neth_getLogs = {{ rate = 0 }}\n"),
                "rate_limit.methods.eth_getLogs.rate",
                "at least 1",
            ),
        ];
        for (text, key, says) in cases {
            let e = error(&text);
            assert_eq!(e.key, key, "{e}\n{text}");
            assert!(e.message.contains(says), "{e}");
        }
    }

    #[test]
    fn a_minimal_file_gets_the_documented_defaults() {
        let c = parse(ONE).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8545".parse().unwrap());
        assert_eq!(c.server.request_timeout, Secs(Duration::from_secs(30)));
        assert_eq!(c.retry.max_retries, 3);
        assert!(!c.cache.enabled);
        assert_eq!(c.protocol, Protocol::Ethereum);
        let groups = c.effective_groups();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].0, "default");
        assert_eq!(groups[0].1.failure_threshold, 2);
        assert_eq!(c.default_group().as_deref(), Some("default"));
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let e = error(
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_bodyy = 5\n[backends.a]\nurl = \"http://h\"\n",
        );
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
        assert!(e.message.contains("max_bodyy"), "{e}");
        assert!(e.to_string().starts_with("test.toml:3:"), "{e}");
        let e = error(&format!("{ONE}timeoutt = \"1s\"\n"));
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
        assert!(e.message.contains("timeoutt"), "{e}");
        let e = error(&format!("bogus = 1\n{ONE}"));
        assert!(e.message.contains("bogus"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_key_and_line() {
        let e = error(&format!("{ONE}[server]\nmax_batch = \"many\"\n"));
        assert_eq!(e.key, "server.max_batch", "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(4), "{e}");
        let e = error(&format!("{ONE}[retry]\ninitial_backoff = \"soon\"\n"));
        assert_eq!(e.key, "retry.initial_backoff", "{e}");
        assert!(e.message.contains("soon"), "{e}");
        let e = error(&format!(
            "{ONE}[groups.g]\nmembers = [\"a\"]\nstrategy = \"fastest\"\n"
        ));
        assert_eq!(e.key, "groups.g.strategy", "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(5), "{e}");
        let e = error("[server]\nlisten = \"localhost\"\n");
        assert_eq!(e.key, "server.listen", "{e}");
    }

    #[test]
    fn references_between_sections_are_checked() {
        let two = "[backends.a]\nurl = \"http://h\"\n[backends.b]\nurl = \"http://h\"\n";
        let e = error(two);
        assert_eq!(e.key, "groups", "{e}");
        assert!(e.message.contains("members = [\"a\", \"b\"]"), "{e}");

        let e = error(&format!("{two}[groups.g]\nmembers = [\"a\", \"c\"]\n"));
        assert_eq!(e.key, "groups.g.members[1]", "{e}");
        assert_eq!(e.position, Some((6, 17)), "{e}");
        assert!(e.message.contains("no backend named `c`"), "{e}");

        let e = error(&format!("{two}[groups.g]\nmembers = [\"a\", \"a\"]\n"));
        assert!(e.message.contains("twice"), "{e}");

        let groups = "[groups.g]\nmembers = [\"a\"]\n[groups.h]\nmembers = [\"b\"]\n";
        let e = error(&format!("{two}{groups}"));
        assert_eq!(e.key, "routing.default", "{e}");
        let e = error(&format!("{two}{groups}[routing]\ndefault = \"x\"\n"));
        assert_eq!(
            (e.key.as_str(), e.position.map(|p| p.0)),
            ("routing.default", Some(10)),
            "{e}"
        );
        let e = error(&format!(
            "{two}{groups}[routing]\ndefault = \"g\"\nmethods = {{ \"eth_send*\" = \"nope\" }}\n"
        ));
        assert!(e.key.starts_with("routing.methods"), "{e}");
        assert!(e.message.contains("no group named `nope`"), "{e}");
        let e = error(&format!(
            "{two}{groups}[routing]\ndefault = \"g\"\nmethods = {{ \"eth_*send\" = \"h\" }}\n"
        ));
        assert!(e.message.contains("only allowed at the end"), "{e}");
        let ok = parse(&format!(
            "{two}{groups}[routing]\ndefault = \"g\"\nmethods = {{ \"eth_send*\" = \"h\" }}\n"
        ))
        .unwrap();
        assert_eq!(ok.default_group().as_deref(), Some("g"));
    }

    #[test]
    fn strategies_are_checked() {
        let g = |extra: &str| format!("{ONE}[groups.g]\nmembers = [\"a\"]\n{extra}");
        assert!(error(&g("strategy = \"quorum\"\n"))
            .message
            .contains("quorum = K"));
        assert_eq!(
            error(&g("strategy = \"quorum\"\nquorum = 2\n")).key,
            "groups.g.quorum"
        );
        assert_eq!(error(&g("quorum = 1\n")).key, "groups.g.quorum");
        assert!(error(&g("hedge_delay = \"1s\"\n"))
            .message
            .contains("hedged"));
        assert_eq!(
            error(&g("strategy = \"hedged\"\nhedge_quantile = 1.5\n")).key,
            "groups.g.hedge_quantile"
        );
        parse(&g("strategy = \"hedged\"\nhedge_quantile = 0.9\n")).unwrap();
        parse(&g(
            "strategy = \"quorum\"\nquorum = 1\nquorum_timeout = 2\n",
        ))
        .unwrap();
    }

    #[test]
    fn env_variables_are_expanded_and_missing_ones_reported() {
        let env = |name: &str| (name == "SET").then(|| "value".to_owned());
        assert_eq!(expand_env("a${SET}b", env).unwrap(), "avalueb");
        assert_eq!(expand_env("${UNSET:-dflt}", env).unwrap(), "dflt");
        assert_eq!(expand_env("$${SET} $5", env).unwrap(), "${SET} $5");
        assert!(expand_env("${UNSET}", env)
            .unwrap_err()
            .contains("`UNSET` is not set"));
        assert!(expand_env("${SET", env).unwrap_err().contains("unclosed"));
        assert!(expand_env("${A B}", env)
            .unwrap_err()
            .contains("does not hold a variable name"));

        let text = "# ${IN_A_COMMENT}\n[backends.a]\nurl = \"http://h/${A}/${B:-x}/$${C}\" # ${D}\nkey = '${E}'\n";
        assert_eq!(
            missing_variables(text, |n| (n == "E").then(String::new)),
            vec!["A".to_owned()]
        );
        assert_eq!(
            missing_variables(text, |_| None),
            vec!["A".to_owned(), "E".to_owned()]
        );
        let e = error("[backends.a]\nurl = \"http://h/${RPC_PROXY_TEST_SURELY_UNSET}\"\n");
        assert_eq!(e.key, "backends.a.url", "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(2), "{e}");
        assert!(e.message.contains("RPC_PROXY_TEST_SURELY_UNSET"), "{e}");
        // A secret never reaches Debug output.
        let c = parse("[backends.a]\nurl = \"http://h/${PATH}\"\n").unwrap();
        assert!(!format!("{c:?}").contains(&std::env::var("PATH").unwrap_or_default()));
    }

    #[test]
    fn values_are_range_checked() {
        for (extra, key) in [
            ("[retry]\njitter = 1.5\n", "retry.jitter"),
            (
                "[retry]\ninitial_backoff = \"5s\"\nmax_backoff = \"1s\"\n",
                "retry.initial_backoff",
            ),
            (
                "[rate_limit]\nper_ip = { rate = 0 }\n",
                "rate_limit.per_ip.rate",
            ),
            (
                "[rate_limit]\nweights = { eth_call = 0 }\n",
                "rate_limit.weights.eth_call",
            ),
            (
                "[rate_limit]\nweights = { \"debug_*trace\" = 5 }\n",
                "rate_limit.weights.debug_*trace",
            ),
            (
                "[rate_limit]\nkey_header = \"bad header\"\n",
                "rate_limit.key_header",
            ),
            (
                "[server.cors]\nallow_origins = [\"*\", \"https://a\"]\n",
                "server.cors.allow_origins",
            ),
            (
                "[cache]\nmethods = { eth_call = \"sometimes\" }\n",
                "cache.methods.eth_call",
            ),
            ("[log]\nlevel = \"rpc=loud\"\n", "log.level"),
            ("[server]\nhealth_path = \"health\"\n", "server.health_path"),
            ("[consistency]\nenabled = true\n", "consistency.enabled"),
        ] {
            let e = error(&format!("{ONE}{extra}"));
            assert_eq!(e.key, key, "{extra}: {e}");
        }
    }

    #[test]
    fn head_tracking_and_consistency_are_checked() {
        let e = error(&format!(
            "protocol = \"generic\"\n{ONE}[groups.g]\nmembers = [\"a\"]\n[groups.g.head]\n"
        ));
        assert_eq!(e.key, "groups.g.head", "{e}");
        let e = error(&format!(
            "{ONE}[groups.g]\nmembers = [\"a\"]\nstrategy = \"quorum\"\nquorum = 1\n[groups.g.head]\n"
        ));
        assert_eq!(e.key, "groups.g.head", "{e}");
        let e = error(&format!(
            "{ONE}[groups.g]\nmembers = [\"a\"]\n[groups.g.head]\nmax_lagg = 2\n"
        ));
        assert!(e.message.contains("max_lagg"), "{e}");
        let c = parse(&format!(
            "{ONE}[groups.g]\nmembers = [\"a\"]\n[groups.g.head]\nmax_lag = 5\n[consistency]\nenabled = true\n"
        ))
        .unwrap();
        let head = c.groups["g"]
            .get_ref()
            .head
            .as_ref()
            .expect("head")
            .get_ref()
            .clone();
        assert_eq!(
            (head.max_lag, head.probe_interval),
            (5, Secs(Duration::from_secs(2)))
        );
        assert!(c.consistency.enabled && c.consistency.per_connection);
    }

    #[test]
    fn durations_take_units_or_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        for bad in ["", "s", "-1s", "0", "1d", "fast"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let c = parse(&format!("{ONE}[server]\nrequest_timeout = 2.5\n")).unwrap();
        assert_eq!(c.server.request_timeout, Secs(Duration::from_millis(2500)));
    }
}
