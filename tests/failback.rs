//! Failback in master-master: after a failover the returning primary gets traffic back from
//! HAProxy only once it has replicated the writes made on the backup during the outage; and
//! losing the backup never takes a caught-up primary down.

mod common;

use common::guard::{instance_block, Guard, FAST};
use common::haproxy::{free_port, Haproxy};
use common::mariadb::MariaDb;
use mysql_async::prelude::Queryable;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

use common::client::reads as client_reads;

/// Writes ids `from..to` through HAProxy, returning the server_id that took them.
async fn client_writes(via: &MariaDb, front: u16, from: u32, to: u32) -> u32 {
    let opts = mysql_async::OptsBuilder::from_opts(via.admin_opts()).tcp_port(front);
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .expect("connect through haproxy");
    let values: Vec<String> = (from..to).map(|i| format!("({i})")).collect();
    conn.query_drop(format!("INSERT INTO app.t VALUES {}", values.join(",")))
        .await
        .expect("insert through haproxy");
    let id: Option<u32> = conn.query_first("SELECT @@server_id").await.unwrap();
    conn.disconnect().await.unwrap();
    id.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_primary_waits_until_it_has_caught_up_with_the_backup() {
    let (mut a, mut b) = tokio::join!(MariaDb::start("mma", 1), MariaDb::start("mmb", 2));
    // Master-master with GTID: each writer in its own domain; A follows B from its current
    // position so it does not ask for its own transactions back.
    b.exec("SET GLOBAL gtid_domain_id = 1").await;
    b.replicate_from(&a).await;
    a.exec(&format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='repl', \
         MASTER_PASSWORD='repl', MASTER_USE_GTID=current_pos, MASTER_CONNECT_RETRY=1",
        b.port()
    ))
    .await;
    a.exec("START SLAVE").await;
    a.create_app_table().await;

    let state = tempfile::tempdir().unwrap();
    let globals = format!("{FAST}state_dir = \"{}\"\n", state.path().display());
    let ga = Guard::start(&globals, |dir| instance_block(dir, "a", &a, "primary", "")).await;
    let gb = Guard::start(&globals, |dir| instance_block(dir, "b", &b, "backup", "")).await;
    let front = free_port();
    let h = Haproxy::start(&format!(
        "listen mysql\n    bind 127.0.0.1:{front}\n    option httpchk GET /mysqlchk/\n    \
         http-check expect status 200\n    \
         default-server inter 200 rise 2 fall 2 on-marked-down shutdown-sessions\n    \
         server a 127.0.0.1:{} check port {}\n    server b 127.0.0.1:{} check port {} backup\n",
        a.port(),
        ga.addr.port(),
        b.port(),
        gb.addr.port()
    ))
    .await;
    // A's channel from B may still be connecting: the primary policy fails closed until it
    // has seen it connected and caught up.
    ga.wait_for("/primary", LIMIT, |r| r.status == 200).await;
    h.wait_status("mysql", "a", "UP", LIMIT).await;
    assert_eq!(client_writes(&b, front, 0, 10).await, 1);
    b.wait_caught_up(&a).await;
    h.wait_status("mysql", "b", "UP", LIMIT).await;
    let peer = ga.get("/primary").await;
    assert_eq!(peer.status, 200, "{peer:#?}");
    assert!(
        peer.line("peer").unwrap().contains("connected, lag 0s"),
        "{}",
        peer.body
    );

    // The primary dies: traffic moves to the caught-up backup, which takes writes.
    a.kill();
    h.wait_status("mysql", "a", "DOWN", LIMIT).await;
    assert_eq!(client_writes(&b, front, 100, 110).await, 2);

    // The primary returns with its replication from the backup held back (IO thread only):
    // it is writable, but lacks the outage's writes, so HAProxy keeps traffic on the backup.
    a.restart().await;
    a.exec("START SLAVE IO_THREAD").await;
    ga.wait_polls("a", 3).await;
    let held = ga.get("/primary").await;
    assert_eq!(held.status, 503, "{held:#?}");
    assert!(held.reason.starts_with("peer "), "{held:#?}");
    assert_eq!(h.server("mysql", "a").await.status, "DOWN");
    assert_eq!(client_reads(&b, front).await, Ok((2, 20)));

    // Released: it applies the outage's writes, passes, and HAProxy moves traffic back.
    a.exec("START SLAVE SQL_THREAD").await;
    h.wait_status("mysql", "a", "UP", LIMIT).await;
    assert_eq!(
        client_reads(&b, front).await,
        Ok((1, 20)),
        "every outage write is there"
    );

    // The other way round: the backup dies while the primary serves. The primary stays UP.
    b.kill();
    h.wait_status("mysql", "b", "DOWN", LIMIT).await;
    ga.wait_polls("a", 3).await;
    let alone = ga.get("/primary").await;
    assert_eq!(alone.status, 200, "{alone:#?}");
    assert!(
        alone.line("peer").unwrap().contains(" lost since "),
        "{}",
        alone.body
    );
    assert_eq!(h.server("mysql", "a").await.status, "UP");
    assert_eq!(client_reads(&a, front).await, Ok((1, 20)));
    ga.stop().await;
    gb.stop().await;
}
