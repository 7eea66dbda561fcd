//! Hostile clients against the shipped `rpc-proxy` (real sockets, a real
//! process with a lowered open-file limit): thousands of idle connections,
//! near-limit bodies on many connections at once, many h2 streams on one
//! socket. A well-behaved client must still be answered within 1 s, and
//! the process's memory must stay under a bound derived from its budgets.
//! Every load is bounded.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tests::{
    binary, call, metrics_addr, scrape, workspace_root, write_config, FaultUpstream, Process,
};

/// The binary with `toml`, run under `ulimit -n NOFILE`.
fn proxy_with_nofile(toml: &str, nofile: u32) -> (Process, SocketAddr) {
    let path = write_config("attack.toml", toml);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" --config \"$1\""))
        .arg(binary("rpc-proxy", "rpc-proxy"))
        .arg(&path);
    Process::start(cmd, Duration::from_secs(20), |line| {
        let rest = line.split("listening on http://").nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Peak resident memory of a process (`VmHWM`), in MiB.
fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A well-behaved client: `n` calls, each answered (200, a result) within 1 s.
async fn well_behaved(addr: SocketAddr, n: usize) -> Duration {
    let mut slowest = Duration::ZERO;
    for i in 0..n {
        let started = Instant::now();
        let answer =
            tokio::time::timeout(Duration::from_secs(1), call(addr, "eth_chainId", json!([])))
                .await;
        let (status, body) = answer.unwrap_or_else(|_| panic!("call {i} not answered within 1 s"));
        assert_eq!(status, 200, "call {i}: {body}");
        assert!(body.get("result").is_some(), "call {i}: {body}");
        slowest = slowest.max(started.elapsed());
    }
    slowest
}

/// [`well_behaved`] on a thread and runtime of its own.
async fn beside(addr: SocketAddr, n: usize) -> Duration {
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(well_behaved(addr, n))
    })
    .await
    .expect("the well-behaved client")
}

fn metric(scraped: &str, prefix: &str) -> f64 {
    scraped
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_do_not_starve_a_client() {
    let upstream = FaultUpstream::start().await;
    let (proxy, addr) = proxy_with_nofile(
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nheader_timeout = \"2s\"\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n[backends.up]\nurl = \"{}\"\n",
            upstream.url()
        ),
        512,
    );
    let metrics = metrics_addr(&proxy);
    let pid = proxy.pid();

    // 2 000 connections that never send a byte, from another address (the
    // per-address cap) and more than the process has files for.
    let script = workspace_root().join("tests/clients/idle-flood.py");
    let mut flood = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg("2000")
        .arg("127.0.0.2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 (scripts/test.sh installs it)");
    let mut out = tokio::io::BufReader::new(flood.stdout.take().expect("piped"));
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line),
    )
    .await
    .expect("the flood opened its connections")
    .expect("read");
    assert!(line.starts_with("open "), "{line}");

    // While they are held: answered, and the process is within its files.
    let slowest = well_behaved(addr, 20).await;
    let fds = open_fds(pid);
    assert!(fds < 512, "{fds} open files");
    // Silent connections are closed after the first-bytes deadline (2 s).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let after = open_fds(pid);
    assert!(after < 100, "idle connections linger: {after} open files");
    well_behaved(addr, 5).await;

    let scraped = scrape(metrics).await;
    let shed = metric(&scraped, "rpc_connections_refused_total")
        + metric(&scraped, "rpc_connections_closed_total");
    assert!(shed > 0.0, "the caps acted:\n{scraped}");
    let log = proxy.output_text();
    let accept_errors = log.matches("accept failed").count();
    assert!(
        accept_errors <= 3,
        "accept failures are rate-limited: {accept_errors}"
    );
    let refusal_lines = log.matches("connections refused").count();
    assert!(
        refusal_lines <= 3,
        "refusals are rate-limited: {refusal_lines}"
    );
    eprintln!(
        "idle flood: slowest good call {slowest:?}, {fds} files during, {after} after, peak RSS {:.1} MiB",
        peak_rss_mb(pid)
    );
    drop(flood.stdin.take());
    let _ = flood.kill().await;
}

