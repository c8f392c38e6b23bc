//! Stall detection on real MariaDB: the replica replicates through a TCP relay that the test
//! can freeze. The IO thread keeps saying `Yes` and Seconds_Behind_Master keeps saying 0 while
//! nothing arrives; the guard, reading the source directly, sees it advance and fails the
//! replica as "replication stalled".

mod common;

use common::guard::{instance_block, Guard, FAST};
use common::mariadb::MariaDb;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A loopback TCP relay to `target`; while `frozen` is set it stops reading, so nothing
/// crosses in either direction and the connections stay open, like a stalled network.
async fn relay(target: u16, frozen: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, frozen.clone()));
            tokio::spawn(pump(sr, cw, frozen.clone()));
        }
    });
    port
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_read_position_while_the_source_advances_is_a_stall() {
    let (primary, replica) = tokio::join!(MariaDb::start("stp", 1), MariaDb::start("str", 2));
    let frozen = Arc::new(AtomicBool::new(false));
    let via = relay(primary.port(), frozen.clone()).await;
    replica
        .exec(&format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={via}, MASTER_USER='repl', \
             MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos"
        ))
        .await;
    replica.exec("START SLAVE").await;
    replica.exec("SET GLOBAL read_only = ON").await;
    primary.exec("CREATE DATABASE app").await;
    primary
        .exec("CREATE TABLE app.t (id INT PRIMARY KEY)")
        .await;
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
    let ok = g.wait_for("/replica", limit, |r| r.status == 200).await;
    assert!(
        ok.line("stall").unwrap().starts_with("ok stall"),
        "{}",
        ok.body
    );

    frozen.store(true, Ordering::SeqCst);
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
    frozen.store(false, Ordering::SeqCst);
    g.stop().await;
}
