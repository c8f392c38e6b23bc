//! replguard behind a real HAProxy: the classic `option httpchk GET /mysqlchk/?port=N` setup
//! and the one-line `uri-lf` form take a replica out of rotation when its SQL thread stops,
//! and HAProxy records the guard's reason.

mod common;

use common::guard::{instance_block, Guard, FAST};
use common::haproxy::{free_port, Haproxy};
use common::mariadb::MariaDb;
use mysql_async::prelude::Queryable;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_follows_the_guard() {
    let (primary, replica) =
        tokio::join!(MariaDb::start("hprimary", 1), MariaDb::start("hreplica", 2));
    replica.replicate_from(&primary).await;
    replica.exec("SET GLOBAL read_only = ON").await;
    let g = Guard::start(FAST, |dir| {
        instance_block(dir, "primary", &primary, "auto", "")
            + &instance_block(dir, "replica", &replica, "auto", "")
    })
    .await;
    let (rw, ro) = (free_port(), free_port());
    let guard_port = g.addr.port();
    let h = Haproxy::start(&format!(
        "listen mysql_rw\n    bind 127.0.0.1:{rw}\n    option httpchk GET /mysqlchk/?port={pp}\n    \
         default-server inter 200 rise 1 fall 1\n    \
         server primary 127.0.0.1:{pp} check port {guard_port}\n\n\
         listen mysql_ro\n    bind 127.0.0.1:{ro}\n    option httpchk\n    \
         http-check send meth GET uri-lf /replica?instance=%[srv_name]\n    \
         http-check expect status 200\n    default-server inter 200 rise 1 fall 1\n    \
         server replica 127.0.0.1:{rp} check addr 127.0.0.1 port {guard_port}\n",
        pp = primary.port(),
        rp = replica.port(),
    ))
    .await;

    let limit = Duration::from_secs(20);
    h.wait_status("mysql_rw", "primary", "UP", limit).await;
    h.wait_status("mysql_ro", "replica", "UP", limit).await;

    // MySQL traffic through HAProxy reaches the right servers.
    for (port, want) in [(rw, 1u32), (ro, 2u32)] {
        let opts = mysql_async::OptsBuilder::from_opts(replica.admin_opts()).tcp_port(port);
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .expect("connect through haproxy");
        let id: Option<u32> = conn.query_first("SELECT @@server_id").await.unwrap();
        assert_eq!(id, Some(want), "through port {port}");
        conn.disconnect().await.unwrap();
    }

    replica.exec("STOP SLAVE SQL_THREAD").await;
    let down = h.wait_status("mysql_ro", "replica", "DOWN", limit).await;
    assert_eq!(down.check_status, "L7STS", "{down:?}");
    assert!(
        down.last_chk.contains("sql_thread No, want Yes"),
        "{down:?}"
    );
    assert!(
        h.log().contains("info: \"sql_thread No, want Yes\""),
        "HAProxy's log names the reason:\n{}",
        h.log()
    );
    assert_eq!(h.server("mysql_rw", "primary").await.status, "UP");

    replica.exec("START SLAVE SQL_THREAD").await;
    h.wait_status("mysql_ro", "replica", "UP", limit).await;
    g.stop().await;
}
