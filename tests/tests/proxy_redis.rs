//! Replicas sharing state through a real `redis-server` (started by each
//! test on a free port): rate limits, cache, sessions and chain heads
//! across two and three `rpc-proxy` processes, and Redis killed, frozen and
//! restarted under load.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::{
    metrics_addr, post_with, scrape, start_proxy_config, start_proxy_config_env, FaultUpstream,
    Process, RedisServer, ScriptedChain,
};

/// `n` replicas of the shipped binary with the same config.
fn replicas(n: usize, toml: &str) -> Vec<(Process, SocketAddr)> {
    (0..n).map(|_| start_proxy_config(toml)).collect()
}

/// One call with `headers`; the status, the `x-cache` header and the body.
async fn send(
    addr: SocketAddr,
    method: &str,
    params: Value,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let (status, h, text) = post_with(addr, body.to_string(), &all).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let cache = h
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status.as_u16(), cache, v)
}

fn hex(v: &Value) -> u64 {
    let s = v["result"]
        .as_str()
        .unwrap_or_else(|| panic!("no result: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

/// The `number` of a block in a result.
fn number(v: &Value) -> u64 {
    let s = v["result"]["number"]
        .as_str()
        .unwrap_or_else(|| panic!("no block: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

/// Waits (up to 10 s) until `/metrics` of `proxy` contains `line`.
async fn until_metric(proxy: &Process, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = scrape(metrics_addr(proxy)).await;
        if metrics.contains(line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never saw `{line}` in:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_admit_one_rate_not_three() {
    let redis = RedisServer::start();
    let upstream = FaultUpstream::start_chain(ScriptedChain::new(0x100)).await;
    let (rate, burst) = (40u64, 40u64);
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[rate_limit]\nper_ip = {{ rate = {rate}, burst = {burst} }}\n\
         [redis]\nurl = \"{}\"\ndeadline = \"200ms\"\n[backends.node]\nurl = \"{}\"\n",
        redis.url(),
        upstream.url()
    );
    let fleet = replicas(3, &toml);
    let addrs: Vec<SocketAddr> = fleet.iter().map(|(_, a)| *a).collect();
    let (admitted, refused, next) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let start = Instant::now();
    let run_for = Duration::from_secs(2);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (addrs, admitted, refused, next) = (
                addrs.clone(),
                admitted.clone(),
                refused.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                // Bounded: at most 3 000 calls in all, at most 2 s.
                while start.elapsed() < run_for {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= 3000 {
                        break;
                    }
                    let (status, _, v) =
                        send(addrs[i % addrs.len()], "eth_chainId", json!([]), &[]).await;
                    if v["result"].is_string() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        assert_eq!(v["error"]["code"], -32016, "{v}");
                        assert_eq!(status, 429);
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (admitted, refused) = (
        admitted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    // What one process would admit in that time; three unshared replicas
    // would admit up to three times as much.
    let budget = burst as f64 + rate as f64 * elapsed;
    assert!(
        (admitted as f64) <= budget * 1.1,
        "admitted {admitted} (refused {refused}) in {elapsed:.2}s: the fleet's budget is {budget:.0}"
    );
    assert!(
        admitted as f64 >= budget * 0.7 && refused > 0,
        "admitted {admitted}, refused {refused} in {elapsed:.2}s (budget {budget:.0})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_budget_for_all_clients_is_one_across_replicas() {
    let redis = RedisServer::start();
    let upstream = FaultUpstream::start_chain(ScriptedChain::new(0x100)).await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[rate_limit]\nper_ip = {{ rate = 1000 }}\n\
         [rate_limit.methods]\neth_getBalance = {{ rate = 1, burst = 4 }}\n\
         [redis]\nurl = \"{}\"\ndeadline = \"200ms\"\n[backends.node]\nurl = \"{}\"\n",
        redis.url(),
        upstream.url()
    );
    let fleet = replicas(2, &toml);
    let start = Instant::now();
    let (mut admitted, mut refused) = (0, 0);
    // Twelve calls alternating replicas, as fast as they go: each replica
    // alone would admit its own burst of 4 (8 in all).
    for i in 0..12 {
        let params = json!(["0x0000000000000000000000000000000000000000", "latest"]);
        let (status, _, v) = send(fleet[i % 2].1, "eth_getBalance", params, &[]).await;
        if v.get("result").is_some() {
            admitted += 1;
        } else {
            assert_eq!(
                (status, v["error"]["code"].clone()),
                (429, json!(-32016)),
                "{v}"
            );
            refused += 1;
        }
    }
    let allowed = 4.0 + start.elapsed().as_secs_f64();
    assert!(
        admitted >= 4 && f64::from(admitted) <= allowed.floor(),
        "admitted {admitted}, refused {refused}: the fleet's budget is {allowed:.1}"
    );
    // Other methods are not charged to it.
    let (status, _, _) = send(fleet[0].1, "eth_chainId", json!([]), &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_replica_hits_what_the_first_cached() {
    let redis = RedisServer::start();
    let upstream = FaultUpstream::start_chain(ScriptedChain::new(0x100)).await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ncache_header = true\n[cache]\nenabled = true\n\
         [redis]\nurl = \"{}\"\ndeadline = \"200ms\"\n[backends.node]\nurl = \"{}\"\n",
        redis.url(),
        upstream.url()
    );
    let fleet = replicas(2, &toml);
    let (a, b) = (fleet[0].1, fleet[1].1);
    // Each replica learns the head (block 0x10 is then settled for both:
    // answers about settled blocks are shared, tip answers are not).
    // Answers that follow the tip are each replica's own (keyed by its own
    // tip epoch): never served from another replica's view.
    for addr in [a, b] {
        let (_, cache, _) = send(addr, "eth_blockNumber", json!([]), &[]).await;
        assert_eq!(
            cache.as_deref(),
            Some("MISS"),
            "another replica's tip answer"
        );
    }
    for (method, params) in [
        ("eth_chainId", json!([])),
        ("eth_getBlockByNumber", json!(["0x10", false])),
    ] {
        let before = upstream.items.load(Ordering::SeqCst);
        let (_, cache_a, va) = send(a, method, params.clone(), &[]).await;
        assert_eq!(cache_a.as_deref(), Some("MISS"), "{method}");
        assert_eq!(upstream.items.load(Ordering::SeqCst), before + 1);
        // The other replica's first call of it: from Redis, not upstream.
        let (_, cache_b, vb) = send(b, method, params.clone(), &[]).await;
        assert_eq!(cache_b.as_deref(), Some("HIT"), "{method}: {vb}");
        assert_eq!(va["result"], vb["result"], "{method}");
        assert_eq!(
            upstream.items.load(Ordering::SeqCst),
            before + 1,
            "{method}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_alternating_replicas_never_sees_its_head_go_backwards() {
    let redis = RedisServer::start();
    let (ahead, behind) = (ScriptedChain::new(1001), ScriptedChain::new(1000));
    let a = FaultUpstream::start_chain(ahead.clone()).await;
    let b = FaultUpstream::start_chain(behind.clone()).await;
    // Replica 0 reads a node one block ahead, replica 1 one a block behind
    // (each a group of one): unshared, a session alternating between them
    // would see the chain go back a block every other call. Shared heads
    // are off: the session alone must keep it monotonic.
    let one = |url: String| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[consistency]\nenabled = true\n\
             [redis]\nurl = \"{}\"\ndeadline = \"200ms\"\nheads = false\n\
             [backends.node]\nurl = \"{url}\"\n[groups.main]\nmembers = [\"node\"]\n\
             [groups.main.head]\nprobe_interval = \"200ms\"\nmax_probes_per_second = 50.0\n\
             consistency_wait = \"2s\"\n",
            redis.url()
        )
    };
    let fleet = [
        start_proxy_config(&one(a.url())),
        start_proxy_config(&one(b.url())),
    ];
    // Heads move every 10 ms while the session reads.
    let stop = Arc::new(AtomicBool::new(false));
    let mover = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut h = 1000;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                h += 1;
                ahead.set_head(h + 1);
                behind.set_head(h);
            }
        })
    };
    let (mut seen, mut rises) = (0u64, 0);
    for i in 0..1000 {
        let replica = fleet[i % 2].1;
        // The latest block: the answering member's own head.
        let (_, _, v) = send(
            replica,
            "eth_getBlockByNumber",
            json!(["latest", false]),
            &[("x-session-id", "alice")],
        )
        .await;
        let head = number(&v);
        assert!(
            head >= seen,
            "call {i} on replica {}: head {head} after {seen}",
            i % 2
        );
        rises += usize::from(head > seen);
        seen = head;
    }
    stop.store(true, Ordering::Relaxed);
    mover.await.unwrap();
    assert!(
        rises > 10,
        "the heads moved under the session ({rises} rises)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_replica_does_not_serve_below_the_fleet_head() {
    let redis = RedisServer::start();
    let (fresh, stale) = (ScriptedChain::new(200), ScriptedChain::new(100));
    let up_fresh = FaultUpstream::start_chain(fresh.clone()).await;
    let up_stale = FaultUpstream::start_chain(stale.clone()).await;
    let one = |url: String| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
             [redis]\nurl = \"{}\"\ndeadline = \"200ms\"\nhead_interval = \"100ms\"\n\
             [backends.node]\nurl = \"{url}\"\n[groups.main]\nmembers = [\"node\"]\n\
             [groups.main.head]\nprobe_interval = \"100ms\"\nmax_probes_per_second = 20.0\n\
             consistency_wait = \"500ms\"\n",
            redis.url()
        )
    };
    // A replica whose node is at 200 publishes the fleet's head...
    let (first, first_addr) = start_proxy_config(&one(up_fresh.url()));
    until_metric(&first, "rpc_fleet_head{group=\"main\"} 200").await;
    let (_, _, v) = send(first_addr, "eth_blockNumber", json!([]), &[]).await;
    assert_eq!(hex(&v), 200);
    // ...and a replica whose only node is stuck at 100 refuses to show the
    // older chain rather than serve it.
    let (second, addr) = start_proxy_config(&one(up_stale.url()));
    until_metric(&second, "rpc_fleet_head{group=\"main\"} 200").await;
    let (_, _, v) = send(addr, "eth_blockNumber", json!([]), &[]).await;
    assert_eq!(
        v["error"]["code"], -32011,
        "served below the fleet's head: {v}"
    );
    // Once its node catches up, it serves.
    stale.set_head(201);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, v) = send(addr, "eth_blockNumber", json!([]), &[]).await;
        if v["result"].is_string() {
            assert!(hex(&v) >= 200, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "never served: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_killed_and_restarted_under_load_costs_no_client_an_error() {
    let mut redis = RedisServer::start();
    let a = FaultUpstream::start_chain(ScriptedChain::new(1002)).await;
    let b = FaultUpstream::start_chain(ScriptedChain::new(1000)).await;
    // Everything shared: rate limits, cache, sessions, heads.
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ncache_header = true\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [cache]\nenabled = true\n[rate_limit]\nper_ip = {{ rate = 100000 }}\n\
         [consistency]\nenabled = true\n\
         [redis]\nurl = \"{}\"\ndeadline = \"10ms\"\nopen_for = \"200ms\"\n\
         [backends.a]\nurl = \"{}\"\n[backends.b]\nurl = \"{}\"\n\
         [groups.main]\nmembers = [\"a\", \"b\"]\nstrategy = \"round-robin\"\n\
         [groups.main.head]\nmax_lag = 5\nprobe_interval = \"200ms\"\nmax_probes_per_second = 20.0\n",
        redis.url(),
        a.url(),
        b.url()
    );
    let fleet = replicas(2, &toml);
    for (p, _) in &fleet {
        until_metric(p, "rpc_redis_up 1").await;
    }
    let addrs: Vec<SocketAddr> = fleet.iter().map(|(_, a)| *a).collect();
    let done = Arc::new(AtomicBool::new(false));
    // Each call's start (since t0) and latency.
    let t0 = Instant::now();
    let (calls, errors, latencies) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(std::sync::Mutex::new(Vec::<String>::new())),
        Arc::new(std::sync::Mutex::new(Vec::<(Duration, Duration)>::new())),
    );
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (addrs, done, calls, errors, latencies) = (
                addrs.clone(),
                done.clone(),
                calls.clone(),
                errors.clone(),
                latencies.clone(),
            );
            tokio::spawn(async move {
                let session = format!("s{w}");
                let mut i = w;
                // Bounded: until the disturbances are over, at most 20 000 calls.
                while !done.load(Ordering::Relaxed) && calls.load(Ordering::Relaxed) < 20_000 {
                    let (method, params) = match i % 3 {
                        0 => ("eth_chainId", json!([])),
                        1 => ("eth_blockNumber", json!([])),
                        _ => (
                            "eth_getBlockByNumber",
                            json!([format!("{:#x}", i % 50), false]),
                        ),
                    };
                    let t = Instant::now();
                    let (_, _, v) = send(
                        addrs[i % addrs.len()],
                        method,
                        params,
                        &[("x-session-id", &session)],
                    )
                    .await;
                    latencies.lock().unwrap().push((t - t0, t.elapsed()));
                    calls.fetch_add(1, Ordering::Relaxed);
                    if v["result"].is_null() {
                        errors.lock().unwrap().push(v.to_string());
                    }
                    i += 1;
                }
            })
        })
        .collect();
    // A second of undisturbed load, then Redis frozen, thawed, killed and
    // restarted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let disturbed = t0.elapsed();
    redis.signal("STOP");
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.signal("CONT");
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.restart();
    tokio::time::sleep(Duration::from_millis(500)).await;
    done.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let errors = std::mem::take(&mut *errors.lock().unwrap());
    assert!(
        errors.is_empty(),
        "{} of {} calls failed: {:?}",
        errors.len(),
        calls.load(Ordering::Relaxed),
        &errors[..errors.len().min(5)]
    );
    // What Redis' troubles added: p99 while disturbed against before, and
    // nothing near a hang.
    let latencies = std::mem::take(&mut *latencies.lock().unwrap());
    let p99 = |mut v: Vec<Duration>| {
        v.sort();
        v.get(v.len() * 99 / 100).copied().unwrap_or_default()
    };
    let before: Vec<Duration> = latencies
        .iter()
        .filter(|(at, _)| *at < disturbed)
        .map(|(_, d)| *d)
        .collect();
    let during: Vec<Duration> = latencies
        .iter()
        .filter(|(at, _)| *at >= disturbed)
        .map(|(_, d)| *d)
        .collect();
    let slowest = latencies.iter().map(|(_, d)| *d).max().unwrap_or_default();
    let (n_before, n_during) = (before.len(), during.len());
    let (p99_before, p99_during) = (p99(before), p99(during));
    eprintln!(
        "p99 before {p99_before:?} ({n_before} calls), while Redis was frozen, down and restarting \
         {p99_during:?} ({n_during} calls); slowest {slowest:?}"
    );
    assert!(slowest < Duration::from_secs(1), "slowest call {slowest:?}");
    // The deadline is 10 ms; a few more for this loaded 2-core machine.
    assert!(
        p99_during <= p99_before + Duration::from_millis(10 + 20),
        "p99 {p99_before:?} -> {p99_during:?}"
    );
    // The disturbances were met (and answered per process meanwhile).
    let metrics = scrape(metrics_addr(&fleet[0].0)).await;
    assert!(
        metrics.contains("rpc_redis_fallbacks_total{feature=\"ratelimit\"}")
            && metrics.contains("rpc_redis_calls_total{op=\"ratelimit\",outcome=\"skipped\"}"),
        "no fallback counted:\n{metrics}"
    );
    // Recovery without a restart: both replicas use Redis again, and share.
    for (p, _) in &fleet {
        until_metric(p, "rpc_redis_up 1").await;
    }
    let (_, first, _) = send(
        addrs[0],
        "eth_getBlockByNumber",
        json!(["0x77", false]),
        &[],
    )
    .await;
    assert_eq!(first.as_deref(), Some("MISS"));
    let (_, second, _) = send(
        addrs[1],
        "eth_getBlockByNumber",
        json!(["0x77", false]),
        &[],
    )
    .await;
    assert_eq!(
        second.as_deref(),
        Some("HIT"),
        "shared again after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_rate_limits_fail_open_or_closed_as_configured() {
    let upstream = FaultUpstream::start_chain(ScriptedChain::new(0x100)).await;
    // Nothing listens there: Redis is down from the start.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", dead.local_addr().unwrap());
    drop(dead);
    let config = |when: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
             [rate_limit]\nper_ip = {{ rate = 1, burst = 2 }}\n\
             [redis]\nurl = \"{url}\"\nrate_limit_when_down = \"{when}\"\n\
             [backends.node]\nurl = \"{}\"\n",
            upstream.url()
        )
    };
    // fail-open: this replica's own budget (burst 2, then refused).
    let (open, addr) = start_proxy_config(&config("fail-open"));
    let mut codes = Vec::new();
    for _ in 0..4 {
        let (status, _, v) = send(addr, "eth_chainId", json!([]), &[]).await;
        codes.push((status, v["result"].is_string()));
    }
    assert_eq!(
        codes,
        [(200, true), (200, true), (429, false), (429, false)]
    );
    let metrics = scrape(metrics_addr(&open)).await;
    assert!(metrics.contains("rpc_redis_up 0"), "{metrics}");
    assert!(
        metrics.contains("rpc_redis_fallbacks_total{feature=\"ratelimit\"}"),
        "{metrics}"
    );
    assert!(
        open.output_text().contains("Redis unreachable"),
        "the loss is logged:\n{}",
        open.output_text()
    );
    // fail-closed: refused, with a wait, until Redis is back.
    let (_closed, addr) = start_proxy_config(&config("fail-closed"));
    let (status, _, v) = send(addr, "eth_chainId", json!([]), &[]).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["code"], -32016, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_comes_from_the_environment_and_never_shows() {
    let secret = "s3cret-redis-pw";
    let redis = RedisServer::start_with(&["--requirepass", secret]);
    let upstream = FaultUpstream::start_chain(ScriptedChain::new(0x100)).await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ncache_header = true\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [cache]\nenabled = true\n\
         [redis]\nurl = \"redis://:${{RPC_TEST_REDIS_PASSWORD}}@{}\"\n\
         [backends.node]\nurl = \"{}\"\n",
        redis.addr,
        upstream.url()
    );
    // The right password: connected, shared.
    let fleet: Vec<_> = (0..2)
        .map(|_| start_proxy_config_env(&toml, &[("RPC_TEST_REDIS_PASSWORD", secret)]))
        .collect();
    for (p, _) in &fleet {
        until_metric(p, "rpc_redis_up 1").await;
    }
    let (_, first, _) = send(fleet[0].1, "eth_chainId", json!([]), &[]).await;
    let (_, second, _) = send(fleet[1].1, "eth_chainId", json!([]), &[]).await;
    assert_eq!(
        (first.as_deref(), second.as_deref()),
        (Some("MISS"), Some("HIT"))
    );
    // A wrong one: refused by Redis, per-process state, and said so.
    let (wrong, addr) =
        start_proxy_config_env(&toml, &[("RPC_TEST_REDIS_PASSWORD", "not-the-password")]);
    let (_, _, v) = send(addr, "eth_chainId", json!([]), &[]).await;
    assert!(v["result"].is_string(), "served without Redis: {v}");
    let metrics = scrape(metrics_addr(&wrong)).await;
    assert!(metrics.contains("rpc_redis_up 0"), "{metrics}");
    let logs = wrong.output_text();
    assert!(logs.contains("Redis unreachable"), "{logs}");
    for (p, _) in fleet.iter().chain([(wrong, addr)].iter()) {
        let out = p.output_text();
        assert!(
            !out.contains(secret) && !out.contains("not-the-password"),
            "a password in the logs:\n{out}"
        );
        let metrics = scrape(metrics_addr(p)).await;
        assert!(!metrics.contains(secret), "a password in /metrics");
    }
}

#[test]
fn check_says_what_is_shared_and_hides_the_password() {
    let path = tests::write_config(
        "redis.toml",
        "[cache]\nenabled = true\n[rate_limit]\nper_ip = { rate = 5 }\n\
         [redis]\nurl = \"redis://:${RPC_TEST_REDIS_PW}@127.0.0.1:6379/2\"\nprefix = \"rpc:test:\"\n\
         rate_limit_when_down = \"fail-closed\"\nsessions = true\n\
         [backends.node]\nurl = \"http://127.0.0.1:9\"\n",
    );
    let out = std::process::Command::new(tests::binary("rpc-proxy", "rpc-proxy"))
        .args(["check", "--config"])
        .arg(&path)
        .env("RPC_TEST_REDIS_PW", "pw-never-shown")
        .output()
        .expect("run rpc-proxy");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Sessions are on but [consistency] is not: not listed.
    assert!(
        stdout.contains(
            "redis: redis://127.0.0.1:6379/2 (prefix `rpc:test:`, deadline 10ms): \
             shares cache, rate limits (fail-closed)\n"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("pw-never-shown"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_through_tls_with_a_private_ca() {
    let (redis, ca) = RedisServer::start_tls();
    let upstream = FaultUpstream::start_chain(ScriptedChain::new(0x100)).await;
    let toml = |ca_line: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ncache_header = true\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
             [cache]\nenabled = true\n\
             [redis]\nurl = \"rediss://{}\"\ndeadline = \"200ms\"\n{ca_line}\n\
             [backends.node]\nurl = \"{}\"\n",
            redis.addr,
            upstream.url()
        )
    };
    let trusted = toml(&format!("tls_ca_file = \"{}\"", ca.display()));
    let fleet = replicas(2, &trusted);
    for (p, _) in &fleet {
        until_metric(p, "rpc_redis_up 1").await;
    }
    let (_, first, _) = send(fleet[0].1, "eth_chainId", json!([]), &[]).await;
    let (_, second, _) = send(fleet[1].1, "eth_chainId", json!([]), &[]).await;
    assert_eq!(
        (first.as_deref(), second.as_deref()),
        (Some("MISS"), Some("HIT"))
    );
    // Without the CA the certificate is not trusted: per process, said so.
    let (untrusting, addr) = start_proxy_config(&toml(""));
    let (_, _, v) = send(addr, "eth_chainId", json!([]), &[]).await;
    assert!(v["result"].is_string(), "{v}");
    let metrics = scrape(metrics_addr(&untrusting)).await;
    assert!(metrics.contains("rpc_redis_up 0"), "{metrics}");
    assert!(
        untrusting.output_text().contains("Redis unreachable"),
        "{}",
        untrusting.output_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replicas_implausible_head_does_not_stop_the_others() {
    let redis = RedisServer::start();
    let node = FaultUpstream::start_chain(ScriptedChain::new(200)).await;
    let (proxy, addr) = start_proxy_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [redis]\nurl = \"{}\"\ndeadline = \"200ms\"\nhead_interval = \"100ms\"\n\
         [backends.node]\nurl = \"{}\"\n[groups.main]\nmembers = [\"node\"]\n\
         [groups.main.head]\nprobe_interval = \"100ms\"\nmax_probes_per_second = 20.0\n\
         consistency_wait = \"500ms\"\nmax_ahead = 100\n",
        redis.url(),
        node.url()
    ));
    until_metric(&proxy, "rpc_fleet_head{group=\"main\"} 200").await;
    // Another "replica" (a bug, another chain under the same prefix) claims
    // a head far above: written straight into the fleet's hash, on Redis'
    // clock, as the script would.
    let port = redis.addr.port().to_string();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &port])
            .args(args)
            .output()
            .expect("redis-cli (Debian's redis-tools, with redis-server)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let time = cli(&["TIME"]);
    let mut parts = time
        .split_whitespace()
        .map(|p| p.parse::<u64>().expect("TIME"));
    let ms = parts.next().unwrap() * 1000 + parts.next().unwrap() / 1000;
    cli(&["HSET", "rpc:head:main", "bogus", &format!("99999999:{ms}")]);
    until_metric(&proxy, "rpc_fleet_head_rejected_total{group=\"main\"}").await;
    let (_, _, v) = send(addr, "eth_blockNumber", json!([]), &[]).await;
    assert_eq!(hex(&v), 200, "still served: {v}");
    assert!(
        proxy.output_text().contains("not believed"),
        "{}",
        proxy.output_text()
    );
}
