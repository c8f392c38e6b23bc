//! Fair admission for the HTTP and agent listeners: no client can take the checks away.
//!
//! Each listener admits at most `max` connections in all and, once it is half full,
//! `per_client` from one address (addresses in `check_from`, where HAProxy checks from, are
//! held only to `max`). A connection that arrives when its address or the listener is full is
//! not refused: it displaces the oldest
//! connection that has not delivered a request (still handshaking, still sending its headers,
//! or idle between keep-alive requests) — of its own address first, then, with the listener
//! full, of any address outside `check_from` before those inside. A connection whose request is
//! being answered is never displaced. Only when nothing can be displaced is a connection
//! refused. So a flood of silent connections from one address churns through that address's
//! own share, and checks from every other address keep being answered.
//!
//! No I/O here: a connection is a [`Ticket`] whose [`Conn`] the connection's task watches
//! (it ends the connection when displaced) and marks busy while a request is answered.

use crate::hub::metrics::Metrics;
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// The agent listener's connection cap (HAProxy holds one per server and check).
pub const AGENT_MAX_CONNECTIONS: usize = 256;

/// The kernel's queue of connections not yet accepted (capped by `net.core.somaxconn`): deeper
/// than tokio's default 1024, so that a flood of a few thousand clients does not overflow it —
/// an overflowing queue drops new SYNs, whoever sends them, and the client retries a second
/// later.
pub const BACKLOG: u32 = 4096;

/// Binds a listener with a [`BACKLOG`]-deep accept queue.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As tokio's TcpListener::bind does: a restarted guard can bind at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The fewest HTTP connections worth serving: below, the guard refuses to start.
pub const MIN_HTTP_CONNECTIONS: u64 = 16;

/// Too few file descriptors to serve: the limit, the room left and the reserve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the file descriptor limit {nofile} leaves room for {room} HTTP connections after a reserve \
     of {reserve} (polls and sources of {instances} instances, files{agent}); at least \
     {MIN_HTTP_CONNECTIONS} are needed: raise LimitNOFILE (systemd) or ulimit -n to {wanted} or \
     more",
    agent = if *.agent { ", the agent" } else { "" }
)]
pub struct DescriptorError {
    pub nofile: u64,
    pub room: u64,
    pub reserve: u64,
    pub instances: usize,
    pub agent: bool,
    /// A limit that would serve `max_connections`.
    pub wanted: u64,
}

/// The HTTP connection cap that fits a descriptor limit of `nofile`: `max_connections`, or less
/// after a reserve for polls and source connections (4 per instance), files and the runtime
/// (64), and the agent's connections when `agent` is configured. An error (naming
/// `LimitNOFILE`) when fewer than [`MIN_HTTP_CONNECTIONS`] are left.
pub fn fit_descriptors(
    nofile: u64,
    instances: usize,
    agent: bool,
    max_connections: usize,
) -> Result<usize, DescriptorError> {
    let agent_reserve = if agent {
        AGENT_MAX_CONNECTIONS as u64
    } else {
        0
    };
    let reserve = 64 + 4 * instances as u64 + agent_reserve;
    let room = nofile.saturating_sub(reserve);
    if room < MIN_HTTP_CONNECTIONS {
        return Err(DescriptorError {
            nofile,
            room,
            reserve,
            instances,
            agent,
            wanted: reserve + MIN_HTTP_CONNECTIONS.max(max_connections as u64),
        });
    }
    Ok(max_connections.min(room as usize))
}

/// Raises the soft descriptor limit to the hard one and keeps `config`'s HTTP connection cap
/// below what is left after the reserve (see [`fit_descriptors`]): a flood of HTTP clients
/// must never leave a poll without a descriptor. A lowered cap is logged.
pub fn fit_config(config: &mut crate::config::Config) -> Result<(), DescriptorError> {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the file descriptor limit");
    }
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return Ok(());
    };
    let fit = fit_descriptors(
        soft,
        config.instances.len(),
        config.agent_listen.is_some(),
        config.max_connections,
    )?;
    if fit < config.max_connections {
        tracing::warn!(
            max_connections = config.max_connections,
            nofile = soft,
            lowered_to = fit,
            "max_connections lowered to fit the file descriptor limit (raise LimitNOFILE)"
        );
        config.max_connections = fit;
    }
    Ok(())
}

/// One listener's admission state.
pub struct Admission {
    listener: &'static str,
    max: usize,
    per_client: usize,
    check_from: Vec<IpNet>,
    metrics: Arc<Metrics>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Admission order is id order: the first entry is the oldest connection.
    next_id: u64,
    conns: BTreeMap<u64, Entry>,
    per_ip: HashMap<IpAddr, usize>,
}

