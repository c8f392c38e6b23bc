//! The probe: the one module that talks to MySQL/MariaDB (and the only one that knows
//! mysql_async). One [`Probe`] per instance keeps one connection, reused across polls.
//!
//! [`Probe::sample`] never returns an error type: whatever happens (refused, access denied,
//! timeout, an unexpected column set) becomes a [`ProbeError`] value inside the sample. Every
//! connect and every query is bounded by the configured timeout. The probe only reads.

use crate::config::{Addr, Heartbeat, SslMode, Target, Tls};
use crate::sample::{
    Channel, Flavor, GtidState, ProbeError, ProbeErrorKind, ServerState, SourceState, ThreadState,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, Value};
use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// One persistent, lazily (re)connected session to one server.
pub struct Probe {
    /// Connection options, password included; never logged.
    opts: mysql_async::Opts,
    /// With `ssl_mode = PREFERRED`: the same without TLS, for a server that offers none.
    plain_fallback: Option<mysql_async::Opts>,
    /// Whether the connection is in the clear (`ssl_mode = DISABLED`), for error hints.
    plain: bool,
    /// `ssl_mode = VERIFY_CA` over TCP: the host, port and CA to learn the certificate's name
    /// from (see [`crate::tlsname`]), and the name once learnt.
    verify_ca: Option<(String, u16, std::path::PathBuf)>,
    ca_name: Option<String>,
    /// Shown in errors instead of the options.
    addr: String,
    /// Bound on each connect and each query.
    timeout: Duration,
    /// The open connection and what was learnt when it was opened.
    conn: Option<(Conn, ServerKind)>,
    /// Reconnect backoff: consecutive failed connects, the error to repeat until the next try,
    /// and when that try is due.
    failures: u32,
    retry: Option<(Instant, ProbeError)>,
    /// Longest wait between connect attempts.
    max_backoff: Duration,
    /// The heartbeat table to read (and maybe write), if configured.
    heartbeat: Option<Heartbeat>,
}

/// What a connection learnt about the server when it opened; it cannot change without a restart,
/// which breaks the connection.
#[derive(Debug, Clone)]
struct ServerKind {
    flavor: Flavor,
    version: String,
    /// `Uptime` when the connection opened, and when it was read: a server restart breaks the
    /// connection, so while it lives the uptime is that plus the time since (one statement less
    /// per poll). `None`: not reported (then restarts cannot be ruled out; checks fail closed).
    uptime: Option<(Duration, Instant)>,
    /// The statement that lists replication channels on this server.
    replica_status_sql: &'static str,
    vars_sql: &'static str,
    /// What a replica's guard reads on this server when it is the replica's source.
    source_sql: &'static str,
    /// The statement that shows this server's own binary log position (`File`, `Position`),
    /// for a source without GTIDs: `SHOW BINARY LOG STATUS` since MySQL 8.2 (the old name is
    /// gone in 8.4), `SHOW MASTER STATUS` before and on MariaDB.
    binlog_status_sql: &'static str,
}

impl Probe {
    /// A probe for `target`; nothing connects until the first [`Probe::sample`].
    /// `max_backoff` caps the wait between reconnect attempts after failures.
    pub fn new(target: &Target, timeout: Duration, max_backoff: Duration) -> Probe {
        let mut b = OptsBuilder::default()
            .user(Some(target.user.clone()))
            .pass(Some(target.password.expose().to_string()))
            // Exactly the address configured: no switch to the server's socket behind our back.
            .prefer_socket(false)
            .stmt_cache_size(0)
            .tcp_nodelay(true);
        b = match &target.addr {
            Addr::Tcp { host, port } => b.ip_or_hostname(host.clone()).tcp_port(*port),
            Addr::Socket(path) => b.socket(Some(path.to_string_lossy().into_owned())),
        };
        let plain_fallback =
            (target.tls.mode == SslMode::Preferred).then(|| mysql_async::Opts::from(b.clone()));
        b = b.ssl_opts(ssl_opts(&target.tls));
        Probe {
            opts: b.into(),
            plain_fallback,
            plain: target.tls.mode == SslMode::Disabled,
            verify_ca: match (&target.addr, target.tls.mode, &target.tls.ca) {
                (Addr::Tcp { host, port }, SslMode::VerifyCa, Some(ca)) => {
                    Some((host.clone(), *port, ca.clone()))
                }
                _ => None,
            },
            ca_name: None,
            addr: target.addr.to_string(),
            timeout,
            conn: None,
            failures: 0,
            retry: None,
            max_backoff,
            heartbeat: target.heartbeat.clone(),
        }
    }

