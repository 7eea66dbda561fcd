//! The Prometheus endpoint: `GET /metrics` on its own listener.

use std::net::SocketAddr;
use std::time::Duration;

/// Installs the Prometheus recorder and serves `GET /metrics` on `addr`;
/// returns the bound address.
pub async fn start_metrics(addr: SocketAddr) -> Result<SocketAddr, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    // Histograms (not summaries): buckets for latencies and batch sizes.
    let seconds = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let sizes = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full("rpc_batch_size".into()), &sizes))
        .map_err(|e| format!("metrics: {e}"))?
        .install_recorder()
        .map_err(|e| format!("metrics: {e}"))?;
    rpc_metrics::describe();
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
