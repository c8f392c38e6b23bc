//! A loopback TCP relay between a replica and its source, for network faults on real
//! replication: `freeze` stops forwarding while keeping the connections open (a stalled
//! network: the IO thread still says `Yes`), `cut` drops every connection and every new one (a
//! partition: the IO thread reconnects and fails with a network error). The guard reads the
//! source directly, around the relay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A running relay; it stops with the test's runtime.
pub struct Relay {
    pub port: u16,
    frozen: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    /// Cancelled on `cut`: every open connection's pumps stop at once.
    drop_all: CancellationToken,
}

impl Relay {
    /// Starts a relay to `target` on a free loopback port.
    pub async fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let drop_all = CancellationToken::new();
        let (f, c, d) = (frozen.clone(), cut.clone(), drop_all.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the replica sees its connection closed at once
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, f.clone(), d.clone()));
                tokio::spawn(pump(sr, cw, f.clone(), d.clone()));
            }
        });
        Relay {
            port,
            frozen,
            cut,
            drop_all,
        }
    }

    /// Stops (`true`) or resumes (`false`) forwarding, connections kept open.
    pub fn freeze(&self, on: bool) {
        self.frozen.store(on, Ordering::SeqCst);
    }

    /// Partitions the replica from its source for good: open connections are closed and new
    /// ones refused.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.drop_all.cancel();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
    drop_all: CancellationToken,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while frozen.load(Ordering::SeqCst) {
            if drop_all.is_cancelled() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let n = tokio::select! {
            _ = drop_all.cancelled() => return,
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        // Bytes a read already waiting picked up after the freeze began stay held too: a
        // frozen link passes nothing.
        while frozen.load(Ordering::SeqCst) {
            if drop_all.is_cancelled() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
