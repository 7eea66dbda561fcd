//! What ships besides the binary: `--version` names the commit, the systemd
//! unit is valid and sandboxed, the Dockerfile builds the shipped binary
//! into a non-root image. (CI has no Docker daemon: the Dockerfile is
//! checked by reading it; `RPC_TEST_DOCKER=1` with a daemon builds it and
//! runs `--version` in the image.)

use std::process::Command;

use tests::{binary, workspace_root};

fn git_head() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn version_names_the_commit() {
    let out = Command::new(binary("rpc-proxy", "rpc-proxy"))
        .arg("--version")
        .output()
        .expect("run rpc-proxy");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let expected = match git_head() {
        Some(head) => format!("rpc-proxy {} (commit {head})", env!("CARGO_PKG_VERSION")),
        None => format!("rpc-proxy {} (commit ", env!("CARGO_PKG_VERSION")),
    };
    assert!(
        stdout.starts_with(&expected),
        "{stdout:?}, expected {expected:?}"
    );
}

fn unit() -> String {
    std::fs::read_to_string(workspace_root().join("packaging/rpc-proxy.service"))
        .expect("unit file")
}

/// The value of `key=` in the unit (the last one, as systemd reads it for
/// single-valued keys).
fn setting<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .next_back()
}

#[test]
fn the_systemd_unit_is_sandboxed_with_room_for_connections() {
    let unit = unit();
    let exec = setting(&unit, "ExecStart").expect("ExecStart");
    assert!(
        exec.contains("rpc-proxy --config /etc/rpc-proxy/proxy.toml"),
        "{exec}"
    );
    let check = setting(&unit, "ExecStartPre").expect("the config is checked first");
    assert!(check.contains("rpc-proxy check --config"), "{check}");
    let files: u64 = setting(&unit, "LimitNOFILE")
        .expect("LimitNOFILE")
        .parse()
        .expect("a number");
    assert!(files >= 65_536, "LimitNOFILE={files}");
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(setting(&unit, key), Some(value), "{key}");
    }
}

#[test]
fn systemd_accepts_the_unit() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("no systemd-analyze here: the unit is only read (see the test above)");
        return;
    };
    assert!(out.status.success());
    // The unit names the installed path; here, the binary just built.
    let bin = binary("rpc-proxy", "rpc-proxy");
    let unit = unit().replace("/usr/local/bin/rpc-proxy", &bin.display().to_string());
    let dir = workspace_root().join("target").join("test-configs");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(format!("rpc-proxy-{}.service", std::process::id()));
    std::fs::write(&path, unit).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Lines about other units on this machine are not this unit's.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("rpc-proxy")).collect();
    assert!(out.status.success() && ours.is_empty(), "{stderr}");
}

#[test]
fn the_dockerfile_builds_the_shipped_binary_into_a_non_root_image() {
    let root = workspace_root();
    let file = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    let stages: Vec<&str> = file.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(
        stages.len(),
        2,
        "a build stage and a runtime stage: {stages:?}"
    );
    assert!(
        stages[1].contains("distroless"),
        "a small runtime image: {}",
        stages[1]
    );
    assert!(
        file.contains("cargo build --release --locked -p rpc-proxy --bin rpc-proxy"),
        "builds the shipped binary from the lock file"
    );
    let user = file
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "USER {user}"
    );
    assert!(file.contains(r#"ENTRYPOINT ["/usr/local/bin/rpc-proxy"]"#));
    // What it copies exists.
    assert!(root.join("examples/proxy/proxy.toml").exists());
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).expect(".dockerignore");
    assert!(
        ignore.lines().any(|l| l == "target"),
        "the build context leaves target/ out"
    );

    if std::env::var("RPC_TEST_DOCKER").as_deref() != Ok("1") {
        return;
    }
    let tag = format!("rpc-proxy-test:{}", std::process::id());
    let status = Command::new("docker")
        .args(["build", "-t", &tag, "."])
        .current_dir(&root)
        .status()
        .expect("docker build");
    assert!(status.success(), "docker build");
    let out = Command::new("docker")
        .args(["run", "--rm", &tag, "--version"])
        .output()
        .expect("docker run");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("rpc-proxy "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
