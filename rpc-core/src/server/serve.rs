use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower::layer::util::Identity;
use tower::{Layer, Service};

use super::conn::{Registry, Slot};
use super::proxy_protocol;
use super::{HttpFront, ServerConfig};
use crate::{BoxError, JsonRpcService};

/// Connection numbers, unique within the process.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Serves `service` over HTTP/1.1 and h2c on `listener` until `shutdown`
/// completes, then drains: new requests are answered `503` with
/// `Retry-After` while the calls in progress finish, for up to
/// [`ServerConfig::shutdown_timeout`]; then it stops accepting and closes
/// what is left.
///
/// Connections are held within the budgets of the [module](super)
/// (a global and a per-address cap, first-bytes and idle deadlines).
/// Accept errors (such as running out of file descriptors) are logged at
/// most every 10 s and retried after a short pause; they never end the
/// server.
///
/// ```no_run
/// use rpc_core::server::{serve, ServerConfig};
/// use rpc_core::HttpBackend;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = HttpBackend::builder("node", "http://127.0.0.1:8545").build()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8546").await?;
/// let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
/// serve(listener, backend, ServerConfig::default(), shutdown).await;
/// # Ok(()) }
/// ```
pub async fn serve<S, F>(listener: TcpListener, service: S, config: ServerConfig, shutdown: F)
where
    S: JsonRpcService,
    F: Future<Output = ()>,
{
    serve_with_layer(listener, service, config, Identity::new(), shutdown).await;
}

/// Like [`serve`], with an HTTP-level `layer` around the [`HttpFront`] of
/// each connection: CORS, compression, request ids or any other
/// `tower-http` middleware that speaks `http::Request` / `http::Response`.
///
/// ```no_run
/// use rpc_core::server::{serve_with_layer, ServerConfig};
/// use rpc_core::HttpBackend;
/// use tower::layer::util::Identity;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = HttpBackend::builder("node", "http://127.0.0.1:8545").build()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8546").await?;
/// let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
/// // Put e.g. `tower_http::cors::CorsLayer::permissive()` here.
/// let http_layer = Identity::new();
/// serve_with_layer(listener, backend, ServerConfig::default(), http_layer, shutdown).await;
/// # Ok(()) }
/// ```
pub async fn serve_with_layer<S, L, B, F>(
    listener: TcpListener,
    service: S,
    config: ServerConfig,
    layer: L,
    shutdown: F,
) where
    S: JsonRpcService,
    L: Layer<HttpFront<S>>,
    L::Service:
        Service<http::Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
    <L::Service as Service<http::Request<Incoming>>>::Future: Send + 'static,
    <L::Service as Service<http::Request<Incoming>>>::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future<Output = ()>,
{
    serve_front(listener, HttpFront::new(service, config), layer, shutdown).await;
}

