//! replguard against real MariaDB replication: a primary and a replica started from the
//! harness template on free loopback ports, watched by an in-process guard over HTTP.
//!
//! Timing assertions are expressed in polls (read from `/status`), not wall-clock time, so a
//! loaded machine slows the test down instead of failing it.

mod common;

use common::guard::{instance_block, Guard, FAST};
use common::mariadb::MariaDb;
use mysql_async::prelude::Queryable;
use std::time::{Duration, Instant};

/// A primary (server_id 1) and a replica (server_id 2) replicating from it with GTID.
async fn pair() -> (MariaDb, MariaDb) {
    let (primary, replica) =
        tokio::join!(MariaDb::start("primary", 1), MariaDb::start("replica", 2));
    replica.replicate_from(&primary).await;
    // As in production: replicas are read-only so only replication writes to them.
    replica.exec("SET GLOBAL read_only = ON").await;
    (primary, replica)
}

/// A guard watching `primary` as "db1" (policy auto) and `replica` as "db2" (policy replica).
async fn guard(primary: &MariaDb, replica: &MariaDb, globals: &str) -> Guard {
    Guard::start(globals, |dir| {
        instance_block(dir, "db1", primary, "auto", "")
            + &instance_block(dir, "db2", replica, "replica", "")
    })
    .await
}