    /// Reads the server's replication state once, reconnecting first if needed.
    pub async fn sample(&mut self) -> Result<ServerState, ProbeError> {
        self.ensure_connected().await?;
        let (conn, kind) = self.conn.as_mut().expect("connected just above");
        let mut result = read_state(conn, kind, self.timeout).await;
        if let (Ok(state), Some(hb)) = (&mut result, &self.heartbeat) {
            if hb.write && state.writable() {
                state.heartbeat_written = Some(write_heartbeat(conn, hb, self.timeout).await);
            }
            state.heartbeat = Some(read_heartbeat(conn, hb, state.server_id, self.timeout).await);
        }
        self.after(result)
    }

    /// Reads what the promotion checklist compares on a replica's source: identity, version and
    /// executed GTIDs. One query.
    pub async fn source_sample(&mut self) -> Result<SourceState, ProbeError> {
        self.ensure_connected().await?;
        let (conn, kind) = self.conn.as_mut().expect("connected just above");
        let result = read_source(conn, kind, self.timeout).await;
        self.after(result)
    }

    /// Connects if there is no connection, honouring the reconnect backoff.
    async fn ensure_connected(&mut self) -> Result<(), ProbeError> {
        if self.conn.is_some() {
            return Ok(());
        }
        if let Some((due, err)) = &self.retry {
            if Instant::now() < *due {
                return Err(err.clone());
            }
        }
        match self.connect().await {
            Ok(c) => {
                // `failures` is reset by a successful query, not by a connect: a session that
                // connects and is then refused a privilege keeps backing off.
                self.retry = None;
                self.conn = Some(c);
                Ok(())
            }
            Err(err) => {
                if err.kind == ProbeErrorKind::Tls {
                    // The certificate may have changed: learn its name again.
                    self.ca_name = None;
                }
                self.back_off(&err);
                Err(err)
            }
        }
    }

    /// Schedules the next connect attempt after a failure: doubling from one timeout (the
    /// first retry comes at the next poll), capped so a server that comes back is noticed
    /// within `max_backoff`. Until then polls report `err` again without connecting.
    fn back_off(&mut self, err: &ProbeError) {
        self.failures += 1;
        let wait = self
            .timeout
            .saturating_mul(1 << (self.failures - 1).min(10))
            .min(self.max_backoff);
        self.retry = Some((Instant::now() + wait, err.clone()));
    }

    /// Keeps the session after a server error (it is still usable); drops it after anything
    /// else (timeout, broken pipe), which leaves it in an unknown state, and after an access or
    /// privilege error: MariaDB fixes global privileges when a session starts, so a GRANT made
    /// since is seen only by a new session (reconnected at the next poll at the earliest, then
    /// backing off).
    fn after<T>(&mut self, result: Result<T, ProbeError>) -> Result<T, ProbeError> {
        if let Err(err) = &result {
            if matches!(
                err.kind,
                ProbeErrorKind::NotPermitted | ProbeErrorKind::AccessDenied
            ) {
                self.conn = None;
                self.back_off(err);
            } else if !matches!(err.kind, ProbeErrorKind::Server | ProbeErrorKind::Protocol) {
                let stuck = self.conn.take().map(|(conn, _)| conn.id());
                // A server that hangs on a query would otherwise get a new connection (and a
                // new stuck thread) every poll: back off, and end the stuck session.
                if err.kind == ProbeErrorKind::Timeout {
                    self.back_off(err);
                    if let Some(id) = stuck {
                        self.kill_session(id);
                    }
                }
            }
        } else {
            self.failures = 0;
        }
        result
    }

    /// Ends session `id` (ours, stuck on a query that timed out) from a short-lived second
    /// connection, in the background; every step bounded by the timeout. A user may kill its own
    /// sessions without any privilege. If the server is too hung even for that, nothing is lost.
    fn kill_session(&self, id: u32) {
        let (opts, timeout) = (self.opts.clone(), self.timeout);
        tokio::spawn(async move {
            let Ok(Ok(mut conn)) = tokio::time::timeout(timeout, Conn::new(opts)).await else {
                return;
            };
            let _ = tokio::time::timeout(timeout, conn.query_drop(format!("KILL {id}"))).await;
            let _ = tokio::time::timeout(timeout, conn.disconnect()).await;
        });
    }

