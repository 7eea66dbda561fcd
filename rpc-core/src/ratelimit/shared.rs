//! Budgets shared by replicas through Redis (cargo feature `redis`).

use std::net::IpAddr;
use std::time::Duration;

use ::redis::Script;

use super::Limit;
use crate::redis::{secret_id, RedisLink};

/// What a shared rate limiter does while Redis cannot be asked (down,
/// frozen, over its deadline, circuit open). Never a silent change: each
/// such call counts in `rpc_redis_fallbacks_total{feature="ratelimit"}`
/// and the link logs when Redis is lost and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenRedisDown {
    /// Calls are checked against this process' own budgets (the same
    /// limits, per replica: a fleet of N admits up to N times the rate
    /// until Redis is back). The default.
    #[default]
    FailOpen,
    /// Calls are refused (`-32016`, `Retry-After`) until Redis is back.
    FailClosed,
}

/// GCRA in one round trip, on Redis' own clock (replicas' clocks may
/// differ). KEYS[1]: the bucket; ARGV: emission interval and burst
/// tolerance in microseconds, the call's weight. Returns `{1, 0}` when the
/// call passes (and charges it), `{0, wait_us}` when it must wait, `{-1, 0}`
/// when its weight exceeds the whole burst.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = interval * tonumber(ARGV[3])
if cost > tolerance then return {-1, 0} end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + cost
local allow_at = new_tat - tolerance
if allow_at > now then return {0, math.ceil(allow_at - now)} end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
";

/// Whose budget a call spends.
pub(crate) enum Bucket<'a> {
    Ip(IpAddr),
    Key(&'a str),
    /// All clients' budget of a method pattern.
    Method(&'a str),
}

pub(crate) struct Shared {
    pub(crate) link: RedisLink,
    pub(crate) when_down: WhenRedisDown,
    script: Script,
}

/// What Redis said of one call.
pub(crate) enum Verdict {
    Pass,
    Wait(Duration),
    Never,
}

impl Shared {
    pub(crate) fn new(link: RedisLink, when_down: WhenRedisDown) -> Self {
        Shared {
            link,
            when_down,
            script: Script::new(GCRA),
        }
    }

    pub(crate) fn redis_key(&self, bucket: &Bucket<'_>) -> String {
        match bucket {
            Bucket::Ip(ip) => format!("{}rl:ip:{ip}", self.link.prefix()),
            Bucket::Key(k) => format!("{}rl:key:{}", self.link.prefix(), secret_id(k)),
            Bucket::Method(m) => format!("{}rl:method:{m}", self.link.prefix()),
        }
    }

    /// Asks Redis; `None` when it could not be asked.
    pub(crate) async fn check(&self, key: String, limit: Limit, weight: u32) -> Option<Verdict> {
        let interval = 1_000_000.0 / f64::from(limit.rate());
        let tolerance = interval * f64::from(limit.burst_size());
        let answer: Result<(i64, i64), _> = self
            .link
            .run("ratelimit", |mut conn| {
                let mut call = self.script.key(key);
                call.arg(interval).arg(tolerance).arg(weight);
                async move { call.invoke_async(&mut conn).await }
            })
            .await;
        match answer {
            Ok((1, _)) => Some(Verdict::Pass),
            Ok((0, wait_us)) => Some(Verdict::Wait(Duration::from_micros(wait_us.max(1) as u64))),
            Ok(_) => Some(Verdict::Never),
            Err(_) => {
                RedisLink::fell_back("ratelimit");
                None
            }
        }
    }
}
