//! A real etcd cluster on loopback (Debian's `etcd-server`): three members on free ports, each
//! with its own data directory, stopped (SIGKILL) on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn etcd_path() -> PathBuf {
    for p in ["/usr/bin/etcd", "/usr/local/bin/etcd"] {
        if std::path::Path::new(p).is_file() {
            return p.into();
        }
    }
    panic!("etcd not found: apt-get install etcd-server (deploy/sandbox/install-deps.sh does it)");
}

pub struct Member {
    pub name: String,
    pub client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    dir: PathBuf,
    cluster: String,
}

pub struct Etcd {
    pub members: Vec<Member>,
    _dir: tempfile::TempDir,
}

impl Member {
    fn spawn(&mut self, state: &str) {
        let log = std::fs::File::create(self.dir.with_extension("log")).expect("etcd log");
        let child = Command::new(etcd_path())
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.dir)
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{}", self.client_port),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{}", self.client_port),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", self.peer_port),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", self.peer_port),
                "--initial-cluster",
                &self.cluster,
                "--initial-cluster-state",
                state,
                "--initial-cluster-token",
                "replguard-test",
                // Fast elections on loopback.
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn("existing");
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Etcd {
    /// Starts a `n`-member cluster and waits until a client can write to it.
    pub async fn start(n: usize) -> Etcd {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<(u16, u16)> = (0..n)
            .map(|_| (super::free_port(), super::free_port()))
            .collect();
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Member> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| Member {
                name: format!("e{i}"),
                client_port: *client,
                peer_port: *peer,
                child: None,
                dir: dir.path().join(format!("e{i}")),
                cluster: cluster.clone(),
            })
            .collect();
        for m in &mut members {
            m.spawn("new");
        }
        let etcd = Etcd { members, _dir: dir };
        etcd.wait_writable(Duration::from_secs(30)).await;
        etcd
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// `etcd_endpoints = [...]` for a guard's `[coordination]`.
    pub fn toml_endpoints(&self) -> String {
        let list: Vec<String> = self
            .endpoints()
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect();
        format!("etcd_endpoints = [{}]", list.join(", "))
    }

    pub async fn wait_writable(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let ok = async {
                let mut c = etcd_client::Client::connect(
                    self.endpoints(),
                    Some(
                        etcd_client::ConnectOptions::new()
                            .with_connect_timeout(Duration::from_secs(1))
                            .with_timeout(Duration::from_secs(1)),
                    ),
                )
                .await
                .ok()?;
                c.put("/replguard-test/ready", "1", None).await.ok()
            }
            .await
            .is_some();
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd not writable after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes `value` at `key` (no lease), as an operator or an earlier guard would have.
    pub async fn put(&self, key: &str, value: &str) {
        let mut c = etcd_client::Client::connect(self.endpoints(), None)
            .await
            .expect("connect to etcd");
        c.put(key, value, None).await.expect("put");
    }

    /// Waits (up to `limit`) until `key` is gone; panics with `what` otherwise.
    pub async fn wait_gone(&self, key: &str, limit: Duration, what: &str) {
        let start = std::time::Instant::now();
        while self.get(key).await.is_some() {
            assert!(start.elapsed() < limit, "{key}: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of `key`, if any. Asks the members still running, retrying for a second: a
    /// request can land on a member that is restarting.
    pub async fn get(&self, key: &str) -> Option<String> {
        let live: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(Member::endpoint)
            .collect();
        for _ in 0..10 {
            let got = async {
                let mut c = etcd_client::Client::connect(&live, None).await.ok()?;
                c.get(key, None).await.ok()
            }
            .await;
            if let Some(r) = got {
                return r
                    .kvs()
                    .first()
                    .map(|kv| kv.value_str().unwrap_or("").to_string());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("etcd did not answer get {key} within a second");
    }
}
