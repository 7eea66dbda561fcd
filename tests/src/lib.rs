//! Helpers for the cross-crate integration tests: the shipped binaries started
//! as processes, real peers (anvil), and a small HTTP upstream that injects the
//! faults a real node cannot produce on demand.
//!
//! Every helper has a deadline: a process that does not come up in time fails
//! the test with its captured output instead of hanging it.

/// The README's code examples, compiled as doctests so they stay true.
#[doc = include_str!("../../README.md")]
mod readme {}

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// Path of a workspace binary, built (once per test process) with the same
/// cargo that runs the tests, so the test always runs the current code.
pub fn binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().expect("lock");
    if let Some((_, path)) = built.iter().find(|(name, _)| name == bin) {
        return path.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--quiet",
            "--message-format=json",
            "-p",
            package,
            "--bin",
            bin,
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build");
    assert!(out.status.success(), "cargo build -p {package} failed");
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no executable for {bin}"));
    built.push((bin.to_owned(), path.clone()));
    path
}

/// Runs the Node.js client `tests/clients/SCRIPT` with `args` (its
/// libraries, viem, are installed by `scripts/test.sh`), waits up to
/// `within`, and returns the one JSON line it prints. Panics with its output
/// if it cannot run, fails or prints something else.
pub async fn node_client(script: &str, args: &[String], within: Duration) -> Value {
    let path = workspace_root().join("tests/clients").join(script);
    let out = tokio::time::timeout(
        within,
        tokio::process::Command::new("node")
            .arg(&path)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{script} did not finish within {within:?}"))
    .unwrap_or_else(|e| panic!("cannot run node (scripts/test.sh installs it): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{script}: {e}: {stdout}"))
}

/// A child process killed when dropped, with its output kept for diagnostics.
pub struct Process {
    child: Child,
    /// Lines the process printed (stdout and stderr), in arrival order.
    pub output: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `cmd` and waits up to `within` for a stdout or stderr line that
    /// `ready` accepts; returns the process and what `ready` extracted.
    pub fn start<T>(
        mut cmd: Command,
        within: Duration,
        ready: impl Fn(&str) -> Option<T>,
    ) -> (Process, T) {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        for reader in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let (tx, output) = (tx.clone(), output.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines().map_while(Result::ok) {
                    output.lock().expect("lock").push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let deadline = Instant::now() + within;
        let mut process = Process { child, output };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(v) = ready(&line) {
                        return (process, v);
                    }
                }
                Err(_) => {
                    let status = process.child.try_wait().ok().flatten();
                    let _ = process.child.kill();
                    panic!(
                        "{cmd:?} not ready within {within:?} (exit status {status:?}); output:\n{}",
                        process.output.lock().expect("lock").join("\n")
                    );
                }
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`, `STOP`, `CONT`, `KILL`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{name} failed");
    }

    /// Waits up to `within` for the process to exit; `None` if it did not.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Everything printed so far, joined.
    pub fn output_text(&self) -> String {
        self.output.lock().expect("lock").join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the shipped `rpc-proxy` on an ephemeral port with `args` and returns
/// it with the address it printed.
pub fn start_proxy(args: &[&str]) -> (Process, SocketAddr) {
    let mut cmd = Command::new(binary("rpc-proxy", "rpc-proxy"));
    cmd.args(["--listen", "127.0.0.1:0"]).args(args);
    Process::start(cmd, Duration::from_secs(20), |line| {
        let rest = line.split("listening on http://").nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Writes `toml` to a fresh file under the target directory and returns its
/// path (for `rpc-proxy --config`).
pub fn write_config(name: &str, toml: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = workspace_root().join("target").join("test-configs");
    std::fs::create_dir_all(&dir).expect("create target/test-configs");
    let path = dir.join(format!(
        "{}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, toml).expect("write config");
    path
}

/// Starts the shipped `rpc-proxy` with `--config` on a file holding `toml`
/// (which should say `listen = "127.0.0.1:0"`) and returns it with the
/// address it printed.
pub fn start_proxy_config(toml: &str) -> (Process, SocketAddr) {
    start_proxy_config_env(toml, &[])
}

/// [`start_proxy_config`] with extra environment variables.
pub fn start_proxy_config_env(toml: &str, env: &[(&str, &str)]) -> (Process, SocketAddr) {
    let path = write_config("proxy.toml", toml);
    let mut cmd = Command::new(binary("rpc-proxy", "rpc-proxy"));
    cmd.arg("--config").arg(&path).envs(env.iter().copied());
    Process::start(cmd, Duration::from_secs(20), |line| {
        let rest = line.split("listening on http://").nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Where the anvil binary is: `$ANVIL_BIN`; then the native binary of the
/// npm package's platform sub-package (`tests/node_modules/@foundry-rs/anvil-<platform>/bin/anvil`,
/// installed by `npm install --prefix tests`); then `PATH`.
///
/// The native binary, not the package's `.bin/anvil` Node wrapper: signals
/// (`KILL`, `STOP`) must reach the node itself, and killing the wrapper
/// would orphan the node.
pub fn anvil_path() -> PathBuf {
    if let Ok(p) = std::env::var("ANVIL_BIN") {
        return PathBuf::from(p);
    }
    let packages = workspace_root().join("tests/node_modules/@foundry-rs");
    if let Ok(entries) = std::fs::read_dir(&packages) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let native = entry.path().join("bin/anvil");
            if name.to_string_lossy().starts_with("anvil-") && native.is_file() {
                return native;
            }
        }
    }
    PathBuf::from("anvil")
}

/// Starts a real Ethereum dev node (anvil) on an ephemeral loopback port.
pub fn start_anvil() -> (Process, SocketAddr) {
    start_anvil_with(&[])
}

/// Starts anvil with extra arguments (e.g. `["--chain-id", "5"]`).
pub fn start_anvil_with(args: &[&str]) -> (Process, SocketAddr) {
    let path = anvil_path();
    let mut cmd = Command::new(&path);
    cmd.args(["--host", "127.0.0.1", "--port", "0"]).args(args);
    if path == Path::new("anvil") && Command::new("anvil").arg("--version").output().is_err() {
        panic!("anvil not found: run `npm install --prefix tests` (or set ANVIL_BIN)");
    }
    Process::start(cmd, Duration::from_secs(30), |line| {
        line.split("Listening on ").nth(1)?.trim().parse().ok()
    })
}

/// Starts anvil on a given port (to restart a killed node where it was).
pub fn start_anvil_on(port: u16) -> (Process, SocketAddr) {
    let mut cmd = Command::new(anvil_path());
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
    Process::start(cmd, Duration::from_secs(30), |line| {
        line.split("Listening on ").nth(1)?.trim().parse().ok()
    })
}

/// A tiny HTTP client for the tests: one POST, a deadline, the raw answer.
pub async fn post(
    addr: SocketAddr,
    body: impl Into<Bytes>,
) -> (StatusCode, http::HeaderMap, String) {
    post_with(addr, body, &[("content-type", "application/json")]).await
}

/// [`post`] with explicit headers.
pub async fn post_with(
    addr: SocketAddr,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    post_to(addr, "/", body, headers).await
}

/// A POST to `path` with explicit headers.
pub async fn post_to(
    addr: SocketAddr,
    path: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = http::Request::post(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req = req.header("host", addr.to_string());
    let req = req.body(Full::new(body.into())).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .expect("answer within 30 s")
        .expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect())
        .await
        .expect("body within 30 s")
        .expect("body")
        .to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// One JSON-RPC call; returns the HTTP status and the parsed body.
pub async fn call(addr: SocketAddr, method: &str, params: Value) -> (StatusCode, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let (status, _, text) = post(addr, body.to_string()).await;
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

/// A JSON-RPC call body (id 1).
pub fn body(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string()
}

/// One call through the proxy (with `served_by_header` on): who served it,
/// and the answer.
pub async fn served_by(addr: SocketAddr, method: &str, params: Value) -> (String, Value) {
    let (status, headers, text) = post(addr, body(method, params)).await;
    assert_eq!(status, 200, "{method}: {text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    (
        headers
            .get("x-served-by")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        v,
    )
}

/// Calls `eth_chainId` until `who` serves it (up to 15 s); panics otherwise.
pub async fn until_served_by(addr: SocketAddr, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (by, _) = served_by(addr, "eth_chainId", json!([])).await;
        if by == who {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never served by {who} (last: {by})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The metrics address a proxy printed at start-up.
pub fn metrics_addr(proxy: &Process) -> SocketAddr {
    let out = proxy.output_text();
    out.split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in:\n{out}"))
}

/// The proxy's `/metrics` text (the whole HTTP exchange).
pub async fn scrape(addr: SocketAddr) -> String {
    let req = format!("GET /metrics HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    raw_exchange(addr, req.as_bytes(), Duration::from_secs(5)).await
}

/// Starts the binary with one head-tracked group `main` over `urls` (the
/// backends are named a, b, c, ... in priority order). `top` goes before the
/// tables (server, metrics and cache settings), `group` into
/// `[groups.main]`, `head` into `[groups.main.head]`, `extra` at the end.
pub fn start_head_tracked_proxy(
    urls: &[String],
    top: &str,
    group: &str,
    head: &str,
    extra: &str,
) -> (Process, SocketAddr) {
    let names: Vec<String> = (0..urls.len())
        .map(|i| char::from(b'a' + i as u8).to_string())
        .collect();
    let mut toml = format!("protocol = \"ethereum\"\n{top}\n");
    for (name, url) in names.iter().zip(urls) {
        toml.push_str(&format!("[backends.{name}]\nurl = \"{url}\"\n"));
    }
    toml.push_str(&format!(
        "[groups.main]\nmembers = {names:?}\n{group}\n[groups.main.head]\n{head}\n{extra}\n"
    ));
    start_proxy_config(&toml)
}

/// One keep-alive HTTP/1.1 connection to a server, for calls that must
/// share a connection (per-connection sessions).
pub struct Connection {
    addr: SocketAddr,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Opens it.
    pub async fn open(addr: SocketAddr) -> Connection {
        let stream =
            tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                .await
                .expect("connect in time")
                .expect("connect");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Connection { addr, sender }
    }

    /// One call on this connection: the headers and the parsed answer.
    pub async fn call(&mut self, method: &str, params: Value) -> (http::HeaderMap, Value) {
        let req = http::Request::post("/")
            .header("content-type", "application/json")
            .header("host", self.addr.to_string())
            .body(Full::new(Bytes::from(body(method, params))))
            .expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(30), self.sender.send_request(req))
            .await
            .expect("answer within 30 s")
            .expect("response on the same connection");
        let headers = resp.headers().clone();
        let bytes = tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect())
            .await
            .expect("body within 30 s")
            .expect("body")
            .to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
        (headers, v)
    }
}

/// An in-repo HTTP upstream that answers JSON-RPC and injects faults by method
/// name. Anything else is echoed as `{"method": .., "params": ..}`.
///
/// | method | answer |
/// |---|---|
/// | `fault_status` `[code]` | that HTTP status, text body |
/// | `fault_429` | 429 with `Retry-After: 3` |
/// | `fault_garbage` | 200 with an HTML body |
/// | `fault_truncated` | 200 with half a JSON object |
/// | `fault_wrong_id` | 200, answer under another id |
/// | `fault_slow` `[ms]` | echo after the delay |
/// | `fault_drop` | connection closed without an answer |
/// | `fault_huge` `[bytes]` | a string result of that size |
/// | `fault_rpc_error` | 200 with error object code 3 |
/// | `fault_400_rpc_error` | 400 with a `-32602` error object |
/// | `echo_request` | the request's headers and raw body |
pub struct FaultUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Calls received, by anyone.
    pub calls: Arc<AtomicUsize>,
    /// TCP connections accepted.
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultUpstream {
    /// Starts it on an ephemeral loopback port.
    pub async fn start() -> FaultUpstream {
        Self::start_with(None, None).await
    }

    /// Starts one that treats *every* call as `method` (e.g. `fault_garbage`:
    /// a backend that only ever answers garbage).
    pub async fn start_always(method: &'static str) -> FaultUpstream {
        Self::start_with(None, Some(method)).await
    }

    /// Starts one that answers every call (as [`start`](Self::start) does)
    /// only after `delay`: keeps calls in flight, e.g. to see them coalesce.
    pub async fn start_delayed(delay: Duration) -> FaultUpstream {
        Self::start_full(None, None, delay).await
    }

    /// Starts one whose node is at `head`: `eth_blockNumber` answers it (as
    /// a hex quantity), everything else as [`start`](Self::start) does. For
    /// a backend that is connected and answering but behind.
    pub async fn start_at_head(head: Arc<std::sync::atomic::AtomicU64>) -> FaultUpstream {
        Self::start_chain(ScriptedChain::at(head)).await
    }

    /// Starts one serving a scripted chain (see [`ScriptedChain`]):
    /// heads, blocks with hashes, forks and finality a test sets at will,
    /// for nodes that lie, roll back or fork.
    pub async fn start_chain(chain: ScriptedChain) -> FaultUpstream {
        Self::start_inner(None, None, Duration::ZERO, Some(chain)).await
    }

    /// Starts it serving HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with `tls`.
    pub async fn start_tls(tls: Arc<rustls::ServerConfig>) -> FaultUpstream {
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(tls)), None).await
    }

    async fn start_with(
        tls: Option<tokio_rustls::TlsAcceptor>,
        always: Option<&'static str>,
    ) -> FaultUpstream {
        Self::start_full(tls, always, Duration::ZERO).await
    }

    async fn start_full(
        tls: Option<tokio_rustls::TlsAcceptor>,
        always: Option<&'static str>,
        delay: Duration,
    ) -> FaultUpstream {
        Self::start_inner(tls, always, delay, None).await
    }

    async fn start_inner(
        tls: Option<tokio_rustls::TlsAcceptor>,
        always: Option<&'static str>,
        delay: Duration,
        head: Option<ScriptedChain>,
    ) -> FaultUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let calls = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let counter = counter.clone();
                let tls = tls.clone();
                let head = head.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        let head = head.clone();
                        async move {
                            tokio::time::sleep(delay).await;
                            fault_answer(req, &counter, always, head.as_ref()).await
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(tls) => {
                            let handshake =
                                tokio::time::timeout(Duration::from_secs(5), tls.accept(stream));
                            if let Ok(Ok(stream)) = handshake.await {
                                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                    }
                });
            }
        });
        FaultUpstream {
            addr,
            calls,
            connections,
            task,
        }
    }

    /// Waits (up to 10 s) until at least `n` calls have arrived.
    pub async fn wait_for_calls(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.calls.load(Ordering::SeqCst) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fewer than {n} calls arrived within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `http://` URL of the upstream.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

type Answer = Result<http::Response<Full<Bytes>>, std::io::Error>;

/// A chain a [`FaultUpstream`] serves, scripted by the test through shared
/// atomics: its head, which fork its recent blocks are on, its finalized
/// block. Answers `eth_blockNumber`, `eth_getBlockByNumber` (a tag or a
/// number: number, hash, parent hash), `eth_getBalance` (a value that names
/// the block and fork it was read at: `block * 256 + fork`) and
/// `eth_chainId`; anything else as the plain upstream does.
#[derive(Clone, Debug, Default)]
pub struct ScriptedChain {
    /// The head it reports.
    pub head: Arc<std::sync::atomic::AtomicU64>,
    /// The fork blocks above `fork_from` are on (0: the common chain).
    pub fork: Arc<std::sync::atomic::AtomicU64>,
    /// The last block of the common chain.
    pub fork_from: Arc<std::sync::atomic::AtomicU64>,
    /// Its finalized block + 1 (0: it does not report finality).
    pub finalized: Arc<std::sync::atomic::AtomicU64>,
}

impl ScriptedChain {
    /// A chain at `head`, on the common chain, without finality.
    pub fn new(head: u64) -> Self {
        Self::at(Arc::new(std::sync::atomic::AtomicU64::new(head)))
    }

    fn at(head: Arc<std::sync::atomic::AtomicU64>) -> Self {
        ScriptedChain {
            head,
            ..Default::default()
        }
    }

    /// Moves its head (up or down).
    pub fn set_head(&self, head: u64) {
        self.head.store(head, Ordering::SeqCst);
    }

    /// Its blocks above `from` are on fork `fork` from now on (0: back on
    /// the common chain).
    pub fn fork(&self, fork: u64, from: u64) {
        self.fork_from.store(from, Ordering::SeqCst);
        self.fork.store(fork, Ordering::SeqCst);
    }

    /// Reports `n` as finalized (and safe).
    pub fn finalize(&self, n: u64) {
        self.finalized.store(n + 1, Ordering::SeqCst);
    }

    fn fork_at(&self, n: u64) -> u64 {
        if n > self.fork_from.load(Ordering::SeqCst) {
            self.fork.load(Ordering::SeqCst)
        } else {
            0
        }
    }

    /// The hash of block `n` on this chain.
    pub fn hash(&self, n: u64) -> String {
        format!(
            "0x{:016x}{:048x}",
            self.fork_at(n) * 1_000_000_007 + n + 1,
            0
        )
    }

    fn block(&self, n: u64) -> Value {
        json!({
            "number": format!("{n:#x}"),
            "hash": self.hash(n),
            "parentHash": self.hash(n.saturating_sub(1)),
            "timestamp": format!("{:#x}", 1_700_000_000 + n),
            "transactions": [],
        })
    }

    fn block_at(&self, tag: &Value) -> Option<u64> {
        let head = self.head.load(Ordering::SeqCst);
        match tag.as_str().unwrap_or("latest") {
            "latest" | "pending" => Some(head),
            "earliest" => Some(0),
            "finalized" | "safe" => self.finalized.load(Ordering::SeqCst).checked_sub(1),
            hex => u64::from_str_radix(hex.trim_start_matches("0x"), 16)
                .ok()
                .filter(|&n| n <= head),
        }
    }

    fn answer(&self, method: &str, params: &Value) -> Option<Value> {
        Some(match method {
            "eth_blockNumber" => json!(format!("{:#x}", self.head.load(Ordering::SeqCst))),
            "eth_chainId" => json!("0x1"),
            "eth_getBlockByNumber" => match self.block_at(&params[0]) {
                Some(n) => self.block(n),
                None => Value::Null,
            },
            "eth_getBalance" => match self.block_at(&params[1]) {
                Some(n) => json!(format!("{:#x}", n * 256 + self.fork_at(n))),
                None => json!({"unknown block": params[1]}),
            },
            _ => return None,
        })
    }
}

async fn fault_answer(
    req: http::Request<hyper::body::Incoming>,
    counter: &AtomicUsize,
    always: Option<&'static str>,
    chain: Option<&ScriptedChain>,
) -> Answer {
    counter.fetch_add(1, Ordering::SeqCst);
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                Value::String(v.to_str().unwrap_or("").to_owned()),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    // Read id and method without building a tree, so deeply nested params
    // (which `Value` refuses past 128 levels) are still answered.
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        id: Option<&'a serde_json::value::RawValue>,
        method: Option<String>,
        #[serde(borrow)]
        params: Option<&'a serde_json::value::RawValue>,
    }
    let head: Head<'_> = serde_json::from_slice(&body).unwrap_or(Head {
        id: None,
        method: None,
        params: None,
    });
    let id: Value = head.id.map_or(Value::Null, |raw| {
        serde_json::from_str(raw.get()).unwrap_or(Value::Null)
    });
    let method = always.map_or_else(|| head.method.unwrap_or_default(), str::to_owned);
    let params_bytes = head.params.map_or(0, |p| p.get().len());
    let params: Value = head
        .params
        .and_then(|p| serde_json::from_str(p.get()).ok())
        .unwrap_or(Value::Null);
    let arg = params[0].as_u64().unwrap_or(0);
    let reply = |status: u16, body: String| -> Answer {
        let mut resp = http::Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = StatusCode::from_u16(status).map_err(std::io::Error::other)?;
        resp.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        Ok(resp)
    };
    let ok = |result: Value| {
        reply(
            200,
            json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string(),
        )
    };
    if let Some(chain) = chain {
        if let Some(result) = chain.answer(&method, &params) {
            return ok(result);
        }
    }
    match method.as_str() {
        "fault_status" => reply(arg as u16, "upstream trouble".to_owned()),
        "fault_429" => {
            let mut resp = reply(429, "slow down".to_owned())?;
            resp.headers_mut().insert("retry-after", http::HeaderValue::from_static("3"));
            Ok(resp)
        }
        "fault_garbage" => reply(200, "<html><body>502 Bad Gateway</body></html>".to_owned()),
        "fault_truncated" => reply(200, format!(r#"{{"jsonrpc":"2.0","id":{id},"resu"#)),
        "fault_wrong_id" => reply(200, json!({"jsonrpc": "2.0", "id": 424242, "result": 1}).to_string()),
        "fault_slow" => {
            tokio::time::sleep(Duration::from_millis(arg)).await;
            ok(json!({"method": method, "params": params}))
        }
        "fault_drop" => Err(std::io::Error::other("dropping the connection on purpose")),
        "fault_huge" => ok(Value::String("x".repeat(arg as usize))),
        "fault_rpc_error" => reply(
            200,
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": 3, "message": "execution reverted", "data": "0x08c379a0"}}).to_string(),
        ),
        "fault_400_rpc_error" => reply(
            400,
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": "invalid argument 0"}}).to_string(),
        ),
        "echo_request" => ok(json!({
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        })),
        _ => ok(json!({"method": method, "params": params, "params_bytes": params_bytes})),
    }
}

/// Raw TCP: writes `bytes`, then reads the answer until the peer closes or
/// `within` passes. For malformed HTTP and partial bodies.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A pool of real ElectrumX servers over the deterministic fake bitcoind
/// (`tests/electrumx/start.sh`), stopped (by recorded pid) on drop.
pub struct ElectrumX {
    /// TCP port of each server.
    pub tcp_ports: Vec<u16>,
    /// TLS port of each server (empty unless started with TLS).
    pub ssl_ports: Vec<u16>,
    /// Process id of each server.
    pub pids: Vec<u32>,
    /// The fake bitcoind's JSON-RPC port (mining and other test controls).
    pub daemon_port: u16,
    /// The self-signed certificate (PEM) when started with TLS.
    pub cert: Option<PathBuf>,
    state: PathBuf,
    /// Servers started again by [`restart`](Self::restart), reaped on drop.
    restarted: Vec<Child>,
}

/// Options for [`ElectrumX::start`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ElectrumXOptions {
    /// Number of servers (at least 1).
    pub instances: usize,
    /// Also serve TLS with a self-signed certificate.
    pub tls: bool,
    /// Bitcoin Cash instead of Bitcoin.
    pub bch: bool,
}

static EX_SLOT: AtomicUsize = AtomicUsize::new(0);

impl ElectrumX {
    /// Starts the pool on free loopback ports (each test gets its own state
    /// directory and ports; retried on a port clash).
    pub fn start(opts: ElectrumXOptions) -> ElectrumX {
        let script = workspace_root().join("tests/electrumx/start.sh");
        let n = opts.instances.max(1);
        let mut last_err = String::new();
        for _ in 0..6 {
            let slot = EX_SLOT.fetch_add(1, Ordering::SeqCst);
            // Spread test processes and tests over 40000..60000.
            let base = 40_000 + ((std::process::id() as usize * 7 + slot * 131) % 950) * 20;
            let state = std::env::temp_dir().join(format!("rpc-ex-{}-{slot}", std::process::id()));
            let out = Command::new("bash")
                .arg(&script)
                .env("EX_INSTANCES", n.to_string())
                .env("EX_BASE_PORT", base.to_string())
                .env("EX_ADMIN_BASE", (base + 2 * n + 2).to_string())
                .env("EX_DAEMON_PORT", (base + 2 * n + 2 + n + 1).to_string())
                .env("EX_SSL", if opts.tls { "1" } else { "0" })
                .env("EX_COIN", if opts.bch { "bch" } else { "btc" })
                .env("EX_STATE", &state)
                .output()
                .expect("run tests/electrumx/start.sh");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if !out.status.success() {
                last_err = format!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
                let _ = Command::new("bash")
                    .arg(workspace_root().join("tests/electrumx/stop.sh"))
                    .env("EX_STATE", &state)
                    .output();
                continue;
            }
            let var = |k: &str| -> String {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("{k}=")))
                    .unwrap_or("")
                    .to_owned()
            };
            let list = |k: &str| -> Vec<u16> {
                var(k).split(',').filter_map(|p| p.parse().ok()).collect()
            };
            let cert = var("ELECTRUMX_CERT");
            return ElectrumX {
                tcp_ports: list("ELECTRUMX_TCP_PORTS"),
                ssl_ports: list("ELECTRUMX_SSL_PORTS"),
                pids: var("ELECTRUMX_PIDS")
                    .split(',')
                    .filter_map(|p| p.parse().ok())
                    .collect(),
                daemon_port: var("FAKE_BITCOIND_PORT").parse().expect("daemon port"),
                cert: (!cert.is_empty()).then(|| PathBuf::from(cert)),
                state,
                restarted: Vec::new(),
            };
        }
        panic!("ElectrumX did not start: {last_err}");
    }

    /// `tcp://127.0.0.1:PORT` of server `i`.
    pub fn tcp_url(&self, i: usize) -> String {
        format!("tcp://127.0.0.1:{}", self.tcp_ports[i])
    }

    /// `tls://localhost:PORT` of server `i`.
    pub fn tls_url(&self, i: usize) -> String {
        format!("tls://localhost:{}", self.ssl_ports[i])
    }

    /// Sends a signal (`STOP`, `CONT`, `KILL`, ...) to server `i`.
    pub fn signal(&self, i: usize, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pids[i].to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{name} {} failed", self.pids[i]);
    }

    /// Starts server `i` again after it was killed, on the same ports and
    /// database (the environment `start.sh` recorded), and waits (up to 30 s)
    /// until it answers.
    pub fn restart(&mut self, i: usize) {
        let env_file = self.state.join(format!("electrumx-{}.env", i + 1));
        let vars = std::fs::read_to_string(&env_file).expect("the recorded environment");
        let venv = workspace_root().join("tests/electrumx/.venv/bin/electrumx_server");
        let log = std::fs::File::create(
            self.state
                .join(format!("logs/electrumx-{}-restart.log", i + 1)),
        )
        .expect("log file");
        let mut cmd = Command::new(venv);
        cmd.env_clear();
        for line in vars.lines() {
            if let Some((k, v)) = line.split_once('=') {
                cmd.env(k, v);
            }
        }
        self.restarted.push(
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("restart electrumx"),
        );
        let pid = self.restarted.last().map_or(0, Child::id);
        self.pids[i] = pid;
        // stop.sh stops what the pid files name.
        let _ = std::fs::write(
            self.state.join(format!("pids/electrumx-{}.pid", i + 1)),
            pid.to_string(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.tcp_ports[i])) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let hello = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server.version\",\"params\":[\"t\",\"1.4\"]}\n";
                let mut buf = [0u8; 256];
                if s.write_all(hello).is_ok() && s.read(&mut buf).is_ok_and(|n| n > 0) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "ElectrumX #{i} did not come back"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Calls the fake bitcoind (`generate`, `fake_send`, `fake_info`, ...).
    pub async fn daemon(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let addr = SocketAddr::from(([127, 0, 0, 1], self.daemon_port));
        let (status, _, text) = post_with(
            addr,
            body.to_string(),
            &[
                ("content-type", "application/json"),
                ("authorization", "Basic dTpw"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).expect("daemon JSON");
        v["result"].clone()
    }
}

impl Drop for ElectrumX {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(workspace_root().join("tests/electrumx/stop.sh"))
            .env("EX_STATE", &self.state)
            .output();
        for mut child in self.restarted.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// A raw transaction (hex) spending output `vout` (worth `value` sat) of
/// `txid_hex`, an anyone-can-spend (`OP_TRUE`) output of the ElectrumX test
/// chain, to `OP_TRUE` again, leaving 10 000 sat of fee.
pub fn spend_op_true(txid_hex: &str, vout: u32, value: u64) -> String {
    let mut tx = Vec::new();
    tx.extend_from_slice(&2u32.to_le_bytes());
    tx.push(1);
    let mut prev: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&txid_hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    prev.reverse();
    tx.extend_from_slice(&prev);
    tx.extend_from_slice(&vout.to_le_bytes());
    tx.push(0); // empty scriptSig: OP_TRUE needs nothing
    tx.extend_from_slice(&0xffff_ffffu32.to_le_bytes());
    tx.push(1);
    tx.extend_from_slice(&(value - 10_000).to_le_bytes());
    tx.extend_from_slice(&[1, 0x51]);
    tx.extend_from_slice(&0u32.to_le_bytes());
    tx.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts the shipped `electrum-gateway` on an ephemeral port with `args`
/// and returns it with the address it printed.
pub fn start_gateway(args: &[&str]) -> (Process, SocketAddr) {
    let mut cmd = Command::new(binary("electrum-gateway", "electrum-gateway"));
    cmd.args(["--listen", "127.0.0.1:0"]).args(args);
    Process::start(cmd, Duration::from_secs(30), |line| {
        let rest = line.split("listening on http://").nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// One `GET path`; the status and the body.
pub async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .expect("answer within 30 s")
        .expect("response");
    let status = resp.status();
    let body = tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect())
        .await
        .expect("body within 30 s")
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
