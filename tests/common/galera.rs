//! A real Galera cluster on loopback for tests: Debian's `galera-4` provider and `mariadbd`,
//! nodes copied from the harness template datadir, every port (client, gcomm, IST, SST) free
//! on 127.0.0.1, short `evs.*` timeouts so partitions are seen in seconds.
//!
//! The first node bootstraps a new cluster; the others join it by rsync SST, which needs their
//! data directories to belong to the user `mariadbd` runs as: as root, the nodes run as `mysql`
//! and their directories are given to it. Dropping a node SIGKILLs it (a watchdog does too if the
//! test process dies).

#![allow(dead_code)]

use super::free_port;
use super::mariadb::{copy_dir, mariadbd_path, running_as_root, tail, template_dir, watchdog};
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Galera provider library: `apt-get install galera-4`.
pub fn provider() -> PathBuf {
    for p in [
        "/usr/lib/galera/libgalera_smm.so",
        "/usr/lib/libgalera_smm.so",
        "/usr/lib/galera-4/libgalera_smm.so",
    ] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("libgalera_smm.so not found: apt-get install galera-4 (deploy/sandbox/install-deps.sh does it)");
}

/// A guard's `[[instance]]` block for a node on `port` with `policy` (and `extra` keys).
pub fn instance_block(dir: &Path, name: &str, port: u16, policy: &str, extra: &str) -> String {
    let pw = super::mariadb::write_password_file(
        dir,
        &format!("{name}.password"),
        super::mariadb::GUARD_PASSWORD,
    );
    format!(
        "[[instance]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{}\"\n\
         password_file = \"{}\"\npolicy = \"{policy}\"\n{extra}\n",
        super::mariadb::GUARD_USER,
        pw.display()
    )
}

const READY: Duration = Duration::from_secs(60);

/// One Galera node.
pub struct Node {
    pub name: String,
    dir: tempfile::TempDir,
    pub port: u16,
    gcomm: u16,
    ist: u16,
    sst: u16,
    child: Option<Child>,
    watchdog: Option<Child>,
    /// `gcomm://…` of the whole cluster, to rejoin it.
    cluster_address: String,
}

/// A running cluster.
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `n` nodes (the first bootstraps, the others join one after another) and waits
    /// until every one is Synced.
    pub async fn start(n: usize) -> Cluster {
        let mut nodes: Vec<Node> = (0..n).map(|i| Node::new(&format!("g{}", i + 1))).collect();
        let peers: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.gcomm))
            .collect();
        let address = format!("gcomm://{}", peers.join(","));
        nodes[0].spawn(&address, true);
        nodes[0].wait_synced().await;
        // One joiner at a time: two rsync SSTs from one donor at once have failed on a loaded
        // machine ("the rsync or stunnel daemon terminated unexpectedly" on a joiner).
        for node in nodes.iter_mut().skip(1) {
            node.spawn(&address, false);
            node.wait_synced().await;
        }
        Cluster { nodes }
    }
}

