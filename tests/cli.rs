//! The `replguard` binary as cron, keepalived and people use it: `check` exit codes and output,
//! configuration errors, and `serve` stopping cleanly on SIGTERM.

mod common;

use common::mariadb::{write_password_file, MariaDb, GUARD_PASSWORD};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn replguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replguard"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run replguard")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("replguard.toml");
    std::fs::write(
        &path,
        format!("interval = \"1s\"\ntimeout = \"500ms\"\n{body}"),
    )
    .unwrap();
    path
}

fn instance(dir: &Path, name: &str, port: u16, password: &str) -> String {
    let pw = write_password_file(dir, &format!("{name}.pw"), password);
    format!(
        "[[instance]]\nname = \"{name}\"\nport = {port}\nuser = \"replguard\"\npassword_file = \"{}\"\n",
        pw.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exit_codes_and_output() {
    let (primary, replica) =
        tokio::join!(MariaDb::start("cprimary", 1), MariaDb::start("creplica", 2));
    replica.replicate_from(&primary).await;
    replica.exec("SET GLOBAL read_only = ON").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let one = config(d, &instance(d, "db2", replica.port(), GUARD_PASSWORD));
    let one = one.to_str().unwrap();

    let out = replguard(&["check", "--config", one]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("ok role read-only -> replica"), "{stdout}");
    assert!(stdout.contains("ok sql_thread Yes"), "{stdout}");

    let out = replguard(&["check", "--config", one, "--policy", "primary"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("FAIL read_only ON, want OFF"));

    let out = replguard(&[
        "check", "--config", one, "--policy", "replica", "--format", "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON verdict");
    assert_eq!(
        (v["instance"].as_str(), v["healthy"].as_bool()),
        (Some("db2"), Some(true))
    );

    replica.exec("STOP SLAVE SQL_THREAD").await;
    let out = replguard(&["check", "--config", one, "--instance", "db2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("FAIL sql_thread No, want Yes"));

    // A wrong password: reported as the check user refused, the password nowhere.
    let secret = "N0t-The-Password";
    let bad = config(d, &instance(d, "db2", replica.port(), secret));
    let out = replguard(&["check", "--config", bad.to_str().unwrap()]);
    let all = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("FAIL reachable check user refused: 1045"),
        "{all}"
    );
    assert!(!all.contains(secret), "password leaked: {all}");

    // Usage errors exit 2.
    let two = config(
        d,
        &(instance(d, "a", primary.port(), GUARD_PASSWORD)
            + &instance(d, "b", replica.port(), GUARD_PASSWORD)),
    );
    let out = replguard(&["check", "--config", two.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--instance"),
        "{}",
        text(&out.stderr)
    );
    let out = replguard(&[
        "check",
        "--config",
        two.to_str().unwrap(),
        "--instance",
        "a",
        "--policy",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        replguard(&["check"]).status.code(),
        Some(2),
        "missing --config"
    );
}

#[test]
fn config_errors_exit_2_naming_file_and_key_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pw = d.join("open.pw");
    std::fs::write(&pw, "hunter2").unwrap();
    let path = config(
        d,
        &format!(
            "listen = \"127.0.0.1:1\"\n[[instance]]\nname = \"x\"\nuser = \"u\"\npassword_file = \"{}\"\n",
            pw.display()
        ),
    );
    for cmd in ["serve", "check", "validate"] {
        let out = replguard(&[cmd, "--config", path.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("instance[x].password_file"), "{err}");
        assert!(err.contains("readable by group or others"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    // The same file made right: validate says so, exit 0, without any MySQL to talk to.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = replguard(&["validate", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(": valid (1 instance(s), HTTP on 127.0.0.1:1)"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_and_stops_on_sigterm() {
    let db = MariaDb::start("serve", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = config(
        d,
        &format!(
            "listen = \"127.0.0.1:{port}\"\n{}",
            instance(d, "db", db.port(), GUARD_PASSWORD)
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_replguard"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let start = Instant::now();
    let reply = loop {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await
        {
            drop(s);
            let r = common::guard::request(addr, "GET", "/primary").await;
            if r.status == 200 {
                break r;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "serve never answered 200"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(reply.body.contains("ok read_only OFF"), "{}", reply.body);
    assert_eq!(
        common::guard::request(addr, "GET", "/healthz").await.status,
        200
    );

    // Its port taken: a second serve is a configuration error, exit 2, naming the key.
    let out = replguard(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(": listen: cannot listen on"),
        "{}",
        text(&out.stderr)
    );

    // Stray signals do not end it (their default would, without a word).
    for sig in ["-USR1", "-USR2", "-QUIT", "-HUP"] {
        Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "a stray signal ended serve"
    );
    assert_eq!(
        common::guard::request(addr, "GET", "/healthz").await.status,
        200
    );

    // A client holding half a request must not hold up SIGTERM.
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut half, b"G")
        .await
        .unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "serve ignored SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert!(!stderr.contains(GUARD_PASSWORD), "{stderr}");
}

/// Runs `serve` for a moment on a config whose only server is gone (a warn line is logged),
/// with stderr piped as under systemd; returns stderr.
fn serve_logs(format: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = common::free_port();
    // Nothing listens on port 1: the poll fails and "unhealthy" is logged at warn.
    let path = config(
        d,
        &format!(
            "listen = \"127.0.0.1:{port}\"\n{}policy = \"replica\"\n",
            instance(d, "gone", 1, "x")
        ),
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_replguard"));
    cmd.args(format)
        .args(["serve", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run replguard");
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let out = child.wait_with_output().expect("replguard output");
    text(&out.stderr)
}

#[test]
fn logs_carry_no_colour_off_a_terminal_and_journald_priorities_on_request() {
    let plain = serve_logs(&[], &[]);
    assert!(plain.contains("unhealthy"), "{plain}");
    assert!(
        !plain.contains('\u{1b}'),
        "no ANSI escapes into a pipe: {plain:?}"
    );
    let journald = serve_logs(&["--log-format", "journald"], &[]);
    let lines: Vec<&str> = journald.lines().collect();
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.starts_with('<')),
        "{journald}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains("unhealthy")),
        "warn lines at priority 4: {journald}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("<6>") && l.contains("serving")));
    assert!(!journald.contains('\u{1b}'));
}

#[test]
fn version_names_the_commit() {
    let out = replguard(&["--version"]);
    let v = text(&out.stdout);
    assert!(
        v.starts_with(&format!("replguard {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
}

#[test]
fn systemd_hears_ready_after_the_first_samples_then_watchdog_keepalives() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let socket_path = d.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = common::free_port();
    // A server that is gone: a failed poll is a sample too, and fresh.
    let path = config(
        d,
        &format!(
            "listen = \"127.0.0.1:{port}\"\n{}",
            instance(d, "gone", 1, "x")
        ),
    );
    let start = Instant::now();
    // systemd names the watched process: exec keeps the shell's pid for replguard.
    let mut child = Command::new("sh")
        .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" serve --config \"$1\""])
        .arg(env!("CARGO_BIN_EXE_replguard"))
        .arg(&path)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while got
        .iter()
        .filter(|m: &&String| m.contains("WATCHDOG=1"))
        .count()
        < 3
    {
        let n = socket.recv(&mut buf).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!("no notification ({e}); so far {got:?}")
        });
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        assert!(start.elapsed() < Duration::from_secs(15), "{got:?}");
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(got[0].contains("READY=1"), "readiness first: {got:?}");
}
