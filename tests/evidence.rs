//! Verdicts that never lie, on real MariaDB: newer evidence beats memory, and errant
//! transactions stay visible after later source writes overtook them.

mod common;

use common::guard::{cli, instance_block, Guard, FAST};
use common::mariadb::MariaDb;
use common::relay::Relay;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// A backup guard that reads the primary itself (around the relay), remembering in `state_dir`.
async fn backup_guard(backup: &MariaDb, primary_port: u16, state_dir: &Path) -> Guard {
    let globals = format!("{FAST}state_dir = \"{}\"\n", state_dir.display());
    Guard::start(&globals, |dir| {
        instance_block(
            dir,
            "backup",
            backup,
            "backup",
            &format!("source = {{ host = \"127.0.0.1\", port = {primary_port} }}\n"),
        )
    })
    .await
}

/// The issue's sequence: the backup's link to its primary breaks while the primary lives and
/// keeps committing (the guard sees the backup behind), then the primary dies. The older
/// caught-up memory must not admit the backup: the last reading of the primary had
/// transactions the backup lacks. A guard restart must not bring the older memory back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_seen_behind_a_living_source_stays_out_when_the_source_dies() {
    let (mut primary, backup) = tokio::join!(MariaDb::start("evp", 1), MariaDb::start("evb", 2));
    let relay = Relay::start(primary.port()).await;
    backup.replicate_via(&primary, relay.port).await;
    backup.exec("SET GLOBAL read_only = ON").await;
    primary.create_app_table().await;
    primary.exec("INSERT INTO app.t VALUES (1)").await;
    backup.wait_caught_up(&primary).await;
    let state_dir = tempfile::tempdir().unwrap();
    let g = backup_guard(&backup, primary.port(), state_dir.path()).await;
    g.wait_for("/backup", LIMIT, |r| r.status == 200).await;

    // The partition: the backup loses its primary, which keeps committing.
    relay.cut();
    for i in 2..7 {
        primary
            .exec(&format!("INSERT INTO app.t VALUES ({i})"))
            .await;
    }
    let behind = g
        .wait_for("/backup", LIMIT, |r| {
            r.body
                .contains("is reachable and has 5 transactions this server lacks")
        })
        .await;
    assert_eq!(behind.status, 503, "{behind:#?}");

    // The primary dies. Its last reading still had what the backup lacks: no admission.
    primary.kill();
    g.wait_for("/backup", LIMIT, |r| {
        r.body.contains("unreachable") || r.body.contains("not readable")
    })
    .await;
    g.wait_polls("backup", 3).await;
    let dead = g.get("/backup").await;
    assert_eq!(dead.status, 503, "{}", dead.body);
    let line = dead
        .line("source_lost")
        .unwrap_or_else(|| panic!("{}", dead.body));
    assert!(
        line.starts_with("FAIL source_lost since ")
            && line.contains(", but the source had 0-1-")
            && line.contains(" that this server lacks at its last reading ("),
        "{line}"
    );
    assert!(dead.reason.starts_with("source_lost since "), "{dead:#?}");
    g.stop().await;

    // A restarted guard keeps the newer evidence (the state file has it).
    let g = backup_guard(&backup, primary.port(), state_dir.path()).await;
    g.wait_polls("backup", 3).await;
    let restarted = g.get("/backup").await;
    assert_eq!(restarted.status, 503, "{}", restarted.body);
    assert!(
        restarted.body.contains(", but the source had 0-1-"),
        "{}",
        restarted.body
    );
    g.stop().await;
}

