//! The chaos suite: a pool of 5 real ElectrumX servers behind the shipped
//! `electrum-gateway` and 3 real anvil nodes behind the shipped `rpc-proxy`,
//! with servers killed, frozen, thawed and restarted at random (seeded, so a
//! failure can be replayed) for a fixed time while clients call both. At
//! least one server of each pool is kept healthy throughout; the test asserts
//! that every call got exactly one answer within its deadline and that every
//! answer was a success.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tests::{
    get, start_anvil_on, start_gateway, start_proxy, ElectrumX, ElectrumXOptions, Process,
};

/// A keep-alive HTTP/1.1 client (one connection, re-opened when it breaks), so
/// thousands of calls do not leave thousands of sockets in TIME_WAIT.
struct Client {
    addr: std::net::SocketAddr,
    conn: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Client {
    fn new(addr: std::net::SocketAddr) -> Self {
        Client { addr, conn: None }
    }

    async fn request(&mut self, method: http::Method, path: &str, body: String) -> (u16, String) {
        let result = async {
            if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
                let stream = tokio::net::TcpStream::connect(self.addr)
                    .await
                    .map_err(|e| e.to_string())?;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                self.conn = Some(sender);
            }
            let sender = self.conn.as_mut().ok_or("no connection")?;
            sender.ready().await.map_err(|e| e.to_string())?;
            let req = http::Request::builder()
                .method(method)
                .uri(path)
                .header("host", self.addr.to_string())
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())?;
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, String::from_utf8_lossy(&bytes).into_owned()))
        }
        .await;
        result.unwrap_or_else(|e| {
            self.conn = None;
            (0, format!("transport error: {e}"))
        })
    }
}

const CHAOS: Duration = Duration::from_secs(30);
const DEADLINE: Duration = Duration::from_secs(15);
const SEED: u64 = 0x5eed_2026_1121;

/// splitmix64: a small seeded generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum State {
    /// Up since this instant.
    Up(Instant),
    Frozen,
    Dead,
}

/// A member counts as healthy once up for `settle`.
fn healthy(states: &[State], settle: Duration) -> usize {
    states
        .iter()
        .filter(|s| matches!(s, State::Up(t) if t.elapsed() >= settle))
        .count()
}

