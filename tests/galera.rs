//! The `galera` policy on a real three-node Galera cluster (Debian's galera-4 and mariadbd on
//! loopback): what clustercheck and `option mysql-check` miss — a desynced node, one that
//! rejects queries, a read-only one, and a node cut off into a non-Primary component.

mod common;

use common::galera::Cluster;
use common::guard::{Guard, FAST};
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn block(dir: &Path, name: &str, port: u16, policy: &str) -> String {
    common::galera::instance_block(dir, name, port, policy, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn galera_nodes_are_judged_by_their_cluster_state() {
    let mut cluster = Cluster::start(3).await;
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    let g = Guard::start(FAST, |dir| {
        block(dir, "g1", ports[0], "galera")
            + &block(dir, "g2", ports[1], "galera")
            // auto picks the galera policy on a wsrep node.
            + &block(dir, "g3", ports[2], "auto")
    })
    .await;
    for name in ["g1", "g2"] {
        g.wait_for(&format!("/galera?instance={name}"), LIMIT, |r| {
            r.status == 200
        })
        .await;
    }
    let r = g
        .wait_for("/mysqlchk/?instance=g3", LIMIT, |r| r.status == 200)
        .await;
    assert!(
        r.body.contains("ok role galera node -> galera"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("ok wsrep_local_state Synced (4)"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("ok wsrep_cluster_status Primary"),
        "{}",
        r.body
    );
    let metrics = g.get("/metrics").await.body;
    for line in [
        r#"replguard_galera_local_state{instance="g1"} 4"#,
        r#"replguard_galera_primary_component{instance="g1"} 1"#,
        r#"replguard_galera_cluster_size{instance="g2"} 3"#,
        r#"replguard_galera_ready{instance="g3"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    assert_eq!(
        common::guard::agent(g.agent, "g2\n").await,
        "up ready 100%\n",
        "the agent answers for Galera nodes too"
    );
    // Checks add no MySQL load: 300 checks of g1 cost its server no statement beyond the
    // guard's own polls (3 a poll: variables, replica status, wsrep state; one every 300 ms).
    let questions = || async {
        cluster.nodes[0]
            .status("Questions")
            .await
            .and_then(|q| q.parse::<u64>().ok())
            .expect("Questions")
    };
    let before = questions().await;
    let start = std::time::Instant::now();
    for _ in 0..300 {
        assert_eq!(g.get("/galera?instance=g1").await.status, 200);
    }
    let polls = start.elapsed().as_millis() as u64 / 300 + 2;
    let delta = questions().await - before;
    assert!(
        delta <= polls * 3 + 2,
        "{delta} statements for 300 checks over {polls} polls"
    );

    // Desynced (a backup in progress, say): out, naming the state; back in when resynced.
    cluster.nodes[1].exec("SET GLOBAL wsrep_desync = ON").await;
    let r = g
        .wait_for("/galera?instance=g2", LIMIT, |r| r.status == 503)
        .await;
    assert!(
        r.reason.starts_with("wsrep_local_state Donor/Desynced (2)"),
        "{}",
        r.reason
    );
    let agent = common::guard::agent(g.agent, "g2\n").await;
    assert!(
        agent.starts_with("down #wsrep_local_state Donor/Desynced"),
        "{agent}"
    );
    let events = g.get("/events?instance=g2").await.body;
    assert!(
        events.contains("\"galera_degraded\"")
            && events.contains("Synced in Primary -> Donor/Desynced in Primary"),
        "{events}"
    );
    cluster.nodes[1].exec("SET GLOBAL wsrep_desync = OFF").await;
    g.wait_for("/galera?instance=g2", LIMIT, |r| r.status == 200)
        .await;

    // A node told to reject queries (the documented way to drain one).
    cluster.nodes[0]
        .exec("SET GLOBAL wsrep_reject_queries = ALL")
        .await;
    let r = g
        .wait_for("/galera?instance=g1", LIMIT, |r| r.status == 503)
        .await;
    assert_eq!(r.reason, "wsrep_reject_queries ALL, want NONE");
    cluster.nodes[0]
        .exec("SET GLOBAL wsrep_reject_queries = NONE")
        .await;
    g.wait_for("/galera?instance=g1", LIMIT, |r| r.status == 200)
        .await;

    // Read-only: out unless available_when_readonly.
    cluster.nodes[1].exec("SET GLOBAL read_only = ON").await;
    let r = g
        .wait_for("/galera?instance=g2", LIMIT, |r| r.status == 503)
        .await;
    assert_eq!(r.reason, "read_only ON, want OFF");
    cluster.nodes[1].exec("SET GLOBAL read_only = OFF").await;
    g.wait_for("/galera?instance=g2", LIMIT, |r| r.status == 200)
        .await;

    // Two nodes die: the survivor is alone in a non-Primary component. It still answers its
    // status (and `option mysql-check`), but refuses work: it must be out.
    cluster.nodes[1].kill();
    cluster.nodes[2].kill();
    let r = g
        .wait_for("/galera?instance=g1", LIMIT, |r| r.status == 503)
        .await;
    assert_eq!(
        r.reason, "wsrep_cluster_status non-Primary, want Primary",
        "{}",
        r.body
    );
    assert!(
        r.body.contains("FAIL wsrep_ready OFF, want ON"),
        "{}",
        r.body
    );
    let metrics = g.get("/metrics").await.body;
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"replguard_galera_primary_component{instance="g1"} 0"#),
        "{metrics}"
    );
    g.stop().await;
}

/// A connection through `front` (HAProxy) as the admin user.
async fn through(front: u16) -> mysql_async::Result<mysql_async::Conn> {
    mysql_async::Conn::new(
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(front)
            .user(Some(common::mariadb::ADMIN_USER))
            .pass(Some(common::mariadb::ADMIN_PASSWORD))
            .prefer_socket(false),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_single_writer_moves_to_a_synced_backup_with_every_row() {
    use mysql_async::prelude::Queryable;
    let mut cluster = Cluster::start(3).await;
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    let g = Guard::start(FAST, |dir| {
        block(dir, "g1", ports[0], "galera")
            + &block(dir, "g2", ports[1], "galera")
            + &block(dir, "g3", ports[2], "galera")
    })
    .await;
    let front = common::free_port();
    let servers: String = ["g1", "g2", "g3"]
        .iter()
        .zip(&ports)
        .enumerate()
        .map(|(i, (name, port))| {
            format!(
                "    server {name} 127.0.0.1:{port} check addr 127.0.0.1 port {}{}\n",
                g.addr.port(),
                if i == 0 { "" } else { " backup" }
            )
        })
        .collect();
    let h = common::haproxy::Haproxy::start(&format!(
        "listen rw\n    bind 127.0.0.1:{front}\n    option httpchk\n    \
         http-check send meth GET uri-lf /galera?instance=%[srv_name]\n    \
         http-check expect status 200\n    \
         default-server inter 200 rise 2 fall 2 on-marked-down shutdown-sessions\n{servers}"
    ))
    .await;
    for name in ["g1", "g2", "g3"] {
        h.wait_status("rw", name, "UP", LIMIT).await;
    }
    let mut c = through(front).await.expect("connect through haproxy");
    let node: String = c
        .query_first("SELECT @@wsrep_node_name")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(node, "g1", "the single writer");
    c.query_drop("CREATE DATABASE app").await.unwrap();
    c.query_drop("CREATE TABLE app.t (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    for id in 1..=200 {
        c.exec_drop("INSERT INTO app.t VALUES (?, ?)", (id, id * 2))
            .await
            .unwrap();
    }
    drop(c);

    // The writer dies: HAProxy moves the writes to a Synced backup, which has every row.
    cluster.nodes[0].kill();
    h.wait_status("rw", "g1", "DOWN", LIMIT).await;
    let start = std::time::Instant::now();
    let (node, rows) = loop {
        if let Ok(mut c) = through(front).await {
            let node: Option<String> = c
                .query_first("SELECT @@wsrep_node_name")
                .await
                .ok()
                .flatten();
            // A node applies what it received asynchronously: the count waits for it
            // (wsrep_sync_wait), so what is asserted is that no committed row was lost.
            let _ = c.query_drop("SET SESSION wsrep_sync_wait = 1").await;
            let rows: Option<u64> = c
                .query_first("SELECT COUNT(*) FROM app.t")
                .await
                .ok()
                .flatten();
            if let (Some(node), Some(rows)) = (node, rows) {
                c.exec_drop("INSERT INTO app.t VALUES (?, ?)", (201, 402))
                    .await
                    .expect("the new writer takes writes");
                break (node, rows);
            }
        }
        assert!(
            start.elapsed() < LIMIT,
            "no writer behind haproxy after g1 died"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(node == "g2" || node == "g3", "a backup took over: {node}");
    assert_eq!(
        rows, 200,
        "every row written through the old writer is there"
    );
    let r = g.get("/galera?instance=g1").await;
    assert_eq!(r.status, 503);

    // g1 comes back and rejoins (IST): never 200 before it reports Synced itself.
    cluster.nodes[0].rejoin();
    let start = std::time::Instant::now();
    loop {
        let r = g.get("/galera?instance=g1").await;
        if r.status == 200 {
            assert_eq!(
                cluster.nodes[0]
                    .status("wsrep_local_state_comment")
                    .await
                    .as_deref(),
                Some("Synced"),
                "200 only for a Synced node"
            );
            break;
        }
        assert_eq!(r.status, 503, "{r:?}");
        assert!(start.elapsed() < LIMIT, "g1 never rejoined: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // HAProxy puts it back as the writer (it is the non-backup server).
    h.wait_status("rw", "g1", "UP", LIMIT).await;
    g.stop().await;
}
