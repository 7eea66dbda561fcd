//! The connections of one [`HttpBackend`](super::HttpBackend): HTTP/1.1
//! connections to its one host, kept idle between calls (most recently used
//! first) and driven by the call that holds one ([`h1`](super::h1)), or one
//! shared HTTP/2 connection when the server picks `h2` by ALPN (hyper's
//! `client::conn::http2`).
//!
//! Why not hyper-util's pooled `Client`: it serves any number of hosts, so
//! each call does a checkout keyed by scheme and authority (a map lookup
//! under a lock), URI and `Host` work, a boxed future, connection-info
//! extensions, and a spawned task when a connection goes back before it is
//! ready — about 10 000 instructions per call on the forwarding benchmark
//! (`bench/cost.sh`, BENCHMARKS.md). A backend talks to one host it knows in
//! advance: the request head is prepared once, a checkout is a `Vec::pop`
//! under an uncontended lock.
//!
//! Behaviours kept from the pooled client: a call that was not written
//! because its pooled connection had closed goes out on another (the server
//! closing an idle keep-alive connection is routine; a pooled connection is
//! also checked, without waiting, for a close before it is handed out), idle
//! connections close after the idle timeout, at most `max_idle` are kept.
//! Added: the whole connect (TCP, TLS, HTTP/2 handshake) is bounded by the
//! connect timeout.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_rustls::HttpsConnector;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;
use tower::ServiceExt;

use super::h1;
use crate::{BoxError, TraceContext};

type Body = Full<Bytes>;

/// Why no answer came back from [`Pool::send`].
#[derive(Debug)]
pub(super) enum SendError {
    /// The request was not sent: no connection could be made.
    Connect(BoxError),
    /// The request may have been sent: the connection failed after.
    Closed(BoxError),
}

/// The stream of an HTTP/1.1 connection (TCP, or TLS over it).
type Io = TokioIo<MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>>;

/// An HTTP/1.1 connection: boxed, so a checkout moves a pointer, not the
/// TLS state.
type H1 = Box<h1::Conn<Io>>;

/// What every request of a backend says besides its body, prepared once.
pub(super) struct Target {
    /// The absolute URI (HTTP/2 requests).
    pub(super) uri: http::Uri,
    /// The static header fields (HTTP/2 requests).
    pub(super) headers: http::HeaderMap,
    /// `POST <path> HTTP/1.1`, `Host` and the static fields, each line
    /// ended (HTTP/1.1 requests; `Content-Length` and the empty line come
    /// per request).
    pub(super) h1_head: Box<[u8]>,
}

impl Target {
    /// `uri` without userinfo. HTTP/1.1 requests take `Host` from it (the
    /// authority, as the pooled client wrote it) and their path and query
    /// (origin form); the framing fields are written per request, so
    /// `headers`' own `Host`, `Content-Length` and `Transfer-Encoding` are
    /// not sent on HTTP/1.1. Field values cannot hold CR or LF
    /// (`HeaderValue` refuses them), nor the URI a space.
    pub(super) fn new(uri: http::Uri, headers: http::HeaderMap) -> Self {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut head = Vec::with_capacity(64);
        head.extend_from_slice(b"POST ");
        head.extend_from_slice(path.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        if let Some(authority) = uri.authority() {
            head.extend_from_slice(b"host: ");
            head.extend_from_slice(authority.as_str().as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        for (name, value) in &headers {
            if name != HOST && name != CONTENT_LENGTH && name != TRANSFER_ENCODING {
                field(&mut head, name.as_str(), value.as_bytes());
            }
        }
        Target {
            uri,
            headers,
            h1_head: head.into(),
        }
    }
}

fn field(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// The connections of one backend.
pub(super) struct Pool {
    connector: HttpsConnector<HttpConnector>,
    target: Target,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    state: Mutex<State>,
    /// The pool itself, for the idle sweeper (which must not keep it alive).
    this: Weak<Pool>,
}

#[derive(Default)]
struct State {
    /// Idle HTTP/1.1 connections, the most recently used last.
    idle: Vec<Idle>,
    /// The HTTP/2 connection, when the server speaks it: shared by all calls.
    h2: Option<http2::SendRequest<Body>>,
    sweeping: bool,
}

struct Idle {
    conn: H1,
    since: Instant,
}

enum Conn {
    H1(H1),
    H2(http2::SendRequest<Body>),
}

/// An answer whose head is read: its body is read next.
pub(super) enum Answer<'a> {
    /// On an HTTP/1.1 connection, lent to this exchange.
    H1 {
        head: h1::Head,
        lease: Lease<'a>,
    },
    H2(http::Response<Incoming>),
}

/// An HTTP/1.1 connection lent to one exchange. [`Lease::release`] it once
/// the answer's body is read to the end; dropped unreleased (a body not read,
/// a timeout), the connection closes.
pub(super) struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<H1>,
}

impl Lease<'_> {
    /// The connection, to read the answer's body.
    pub(super) fn conn(&mut self) -> &mut h1::Conn<Io> {
        self.conn
            .as_mut()
            .expect("a lease holds its connection until released")
    }

    /// The exchange is over: the connection is idle again if it can take
    /// another.
    pub(super) fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.put(conn);
        }
    }
}