/// One chaos step on a pool: disturb a member while another stays healthy,
/// else bring one back. Returns what it did, for the log.
fn step(
    rng: &mut Rng,
    states: &mut [State],
    settle: Duration,
    mut act: impl FnMut(usize, &str),
) -> String {
    let i = rng.below(states.len());
    let others_healthy = healthy(states, settle)
        - usize::from(matches!(states[i], State::Up(t) if t.elapsed() >= settle));
    match states[i] {
        State::Up(_) if others_healthy >= 1 => {
            if rng.below(2) == 0 {
                act(i, "STOP");
                states[i] = State::Frozen;
                format!("freeze {i}")
            } else {
                act(i, "KILL");
                states[i] = State::Dead;
                format!("kill {i}")
            }
        }
        State::Up(_) => format!("spare {i} (the last healthy one)"),
        State::Frozen => {
            if rng.below(3) == 0 && others_healthy >= 1 {
                act(i, "KILL");
                states[i] = State::Dead;
                format!("kill frozen {i}")
            } else {
                act(i, "CONT");
                states[i] = State::Up(Instant::now());
                format!("thaw {i}")
            }
        }
        State::Dead => {
            act(i, "RESTART");
            states[i] = State::Up(Instant::now());
            format!("restart {i}")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_answered_while_servers_die_freeze_and_return() {
    let mut ex = ElectrumX::start(ElectrumXOptions {
        instances: 5,
        ..Default::default()
    });
    let mut gw_args: Vec<String> = vec![
        "--network".into(),
        "regtest".into(),
        "--request-timeout".into(),
        "3".into(),
    ];
    for i in 0..5 {
        gw_args.push("--server".into());
        gw_args.push(format!("ex{i}={}", ex.tcp_url(i)));
    }
    let gw_refs: Vec<&str> = gw_args.iter().map(String::as_str).collect();
    let (_gateway, gw) = start_gateway(&gw_refs);

    // Restarted where they were: on ports no outgoing connection takes.
    let mut anvils: Vec<(Process, std::net::SocketAddr)> = (0..3)
        .map(|_| start_anvil_on(tests::stable_port()))
        .collect();
    let mut proxy_args: Vec<String> = vec![
        "--timeout".into(),
        "1".into(),
        "--out-of-service".into(),
        "2".into(),
        "--request-timeout".into(),
        "12".into(),
    ];
    for (i, (_, a)) in anvils.iter().enumerate() {
        proxy_args.push("--upstream".into());
        proxy_args.push(format!("node{i}=http://{a}"));
    }
    let proxy_refs: Vec<&str> = proxy_args.iter().map(String::as_str).collect();
    let (_proxy, px) = start_proxy(&proxy_refs);
    let (s, _) = get(gw, "/healthz").await;
    assert_eq!(s, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..8usize {
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut client = Client::new(if c < 4 { px } else { gw });
            let mut calls = 0usize;
            let mut failures = Vec::new();
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) && calls < 2_000 {
                let t0 = Instant::now();
                let i = calls;
                let client = &mut client;
                let call = async move {
                    if c < 4 {
                        let method = ["eth_blockNumber", "eth_chainId", "eth_gasPrice", "eth_getBalance"][i % 4];
                        let params = if method == "eth_getBalance" {
                            json!([format!("0x{:040x}", i), "latest"])
                        } else {
                            json!([])
                        };
                        let body = json!({"jsonrpc": "2.0", "id": i, "method": method, "params": params});
                        client.request(http::Method::POST, "/", body.to_string()).await
                    } else {
                        match i % 3 {
                            0 => {
                                let body = json!({"jsonrpc": "2.0", "id": i, "method": "server.ping", "params": []});
                                client.request(http::Method::POST, "/", body.to_string()).await
                            }
                            1 => client.request(http::Method::GET, "/v1/tip", String::new()).await,
                            _ => {
                                let path = format!("/v1/block/{}/header", i % 10);
                                client.request(http::Method::GET, &path, String::new()).await
                            }
                        }
                    }
                };
                match tokio::time::timeout(DEADLINE, call).await {
                    Ok((status, text)) => {
                        if status != 200 || text.contains("\"error\"") {
                            failures.push(format!("client {c} call {i}: {status} {text}"));
                        }
                    }
                    Err(_) => failures.push(format!("client {c} call {i}: no answer within {DEADLINE:?}")),
                }
                slowest = slowest.max(t0.elapsed());
                calls += 1;
                // A steady, bounded load rather than a flood.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (calls, failures, slowest)
        }));
    }

    // The chaos driver (blocking: restarts wait for the process to serve).
    let driver = tokio::task::spawn_blocking(move || {
        let mut rng = Rng(SEED);
        let started = Instant::now();
        let mut ex_states = vec![State::Up(started - Duration::from_secs(60)); 5];
        let mut anvil_states = vec![State::Up(started - Duration::from_secs(60)); 3];
        let mut log = Vec::new();
        while started.elapsed() < CHAOS {
            std::thread::sleep(Duration::from_millis(1500));
            let line = if rng.below(2) == 0 {
                "electrumx ".to_owned()
                    + &step(
                        &mut rng,
                        &mut ex_states,
                        Duration::from_secs(5),
                        |i, what| match what {
                            "RESTART" => ex.restart(i),
                            sig => ex.signal(i, sig),
                        },
                    )
            } else {
                "anvil ".to_owned()
                    + &step(
                        &mut rng,
                        &mut anvil_states,
                        Duration::from_secs(2),
                        |i, what| match what {
                            "RESTART" => {
                                let port = anvils[i].1.port();
                                anvils[i] = start_anvil_on(port);
                            }
                            sig => anvils[i].0.signal(sig),
                        },
                    )
            };
            log.push(format!("{:>5.1}s {line}", started.elapsed().as_secs_f64()));
        }
        // Thaw whatever is frozen, so nothing lingers stopped.
        for (i, s) in ex_states.iter().enumerate() {
            if *s == State::Frozen {
                ex.signal(i, "CONT");
            }
        }
        for (i, s) in anvil_states.iter().enumerate() {
            if *s == State::Frozen {
                anvils[i].0.signal("CONT");
            }
        }
        (log, ex, anvils)
    });
    let (log, _ex, _anvils) = driver.await.expect("chaos driver");
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    let mut slowest = Duration::ZERO;
    let mut failures = Vec::new();
    for c in clients {
        let (calls, f, s) = c.await.expect("client");
        total += calls;
        slowest = slowest.max(s);
        failures.extend(f);
    }
    eprintln!(
        "chaos (seed {SEED:#x}):\n  {}\n{total} calls, slowest {slowest:?}",
        log.join("\n  ")
    );
    assert!(
        log.iter().any(|l| l.contains("kill")) && log.iter().any(|l| l.contains("freeze")),
        "{log:?}"
    );
    assert!(total > 100, "only {total} calls were made");
    assert!(
        failures.is_empty(),
        "{} of {total} calls failed while a server was healthy:\n{}\nchaos:\n{}",
        failures.len(),
        failures.join("\n"),
        log.join("\n")
    );
}
