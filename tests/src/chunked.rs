//! An upstream that answers in chunked transfer coding, written in pieces,
//! as a Go node does (`net/http` chunks any answer it did not size): the
//! client reads the head, chunk-size lines and chunks split across reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A keep-alive HTTP/1.1 server on loopback that answers every call — a
/// single call or a batch — with results of `len` characters (`"aaa…"`),
/// in a chunked body of 1 000-byte chunks, each piece written in two
/// halves after a pause. It ends with the test's runtime.
pub struct ChunkedUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// Requests read.
    pub requests: Arc<AtomicUsize>,
    /// Of those, batches.
    pub batches: Arc<AtomicUsize>,
}

impl ChunkedUpstream {
    /// Starts it on a free port; every result is `len` characters long.
    pub async fn start(len: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let batches = Arc::new(AtomicUsize::new(0));
        let (accepted, answered, batched) =
            (connections.clone(), requests.clone(), batches.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                stream.set_nodelay(true).expect("nodelay");
                tokio::spawn(serve(stream, len, answered.clone(), batched.clone()));
            }
        });
        ChunkedUpstream {
            addr,
            connections,
            requests,
            batches,
        }
    }

    /// Its URL, for a backend.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

async fn serve(
    mut stream: tokio::net::TcpStream,
    len: usize,
    answered: Arc<AtomicUsize>,
    batched: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // One request: its head and a body of content-length bytes.
        let (end, body_len) = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let body_len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap_or(0));
                if buf.len() >= end + 4 + body_len {
                    break (end + 4, body_len);
                }
            }
            match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        };
        let call: Value = serde_json::from_slice(&buf[end..end + body_len]).unwrap_or_default();
        buf.drain(..end + body_len);
        // Counted as read, before the answer: a client has it only after.
        answered.fetch_add(1, Ordering::SeqCst);
        if call.is_array() {
            batched.fetch_add(1, Ordering::SeqCst);
        }
        let result = "a".repeat(len);
        let answer = |call: &Value| json!({"jsonrpc": "2.0", "id": call["id"], "result": result});
        let body = match &call {
            Value::Array(calls) => Value::Array(calls.iter().map(answer).collect()),
            one => answer(one),
        }
        .to_string();
        let mut pieces = vec![b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec()];
        for part in body.as_bytes().chunks(1000) {
            let mut piece = format!("{:x}\r\n", part.len()).into_bytes();
            piece.extend_from_slice(part);
            piece.extend_from_slice(b"\r\n");
            pieces.push(piece);
        }
        pieces.push(b"0\r\n\r\n".to_vec());
        for piece in pieces {
            // Each piece in two writes: a chunk-size line or a chunk cut in
            // the middle.
            let (a, b) = piece.split_at(piece.len() / 2);
            for half in [a, b] {
                if stream.write_all(half).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}