/// A JSON-RPC call body of exactly `len` bytes.
fn call_body(len: usize) -> bytes::Bytes {
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(br#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[""#);
    body.resize(len - 3, b'a');
    body.extend_from_slice(br#""]}"#);
    bytes::Bytes::from(body)
}

/// Sends `body` on its own connection and returns the status (0 if the
/// connection failed).
async fn big_body(addr: SocketAddr, body: bytes::Bytes) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let head = format!(
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).await.is_err() {
        return 0;
    }
    // The server may answer (503) before taking the whole body.
    let _ = s.write_all(&body).await;
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|t| t.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A [`FaultUpstream`] on a thread and runtime of its own (the attack's
/// tasks in the test's runtime must not slow the upstream down); it stops
/// when the returned sender is dropped.
fn upstream_apart() -> (String, std::sync::mpsc::Sender<()>) {
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let up = FaultUpstream::start().await;
            let _ = url_tx.send(up.url());
            let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
            drop(up);
        });
    });
    (url_rx.recv().expect("the upstream started"), stop_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_limit_bodies_and_h2_streams_stay_within_the_memory_budget() {
    let (upstream, _stop) = upstream_apart();
    let budget_mb = 32;
    let (proxy, addr) = proxy_with_nofile(
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nmemory_budget_mb = {budget_mb}\nrequest_timeout = \"5s\"\n\
             [backends.up]\nurl = \"{upstream}\"\n"
        ),
        4096,
    );
    let pid = proxy.pid();
    let base = peak_rss_mb(pid);
    let limit = 10 * 1024 * 1024 - 1;

    // 60 connections at once, each with a body one byte under the limit.
    let body = call_body(limit);
    let bodies: Vec<_> = (0..60)
        .map(|_| tokio::spawn(big_body(addr, body.clone())))
        .collect();
    // A well-behaved client meanwhile (on its own thread, so the attack's
    // tasks in this runtime do not delay its clock).
    let slowest = beside(addr, 10).await;
    let mut statuses = Vec::new();
    for b in bodies {
        statuses.push(b.await.expect("task"));
    }
    let busy = statuses.iter().filter(|s| **s == 503).count();
    assert!(busy > 0, "the budget turned some away: {statuses:?}");
    assert!(
        statuses.iter().all(|s| [200, 503, 504, 0].contains(s)),
        "{statuses:?}"
    );
    let after_http1 = peak_rss_mb(pid);

    // One h2 connection opening 50 streams of near-limit bodies.
    {
        use http_body_util::Full;
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2c");
        tokio::spawn(conn);
        let streams: Vec<_> = (0..50)
            .map(|_| {
                let mut sender = sender.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    let req = http::Request::post(format!("http://{addr}/"))
                        .header("content-type", "application/json")
                        .body(Full::new(body))
                        .expect("request");
                    tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .map_or(0, |r| r.status().as_u16())
                })
            })
            .collect();
        beside(addr, 5).await;
        for s in streams {
            let status = s.await.expect("task");
            assert!([200, 503, 504, 0].contains(&status), "{status}");
        }
    }
    let peak = peak_rss_mb(pid);
    // Bodies held at once are within the budget; parsing a body copies at
    // most as much again; plus the process's own base.
    let bound = base + 3.0 * f64::from(budget_mb) + 40.0;
    eprintln!(
        "memory: base {base:.1} MiB, after 60 bodies {after_http1:.1}, after 50 h2 streams {peak:.1} (bound {bound:.1}); slowest good call {slowest:?}; statuses {statuses:?}"
    );
    assert!(peak < bound, "peak RSS {peak:.1} MiB over {bound:.1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_behind_a_trusted_proxy_gets_its_own_rate_limit() {
    let upstream = FaultUpstream::start().await;
    let (_proxy, addr) = tests::start_proxy_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1\"]\n\
         [backends.up]\nurl = \"{}\"\n[rate_limit]\nper_ip = {{ rate = 1, burst = 2 }}\n",
        upstream.url()
    ));
    let send = |xff: &'static str| async move {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"m1"}"#;
        let req = format!(
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-forwarded-for: {xff}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let text = tests::raw_exchange(addr, req.as_bytes(), Duration::from_secs(5)).await;
        text.split_whitespace().nth(1).unwrap_or("").to_owned()
    };
    // Client A spends its burst; client B (another forwarded address,
    // same TCP peer) still has its own.
    assert_eq!(send("203.0.113.1").await, "200");
    assert_eq!(send("203.0.113.1").await, "200");
    assert_eq!(send("203.0.113.1").await, "429");
    assert_eq!(send("203.0.113.2").await, "200", "a separate bucket");
    // A spoofed first hop does not help A: the nearest untrusted hop counts.
    assert_eq!(send("198.51.100.9, 203.0.113.1").await, "429");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_protocol_names_the_client_from_a_trusted_balancer() {
    let upstream = FaultUpstream::start().await;
    let (_proxy, addr) = tests::start_proxy_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1\"]\nproxy_protocol = true\n\
         [backends.up]\nurl = \"{}\"\n[rate_limit]\nper_ip = {{ rate = 1, burst = 1 }}\n",
        upstream.url()
    ));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"m1"}"#;
    let http = format!(
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let send = |header: Vec<u8>| {
        let mut bytes = header;
        bytes.extend_from_slice(http.as_bytes());
        async move {
            let text = tests::raw_exchange(addr, &bytes, Duration::from_secs(5)).await;
            text.split_whitespace().nth(1).unwrap_or("").to_owned()
        }
    };
    let v1 = |ip: &str| format!("PROXY TCP4 {ip} 127.0.0.1 40000 8545\r\n").into_bytes();
    // v2, TCP over IPv4, from 203.0.113.2.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[0x21, 0x11, 0, 12, 203, 0, 113, 2, 127, 0, 0, 1]);
    v2.extend_from_slice(&40000u16.to_be_bytes());
    v2.extend_from_slice(&8545u16.to_be_bytes());

    assert_eq!(send(v1("203.0.113.1")).await, "200");
    assert_eq!(
        send(v1("203.0.113.1")).await,
        "429",
        "the same client, over its burst"
    );
    assert_eq!(
        send(v2).await,
        "200",
        "another client (v2) has its own bucket"
    );
    // A connection from the balancer without the header is closed unanswered.
    assert_eq!(send(Vec::new()).await, "");
}
