//! The probe: the one module that talks to MySQL/MariaDB (and the only one that knows
//! mysql_async). One [`Probe`] per instance keeps one connection, reused across polls.
//!
//! [`Probe::sample`] never returns an error type: whatever happens (refused, access denied,
//! timeout, an unexpected column set) becomes a [`ProbeError`] value inside the sample. Every
//! connect and every query is bounded by the configured timeout. The probe reads, with two
//! exceptions: the opt-in heartbeat `REPLACE` (`heartbeat_write = true`) and the `KILL` of its
//! own session stuck on a timed-out query.

pub mod tlsname;

mod conn;
mod read;
mod source;

pub use source::{SourceReads, SourceWatch};

use conn::{bounded, protocol, ssl_opts};
use read::{
    parse_version, read_galera, read_group, read_heartbeat, read_semi_sync, read_source,
    read_state, text, write_heartbeat,
};

use crate::config::{Addr, Heartbeat, SslMode, Target, Tls};
use crate::snapshot::sample::{
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
    /// from (see [`crate::probe::tlsname`]), and the name once learnt.
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
    /// The server variables of a poll; with semi-sync variables (learnt at connect), ends with
    /// whether each side is enabled.
    vars_sql: String,
    /// What a replica's guard reads on this server when it is the replica's source; the same
    /// two semi-sync columns at the end.
    source_sql: String,
    /// The server has semi-sync variables (either spelling, either side): a poll reads whether
    /// they are enabled, and the rest of semi-sync only when one is.
    semi_sync: bool,
    /// The statement that shows this server's own binary log position (`File`, `Position`),
    /// for a source without GTIDs: `SHOW BINARY LOG STATUS` since MySQL 8.2 (the old name is
    /// gone in 8.4), `SHOW MASTER STATUS` before and on MariaDB.
    binlog_status_sql: &'static str,
    /// A Galera node (`wsrep_on` at connect): its state is read at every poll.
    galera: bool,
    /// A Group Replication member (a group name configured at connect): its view of the group
    /// is read at every poll.
    group: Option<GroupIdentity>,
}

