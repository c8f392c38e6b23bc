//! What a central guard sees across instances, on real MariaDB replicas: a read pool that
//! never empties (`[[pool]]`, `min_serving`) and the checklist's `most_advanced` among the
//! replicas of one source.

mod common;

use common::guard::{agent, instance_block, Guard, FAST};
use common::haproxy::{free_port, Haproxy};
use common::mariadb::MariaDb;
use mysql_async::prelude::Queryable;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(40);

/// Holds a replica's SQL thread with a global read lock (its IO thread keeps receiving, its
/// lag grows), until dropped.
struct Held(mysql_async::Conn);

async fn hold(db: &MariaDb) -> Held {
    let mut c = mysql_async::Conn::new(db.admin_opts())
        .await
        .expect("connect");
    c.query_drop("FLUSH TABLES WITH READ LOCK")
        .await
        .expect("read lock");
    Held(c)
}

impl Held {
    async fn release(mut self) {
        self.0.query_drop("UNLOCK TABLES").await.expect("unlock");
        self.0.disconnect().await.expect("disconnect");
    }
}

/// Writes on the primary every 200 ms until stopped, so held replicas fall behind.
fn writer(
    primary: &MariaDb,
) -> (
    tokio::task::JoinHandle<()>,
    tokio_util::sync::CancellationToken,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let opts = primary.admin_opts();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        let mut c = mysql_async::Conn::new(opts).await.expect("connect");
        let mut i = 1000;
        while !token.is_cancelled() {
            c.query_drop(format!("INSERT INTO app.t VALUES ({i})"))
                .await
                .expect("insert");
            i += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (task, stop)
}

/// What the reading application saw: each read's moment and server_id, or its error.
type Reads = Arc<Mutex<Vec<(Instant, Result<u32, String>)>>>;

/// An application reading `@@server_id` through HAProxy every 50 ms on a new connection each
/// time (a pooled connection would stay where it landed).
fn reader(
    via: mysql_async::Opts,
    port: u16,
) -> (
    tokio::task::JoinHandle<()>,
    tokio_util::sync::CancellationToken,
    Reads,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let reads: Reads = Arc::default();
    let (token, log) = (stop.clone(), reads.clone());
    let opts = mysql_async::OptsBuilder::from_opts(via).tcp_port(port);
    let task = tokio::spawn(async move {
        while !token.is_cancelled() {
            let once = async {
                let mut c = mysql_async::Conn::new(opts.clone()).await?;
                let id: Option<u32> = c.query_first("SELECT @@server_id").await?;
                c.disconnect().await?;
                Ok::<_, mysql_async::Error>(id.unwrap_or(0))
            };
            let r = tokio::time::timeout(Duration::from_secs(2), once).await;
            let r = match r {
                Ok(Ok(id)) => Ok(id),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".into()),
            };
            log.lock().unwrap().push((Instant::now(), r));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (task, stop, reads)
}

/// The server_ids read since `since`.
fn landed(reads: &Reads, since: Instant) -> std::collections::BTreeSet<u32> {
    reads
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at >= since)
        .filter_map(|(_, r)| r.as_ref().ok().copied())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_admits_its_least_lagged_members_and_never_a_broken_one() {
    let (primary, r1, r2, r3) = tokio::join!(
        MariaDb::start("pp", 1),
        MariaDb::start("pr1", 2),
        MariaDb::start("pr2", 3),
        MariaDb::start("pr3", 4)
    );
    for r in [&r1, &r2, &r3] {
        r.replicate_from(&primary).await;
    }
    primary.create_app_table().await;
    let g = Guard::start(FAST, |dir| {
        let mut blocks: String = [("r1", &r1), ("r2", &r2), ("r3", &r3)]
            .iter()
            .map(|(name, db)| instance_block(dir, name, db, "replica", "max_lag = \"2s\""))
            .collect();
        blocks.push_str(
            "[[pool]]\nname = \"reads\"\ninstances = [\"r1\", \"r2\", \"r3\"]\nmin_serving = 2\n",
        );
        blocks
    })
    .await;
    for name in ["r1", "r2", "r3"] {
        g.wait_for(&format!("/replica?instance={name}"), LIMIT, |r| {
            r.status == 200
        })
        .await;
    }
    // HAProxy's read farm checks each member (fast timing, so the test is short) and the
    // application reads through it all along: the pool must never leave it without a server.
    let ro = free_port();
    let servers: String = [("r1", &r1), ("r2", &r2), ("r3", &r3)]
        .iter()
        .map(|(name, db)| {
            format!(
                "    server {name} 127.0.0.1:{} check addr 127.0.0.1 port {}\n",
                db.port(),
                g.addr.port()
            )
        })
        .collect();
    let h = Haproxy::start(&format!(
        "listen ro\n    bind 127.0.0.1:{ro}\n    balance roundrobin\n    option httpchk\n    \
         http-check send meth GET uri-lf /replica?instance=%[srv_name]\n    \
         http-check expect status 200\n    default-server inter 200 rise 1 fall 1 \
         on-marked-down shutdown-sessions\n{servers}"
    ))
    .await;
    for name in ["r1", "r2", "r3"] {
        h.wait_status("ro", name, "UP", LIMIT).await;
    }
    let (rt, rstop, reads) = reader(r1.admin_opts(), ro);
    let status = g.status().await;
    let pool = &status["pools"][0];
    assert_eq!(pool["name"], "reads", "{status}");
    assert_eq!(pool["healthy"], 3, "{status}");
    assert_eq!(
        pool["degraded"].as_array().map(Vec::len),
        Some(0),
        "{status}"
    );
    let (w, stop) = writer(&primary);

    // One lags: two still pass, min_serving is met, it is out.
    let h1 = hold(&r1).await;
    let r = g
        .wait_for("/replica?instance=r1", LIMIT, |r| r.status == 503)
        .await;
    assert!(r.reason.starts_with("lag "), "{r:?}");
    g.wait_for("/replica?instance=r1", LIMIT, |r| {
        r.body
            .contains("-- pool reads: 2 of 3 healthy, min_serving 2 is met")
    })
    .await;

    // Two lag: one passes, the least behind of the two (r2, held later) is admitted as
    // degraded, with the lowest agent weight; the other stays out and says why.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let h2 = hold(&r2).await;
    let r = g
        .wait_for("/replica?instance=r2", LIMIT, |r| {
            r.body
                .contains("pool reads: 1 of 3 healthy, admitted as degraded (lag ")
        })
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("least behind)"), "{}", r.body);
    assert!(r.body.contains("WARN lag "), "{}", r.body);
    assert_eq!(agent(g.agent, "r2\n").await, "up ready 1%\n");
    let r = g.get("/replica?instance=r1").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains(
            "-- pool reads: 1 of 3 healthy, not admitted: 1 less behind admitted up to min_serving 2"
        ),
        "{}",
        r.body
    );
    assert!(agent(g.agent, "r1\n").await.starts_with("down #lag "));
    let status = g.status().await;
    let pool = &status["pools"][0];
    assert_eq!(pool["healthy"], 1, "{status}");
    assert_eq!(pool["serving"], 2, "{status}");
    assert_eq!(pool["degraded"][0]["instance"], "r2", "{status}");
    let metrics = g.get("/metrics").await.body;
    assert!(
        metrics.contains("replguard_pool_healthy{pool=\"reads\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("replguard_pool_degraded{pool=\"reads\"} 1"),
        "{metrics}"
    );

    // All three lag: none passes, the two least behind (r3, then r2) are admitted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let h3 = hold(&r3).await;
    g.wait_for("/replica?instance=r3", LIMIT, |r| {
        r.status == 200
            && r.body
                .contains("pool reads: 0 of 3 healthy, admitted as degraded")
    })
    .await;
    let r = g.get("/replica?instance=r2").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(g.get("/replica?instance=r1").await.status, 503);
    // HAProxy agrees: the two least behind stay UP, and reads land on them only.
    h.wait_status("ro", "r1", "DOWN", LIMIT).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    for name in ["r2", "r3"] {
        let s = h.server("ro", name).await;
        assert!(s.status.starts_with("UP"), "{name}: {s:?}");
    }
    let since = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        landed(&reads, since),
        [3, 4].into(),
        "reads go to r2 and r3"
    );

    // A broken one (its SQL thread stopped) is never admitted, however little it lags: the
    // two lagging ones are.
    h3.release().await;
    r3.exec("STOP SLAVE SQL_THREAD").await;
    let r = g
        .wait_for("/replica?instance=r3", LIMIT, |r| {
            r.reason.starts_with("sql_thread")
        })
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(!r.body.contains("pool reads"), "{}", r.body);
    g.wait_for("/replica?instance=r1", LIMIT, |r| r.status == 200)
        .await;
    let r = g.get("/replica?instance=r2").await;
    assert_eq!(r.status, 200, "{}", r.body);
    for _ in 0..5 {
        assert_eq!(g.get("/replica?instance=r3").await.status, 503);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Recovery: every member passes on its own again; nobody is degraded.
    r3.exec("START SLAVE SQL_THREAD").await;
    h1.release().await;
    h2.release().await;
    for name in ["r1", "r2", "r3"] {
        g.wait_for(&format!("/replica?instance={name}"), LIMIT, |r| {
            r.status == 200 && !r.body.contains("pool")
        })
        .await;
    }
    stop.cancel();
    w.await.expect("writer");
    rstop.cancel();
    rt.await.expect("reader");
    let reads = reads.lock().unwrap().clone();
    let failed: Vec<_> = reads.iter().filter(|(_, r)| r.is_err()).collect();
    eprintln!(
        "{} reads through HAProxy, {} failed",
        reads.len(),
        failed.len()
    );
    assert!(reads.len() > 50, "the application read: {}", reads.len());
    assert!(
        failed.is_empty(),
        "the pool emptied under the application: {failed:?}"
    );
    drop(h);
    g.stop().await;
}

/// Two replicas of one primary; one's IO thread stops while the primary writes on: its
/// checklist names the sibling that received more and what it has; the sibling's passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checklist_names_a_sibling_that_received_more() {
    let (primary, r1, r2) = tokio::join!(
        MariaDb::start("mp", 1),
        MariaDb::start("mr1", 2),
        MariaDb::start("mr2", 3)
    );
    for r in [&r1, &r2] {
        r.replicate_from(&primary).await;
    }
    primary.create_app_table().await;
    r1.wait_caught_up(&primary).await;
    r2.wait_caught_up(&primary).await;
    let g = Guard::start(FAST, |dir| {
        [("r1", &r1), ("r2", &r2)]
            .iter()
            .map(|(name, db)| instance_block(dir, name, db, "replica", ""))
            .collect()
    })
    .await;
    let r = g
        .wait_for("/promotion?instance=r1", LIMIT, |r| {
            r.body.contains("ok most_advanced")
        })
        .await;
    assert!(
        r.body
            .contains("ok most_advanced has received everything its 1 sibling has received (r2)"),
        "{}",
        r.body
    );

    r1.exec("STOP SLAVE IO_THREAD").await;
    primary.exec("INSERT INTO app.t VALUES (1), (2)").await;
    r2.wait_caught_up(&primary).await;
    let ahead = primary
        .query_value("SELECT @@gtid_binlog_pos")
        .await
        .expect("a position");
    let behind = r1
        .query_value("SELECT @@gtid_slave_pos")
        .await
        .expect("a position");
    let r = g
        .wait_for("/promotion?instance=r1", LIMIT, |r| {
            r.body.contains("FAIL most_advanced")
        })
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains(&format!(
            "FAIL most_advanced r2 is ahead: it has {ahead} (this one: {behind}); this one lacks it"
        )),
        "{}",
        r.body
    );
    // The one-shot checklist polls the siblings itself and says the same.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_replguard"))
        .args(["checklist", "--instance", "r1", "--config"])
        .arg(&g.config.path)
        .output()
        .expect("run replguard");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("FAIL most_advanced r2 is ahead: it has {ahead}")),
        "{text}"
    );
    let r = g
        .wait_for("/promotion?instance=r2", LIMIT, |r| {
            r.body.contains("ok most_advanced")
        })
        .await;
    assert!(r.body.contains("(r1)"), "{}", r.body);

    // Caught up again: nothing lacks.
    r1.exec("START SLAVE IO_THREAD").await;
    r1.wait_caught_up(&primary).await;
    g.wait_for("/promotion?instance=r1", LIMIT, |r| {
        r.body.contains("ok most_advanced")
    })
    .await;
    g.stop().await;
}
