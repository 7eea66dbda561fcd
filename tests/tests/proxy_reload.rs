//! Configuration reload on SIGHUP, on the shipped binary under load: the
//! file swapped three times (one of them invalid) while clients call;
//! no call fails, each is answered by the stack that was current when it
//! arrived (seen through `x-served-by`), a call in flight finishes on the
//! stack it started on, the invalid file is refused with its place, and
//! the metrics count it all.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::{
    metrics_addr, post, scrape, start_anvil, start_proxy_file, write_config, FaultUpstream, Process,
};

/// One generation of the file: `main` answers the load through backend
/// `main_name`, `slow` answers `fault_*` calls through `slow_name`.
fn config(main_name: &str, main_url: &str, slow_name: &str, slow_url: &str, extra: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
served_by_header = true
{extra}
[metrics]
listen = "127.0.0.1:0"

[backends.{main_name}]
url = "{main_url}"

[backends.{slow_name}]
url = "{slow_url}"
timeout = "10s"

[groups.main]
members = ["{main_name}"]

[groups.slow]
members = ["{slow_name}"]

[routing]
default = "main"
methods = {{ "fault_*" = "slow" }}
"#
    )
}

/// One call as a client saw it.
#[derive(Debug, Clone)]
struct Seen {
    sent: Instant,
    done: Instant,
    by: String,
    error: Option<String>,
}

async fn call(addr: SocketAddr, method: &str, params: &str) -> Seen {
    let sent = Instant::now();
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
    let (status, headers, text) = post(addr, body).await;
    let done = Instant::now();
    let by = headers
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let error = (status != 200 || v.get("result").is_none()).then(|| format!("{status} {text}"));
    Seen {
        sent,
        done,
        by,
        error,
    }
}

/// Waits (up to 20 s) until the proxy printed `needle` `n` times.
async fn wait_for_log(proxy: &Process, needle: &str, n: usize) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if proxy.output_text().matches(needle).count() >= n {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "no {n}x `{needle}` in:\n{}",
            proxy.output_text()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_no_call_and_refuse_an_invalid_file() {
    let (_n1, a1) = start_anvil();
    let (_n2, a2) = start_anvil();
    let (u1, u2) = (format!("http://{a1}"), format!("http://{a2}"));
    let (slow1, slow2) = (FaultUpstream::start().await, FaultUpstream::start().await);

    // Generation 0: main = one (anvil 1), slow = s1.
    let path = write_config("reload.toml", &config("one", &u1, "s1", &slow1.url(), ""));
    let (proxy, addr) = start_proxy_file(&path, &[]);
    let metrics = metrics_addr(&proxy);
    let reload = |toml: &str| {
        std::fs::write(&path, toml).expect("write the new file");
        proxy.signal("HUP");
        Instant::now()
    };

    // Four clients calling until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, seen) = (stop.clone(), seen.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) && n < 5_000 {
                    let s = call(addr, "eth_chainId", "[]").await;
                    seen.lock().expect("lock").push(s);
                    n += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A slow call in flight on generation 0 when generation 1 arrives.
    let in_flight = tokio::spawn(call(addr, "fault_slow", "[1500]"));
    let arrived = Instant::now() + Duration::from_secs(10);
    while slow1.items.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < arrived, "the slow call never reached s1");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Generation 1: main = two (anvil 2), slow = s2.
    let mut marks = Vec::new();
    let signal1 = reload(&config("two", &u2, "s2", &slow2.url(), ""));
    let applied1 = wait_for_log(&proxy, "configuration reloaded", 1).await;
    marks.push((signal1, applied1, "two"));
    let slow = in_flight.await.expect("task");
    assert_eq!(slow.error, None, "the in-flight call failed");
    assert_eq!(
        slow.by, "s1",
        "the in-flight call finished on its own stack"
    );
    let after = call(addr, "fault_slow", "[1]").await;
    assert_eq!((after.error, after.by.as_str()), (None, "s2"));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // An invalid file (an unknown key on line 3): refused, nothing changes.
    let invalid = config("one", &u1, "s1", &slow1.url(), "request_timout = \"5s\"");
    let invalid_at = reload(&invalid);
    wait_for_log(&proxy, "configuration reload refused", 1).await;
    let refused_log = proxy.output_text();
    let file = path.to_string_lossy();
    assert!(
        refused_log.contains(&format!("{file}:4:1")),
        "the refusal names the file, line and column:\n{refused_log}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    marks.push((invalid_at, invalid_at, "two"));

    // Generation 2: main = one again, plus a [server] change that waits for
    // a restart (logged, not applied).
    let signal3 = reload(&config(
        "one",
        &u1,
        "s1",
        &slow1.url(),
        "request_timeout = \"9s\"",
    ));
    let applied3 = wait_for_log(&proxy, "configuration reloaded", 2).await;
    marks.push((signal3, applied3, "one"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("client");
    }

    let seen = seen.lock().expect("lock").clone();
    let errors: Vec<_> = seen.iter().filter_map(|s| s.error.clone()).collect();
    assert!(errors.is_empty(), "client-visible errors: {errors:?}");
    // Which backend each call may have been served by: the stack current
    // when it arrived. A call sent after a swap was confirmed, and done
    // before the next signal, has exactly one; one that overlaps a signal
    // and its confirmation may have either.
    let mut checked = 0;
    for s in &seen {
        let mut expected = vec!["one"];
        for &(signal, applied, name) in &marks {
            if s.sent >= applied {
                expected = vec![name];
            } else if s.done > signal {
                expected.push(name);
            }
        }
        assert!(
            expected.contains(&s.by.as_str()),
            "served by {} but expected one of {expected:?}: {s:?}",
            s.by
        );
        checked += 1;
    }
    let per_stack = |name: &str| seen.iter().filter(|s| s.by == name).count();
    eprintln!(
        "{checked} calls: {} by one, {} by two",
        per_stack("one"),
        per_stack("two")
    );
    assert!(
        per_stack("one") > 10 && per_stack("two") > 10,
        "load on both stacks: {checked} calls"
    );

    let log = proxy.output_text();
    assert!(
        log.contains("take effect on restart") && log.contains("[server]"),
        "a [server] change is named as waiting for a restart:\n{log}"
    );
    let m = scrape(metrics).await;
    assert_eq!(metric(&m, "rpc_config_generation"), Some(2.0), "{m}");
    assert_eq!(
        metric(&m, "rpc_config_reloads_total{outcome=\"applied\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric(&m, "rpc_config_reloads_total{outcome=\"invalid\"}"),
        Some(1.0)
    );
    // The proxy still serves, on generation 2.
    let last = call(addr, "eth_chainId", "[]").await;
    assert_eq!((last.error, last.by.as_str()), (None, "one"));
}
