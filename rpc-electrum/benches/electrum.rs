//! One connection to a local in-process Electrum stub that answers at once
//! (ElectrumX itself delays small answers): sequential per-call cost and
//! pipelined throughput. Run: `cargo bench -p rpc-electrum --bench electrum`.

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rpc_core::{Id, RawJson, Request};
use rpc_electrum::ElectrumBackend;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Answers every line at once with `{"id":..,"result":"0"}` (cheap: the id is
/// copied from the request text).
async fn stub() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                let mut out = Vec::with_capacity(64 * 1024);
                while let Ok(Some(line)) = lines.next_line().await {
                    let id = line
                        .split("\"id\":")
                        .nth(1)
                        .and_then(|r| r.split([',', '}']).next())
                        .unwrap_or("null");
                    if line.contains("server.version") {
                        out.extend_from_slice(format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":[\"stub\",\"1.4\"]}}\n").as_bytes());
                    } else {
                        out.extend_from_slice(
                            format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":\"0\"}}\n")
                                .as_bytes(),
                        );
                    }
                    // Flush when nothing more is buffered, so pipelined
                    // requests get batched answers.
                    if lines.get_ref().buffer().is_empty() {
                        if w.write_all(&out).await.is_err() {
                            return;
                        }
                        out.clear();
                    }
                }
            });
        }
    });
    format!("tcp://{addr}")
}

fn calls(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let url = rt.block_on(stub());
    let backend = rt.block_on(async {
        let b = ElectrumBackend::builder("stub", &url)
            .build()
            .expect("backend");
        let req = Request::new("server.ping").with_id(Id::from(0u64));
        for _ in 0..100 {
            if b.clone().oneshot(req.clone()).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        b
    });
    let req = Request::new("blockchain.scripthash.get_balance")
        .with_id(Id::from(1u64))
        .with_params(
            RawJson::from_static(
                r#"["3d4d2ea7c2eb16116423852a609a7dd47130c2fa9f099c1ae90610533f768ba8"]"#,
            )
            .expect("json"),
        );

    let mut g = c.benchmark_group("electrum");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sequential_call", |b| {
        b.iter(|| {
            rt.block_on(backend.clone().oneshot(req.clone()))
                .expect("answer")
        })
    });
    const PIPELINE: u64 = 256;
    g.throughput(Throughput::Elements(PIPELINE));
    g.bench_function("pipelined_256_calls", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let calls: Vec<_> = (0..PIPELINE)
                        .map(|_| tokio::spawn(backend.clone().oneshot(req.clone())))
                        .collect();
                    for c in calls {
                        c.await.expect("task").expect("answer");
                    }
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
