//! Runs replguard in-process against harness databases and asks it over real HTTP.
//!
//! The guard is started with `serve::serve` on a port-0 listener and a cancellation token, as
//! `replguard serve` does after loading its config file. Requests go over a plain TCP socket so
//! tests see the raw status line (its reason phrase is what HAProxy logs).

#![allow(dead_code)]

use replguard::config::Config;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::mariadb::MariaDb;

/// One HTTP answer as a client on the wire sees it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// The status line's reason phrase.
    pub reason: String,
    pub body: String,
}

impl Reply {
    /// The body line for check `name` (`ok name ...`, `FAIL name ...` or, not judged,
    /// `-- name ...`).
    pub fn line(&self, name: &str) -> Option<&str> {
        self.body.lines().find(|l| {
            let mut w = l.split(' ');
            matches!(w.next(), Some("ok" | "FAIL" | "--")) && w.next() == Some(name)
        })
    }
}

/// A running in-process guard.
pub struct Guard {
    pub addr: SocketAddr,
    /// The agent-check listener (always on, on a free port).
    pub agent: SocketAddr,
    pub config: Config,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    dir: tempfile::TempDir,
    /// Bumped to reload, as SIGHUP does.
    reload: tokio::sync::watch::Sender<u64>,
}

/// An `[[instance]]` block for `db` with the guard user and a password file in `dir`.
pub fn instance_block(dir: &Path, name: &str, db: &MariaDb, policy: &str, extra: &str) -> String {
    let pw = super::mariadb::write_password_file(
        dir,
        &format!("{name}.password"),
        super::mariadb::GUARD_PASSWORD,
    );
    format!(
        "[[instance]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\n\
         password_file = \"{}\"\npolicy = \"{policy}\"\n{extra}\n",
        db.port(),
        super::mariadb::GUARD_USER,
        pw.display()
    )
}

/// An `[[instance]]` block for the server on `port` as `user`, whose password goes into a
/// mode-0600 file in `dir`.
pub fn user_block(dir: &Path, port: u16, user: &str, password: &str, policy: &str) -> String {
    let pw = super::mariadb::write_password_file(dir, &format!("{user}.password"), password);
    format!(
        "[[instance]]\nname = \"db\"\nport = {port}\nuser = \"{user}\"\n\
         password_file = \"{}\"\npolicy = \"{policy}\"\n",
        pw.display()
    )
}

/// A config file's text: `listen` on `addr` (unless `globals` sets it), `globals`, `blocks`.
fn config_text(addr: SocketAddr, globals: &str, blocks: &str) -> String {
    let listen = if globals.contains("listen") {
        String::new()
    } else {
        format!("listen = \"{addr}\"\n")
    };
    format!("{listen}{globals}\n{blocks}")
}

/// Fast timing for tests: polls every 300 ms, each step bounded by 250 ms.
pub const FAST: &str = "interval = \"300ms\"\ntimeout = \"250ms\"\nmax_sample_age = \"1s\"\n";

impl Guard {
    /// Starts a guard with `globals` (top-level keys) and instance blocks built by `blocks`,
    /// which receives the directory for password files.
    pub async fn start(globals: &str, blocks: impl FnOnce(&Path) -> String) -> Guard {
        Guard::start_on(None, globals, blocks).await
    }