/// Like [`serve_with_layer`], serving a front made beforehand: a
/// [`HttpFront::batched`] one, whose service takes a client batch whole.
///
/// ```no_run
/// use rpc_core::server::{serve_front, HttpFront, ServerConfig};
/// use rpc_core::{HttpBackend, SharedJsonRpcService};
/// use tower::layer::util::Identity;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = HttpBackend::builder("node", "http://127.0.0.1:8545").build()?;
/// let front = HttpFront::batched(SharedJsonRpcService::batched(backend), ServerConfig::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8546").await?;
/// let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
/// serve_front(listener, front, Identity::new(), shutdown).await;
/// # Ok(()) }
/// ```
pub async fn serve_front<S, L, B, F>(
    listener: TcpListener,
    front: HttpFront<S>,
    layer: L,
    shutdown: F,
) where
    S: JsonRpcService,
    L: Layer<HttpFront<S>>,
    L::Service:
        Service<http::Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
    <L::Service as Service<http::Request<Incoming>>>::Future: Send + 'static,
    <L::Service as Service<http::Request<Incoming>>>::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future<Output = ()>,
{
    let config = front.config.clone();
    let shutdown_timeout = config.shutdown_timeout;
    let idle_timeout = config.idle_timeout;
    let first_bytes = config.header_read_timeout;
    let proxy_protocol = config.proxy_protocol;
    let trusted = config.trusted_proxies.clone();
    let registry = Registry::new(
        config.effective_max_connections(),
        config.max_connections_per_ip,
        (*config.trusted_proxies).clone(),
    );
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.h2_max_concurrent_streams)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    let draining = Arc::new(AtomicBool::new(false));
    let front = front.with_drain(draining.clone());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut reap = tokio::time::interval(Duration::from_secs(1));
    reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut accept_log = LogEvery::new(Duration::from_secs(10));

    let accept = |stream: TcpStream, addr: SocketAddr| {
        let connection = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
        let Ok(slot) = registry.admit(connection, addr.ip()) else {
            // Refused: closing the socket is the cheapest answer.
            drop(stream);
            return;
        };
        // Latency matters more than packet count for small JSON-RPC bodies.
        let _ = stream.set_nodelay(true);
        let proxied = (proxy_protocol && trusted.contains(addr.ip()))
            .then(|| Arc::new(std::sync::OnceLock::new()));
        let mut conn_front = front
            .clone()
            .with_remote_addr(addr)
            .with_connection_id(connection)
            .with_activity(slot.conn.clone(), registry.clone());
        if let Some(cell) = &proxied {
            conn_front = conn_front.with_proxied(cell.clone());
        }
        let svc = TowerToHyperService::new(layer.layer(conn_front));
        let builder = builder.clone();
        tokio::spawn(async move {
            let timing = (first_bytes, shutdown_timeout);
            run_connection(&builder, stream, svc, slot, proxied, timing).await;
        });
    };

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => accept(stream, addr),
                Err(e) => {
                    if let Some(n) = accept_log.tick() {
                        tracing::warn!(error = %e, failures = n, "accept failed; retrying shortly (logged at most every 10 s)");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = reap.tick() => registry.reap(idle_timeout, first_bytes),
            () = &mut shutdown => break,
        }
    }

    // Drain: new requests (new connections included) are answered 503 with
    // Retry-After while the calls in progress finish.
    draining.store(true, Ordering::Release);
    tracing::info!("shutting down: draining in-flight calls");
    let deadline = tokio::time::Instant::now() + shutdown_timeout;
    let mut poll = tokio::time::interval(Duration::from_millis(25));
    let drained = loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, addr)) = accepted {
                    accept(stream, addr);
                }
            }
            _ = poll.tick() => {
                if registry.busy() == 0 {
                    break true;
                }
            }
            () = tokio::time::sleep_until(deadline) => break false,
        }
    };
    drop(listener);
    if !drained {
        tracing::warn!(
            ?shutdown_timeout,
            "shutdown deadline passed; closing remaining connections"
        );
    }
    registry.close_all();
    // Connections close once their last answer is written (a moment).
    let closing = tokio::time::Instant::now() + Duration::from_millis(500);
    while registry.open() > 0 && tokio::time::Instant::now() < closing {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One client connection: waits for its first bytes (bounded), serves it,
/// and closes it gracefully when the registry asks (room, idle, drain).
async fn run_connection<S, B>(
    builder: &auto::Builder<TokioExecutor>,
    mut stream: TcpStream,
    svc: TowerToHyperService<S>,
    slot: Slot,
    proxied: Option<Arc<std::sync::OnceLock<SocketAddr>>>,
    (first_bytes, shutdown_timeout): (Duration, Duration),
) where
    S: Service<http::Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    // A trusted balancer speaking the PROXY protocol names the client first.
    if let Some(cell) = proxied {
        let header = tokio::select! {
            h = tokio::time::timeout(first_bytes, proxy_protocol::read_header(&mut stream)) => h,
            () = slot.conn.close.notified() => return,
        };
        match header {
            Ok(Ok(header)) => {
                if let Some(client) = header.source {
                    let _ = cell.set(client);
                }
            }
            Ok(Err(why)) => {
                tracing::debug!(?why, "no valid PROXY protocol header: closing");
                return;
            }
            Err(_) => return,
        }
    }
    // The first bytes, before the HTTP/1 vs h2 sniff (which has no deadline
    // of its own): a connection that says nothing is closed.
    let mut byte = [0u8; 1];
    tokio::select! {
        peeked = tokio::time::timeout(first_bytes, stream.peek(&mut byte)) => match peeked {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        },
        () = slot.conn.close.notified() => return,
    }
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            // Upgraded (a WebSocket session holds it busy): it stays
            // counted until the session ends.
            slot.conn.until_idle().await;
            return;
        }
        () = slot.conn.close.notified() => conn.as_mut().graceful_shutdown(),
    }
    // Asked to close: the requests in progress get their answers first.
    if let Ok(Err(e)) = tokio::time::timeout(shutdown_timeout, conn.as_mut()).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
    drop(slot);
}

/// A log line at most every `every`, with how many events it stands for.
struct LogEvery {
    every: Duration,
    last: Option<tokio::time::Instant>,
    count: u64,
}

impl LogEvery {
    fn new(every: Duration) -> Self {
        LogEvery {
            every,
            last: None,
            count: 0,
        }
    }

    /// Counts an event; `Some(count)` when it is time to log.
    fn tick(&mut self) -> Option<u64> {
        self.count += 1;
        let now = tokio::time::Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= self.every)
        {
            self.last = Some(now);
            let n = self.count;
            self.count = 0;
            return Some(n);
        }
        None
    }
}