    /// The address this probe connects to, as shown in messages.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Closes the connection politely (COM_QUIT), bounded by the timeout.
    pub async fn close(&mut self) {
        if let Some((conn, _)) = self.conn.take() {
            let _ = tokio::time::timeout(self.timeout, conn.disconnect()).await;
        }
    }

    async fn connect(&mut self) -> Result<(Conn, ServerKind), ProbeError> {
        let opts = self.verified_opts().await?;
        let mut conn = match bounded(self.timeout, "connect", Conn::new(opts)).await {
            Ok(c) => c,
            // PREFERRED: a server without TLS is spoken to in the clear.
            Err(e) if e.kind == ProbeErrorKind::NoTlsOffered && self.plain_fallback.is_some() => {
                let plain = self.plain_fallback.clone().expect("checked just above");
                bounded(self.timeout, "connect", Conn::new(plain))
                    .await
                    .map_err(|e| self.with_addr(e))?
            }
            // MariaDB refuses a plain connection under require_secure_transport with 1045,
            // like a wrong password: say that it may be that.
            Err(mut e) if e.kind == ProbeErrorKind::AccessDenied && self.plain => {
                e.message.push_str(
                    " (ssl_mode is DISABLED: a server with require_secure_transport refuses \
                     plain connections this way too)",
                );
                return Err(self.with_addr(e));
            }
            Err(e) => return Err(self.with_addr(e)),
        };
        let version: String = bounded(
            self.timeout,
            "SELECT VERSION()",
            conn.query_first::<String, _>("SELECT VERSION()"),
        )
        .await?
        .ok_or_else(|| protocol("SELECT VERSION() returned no row"))?;
        let uptime: Option<Row> = bounded(
            self.timeout,
            "SHOW GLOBAL STATUS",
            conn.query_first::<Row, _>("SHOW GLOBAL STATUS LIKE 'Uptime'"),
        )
        .await?;
        let at = Instant::now();
        let uptime = uptime
            .and_then(|r| r.as_ref(1).and_then(text))
            .and_then(|v| v.parse().ok())
            .map(|secs| (Duration::from_secs(secs), at));
        Ok((
            conn,
            ServerKind {
                uptime,
                ..ServerKind::detect(version)
            },
        ))
    }

    /// The options to connect with: as built, or for `VERIFY_CA` with the name the server's
    /// CA-signed certificate holds (learnt once per probe, again after a TLS failure).
    async fn verified_opts(&mut self) -> Result<mysql_async::Opts, ProbeError> {
        let Some((host, port, ca)) = &self.verify_ca else {
            return Ok(self.opts.clone());
        };
        let name = match &self.ca_name {
            Some(n) => n.clone(),
            None => {
                let name = crate::tlsname::certificate_name(host, *port, ca, self.timeout)
                    .await
                    .map_err(|message| ProbeError {
                        kind: ProbeErrorKind::Tls,
                        errno: None,
                        message,
                    })?;
                self.ca_name = Some(name.clone());
                name
            }
        };
        let ssl = self
            .opts
            .ssl_opts()
            .cloned()
            .map(|o| o.with_danger_tls_hostname_override(Some(name)));
        Ok(OptsBuilder::from_opts(self.opts.clone())
            .ssl_opts(ssl)
            .into())
    }

    fn with_addr(&self, mut e: ProbeError) -> ProbeError {
        if matches!(
            e.kind,
            ProbeErrorKind::Refused | ProbeErrorKind::Network | ProbeErrorKind::Timeout
        ) {
            e.message = format!("{} ({})", e.message, self.addr);
        }
        e
    }
}