impl Pool {
    pub(super) fn new(
        connector: HttpsConnector<HttpConnector>,
        target: Target,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| Pool {
            connector,
            target,
            connect_timeout,
            idle_timeout,
            max_idle,
            state: Mutex::new(State::default()),
            this: this.clone(),
        })
    }

    /// What every request says.
    #[cfg(test)]
    pub(super) fn target(&self) -> &Target {
        &self.target
    }

    /// POSTs `body` on an idle HTTP/1.1 connection or a new one, or on the
    /// HTTP/2 connection, with the trace context's fields when there is
    /// one; the answer's head. A request that was not written (its pooled
    /// connection had closed) goes out on the next connection.
    // An `async move` block, not an `async fn`: an `async fn` keeps its
    // arguments twice in its future, which is boxed per call.
    #[allow(clippy::manual_async_fn)]
    pub(super) fn send<'a>(
        &'a self,
        mut body: Vec<u8>,
        trace: Option<&'a TraceContext>,
    ) -> impl std::future::Future<Output = Result<Answer<'a>, SendError>> + Send + 'a {
        async move {
            // Bounded: each turn drops a pooled connection; a new one ends it.
            loop {
                let (conn, fresh) = match self.checkout() {
                    Some(conn) => (conn, false),
                    // Boxed: a connect's state (TCP, TLS, handshake) is large
                    // and rare; inline, every call's future would carry it.
                    None => (
                        Box::pin(self.connect()).await.map_err(SendError::Connect)?,
                        true,
                    ),
                };
                match conn {
                    Conn::H1(mut conn) => {
                        let sent = conn
                            .send(
                                |head| {
                                    head.extend_from_slice(&self.target.h1_head);
                                    if let Some(trace) = trace {
                                        field(head, "traceparent", trace.traceparent.as_bytes());
                                        if let Some(state) = &trace.tracestate {
                                            field(head, "tracestate", state.as_bytes());
                                        }
                                    }
                                    head.extend_from_slice(b"content-length: ");
                                    head.extend_from_slice(
                                        itoa::Buffer::new().format(body.len()).as_bytes(),
                                    );
                                    head.extend_from_slice(b"\r\n\r\n");
                                },
                                &body,
                            )
                            .await;
                        match sent {
                            Ok(head) => {
                                let lease = Lease {
                                    pool: self,
                                    conn: Some(conn),
                                };
                                return Ok(Answer::H1 { head, lease });
                            }
                            // Not written: on the next connection.
                            Err(h1::SendError::NotWritten(_)) if !fresh => continue,
                            Err(h1::SendError::NotWritten(e)) => {
                                return Err(SendError::Connect(e.into()))
                            }
                            Err(h1::SendError::Failed(e)) => {
                                return Err(SendError::Closed(e.into()))
                            }
                        }
                    }
                    Conn::H2(mut tx) => {
                        if tx.ready().await.is_err() {
                            self.forget_h2();
                            if fresh {
                                return Err(SendError::Connect("the new connection closed".into()));
                            }
                            continue;
                        }
                        let bytes = Bytes::from(std::mem::take(&mut body));
                        let mut req = http::Request::new(Full::new(bytes.clone()));
                        *req.method_mut() = http::Method::POST;
                        *req.uri_mut() = self.target.uri.clone();
                        *req.headers_mut() = self.target.headers.clone();
                        if let Some(trace) = trace {
                            let headers = req.headers_mut();
                            headers.insert("traceparent", trace.traceparent.clone());
                            if let Some(state) = &trace.tracestate {
                                headers.insert("tracestate", state.clone());
                            }
                        }
                        match tx.try_send_request(req).await {
                            Ok(resp) => return Ok(Answer::H2(resp)),
                            Err(mut e) => {
                                self.forget_h2();
                                match e.take_message() {
                                    // Not written: on the next connection.
                                    Some(unsent) if !fresh => {
                                        drop(unsent);
                                        body = Vec::from(bytes);
                                    }
                                    Some(_) => {
                                        return Err(SendError::Connect(e.into_error().into()))
                                    }
                                    None => return Err(SendError::Closed(e.into_error().into())),
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn checkout(&self) -> Option<Conn> {
        loop {
            let mut idle = {
                let mut state = self.lock();
                if let Some(tx) = &state.h2 {
                    if !tx.is_closed() {
                        return Some(Conn::H2(tx.clone()));
                    }
                    state.h2 = None;
                }
                state.idle.pop()?
            };
            // Checked outside the lock (a read that does not wait, but a
            // system call); a connection that fails is dropped (closed).
            if idle.since.elapsed() < self.idle_timeout && idle.conn.is_open() {
                return Some(Conn::H1(idle.conn));
            }
        }
    }

    fn put(&self, conn: H1) {
        if !conn.reusable() {
            return;
        }
        let mut state = self.lock();
        if state.idle.len() < self.max_idle {
            state.idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Stops handing out the HTTP/2 connection: a call on it failed (the
    /// next call makes a new one). Unconditional, so that a connection that
    /// keeps refusing cannot keep `send` going round.
    fn forget_h2(&self) {
        self.lock().h2 = None;
    }

    /// A new connection: TCP, TLS where `https`, then HTTP/2 if the server
    /// chose it by ALPN, else HTTP/1.1; all within the connect timeout.
    async fn connect(&self) -> Result<Conn, BoxError> {
        let connect = async {
            let io = self
                .connector
                .clone()
                .oneshot(self.target.uri.clone())
                .await?;
            if io.connected().is_negotiated_h2() {
                let (tx, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(io)
                    .await?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "HTTP/2 backend connection ended");
                    }
                });
                self.lock().h2 = Some(tx.clone());
                Ok::<_, BoxError>(Conn::H2(tx))
            } else {
                Ok(Conn::H1(Box::new(h1::Conn::new(TokioIo::new(io)))))
            }
        };
        let conn = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(conn) => conn?,
            Err(_) => {
                return Err(format!(
                    "connecting took longer than {:?} (TCP, TLS and handshake)",
                    self.connect_timeout
                )
                .into())
            }
        };
        self.start_sweeping();
        Ok(conn)
    }

    /// Closes idle connections past the idle timeout, from a task that
    /// ends with the pool.
    fn start_sweeping(&self) {
        {
            let mut state = self.lock();
            if state.sweeping {
                return;
            }
            state.sweeping = true;
        }
        let this = self.this.clone();
        let every = (self.idle_timeout / 2).max(Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(pool) = this.upgrade() else { return };
                let mut state = pool.lock();
                let timeout = pool.idle_timeout;
                state.idle.retain(|i| i.since.elapsed() < timeout);
            }
        });
    }
}
