//! A real `redis-server` (Debian's package; `.ci/run` installs it), started
//! by the test on a free loopback port, without persistence.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::process::Process;

/// A `redis-server` child process, killed when dropped.
pub struct RedisServer {
    process: Option<Process>,
    args: Vec<String>,
    /// Where it listens (kept across [`restart`](Self::restart)).
    pub addr: SocketAddr,
}

impl RedisServer {
    /// Starts one on a free port; panics with a clear message when
    /// `redis-server` is not installed.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with extra `redis-server` arguments
    /// (`--requirepass`, ...).
    pub fn start_with(args: &[&str]) -> RedisServer {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        // Restarted on the same port (`restart`).
        let port = crate::stable_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        RedisServer {
            process: Some(spawn(port, &args)),
            args,
            addr,
        }
    }

    /// One serving TLS only, with a fresh self-signed certificate for
    /// 127.0.0.1 / localhost; returns it and the certificate's PEM file
    /// (the CA a client must trust).
    pub fn start_tls() -> (RedisServer, std::path::PathBuf) {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("certificate");
        let dir = crate::process::workspace_root()
            .join("target")
            .join("test-configs")
            .join(format!(
                "redis-tls-{}-{}",
                std::process::id(),
                rand_suffix()
            ));
        std::fs::create_dir_all(&dir).expect("cert dir");
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
        std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("write key");
        // Restarted on the same port (`restart`).
        let port = crate::stable_port();
        let args: Vec<String> = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &cert_path.display().to_string(),
            "--tls-key-file",
            &key_path.display().to_string(),
            "--tls-ca-cert-file",
            &cert_path.display().to_string(),
            "--tls-auth-clients",
            "no",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        let server = RedisServer {
            process: Some(spawn_with(&args)),
            args,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        (server, cert_path)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Sends a signal (`STOP`, `CONT`, `KILL`, ...).
    pub fn signal(&self, name: &str) {
        if let Some(p) = &self.process {
            p.signal(name);
        }
    }

    /// Kills it (its data is gone: no persistence).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.signal("KILL");
            p.wait_exit(Duration::from_secs(5));
        }
    }

    /// Starts it again on the same port (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.kill();
        self.process = Some(spawn(self.addr.port(), &self.args));
    }
}

fn spawn(port: u16, extra: &[String]) -> Process {
    let mut args = vec!["--port".to_owned(), port.to_string()];
    args.extend_from_slice(extra);
    spawn_with(&args)
}

fn rand_suffix() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
}

/// `redis-server` with `args` (which say where it listens) and the tests'
/// common settings.
fn spawn_with(args: &[String]) -> Process {
    let path = which_redis();
    let mut cmd = Command::new(path);
    cmd.args(args).args([
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxmemory",
        "64mb",
        "--maxmemory-policy",
        "allkeys-lru",
    ]);
    let (p, ()) = Process::start(cmd, Duration::from_secs(20), |line| {
        line.contains("Ready to accept connections").then_some(())
    });
    p
}

fn which_redis() -> String {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = format!("{dir}/redis-server");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    panic!("redis-server is not installed (Debian: apt-get install redis-server; .ci/run does it)")
}