impl ServerKind {
    fn detect(version: String) -> ServerKind {
        if version.contains("MariaDB") {
            ServerKind {
                flavor: Flavor::MariaDb,
                // SHOW SLAVE STATUS shows only the default connection; ALL shows every one.
                replica_status_sql: "SHOW ALL SLAVES STATUS",
                vars_sql: "SELECT @@global.server_id, @@global.read_only, NULL, \
                           @@global.innodb_read_only, NULL, NULL, @@global.gtid_binlog_pos, \
                           @@global.gtid_slave_pos, @@global.gtid_current_pos, \
                           @@global.log_bin, @@global.log_slave_updates, \
                           @@global.gtid_binlog_state",
                source_sql:
                    "SELECT @@global.server_id, VERSION(), @@global.gtid_binlog_pos, NULL, \
                             @@global.gtid_binlog_state",
                // Unused: MariaDB always has GTIDs in its binary log.
                binlog_status_sql: "SHOW MASTER STATUS",
                version,
                uptime: None,
            }
        } else {
            let (major, minor, patch) = parse_version(&version);
            // SHOW REPLICA STATUS arrived in 8.0.22; SHOW SLAVE STATUS is gone in 8.4.
            // log_replica_updates replaced log_slave_updates in 8.0.26 (the old name is gone in
            // 8.4); 5.7 has no tagged GTIDs but the same gtid_executed.
            let vars_sql = if (major, minor, patch) >= (8, 0, 26) {
                "SELECT @@global.server_id, @@global.read_only, @@global.super_read_only, \
                 @@global.innodb_read_only, @@global.gtid_mode, @@global.gtid_executed, NULL, \
                 NULL, NULL, @@global.log_bin, @@global.log_replica_updates"
            } else {
                "SELECT @@global.server_id, @@global.read_only, @@global.super_read_only, \
                 @@global.innodb_read_only, @@global.gtid_mode, @@global.gtid_executed, NULL, \
                 NULL, NULL, @@global.log_bin, @@global.log_slave_updates"
            };
            let replica_status_sql = if (major, minor, patch) >= (8, 0, 22) {
                "SHOW REPLICA STATUS"
            } else {
                "SHOW SLAVE STATUS"
            };
            ServerKind {
                flavor: Flavor::MySql,
                replica_status_sql,
                vars_sql,
                source_sql: "SELECT @@global.server_id, VERSION(), @@global.gtid_executed, \
                             @@global.server_uuid",
                binlog_status_sql: if (major, minor) >= (8, 2) {
                    "SHOW BINARY LOG STATUS"
                } else {
                    "SHOW MASTER STATUS"
                },
                version,
                uptime: None,
            }
        }
    }
}

/// `8.0.36-log` → (8, 0, 36); unknown parts are 0.
fn parse_version(v: &str) -> (u32, u32, u32) {
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

async fn read_state(
    conn: &mut Conn,
    kind: &ServerKind,
    timeout: Duration,
) -> Result<ServerState, ProbeError> {
    let vars: Row = bounded(
        timeout,
        "variables",
        conn.query_first::<Row, _>(kind.vars_sql),
    )
    .await?
    .ok_or_else(|| protocol("variables query returned no row"))?;
    let var = |i: usize| vars.as_ref(i).and_then(text);
    let flag = |i: usize| var(i).map(|v| !matches!(v.as_str(), "0" | "OFF"));
    let server_id = var(0)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| protocol("@@server_id is not a number"))?;

    // Read once per connection: while this session lives, the server has not restarted.
    let uptime = kind
        .uptime
        .map(|(then, at)| then + Instant::now().saturating_duration_since(at));

    let rows: Vec<Row> = bounded(
        timeout,
        kind.replica_status_sql,
        conn.query::<Row, _>(kind.replica_status_sql),
    )
    .await?;
    let channels = rows
        .iter()
        .map(parse_channel)
        .collect::<Result<Vec<_>, _>>()?;

    Ok(ServerState {
        flavor: kind.flavor,
        version: kind.version.clone(),
        server_id,
        read_only: flag(1).ok_or_else(|| protocol("@@read_only is NULL"))?,
        super_read_only: flag(2),
        innodb_read_only: flag(3).unwrap_or(false),
        uptime,
        heartbeat: None,
        heartbeat_written: None,
        log_bin: flag(9),
        log_replica_updates: flag(10),
        gtid: GtidState {
            mode: var(4),
            executed: var(5),
            binlog_pos: var(6),
            slave_pos: var(7),
            current_pos: var(8),
            // MariaDB only; the MySQL statements have no column 11.
            binlog_state: var(11),
        },
        channels,
    })
}

