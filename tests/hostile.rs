//! Hostile clients on the network: no client can make the guard grow without bound or stop
//! answering. These need no MySQL: the guard's instances point at closed ports (their checks
//! fail, which is beside the point here).

mod common;

use common::guard::{agent, Guard, FAST};
use common::haproxy::free_port;
use common::mariadb::write_password_file;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A guard with two instances (so the agent waits for `agent-send`), on closed ports.
async fn guard() -> Guard {
    guard_with("").await
}

/// The same with more top-level keys.
async fn guard_with(globals: &str) -> Guard {
    Guard::start(&format!("{FAST}{globals}"), |dir| {
        let pw = write_password_file(dir, "pw", "x");
        ["a", "b"]
            .iter()
            .map(|name| {
                format!(
                    "[[instance]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\n\
                     user = \"u\"\npassword_file = \"{}\"\n",
                    free_port(),
                    pw.display()
                )
            })
            .collect()
    })
    .await
}

/// Reads until the peer closes; `None` if it did not within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    tokio::time::timeout(limit, s.read_to_end(&mut got))
        .await
        .ok()
        .map(|_| got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_agent_line_is_cut_off() {
    let g = guard().await;
    let mut s = TcpStream::connect(g.agent).await.unwrap();
    // Far more than a line may hold, without a newline; the guard may close mid-way.
    let junk = vec![b'x'; 64 * 1024];
    for _ in 0..16 {
        if s.write_all(&junk).await.is_err() {
            break;
        }
    }
    let got = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("the guard closes a connection whose line is too long");
    assert!(got.is_empty(), "no reply to a line that long: {got:?}");
    // Others are still answered.
    assert!(agent(g.agent, "a\n").await.starts_with("down #"));
    g.stop().await;
}

/// Silent agent connections from one address hold at most half the listener (shares count
/// once it is half full): older ones are displaced, and a newer one that sends its line is
/// answered (issue 22).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_connections_are_bounded_and_fair() {
    let g = guard().await;
    let mut idle = Vec::new();
    for _ in 0..replguard::AGENT_MAX_CONNECTIONS {
        idle.push(TcpStream::connect(g.agent).await.unwrap());
    }
    // Give the listener time to take them all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        agent(g.agent, "b\n").await.starts_with("down #"),
        "a newcomer is answered"
    );
    let mut open = 0;
    for s in &mut idle {
        if closed_within(s, Duration::from_millis(20)).await.is_none() {
            open += 1;
        }
    }
    // Shares count once the listener is half full: one address holds at most half of it.
    assert!(
        open <= replguard::AGENT_MAX_CONNECTIONS / 2,
        "{open} silent connections from one address still held"
    );
    g.stop().await;
}

/// A maintenance file that cannot be read (here: a directory in its place; in the field,
/// running out of file descriptors) is its own failure, never "maintenance on".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_maintenance_file_is_not_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a.maintenance")).unwrap();
    let globals = format!(
        "{FAST}maintenance_file = \"{}/{{instance}}.maintenance\"\n",
        dir.path().display()
    );
    let g = Guard::start(&globals, |d| {
        let pw = write_password_file(d, "pw", "x");
        format!(
            "[[instance]]\nname = \"a\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"u\"\n\
             password_file = \"{}\"\n",
            free_port(),
            pw.display()
        )
    })
    .await;
    let r = g
        .wait_for("/replica", Duration::from_secs(10), |r| {
            r.reason.starts_with("maintenance_file")
        })
        .await;
    assert_eq!(r.status, 503);
    assert!(
        r.reason
            .ends_with("a.maintenance unreadable: not a regular file"),
        "{r:#?}"
    );
    assert!(!r.body.contains("FAIL maintenance "), "{}", r.body);
    let events = g.get("/events").await;
    assert!(!events.body.contains("maintenance_on"), "{}", events.body);
    // The agent does not drain it as if in maintenance: it is down, for that reason.
    let reply = agent(g.agent, "").await;
    assert!(reply.starts_with("down #maintenance_file "), "{reply}");
    g.stop().await;
}

