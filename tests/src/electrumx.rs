//! A real ElectrumX over a fixed regtest chain, started and stopped by tests.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::*;

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
    /// The servers' certificate (PEM) when started with TLS.
    pub cert: Option<PathBuf>,
    /// The private CA (PEM) that signed [`cert`](Self::cert).
    pub ca: Option<PathBuf>,
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
            let ca = var("ELECTRUMX_CA");
            return ElectrumX {
                tcp_ports: list("ELECTRUMX_TCP_PORTS"),
                ssl_ports: list("ELECTRUMX_SSL_PORTS"),
                pids: var("ELECTRUMX_PIDS")
                    .split(',')
                    .filter_map(|p| p.parse().ok())
                    .collect(),
                daemon_port: var("FAKE_BITCOIND_PORT").parse().expect("daemon port"),
                cert: (!cert.is_empty()).then(|| PathBuf::from(cert)),
                ca: (!ca.is_empty()).then(|| PathBuf::from(ca)),
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
        crate::process::send_signal(self.pids[i], name);
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