/// The worst heartbeat lag over the source rows, in microseconds, computed by the server
/// (`NOW(6)` or `UTC_TIMESTAMP(6)` minus `ts`, as pt-heartbeat --check does), or why not.
async fn read_heartbeat(
    conn: &mut Conn,
    hb: &Heartbeat,
    own_server_id: u32,
    timeout: Duration,
) -> Result<i64, String> {
    let now = if hb.utc { "UTC_TIMESTAMP(6)" } else { "NOW(6)" };
    let (db, table) = hb.table.split_once('.').unwrap_or(("", &hb.table));
    // The table name was validated to [A-Za-z0-9_] parts at config load: safe to splice.
    let sql =
        format!("SELECT server_id, TIMESTAMPDIFF(MICROSECOND, ts, {now}) FROM `{db}`.`{table}`");
    let rows: Vec<(u32, Option<i64>)> = bounded(timeout, "heartbeat", conn.query(sql))
        .await
        .map_err(|e| match e.errno {
            Some(1146) => format!("table {} does not exist (1146)", hb.table),
            Some(1142) => format!(
                "the check user may not read {} (1142): GRANT SELECT ON {} TO it",
                hb.table, hb.table
            ),
            _ => e.to_string(),
        })?;
    let mut worst: Option<i64> = None;
    for (server_id, lag) in rows {
        let ours = match hb.server_id {
            Some(id) => server_id == id,
            None => server_id != own_server_id,
        };
        if !ours {
            continue;
        }
        let lag =
            lag.ok_or_else(|| format!("row of server_id {server_id} has an unreadable ts"))?;
        worst = Some(worst.map_or(lag, |w| w.max(lag)));
    }
    worst.ok_or_else(|| match hb.server_id {
        Some(id) => format!("no heartbeat row from server_id {id} in {}", hb.table),
        None => format!("no heartbeat row from another server in {}", hb.table),
    })
}

/// Updates this server's heartbeat row, pt-heartbeat compatible (`ts` as
/// `YYYY-MM-DDTHH:MM:SS.ffffff`). The one statement replguard ever writes.
async fn write_heartbeat(conn: &mut Conn, hb: &Heartbeat, timeout: Duration) -> Result<(), String> {
    let now = if hb.utc { "UTC_TIMESTAMP(6)" } else { "NOW(6)" };
    let (db, table) = hb.table.split_once('.').unwrap_or(("", &hb.table));
    let sql = format!(
        "REPLACE INTO `{db}`.`{table}` (ts, server_id) \
         VALUES (DATE_FORMAT({now}, '%Y-%m-%dT%H:%i:%s.%f'), @@server_id)"
    );
    bounded(timeout, "heartbeat write", conn.query_drop(sql))
        .await
        .map_err(|e| e.to_string())
}

async fn read_source(
    conn: &mut Conn,
    kind: &ServerKind,
    timeout: Duration,
) -> Result<SourceState, ProbeError> {
    let row: Row = bounded(
        timeout,
        "source variables",
        conn.query_first::<Row, _>(kind.source_sql),
    )
    .await?
    .ok_or_else(|| protocol("source query returned no row"))?;
    let var = |i: usize| row.as_ref(i).and_then(text);
    let gtid_executed = var(2).ok_or_else(|| protocol("the source's executed GTIDs are NULL"))?;
    // Without GTIDs (MySQL gtid_mode OFF) the binary log position is the only measure of what
    // the source has; MariaDB always has GTIDs in its binary log. No binary log: nothing to
    // compare (`None`).
    let binlog_position = if kind.flavor == Flavor::MySql && gtid_executed.trim().is_empty() {
        let status: Option<Row> = bounded(
            timeout,
            kind.binlog_status_sql,
            conn.query_first::<Row, _>(kind.binlog_status_sql),
        )
        .await?;
        match status {
            None => None,
            Some(status) => {
                let file = status.get_opt::<String, _>("File").and_then(Result::ok);
                let pos = status.get_opt::<u64, _>("Position").and_then(Result::ok);
                match (file, pos) {
                    (Some(file), Some(pos)) => Some((file, pos)),
                    _ => return Err(protocol("binary log status without File and Position")),
                }
            }
        }
    } else {
        None
    };
    Ok(SourceState {
        flavor: kind.flavor,
        server_id: var(0)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| protocol("source @@server_id is not a number"))?,
        version: var(1).unwrap_or_default(),
        // NULL would read as an empty set and make every comparison pass: refuse it.
        gtid_executed,
        server_uuid: var(3),
        // MariaDB only; the MySQL statement has no column 4.
        gtid_binlog_state: var(4),
        binlog_position,
    })
}

