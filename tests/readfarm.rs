//! A read-only farm behind a real HAProxy: three MariaDB replicas of one primary, checked with
//! `option httpchk` (the `replica` policy) and `agent-check` (weights, drain) on one guard.

mod common;

use common::guard::{agent, Guard, FAST};
use common::haproxy::{free_port, Haproxy};
use common::mariadb::{write_password_file, MariaDb, GUARD_PASSWORD};
use mysql_async::prelude::Queryable;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(40);

async fn connect(via: &MariaDb, port: u16) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::from_opts(via.admin_opts()).tcp_port(port);
    mysql_async::Conn::new(opts)
        .await
        .expect("connect through haproxy")
}

/// The server_ids `n` fresh connections through HAProxy land on.
async fn spread(via: &MariaDb, port: u16, n: usize) -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    for _ in 0..n {
        let mut c = connect(via, port).await;
        let id: Option<u32> = c.query_first("SELECT @@server_id").await.unwrap();
        ids.insert(id.unwrap());
        c.disconnect().await.unwrap();
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn farm_weights_drains_and_recovers() {
    let (primary, r1, r2, r3) = tokio::join!(
        MariaDb::start("fp", 1),
        MariaDb::start("fr1", 2),
        MariaDb::start("fr2", 3),
        MariaDb::start("fr3", 4)
    );
    for r in [&r1, &r2, &r3] {
        r.replicate_from(&primary).await;
        r.exec("SET GLOBAL read_only = ON").await;
    }
    primary.create_app_table().await;

    let maint = tempfile::tempdir().unwrap();
    let globals = format!(
        "{FAST}maintenance_file = \"{}/{{instance}}.maintenance\"\n",
        maint.path().display()
    );
    let g = Guard::start(&globals, |dir| {
        let pw = write_password_file(dir, "pw", GUARD_PASSWORD);
        [("r1", &r1), ("r2", &r2), ("r3", &r3)]
            .iter()
            .map(|(name, db)| {
                format!(
                    "[[instance]]\nname = \"{name}\"\nport = {}\nuser = \"replguard\"\n\
                     password_file = \"{}\"\npolicy = \"replica\"\nmax_lag = \"8s\"\n",
                    db.port(),
                    pw.display()
                )
            })
            .collect::<String>()
    })
    .await;
    let ro = free_port();
    let servers: String = [("r1", &r1), ("r2", &r2), ("r3", &r3)]
        .iter()
        .map(|(name, db)| {
            format!(
                "    server {name} 127.0.0.1:{} weight 100 check addr 127.0.0.1 port {} \
                 agent-check agent-addr 127.0.0.1 agent-port {} agent-inter 200 \
                 agent-send \"{name}\\n\"\n",
                db.port(),
                g.addr.port(),
                g.agent.port()
            )
        })
        .collect();
    let h = Haproxy::start(&format!(
        "listen ro\n    bind 127.0.0.1:{ro}\n    balance roundrobin\n    option httpchk\n    \
         http-check send meth GET uri-lf /replica?instance=%[srv_name]\n    \
         http-check expect status 200\n    default-server inter 200 rise 1 fall 1\n{servers}"
    ))
    .await;
    for name in ["r1", "r2", "r3"] {
        h.wait_status("ro", name, "UP", LIMIT).await;
    }
    assert_eq!(agent(g.agent, "r1\n").await, "up ready 100%\n");
    assert_eq!(
        agent(g.agent, &format!("{}\n", r2.port())).await,
        "up ready 100%\n"
    );

    // All healthy: reads spread over all three.
    assert_eq!(spread(&r1, ro, 12).await, BTreeSet::from([2, 3, 4]));

    // SQL thread stopped on r1: it leaves the pool, and says why.
    r1.exec("STOP SLAVE SQL_THREAD").await;
    h.wait_status("ro", "r1", "DOWN", LIMIT).await;
    // The agent or the HTTP check may take it out first; the HTTP check's reason shows once
    // its next run (inter 200ms) has failed too.
    h.wait_until(
        "ro",
        "r1",
        "failing its HTTP check with the reason",
        LIMIT,
        |s| s.status.starts_with("DOWN") && s.last_chk.contains("sql_thread No, want Yes"),
    )
    .await;
    assert_eq!(
        agent(g.agent, "r1\n").await,
        "down #sql_thread No, want Yes\n"
    );
    assert_eq!(spread(&r1, ro, 8).await, BTreeSet::from([3, 4]));
    r1.exec("START SLAVE SQL_THREAD").await;
    h.wait_status("ro", "r1", "UP", LIMIT).await;

    // Lag raised on r2 (delayed apply while the primary writes): its weight drops, then it
    // leaves the pool once lag passes max_lag.
    // (a global read lock holds its SQL thread; a MASTER_DELAY replica would fail as delayed)
    let mut lock = connect(&r2, r2.port()).await;
    lock.query_drop("FLUSH TABLES WITH READ LOCK")
        .await
        .unwrap();
    primary.exec("INSERT INTO app.t VALUES (1)").await;
    let start = Instant::now();
    let reduced = loop {
        let s = h.server("ro", "r2").await;
        let w: u32 = s.weight.parse().unwrap_or(100);
        if s.status == "UP" && w < 100 && w > 0 {
            break w;
        }
        assert!(start.elapsed() < LIMIT, "r2's weight never dropped: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("r2 weight while lagging: {reduced}");
    // The agent may mark it DOWN a moment before the HTTP check does: wait for the check's
    // own verdict, which names lag.
    let start = Instant::now();
    loop {
        let s = h.server("ro", "r2").await;
        if s.status.starts_with("DOWN") && s.last_chk.starts_with("lag ") {
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "r2 never left the pool on lag: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Maintenance on r3: keep a connection that landed on r3, then drain it.
    let mut kept = loop {
        let mut c = connect(&r1, ro).await;
        let id: Option<u32> = c.query_first("SELECT @@server_id").await.unwrap();
        if id == Some(4) {
            break c;
        }
        c.disconnect().await.unwrap();
    };
    let cfg = g.dir().join("replguard.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_replguard"))
        .args([
            "maintenance",
            "on",
            "--config",
            cfg.to_str().unwrap(),
            "--instance",
            "r3",
            "--reason",
            "kernel upgrade",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    g.wait_for("/replica?instance=r3", LIMIT, |r| {
        r.reason == "maintenance: kernel upgrade"
    })
    .await;
    assert_eq!(agent(g.agent, "r3\n").await, "drain\n");
    let start = Instant::now();
    while h.server("ro", "r3").await.status.starts_with("UP") {
        assert!(start.elapsed() < LIMIT, "r3 still UP in maintenance");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !spread(&r1, ro, 6).await.contains(&4),
        "no new connection reaches r3"
    );
    let still: Option<u32> = kept.query_first("SELECT @@server_id").await.unwrap();
    assert_eq!(still, Some(4), "the open connection keeps working");
    kept.disconnect().await.unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_replguard"))
        .args([
            "maintenance",
            "off",
            "--config",
            cfg.to_str().unwrap(),
            "--instance",
            "r3",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    h.wait_status("ro", "r3", "UP", LIMIT).await;
    assert_eq!(agent(g.agent, "r3\n").await, "up ready 100%\n");
    assert!(
        spread(&r1, ro, 6).await.contains(&4),
        "r3 is back in rotation"
    );
    g.stop().await;
}
