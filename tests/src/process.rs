//! The shipped binaries as processes: built once, started with a deadline,
//! their output captured; config files; Node.js clients.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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

    /// Sends a signal by name (`TERM`, `INT`, `STOP`, `CONT`, `KILL`); see
    /// [`send_signal`].
    pub fn signal(&self, name: &str) {
        send_signal(self.pid(), name);
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
    start_proxy_file(&write_config("proxy.toml", toml), env)
}

/// A free loopback port below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`), for a server the test starts on it,
/// kills and starts again there (or points a proxy at before anything
/// listens). A port found free in the ephemeral range (bind `:0`, drop)
/// can be handed to an outgoing connection before the server binds it,
/// and the server then fails with "Address already in use"; no outgoing
/// connection is ever given a port below the range. Distinct within the
/// process; its starting point differs between processes.
pub fn stable_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let low = ephemeral_low();
    // From 20000 (the bench scripts use 19xxx) to just below the range.
    const FIRST: usize = 20_000;
    if low < FIRST + 1_000 {
        // No room below the range on this machine: the old way.
        return std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
    }
    let span = low - FIRST;
    let start = (std::process::id() as usize).wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(FIRST + (start + k) % span).expect("a port");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {low}");
}

/// The first port of the kernel's ephemeral range (32768 where it cannot
/// be read).
fn ephemeral_low() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Starts the shipped `rpc-proxy` with `--config path` (a file the test
/// may rewrite, then send `HUP`) and extra environment variables; returns
/// it with the address it printed.
pub fn start_proxy_file(path: &Path, env: &[(&str, &str)]) -> (Process, SocketAddr) {
    let mut cmd = Command::new(binary("rpc-proxy", "rpc-proxy"));
    cmd.arg("--config").arg(path).envs(env.iter().copied());
    Process::start(cmd, Duration::from_secs(20), |line| {
        let rest = line.split("listening on http://").nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    })
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

/// The shipped `rpc-proxy` in front of one anvil, with WebSocket
/// subscriptions polling every 200 ms; `extra` is appended TOML.
pub fn start_ws_proxy(node: SocketAddr, extra: &str) -> (Process, SocketAddr) {
    start_proxy_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.websocket]\nheads_poll_interval = \"200ms\"\n\
         [backends.anvil]\nurl = \"http://{node}\"\n{extra}\n"
    ))
}

/// Runs a Node.js client script of `tests/clients` with `args` to its end
/// (killed past `within`): success, stdout, stderr.
pub async fn run_node_client(
    script: &str,
    args: &[String],
    within: Duration,
) -> (bool, String, String) {
    let child = tokio::process::Command::new("node")
        .arg(workspace_root().join("tests/clients").join(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node (scripts/test.sh installs it): {e}"));
    let out = tokio::time::timeout(within, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {within:?}"))
        .expect("node output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends signal `name` to `pid` with `kill`. For `STOP`, returns only once
/// every thread of the process is stopped (read from `/proc`, up to 5 s):
/// `kill` returns when the signal is queued, and a thread that was running
/// on another core (or a descheduled virtual CPU) may still answer a request
/// sent right after it.
pub fn send_signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{name} {pid} failed");
    if name == "STOP" {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all_threads_stopped(pid) {
            assert!(Instant::now() < deadline, "{pid} did not stop within 5 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Whether every thread of `pid` is in state `T` (stopped) per `/proc`;
/// `true` where `/proc` cannot tell (not Linux).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .map(|stat| {
                // The state follows the command name, which is in
                // parentheses and may itself contain spaces.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .is_none_or(|state| state == "T" || state == "t")
            })
            .unwrap_or(true)
    })
}

#[cfg(test)]
mod tests {
    use super::{ephemeral_low, stable_port};

    /// Below the ephemeral range, free, and not handed out twice.
    #[test]
    fn stable_ports_are_free_distinct_and_below_the_ephemeral_range() {
        let low = ephemeral_low();
        let ports: Vec<u16> = (0..50).map(|_| stable_port()).collect();
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        if low >= 21_000 {
            assert!(
                ports
                    .iter()
                    .all(|&p| (20_000..low).contains(&usize::from(p))),
                "{ports:?}"
            );
        }
        // Free: a server can bind each one.
        for port in ports {
            std::net::TcpListener::bind(("127.0.0.1", port)).expect("a free port");
        }
    }
}
