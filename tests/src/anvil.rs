//! anvil, the real Ethereum dev node, started on a free port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::*;

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

/// Deploys a contract whose every call emits one log (LOG0, no data);
/// returns its address.
pub async fn deploy_logger(node: SocketAddr) -> String {
    // Init code: copy the 6-byte runtime (PUSH1 0 PUSH1 0 LOG0 STOP) and
    // return it.
    let init = "0x6006600c60003960066000f360006000a000";
    let from = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    let (_, v) = crate::call(
        node,
        "eth_sendTransaction",
        serde_json::json!([{"from": from, "data": init}]),
    )
    .await;
    let tx = v["result"].as_str().expect("tx hash").to_owned();
    // Mined a moment later (automine).
    for _ in 0..50 {
        let (_, r) = crate::call(node, "eth_getTransactionReceipt", serde_json::json!([tx])).await;
        if let Some(a) = r["result"]["contractAddress"].as_str() {
            return a.to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("not deployed within 5 s")
}
