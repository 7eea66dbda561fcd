//! The Prometheus endpoint: `GET /metrics` on its own listener.
//!
//! Kept here rather than `metrics-exporter-prometheus`'s `http-listener`:
//! that listener cannot report the port it bound (scripts and tests listen
//! on port 0 and read the printed address) and sets no header or connection
//! deadlines.

use std::net::SocketAddr;
use std::time::Duration;

/// Installs the Prometheus recorder and serves `GET /metrics` on `addr`;
/// returns the bound address.
pub async fn start_metrics(addr: SocketAddr) -> Result<SocketAddr, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    // Histograms (not summaries): buckets for latencies and batch sizes.
    use rpc_metrics::buckets;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), buckets::SECONDS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Suffix("batch_size".into()), buckets::BATCH_SIZE)
        })
        .map_err(|e| format!("metrics: {e}"))?
        .install_recorder()
        .map_err(|e| format!("metrics: {e}"))?;
    rpc_metrics::describe();
    metrics::describe_gauge!(
        crate::stack::CONFIG_GENERATION,
        "Configuration generation serving new calls (0: the one the process started with)"
    );
    metrics::describe_counter!(
        crate::stack::CONFIG_RELOADS,
        "Configuration reloads (SIGHUP) by outcome: applied, invalid, failed"
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("rpc-proxy metrics on http://{local}/metrics");
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let handle = handle.clone();
                        async move {
                            let (status, body) = if req.uri().path() != "/metrics" {
                                (
                                    http::StatusCode::NOT_FOUND,
                                    "not found: try /metrics\n".to_owned(),
                                )
                            } else if req.method() != http::Method::GET {
                                (http::StatusCode::METHOD_NOT_ALLOWED, "use GET\n".to_owned())
                            } else {
                                (http::StatusCode::OK, handle.render())
                            };
                            let mut resp = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(body),
                            ));
                            *resp.status_mut() = status;
                            resp.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("text/plain; version=0.0.4"),
                            );
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                let conn = hyper::server::conn::http1::Builder::new()
                    .header_read_timeout(Duration::from_secs(10))
                    .timer(hyper_util::rt::TokioTimer::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                // A scrape is small; a connection that lingers is cut.
                let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
            });
        }
    });
    Ok(local)
}
