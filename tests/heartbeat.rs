//! Lag from a heartbeat table on real MariaDB, written by a real pt-heartbeat (Debian's
//! percona-toolkit) and then by replguard's own writer.

mod common;

use common::guard::{instance_block, Guard, FAST};
use common::mariadb::MariaDb;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// pt-heartbeat --update against `db`, killed on drop.
struct PtHeartbeat(Child);

impl PtHeartbeat {
    fn start(db: &MariaDb) -> PtHeartbeat {
        let bin = ["/usr/bin/pt-heartbeat", "/usr/local/bin/pt-heartbeat"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())
            .expect(
                "pt-heartbeat not found: apt-get install percona-toolkit (install-deps.sh does it)",
            );
        let child = Command::new(bin)
            .args([
                "--update",
                "--create-table",
                "--database",
                "percona",
                "--interval",
                "0.2",
            ])
            .args(["--host", "127.0.0.1", "--port", &db.port().to_string()])
            .args(["--user", "admin", "--password", "admin"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pt-heartbeat");
        PtHeartbeat(child)
    }
}

impl Drop for PtHeartbeat {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_lag_stale_and_growing() {
    let (primary, replica) = tokio::join!(MariaDb::start("hbp", 1), MariaDb::start("hbr", 2));
    replica.replicate_from(&primary).await;
    replica.exec("SET GLOBAL read_only = ON").await;
    primary.exec("CREATE DATABASE percona").await;
    let pt = PtHeartbeat::start(&primary);
    // Wait for pt-heartbeat's table, then let the check user read it (and, for replguard's
    // own writer below, write it).
    let start = std::time::Instant::now();
    while primary
        .query_value("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'percona' AND TABLE_NAME = 'heartbeat'")
        .await
        .as_deref()
        != Some("1")
    {
        assert!(start.elapsed() < LIMIT, "pt-heartbeat did not create its table");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    primary
        .exec("GRANT SELECT ON percona.heartbeat TO 'replguard'@'%'")
        .await;
    primary
        .exec("GRANT INSERT, DELETE ON percona.heartbeat TO 'replguard'@'%'")
        .await;
    replica.wait_caught_up(&primary).await;

    let hb = "heartbeat = { table = \"percona.heartbeat\" }\nmax_lag = \"3s\"\n";
    let g = Guard::start(FAST, |dir| {
        instance_block(
            dir,
            "p",
            &primary,
            "primary",
            "heartbeat = { table = \"percona.heartbeat\" }\nheartbeat_write = true\n",
        ) + &instance_block(dir, "r", &replica, "replica", hb)
    })
    .await;

    // pt-heartbeat writes: the lag the policy judges comes from the heartbeat.
    let ok = g
        .wait_for("/replica?instance=r", LIMIT, |r| r.status == 200)
        .await;
    let lag = ok.line("lag").unwrap();
    assert!(
        lag.starts_with("ok lag ") && lag.contains("(heartbeat; Seconds_Behind_Master"),
        "{lag}"
    );

    // The SQL thread stops while heartbeat rows keep arriving in the relay log: lag grows,
    // and it is lag, not a stale heartbeat.
    replica.exec("STOP SLAVE SQL_THREAD").await;
    let grown = g
        .wait_for("/replica?instance=r", LIMIT, |r| {
            r.line("lag").is_some_and(|l| l.starts_with("FAIL lag "))
        })
        .await;
    let lag = grown.line("lag").unwrap();
    assert!(lag.contains(" > 3s (heartbeat;"), "{lag}");
    replica.exec("START SLAVE SQL_THREAD").await;
    g.wait_for("/replica?instance=r", LIMIT, |r| r.status == 200)
        .await;

    // pt-heartbeat stops (and replguard's writer is off while the primary is read-only): the
    // heartbeat goes stale with everything applied, and the replica leaves the pool saying so.
    primary.exec("SET GLOBAL read_only = ON").await;
    drop(pt);
    let stale = g
        .wait_for("/replica?instance=r", LIMIT, |r| {
            r.reason.starts_with("lag heartbeat stale")
        })
        .await;
    assert_eq!(stale.status, 503);
    assert!(
        stale
            .reason
            .contains("the heartbeat writer has most likely stopped"),
        "{stale:#?}"
    );

    // replguard's own writer takes over the moment the primary is writable again.
    primary.exec("SET GLOBAL read_only = OFF").await;
    g.wait_for("/replica?instance=r", LIMIT, |r| r.status == 200)
        .await;
    let status = g.get("/status").await;
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(
        v["instances"][0]["state"]["heartbeat_written"], "ok",
        "{}",
        status.body
    );

    // The table is missing on the replica's side of things: its own failing reason.
    let g2 = Guard::start(FAST, |dir| {
        instance_block(
            dir,
            "r",
            &replica,
            "replica",
            "heartbeat = { table = \"percona.nope\" }\n",
        )
    })
    .await;
    let missing = g2
        .wait_for("/replica", LIMIT, |r| {
            r.reason.starts_with("lag heartbeat:")
        })
        .await;
    assert!(missing.reason.contains("percona.nope"), "{missing:#?}");
    g2.stop().await;
    g.stop().await;
}