/// What a Group Replication member is, learnt at connect.
#[derive(Debug, Clone)]
struct GroupIdentity {
    server_uuid: String,
    single_primary: bool,
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
        if let (Ok(state), Some(group)) = (&mut result, &kind.group) {
            match read_group(conn, group, self.timeout).await {
                Ok(g) => state.group = Some(g),
                Err(e) => result = Err(e),
            }
        }
        if let (Ok(state), true) = (&mut result, kind.galera) {
            match read_galera(conn, kind, self.timeout).await {
                Ok(g) => state.galera = Some(g),
                Err(e) => result = Err(e),
            }
        }
        if let Ok(state) = &mut result {
            match read_semi_sync(conn, kind, state.semi_sync.take(), self.timeout).await {
                Ok(s) => state.semi_sync = s,
                Err(e) => result = Err(e),
            }
        }
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
        // What kind of cluster member, if any: `wsrep_on` exists on every MariaDB and on PXC,
        // the group_replication_* variables only where the plugin is installed; a server
        // without them returns no row for them.
        let vars: Vec<Row> = bounded(
            self.timeout,
            "SHOW GLOBAL VARIABLES",
            conn.query::<Row, _>(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('wsrep_on', 'server_uuid', \
                 'group_replication_group_name', 'group_replication_single_primary_mode', \
                 'rpl_semi_sync_master_enabled', 'rpl_semi_sync_slave_enabled', \
                 'rpl_semi_sync_source_enabled', 'rpl_semi_sync_replica_enabled')",
            ),
        )
        .await?;
        let var = |name: &str| {
            vars.iter()
                .find(|r| r.as_ref(0).and_then(text).as_deref() == Some(name))
                .and_then(|r| r.as_ref(1).and_then(text))
        };
        let is_on = |v: Option<String>| v.is_some_and(|v| v.eq_ignore_ascii_case("ON") || v == "1");
        let galera = is_on(var("wsrep_on"));
        let group = match (var("group_replication_group_name"), var("server_uuid")) {
            (Some(name), Some(server_uuid)) if !name.is_empty() => Some(GroupIdentity {
                server_uuid,
                single_primary: is_on(var("group_replication_single_primary_mode")),
            }),
            _ => None,
        };
        let at = Instant::now();
        let uptime = uptime
            .and_then(|r| r.as_ref(1).and_then(text))
            .and_then(|v| v.parse().ok())
            .map(|secs| (Duration::from_secs(secs), at));
        // Semi-sync: whichever spelling of each side exists; a poll asks whether it is
        // enabled (two more columns), and reads the rest only then.
        let side = |old: &'static str, new: &'static str| {
            [new, old]
                .into_iter()
                .find(|n| var(n).is_some())
                .map_or("NULL".to_string(), |n| format!("@@global.{n}"))
        };
        let source_side = side(
            "rpl_semi_sync_master_enabled",
            "rpl_semi_sync_source_enabled",
        );
        let replica_side = side(
            "rpl_semi_sync_slave_enabled",
            "rpl_semi_sync_replica_enabled",
        );
        let mut kind = ServerKind {
            uptime,
            galera,
            group,
            ..ServerKind::detect(version)
        };
        if source_side != "NULL" || replica_side != "NULL" {
            kind.semi_sync = true;
            let extra = format!(", {source_side}, {replica_side}");
            kind.vars_sql.push_str(&extra);
            kind.source_sql.push_str(&extra);
        }
        Ok((conn, kind))
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
                let name = crate::probe::tlsname::certificate_name(host, *port, ca, self.timeout)
                    .await
                    .map_err(|e| ProbeError {
                        kind: ProbeErrorKind::Tls,
                        errno: None,
                        message: e.to_string(),
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
                           @@global.gtid_binlog_state, NULL"
                    .into(),
                source_sql:
                    "SELECT @@global.server_id, VERSION(), @@global.gtid_binlog_pos, NULL, \
                             @@global.gtid_binlog_state, @@global.read_only, NULL, \
                             @@global.gtid_slave_pos"
                        .into(),
                // Unused: MariaDB always has GTIDs in its binary log.
                binlog_status_sql: "SHOW MASTER STATUS",
                version,
                uptime: None,
                galera: false,
                group: None,
                semi_sync: false,
            }
        } else {
            let (major, minor, patch) = parse_version(&version);
            // SHOW REPLICA STATUS arrived in 8.0.22; SHOW SLAVE STATUS is gone in 8.4.
            // log_replica_updates replaced log_slave_updates in 8.0.26 (the old name is gone in
            // 8.4); 5.7 has no tagged GTIDs but the same gtid_executed.
            let vars_sql = if (major, minor, patch) >= (8, 0, 26) {
                "SELECT @@global.server_id, @@global.read_only, @@global.super_read_only, \
                 @@global.innodb_read_only, @@global.gtid_mode, @@global.gtid_executed, NULL, \
                 NULL, NULL, @@global.log_bin, @@global.log_replica_updates, NULL, \
                 @@global.server_uuid"
            } else {
                "SELECT @@global.server_id, @@global.read_only, @@global.super_read_only, \
                 @@global.innodb_read_only, @@global.gtid_mode, @@global.gtid_executed, NULL, \
                 NULL, NULL, @@global.log_bin, @@global.log_slave_updates, NULL, \
                 @@global.server_uuid"
            };
            let replica_status_sql = if (major, minor, patch) >= (8, 0, 22) {
                "SHOW REPLICA STATUS"
            } else {
                "SHOW SLAVE STATUS"
            };
            ServerKind {
                flavor: Flavor::MySql,
                replica_status_sql,
                vars_sql: vars_sql.into(),
                source_sql: "SELECT @@global.server_id, VERSION(), @@global.gtid_executed, \
                             @@global.server_uuid, NULL, @@global.read_only, \
                             @@global.super_read_only, NULL"
                    .into(),
                binlog_status_sql: if (major, minor) >= (8, 2) {
                    "SHOW BINARY LOG STATUS"
                } else {
                    "SHOW MASTER STATUS"
                },
                version,
                uptime: None,
                galera: false,
                group: None,
                semi_sync: false,
            }
        }
    }
}

#[cfg(test)]
mod tests;
