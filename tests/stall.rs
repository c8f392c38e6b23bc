//! Stall detection on real MariaDB: the replica replicates through a TCP relay that the test
//! can freeze. The IO thread keeps saying `Yes` and Seconds_Behind_Master keeps saying 0 while
//! nothing arrives; the guard, reading the source directly, sees it advance and fails the
//! replica as "replication stalled".

mod common;

use common::guard::{instance_block, Guard, FAST};
use common::mariadb::MariaDb;
use common::relay::Relay;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_read_position_while_the_source_advances_is_a_stall() {
    let (primary, replica) = tokio::join!(MariaDb::start("stp", 1), MariaDb::start("str", 2));
    let relay = Relay::start(primary.port()).await;
    replica.replicate_via(&primary, relay.port).await;
    replica.exec("SET GLOBAL read_only = ON").await;
    primary.create_app_table().await;
    replica.wait_caught_up(&primary).await;

    // The guard reads the source directly, not through the relay.
    let g = Guard::start(FAST, |dir| {
        instance_block(
            dir,
            "r",
            &replica,
            "replica",
            &format!(
                "max_stall = \"2s\"\nsource = {{ host = \"127.0.0.1\", port = {} }}\n",
                primary.port()
            ),
        )
    })
    .await;
    let limit = Duration::from_secs(30);
    // The first poll cannot judge a stall; the next ones can.
    let ok = g
        .wait_for("/replica", limit, |r| {
            r.status == 200 && r.body.contains("ok stall")
        })
        .await;
    assert!(
        ok.line("stall").unwrap().starts_with("ok stall"),
        "{}",
        ok.body
    );

    relay.freeze(true);
    for i in 0..10 {
        primary
            .exec(&format!("INSERT INTO app.t VALUES ({i})"))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let stalled = g
        .wait_for("/replica", limit, |r| r.reason.starts_with("stall "))
        .await;
    assert_eq!(stalled.status, 503);
    assert!(
        stalled
            .reason
            .starts_with("stall replication stalled: read position "),
        "{stalled:#?}"
    );
    // The lie it catches: the IO thread says Yes and Seconds_Behind_Master says 0.
    assert_eq!(
        stalled.line("io_thread"),
        Some("ok io_thread Yes"),
        "{}",
        stalled.body
    );
    assert!(
        stalled.line("lag").unwrap().starts_with("ok lag 0s"),
        "{}",
        stalled.body
    );
    relay.freeze(false);
    g.stop().await;
}
