//! The shipped `rpc-proxy` binary started with real config files: routing,
//! whitelisting, caching, rate limits, CORS, secrets from the environment,
//! failover over real anvil nodes, config errors and graceful shutdown.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};
use tests::{
    binary, call, post, post_with, raw_exchange, start_anvil, start_proxy_config,
    start_proxy_config_env, write_config, FaultUpstream,
};

fn body(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_are_routed_to_their_groups() {
    let reads = FaultUpstream::start().await;
    let writes = FaultUpstream::start().await;
    let (_proxy, addr) = start_proxy_config(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
served_by_header = true

[backends.reads]
url = "{}"
[backends.writes]
url = "{}"

[groups.main]
members = ["reads"]
[groups.sequencer]
members = ["writes"]

[routing]
default = "main"
methods = {{ "eth_sendRawTransaction" = "sequencer", "debug_*" = "sequencer" }}
"#,
        reads.url(),
        writes.url()
    ));
    for (method, expected) in [
        ("eth_blockNumber", "reads"),
        ("eth_sendRawTransaction", "writes"),
        ("debug_traceTransaction", "writes"),
        ("eth_sendRawTransactionConditional", "reads"),
    ] {
        let (status, headers, text) = post(addr, body(method, json!([]))).await;
        assert_eq!(status, 200, "{method}: {text}");
        assert_eq!(headers["x-served-by"], expected, "{method}");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            v["result"]["method"], method,
            "the call reached the upstream intact"
        );
    }
    assert_eq!(reads.calls.load(Ordering::SeqCst), 2);
    assert_eq!(writes.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whitelist_refuses_methods_before_any_upstream_call() {
    let upstream = FaultUpstream::start().await;
    let (_proxy, addr) = start_proxy_config(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.node]
url = "{}"
[methods]
allow = ["eth_*", "net_version"]
deny = ["eth_sign*"]
message = "rpc method is not whitelisted"
"#,
        upstream.url()
    ));
    for method in ["admin_addPeer", "eth_signTypedData_v4", "net_peerCount"] {
        let (status, v) = call(addr, method, json!([])).await;
        assert_eq!(status, 403, "{method}");
        assert_eq!(v["error"]["code"], -32601, "{method}");
        assert_eq!(v["error"]["message"], "rpc method is not whitelisted");
    }
    assert_eq!(
        upstream.calls.load(Ordering::SeqCst),
        0,
        "refused calls cost nothing upstream"
    );
    let (status, v) = call(addr, "eth_chainId", json!([])).await;
    assert_eq!(
        (status.as_u16(), &v["result"]["method"]),
        (200, &json!("eth_chainId"))
    );
    let (status, _) = call(addr, "net_version", json!([])).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_never_reach_the_upstream() {
    let upstream = FaultUpstream::start().await;
    let (_proxy, addr) = start_proxy_config(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
cache_header = true
[backends.node]
url = "{}"
[cache]
enabled = true
methods = {{ "eth_gasPrice" = "1h", "eth_chainId" = "never" }}
"#,
        upstream.url()
    ));
    // eth_getBlockByHash is cached forever by the Ethereum rules.
    let hash = format!("0x{}", "ab".repeat(32));
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (status, headers, _) =
            post(addr, body("eth_getBlockByHash", json!([hash, false]))).await;
        assert_eq!(status, 200);
        seen.push(headers["x-cache"].to_str().unwrap_or("").to_owned());
    }
    assert_eq!(seen, ["MISS", "HIT", "HIT", "HIT", "HIT"]);
    assert_eq!(
        upstream.calls.load(Ordering::SeqCst),
        1,
        "four hits, one upstream call"
    );

    // Per-method overrides from the file: a TTL for eth_gasPrice, never for eth_chainId.
    for _ in 0..3 {
        post(addr, body("eth_gasPrice", json!([]))).await;
        let (_, headers, _) = post(addr, body("eth_chainId", json!([]))).await;
        assert_eq!(headers["x-cache"], "BYPASS");
    }
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 1 + 1 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after_and_keys_have_their_own_budget() {
    let upstream = FaultUpstream::start().await;
    let (_proxy, addr) = start_proxy_config_env(
        &format!(
            r#"
[server]
listen = "127.0.0.1:0"
[backends.node]
url = "{}"
[rate_limit]
per_ip = {{ rate = 1, burst = 4 }}
weights = {{ eth_getLogs = 3 }}
[[rate_limit.keys]]
key = "${{RPC_TEST_PARTNER_KEY}}"
rate = 1
burst = 20
"#,
            upstream.url()
        ),
        &[("RPC_TEST_PARTNER_KEY", "k-partner-123")],
    );
    // 4 units: one eth_getLogs (3) and one eth_chainId (1), then nothing.
    let (status, _) = call(addr, "eth_getLogs", json!([{}])).await;
    assert_eq!(status, 200);
    let (status, _) = call(addr, "eth_chainId", json!([])).await;
    assert_eq!(status, 200);
    let (status, headers, text) = post(addr, body("eth_chainId", json!([]))).await;
    assert_eq!(status, 429, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["error"]["code"], -32016);
    let after: u64 = headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=2).contains(&after), "Retry-After {after}");

    // In a batch, each refused call gets its own -32016 and the batch is 200.
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": 2, "method": "eth_chainId"}
    ]);
    let (status, _, text) = post(addr, batch.to_string()).await;
    assert_eq!(status, 200);
    let answers: Vec<Value> = serde_json::from_str(&text).expect("JSON array");
    assert!(
        answers.iter().all(|a| a["error"]["code"] == -32016),
        "{text}"
    );

    // The partner's key (from the environment) has its own budget...
    for _ in 0..10 {
        let (status, _, text) = post_with(
            addr,
            body("eth_chainId", json!([])),
            &[
                ("content-type", "application/json"),
                ("x-api-key", "k-partner-123"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{text}");
    }
    // ...and a made-up key is charged to the (empty) IP budget.
    let (status, _, _) = post_with(
        addr,
        body("eth_chainId", json!([])),
        &[("content-type", "application/json"), ("x-api-key", "guess")],
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(
        upstream.calls.load(Ordering::SeqCst),
        2 + 10,
        "refused calls never went upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_allows_only_listed_origins() {
    let upstream = FaultUpstream::start().await;
    let (_proxy, addr) = start_proxy_config(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[server.cors]
allow_origins = ["https://app.example.org"]
max_age = "10m"
[backends.node]
url = "{}"
"#,
        upstream.url()
    ));
    let preflight = |origin: &str| {
        format!(
            "OPTIONS / HTTP/1.1\r\nhost: {addr}\r\norigin: {origin}\r\naccess-control-request-method: POST\r\n\
access-control-request-headers: content-type\r\nconnection: close\r\n\r\n"
        )
    };
    let ok = raw_exchange(
        addr,
        preflight("https://app.example.org").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    let lower = ok.to_ascii_lowercase();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(
        lower.contains("access-control-allow-origin: https://app.example.org"),
        "{ok}"
    );
    assert!(lower.contains("access-control-max-age: 600"), "{ok}");
    assert!(lower.contains("access-control-allow-methods:"), "{ok}");

    let other = raw_exchange(
        addr,
        preflight("https://evil.example").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        !other
            .to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{other}"
    );
    // A real call from the allowed origin carries the header too.
    let (status, headers, _) = post_with(
        addr,
        body("eth_chainId", json!([])),
        &[
            ("content-type", "application/json"),
            ("origin", "https://app.example.org"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.org"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_the_environment_reach_the_backend_but_not_the_logs() {
    let upstream = FaultUpstream::start().await;
    let secret = "s3cr3t-token-do-not-log";
    let (proxy, addr) = start_proxy_config_env(
        &format!(
            r#"
[server]
listen = "127.0.0.1:0"
[log]
level = "debug"
[backends.paid]
url = "{}/v2/${{RPC_TEST_SECRET}}"
headers = {{ "x-provider-token" = "${{RPC_TEST_SECRET}}" }}
"#,
            upstream.url()
        ),
        &[("RPC_TEST_SECRET", secret)],
    );
    let (status, v) = call(addr, "echo_request", json!([])).await;
    assert_eq!(status, 200);
    assert_eq!(v["result"]["headers"]["x-provider-token"], secret);
    // A failing call is logged at debug level: by backend name, never by URL.
    let (status, _) = call(addr, "fault_garbage", json!([])).await;
    assert!(status.is_server_error(), "{status}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = proxy.output_text();
    assert!(
        logs.contains("paid"),
        "the backend is named in logs:\n{logs}"
    );
    assert!(
        !logs.contains(secret),
        "the secret leaked into the logs:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upstream_process_is_failed_over() {
    let (primary, a) = start_anvil();
    let (_backup, b) = start_anvil();
    let (proxy, addr) = start_proxy_config(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
served_by_header = true
[backends.primary]
url = "http://{a}"
timeout = "2s"
[backends.backup]
url = "http://{b}"
timeout = "2s"
[groups.main]
members = ["primary", "backup"]
out_of_service = "30s"
"#
    ));
    let (status, headers, _) = post(addr, body("eth_chainId", json!([]))).await;
    assert_eq!(
        (status.as_u16(), headers["x-served-by"].to_str().ok()),
        (200, Some("primary"))
    );
    primary.signal("KILL");
    for i in 0..20 {
        let (status, headers, text) = post(addr, body("eth_blockNumber", json!([]))).await;
        assert_eq!(status, 200, "call {i}: {text}");
        assert!(text.contains("\"result\""), "call {i}: {text}");
        assert_eq!(headers["x-served-by"], "backup", "call {i}");
    }
    assert!(
        proxy.output_text().contains("primary"),
        "the log names the failed backend"
    );
}

#[test]
fn config_errors_name_the_file_line_and_key() {
    let cases = [
        (
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_bodyy = 5\n[backends.a]\nurl = \"http://127.0.0.1:1\"\n",
            ":3:",
            "max_bodyy",
        ),
        (
            "[backends.a]\nurl = \"http://127.0.0.1:1\"\n[groups.g]\nmembers = [\"a\", \"b\"]\n",
            ":4:17:",
            "`groups.g.members[1]`: no backend named `b`",
        ),
        (
            "[backends.a]\nurl = \"http://127.0.0.1:1\"\n[server]\nmax_batch = \"many\"\n",
            ":4:13:",
            "`server.max_batch`",
        ),
        (
            "[backends.a]\nurl = \"http://127.0.0.1:1\"\n[redis]\nurl = \"http://127.0.0.1:6379\"\n",
            ":4:7:",
            "`redis.url`",
        ),
        (
            "[backends.a]\nurl = \"http://127.0.0.1:1\"\n[redis]\nurl = \"redis://127.0.0.1:6379\"\n\
             deadline = \"5s\"\n",
            ":5:12:",
            "`redis.deadline`: must be at most 1s",
        ),
        (
            "[backends.a]\nurl = \"http://127.0.0.1:1\"\n[redis]\nurl = \"redis://127.0.0.1:6379\"\n\
             rate_limit_when_down = \"shrug\"\n",
            ":5:24:",
            "`redis.rate_limit_when_down`",
        ),
        (
            "[backends.a]\nurl = \"http://127.0.0.1:1\"\n[redis]\nurl = \"rediss://127.0.0.1:6379\"\n\
             tls_ca_file = \"/nonexistent/ca.pem\"\n",
            ":5:15:",
            "`redis.tls_ca_file`: cannot read `/nonexistent/ca.pem`",
        ),
        (
            "[backends.a]\nurl = \"http://127.0.0.1:1/${RPC_TEST_UNSET_VARIABLE}\"\n",
            ":2:7:",
            "environment variable `RPC_TEST_UNSET_VARIABLE` is not set",
        ),
    ];
    for (toml, place, message) in cases {
        let path = write_config("bad.toml", toml);
        for args in [&["check", "--config"][..], &["--config"][..]] {
            let out = Command::new(binary("rpc-proxy", "rpc-proxy"))
                .args(args)
                .arg(&path)
                .output()
                .expect("run rpc-proxy");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} {toml}: {stderr}");
            let first = stderr.lines().next().unwrap_or("");
            assert!(
                first.contains(&format!("{}{place}", path.display())),
                "{first}"
            );
            assert!(first.contains(message), "{first}");
            assert!(out.stdout.is_empty(), "nothing started");
        }
    }

    // The shipped example is valid once its secrets are in the environment.
    let example = tests::workspace_root().join("examples/proxy/proxy.toml");
    let out = Command::new(binary("rpc-proxy", "rpc-proxy"))
        .args(["check", "--config"])
        .arg(&example)
        .env("PRIMARY_API_KEY", "k")
        .env("PARTNER_API_KEY", "p")
        .output()
        .expect("run rpc-proxy");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(": ok")
            && stdout.contains("main: failover (head-tracked) primary, secondary, local"),
        "{stdout}"
    );
    // `check` says which head rule is in effect.
    assert!(
        stdout.contains(
            "head rule: main: agreed head = highest head reached by 2 of 3 members; \
             not believed: more than 1024 blocks above it"
        ),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_calls_in_flight() {
    let upstream = FaultUpstream::start().await;
    let (mut proxy, addr) = start_proxy_config(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_timeout = "10s"
[backends.node]
url = "{}"
"#,
        upstream.url()
    ));
    let in_flight = tokio::spawn(async move { call(addr, "fault_slow", json!([1500])).await });
    upstream.wait_for_calls(1).await;
    proxy.signal("TERM");
    let (status, v) = in_flight.await.expect("the call task");
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["result"]["method"], "fault_slow",
        "the call in flight got its answer"
    );
    let exit = tokio::task::spawn_blocking(move || {
        let status = proxy.wait_exit(Duration::from_secs(10));
        (status, proxy.output_text())
    })
    .await
    .expect("join");
    assert!(
        exit.0.is_some_and(|s| s.success()),
        "exit {:?}:\n{}",
        exit.0,
        exit.1
    );
    assert!(exit.1.contains("rpc-proxy stopped"), "{}", exit.1);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting connections"
    );
}

#[test]
fn no_arguments_say_how_to_start() {
    let out = Command::new(binary("rpc-proxy", "rpc-proxy"))
        .output()
        .expect("run rpc-proxy");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--demo") && stderr.contains("--config"),
        "{stderr}"
    );
}

#[test]
fn the_demo_runs_its_bounded_load_without_client_errors() {
    let out = Command::new(binary("rpc-proxy", "rpc-proxy"))
        .args([
            "--demo",
            "--calls",
            "1500",
            "--exit",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run rpc-proxy --demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("calls sent           1500"), "{stdout}");
    assert!(stdout.contains("client-visible errors 0"), "{stdout}");
    // The WebSocket subscriber saw heads, none skipped or repeated.
    assert!(
        stdout.contains(" heads, 0 gaps, 0 repeated or backwards")
            && !stdout.contains("newHeads over WebSocket 0 heads"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rpc-proxy listening on http://127.0.0.1:"),
        "{stdout}"
    );
}

#[test]
fn check_never_prints_a_secret_from_a_broken_config() {
    // Every way a secret-bearing line can be wrong; the secret (SECRETnn)
    // must appear in no output, for `check` and for a run.
    let cases = [
        // A URL whose quote is not closed (a TOML parse error on that line).
        "[backends.a]\nurl = \"https://h/v2/SECRET01\n",
        // Not http(s).
        "[backends.a]\nurl = \"ftp://h/v2/SECRET02\"\n",
        // An unclosed ${ in the URL.
        "[backends.a]\nurl = \"https://h/v2/SECRET03/${KEY\"\n",
        // A ${...} that holds no variable name.
        "[backends.a]\nurl = \"https://h/${SECRET04 x}\"\n",
        // A header value that is not valid HTTP.
        "[backends.a]\nurl = \"http://127.0.0.1:1\"\nheaders = { \"Authorization\" = \"Bearer SECRET05\\n\" }\n",
        // A wrong type next to a secret on the same line.
        "[backends.a]\nurl = \"http://127.0.0.1:1\"\nbasic_auth = { user = \"SECRET06\", password = 7 }\n",
        // An unknown key on a URL line's table.
        "[backends.a]\nurl = \"https://h/?apikey=SECRET07\"\nurll = \"https://h/?apikey=SECRET07\"\n",
        // A rate-limit key listed twice.
        "[backends.a]\nurl = \"http://127.0.0.1:1\"\n[[rate_limit.keys]]\nkey = \"SECRET08\"\nrate = 5\n[[rate_limit.keys]]\nkey = \"SECRET08\"\nrate = 5\n",
        // A userinfo URL with a bad port.
        "[backends.a]\nurl = \"https://me:SECRET09@h:99999/\"\n",
    ];
    for (i, toml) in cases.iter().enumerate() {
        let path = write_config("secret.toml", toml);
        for args in [&["check", "--config"][..], &["--config"][..]] {
            let out = Command::new(binary("rpc-proxy", "rpc-proxy"))
                .args(args)
                .arg(&path)
                .output()
                .expect("run rpc-proxy");
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_ne!(out.status.code(), Some(0), "case {i} must fail: {all}");
            assert!(
                !all.contains("SECRET"),
                "case {i} {args:?} echoed a secret:\n{all}"
            );
        }
    }
}

#[test]
fn check_names_every_missing_variable_at_once() {
    let example = tests::workspace_root().join("examples/proxy/proxy.toml");
    let out = Command::new(binary("rpc-proxy", "rpc-proxy"))
        .args(["check", "--config"])
        .arg(&example)
        .env_remove("PRIMARY_API_KEY")
        .env_remove("PARTNER_API_KEY")
        .output()
        .expect("run rpc-proxy");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("environment variables `PRIMARY_API_KEY`, `PARTNER_API_KEY` are not set"),
        "{stderr}"
    );
}
