use std::future::Future;
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::layer::util::Identity;
use tower::{Layer, Service};

use super::{HttpFront, ServerConfig};
use crate::{BoxError, JsonRpcService};

/// Connection numbers, unique within the process.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Serves `service` over HTTP/1.1 and h2c on `listener` until `shutdown`
/// completes, then stops accepting, lets in-flight calls finish for up to
/// [`ServerConfig::shutdown_timeout`] and closes what is left.
///
/// Accept errors (such as running out of file descriptors) are logged and
/// retried after a short pause; they never end the server.
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
    let shutdown_timeout = config.shutdown_timeout;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let front = HttpFront::new(service, config);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    // Latency matters more than packet count for small JSON-RPC bodies.
                    let _ = stream.set_nodelay(true);
                    let connection = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
                    let svc = TowerToHyperService::new(layer.layer(
                        front
                            .clone()
                            .with_remote_addr(addr)
                            .with_connection_id(connection),
                    ));
                    let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight calls");
    if tokio::time::timeout(shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?shutdown_timeout,
            "shutdown deadline passed; closing remaining connections"
        );
    }
}