/// Connects and sends `bytes`, keeping the connection open.
async fn send(g: &Guard, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_keep_alive_connections_are_closed() {
    let g = guard_with("header_read_timeout = \"500ms\"\nidle_timeout = \"1s\"\n").await;
    // Slowloris: a request line, then nothing.
    let mut slow = send(&g, b"GET /healthz HTTP/1.1\r\n").await;
    let got = closed_within(&mut slow, Duration::from_secs(5))
        .await
        .expect("headers that never finish: closed");
    // hyper may answer 408 before closing; it never answers the request.
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"), "{got:?}");

    // Keep-alive: one answered request, then silence.
    let mut idle = send(&g, b"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n").await;
    let got = closed_within(&mut idle, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200 OK"),
        "{got:?}"
    );
    g.stop().await;
}

/// The header-read timeout bounds every request of a keep-alive connection, not only the first:
/// after an answer, a client that trickles in the next head (a byte now and then, so the idle
/// timeout never fires) is closed without an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_trickling_its_next_head_is_closed() {
    let g = guard_with("header_read_timeout = \"500ms\"\nidle_timeout = \"1h\"\n").await;
    let mut s = send(&g, b"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n").await;
    let mut first = [0u8; 17];
    s.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200 OK\r\n");
    let start = std::time::Instant::now();
    let mut closed = false;
    for b in b"GET /healthz HTTP/1.1\r\nX-Slow: "
        .iter()
        .cycle()
        .take(100)
    {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if start.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let rest = closed_within(&mut s, Duration::from_secs(2)).await;
    assert!(
        closed || rest.is_some(),
        "still open after {:?} of trickled headers",
        start.elapsed()
    );
    if let Some(rest) = rest {
        // Whatever came after the first answer, it is not a second one.
        assert!(
            !String::from_utf8_lossy(&rest).contains("200 OK"),
            "{rest:?}"
        );
    }
    g.stop().await;
}

/// At the cap, a check displaces the oldest connection that has not delivered a request, instead
/// of being refused (issue 22); the cap itself holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_a_check_displaces_the_oldest_silent_connection() {
    let g = guard_with("max_connections = 5\nheader_read_timeout = \"1h\"\n").await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(send(&g, b"G").await);
        // Admission order is arrival order: keep the first the oldest.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = send(
        &g,
        b"GET /healthz HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
    )
    .await;
    let got = closed_within(&mut extra, Duration::from_secs(2))
        .await
        .expect("answered");
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200 OK"),
        "{got:?}"
    );
    // The oldest silent one made room; the others are still open.
    let first = closed_within(&mut held[0], Duration::from_secs(1)).await;
    assert_eq!(
        first.as_deref(),
        Some(&b""[..]),
        "the oldest was closed unanswered"
    );
    assert!(
        closed_within(&mut held[4], Duration::from_millis(300))
            .await
            .is_none(),
        "a newer silent connection stays"
    );
    g.stop().await;
}

/// A client that sent one byte and keeps its socket open must not hold up shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_half_sent_request() {
    let g = guard_with("header_read_timeout = \"1h\"\nidle_timeout = \"1h\"\n").await;
    let _half = send(&g, b"G").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    // Guard::stop fails the test if this takes 10 s; the deadline is 2 s.
    g.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "shutdown took {:?}",
        started.elapsed()
    );
}

/// Connections from addresses `allow_from` refuses are answered and closed at once: they take
/// no slot, so they cannot crowd out HAProxy's checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_addresses_cannot_fill_the_connection_cap() {
    let g = guard_with("max_connections = 2\n[web]\nallow_from = [\"127.0.0.2/32\"]\n").await;
    let mut refused = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(g.addr).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut got))
            .await
            .expect("answered and closed at once")
            .ok();
        assert!(
            String::from_utf8_lossy(&got).starts_with("HTTP/1.1 403 Forbidden"),
            "{got:?}"
        );
        refused.push(s);
    }
    // An allowed client (127.0.0.2) is still served.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut s = socket.connect(g.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200 OK"),
        "{got:?}"
    );
    g.stop().await;
}