/// An errant write on a MariaDB replica (`0-2-N`), then more writes on the primary that the
/// replica applies: per-domain positions are then equal, but the (domain, server_id) binary
/// log states still show the errant write. Checklist, `/promotion` and the backup gate fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errant_write_overtaken_by_later_source_writes_is_still_errant() {
    let (primary, replica) = tokio::join!(MariaDb::start("erp", 1), MariaDb::start("err", 2));
    replica.replicate_from(&primary).await;
    replica.exec("SET GLOBAL read_only = ON").await;
    primary.create_app_table().await;
    replica.wait_caught_up(&primary).await;
    // Written on the replica directly, then overtaken by the primary's later writes.
    replica.exec("SET GLOBAL read_only = OFF").await;
    replica.exec("INSERT INTO app.t VALUES (1000)").await;
    replica.exec("SET GLOBAL read_only = ON").await;
    for i in 0..14 {
        primary
            .exec(&format!("INSERT INTO app.t VALUES ({i})"))
            .await;
    }
    replica.wait_caught_up(&primary).await;
    let (mine, theirs) = (
        replica.query_value("SELECT @@gtid_current_pos").await,
        primary.query_value("SELECT @@gtid_binlog_pos").await,
    );
    assert_eq!(mine, theirs, "the premise: per-domain positions look equal");

    let g = Guard::start(FAST, |dir| instance_block(dir, "r", &replica, "backup", "")).await;
    let backup = g
        .wait_for("/backup", LIMIT, |r| {
            r.line("reachable").is_some_and(|l| l.starts_with("ok "))
        })
        .await;
    assert_eq!(backup.status, 503, "{}", backup.body);
    assert!(
        backup.reason.starts_with("errant_transactions 1: 0-2-"),
        "{backup:#?}"
    );
    let promotion = g.get("/promotion").await;
    assert_eq!(promotion.status, 503, "{}", promotion.body);
    assert!(
        promotion
            .line("errant_transactions")
            .is_some_and(|l| l.starts_with("FAIL errant_transactions 1: 0-2-")),
        "{}",
        promotion.body
    );
    g.stop().await;

    // The same from the command line: exit 1, the errant GTID named.
    let (code, text) = cli(&replica, &["checklist"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("FAIL errant_transactions 1: 0-2-"), "{text}");
}

/// The JSON check named `name` of `path`.
async fn json_check(g: &Guard, path: &str, name: &str) -> serde_json::Value {
    let r = g.get(&format!("{path}?format=json")).await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {}", r.body))
}

