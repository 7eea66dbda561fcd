//! The `rpc-proxy` process itself: arguments, the printed address, clean
//! shutdown on SIGINT/SIGTERM with in-flight calls drained.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use tests::{binary, call, start_proxy, FaultUpstream};

#[test]
fn bad_arguments_exit_non_zero_with_one_line() {
    for args in [
        &["--upstream"][..],
        &["--upstream", "ftp://example/key123"][..],
        &[
            "--upstream",
            "http://127.0.0.1:1",
            "--listen",
            "not-an-address",
        ][..],
        &["--upstream", "http://127.0.0.1:1", "--frobnicate"][..],
        &["--upstream", "http://127.0.0.1:1", "--allow", "eth_*_bad"][..],
    ] {
        let out = Command::new(binary("rpc-proxy", "rpc-proxy"))
            .args(args)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(stderr.starts_with("rpc-proxy: "), "{stderr}");
        assert!(
            !stderr.contains("key123"),
            "the URL is never printed: {stderr}"
        );
    }
    let out = Command::new(binary("rpc-proxy", "rpc-proxy"))
        .arg("--help")
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--upstream <[NAME=]URL>"));
}

#[test]
fn a_busy_port_is_a_one_line_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = Command::new(binary("rpc-proxy", "rpc-proxy"))
        .args(["--upstream", "http://127.0.0.1:1", "--listen", &addr])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot listen on") && stderr.trim_end().lines().count() == 1,
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_calls_then_exits_zero() {
    for signal in ["TERM", "INT"] {
        let upstream = FaultUpstream::start().await;
        let (mut proxy, addr) =
            start_proxy(&["--upstream", &upstream.url(), "--shutdown-timeout", "10"]);
        // A call that takes 1.5 s upstream is in flight when the signal arrives.
        let slow = tokio::spawn(async move { call(addr, "fault_slow", json!([1500])).await });
        upstream.wait_for_calls(1).await;
        proxy.signal(signal);
        // While it drains, a new request (new connection) is told to go
        // elsewhere, not refused at the socket.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (s, headers, text) =
            tests::post(addr, r#"{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}"#).await;
        assert_eq!(s.as_u16(), 503, "{signal}: {text}");
        assert_eq!(headers["retry-after"], "1", "{signal}");
        assert!(
            text.contains("-32011") && text.contains("shutting down"),
            "{text}"
        );
        let (status, body) = slow.await.expect("task");
        assert_eq!(
            (status.as_u16(), body["result"]["method"].as_str()),
            (200, Some("fault_slow")),
            "{signal}"
        );
        let exit = tokio::task::spawn_blocking(move || {
            let status = proxy.wait_exit(Duration::from_secs(10));
            (status, proxy.output_text())
        })
        .await
        .expect("join");
        assert_eq!(
            exit.0.and_then(|s| s.code()),
            Some(0),
            "{signal}: {}",
            exit.1
        );
        assert!(exit.1.contains("rpc-proxy stopped"), "{}", exit.1);
        // And the port is closed: new connections are refused.
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_deadline_bounds_a_stuck_call() {
    let upstream = FaultUpstream::start().await;
    let (mut proxy, addr) = start_proxy(&[
        "--upstream",
        &upstream.url(),
        "--timeout",
        "60",
        "--shutdown-timeout",
        "1",
    ]);
    let stuck = tokio::spawn(async move {
        tests::post(
            addr,
            r#"{"jsonrpc":"2.0","id":1,"method":"fault_slow","params":[30000]}"#,
        )
        .await
    });
    upstream.wait_for_calls(1).await;
    proxy.signal("TERM");
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || proxy.wait_exit(Duration::from_secs(10)))
        .await
        .expect("join");
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exited at the shutdown deadline, not after the call"
    );
    stuck.abort();
}
