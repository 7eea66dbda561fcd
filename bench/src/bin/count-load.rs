//! A fixed-count, closed-loop load generator for instruction counting:
//! `CONNS` keep-alive HTTP/1.1 connections send `TOTAL` requests in all (the
//! same body each time), one after the other per connection, with a 10 s
//! client timeout per call. Unlike wrk (which runs for a duration), the count
//! is exact, so `instructions / TOTAL` is a per-request figure. Prints one line:
//! `requests errors seconds p50_ms p99_ms`.
//!
//! `count-load 127.0.0.1:19003 64 20000 '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}'`
//! (a body starting with `@` is read from that file). Each `%N%` in the body
//! is replaced by a number new for every request, as 16 hex digits (the body
//! keeps its length): `"0x000000000000000000000000%N%"` is a new address each
//! time, so a cacheable call misses the cache every time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rpc_bench::exchange;
use tokio::net::TcpStream;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

const PLACEHOLDER: &[u8] = b"%N%";

/// Where `%N%` stands in the request (each becomes 16 hex digits).
fn placeholders(request: &[u8]) -> Vec<usize> {
    request
        .windows(PLACEHOLDER.len())
        .enumerate()
        .filter(|(_, w)| *w == PLACEHOLDER)
        .map(|(i, _)| i)
        .collect()
}

/// `request` with every `%N%` widened to 16 characters (`0`s), and where
/// each of them now starts.
fn widen(request: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::with_capacity(request.len());
    let mut at = Vec::new();
    let mut rest = request;
    let mut consumed = 0;
    for i in placeholders(request) {
        if i < consumed {
            continue; // overlapping match ("%N%N%")
        }
        out.extend_from_slice(&rest[..i - consumed]);
        at.push(out.len());
        out.extend_from_slice(b"0000000000000000");
        rest = &request[i + PLACEHOLDER.len()..];
        consumed = i + PLACEHOLDER.len();
    }
    out.extend_from_slice(rest);
    (out, at)
}

async fn connection(
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    slots: Arc<Vec<usize>>,
    left: Arc<AtomicUsize>,
    errors: Arc<AtomicUsize>,
) -> Vec<u32> {
    let mut latencies = Vec::new();
    let mut buf = Vec::with_capacity(4096);
    let mut stream: Option<TcpStream> = None;
    let mut request = request.as_ref().clone();
    while let Ok(n) = left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)) {
        let unique = format!("{:016x}", (std::process::id() as usize) << 40 | n);
        for &at in slots.iter() {
            request[at..at + 16].copy_from_slice(unique.as_bytes());
        }
        let sent = Instant::now();
        if stream.is_none() {
            stream = TcpStream::connect(addr).await.ok();
            if let Some(s) = &stream {
                let _ = s.set_nodelay(true);
            }
        }
        let ok = match stream.as_mut() {
            Some(s) => tokio::time::timeout(CLIENT_TIMEOUT, exchange(s, &request, &mut buf))
                .await
                .ok()
                .flatten(),
            None => None,
        };
        latencies.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        match ok {
            Some(true) => {}
            Some(false) => {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                errors.fetch_add(1, Ordering::Relaxed);
                stream = None;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    latencies
}

fn quantile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: count-load ADDR CONNS TOTAL BODY|@FILE";
    let addr: SocketAddr = args.next().and_then(|a| a.parse().ok()).expect(usage);
    let conns: usize = args.next().and_then(|a| a.parse().ok()).expect(usage);
    let total: usize = args.next().and_then(|a| a.parse().ok()).expect(usage);
    let body = args.next().expect(usage);
    let body = match body.strip_prefix('@') {
        Some(path) => std::fs::read(path).expect("read the body file"),
        None => body.into_bytes(),
    };
    let (body, at) = widen(&body);
    let mut request = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    let head = request.len();
    request.extend_from_slice(&body);
    let slots = Arc::new(at.into_iter().map(|i| head + i).collect::<Vec<_>>());
    let request = Arc::new(request);
    let left = Arc::new(AtomicUsize::new(total));
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..conns.max(1))
        .map(|_| {
            tokio::spawn(connection(
                addr,
                request.clone(),
                slots.clone(),
                left.clone(),
                errors.clone(),
            ))
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for t in tasks {
        latencies.extend(t.await.unwrap_or_default());
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    println!(
        "{} {} {:.3} {:.3} {:.3}",
        latencies.len(),
        errors.load(Ordering::Relaxed),
        seconds,
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99)
    );
}