struct Entry {
    ip: IpAddr,
    trusted: bool,
    conn: Arc<Conn>,
}

/// What a connection's task shares with the admission: whether it is answering a request, and
/// the signal that it was displaced.
#[derive(Default)]
pub struct Conn {
    /// Requests being answered (a connection answers one at a time; the count keeps a late
    /// end of one request from clearing the next).
    busy: AtomicU32,
    /// Answers handed to the transport but not yet flushed: they still count as busy.
    responded: AtomicU32,
    /// The request was already in when the connection was accepted ([`Conn::arrived`]); the
    /// request's own [`Conn::busy`] then takes this mark instead of counting again.
    arrived: std::sync::atomic::AtomicBool,
    displaced: CancellationToken,
}

impl Conn {
    /// A request has arrived: from now until [`Conn::answered`] the connection is not displaced.
    pub fn busy(&self) {
        if !self.arrived.swap(false, Ordering::SeqCst) {
            self.busy.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The whole request (or TLS ClientHello) was already waiting when the connection was
    /// accepted: busy from now, before its task has read it, so a flood arriving meanwhile
    /// cannot displace it. The first [`Conn::busy`] after this counts as the same request (over
    /// TLS: the handshake and the first request are one delivery, bounded by
    /// `header_read_timeout`).
    pub fn arrived(&self) {
        if !self.arrived.swap(true, Ordering::SeqCst) {
            self.busy.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The answer to a request has been sent.
    pub fn answered(&self) {
        let _ = self
            .busy
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// An answer has been handed to the transport; it counts as sent at the next
    /// [`Conn::flushed`].
    pub fn responded(&self) {
        self.responded.fetch_add(1, Ordering::SeqCst);
    }

    /// The transport flushed: every answer handed to it before is sent. Returns how many that
    /// were (0: the flush sent no answer).
    pub fn flushed(&self) -> u32 {
        let sent = self.responded.swap(0, Ordering::SeqCst);
        for _ in 0..sent {
            self.answered();
        }
        sent
    }

    /// Resolves when the connection has been displaced; its task then drops it.
    pub async fn displaced(&self) {
        self.displaced.cancelled().await
    }

    /// Whether a request is being answered (or its answer not yet flushed).
    pub(crate) fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }
}

/// An admitted connection; dropping it frees its place.
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    pub conn: Arc<Conn>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.remove(self.id);
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its address holds `per_client` connections, every one answering a request.
    PerClient,
    /// The listener holds `max` connections and none can be displaced.
    Full,
}

impl Admission {
    pub fn new(
        listener: &'static str,
        max: usize,
        per_client: usize,
        check_from: Vec<IpNet>,
        metrics: Arc<Metrics>,
    ) -> Arc<Admission> {
        Arc::new(Admission {
            listener,
            max: max.max(1),
            per_client: per_client.max(1),
            check_from,
            metrics,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Admits a connection from `ip`, displacing another if need be; counts displacements and
    /// refusals in the metrics (`replguard_displaced_total`, `replguard_refused_total`).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
        let ip = ip.to_canonical();
        let trusted = self.check_from.iter().any(|net| net.contains(&ip));
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Shares count once the listener is half full: below that, room is plenty and one
        // client may hold many keep-alive connections (a load test, a central HAProxy); above,
        // an address over its share makes room among its own connections first, so one
        // address never holds more than half of the listener, whatever it does.
        let pressed = inner.conns.len() >= self.max / 2;
        if !trusted && pressed && inner.per_ip.get(&ip).copied().unwrap_or(0) >= self.per_client {
            let Some(victim) = inner.oldest_idle(|e| e.ip == ip) else {
                drop(inner);
                self.metrics.count_refused(self.listener, "per_client");
                return Err(Refused::PerClient);
            };
            inner.displace(victim);
            self.metrics.count_displaced(self.listener, "per_client");
        }
        if inner.conns.len() >= self.max {
            let victim = inner
                .oldest_idle(|e| !e.trusted)
                .or_else(|| inner.oldest_idle(|_| trusted));
            let Some(victim) = victim else {
                drop(inner);
                self.metrics.count_refused(self.listener, "limit");
                return Err(Refused::Full);
            };
            inner.displace(victim);
            self.metrics.count_displaced(self.listener, "full");
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let conn = Arc::new(Conn::default());
        inner.conns.insert(
            id,
            Entry {
                ip,
                trusted,
                conn: conn.clone(),
            },
        );
        *inner.per_ip.entry(ip).or_default() += 1;
        Ok(Ticket {
            admission: self.clone(),
            id,
            conn,
        })
    }

    /// Connections admitted now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .conns
            .len()
    }

    fn remove(&self, id: u64) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(id);
    }
}

impl Inner {
    /// The oldest connection matching `which` that is not answering a request.
    fn oldest_idle(&self, which: impl Fn(&Entry) -> bool) -> Option<u64> {
        self.conns
            .iter()
            .find(|(_, e)| which(e) && !e.conn.is_busy())
            .map(|(id, _)| *id)
    }

    fn displace(&mut self, id: u64) {
        if let Some(e) = self.forget(id) {
            e.conn.displaced.cancel();
        }
    }

    fn forget(&mut self, id: u64) -> Option<Entry> {
        let e = self.conns.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&e.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&e.ip);
            }
        }
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn admission(max: usize, per_client: usize, check_from: &[&str]) -> Arc<Admission> {
        Admission::new(
            "http",
            max,
            per_client,
            check_from.iter().map(|n| n.parse().unwrap()).collect(),
            Arc::new(Metrics::default()),
        )
    }

    #[test]
    fn descriptors_are_reserved_for_what_exists() {
        // 256 descriptors, no agent: room for 188 HTTP connections, not 1.
        assert_eq!(fit_descriptors(256, 1, false, 512), Ok(188));
        // With the agent its 256 connections are reserved: too little room, said so.
        let e = fit_descriptors(256, 1, true, 512).unwrap_err().to_string();
        assert!(e.contains("LimitNOFILE") && e.contains("room for 0"), "{e}");
        assert_eq!(fit_descriptors(65536, 10, true, 512), Ok(512));
    }

    #[test]
    fn a_flooding_address_churns_through_its_own_share() {
        // max 8: shares count from 4 connections on.
        let a = admission(8, 3, &[]);
        let flood: Vec<Ticket> = (0..4).map(|_| a.admit(ip("127.0.0.1")).unwrap()).collect();
        assert!(
            flood.iter().all(|t| !t.conn.displaced.is_cancelled()),
            "room is plenty"
        );
        // Half full: a fifth from the same address displaces its own oldest silent one.
        let fifth = a.admit(ip("127.0.0.1")).unwrap();
        assert!(flood[0].conn.displaced.is_cancelled());
        assert!(!flood[1].conn.displaced.is_cancelled());
        assert_eq!(a.len(), 4);
        // Another address is untouched by it.
        let other = a.admit(ip("127.0.0.2")).unwrap();
        assert!(!other.conn.displaced.is_cancelled());
        assert_eq!(a.len(), 5);
        // Answering requests are never displaced: with all of its own busy, it is refused.
        for t in [&flood[1], &flood[2], &flood[3], &fifth] {
            t.conn.busy();
        }
        assert_eq!(a.admit(ip("127.0.0.1")).err(), Some(Refused::PerClient));
        fifth.conn.answered();
        let sixth = a.admit(ip("127.0.0.1")).unwrap();
        assert!(fifth.conn.displaced.is_cancelled());
        drop(sixth);
        drop(flood);
        drop(fifth);
        assert_eq!(a.len(), 1, "dropped tickets free their places");
    }

    #[test]
    fn a_full_listener_displaces_the_oldest_silent_connection_outside_check_from() {
        let a = admission(3, 10, &["10.0.0.0/8"]);
        let haproxy = a.admit(ip("10.0.0.5")).unwrap();
        let x = a.admit(ip("192.0.2.1")).unwrap();
        let y = a.admit(ip("192.0.2.2")).unwrap();
        let z = a.admit(ip("192.0.2.3")).unwrap();
        assert!(
            x.conn.displaced.is_cancelled(),
            "oldest outside check_from goes"
        );
        assert!(!haproxy.conn.displaced.is_cancelled());
        y.conn.busy();
        z.conn.busy();
        // Only the check_from connection is idle: an outsider cannot displace it ...
        assert_eq!(a.admit(ip("192.0.2.4")).err(), Some(Refused::Full));
        // ... another check_from client can, and check_from has no per-client cap.
        let h2 = a.admit(ip("10.0.0.5")).unwrap();
        assert!(haproxy.conn.displaced.is_cancelled());
        assert!(!h2.conn.displaced.is_cancelled());
        // IPv4-mapped IPv6 counts as the IPv4 address.
        let mapped = a.admit(ip("::ffff:10.0.0.5"));
        assert!(mapped.is_ok() && h2.conn.displaced.is_cancelled());
    }
}