/// One root cause per failure, named for what it is, with advice that matches it: a stopped
/// SQL thread (not "wait until it catches up"), then the IO thread stopped too (broken
/// replication, not a lost source; a cause change is an event), a SQL error's number in the
/// reason phrase, an unreachable server reported once, the checklist on a primary, and a
/// one-shot check that does not judge what one poll cannot show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_root_cause_named_for_what_it_is() {
    let (primary, mut replica) = tokio::join!(MariaDb::start("rcp", 1), MariaDb::start("rcr", 2));
    replica.replicate_from(&primary).await;
    replica.exec("SET GLOBAL read_only = ON").await;
    primary.create_app_table().await;
    replica.wait_caught_up(&primary).await;

    // A one-shot check says what one poll cannot judge, and passes like the daemon would.
    let (code, text) = cli(&replica, &["check", "--policy", "replica"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("-- lag_stable not judged: one-shot"),
        "{text}"
    );
    assert!(text.contains("-- stall not judged: one-shot"), "{text}");
    // The checklist on the primary: not a replica, exit 1, no steps.
    let (code, text) = cli(&primary, &["checklist"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("FAIL replica_status empty: not configured as a replica"),
        "{text}"
    );
    assert!(!text.contains("promotion steps"), "{text}");
    assert!(
        text.contains("-- missing_transactions not judged: no replica status"),
        "{text}"
    );

    let g = Guard::start(FAST, |dir| instance_block(dir, "r", &replica, "backup", "")).await;
    g.wait_for("/backup", LIMIT, |r| r.status == 200).await;

    // SQL thread stopped: the checklist names it, and waiting is not the advice.
    replica.exec("STOP SLAVE SQL_THREAD").await;
    let r = g
        .wait_for("/promotion", LIMIT, |r| r.body.contains("FAIL sql_thread"))
        .await;
    assert!(
        r.line("sql_thread")
            .unwrap()
            .starts_with("FAIL sql_thread No, want Yes"),
        "{}",
        r.body
    );
    let lag = json_check(&g, "/promotion", "lag").await;
    assert_eq!(
        lag["detail"], "NULL (unknown: SQL thread No), want <= 2s",
        "{lag}"
    );
    assert!(
        lag["fix"]
            .as_str()
            .unwrap()
            .contains("waiting will not help"),
        "{lag}"
    );

    // The IO thread stopped by hand too: broken replication, not a lost source; a new cause.
    replica.exec("STOP SLAVE IO_THREAD").await;
    let r = g
        .wait_for("/backup", LIMIT, |r| r.body.contains("FAIL io_thread"))
        .await;
    assert!(
        r.line("io_thread")
            .unwrap()
            .starts_with("FAIL io_thread No: stopped without a connection error"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("source_lost"), "{}", r.body);
    let events = g.get("/events?instance=r").await;
    let v: serde_json::Value = serde_json::from_str(&events.body).unwrap();
    assert!(
        v["events"].as_array().unwrap().iter().any(|e| {
            e["kind"] == "cause_changed" && e["policy"] == "backup" && e["check"] == "sql_thread"
        }),
        "{}",
        events.body
    );

    // A SQL error: its number is in the reason phrase HAProxy logs.
    replica.exec("START SLAVE").await;
    replica.wait_caught_up(&primary).await;
    replica.exec("SET GLOBAL read_only = OFF").await;
    replica.exec("INSERT INTO app.t VALUES (7)").await;
    replica.exec("SET GLOBAL read_only = ON").await;
    primary.exec("INSERT INTO app.t VALUES (7)").await;
    let r = g
        .wait_for("/replica", LIMIT, |r| r.reason.starts_with("sql_thread"))
        .await;
    assert!(r.reason.starts_with("sql_thread No: error 1062 "), "{r:#?}");

    // Unreachable: the cause once, every check that depends on it not judged.
    replica.kill();
    let r = g
        .wait_for("/backup", LIMIT, |r| {
            r.body.contains("FAIL reachable connection refused")
        })
        .await;
    let fails: Vec<&str> = r.body.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert_eq!(fails.len(), 1, "{}", r.body);
    assert!(
        fails[0].starts_with("FAIL reachable connection refused"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("-- sql_thread not judged: server unreachable"),
        "{}",
        r.body
    );
    let sql = json_check(&g, "/backup", "sql_thread").await;
    assert_eq!(sql["status"], "not_judged", "{sql}");
    g.stop().await;
}

/// An errant write on a read-only backup, overtaken by later source writes, then the source
/// dies (and the guard restarts): the backup gate judged the errant write against the living
/// source (503); the source's death must not turn that into 200 — the last reading's evidence
/// still stands, in memory and in the state file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_errant_backup_stays_out_when_its_source_dies() {
    let (mut primary, backup) = tokio::join!(MariaDb::start("eep", 1), MariaDb::start("eeb", 2));
    backup.replicate_from(&primary).await;
    backup.exec("SET GLOBAL read_only = ON").await;
    primary.create_app_table().await;
    backup.wait_caught_up(&primary).await;
    backup.exec("SET GLOBAL read_only = OFF").await;
    backup.exec("INSERT INTO app.t VALUES (1000)").await;
    backup.exec("SET GLOBAL read_only = ON").await;
    for i in 0..5 {
        primary
            .exec(&format!("INSERT INTO app.t VALUES ({i})"))
            .await;
    }
    backup.wait_caught_up(&primary).await;
    let state_dir = tempfile::tempdir().unwrap();
    let globals = format!("{FAST}state_dir = \"{}\"\n", state_dir.path().display());
    let start = || {
        Guard::start(&globals, |dir| {
            instance_block(dir, "b", &backup, "backup", "")
        })
    };
    let g = start().await;
    let live = g
        .wait_for("/backup", LIMIT, |r| {
            r.line("errant_transactions")
                .is_some_and(|l| l.starts_with("FAIL "))
        })
        .await;
    assert_eq!(live.status, 503, "{}", live.body);

    primary.kill();
    g.wait_for("/backup", LIMIT, |r| r.body.contains("source_lost"))
        .await;
    g.wait_polls("b", 3).await;
    let dead = g.get("/backup").await;
    assert_eq!(dead.status, 503, "{}", dead.body);
    assert!(
        dead.line("errant_transactions")
            .is_some_and(|l| l.starts_with("FAIL errant_transactions 1: 0-2-")
                && l.contains("at the source's last reading")),
        "{}",
        dead.body
    );
    g.stop().await;
    // A guard restarted meanwhile reads that evidence back from its state file.
    let g = start().await;
    g.wait_polls("b", 3).await;
    let restarted = g.get("/backup").await;
    assert_eq!(restarted.status, 503, "{}", restarted.body);
    assert!(
        restarted
            .line("errant_transactions")
            .is_some_and(|l| l.starts_with("FAIL errant_transactions 1: 0-2-")),
        "{}",
        restarted.body
    );
    g.stop().await;
}
