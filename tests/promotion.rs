//! The manual-promotion checklist on real MariaDB replication: `/promotion` and
//! `replguard checklist` answer check by check with GTID evidence, and keep answering from
//! remembered evidence when the source is gone.

mod common;

use common::guard::{cli, instance_block, Guard, FAST};
use common::mariadb::MariaDb;
use std::time::Duration;

async fn pair(tag: &str) -> (MariaDb, MariaDb) {
    let (pn, rn) = (format!("{tag}p"), format!("{tag}r"));
    let (primary, replica) = tokio::join!(MariaDb::start(&pn, 1), MariaDb::start(&rn, 2));
    replica.replicate_from(&primary).await;
    replica.exec("SET GLOBAL read_only = ON").await;
    primary.create_app_table().await;
    primary.exec("INSERT INTO app.t VALUES (1), (2), (3)").await;
    replica.wait_caught_up(&primary).await;
    (primary, replica)
}

fn line<'a>(body: &'a str, name: &str) -> &'a str {
    body.lines()
        .find(|l| l.split(' ').nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no {name} line in:\n{body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caught_up_replica_passes_then_answers_from_memory_when_the_source_dies() {
    let (mut primary, replica) = pair("pa").await;
    let g = Guard::start(FAST, |dir| {
        instance_block(dir, "r", &replica, "replica", "")
    })
    .await;
    let ok = g
        .wait_for("/promotion", Duration::from_secs(20), |r| r.status == 200)
        .await;
    for name in [
        "applied",
        "lag",
        "not_delayed",
        "binlog",
        "gtid",
        "read_only",
        "source",
        "missing_transactions",
        "errant_transactions",
        "same_version",
        "server_id",
    ] {
        assert!(
            line(&ok.body, name).starts_with("ok "),
            "{name}:\n{}",
            ok.body
        );
    }
    assert!(
        line(&ok.body, "source").contains("reachable: MariaDB"),
        "{}",
        ok.body
    );
    assert!(ok
        .body
        .contains("# Manual promotion steps (replguard runs none of them):"));
    assert!(ok.body.contains("RESET SLAVE ALL"), "{}", ok.body);

    // The same checklist from the command line, exit 0.
    let (code, text) = cli(&replica, &["checklist"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ok errant_transactions none"), "{text}");

    // The source dies: the checklist still answers, from what it remembers, and says so.
    primary.kill();
    g.wait_polls("r", 3).await;
    let lost = g.get("/promotion").await;
    let source = line(&lost.body, "source");
    assert!(
        source.starts_with("WARN source ") && source.contains(" unreachable "),
        "{}",
        lost.body
    );
    assert!(
        line(&lost.body, "missing_transactions")
            .starts_with("WARN missing_transactions none as of "),
        "{}",
        lost.body
    );
    assert!(
        line(&lost.body, "source_lost").starts_with("ok source_lost since "),
        "{}",
        lost.body
    );
    assert_eq!(lost.status, 200, "{}", lost.body);

    // Someone writes on the replica directly: an errant transaction, listed, and failing.
    replica.exec("SET GLOBAL read_only = OFF").await;
    replica.exec("INSERT INTO app.t VALUES (99)").await;
    g.wait_polls("r", 2).await;
    let errant = g.get("/promotion").await;
    assert_eq!(errant.status, 503, "{}", errant.body);
    let l = line(&errant.body, "errant_transactions");
    assert!(
        l.starts_with("FAIL errant_transactions 1: 0-2-"),
        "{}",
        errant.body
    );
    assert!(l.contains("-- fix: written on the replica directly"), "{l}");
    assert!(
        line(&errant.body, "read_only").starts_with("WARN read_only OFF"),
        "{}",
        errant.body
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_and_delay_fail_with_their_reasons() {
    let (primary, replica) = pair("pb").await;
    let g = Guard::start(FAST, |dir| {
        instance_block(dir, "r", &replica, "replica", "")
    })
    .await;
    g.wait_for("/promotion", Duration::from_secs(20), |r| r.status == 200)
        .await;

    // SQL thread stopped with events pending: the backlog and the missing GTIDs are named.
    replica.exec("STOP SLAVE SQL_THREAD").await;
    primary.exec("INSERT INTO app.t VALUES (4), (5)").await;
    primary.exec("INSERT INTO app.t VALUES (6)").await;
    let r = g
        .wait_for("/promotion", Duration::from_secs(20), |r| {
            r.body.contains("FAIL missing_transactions")
        })
        .await;
    assert_eq!(r.status, 503);
    assert!(
        line(&r.body, "applied").contains(" bytes not applied (read "),
        "{}",
        r.body
    );
    let missing = line(&r.body, "missing_transactions");
    assert!(
        missing.starts_with("FAIL missing_transactions 2: 0-1-"),
        "{}",
        r.body
    );
    assert!(
        missing.contains("-- fix: let it replicate them"),
        "{missing}"
    );

    // Caught up again, then made a delayed replica: it fails as such.
    replica.exec("START SLAVE SQL_THREAD").await;
    replica.wait_caught_up(&primary).await;
    replica.exec("STOP SLAVE").await;
    replica.exec("CHANGE MASTER TO MASTER_DELAY = 3600").await;
    replica.exec("START SLAVE").await;
    let r = g
        .wait_for("/promotion", Duration::from_secs(20), |r| {
            r.body.contains("FAIL not_delayed")
        })
        .await;
    assert_eq!(r.status, 503);
    assert!(
        line(&r.body, "not_delayed")
            .starts_with("FAIL not_delayed delayed replica, SQL_Delay=3600s"),
        "{}",
        r.body
    );
    let json = g.get("/promotion?format=json").await;
    let v: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    let nd = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "not_delayed")
        .unwrap();
    assert_eq!(nd["status"], "fail");
    assert!(nd["fix"].as_str().unwrap().contains("MASTER_DELAY=0"));
    assert!(!v["steps"].as_array().unwrap().is_empty());
    g.stop().await;
}

/// Two replicas of one primary in one guard share one connection to it, and a shared reading
/// is never older than a replica's own: while the primary takes writes, neither checklist ever
/// shows the replica's newest transactions as errant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_one_source_share_its_connection_without_false_errant_transactions() {
    let (primary, r1) = pair("ps").await;
    let r2 = MariaDb::start("psr2", 3).await;
    r2.replicate_from(&primary).await;
    r2.exec("SET GLOBAL read_only = ON").await;
    r2.wait_caught_up(&primary).await;
    let g = Guard::start(FAST, |dir| {
        instance_block(dir, "r1", &r1, "replica", "")
            + &instance_block(dir, "r2", &r2, "replica", "")
    })
    .await;
    for name in ["r1", "r2"] {
        g.wait_for(
            &format!("/promotion?instance={name}"),
            Duration::from_secs(20),
            |r| r.status == 200,
        )
        .await;
    }
    let sessions = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'replguard'";
    assert_eq!(
        primary.query_value(sessions).await.as_deref(),
        Some("1"),
        "one source connection for both replicas"
    );

    // Writes stream in while both checklists are read across several polls.
    let writer = {
        let primary = primary.admin_opts();
        tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut conn = mysql_async::Conn::new(primary).await.unwrap();
            for i in 100..400 {
                conn.query_drop(format!("INSERT INTO app.t VALUES ({i})"))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            conn.disconnect().await.unwrap();
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        for name in ["r1", "r2"] {
            let r = g.get(&format!("/promotion?instance={name}")).await;
            let errant = line(&r.body, "errant_transactions");
            assert!(errant.starts_with("ok "), "{name}: {errant}\n{}", r.body);
            reads += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.await.unwrap();
    assert!(
        reads >= 10,
        "only {reads} checklist reads during the writes"
    );
    g.stop().await;
}