/// Maps one replica status row, whichever spelling its columns use, into a [`Channel`].
fn parse_channel(row: &Row) -> Result<Channel, ProbeError> {
    // Borrowed from the row: names and values are copied only for the fields a Channel keeps.
    let columns: Vec<(Cow<str>, Option<Cow<str>>)> = row
        .columns_ref()
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name_str(), row.as_ref(i).and_then(text_ref)))
        .collect();
    channel_from_columns(&columns)
}

/// The column mapping itself, on (name, value) pairs. A column the probe needs but cannot find
/// under any known spelling is an error: a guessed default could pass a check.
fn channel_from_columns<N: AsRef<str>, V: AsRef<str>>(
    columns: &[(N, Option<V>)],
) -> Result<Channel, ProbeError> {
    let get = |names: &[&str]| -> Result<Option<&str>, ProbeError> {
        for n in names {
            if let Some((_, v)) = columns.iter().find(|(c, _)| c.as_ref() == *n) {
                return Ok(v.as_ref().map(AsRef::as_ref));
            }
        }
        Err(protocol(&format!(
            "replica status has no column {}",
            names.join(" or ")
        )))
    };
    let optional = |names: &[&str]| get(names).ok().flatten().map(String::from);
    let string = |names: &[&str]| get(names).map(|v| v.unwrap_or_default().to_string());
    let number = |names: &[&str]| -> Result<u64, ProbeError> {
        let v = get(names)?.unwrap_or_default();
        if v.is_empty() {
            return Ok(0);
        }
        v.parse()
            .map_err(|_| protocol(&format!("{} is not a number: {v:?}", names[0])))
    };
    let lag = get(&["Seconds_Behind_Source", "Seconds_Behind_Master"])?
        .map(|v| {
            v.parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| protocol(&format!("Seconds_Behind is not a number: {v:?}")))
        })
        .transpose()?;
    Ok(Channel {
        name: optional(&["Channel_Name", "Connection_name"]).unwrap_or_default(),
        io_thread: ThreadState::parse(&string(&["Replica_IO_Running", "Slave_IO_Running"])?),
        sql_thread: ThreadState::parse(&string(&["Replica_SQL_Running", "Slave_SQL_Running"])?),
        lag,
        last_io_errno: number(&["Last_IO_Errno"])? as u32,
        last_io_error: string(&["Last_IO_Error"])?,
        last_sql_errno: number(&["Last_SQL_Errno"])? as u32,
        last_sql_error: string(&["Last_SQL_Error"])?,
        source_host: string(&["Source_Host", "Master_Host"])?,
        source_port: number(&["Source_Port", "Master_Port"])? as u16,
        read_log_file: string(&["Source_Log_File", "Master_Log_File"])?,
        read_log_pos: number(&["Read_Source_Log_Pos", "Read_Master_Log_Pos"])?,
        exec_log_file: string(&["Relay_Source_Log_File", "Relay_Master_Log_File"])?,
        exec_log_pos: number(&["Exec_Source_Log_Pos", "Exec_Master_Log_Pos"])?,
        relay_log_space: number(&["Relay_Log_Space"])?,
        sql_delay: optional(&["SQL_Delay"])
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs),
        retrieved_gtid_set: optional(&["Retrieved_Gtid_Set"]),
        executed_gtid_set: optional(&["Executed_Gtid_Set"]),
        using_gtid: optional(&["Using_Gtid"]),
        gtid_io_pos: optional(&["Gtid_IO_Pos"]),
    })
}

/// A column value as text; `None` for SQL NULL (kept distinct from any value).
fn text(v: &Value) -> Option<String> {
    text_ref(v).map(Cow::into_owned)
}

/// [`text`], borrowing the value's bytes when they are UTF-8 (as text-protocol values are).
fn text_ref(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b)),
        Value::Int(i) => Some(i.to_string().into()),
        Value::UInt(u) => Some(u.to_string().into()),
        other => Some(other.as_sql(true).into()),
    }
}

fn protocol(message: &str) -> ProbeError {
    ProbeError {
        kind: ProbeErrorKind::Protocol,
        errno: None,
        message: message.to_string(),
    }
}