    /// Like [`Guard::start`], on a given address (to stand in for a restarted guard).
    pub async fn start_on(
        listen: Option<SocketAddr>,
        globals: &str,
        blocks: impl FnOnce(&Path) -> String,
    ) -> Guard {
        // Guard logs go through libtest's capture: shown only for a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "replguard=debug".into()),
            )
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = TcpListener::bind(listen.unwrap_or(([127, 0, 0, 1], 0).into()))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        // The config names the address really served, as a deployed one does (`maintenance`
        // asks the daemon there).
        let text = config_text(addr, globals, &blocks(dir.path()));
        let path = dir.path().join("replguard.toml");
        std::fs::write(&path, &text).expect("write config");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("config refused: {e}\n{text}"));
        let agent_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind agent");
        let agent = agent_listener.local_addr().expect("agent addr");
        let shutdown = CancellationToken::new();
        let (reload, reloads) = tokio::sync::watch::channel(0u64);
        let serving = replguard::serve_reloading(
            config.clone(),
            listener,
            Some(agent_listener),
            shutdown.clone(),
            Some(reloads),
        );
        let task = tokio::spawn(async move {
            serving.await.expect("no poller died");
        });
        Guard {
            addr,
            agent,
            config,
            shutdown,
            task,
            dir,
            reload,
        }
    }

    /// Replaces the config file with `globals` and `blocks` (as [`Guard::start`] takes them)
    /// and reloads, as `kill -HUP` does. Returns at once: the reload happens in the guard.
    pub fn reload(&self, globals: &str, blocks: impl FnOnce(&Path) -> String) {
        let text = config_text(self.addr, globals, &blocks(self.dir.path()));
        std::fs::write(&self.config.path, text).expect("write config");
        self.reload.send_modify(|n| *n += 1);
    }

    /// The `/status` document.
    pub async fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/status").await.body).expect("status is JSON")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `GET path` over a fresh connection.
    pub async fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path).await
    }

    /// Polls `path` every 20 ms until `done` holds, panicking with the last reply after `limit`.
    pub async fn wait_for(
        &self,
        path: &str,
        limit: Duration,
        done: impl Fn(&Reply) -> bool,
    ) -> Reply {
        let start = Instant::now();
        loop {
            let r = self.get(path).await;
            if done(&r) {
                return r;
            }
            if start.elapsed() > limit {
                panic!("{path}: condition not met within {limit:?}; last reply: {r:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many polls of `instance` have finished, from `/status`.
    pub async fn polls(&self, instance: &str) -> u64 {
        let r = self.get("/status").await;
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("status is JSON");
        v["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .find(|i| i["name"] == instance)
            .and_then(|i| i["polls"].as_u64())
            .unwrap_or_else(|| panic!("no instance {instance} in /status"))
    }

    /// Waits until `n` more polls of `instance` have finished than now.
    pub async fn wait_polls(&self, instance: &str, n: u64) {
        let target = self.polls(instance).await + n;
        let limit = self.config.interval * (n as u32 + 4) + self.config.timeout * (n as u32 * 3);
        let start = Instant::now();
        while self.polls(instance).await < target {
            assert!(
                start.elapsed() < limit * 4,
                "{instance}: {n} polls did not finish"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the guard as SIGTERM would, and waits for it to finish.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("guard stops within 10s")
            .expect("guard task did not panic");
    }
}

/// Runs `replguard ARGS --config C` where C has one instance, `db`; exit code and stdout.
pub fn cli(db: &MariaDb, args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let pw = super::mariadb::write_password_file(dir.path(), "pw", super::mariadb::GUARD_PASSWORD);
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[instance]]\nname = \"r\"\nport = {}\nuser = \"replguard\"\npassword_file = \"{}\"\n",
            db.port(),
            pw.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_replguard"))
        .args(args)
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Asks the agent-check listener, sending `send` first (as HAProxy's `agent-send`).
pub async fn agent(addr: SocketAddr, send: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect to agent");
    s.write_all(send.as_bytes()).await.expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("agent reply");
    out
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the whole answer.
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let mut s = TcpStream::connect(addr).await.expect("connect to guard");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: guard\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read reply");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header/body separator");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let status_line = head.lines().next().expect("status line");
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status = parts
        .next()
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let reason = parts.next().unwrap_or("").to_string();
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    Reply {
        status,
        reason,
        // Decoded as bytes, then read lossily: HAProxy's stats CSV has been seen to carry a
        // stray non-UTF-8 byte after an agent's text (chunk sizes count bytes).
        body: String::from_utf8_lossy(&if chunked {
            dechunk(body)
        } else {
            body.to_vec()
        })
        .into_owned(),
    }
}

/// Decodes a `Transfer-Encoding: chunked` body (HAProxy's stats page sends one), as bytes.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        if size == 0 {
            break;
        }
        let after = &rest[eol + 2..];
        out.extend_from_slice(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}
