//! Large bodies on the shipped path (`serve` in front of an `HttpBackend`,
//! over loopback): the buffers of a large answer — the backend's read, the
//! front's written — are kept and lent again to the next answer, the
//! process keeps no more than its limit, and the answers are the same with
//! nothing kept. Its own test binary: the kept buffers are process-wide.

use std::net::SocketAddr;
use std::time::Duration;

use rpc_core::buffers;
use rpc_core::server::{serve, ServerConfig};
use rpc_core::HttpBackend;
use serde_json::Value;
use tests::{post, FaultUpstream};

/// `serve` on a free port in front of `upstream`.
async fn front(upstream: SocketAddr) -> SocketAddr {
    let backend = HttpBackend::builder("big", format!("http://{upstream}"))
        .build()
        .expect("backend");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(
        listener,
        backend,
        ServerConfig::default(),
        std::future::pending(),
    ));
    addr
}

/// What the process keeps once `want` holds, waiting up to 5 s: a buffer
/// comes back when the last slice of it is dropped, just after its bytes
/// were written to the client.
async fn kept_once(want: impl Fn(usize) -> bool) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = buffers::retained();
        if want(now) || tokio::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A single call for a 300 000-character result and a batch of three
/// 100 000-character ones: the result lengths, checked.
async fn ask(addr: SocketAddr) {
    let (status, _, body) = post(
        addr,
        r#"{"jsonrpc":"2.0","id":7,"method":"fault_huge","params":[300000]}"#,
    )
    .await;
    assert_eq!(status, 200, "{}", &body[..body.len().min(200)]);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["id"], 7);
    assert_eq!(v["result"].as_str().map(str::len), Some(300_000));
    let call = |id: u32| {
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"fault_huge","params":[100000]}}"#)
    };
    let (status, _, body) = post(addr, format!("[{},{},{}]", call(1), call(2), call(3))).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    let answers = v.as_array().expect("a batch answer");
    assert_eq!(answers.len(), 3);
    for (answer, id) in answers.iter().zip(1..) {
        assert_eq!(answer["id"], id);
        assert_eq!(answer["result"].as_str().map(str::len), Some(100_000));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_reuse_kept_buffers_within_the_limit_and_nothing_kept_changes_nothing() {
    let upstream = FaultUpstream::start().await;
    let addr = front(upstream.addr).await;
    buffers::set_retained_limit(buffers::DEFAULT_RETAINED);

    // The first round allocates: the backend's bodies and the front's
    // answers come back to the shelf once written.
    ask(addr).await;
    let first = kept_once(|n| n >= 4 * buffers::MIN_KEPT).await;
    assert!(
        first >= 300_000,
        "the single call's buffers were kept: {first} bytes"
    );
    // Later rounds borrow those same buffers and give them back: what is
    // kept does not grow, as it would if each round allocated anew.
    for _ in 0..3 {
        ask(addr).await;
        let now = kept_once(|n| n == first).await;
        assert_eq!(now, first, "the same buffers were lent again");
    }

    // A lower limit frees what is beyond it at once and holds after.
    buffers::set_retained_limit(400 * 1024);
    assert!(buffers::retained() <= 400 * 1024);
    for _ in 0..2 {
        ask(addr).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(buffers::retained() <= 400 * 1024);
    }

    // Nothing kept: the same answers, and nothing held.
    buffers::set_retained_limit(0);
    assert_eq!(buffers::retained(), 0);
    ask(addr).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(buffers::retained(), 0);
    buffers::set_retained_limit(buffers::DEFAULT_RETAINED);
}