/// Runs one MySQL operation with a deadline, turning every failure into a [`ProbeError`].
async fn bounded<T>(
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, ProbeError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(e)),
        Err(_) => Err(ProbeError {
            kind: ProbeErrorKind::Timeout,
            errno: None,
            message: format!(
                "{what} took longer than {}",
                crate::units::fmt_duration(timeout)
            ),
        }),
    }
}

/// mysql_async's TLS options for `tls` (`None`: no TLS), with the MySQL client's meanings.
fn ssl_opts(tls: &Tls) -> Option<mysql_async::SslOpts> {
    use mysql_async::{ClientIdentity, SslOpts};
    let mut o = SslOpts::default();
    o = match tls.mode {
        SslMode::Disabled => return None,
        // Encrypted, not authenticated (as the MySQL client's REQUIRED).
        SslMode::Preferred | SslMode::Required => o
            .with_danger_accept_invalid_certs(true)
            .with_danger_skip_domain_validation(true),
        // The name is checked too, against the one the certificate holds (see tlsname).
        SslMode::VerifyCa => o,
        SslMode::VerifyIdentity => o,
    };
    if let Some(ca) = &tls.ca {
        o = o
            .with_root_certs(vec![ca.clone().into()])
            .with_disable_built_in_roots(true);
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        o = o.with_client_identity(Some(ClientIdentity::new(
            cert.clone().into(),
            key.clone().into(),
        )));
    }
    Some(o)
}

