//! The failure replguard exists for, end to end: HAProxy in front of a MariaDB primary and a
//! `backup` server, each watched by its own replguard (policy `primary` on the primary, `backup`
//! on the backup). Every scenario asserts on what a client connected through HAProxy reads.

mod common;

use common::guard::{instance_block, Guard, FAST};
use common::haproxy::{free_port, Haproxy};
use common::mariadb::MariaDb;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// HAProxy's classic listen section: the primary, and a `backup` server.
struct Site {
    primary: MariaDb,
    backup: MariaDb,
    primary_guard: Guard,
    backup_guard: Guard,
    haproxy: Haproxy,
    /// HAProxy's MySQL port.
    front: u16,
}

async fn backup_guard(listen: Option<SocketAddr>, backup: &MariaDb, state_dir: &Path) -> Guard {
    let globals = format!("{FAST}state_dir = \"{}\"\n", state_dir.display());
    Guard::start_on(listen, &globals, |dir| {
        instance_block(dir, "backup", backup, "backup", "")
    })
    .await
}

impl Site {
    async fn start(state_dir: &Path) -> Site {
        let (primary, backup) =
            tokio::join!(MariaDb::start("fprimary", 1), MariaDb::start("fbackup", 2));
        backup.replicate_from(&primary).await;
        backup.exec("SET GLOBAL read_only = ON").await;
        primary.create_app_table().await;
        let primary_guard = Guard::start(FAST, |dir| {
            instance_block(dir, "primary", &primary, "primary", "")
        })
        .await;
        let backup_guard = backup_guard(None, &backup, state_dir).await;
        let front = free_port();
        let haproxy = Haproxy::start(&format!(
            "listen mysql\n    bind 127.0.0.1:{front}\n    option httpchk GET /mysqlchk/\n    \
             http-check expect status 200\n    \
             default-server inter 200 rise 2 fall 2 on-marked-down shutdown-sessions\n    \
             server primary 127.0.0.1:{} check port {}\n    \
             server backup 127.0.0.1:{} check port {} backup\n",
            primary.port(),
            primary_guard.addr.port(),
            backup.port(),
            backup_guard.addr.port(),
        ))
        .await;
        let site = Site {
            primary,
            backup,
            primary_guard,
            backup_guard,
            haproxy,
            front,
        };
        site.haproxy
            .wait_status("mysql", "primary", "UP", LIMIT)
            .await;
        site
    }

    /// Inserts ids `from..to` on the primary.
    async fn write(&self, from: u32, to: u32) {
        let values: Vec<String> = (from..to).map(|i| format!("({i})")).collect();
        self.primary
            .exec(&format!("INSERT INTO app.t VALUES {}", values.join(",")))
            .await;
    }

    /// What a client reads through HAProxy: (server_id, rows in app.t), or the connect error.
    async fn client_reads(&self) -> Result<(u32, u64), String> {
        common::client::reads(&self.backup, self.front).await
    }

    /// Inserts ids `from..to` on the primary and waits until the backup has them and HAProxy
    /// has the backup UP.
    async fn write_caught_up(&self, from: u32, to: u32) {
        self.write(from, to).await;
        self.backup.wait_caught_up(&self.primary).await;
        self.haproxy
            .wait_status("mysql", "backup", "UP", LIMIT)
            .await;
    }

