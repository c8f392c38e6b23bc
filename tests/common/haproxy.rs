//! Runs a real `haproxy` (Debian's package) in the foreground on loopback, with a stats page
//! whose CSV tells each server's state and last check result.
//!
//! Panics loudly when haproxy is not installed; never skips. `Drop` kills the process.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Haproxy {
    child: Child,
    pub stats: SocketAddr,
    dir: tempfile::TempDir,
}

/// One server's row from the stats CSV.
#[derive(Debug, Clone)]
pub struct ServerState {
    /// `UP`, `DOWN`, `UP 1/2`, `no check`, ...
    pub status: String,
    /// `check_status`, e.g. `L7OK`, `L7STS`.
    pub check_status: String,
    /// `last_chk`: the check's info text; for HTTP checks, the reason phrase.
    pub last_chk: String,
    /// `weight`: the effective weight (an agent's `N%` scales the configured weight).
    pub weight: String,
}

pub fn haproxy_path() -> PathBuf {
    for p in ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"] {
        if Path::new(p).is_file() {
            return p.into();
        }
    }
    panic!("haproxy not found: apt-get install haproxy (deploy/sandbox/install-deps.sh does it)");
}

pub use super::free_port;

impl Haproxy {
    /// Starts haproxy with `sections` (listen/frontend/backend text) after common defaults and
    /// a stats page on a free port; waits until the stats page answers.
    pub async fn start(sections: &str) -> Haproxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let stats_port = free_port();
        let cfg = format!(
            "global\n    log stderr format raw local0 info\n\n\
             defaults\n    mode tcp\n    log global\n    timeout connect 2s\n    timeout client 30s\n    \
             timeout server 30s\n    timeout check 1s\n\n\
             listen stats\n    mode http\n    bind 127.0.0.1:{stats_port}\n    stats enable\n    stats uri /\n\n\
             {sections}\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, &cfg).expect("write haproxy.cfg");
        let child = Command::new(haproxy_path())
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("haproxy.log")).expect("log file"))
            .spawn()
            .expect("spawn haproxy");
        let h = Haproxy {
            child,
            stats: format!("127.0.0.1:{stats_port}").parse().unwrap(),
            dir,
        };
        let start = Instant::now();
        while tokio::net::TcpStream::connect(h.stats).await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "haproxy did not start:\n{cfg}\n{}",
                h.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        h
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    /// The state of `proxy/server` from the stats CSV.
    pub async fn server(&self, proxy: &str, server: &str) -> ServerState {
        let reply = super::guard::request(self.stats, "GET", "/;csv").await;
        let mut lines = reply.body.lines();
        let header: Vec<&str> = lines
            .next()
            .expect("csv header")
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
        for line in lines {
            let f = csv_fields(line);
            if f.first().map(String::as_str) == Some(proxy)
                && f.get(1).map(String::as_str) == Some(server)
            {
                let get = |name: &str| f.get(col(name)).cloned().unwrap_or_default();
                return ServerState {
                    status: get("status"),
                    check_status: get("check_status"),
                    last_chk: get("last_chk"),
                    weight: get("weight"),
                };
            }
        }
        panic!("no server {proxy}/{server} in stats:\n{}", reply.body);
    }

    /// Waits until `proxy/server` has `status` (e.g. "UP", "DOWN").
    pub async fn wait_status(
        &self,
        proxy: &str,
        server: &str,
        status: &str,
        limit: Duration,
    ) -> ServerState {
        // "DOWN (agent)", "UP 1/2": the word is what counts. HAProxy starts servers UP before
        // any check ran: UP counts only once a check has passed (L7OK).
        self.wait_until(proxy, server, status, limit, |s| {
            s.status.split(' ').next() == Some(status)
                && (status != "UP" || s.check_status == "L7OK")
        })
        .await
    }

    /// Waits until the state of `proxy/server` satisfies `want` (described by `what`).
    pub async fn wait_until(
        &self,
        proxy: &str,
        server: &str,
        what: &str,
        limit: Duration,
        want: impl Fn(&ServerState) -> bool,
    ) -> ServerState {
        let start = Instant::now();
        loop {
            let s = self.server(proxy, server).await;
            if want(&s) {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "{proxy}/{server} not {what} within {limit:?}: {s:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Splits one CSV line, honouring double quotes (a reason phrase may contain commas).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
