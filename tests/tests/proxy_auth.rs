//! Client keys on the shipped binary (`[auth]`): keys in a header, in the
//! path and in a file of hashed keys; no key or a wrong one gets 401 with a
//! JSON-RPC error; per-key method lists and groups; a global per-method
//! limit; keys added by a reload; and no secret in logs, metrics or errors.

use std::time::Duration;

use serde_json::{json, Value};
use sha2::Digest;
use tests::{body, post_to, scrape, start_anvil, start_proxy_file, write_config, ws_ask};

const READER_KEY: &str = "rk-7f3c0e6a-reader-secret";
const VIP_KEY: &str = "vk-91d2b4c8-vip-secret";
const FILED_KEY: &str = "fk-5a6b7c8d-filed-secret";
const LATE_KEY: &str = "lk-0e1f2a3b-added-on-reload";

fn sha256(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

fn config(a: &str, b: &str, keys_file: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
served_by_header = true

[log]
level = "debug"

[metrics]
listen = "127.0.0.1:0"

[backends.a]
url = "http://{a}"

[backends.b]
url = "http://{b}"

[groups.main]
members = ["a"]

[groups.premium]
members = ["b"]

[routing]
default = "main"

[rate_limit.methods]
eth_getBalance = {{ rate = 1, burst = 2 }}

[auth]
path_prefix = "/v1/"
keys_file = "{keys_file}"

[[auth.keys]]
id = "reader"
key = "${{READER_KEY}}"
methods = ["eth_chainId", "eth_blockNumber"]

[[auth.keys]]
id = "vip"
sha256 = "{vip}"
group = "premium"
rate = 1000

[[auth.keys]]
id = "filed"
methods = ["eth_*"]
"#,
        vip = sha256(VIP_KEY)
    )
}

/// A call: the HTTP status, who served it, the answer.
async fn call(
    addr: std::net::SocketAddr,
    path: &str,
    key: Option<&str>,
    payload: String,
) -> (u16, String, Value) {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(k) = key {
        headers.push(("x-api-key", k));
    }
    let (status, h, text) = post_to(addr, path, payload, &headers).await;
    let by = h
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status.as_u16(), by, v)
}

fn chain_id() -> String {
    body("eth_chainId", json!([]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_header_path_and_file_and_what_each_may_do() {
    let (_n1, a) = start_anvil();
    let (_n2, b) = start_anvil();
    let keys_file = write_config(
        "keys",
        &format!("# id sha256\nfiled {}\n", sha256(FILED_KEY)),
    );
    let path = write_config(
        "auth.toml",
        &config(&a.to_string(), &b.to_string(), &keys_file.to_string_lossy()),
    );
    let (proxy, addr) = start_proxy_file(&path, &[("READER_KEY", READER_KEY)]);

    // No key, a wrong key (header or path): 401 with a JSON-RPC error,
    // before the body is even looked at.
    for (path, key) in [
        ("/", None),
        ("/", Some("not-a-key")),
        ("/v1/not-a-key", None),
    ] {
        let (status, _, v) = call(addr, path, key, chain_id()).await;
        assert_eq!(status, 401, "{path} {key:?}: {v}");
        assert_eq!(v["error"]["code"], -32012, "{v}");
        assert_eq!(v["id"], Value::Null, "{v}");
        assert!(!v.to_string().contains("not-a-key"), "the key echoed: {v}");
    }
    let (status, _, _) = call(addr, "/", None, "not json".to_owned()).await;
    assert_eq!(status, 401, "authentication comes before parsing");

    // The reader (header, key from the environment): its two methods only.
    let (status, by, v) = call(addr, "/", Some(READER_KEY), chain_id()).await;
    assert_eq!((status, by.as_str()), (200, "a"), "{v}");
    let balance = body(
        "eth_getBalance",
        json!(["0x0000000000000000000000000000000000000000", "latest"]),
    );
    let (status, _, v) = call(addr, "/", Some(READER_KEY), balance.clone()).await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (403, json!(-32601)),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("API key"),
        "{v}"
    );
    // In a batch, each call on its own.
    let batch = format!("[{},{}]", chain_id(), balance);
    let (status, _, v) = call(addr, "/", Some(READER_KEY), batch).await;
    assert_eq!(status, 200);
    assert!(
        v[0]["result"].is_string() && v[1]["error"]["code"] == -32601,
        "{v}"
    );

    // The VIP key (by its digest), in the path: every call to its group.
    let (status, by, v) = call(addr, &format!("/v1/{VIP_KEY}"), None, chain_id()).await;
    assert_eq!((status, by.as_str()), (200, "b"), "{v}");
    // The key from the file, in the path: routed by method as usual.
    let (status, by, v) = call(addr, &format!("/v1/{FILED_KEY}"), None, chain_id()).await;
    assert_eq!((status, by.as_str()), (200, "a"), "{v}");

    // eth_getBalance: 2 per burst for all clients together, whoever asks.
    let mut codes = Vec::new();
    for key in [VIP_KEY, FILED_KEY, VIP_KEY, FILED_KEY] {
        let (status, _, v) = call(addr, "/", Some(key), balance.clone()).await;
        codes.push((status, v["error"]["code"].as_i64()));
    }
    assert_eq!(&codes[..2], &[(200, None), (200, None)], "{codes:?}");
    assert!(
        codes[2..].iter().all(|c| *c == (429, Some(-32016))),
        "{codes:?}"
    );

    // A WebSocket upgrade is checked like a POST: 401 without a key; with
    // the key in the path it opens, and its calls carry the key's policy.
    match tokio_tungstenite::connect_async(format!("ws://{addr}/")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 401)
        }
        other => panic!("upgrade without a key: {:?}", other.map(|_| ())),
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/{FILED_KEY}"))
        .await
        .expect("an upgrade with a key");
    for (method, ok) in [("eth_chainId", true), ("net_version", false)] {
        let message: Value = serde_json::from_str(&body(method, json!([]))).expect("JSON");
        let answer = ws_ask(&mut ws, message).await;
        if ok {
            assert!(answer["result"].is_string(), "{method}: {answer}");
        } else {
            assert_eq!(answer["error"]["code"], -32601, "{method}: {answer}");
        }
    }
    drop(ws);

    // A key added to the file, then SIGHUP: it works without a restart.
    let (status, _, _) = call(addr, "/", Some(LATE_KEY), chain_id()).await;
    assert_eq!(status, 401);
    std::fs::write(
        &keys_file,
        format!("filed {}\nlate {}\n", sha256(FILED_KEY), sha256(LATE_KEY)),
    )
    .expect("rewrite the keys file");
    proxy.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !proxy.output_text().contains("configuration reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            proxy.output_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, by, v) = call(addr, "/", Some(LATE_KEY), chain_id()).await;
    assert_eq!((status, by.as_str()), (200, "a"), "{v}");

    // No secret anywhere: not in the metrics, not in the logs (at debug).
    let metrics = scrape(tests::metrics_addr(&proxy)).await;
    assert!(metrics.contains("rpc_auth_refused_total"), "{metrics}");
    let log = proxy.output_text();
    for secret in [READER_KEY, VIP_KEY, FILED_KEY, LATE_KEY] {
        assert!(!metrics.contains(secret), "{secret} in /metrics");
        assert!(!log.contains(secret), "{secret} in the log");
    }
}
