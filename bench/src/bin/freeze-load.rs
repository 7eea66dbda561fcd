//! A closed-loop load generator that reports latency second by second, for
//! watching a proxy through a fault: `CONNS` keep-alive HTTP/1.1 connections
//! each send `eth_blockNumber` one after the other for `SECONDS`, with a
//! client timeout of 10 s per call (a timed-out call is an error and its
//! connection is replaced). Prints a markdown table: per second (by when the
//! call was sent), calls, errors, p50 and p99 in milliseconds.
//!
//! `freeze-load 127.0.0.1:19010 32 30`

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpc_bench::exchange;
use tokio::net::TcpStream;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// (second sent, latency in µs, ok)
type Sample = (u32, u32, bool);

async fn connection(
    addr: SocketAddr,
    start: Instant,
    until: Instant,
    out: Arc<Mutex<Vec<Sample>>>,
) {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        std::str::from_utf8(body).unwrap_or_default()
    );
    let mut samples = Vec::with_capacity(1 << 16);
    let mut buf = Vec::with_capacity(1024);
    let mut stream = None;
    while Instant::now() < until {
        let sent = Instant::now();
        let second = sent.duration_since(start).as_secs() as u32;
        if stream.is_none() {
            stream = TcpStream::connect(addr).await.ok();
        }
        let ok = match stream.as_mut() {
            Some(s) => {
                tokio::time::timeout(CLIENT_TIMEOUT, exchange(s, request.as_bytes(), &mut buf))
                    .await
                    .ok()
                    .flatten()
            }
            None => None,
        };
        let latency = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        match ok {
            Some(ok) => samples.push((second, latency, ok)),
            None => {
                samples.push((second, latency, false));
                stream = None;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    out.lock().map(|mut o| o.extend(samples)).unwrap_or(());
}

fn quantile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: freeze-load ADDR CONNS SECONDS";
    let addr: SocketAddr = args.next().and_then(|a| a.parse().ok()).expect(usage);
    let conns: usize = args.next().and_then(|a| a.parse().ok()).expect(usage);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).expect(usage);
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let out = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(connection(addr, start, until, out.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let samples = out.lock().map(|o| o.clone()).unwrap_or_default();
    println!("| second | calls | errors | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    let (mut total, mut errors) = (0usize, 0usize);
    for second in 0..seconds as u32 {
        let mut lat: Vec<u32> = samples
            .iter()
            .filter(|s| s.0 == second)
            .map(|s| s.1)
            .collect();
        let errs = samples.iter().filter(|s| s.0 == second && !s.2).count();
        lat.sort_unstable();
        total += lat.len();
        errors += errs;
        println!(
            "| {second} | {} | {errs} | {:.2} | {:.2} | {:.2} |",
            lat.len(),
            quantile(&lat, 0.5),
            quantile(&lat, 0.99),
            quantile(&lat, 1.0)
        );
    }
    println!();
    println!("{total} calls, {errors} errors");
}
