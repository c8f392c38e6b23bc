//! An application through HAProxy, as the handover is judged (principle 10): writers with a
//! monotonic sequence each (pooled connections and a new connection per write) and readers
//! (pooled and per query), logging every acknowledged write and every read with the moment it
//! began, so a run can be checked afterwards for dual writers, stale reads and lost writes.

#![allow(dead_code)]

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

use super::mariadb::MariaDb;

/// The application's table, created on the primary (replicas get it by replication).
pub const TABLE: &str =
    "CREATE TABLE app.w (writer TINYINT, seq BIGINT, origin INT, PRIMARY KEY (writer, seq))";

/// How one client reaches the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One connection kept open, replaced only when it fails.
    Pooled,
    /// A new connection for every statement.
    PerQuery,
}

/// One write the application was told succeeded.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub writer: u8,
    pub seq: u64,
    pub acked: Instant,
    /// `@@server_id` of the server that took it.
    pub server: u32,
}

/// One read: when it began, which server answered, the highest seq it saw per writer.
#[derive(Debug, Clone)]
pub struct Read {
    pub reader: u8,
    pub port: u16,
    pub started: Instant,
    pub server: u32,
    pub seen: BTreeMap<u8, u64>,
}

#[derive(Default)]
pub struct Log {
    pub acks: Mutex<Vec<Ack>>,
    pub reads: Mutex<Vec<Read>>,
    pub errors: AtomicU64,
}

/// A running application; `stop` ends it and returns its log.
pub struct App {
    log: Arc<Log>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

/// A bound on every connect and statement: a hung server must not hang the application.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(3);

async fn connect(opts: &Opts) -> Option<(Conn, u32)> {
    let mut conn = tokio::time::timeout(STATEMENT_TIMEOUT, Conn::new(opts.clone()))
        .await
        .ok()?
        .ok()?;
    let id: Option<u32> =
        tokio::time::timeout(STATEMENT_TIMEOUT, conn.query_first("SELECT @@server_id"))
            .await
            .ok()?
            .ok()?;
    Some((conn, id?))
}

impl App {
    /// Starts `pooled` + `per_query` writers on `write_port` and one reader of each mode per
    /// port in `read_ports`, all with `via`'s admin credentials. Readers pause `read_every`.
    pub fn start(
        via: &MariaDb,
        write_port: u16,
        writers: &[Mode],
        read_ports: &[u16],
        read_every: Duration,
    ) -> App {
        App::start_from(via, write_port, writers, read_ports, read_every, 0)
    }

    /// [`App::start`] with writer ids from `first` on: several applications write into one
    /// table without colliding.
    pub fn start_from(
        via: &MariaDb,
        write_port: u16,
        writers: &[Mode],
        read_ports: &[u16],
        read_every: Duration,
        first: u8,
    ) -> App {
        App::start_with(
            via.admin_opts(),
            write_port,
            writers,
            read_ports,
            read_every,
            first,
        )
    }