fn classify(e: mysql_async::Error) -> ProbeError {
    use mysql_async::{DriverError, Error, IoError};
    match e {
        Error::Server(s) => ProbeError {
            kind: match s.code {
                1045 => ProbeErrorKind::AccessDenied,
                1040 | 1203 => ProbeErrorKind::TooManyConnections,
                1227 | 1142 | 1044 => ProbeErrorKind::NotPermitted,
                // require_secure_transport (MariaDB answers 1045 with this text on some paths).
                3159 => ProbeErrorKind::InsecureTransport,
                _ => ProbeErrorKind::Server,
            },
            errno: Some(s.code),
            message: s.message,
        },
        Error::Driver(DriverError::NoClientSslFlagFromServer) => ProbeError {
            kind: ProbeErrorKind::NoTlsOffered,
            errno: None,
            message: "the server offers no TLS, and ssl_mode requires it".to_string(),
        },
        Error::Io(IoError::Tls(t)) => ProbeError {
            kind: ProbeErrorKind::Tls,
            errno: None,
            message: t.to_string(),
        },
        // rustls reports handshake failures (an unknown issuer, another host's certificate) as
        // I/O errors wrapping its own.
        Error::Io(IoError::Io(io))
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) =>
        {
            ProbeError {
                kind: ProbeErrorKind::Tls,
                errno: None,
                message: io
                    .get_ref()
                    .map(|inner| inner.to_string())
                    .unwrap_or_else(|| io.to_string()),
            }
        }
        Error::Io(IoError::Io(io)) => ProbeError {
            kind: match io.kind() {
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
                    ProbeErrorKind::Refused
                }
                std::io::ErrorKind::TimedOut => ProbeErrorKind::Timeout,
                _ => ProbeErrorKind::Network,
            },
            errno: None,
            message: io.to_string(),
        },
        Error::Driver(d) => ProbeError {
            kind: ProbeErrorKind::Network,
            errno: None,
            message: d.to_string(),
        },
        other => ProbeError {
            kind: ProbeErrorKind::Network,
            errno: None,
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replica status rows as servers print them (only the columns the probe reads, plus noise).
    fn row(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    fn mariadb_row(lag: Option<&str>) -> Vec<(String, Option<String>)> {
        row(&[
            ("Connection_name", Some("")),
            ("Slave_IO_State", Some("Waiting for master to send event")),
            ("Master_Host", Some("10.0.0.1")),
            ("Master_Port", Some("3306")),
            ("Master_Log_File", Some("mysql-bin.000002")),
            ("Read_Master_Log_Pos", Some("1234")),
            ("Relay_Master_Log_File", Some("mysql-bin.000002")),
            ("Slave_IO_Running", Some("Yes")),
            ("Slave_SQL_Running", Some("Yes")),
            ("Exec_Master_Log_Pos", Some("1200")),
            ("Relay_Log_Space", Some("4096")),
            ("Seconds_Behind_Master", lag),
            ("Last_IO_Errno", Some("0")),
            ("Last_IO_Error", Some("")),
            ("Last_SQL_Errno", Some("0")),
            ("Last_SQL_Error", Some("")),
            ("Using_Gtid", Some("Slave_Pos")),
            ("Gtid_IO_Pos", Some("0-1-42")),
            ("SQL_Delay", Some("0")),
        ])
    }

    fn mysql84_row() -> Vec<(String, Option<String>)> {
        row(&[
            ("Replica_IO_State", Some("Waiting for source to send event")),
            ("Source_Host", Some("db1")),
            ("Source_Port", Some("3307")),
            ("Source_Log_File", Some("binlog.000009")),
            ("Read_Source_Log_Pos", Some("777")),
            ("Relay_Source_Log_File", Some("binlog.000009")),
            ("Replica_IO_Running", Some("Connecting")),
            ("Replica_SQL_Running", Some("Yes")),
            ("Exec_Source_Log_Pos", Some("777")),
            ("Relay_Log_Space", Some("1")),
            ("Seconds_Behind_Source", None),
            ("Last_IO_Errno", Some("2003")),
            ("Last_IO_Error", Some("error connecting to source")),
            ("Last_SQL_Errno", Some("0")),
            ("Last_SQL_Error", Some("")),
            ("SQL_Delay", Some("3600")),
            (
                "Retrieved_Gtid_Set",
                Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"),
            ),
            (
                "Executed_Gtid_Set",
                Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"),
            ),
            ("Channel_Name", Some("east")),
        ])
    }

    #[test]
    fn both_column_spellings_map_to_one_channel() {
        let m = channel_from_columns(&mariadb_row(Some("3"))).unwrap();
        assert_eq!(
            (
                m.name.as_str(),
                &m.io_thread,
                m.lag,
                m.read_log_pos,
                m.exec_log_pos
            ),
            (
                "",
                &ThreadState::Yes,
                Some(Duration::from_secs(3)),
                1234,
                1200
            )
        );
        assert_eq!((m.source_host.as_str(), m.source_port), ("10.0.0.1", 3306));
        assert_eq!(m.gtid_io_pos.as_deref(), Some("0-1-42"));

        let y = channel_from_columns(&mysql84_row()).unwrap();
        assert_eq!(
            (y.name.as_str(), &y.io_thread, y.lag, y.last_io_errno),
            ("east", &ThreadState::Connecting, None, 2003)
        );
        assert_eq!(y.sql_delay, Some(Duration::from_secs(3600)));
        assert!(y.executed_gtid_set.is_some() && y.using_gtid.is_none());
    }

    #[test]
    fn null_lag_stays_unknown_and_missing_columns_are_errors() {
        assert_eq!(channel_from_columns(&mariadb_row(None)).unwrap().lag, None);
        assert_eq!(
            channel_from_columns(&mariadb_row(Some("0"))).unwrap().lag,
            Some(Duration::ZERO)
        );
        let mut r = mariadb_row(Some("0"));
        r.retain(|(k, _)| k != "Slave_SQL_Running");
        let e = channel_from_columns(&r).unwrap_err();
        assert_eq!(e.kind, ProbeErrorKind::Protocol);
        assert_eq!(
            e.message,
            "replica status has no column Replica_SQL_Running or Slave_SQL_Running"
        );
        let r = mariadb_row(Some("soon"));
        assert!(
            channel_from_columns(&r).is_err(),
            "a non-numeric lag is not guessed"
        );
    }

    #[test]
    fn flavour_and_statement_by_version() {
        let cases = [
            (
                "10.11.19-MariaDB-0+deb12u1",
                Flavor::MariaDb,
                "SHOW ALL SLAVES STATUS",
            ),
            ("11.4.2-MariaDB", Flavor::MariaDb, "SHOW ALL SLAVES STATUS"),
            ("5.7.44-log", Flavor::MySql, "SHOW SLAVE STATUS"),
            ("8.0.21", Flavor::MySql, "SHOW SLAVE STATUS"),
            ("8.0.22", Flavor::MySql, "SHOW REPLICA STATUS"),
            ("8.4.3", Flavor::MySql, "SHOW REPLICA STATUS"),
            ("9.1.0", Flavor::MySql, "SHOW REPLICA STATUS"),
        ];
        for (v, flavor, sql) in cases {
            let k = ServerKind::detect(v.to_string());
            assert_eq!((k.flavor, k.replica_status_sql), (flavor, sql), "{v}");
        }
    }
}