impl Node {
    fn new(name: &str) -> Node {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rg-{name}-"))
            .tempdir()
            .expect("node dir");
        copy_dir(&template_dir(), dir.path()).expect("copy the template datadir");
        if running_as_root() {
            // rsync SST runs as the server's user and must own the datadir.
            let ok = Command::new("chown")
                .args(["-R", "mysql:mysql"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown -R mysql:mysql {}", dir.path().display());
            let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
        }
        Node {
            name: name.to_string(),
            dir,
            port: free_port(),
            gcomm: free_port(),
            ist: free_port(),
            sst: free_port(),
            child: None,
            watchdog: None,
            cluster_address: String::new(),
        }
    }

    /// Starts a killed node again: it rejoins the cluster (IST from a donor's gcache, or SST).
    /// Returns at once; see [`Node::wait_synced`].
    pub fn rejoin(&mut self) {
        assert!(self.child.is_none(), "{}: still running", self.name);
        let address = self.cluster_address.clone();
        self.spawn(&address, false);
    }

    pub fn datadir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self, cluster_address: &str, bootstrap: bool) {
        self.cluster_address = cluster_address.to_string();
        let d = self.dir.path();
        let options = format!(
            "gmcast.listen_addr=tcp://127.0.0.1:{g};ist.recv_addr=127.0.0.1:{i};\
             evs.keepalive_period=PT0.5S;evs.suspect_timeout=PT2S;evs.inactive_timeout=PT3S;\
             evs.inactive_check_period=PT0.5S;evs.install_timeout=PT2S;\
             evs.join_retrans_period=PT0.5S;gmcast.peer_timeout=PT1S;gcache.size=16M",
            g = self.gcomm,
            i = self.ist
        );
        let mut cmd = Command::new(mariadbd_path());
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", d.display()))
            .arg(format!("--socket={}", d.join("s.sock").display()))
            .arg(format!("--tmpdir={}", d.display()))
            .arg(format!("--port={}", self.port))
            // Its own server_id (g2 -> 2), so an application can tell which node took a write.
            .arg(format!(
                "--server-id={}",
                self.name.trim_start_matches(|c: char| !c.is_ascii_digit())
            ))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--pid-file={}", d.join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", d.join("error.log").display()))
            .arg("--innodb-buffer-pool-size=16M")
            .arg("--innodb-log-file-size=8M")
            .arg("--innodb-flush-log-at-trx-commit=2")
            .arg("--innodb-doublewrite=0")
            .arg("--innodb-autoinc-lock-mode=2")
            .arg("--binlog-format=ROW")
            .arg("--performance-schema=OFF")
            .arg("--skip-name-resolve")
            .arg("--max-connections=100")
            .arg("--wsrep-on=ON")
            .arg(format!("--wsrep-provider={}", provider().display()))
            .arg("--wsrep-cluster-name=replguard-test")
            .arg(format!("--wsrep-node-name={}", self.name))
            .arg(format!("--wsrep-cluster-address={cluster_address}"))
            .arg(format!("--wsrep-node-address=127.0.0.1:{}", self.gcomm))
            .arg("--wsrep-sst-method=rsync")
            .arg(format!(
                "--wsrep-sst-receive-address=127.0.0.1:{}",
                self.sst
            ))
            .arg(format!("--wsrep-provider-options={options}"));
        if bootstrap {
            cmd.arg("--wsrep-new-cluster");
        }
        if running_as_root() {
            cmd.arg("--user=mysql");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: spawning mariadbd: {e}", self.name));
        self.watchdog = watchdog(child.id());
        self.child = Some(child);
    }

    pub fn admin_opts(&self) -> Opts {
        OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some(super::mariadb::ADMIN_USER))
            .pass(Some(super::mariadb::ADMIN_PASSWORD))
            .prefer_socket(false)
            .into()
    }

    /// A status variable, or `None` while the node does not answer.
    pub async fn status(&self, name: &str) -> Option<String> {
        let mut c = Conn::new(self.admin_opts()).await.ok()?;
        let v: Option<(String, String)> = c
            .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
            .await
            .ok()?;
        let _ = c.disconnect().await;
        v.map(|(_, v)| v)
    }

    /// Waits until the node answers and reports `Synced`.
    pub async fn wait_synced(&self) {
        let start = Instant::now();
        loop {
            if self.status("wsrep_local_state_comment").await.as_deref() == Some("Synced") {
                return;
            }
            assert!(
                start.elapsed() < READY,
                "{}: not Synced within {READY:?}; error.log:\n{}",
                self.name,
                tail(&self.dir.path().join("error.log"), 40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn exec(&self, sql: &str) {
        let mut c = Conn::new(self.admin_opts())
            .await
            .unwrap_or_else(|e| panic!("{}: connect: {e}", self.name));
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {sql}: {e}", self.name));
        let _ = c.disconnect().await;
    }

    /// SIGKILLs the node.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
