/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM: the `shutdown` future
/// binaries pass to [`serve`](super::serve). If a signal handler cannot be
/// installed, that signal is simply never awaited.
///
/// ```no_run
/// use rpc_core::server::{serve, shutdown_signal, ServerConfig};
/// use rpc_core::HttpBackend;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = HttpBackend::builder("node", "http://127.0.0.1:8545").build()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8546").await?;
/// serve(listener, backend, ServerConfig::default(), shutdown_signal()).await;
/// # Ok(()) }
/// ```
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
