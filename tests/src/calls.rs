//! HTTP calls to a proxy or gateway: JSON-RPC posts, keep-alive
//! connections, raw bytes, Prometheus scrapes.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A tiny HTTP client for the tests: one POST, a deadline, the raw answer.
pub async fn post(
    addr: SocketAddr,
    body: impl Into<Bytes>,
) -> (StatusCode, http::HeaderMap, String) {
    post_with(addr, body, &[("content-type", "application/json")]).await
}

/// [`post`] with explicit headers.
pub async fn post_with(
    addr: SocketAddr,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    post_to(addr, "/", body, headers).await
}

/// A POST to `path` with explicit headers.
pub async fn post_to(
    addr: SocketAddr,
    path: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let mut req = http::Request::post(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).expect("request");
    send(addr, req).await
}

/// Sends one request on a new connection (5 s to connect, 30 s for the
/// answer and 30 s for its body); the status, headers and body.
async fn send(
    addr: SocketAddr,
    mut req: http::Request<Full<Bytes>>,
) -> (StatusCode, http::HeaderMap, String) {
    let stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let host =
        http::HeaderValue::from_str(&addr.to_string()).expect("an address is a header value");
    req.headers_mut().insert(http::header::HOST, host);
    let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .expect("answer within 30 s")
        .expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect())
        .await
        .expect("body within 30 s")
        .expect("body")
        .to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// One JSON-RPC call; returns the HTTP status and the parsed body.
pub async fn call(addr: SocketAddr, method: &str, params: Value) -> (StatusCode, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let (status, _, text) = post(addr, body.to_string()).await;
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

/// A JSON-RPC call body (id 1).
pub fn body(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string()
}

/// One call through the proxy (with `served_by_header` on): who served it,
/// and the answer.
pub async fn served_by(addr: SocketAddr, method: &str, params: Value) -> (String, Value) {
    let (status, headers, text) = post(addr, body(method, params)).await;
    assert_eq!(status, 200, "{method}: {text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    (
        headers
            .get("x-served-by")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        v,
    )
}

/// Calls `eth_chainId` until `who` serves it (up to 15 s); panics otherwise.
pub async fn until_served_by(addr: SocketAddr, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (by, _) = served_by(addr, "eth_chainId", json!([])).await;
        if by == who {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never served by {who} (last: {by})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The proxy's `/metrics` text (the whole HTTP exchange).
pub async fn scrape(addr: SocketAddr) -> String {
    let req = format!("GET /metrics HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    raw_exchange(addr, req.as_bytes(), Duration::from_secs(5)).await
}

/// One keep-alive HTTP/1.1 connection to a server, for calls that must
/// share a connection (per-connection sessions).
pub struct Connection {
    addr: SocketAddr,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Opens it.
    pub async fn open(addr: SocketAddr) -> Connection {
        let stream =
            tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                .await
                .expect("connect in time")
                .expect("connect");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Connection { addr, sender }
    }

    /// One call on this connection: the headers and the parsed answer.
    pub async fn call(&mut self, method: &str, params: Value) -> (http::HeaderMap, Value) {
        let req = http::Request::post("/")
            .header("content-type", "application/json")
            .header("host", self.addr.to_string())
            .body(Full::new(Bytes::from(body(method, params))))
            .expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(30), self.sender.send_request(req))
            .await
            .expect("answer within 30 s")
            .expect("response on the same connection");
        let headers = resp.headers().clone();
        let bytes = tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect())
            .await
            .expect("body within 30 s")
            .expect("body")
            .to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
        (headers, v)
    }
}

/// Raw TCP: writes `bytes`, then reads the answer until the peer closes or
/// `within` passes. For malformed HTTP and partial bodies.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// One `GET path`; the status and the body.
pub async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let req = http::Request::get(path)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (status, _, body) = send(addr, req).await;
    (status, body)
}

/// A client WebSocket to a proxy (`tokio_tungstenite::connect_async`).
pub type WsSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends one JSON-RPC message on `ws` and returns the next text message
/// (pings and other frames skipped), within 10 s.
pub async fn ws_ask(ws: &mut WsSocket, body: Value) -> Value {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(body.to_string()))
        .await
        .expect("send");
    ws_next_json(ws).await
}

/// The next text message on `ws` as JSON (pings and other frames
/// skipped), each frame within 10 s.
pub async fn ws_next_json(ws: &mut WsSocket) -> Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer in time")
            .expect("open")
            .expect("a message");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("JSON");
        }
    }
}