async fn ready(g: &Guard) {
    for i in ["db1", "db2"] {
        g.wait_for(
            &format!("/mysqlchk/?instance={i}"),
            Duration::from_secs(20),
            |r| r.status == 200,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_pair_then_sql_thread_stopped() {
    let (primary, replica) = pair().await;
    let g = guard(&primary, &replica, FAST).await;
    ready(&g).await;
    let (p, r) = (primary.port(), replica.port());

    #[rustfmt::skip]
    let cases = [
        (format!("/mysqlchk/?port={p}"), 200, "role"),     // auto -> primary
        (format!("/?port={p}"), 200, "role"),
        (format!("/mysqlchk/?port={r}"), 200, "lag"),      // configured policy: replica
        (format!("/replica?port={r}"), 200, "lag"),
        (format!("/check/replica?port={r}"), 200, "lag"),
        (format!("/primary?port={p}"), 200, "read_only"),
        (format!("/primary?port={r}"), 503, "read_only"),  // a replica is not a writer
        (format!("/replica?port={p}"), 503, "replica_status"),
        (format!("/check/auto?port={r}"), 200, "role"),
    ];
    for (path, status, line) in &cases {
        let reply = g.get(path).await;
        assert_eq!(reply.status, *status, "{path}: {reply:#?}");
        assert!(
            reply.line(line).is_some(),
            "{path}: no {line} line in {}",
            reply.body
        );
    }
    let ok = g.get(&format!("/replica?port={r}")).await;
    assert_eq!(ok.line("sql_thread"), Some("ok sql_thread Yes"));
    assert!(
        ok.line("lag").unwrap().starts_with("ok lag 0s <= 10s"),
        "{}",
        ok.body
    );
    assert_eq!(
        ok.line("reachable")
            .map(|l| l.contains("MariaDB") && l.contains("server_id 2")),
        Some(true),
        "{}",
        ok.body
    );

    // Bad parameters are refused, never defaulted.
    for bad in [
        "max_lag=5",
        "max_lag=",
        "max_lag=-1s",
        "max_lag=1s&max_lag=2s",
        "port=x",
    ] {
        let reply = g.get(&format!("/replica?instance=db2&{bad}")).await;
        assert_eq!(reply.status, 400, "{bad}: {reply:#?}");
    }
    assert_eq!(
        g.get("/replica").await.status,
        400,
        "two instances and no selector"
    );
    assert_eq!(g.get("/replica?port=1").await.status, 404);
    assert_eq!(g.get("/check/nope?instance=db2").await.status, 404);

    replica.exec("STOP SLAVE SQL_THREAD").await;
    g.wait_polls("db2", 2).await;
    let reply = g.get(&format!("/replica?port={r}")).await;
    assert_eq!(reply.status, 503, "{reply:#?}");
    assert_eq!(reply.reason, "sql_thread No, want Yes");
    assert_eq!(
        reply.line("sql_thread"),
        Some("FAIL sql_thread No, want Yes")
    );
    // The IO thread still runs and says so.
    assert_eq!(reply.line("io_thread"), Some("ok io_thread Yes"));

    replica.exec("START SLAVE SQL_THREAD").await;
    g.wait_for(
        &format!("/replica?port={r}"),
        Duration::from_secs(20),
        |r| r.status == 200,
    )
    .await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_above_max_lag_fails_naming_lag_and_a_delayed_replica_is_named() {
    let (primary, replica) = pair().await;
    let g = guard(&primary, &replica, FAST).await;
    ready(&g).await;
    // A global read lock on the replica holds its SQL thread while the primary writes: the
    // events wait in the relay log and Seconds_Behind_Master grows.
    let mut lock = mysql_async::Conn::new(replica.admin_opts()).await.unwrap();
    lock.query_drop("FLUSH TABLES WITH READ LOCK")
        .await
        .unwrap();
    primary.exec("CREATE DATABASE IF NOT EXISTS t").await;
    primary.exec("CREATE TABLE t.a (id INT PRIMARY KEY)").await;

    let path = "/replica?instance=db2&max_lag=2s";
    let reply = g
        .wait_for(path, Duration::from_secs(30), |r| {
            r.reason.starts_with("lag ")
        })
        .await;
    assert_eq!(reply.status, 503, "{reply:#?}");
    let line = reply.line("lag").unwrap();
    assert!(
        line.starts_with("FAIL lag ") && line.ends_with(" > 2s"),
        "{line}"
    );
    // The same moment with a looser per-request threshold passes: the override is honoured.
    let loose = g.get("/replica?instance=db2&max_lag=1h").await;
    assert_eq!(loose.status, 200, "{loose:#?}");
    lock.query_drop("UNLOCK TABLES").await.unwrap();
    lock.disconnect().await.unwrap();

    // A deliberately delayed replica is stale by design and named as such, whatever max_lag.
    replica.exec("STOP SLAVE").await;
    replica.exec("CHANGE MASTER TO MASTER_DELAY = 60").await;
    replica.exec("START SLAVE").await;
    let reply = g
        .wait_for(
            "/replica?instance=db2&max_lag=1h",
            Duration::from_secs(30),
            |r| r.status == 503,
        )
        .await;
    assert_eq!(
        reply.reason, "not_delayed delayed replica, SQL_Delay=60s",
        "{reply:#?}"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replica_is_unreachable_and_comes_back() {
    let (primary, mut replica) = pair().await;
    let g = guard(&primary, &replica, FAST).await;
    ready(&g).await;

    replica.kill();
    g.wait_polls("db2", 2).await;
    let reply = g.get("/replica?instance=db2").await;
    assert_eq!(reply.status, 503, "{reply:#?}");
    assert!(
        reply.reason.starts_with("reachable connection refused"),
        "{reply:#?}"
    );
    // The sample itself is fresh: the failure is reported as what it is, not as staleness.
    assert!(
        reply.line("sample").unwrap().starts_with("ok sample"),
        "{}",
        reply.body
    );
    assert_eq!(
        g.get("/primary?instance=db1").await.status,
        200,
        "the primary is unaffected"
    );

    replica.restart().await;
    // The harness starts mariadbd with --skip-slave-start; until replication runs, it fails.
    g.wait_polls("db2", 2).await;
    assert_eq!(
        g.get("/replica?instance=db2").await.reason,
        "io_thread No, want Yes (source 127.0.0.1:".to_string() + &primary.port().to_string() + ")"
    );
    replica.exec("START SLAVE").await;
    g.wait_for("/replica?instance=db2", Duration::from_secs(30), |r| {
        r.status == 200
    })
    .await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replica_times_out_while_http_answers_at_once() {
    let (primary, mut replica) = pair().await;
    // A long timeout makes the point: the poll hangs for 900 ms, the HTTP answer does not.
    let g = guard(
        &primary,
        &replica,
        "interval = \"1s\"\ntimeout = \"900ms\"\nmax_sample_age = \"3s\"\n",
    )
    .await;
    ready(&g).await;

    replica.pause();
    let paused_at = Instant::now();
    let mut slowest = Duration::ZERO;
    let reply = loop {
        let t = Instant::now();
        let reply = g.get("/replica?instance=db2").await;
        slowest = slowest.max(t.elapsed());
        if reply.status != 200 {
            break reply;
        }
        assert!(
            paused_at.elapsed() < Duration::from_secs(30),
            "still 200 after 30s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let first_503 = paused_at.elapsed();
    assert_eq!(reply.status, 503, "{reply:#?}");
    assert!(reply.reason.starts_with("reachable timeout"), "{reply:#?}");
    // Keep asking while polls hang on the stopped server.
    for _ in 0..20 {
        let t = Instant::now();
        let r = g.get("/replica?instance=db2").await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(r.status, 503);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("paused replica: first 503 after {first_503:?}, slowest HTTP answer {slowest:?}");
    // Well under the 900 ms a poll waits: the handler never waited on MySQL.
    assert!(
        slowest < Duration::from_millis(300),
        "slowest answer {slowest:?}"
    );

    replica.resume();
    g.wait_for("/replica?instance=db2", Duration::from_secs(30), |r| {
        r.status == 200
    })
    .await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_reported_as_the_check_user_refused() {
    let replica = MariaDb::start("lonely", 7).await;
    let wrong = "Wr0ng-Secret-42";
    let g = Guard::start(FAST, |dir| {
        common::guard::user_block(dir, replica.port(), "replguard", wrong, "replica")
    })
    .await;
    let reply = g
        .wait_for("/replica", Duration::from_secs(20), |r| {
            r.reason.starts_with("reachable")
        })
        .await;
    assert_eq!(reply.status, 503);
    assert!(
        reply
            .reason
            .starts_with("reachable check user refused: 1045 Access denied for user 'replguard'"),
        "{reply:#?}"
    );
    let status = g.get("/status").await;
    for text in [&reply.body, &reply.reason, &status.body] {
        assert!(!text.contains(wrong), "password leaked: {text}");
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_privilege_is_reported_as_such() {
    let db = MariaDb::start("nopriv", 8).await;
    db.exec("CREATE USER 'nopriv'@'%' IDENTIFIED BY 'np'").await;
    let g = Guard::start(FAST, |dir| {
        common::guard::user_block(dir, db.port(), "nopriv", "np", "replica")
    })
    .await;
    let reply = g
        .wait_for("/replica", Duration::from_secs(20), |r| {
            r.reason.starts_with("reachable")
        })
        .await;
    assert_eq!(reply.status, 503);
    assert!(
        reply
            .reason
            .starts_with("reachable check user lacks a privilege: 1227"),
        "{reply:#?}"
    );
    // Granted afterwards: MariaDB fixes global privileges per session, so the guard must
    // reconnect (bounded by its backoff) rather than keep asking on the old session.
    db.exec("GRANT SLAVE MONITOR ON *.* TO 'nopriv'@'%'").await;
    let healed = g
        .wait_for("/replica", Duration::from_secs(20), |r| {
            !r.reason.starts_with("reachable")
        })
        .await;
    assert!(
        healed
            .line("reachable")
            .is_some_and(|l| l.starts_with("ok ")),
        "{healed:#?}"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_add_no_mysql_load_and_shutdown_closes_the_connection() {
    let (primary, replica) = pair().await;
    let g = guard(&primary, &replica, FAST).await;
    ready(&g).await;

    let com = || async {
        replica
            .query_value("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'COM_SHOW_SLAVE_STATUS'")
            .await
            .and_then(|v| v.parse::<u64>().ok())
            .expect("Com_show_slave_status")
    };
    let (c0, p0) = (com().await, g.polls("db2").await);
    let mut asked = 0;
    // Hammer the checks across at least five polls.
    while g.polls("db2").await < p0 + 5 {
        for path in [
            "/replica?instance=db2",
            "/mysqlchk/?instance=db2",
            "/status",
        ] {
            assert_eq!(g.get(path).await.status, 200, "{path}");
            asked += 1;
        }
    }
    let (c1, p1) = (com().await, g.polls("db2").await);
    eprintln!(
        "{asked} checks: {} polls, {} SHOW ALL SLAVES STATUS",
        p1 - p0,
        c1 - c0
    );
    // Exactly one replica-status query per poll (one more if a poll was in flight at a read).
    assert!(
        (p1 - p0..=p1 - p0 + 1).contains(&(c1 - c0)),
        "{asked} checks caused {} queries over {} polls",
        c1 - c0,
        p1 - p0
    );

    let guard_sessions = || async {
        replica
            .query_value(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'replguard'",
            )
            .await
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        guard_sessions().await,
        1,
        "one persistent connection per instance"
    );
    g.stop().await;
    let start = Instant::now();
    while guard_sessions().await != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "connection left open after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