    /// [`App::start_from`] with the credentials in `admin` (a Galera node's, say).
    pub fn start_with(
        admin: Opts,
        write_port: u16,
        writers: &[Mode],
        read_ports: &[u16],
        read_every: Duration,
        first: u8,
    ) -> App {
        let log = Arc::new(Log::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (i, mode) in writers.iter().enumerate() {
            let opts: Opts = OptsBuilder::from_opts(admin.clone())
                .tcp_port(write_port)
                .into();
            tasks.push(tokio::spawn(write_loop(
                first + i as u8,
                *mode,
                opts,
                log.clone(),
                stop.clone(),
            )));
        }
        let mut reader = 0u8;
        for port in read_ports {
            for mode in [Mode::Pooled, Mode::PerQuery] {
                let opts: Opts = OptsBuilder::from_opts(admin.clone()).tcp_port(*port).into();
                tasks.push(tokio::spawn(read_loop(
                    reader,
                    *port,
                    mode,
                    opts,
                    read_every,
                    log.clone(),
                    stop.clone(),
                )));
                reader += 1;
            }
        }
        App { log, stop, tasks }
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Acknowledged writes so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.log.acks.lock().unwrap().clone()
    }

    /// Waits (bounded) for the first write acknowledged by `server` after `since`.
    pub async fn first_ack_on(&self, server: u32, since: Instant, limit: Duration) -> Option<Ack> {
        let start = Instant::now();
        loop {
            let found = self
                .log
                .acks
                .lock()
                .unwrap()
                .iter()
                .filter(|a| a.server == server && a.acked >= since)
                .min_by_key(|a| a.acked)
                .copied();
            if found.is_some() || start.elapsed() > limit {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn stop(self) -> Arc<Log> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.log
    }
}

async fn write_loop(writer: u8, mode: Mode, opts: Opts, log: Arc<Log>, stop: Arc<AtomicBool>) {
    let mut seq = 0u64;
    let mut pooled: Option<(Conn, u32)> = None;
    while !stop.load(Ordering::Relaxed) {
        if pooled.is_none() {
            pooled = connect(&opts).await;
            if pooled.is_none() {
                log.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        }
        let (conn, server) = pooled.as_mut().unwrap();
        let server = *server;
        seq += 1;
        let sql = format!("INSERT INTO app.w VALUES ({writer}, {seq}, @@server_id)");
        match tokio::time::timeout(STATEMENT_TIMEOUT, conn.query_drop(sql)).await {
            Ok(Ok(())) => log.acks.lock().unwrap().push(Ack {
                writer,
                seq,
                acked: Instant::now(),
                server,
            }),
            _ => {
                log.errors.fetch_add(1, Ordering::Relaxed);
                pooled = None;
                continue;
            }
        }
        if mode == Mode::PerQuery {
            if let Some((conn, _)) = pooled.take() {
                let _ = tokio::time::timeout(STATEMENT_TIMEOUT, conn.disconnect()).await;
            }
        }
    }
}

async fn read_loop(
    reader: u8,
    port: u16,
    mode: Mode,
    opts: Opts,
    every: Duration,
    log: Arc<Log>,
    stop: Arc<AtomicBool>,
) {
    let mut pooled: Option<(Conn, u32)> = None;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(every).await;
        let started = Instant::now();
        if pooled.is_none() {
            pooled = connect(&opts).await;
            if pooled.is_none() {
                continue;
            }
        }
        let (conn, server) = pooled.as_mut().unwrap();
        let server = *server;
        let rows: Result<Result<Vec<(u8, u64)>, _>, _> = tokio::time::timeout(
            STATEMENT_TIMEOUT,
            conn.query("SELECT writer, MAX(seq) FROM app.w GROUP BY writer"),
        )
        .await;
        match rows {
            Ok(Ok(rows)) => log.reads.lock().unwrap().push(Read {
                reader,
                port,
                started,
                server,
                seen: rows.into_iter().collect(),
            }),
            _ => {
                pooled = None;
                continue;
            }
        }
        if mode == Mode::PerQuery {
            if let Some((conn, _)) = pooled.take() {
                let _ = tokio::time::timeout(STATEMENT_TIMEOUT, conn.disconnect()).await;
            }
        }
    }
}

/// The (writer, seq) pairs of `db`'s table.
pub async fn rows_on(db: &MariaDb) -> HashSet<(u8, u64)> {
    let mut conn = Conn::new(db.admin_opts()).await.expect("connect");
    let rows: Vec<(u8, u64)> = conn
        .query("SELECT writer, seq FROM app.w")
        .await
        .expect("read app.w");
    let _ = conn.disconnect().await;
    rows.into_iter().collect()
}

/// Writes acknowledged by `server` before `before` that `on` (the server taking over) lacks:
/// the asynchronous window (the old writer acknowledged them and never sent them). Pass the
/// moment after the failover, not the kill's: an OK the dead server sent just before it died
/// may reach the client (and be stamped) after the kill.
pub fn async_window(
    acks: &[Ack],
    server: u32,
    before: Instant,
    on: &HashSet<(u8, u64)>,
) -> HashSet<(u8, u64)> {
    acks.iter()
        .filter(|a| a.server == server && a.acked < before && !on.contains(&(a.writer, a.seq)))
        .map(|a| (a.writer, a.seq))
        .collect()
}

/// Writes acknowledged by `old` after `new` acknowledged its first write at or after `from`
/// (and before `until`): two servers taking writes at once.
pub fn dual_writes(acks: &[Ack], old: u32, new: u32, from: Instant, until: Instant) -> usize {
    let Some(first_new) = acks
        .iter()
        .filter(|a| a.server == new && a.acked >= from && a.acked < until)
        .map(|a| a.acked)
        .min()
    else {
        return 0;
    };
    acks.iter()
        .filter(|a| a.server == old && a.acked > first_new && a.acked < until)
        .count()
}

/// Changes of writer closer than `min_gap`: acknowledged writes in time order fall into runs
/// on one server each; with one writer at a time the last write of one run and the first of
/// the next are at least the handover's quiet time apart (`handover_delay` less HAProxy's
/// detection), while two servers taking writes at once interleave their runs within
/// milliseconds. Returns each such change as (old, new, gap).
pub fn close_changes(acks: &[Ack], min_gap: Duration) -> Vec<(u32, u32, Duration)> {
    let mut sorted: Vec<&Ack> = acks.iter().collect();
    sorted.sort_by_key(|a| a.acked);
    sorted
        .windows(2)
        .filter(|w| w[0].server != w[1].server)
        .map(|w| (w[0].server, w[1].server, w[1].acked - w[0].acked))
        .filter(|(_, _, gap)| *gap < min_gap)
        .collect()
}

/// Reads (on `port`) that missed a write acknowledged before they began, the writes in
/// `excused` (the asynchronous window) aside: each with how stale it was.
pub fn stale_reads(
    acks: &[Ack],
    reads: &[Read],
    port: u16,
    excused: &HashSet<(u8, u64)>,
) -> Vec<(Read, Duration)> {
    let mut by_writer: BTreeMap<u8, Vec<Ack>> = BTreeMap::new();
    for a in acks {
        if !excused.contains(&(a.writer, a.seq)) {
            by_writer.entry(a.writer).or_default().push(*a);
        }
    }
    for list in by_writer.values_mut() {
        list.sort_by_key(|a| a.acked);
    }
    let mut stale = Vec::new();
    for r in reads.iter().filter(|r| r.port == port) {
        let mut worst: Option<Duration> = None;
        for (w, list) in &by_writer {
            let seen = r.seen.get(w).copied().unwrap_or(0);
            // The oldest write acknowledged before the read began that it did not see.
            let missed = list
                .iter()
                .take_while(|a| a.acked < r.started)
                .find(|a| a.seq > seen);
            if let Some(a) = missed {
                let age = r.started.saturating_duration_since(a.acked);
                worst = Some(worst.map_or(age, |w| w.max(age)));
            }
        }
        if let Some(age) = worst {
            stale.push((r.clone(), age));
        }
    }
    stale
}

/// Acknowledged writes, `excused` aside, that `rows` lacks.
pub fn missing(acks: &[Ack], rows: &HashSet<(u8, u64)>, excused: &HashSet<(u8, u64)>) -> usize {
    acks.iter()
        .filter(|a| !excused.contains(&(a.writer, a.seq)) && !rows.contains(&(a.writer, a.seq)))
        .count()
}

/// Writes per second acknowledged between `from` and `to`.
pub fn rate(acks: &[Ack], from: Instant, to: Instant) -> f64 {
    let n = acks
        .iter()
        .filter(|a| a.acked >= from && a.acked < to)
        .count();
    n as f64 / to.saturating_duration_since(from).as_secs_f64().max(1e-9)
}
