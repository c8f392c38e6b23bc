//! Semi-synchronous replication on real MariaDB (issue 23): which acknowledged commits a
//! backup can be missing (`semi_sync`, with `require_semi_sync`), and a primary stuck on acks
//! (`semi_sync_wait`).

mod common;

use common::guard::{instance_block, Guard, FAST};
use common::mariadb::MariaDb;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// Semi-sync on `p` as the README recommends (AFTER_SYNC), with `timeout_ms`.
async fn source_semi_sync(p: &MariaDb, timeout_ms: u64) {
    p.exec(&format!(
        "SET GLOBAL rpl_semi_sync_master_enabled = ON; \
         SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC; \
         SET GLOBAL rpl_semi_sync_master_timeout = {timeout_ms}"
    ))
    .await;
}

/// `r` as an acking replica (`on`) or not: the IO thread reconnects for it to take effect.
async fn replica_semi_sync(r: &MariaDb, on: bool) {
    r.exec(&format!(
        "SET GLOBAL rpl_semi_sync_slave_enabled = {}; STOP SLAVE IO_THREAD; START SLAVE IO_THREAD",
        if on { "ON" } else { "OFF" }
    ))
    .await;
}

async fn status(db: &MariaDb, name: &str) -> String {
    db.query_value(&format!(
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = '{name}'"
    ))
    .await
    .unwrap_or_default()
}

async fn wait_status(db: &MariaDb, name: &str, want: &str) {
    let start = std::time::Instant::now();
    while status(db, name).await != want {
        assert!(start.elapsed() < LIMIT, "{name} never became {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_gate_knows_whether_acknowledged_commits_can_be_missing() {
    let (mut p, r) = tokio::join!(MariaDb::start("ssp", 1), MariaDb::start("ssr", 2));
    r.replicate_from(&p).await;
    p.create_app_table().await;
    source_semi_sync(&p, 600_000).await;
    replica_semi_sync(&r, true).await;
    wait_status(&p, "RPL_SEMI_SYNC_MASTER_CLIENTS", "1").await;
    p.exec("INSERT INTO app.t VALUES (1)").await;
    r.wait_caught_up(&p).await;
    let g = Guard::start(FAST, |dir| {
        instance_block(dir, "r", &r, "backup", "require_semi_sync = true\n")
    })
    .await;

    // Acking, AFTER_SYNC: no acknowledged commit can be missing; also after the source dies.
    let ok = g.wait_for("/backup", LIMIT, |r| r.status == 200).await;
    let line = ok.line("semi_sync").unwrap_or_default().to_string();
    assert!(
        line.starts_with("ok semi_sync source 127.0.0.1:")
            && line.ends_with("was semi-sync (AFTER_SYNC), this server acking: no acknowledged commit can be missing"),
        "{}",
        ok.body
    );
    let checklist = g.get("/promotion").await;
    assert!(
        checklist
            .line("semi_sync")
            .is_some_and(|l| l.starts_with("ok semi_sync")),
        "{}",
        checklist.body
    );
    p.kill();
    let lost = g
        .wait_for("/backup", LIMIT, |r| r.body.contains("ok source_lost"))
        .await;
    assert_eq!(lost.status, 200, "{}", lost.body);
    assert!(
        lost.line("semi_sync").is_some_and(
            |l| l.starts_with("ok semi_sync") && l.contains("at the source's last reading")
        ),
        "{}",
        lost.body
    );

    // The source returns with semi-sync, but this replica no longer acks: a commit times out
    // and semi-sync falls back to asynchronous. With require_semi_sync the gate fails, and
    // keeps failing once the source is gone.
    p.restart().await;
    source_semi_sync(&p, 300).await;
    replica_semi_sync(&r, false).await;
    p.exec("INSERT INTO app.t VALUES (2)").await;
    wait_status(&p, "RPL_SEMI_SYNC_MASTER_STATUS", "OFF").await;
    r.wait_caught_up(&p).await;
    let fallen = g
        .wait_for("/backup", LIMIT, |r| {
            r.line("semi_sync")
                .is_some_and(|l| l.contains("asynchronous"))
        })
        .await;
    assert_eq!(fallen.status, 503, "{}", fallen.body);
    let line = fallen.line("semi_sync").unwrap();
    assert!(
        line.starts_with("FAIL semi_sync source 127.0.0.1:")
            && line.contains(" asynchronous since ")
            && line.contains("fallen back to asynchronous")
            && line.ends_with("(require_semi_sync)"),
        "{line}"
    );
    let events = g.get("/events").await.body;
    assert!(events.contains("semi_sync_off"), "{events}");
    p.kill();
    let lost = g
        .wait_for("/backup", LIMIT, |r| r.body.contains("source_lost"))
        .await;
    assert_eq!(lost.status, 503, "{}", lost.body);
    assert!(
        lost.line("semi_sync").is_some_and(
            |l| l.starts_with("FAIL semi_sync") && l.contains("at the source's last reading")
        ),
        "{}",
        lost.body
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_stuck_on_acks_fails_until_an_ack_arrives() {
    let (p, r) = tokio::join!(MariaDb::start("ssw", 1), MariaDb::start("ssx", 2));
    r.replicate_from(&p).await;
    p.create_app_table().await;
    r.wait_caught_up(&p).await;
    // A long timeout, and no acking replica: every commit hangs.
    source_semi_sync(&p, 120_000).await;
    r.exec("STOP SLAVE IO_THREAD").await;
    let g = Guard::start(FAST, |dir| {
        instance_block(dir, "p", &p, "primary", "max_semi_sync_wait = \"2s\"\n")
    })
    .await;
    g.wait_for("/primary", LIMIT, |r| r.status == 200).await;
    let opts = p.admin_opts();
    let commit = tokio::spawn(async move {
        use mysql_async::prelude::Queryable;
        let mut c = mysql_async::Conn::new(opts).await.unwrap();
        c.query_drop("INSERT INTO app.t VALUES (1)").await
    });
    let started = std::time::Instant::now();
    let stuck = g.wait_for("/primary", LIMIT, |r| r.status == 503).await;
    let out_after = started.elapsed();
    eprintln!("stuck primary failed after {out_after:?} (max_semi_sync_wait 2s)");
    assert!(
        stuck
            .reason
            .starts_with("semi_sync_wait 1 sessions waiting for an ack for ")
            && stuck.reason.contains("> max_semi_sync_wait 2s (since "),
        "{}",
        stuck.body
    );
    assert!(!commit.is_finished(), "the commit should be hanging");
    // An acking replica connects: the commit completes, the primary passes again.
    replica_semi_sync(&r, true).await;
    let done = tokio::time::timeout(LIMIT, commit)
        .await
        .expect("the commit completes");
    assert!(done.unwrap().is_ok());
    let back = g.wait_for("/primary", LIMIT, |r| r.status == 200).await;
    assert!(
        back.line("semi_sync_wait")
            .is_some_and(|l| l
                .starts_with("ok semi_sync_wait no commit waiting for an ack (1 acking replicas)")),
        "{}",
        back.body
    );
    let metrics = g.get("/metrics").await.body;
    assert!(
        metrics.contains("replguard_semi_sync_status{instance=\"p\"} 1"),
        "{metrics}"
    );
    g.stop().await;
}
