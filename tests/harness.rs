//! Self-test of the MariaDB test harness (tests/common/mariadb.rs).
//! Run with `cargo test --test harness -- --nocapture`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use common::mariadb::{self, MariaDb};

#[tokio::test]
async fn primary_replica_roundtrip() {
    let t = Instant::now();
    let template = mariadb::template_dir();
    println!(
        "template {} available after {:?}",
        template.display(),
        t.elapsed()
    );

    let t = Instant::now();
    let primary = MariaDb::start("primary", 1).await;
    println!(
        "primary started on port {} in {:?}",
        primary.port(),
        t.elapsed()
    );
    let t = Instant::now();
    let mut replica = MariaDb::start("replica", 2).await;
    println!(
        "replica started on port {} in {:?}",
        replica.port(),
        t.elapsed()
    );

    let t = Instant::now();
    replica.replicate_from(&primary).await;
    println!("replication running after {:?}", t.elapsed());

    primary
        .exec("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO app.t VALUES (1, 'hello')")
        .await;
    let t = Instant::now();
    replica.wait_caught_up(&primary).await;
    println!("caught up after {:?}", t.elapsed());
    let rows = replica.query_strings("SELECT id, v FROM app.t").await;
    assert_eq!(rows, vec![vec![Some("1".into()), Some("hello".into())]]);

    // least-privilege check user
    let (cols, rows) = replica
        .query_as(replica.guard_opts(), "SHOW ALL SLAVES STATUS")
        .await
        .expect("replguard user must be able to run SHOW ALL SLAVES STATUS");
    println!(
        "SHOW ALL SLAVES STATUS columns ({}): {:?}",
        cols.len(),
        cols
    );
    assert_eq!(rows.len(), 1, "one replication connection expected");
    for c in [
        "Connection_name",
        "Slave_IO_Running",
        "Slave_SQL_Running",
        "Seconds_Behind_Master",
        "Master_Host",
        "Gtid_IO_Pos",
    ] {
        assert!(
            cols.iter().any(|x| x == c),
            "column {c} missing from {cols:?}"
        );
    }
    let row: std::collections::HashMap<_, _> = cols.iter().cloned().zip(rows[0].clone()).collect();
    println!("replica row: {row:?}");
    assert_eq!(row["Slave_IO_Running"].as_deref(), Some("Yes"));
    assert_eq!(row["Slave_SQL_Running"].as_deref(), Some("Yes"));
    assert_eq!(row["Master_Host"].as_deref(), Some("127.0.0.1"));

    let (cols2, rows2) = replica
        .query_as(replica.guard_opts(), "SHOW REPLICA STATUS")
        .await
        .expect("SHOW REPLICA STATUS");
    println!("SHOW REPLICA STATUS columns ({}): {:?}", cols2.len(), cols2);
    assert_eq!(rows2.len(), 1);

    let r = replica
        .query_as(replica.guard_opts(), "SHOW ALL REPLICAS STATUS")
        .await;
    match &r {
        Ok((c, rws)) => println!(
            "SHOW ALL REPLICAS STATUS accepted: {} columns, {} rows, same columns as SHOW ALL SLAVES STATUS: {}",
            c.len(),
            rws.len(),
            *c == cols
        ),
        Err(e) => println!("SHOW ALL REPLICAS STATUS rejected: {e}"),
    }
    assert!(r.is_ok());

    // on the primary: no rows, but the check user can still run it
    let (_, prow) = primary
        .query_as(primary.guard_opts(), "SHOW ALL SLAVES STATUS")
        .await
        .expect("SHOW ALL SLAVES STATUS on primary");
    assert!(prow.is_empty());
    // and the check user really is least-privilege
    assert!(primary
        .query_as(primary.guard_opts(), "SELECT * FROM mysql.user")
        .await
        .is_err());
    assert!(primary
        .query_as(primary.guard_opts(), "SELECT * FROM app.t")
        .await
        .is_err());

    // process control: stop/restart, kill/restart, pause/resume
    let t = Instant::now();
    replica.stop().await;
    println!("replica clean stop took {:?}", t.elapsed());
    let t = Instant::now();
    replica.restart().await;
    println!("replica restart took {:?}", t.elapsed());
    // --skip-slave-start: replication must be started explicitly after restart
    replica.exec("START SLAVE").await;
    primary.exec("INSERT INTO app.t VALUES (2, 'again')").await;
    replica.wait_caught_up(&primary).await;
    assert_eq!(
        replica
            .query_value("SELECT COUNT(*) FROM app.t")
            .await
            .as_deref(),
        Some("2")
    );

    let pid = replica.pid();
    replica.kill();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    replica.restart().await;
    replica.pause();
    replica.resume();
    assert_eq!(replica.query_value("SELECT 1").await.as_deref(), Some("1"));

    let dir = tempfile::tempdir().unwrap();
    let pw = mariadb::write_password_file(dir.path(), "guard.pw", "guardpw");
    let mode = std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), "guardpw");

    // a paused server must still be cleaned up by Drop
    let ppid = primary.pid();
    let mut primary = primary;
    primary.pause();
    drop(primary);
    drop(replica);
    assert!(!std::path::Path::new(&format!("/proc/{ppid}")).exists());
}