    async fn backup_verdict(&self) -> common::guard::Reply {
        self.backup_guard.get("/backup").await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caught_up_backup_takes_over_with_every_row() {
    let state = tempfile::tempdir().unwrap();
    let mut site = Site::start(state.path()).await;
    site.write_caught_up(0, 100).await;
    assert_eq!(
        site.client_reads().await,
        Ok((1, 100)),
        "the primary serves while alive"
    );

    site.primary.kill();
    site.haproxy
        .wait_status("mysql", "primary", "DOWN", LIMIT)
        .await;
    let primary = site.primary_guard.get("/mysqlchk/").await;
    assert!(primary.reason.starts_with("reachable "), "{primary:#?}");
    site.backup_guard.wait_polls("backup", 2).await;
    let gate = site.backup_verdict().await;
    assert_eq!(gate.status, 200, "{gate:#?}");
    let line = gate.line("source_lost").expect("source_lost line");
    assert!(
        line.starts_with("ok source_lost since ")
            && line.ends_with("last lag 0s, relay log applied"),
        "{line}"
    );
    assert_eq!(site.haproxy.server("mysql", "backup").await.status, "UP");
    assert_eq!(
        site.client_reads().await,
        Ok((2, 100)),
        "the backup serves every row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_backup_never_serves_stale_data_and_returns_once_caught_up() {
    let state = tempfile::tempdir().unwrap();
    let mut site = Site::start(state.path()).await;
    site.write_caught_up(0, 100).await;

    // The backup falls behind: its SQL thread stops while the primary keeps writing.
    site.backup.exec("STOP SLAVE SQL_THREAD").await;
    site.write(100, 150).await;
    site.haproxy
        .wait_status("mysql", "backup", "DOWN", LIMIT)
        .await;

    // Scenario 2: the primary dies. HAProxy has no server; the client never reads stale data.
    site.primary.kill();
    site.haproxy
        .wait_status("mysql", "primary", "DOWN", LIMIT)
        .await;
    let read = site.client_reads().await;
    assert!(
        read.is_err(),
        "a client must not reach the lagging backup: {read:?}"
    );

    // Scenario 3a: its relay log gets applied, but the source is still dead. It stays DOWN:
    // it lacks what the source never shipped.
    site.backup.exec("START SLAVE SQL_THREAD").await;
    site.backup_guard.wait_polls("backup", 3).await;
    let gate = site.backup_verdict().await;
    assert_eq!(gate.status, 503, "{gate:#?}");
    assert!(gate.reason.contains("last lag NULL (unknown)"), "{gate:#?}");
    assert_eq!(site.haproxy.server("mysql", "backup").await.status, "DOWN");
    assert!(site.client_reads().await.is_err());

    // Scenario 3b: the source comes back, the backup reconnects and catches up: UP again.
    site.primary.restart().await;
    site.backup.wait_caught_up(&site.primary).await;
    site.haproxy
        .wait_status("mysql", "backup", "UP", LIMIT)
        .await;
    assert_eq!(site.backup_verdict().await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_backup_guard_trusts_its_state_file_only_if_nothing_moved() {
    let state = tempfile::tempdir().unwrap();
    let mut site = Site::start(state.path()).await;
    site.write_caught_up(0, 100).await;
    site.primary.kill();
    site.haproxy
        .wait_status("mysql", "primary", "DOWN", LIMIT)
        .await;
    site.backup_guard.wait_polls("backup", 2).await;
    assert_eq!(site.backup_verdict().await.status, 200);

    // replguard on the backup restarts after the primary died: memory comes from the file.
    let addr = site.backup_guard.addr;
    site.backup_guard.stop().await;
    site.backup_guard = backup_guard(Some(addr), &site.backup, state.path()).await;
    let gate = site
        .backup_guard
        .wait_for("/backup", LIMIT, |r| r.status == 200)
        .await;
    let line = gate.line("source_lost").expect("source_lost line");
    assert!(
        line.ends_with("(remembered across a replguard restart)"),
        "{line}"
    );
    site.haproxy
        .wait_status("mysql", "backup", "UP", LIMIT)
        .await;
    assert_eq!(site.client_reads().await, Ok((2, 100)));

    // While it is stopped again, someone writes on the backup: the position moves, the file is
    // void, and the backup stays out.
    site.backup_guard.stop().await;
    site.backup.exec("INSERT INTO app.t VALUES (1000)").await;
    site.backup_guard = backup_guard(Some(addr), &site.backup, state.path()).await;
    site.backup_guard.wait_polls("backup", 3).await;
    let gate = site.backup_verdict().await;
    assert_eq!(gate.status, 503, "{gate:#?}");
    assert!(gate.reason.contains("never seen connected"), "{gate:#?}");
    site.haproxy
        .wait_status("mysql", "backup", "DOWN", LIMIT)
        .await;
    assert!(site.client_reads().await.is_err());
}
