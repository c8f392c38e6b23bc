//! A config reload (SIGHUP) on real MariaDB: unchanged instances keep their poller and its
//! connection, added ones start, removed ones stop, changed ones restart with their memory, and
//! a config that fails validation is refused while the old one keeps serving.

mod common;

use common::guard::{instance_block, Guard, FAST};
use common::mariadb::{MariaDb, GUARD_USER};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

/// The ids of the guard's sessions on `db`.
async fn guard_sessions(db: &MariaDb) -> Vec<String> {
    let mut ids: Vec<String> = db
        .query_strings(&format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{GUARD_USER}'"
        ))
        .await
        .into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .collect();
    ids.sort();
    ids
}

/// Waits until `/status` satisfies `done`.
async fn wait_status(
    g: &Guard,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let s = g.status().await;
        if done(&s) {
            return s;
        }
        assert!(
            start.elapsed() < LIMIT,
            "{what}: not seen within {LIMIT:?}; /status: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn names(s: &serde_json::Value) -> Vec<String> {
    s["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

fn instance<'a>(s: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {s:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_unchanged_pollers_and_refuses_a_bad_config_while_serving() {
    let (primary, replica) =
        tokio::join!(MariaDb::start("primary", 1), MariaDb::start("replica", 2));
    replica.replicate_from(&primary).await;
    replica.exec("SET GLOBAL read_only = ON").await;

    let r_block = |dir: &std::path::Path| instance_block(dir, "r", &replica, "replica", "");
    let g = Guard::start(FAST, r_block).await;
    g.wait_for("/replica?instance=r", LIMIT, |r| r.status == 200)
        .await;
    g.wait_polls("r", 2).await;
    let sessions = guard_sessions(&replica).await;
    assert_eq!(
        sessions.len(),
        1,
        "one probe session on the replica: {sessions:?}"
    );
    let polls_before = g.polls("r").await;

    // Add the primary as "p"; "r" is written exactly as before.
    g.reload(FAST, |dir| {
        r_block(dir) + &instance_block(dir, "p", &primary, "primary", "")
    });
    let s = wait_status(&g, "p added", |s| names(s).contains(&"p".to_string())).await;
    assert_eq!(s["last_reload"]["applied"], true, "{s:#}");
    let detail = s["last_reload"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("added p") && detail.contains("kept r"),
        "{detail}"
    );
    g.wait_for("/primary?instance=p", LIMIT, |r| r.status == 200)
        .await;
    // The unchanged instance kept its poller: the same session, and polls only went on.
    g.wait_polls("r", 2).await;
    assert_eq!(
        guard_sessions(&replica).await,
        sessions,
        "r's connection was kept"
    );
    assert!(g.polls("r").await >= polls_before + 2);
    // While serving: a check of r never stopped answering 200.
    assert_eq!(g.get("/replica?instance=r").await.status, 200);

    // A config that fails validation: refused, the running one stays in force.
    g.reload(FAST, |dir| r_block(dir) + "max_lagg = \"5s\"\n");
    let s = wait_status(&g, "refusal", |s| s["last_reload"]["applied"] == false).await;
    let why = s["last_reload"]["detail"].as_str().unwrap();
    assert!(why.contains("max_lagg"), "the error names the key: {why}");
    assert_eq!(names(&s), ["r", "p"], "old config still in force");
    let metrics = g.get("/metrics").await.body;
    assert!(
        metrics.contains("replguard_config_last_reload_success 0"),
        "{metrics}"
    );
    assert_eq!(g.get("/primary?instance=p").await.status, 200);

    // Remove p and change r (a threshold): p's poller stops and closes its session; r restarts
    // with the memory it had of the same server.
    let primary_sessions = guard_sessions(&primary).await;
    assert!(
        !primary_sessions.is_empty(),
        "p (and r's source read) on the primary"
    );
    g.reload(FAST, |dir| {
        instance_block(dir, "r", &replica, "replica", "max_lag = \"30s\"")
    });
    let s = wait_status(&g, "p removed", |s| names(s) == ["r"]).await;
    let detail = s["last_reload"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("removed p") && detail.contains("restarted r"),
        "{detail}"
    );
    let r = instance(&s, "r");
    assert!(
        r["polls"].as_u64().unwrap() >= polls_before,
        "memory kept across the restart of the same server: {r:#}"
    );
    assert!(
        !r["io_last_connected"].as_array().unwrap().is_empty(),
        "the caught-up observation survives: {r:#}"
    );
    let start = Instant::now();
    while guard_sessions(&primary).await.len() >= primary_sessions.len() {
        assert!(
            start.elapsed() < LIMIT,
            "p's session on the primary was not closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = g.get("/metrics").await.body;
    assert!(metrics.contains("replguard_config_last_reload_success 1"));
    assert_eq!(g.get("/primary?instance=p").await.status, 404);
    g.wait_for("/replica?instance=r", LIMIT, |r| r.status == 200)
        .await;
    g.stop().await;
}

/// The backup's block: it reads its primary itself (around the relay), optionally with `extra`.
fn backup_block(dir: &std::path::Path, backup: &MariaDb, primary_port: u16, extra: &str) -> String {
    instance_block(
        dir,
        "backup",
        backup,
        "backup",
        &format!("source = {{ host = \"127.0.0.1\", port = {primary_port} }}\n{extra}"),
    )
}

/// A partition (the backup's link cut, the primary still committing), then a reload that
/// restarts the backup's poller (a changed threshold; no state_dir, so only the carried
/// snapshot remembers the newer evidence), then the primary's death: the backup must stay out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_between_a_partition_and_the_source_death_keeps_the_backup_out() {
    let (mut primary, backup) = tokio::join!(MariaDb::start("rlp", 1), MariaDb::start("rlb", 2));
    let relay = common::relay::Relay::start(primary.port()).await;
    backup.replicate_via(&primary, relay.port).await;
    backup.exec("SET GLOBAL read_only = ON").await;
    primary.create_app_table().await;
    primary.exec("INSERT INTO app.t VALUES (1)").await;
    backup.wait_caught_up(&primary).await;
    let p = primary.port();
    let g = Guard::start(FAST, |dir| backup_block(dir, &backup, p, "")).await;
    g.wait_for("/backup", LIMIT, |r| r.status == 200).await;
    g.wait_polls("backup", 2).await;

    relay.cut();
    for i in 2..5 {
        primary
            .exec(&format!("INSERT INTO app.t VALUES ({i})"))
            .await;
    }
    g.wait_for("/backup", LIMIT, |r| {
        r.status == 503 && r.body.contains("transactions this server lacks")
    })
    .await;

    // The reload restarts the backup's poller (its thresholds changed).
    g.reload(FAST, |dir| {
        backup_block(dir, &backup, p, "max_lag = \"3s\"")
    });
    let s = wait_status(&g, "reloaded", |s| s["last_reload"]["applied"] == true).await;
    assert!(
        s["last_reload"]["detail"]
            .as_str()
            .unwrap()
            .contains("restarted backup"),
        "{s:#}"
    );
    g.wait_polls("backup", 2).await;
    assert_eq!(g.get("/backup").await.status, 503);

    primary.kill();
    g.wait_for("/backup", LIMIT, |r| r.body.contains("FAIL source_lost"))
        .await;
    g.wait_polls("backup", 3).await;
    let dead = g.get("/backup").await;
    assert_eq!(dead.status, 503, "{}", dead.body);
    assert!(
        dead.body.contains(", but the source had 0-1-"),
        "the newer evidence survived the reload: {}",
        dead.body
    );
    g.stop().await;
}

/// A reload storm while hostile clients hold connections open: every reload restarts the
/// replica's poller, yet the guard keeps answering, and the server and its source each keep
/// one guard session (old pollers close theirs; nothing accumulates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_storm_under_held_connections_leaks_no_session() {
    let (primary, replica) = tokio::join!(MariaDb::start("rsp", 1), MariaDb::start("rsr", 2));
    replica.replicate_from(&primary).await;
    replica.exec("SET GLOBAL read_only = ON").await;
    let block = |dir: &std::path::Path, lag: u32| {
        instance_block(
            dir,
            "r",
            &replica,
            "replica",
            &format!("max_lag = \"{lag}s\""),
        )
    };
    let g = Guard::start(FAST, |dir| block(dir, 10)).await;
    g.wait_for("/replica", LIMIT, |r| r.status == 200).await;
    g.wait_polls("r", 2).await;

    // Hostile clients: 100 connections held open, half of them mid-request.
    let mut held = Vec::new();
    for i in 0..100 {
        let mut c = tokio::net::TcpStream::connect(g.addr).await.unwrap();
        if i % 2 == 0 {
            use tokio::io::AsyncWriteExt;
            c.write_all(b"GET /replica HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        held.push(c);
    }
    for i in 0..20u32 {
        g.reload(FAST, |dir| block(dir, 10 + i % 2 + 1));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(g.get("/healthz").await.status, 200, "reload {i}");
    }
    wait_status(&g, "the last reload", |s| {
        s["last_reload"]["applied"] == true
    })
    .await;
    g.wait_polls("r", 3).await;
    assert_eq!(g.get("/replica").await.status, 200);
    let start = Instant::now();
    loop {
        let (on_replica, on_primary) = (
            guard_sessions(&replica).await.len(),
            guard_sessions(&primary).await.len(),
        );
        if on_replica == 1 && on_primary <= 1 {
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "sessions left behind: {on_replica} on the replica, {on_primary} on its source"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(held);
    g.stop().await;
}
