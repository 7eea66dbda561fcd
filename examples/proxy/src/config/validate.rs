//! What types cannot check: references between sections, patterns, ranges.

use std::ops::Range;

use toml::Spanned;

use super::{Config, ConfigError, Protocol, Source, Strategy};

/// Builds the error for a key (and its span, `0..0` for none).
type Check<'a> = dyn Fn(Range<usize>, String, String) -> Result<(), ConfigError> + 'a;

impl Config {
    /// Checks what the types cannot: names that refer to other sections,
    /// patterns, ranges and combinations.
    pub fn validate(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let err = |span: Range<usize>, key: String, msg: String| {
            Err(src.error((span != (0..0)).then_some(span), key, msg))
        };
        self.check_backends(&err)?;
        self.check_groups(&err)?;
        self.check_routing(&err)?;
        self.check_server(&err)?;
        self.check_retry(&err)?;
        self.check_cache(&err)?;
        self.check_rate_limit(&err)?;
        self.check_consistency_and_log(&err)?;
        self.check_redis(&err)?;
        self.check_auth(&err)?;
        Ok(())
    }

    /// `[auth]`: the keys file, each key (one secret, an id of its own,
    /// patterns, a known group), and that someone can call.
    fn check_auth(&self, err: &Check<'_>) -> Result<(), ConfigError> {
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        let span = auth.span();
        let auth = auth.get_ref();
        if let Some(p) = &auth.path_prefix {
            let text = p.get_ref();
            if !text.starts_with('/') || !text.ends_with('/') || text.len() < 2 {
                return err(
                    p.span(),
                    "auth.path_prefix".into(),
                    "must start and end with `/`, e.g. \"/v1/\"".into(),
                );
            }
        }
        if let Some(k) = self.rate_limit.keys.first() {
            return err(
                k.key.span(),
                "rate_limit.keys".into(),
                "with [auth], give each key its budget in [[auth.keys]] (rate, burst)".into(),
            );
        }
        let from_file = match &auth.keys_file {
            Some(path) => match read_keys(path.get_ref()) {
                Ok(ids) => ids,
                Err(e) => return err(path.span(), "auth.keys_file".into(), e),
            },
            None => Vec::new(),
        };
        let groups = self.effective_groups();
        for (i, k) in auth.keys.iter().enumerate() {
            let at = |field: &str| format!("auth.keys[{i}].{field}");
            let id = k.id.get_ref();
            if id.is_empty() || id.len() > 64 || id.chars().any(|c| c.is_whitespace()) {
                return err(
                    k.id.span(),
                    at("id"),
                    "must be 1 to 64 characters, no spaces".into(),
                );
            }
            if auth.keys[..i].iter().any(|o| o.id.get_ref() == id) {
                return err(k.id.span(), at("id"), "is listed twice".into());
            }
            match (&k.key, &k.sha256, from_file.iter().any(|f| f == id)) {
                (Some(_), Some(s), _) => {
                    return err(
                        s.span(),
                        at("sha256"),
                        "give `key` or `sha256`, not both".into(),
                    )
                }
                (Some(key), None, _) if key.get_ref().0.is_empty() => {
                    return err(key.span(), at("key"), "is empty".into())
                }
                (None, Some(s), _) if !is_sha256_hex(s.get_ref()) => {
                    return err(
                        s.span(),
                        at("sha256"),
                        "must be 64 hexadecimal digits".into(),
                    )
                }
                (None, None, false) => {
                    return err(
                        k.id.span(),
                        at("id"),
                        "needs `key` or `sha256` (or an entry of that id in keys_file)".into(),
                    )
                }
                _ => {}
            }
            if let Some(rate) = &k.rate {
                if *rate.get_ref() == 0 {
                    return err(rate.span(), at("rate"), "must be at least 1".into());
                }
            }
            if let Some(b) = &k.burst {
                if k.rate.is_none() {
                    return err(b.span(), at("burst"), "needs a rate".into());
                }
                if *b.get_ref() == 0 {
                    return err(b.span(), at("burst"), "must be at least 1".into());
                }
            }
            if let Some(methods) = &k.methods {
                if let Err(e) = rpc_core::filter::MethodFilter::allow(methods.get_ref()) {
                    return err(methods.span(), at("methods"), e.to_string());
                }
            }
            if let Some(g) = &k.group {
                if !groups.iter().any(|(name, _)| name == g.get_ref()) {
                    let known: Vec<&str> = groups.iter().map(|(n, _)| n.as_str()).collect();
                    return err(
                        g.span(),
                        at("group"),
                        format!(
                            "no group named `{}` (groups: {})",
                            g.get_ref(),
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        if auth.keys.is_empty() && from_file.is_empty() && !auth.public {
            return err(
                span,
                "auth".into(),
                "no key and public = false: nobody could call (add [[auth.keys]] or keys_file)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Backends: at least one, URLs, headers; a group when there are several.
    fn check_backends(&self, err: &Check<'_>) -> Result<(), ConfigError> {
        if self.backends.is_empty() {
            return err(
                0..0,
                "backends".into(),
                "at least one backend is needed".into(),
            );
        }
        for (name, backend) in &self.backends {
            let url = &backend.get_ref().url;
            let text = &url.get_ref().0;
            if !["http://", "https://", "ws://", "wss://"]
                .iter()
                .any(|scheme| text.starts_with(scheme))
            {
                return err(
                    url.span(),
                    format!("backends.{name}.url"),
                    "must start with http://, https://, ws:// or wss://".into(),
                );
            }
            if let Some(n) = &backend.get_ref().max_batch {
                if *n.get_ref() == 0 {
                    return err(
                        n.span(),
                        format!("backends.{name}.max_batch"),
                        "must be at least 1 (1: every call alone)".into(),
                    );
                }
            }
            for (header, value) in &backend.get_ref().headers {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    return err(
                        value.span(),
                        format!("backends.{name}.headers"),
                        format!("`{header}` is not a valid header name"),
                    );
                }
                if http::HeaderValue::from_str(&value.get_ref().0).is_err() {
                    return err(
                        value.span(),
                        format!("backends.{name}.headers.{header}"),
                        "the value is not a valid header value".into(),
                    );
                }
            }
        }
        if self.groups.is_empty() && self.backends.len() > 1 {
            let names: Vec<&str> = self.backends.keys().map(String::as_str).collect();
            return err(
                0..0,
                "groups".into(),
                format!(
                    "{} backends but no [groups.NAME] to order them; add e.g. `[groups.main]` with `members = [\"{}\"]`",
                    names.len(),
                    names.join("\", \"")
                ),
            );
        }
        Ok(())
    }

    /// Groups: members, strategies and their settings, head tracking.
    fn check_groups(&self, err: &Check<'_>) -> Result<(), ConfigError> {
        for (gname, group) in &self.groups {
            let g = group.get_ref();
            let key = |k: &str| format!("groups.{gname}.{k}");
            if g.members.get_ref().is_empty() {
                return err(
                    g.members.span(),
                    key("members"),
                    "a group needs at least one member".into(),
                );
            }
            if g.members.get_ref().len() > rpc_failover::MAX_MEMBERS {
                return err(
                    g.members.span(),
                    key("members"),
                    format!("at most {} members", rpc_failover::MAX_MEMBERS),
                );
            }
            for (i, m) in g.members.get_ref().iter().enumerate() {
                if !self.backends.contains_key(m.get_ref()) {
                    return err(
                        m.span(),
                        format!("groups.{gname}.members[{i}]"),
                        format!(
                            "no backend named `{}` (backends: {})",
                            m.get_ref(),
                            self.backends.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
                if g.members.get_ref()[..i]
                    .iter()
                    .any(|o| o.get_ref() == m.get_ref())
                {
                    return err(
                        m.span(),
                        format!("groups.{gname}.members[{i}]"),
                        format!("`{}` is listed twice", m.get_ref()),
                    );
                }
            }
            let n = g.members.get_ref().len();
            match (g.strategy, &g.quorum) {
                (Strategy::Quorum, None) => {
                    return err(
                        group.span(),
                        key("quorum"),
                        "the quorum strategy needs `quorum = K` (how many members must agree)"
                            .into(),
                    )
                }
                (Strategy::Quorum, Some(k)) if *k.get_ref() == 0 || *k.get_ref() > n => {
                    return err(
                        k.span(),
                        key("quorum"),
                        format!("must be between 1 and the number of members ({n})"),
                    )
                }
                (Strategy::Quorum, _) => {}
                (_, Some(k)) => {
                    return err(
                        k.span(),
                        key("quorum"),
                        "only used with `strategy = \"quorum\"`".into(),
                    )
                }
                (_, None) => {}
            }
            if g.strategy != Strategy::Hedged
                && (g.hedge_delay.is_some() || g.hedge_quantile.is_some())
            {
                return err(
                    group.span(),
                    key("strategy"),
                    "`hedge_delay` / `hedge_quantile` need `strategy = \"hedged\"`".into(),
                );
            }
            if let Some(m) = &g.multicall {
                if *m.get_ref() && g.strategy == Strategy::Quorum {
                    return err(
                        m.span(),
                        key("multicall"),
                        "a quorum group sends writes to one member; multicall needs another strategy"
                            .into(),
                    );
                }
            }
            if let Some(q) = &g.hedge_quantile {
                if !(q.get_ref() > &0.0 && q.get_ref() < &1.0) {
                    return err(
                        q.span(),
                        key("hedge_quantile"),
                        "must be between 0 and 1, e.g. 0.95".into(),
                    );
                }
            }
            if let Some(head) = &g.head {
                if self.protocol == Protocol::Generic {
                    return err(
                        head.span(),
                        key("head"),
                        "head tracking needs `protocol = \"ethereum\"` or `\"electrum\"` (to know how to ask a head)".into(),
                    );
                }
                if g.strategy == Strategy::Quorum {
                    return err(
                        head.span(),
                        key("head"),
                        "head tracking works with failover strategies, not quorum".into(),
                    );
                }
                let p = &head.get_ref().max_probes_per_second;
                if !(p.get_ref().is_finite() && *p.get_ref() >= 0.0) {
                    return err(
                        p.span(),
                        key("head.max_probes_per_second"),
                        "must be 0 or more".into(),
                    );
                }
                if let Some(k) = &head.get_ref().agree {
                    let n = g.members.get_ref().len();
                    if *k.get_ref() == 0 || *k.get_ref() > n {
                        return err(
                            k.span(),
                            key("head.agree"),
                            format!("must be between 1 and the group's {n} member(s)"),
                        );
                    }
                }
            }
            if g.failure_threshold == 0 {
                return err(
                    group.span(),
                    key("failure_threshold"),
                    "must be at least 1".into(),
                );
            }
        }
        Ok(())
    }

    /// Routing and method lists: targets exist, patterns parse.
    fn check_routing(&self, err: &Check<'_>) -> Result<(), ConfigError> {
        let groups = self.effective_groups();
        let known = |name: &str| groups.iter().any(|(g, _)| g == name);
        let group_list = || {
            groups
                .iter()
                .map(|(g, _)| g.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(d) = &self.routing.default {
            if !known(d.get_ref()) {
                return err(
                    d.span(),
                    "routing.default".into(),
                    format!(
                        "no group named `{}` (groups: {})",
                        d.get_ref(),
                        group_list()
                    ),
                );
            }
        } else if groups.len() > 1 {
            return err(
                0..0,
                "routing.default".into(),
                format!(
                    "{} groups: name the one for methods without a route (`[routing] default = \"...\"`)",
                    groups.len()
                ),
            );
        }
        let mut router = rpc_core::route::MethodRouter::<()>::builder();
        for (pattern, target) in &self.routing.methods {
            let key = format!("routing.methods.\"{pattern}\"");
            if !known(target.get_ref()) {
                return err(
                    target.span(),
                    key,
                    format!(
                        "no group named `{}` (groups: {})",
                        target.get_ref(),
                        group_list()
                    ),
                );
            }
            router = match router.route(pattern, ()) {
                Ok(r) => r,
                Err(e) => return err(target.span(), key, e.to_string()),
            };
        }
        for (list, key) in [
            (&self.methods.allow, "methods.allow"),
            (&self.methods.deny, "methods.deny"),
        ] {
            if let Some(list) = list {
                if let Err(e) = rpc_core::filter::MethodFilter::allow(list.get_ref()) {
                    return err(list.span(), key.into(), e.to_string());
                }
            }
        }
        Ok(())
    }

    /// The front: limits, paths, CORS, proxies, the memory budget.
    fn check_server(&self, err: &Check<'_>) -> Result<(), ConfigError> {
        if self.server.max_body_bytes == 0
            || self.server.max_batch == 0
            || self.server.batch_concurrency == Some(0)
        {
            return err(
                0..0,
                "server".into(),
                "max_body_bytes, max_batch and batch_concurrency must be at least 1".into(),
            );
        }
        if !self.server.health_path.starts_with('/') {
            return err(
                0..0,
                "server.health_path".into(),
                "must start with `/`".into(),
            );
        }
        if let Some(cors) = &self.server.cors {
            for origin in cors.allow_origins.get_ref() {
                if origin != "*" && http::HeaderValue::from_str(origin).is_err() {
                    return err(
                        cors.allow_origins.span(),
                        "server.cors.allow_origins".into(),
                        format!("`{origin}` is not an origin"),
                    );
                }
            }
            if cors.allow_origins.get_ref().len() > 1
                && cors.allow_origins.get_ref().iter().any(|o| o == "*")
            {
                return err(
                    cors.allow_origins.span(),
                    "server.cors.allow_origins".into(),
                    "`*` allows every origin; list origins or use `*` alone".into(),
                );
            }
            for h in &cors.allow_headers {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    return err(
                        cors.allow_origins.span(),
                        "server.cors.allow_headers".into(),
                        format!("`{h}` is not a header name"),
                    );
                }
            }
        }
        for (name, value) in [
            ("jitter", &self.retry.jitter),
            ("budget_ratio", &self.retry.budget_ratio),
        ] {
            if !(0.0..=1.0).contains(value.get_ref()) {
                return err(
                    value.span(),
                    format!("retry.{name}"),
                    "must be between 0 and 1".into(),
                );
            }
        }
        if let Err(e) = rpc_core::server::TrustedProxies::new(self.server.trusted_proxies.get_ref())
        {
            return err(
                self.server.trusted_proxies.span(),
                "server.trusted_proxies".into(),
                e.to_string(),
            );
        }
        if self.server.proxy_protocol && self.server.trusted_proxies.get_ref().is_empty() {
            return err(
                0..0,
                "server.proxy_protocol".into(),
                "needs server.trusted_proxies: the balancers whose PROXY headers are believed"
                    .into(),
            );
        }
        if self.server.memory_budget_mb == 0 {
            return err(
                0..0,
                "server.memory_budget_mb".into(),
                "must be at least 1 (MiB)".into(),
            );
        }
        Ok(())
    }

    /// Retries, budgets and per-group / per-backend attempt settings.
    fn check_retry(&self, err: &Check<'_>) -> Result<(), ConfigError> {
        for (name, old) in [
            ("budget_min_per_second", &self.retry.budget_min_per_second),
            ("budget_max_reserve", &self.retry.budget_max_reserve),
        ] {
            if let Some(old) = old {
                return err(
                    old.span(),
                    format!("retry.{name}"),
                    "was removed: the budget is a bucket of `budget_tokens` (default 20) that \
                     failures drain and successes refill by `budget_ratio`"
                        .into(),
                );
            }
        }
        if self.retry.budget_tokens < 2 {
            return err(
                0..0,
                "retry.budget_tokens".into(),
                "must be at least 2 (half of it is usable at once)".into(),
            );
        }
        for (gname, group) in &self.groups {
            let stall = &group.get_ref().attempt_deadline;
            if !(0.5..=1.0).contains(stall.quantile.get_ref()) {
                return err(
                    stall.quantile.span(),
                    format!("groups.{gname}.attempt_deadline.quantile"),
                    "must be between 0.5 and 1".into(),
                );
            }
            if *stall.factor.get_ref() < 1.0 || !stall.factor.get_ref().is_finite() {
                return err(
                    stall.factor.span(),
                    format!("groups.{gname}.attempt_deadline.factor"),
                    "must be at least 1".into(),
                );
            }
            if stall.min.0 > stall.max.0 {
                return err(
                    0..0,
                    format!("groups.{gname}.attempt_deadline.min"),
                    "is longer than attempt_deadline.max".into(),
                );
            }
            if stall.fixed.is_some_and(|d| d.0.is_zero()) || stall.max.0.is_zero() {
                return err(
                    0..0,
                    format!("groups.{gname}.attempt_deadline"),
                    "a zero deadline would fail every call".into(),
                );
            }
        }
        for (bname, backend) in &self.backends {
            let b = backend.get_ref();
            if let Some(n) = &b.max_concurrency {
                if *n.get_ref() == 0 {
                    return err(
                        n.span(),
                        format!("backends.{bname}.max_concurrency"),
                        "must be at least 1".into(),
                    );
                }
            } else if b.adaptive_concurrency {
                return err(
                    backend.span(),
                    format!("backends.{bname}.adaptive_concurrency"),
                    "needs max_concurrency (where the limit starts and the most it grows to)"
                        .into(),
                );
            }
        }
        if self.retry.initial_backoff.0 > self.retry.max_backoff.0 {
            return err(
                0..0,
                "retry.initial_backoff".into(),
                "is longer than retry.max_backoff".into(),
            );
        }
        Ok(())
    }

    /// The cache: rules for the protocol, sizes.
    fn check_cache(&self, err: &Check<'_>) -> Result<(), ConfigError> {
        if self.cache.enabled && self.protocol == Protocol::Generic && self.cache.methods.is_empty()
        {
            return err(
                0..0,
                "cache.enabled".into(),
                "the generic protocol has no cache rules; list methods under [cache.methods]"
                    .into(),
            );
        }
        if self.cache.max_mb == 0 || self.cache.max_entries == 0 {
            return err(
                0..0,
                "cache".into(),
                "max_mb and max_entries must be at least 1".into(),
            );
        }
        Ok(())
    }

    /// Rate limits: the key header, rates, bursts, weights.
    fn check_rate_limit(&self, err: &Check<'_>) -> Result<(), ConfigError> {
        let rl = &self.rate_limit;
        if http::HeaderName::from_bytes(rl.key_header.get_ref().as_bytes()).is_err() {
            return err(
                rl.key_header.span(),
                "rate_limit.key_header".into(),
                "is not a header name".into(),
            );
        }
        let limit_check = |rate: &Spanned<u32>, burst: &Option<Spanned<u32>>, key: String| {
            if *rate.get_ref() == 0 {
                return err(
                    rate.span(),
                    format!("{key}.rate"),
                    "must be at least 1".into(),
                );
            }
            if let Some(b) = burst {
                if *b.get_ref() == 0 {
                    return err(
                        b.span(),
                        format!("{key}.burst"),
                        "must be at least 1".into(),
                    );
                }
            }
            Ok(())
        };
        if let Some(p) = &rl.per_ip {
            limit_check(&p.rate, &p.burst, "rate_limit.per_ip".into())?;
        }
        if let Some(p) = &rl.per_sender {
            if self.protocol != Protocol::Ethereum {
                return err(
                    p.span(),
                    "rate_limit.per_sender".into(),
                    "needs `protocol = \"ethereum\"` (senders are recovered from Ethereum transactions)"
                        .into(),
                );
            }
            let l = p.get_ref();
            limit_check(&l.rate, &l.burst, "rate_limit.per_sender".into())?;
        }
        for (i, k) in rl.keys.iter().enumerate() {
            limit_check(&k.rate, &k.burst, format!("rate_limit.keys[{i}]"))?;
            if k.key.get_ref().0.is_empty() {
                return err(
                    k.key.span(),
                    format!("rate_limit.keys[{i}].key"),
                    "is empty".into(),
                );
            }
            if rl.keys[..i]
                .iter()
                .any(|o| o.key.get_ref() == k.key.get_ref())
            {
                return err(
                    k.key.span(),
                    format!("rate_limit.keys[{i}].key"),
                    "is listed twice".into(),
                );
            }
        }
        if rl.default_weight == 0 {
            return err(
                0..0,
                "rate_limit.default_weight".into(),
                "must be at least 1".into(),
            );
        }
        for (method, l) in &rl.methods {
            if let Err(e) = rpc_core::protocol::Pattern::parse(method) {
                return err(
                    l.span(),
                    format!("rate_limit.methods.{method}"),
                    e.to_string(),
                );
            }
            let l = l.get_ref();
            limit_check(&l.rate, &l.burst, format!("rate_limit.methods.{method}"))?;
        }
        for (method, w) in &rl.weights {
            if let Err(e) = rpc_core::protocol::Pattern::parse(method) {
                return err(
                    w.span(),
                    format!("rate_limit.weights.{method}"),
                    e.to_string(),
                );
            }
            if *w.get_ref() == 0 {
                return err(
                    w.span(),
                    format!("rate_limit.weights.{method}"),
                    "must be at least 1".into(),
                );
            }
        }
        Ok(())
    }

    /// Consistency sessions and the log filter.
    /// `[redis]`: a usable URL, a deadline that keeps Redis off the
    /// critical path.
    fn check_redis(&self, err: &Check<'_>) -> Result<(), ConfigError> {
        let Some(redis) = &self.redis else {
            return Ok(());
        };
        let r = redis.get_ref();
        let url = &r.url.get_ref().0;
        if let Err(e) =
            rpc_core::redis::RedisLink::new(rpc_core::redis::RedisConfig::new(url.as_str()))
        {
            return err(
                r.url.span(),
                "redis.url".into(),
                format!(
                    "{} (expected redis://host:port[/db], rediss:// or redis+unix:///path)",
                    e.source_message()
                ),
            );
        }
        if let Some(ca) = &r.tls_ca_file {
            if let Err(e) = read_ca(ca.get_ref()) {
                return err(ca.span(), "redis.tls_ca_file".into(), e);
            }
            if !url.starts_with("rediss://") {
                return err(
                    ca.span(),
                    "redis.tls_ca_file".into(),
                    "is for TLS: the url must start with rediss://".into(),
                );
            }
        }
        let deadline = r.deadline.get_ref().0;
        if deadline > std::time::Duration::from_secs(1) {
            return err(
                r.deadline.span(),
                "redis.deadline".into(),
                "must be at most 1s: every shared check may wait this long (a few ms is typical)"
                    .into(),
            );
        }
        Ok(())
    }

    fn check_consistency_and_log(&self, err: &Check<'_>) -> Result<(), ConfigError> {
        let c = &self.consistency;
        if c.enabled {
            if !self.groups.values().any(|g| g.get_ref().head.is_some()) {
                return err(
                    0..0,
                    "consistency.enabled".into(),
                    "read-your-head needs head tracking: add [groups.NAME.head] to a group".into(),
                );
            }
            if http::HeaderName::from_bytes(c.session_header.get_ref().as_bytes()).is_err() {
                return err(
                    c.session_header.span(),
                    "consistency.session_header".into(),
                    "is not a header name".into(),
                );
            }
        }
        if let Some(level) = &self.log.level {
            if level
                .get_ref()
                .parse::<tracing_subscriber::filter::Targets>()
                .is_err()
            {
                return err(
                    level.span(),
                    "log.level".into(),
                    "is not a filter like `info` or `rpc_failover=debug,info`".into(),
                );
            }
        }
        Ok(())
    }
}

/// The PEM text of `[redis] tls_ca_file`, or why it cannot be used.
pub fn read_ca(path: &str) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(format!("`{path}` holds no PEM certificate"));
    }
    Ok(pem)
}

/// The ids of a file of hashed keys (`ID SHA256-HEX` per line), or why it
/// cannot be used.
pub fn read_keys(path: &str) -> Result<Vec<String>, String> {
    let text = read_keys_text(path)?;
    rpc_core::auth::ApiKeys::new()
        .parse_hashed(&text)
        .map_err(|e| format!("`{path}` {e}"))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

/// The text of a keys file.
pub fn read_keys_text(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read `{path}`: {e}"))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
