//! The connections of one [`HttpBackend`](super::HttpBackend): HTTP/1.1
//! connections to its one host, kept idle between calls (most recently used
//! first), or one shared HTTP/2 connection when the server picks `h2` by
//! ALPN; made with hyper's connection API (`hyper::client::conn`).
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
//! closing an idle keep-alive connection is routine), idle connections close
//! after the idle timeout, at most `max_idle` are kept. Added: the whole
//! connect (TCP, TLS, HTTP/2 handshake) is bounded by the connect timeout.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::BoxError;

type Body = Full<Bytes>;

/// Why no answer came back from [`Pool::send`].
#[derive(Debug)]
pub(super) enum SendError {
    /// The request was not sent: no connection could be made.
    Connect(BoxError),
    /// The request may have been sent: the connection failed after.
    Closed(hyper::Error),
}

/// The connections of one backend.
pub(super) struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// Where connections go (scheme, host, port).
    uri: http::Uri,
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
    tx: http1::SendRequest<Body>,
    since: Instant,
}

enum Conn {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// An HTTP/1.1 connection lent to one exchange. [`Lease::release`] it once
/// the answer's body is read to the end; dropped unreleased (a body not read,
/// a timeout), the connection closes.
pub(super) struct Lease<'a> {
    pool: &'a Pool,
    tx: Option<http1::SendRequest<Body>>,
}

impl Lease<'_> {
    /// The exchange is over: the connection is idle again.
    pub(super) fn release(mut self) {
        if let Some(tx) = self.tx.take() {
            self.pool.put(tx);
        }
    }
}

impl Pool {
    pub(super) fn new(
        connector: HttpsConnector<HttpConnector>,
        uri: http::Uri,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| Pool {
            connector,
            uri,
            connect_timeout,
            idle_timeout,
            max_idle,
            state: Mutex::new(State::default()),
            this: this.clone(),
        })
    }

    /// Sends `req` on an idle HTTP/1.1 connection or a new one, or on the
    /// HTTP/2 connection; `prepare` fits it to the kind of connection it
    /// goes on (`true`: HTTP/2) — target form and headers. A request that
    /// was not written (its pooled connection had closed) goes out on the
    /// next connection.
    // An `async move` block, not an `async fn`: an `async fn` keeps its
    // arguments twice in its future, which is boxed per call.
    #[allow(clippy::manual_async_fn)]
    pub(super) fn send<'a>(
        &'a self,
        mut req: http::Request<Body>,
        prepare: impl Fn(&mut http::Request<Body>, bool) + Send + 'a,
    ) -> impl std::future::Future<Output = Result<(http::Response<Incoming>, Lease<'a>), SendError>>
           + Send
           + 'a {
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
                let result = match conn {
                    Conn::H1(mut tx) => {
                        if tx.ready().await.is_err() {
                            if fresh {
                                return Err(SendError::Connect("the new connection closed".into()));
                            }
                            continue;
                        }
                        prepare(&mut req, false);
                        match tx.try_send_request(req).await {
                            Ok(resp) => {
                                let lease = Lease {
                                    pool: self,
                                    tx: Some(tx),
                                };
                                return Ok((resp, lease));
                            }
                            Err(e) => e,
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
                        prepare(&mut req, true);
                        match tx.try_send_request(req).await {
                            Ok(resp) => {
                                return Ok((
                                    resp,
                                    Lease {
                                        pool: self,
                                        tx: None,
                                    },
                                ))
                            }
                            Err(e) => {
                                self.forget_h2();
                                e
                            }
                        }
                    }
                };
                let mut e = result;
                match e.take_message() {
                    // Not written: on the next connection.
                    Some(unsent) if !fresh => req = unsent,
                    Some(_) => return Err(SendError::Connect(e.into_error().into())),
                    None => return Err(SendError::Closed(e.into_error())),
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn checkout(&self) -> Option<Conn> {
        let mut state = self.lock();
        if let Some(tx) = &state.h2 {
            if !tx.is_closed() {
                return Some(Conn::H2(tx.clone()));
            }
            state.h2 = None;
        }
        while let Some(idle) = state.idle.pop() {
            if !idle.tx.is_closed() && idle.since.elapsed() < self.idle_timeout {
                return Some(Conn::H1(idle.tx));
            }
        }
        None
    }

    fn put(&self, tx: http1::SendRequest<Body>) {
        if tx.is_closed() {
            return;
        }
        let mut state = self.lock();
        if state.idle.len() < self.max_idle {
            state.idle.push(Idle {
                tx,
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
            let io = self.connector.clone().oneshot(self.uri.clone()).await?;
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
                let (tx, conn) = http1::Builder::new().handshake(io).await?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "backend connection ended");
                    }
                });
                Ok(Conn::H1(tx))
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
                state
                    .idle
                    .retain(|i| !i.tx.is_closed() && i.since.elapsed() < timeout);
            }
        });
    }
}
