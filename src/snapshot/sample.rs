//! What one poll of one MySQL/MariaDB server observed, as plain data.
//!
//! The probe fills these types in; policies and reports read them. Nothing here does I/O or knows
//! mysql_async: a failed poll is a [`ProbeError`] value, not an error that travels up a stack.

use crate::gtid::Origin;
use crate::units::ser_opt_secs;
use serde::Serialize;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

/// The server family, detected from `VERSION()`; column names and statements differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Flavor {
    #[serde(rename = "MariaDB")]
    MariaDb,
    #[serde(rename = "MySQL")]
    MySql,
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::MariaDb => "MariaDB",
            Flavor::MySql => "MySQL",
        })
    }
}

/// One finished poll: when it finished, how long it took, and what it saw or why it saw nothing.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Monotonic time the poll finished; sample age (freshness) is measured from here.
    pub taken_at: Instant,
    /// Wall-clock time of the same moment, for people and JSON.
    pub taken_at_wall: SystemTime,
    /// How long the poll took, connect included.
    pub duration: Duration,
    /// The server's state, or why it could not be read.
    pub outcome: Result<ServerState, ProbeError>,
    /// What the replica's source said in the same poll, when the instance is a replica.
    pub source: Option<SourceSample>,
    /// The first line of the instance's maintenance file when it exists (the reason, possibly
    /// empty); `None` when the instance is not in maintenance.
    pub maintenance: Option<String>,
    /// Why the maintenance file could not be read (then `maintenance` is `None`, and the
    /// instance fails every policy for that reason, not as "in maintenance").
    pub maintenance_error: Option<String>,
    /// The writer lease as the lease task saw it when the poll finished; `None`: the instance
    /// is in no writer group.
    pub lease: Option<super::lease::LeaseView>,
}

/// One read of a replica's source (its current primary), for the promotion checklist.
#[derive(Debug, Clone)]
pub struct SourceSample {
    /// Where the source was asked, as `host:port`.
    pub addr: String,
    pub outcome: Result<SourceState, ProbeError>,
}

/// What the promotion checklist compares on the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SourceState {
    pub flavor: Flavor,
    pub server_id: u32,
    pub version: String,
    /// MySQL `@@gtid_executed`, MariaDB `@@gtid_binlog_pos`.
    pub gtid_executed: String,
    /// MySQL `@@server_uuid` (the origin of its own GTIDs); `None` on MariaDB.
    pub server_uuid: Option<String>,
    /// MariaDB `@@gtid_binlog_state`: the last GTID of every (domain, server_id) in its binary
    /// log, which tells errant transactions apart even after later writes overtook them.
    /// `None` on MySQL, and in state files written before it was read.
    #[serde(default)]
    pub gtid_binlog_state: Option<String>,
    /// The source's own binary log position (`File`, `Position`), read only when it executes no
    /// GTIDs (MySQL `gtid_mode=OFF`): then the replica's read position is compared with it.
    #[serde(default)]
    pub binlog_position: Option<(String, u64)>,
    /// `@@read_only` (or MySQL's `@@super_read_only`) ON: the source takes no writes from its
    /// clients. `None` in state files written before it was read.
    #[serde(default)]
    pub read_only: Option<bool>,
    /// MariaDB `@@gtid_slave_pos`: what the source applied from its own sources (in
    /// master-master, the writes its peer took). `None` on MySQL.
    #[serde(default)]
    pub gtid_slave_pos: Option<String>,
    /// The source's semi-synchronous replication at this reading; `None`: no semi-sync (or a
    /// state file written before it was read).
    #[serde(default)]
    pub semi_sync: Option<SemiSync>,
}

/// The replication-relevant state of one server at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct ServerState {
    /// MariaDB or MySQL.
    pub flavor: Flavor,
    /// `VERSION()` as the server reports it, e.g. `10.11.19-MariaDB-0+deb12u1`.
    pub version: String,
    /// `@@server_id`.
    pub server_id: u32,
    /// MySQL `@@server_uuid`, the origin of the GTIDs it writes itself; `None` on MariaDB.
    pub server_uuid: Option<String>,
    /// `@@read_only`; anything but OFF/0 counts as read-only (MariaDB 11 has `NO_LOCK` variants).
    pub read_only: bool,
    /// `@@super_read_only`; MySQL only, `None` on MariaDB which has no such flag.
    pub super_read_only: Option<bool>,
    /// `@@innodb_read_only`: a server started read-only cannot take writes whatever read_only says.
    pub innodb_read_only: bool,
    /// Server uptime (`SHOW GLOBAL STATUS LIKE 'Uptime'`): tells a restarted server from a live one.
    #[serde(rename = "uptime_s", serialize_with = "ser_opt_secs")]
    pub uptime: Option<Duration>,
    /// Lag read from the heartbeat table, when one is configured: the worst over the source
    /// rows, in microseconds (negative: the source's clock is ahead), or why it is unknown.
    #[serde(serialize_with = "ser_heartbeat")]
    pub heartbeat: Option<Result<i64, HeartbeatError>>,
    /// The outcome of this poll's heartbeat write, on a writer with `heartbeat_write`.
    #[serde(serialize_with = "ser_heartbeat_write")]
    pub heartbeat_written: Option<Result<(), HeartbeatError>>,
    /// `@@log_bin`: a promoted replica needs its binary log to feed others.
    pub log_bin: Option<bool>,
    /// `@@log_replica_updates` / `@@log_slave_updates`: replicated events go to its binary log.
    pub log_replica_updates: Option<bool>,
    /// GTID positions of the server as a whole (not per channel).
    pub gtid: GtidState,
    /// One entry per replication channel (multi-source keeps them all); empty when not a replica.
    pub channels: Vec<Channel>,
    /// The Galera node's state, on a server with `wsrep_on`; `None` elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub galera: Option<GaleraState>,
    /// The Group Replication member's view, on a MySQL server in a group; `None` elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupState>,
    /// Semi-synchronous replication as this server reports it; `None` where no semi-sync
    /// variable exists (no plugin).
    pub semi_sync: Option<SemiSync>,
}

/// Semi-synchronous replication on one server, both sides, whichever names the server uses
/// (MariaDB and MySQL < 8.0.26 `rpl_semi_sync_master_*`/`_slave_*`, MySQL >= 8.0.26
/// `rpl_semi_sync_source_*`/`_replica_*`). Every field is `None` where the server did not
/// report it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SemiSync {
    /// Why the variables could not be read (then the rest is `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The source side is enabled (`rpl_semi_sync_master_enabled`).
    #[serde(default)]
    pub source_enabled: Option<bool>,
    /// The source side is really on now (`Rpl_semi_sync_master_status`): OFF after a timeout
    /// without an ack (fallen back to asynchronous) even while enabled.
    #[serde(default)]
    pub source_status: Option<bool>,
    /// `rpl_semi_sync_master_wait_point`: `AFTER_SYNC` or `AFTER_COMMIT`.
    #[serde(default)]
    pub wait_point: Option<String>,
    /// `rpl_semi_sync_master_timeout`, in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Acking replicas connected (`Rpl_semi_sync_master_clients`).
    #[serde(default)]
    pub clients: Option<u64>,
    /// Sessions waiting for an ack now (`Rpl_semi_sync_master_wait_sessions`).
    #[serde(default)]
    pub wait_sessions: Option<u64>,
    /// Commits acknowledged or timed out so far (`..._yes_tx` + `..._no_tx`): while it does
    /// not move, waiting sessions are stuck.
    #[serde(default)]
    pub acked_tx: Option<u64>,
    /// The replica side is enabled (`rpl_semi_sync_slave_enabled`).
    #[serde(default)]
    pub replica_enabled: Option<bool>,
    /// This server is an acking semi-sync replica of its source now
    /// (`Rpl_semi_sync_slave_status`).
    #[serde(default)]
    pub replica_status: Option<bool>,
}

/// A Group Replication member's view of its group, from
/// `performance_schema.replication_group_members` and `replication_group_member_stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupState {
    /// This member's `MEMBER_ID` (its `@@server_uuid`).
    pub member_id: String,
    /// This member's `MEMBER_STATE`: ONLINE, RECOVERING, OFFLINE, ERROR, UNREACHABLE.
    pub state: String,
    /// This member's `MEMBER_ROLE`: PRIMARY or SECONDARY (empty while not ONLINE).
    pub role: String,
    /// `@@group_replication_single_primary_mode`.
    pub single_primary: bool,
    /// Every member this one sees, itself included.
    pub members: Vec<GroupMember>,
    /// `COUNT_TRANSACTIONS_IN_QUEUE`: transactions waiting for certification.
    pub cert_queue: Option<u64>,
    /// `COUNT_TRANSACTIONS_REMOTE_IN_APPLIER_QUEUE`: transactions waiting to be applied.
    pub applier_queue: Option<u64>,
}

/// One row of `replication_group_members`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupMember {
    pub id: String,
    pub host: String,
    pub port: Option<u16>,
    pub state: String,
    pub role: String,
    pub version: String,
}

impl GroupState {
    /// Members that count towards a majority: ONLINE or RECOVERING (as Group Replication counts
    /// them: an UNREACHABLE member is suspected, not gone).
    pub fn reachable(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.state == "ONLINE" || m.state == "RECOVERING")
            .count()
    }

    /// Whether this member sees a majority of its group.
    pub fn has_majority(&self) -> bool {
        self.reachable() * 2 > self.members.len()
    }
}

/// What a Galera node (MariaDB Galera Cluster, Percona XtraDB Cluster) reports of itself, read
/// once per poll. A node cut off into a non-Primary component still answers these.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GaleraState {
    /// `wsrep_local_state`: 1 Joining, 2 Donor/Desynced, 3 Joined, 4 Synced (0 Initialized).
    pub local_state: u32,
    /// `wsrep_local_state_comment`, e.g. `Synced`, `Donor/Desynced`.
    pub local_state_comment: String,
    /// `wsrep_cluster_status`: `Primary`, `non-Primary` or `Disconnected`.
    pub cluster_status: String,
    /// `wsrep_ready`: the node accepts queries.
    pub ready: bool,
    /// `wsrep_connected`: the node has a connection to the group.
    pub connected: bool,
    /// `wsrep_cluster_size`: nodes in this node's component.
    pub cluster_size: u32,
    /// `wsrep_local_recv_queue`: write-sets received but not yet applied.
    pub recv_queue: u64,
    /// `wsrep_flow_control_paused`: the fraction of time paused by flow control (0..1).
    pub flow_control_paused: f64,
    /// `wsrep_cluster_state_uuid`.
    pub cluster_state_uuid: String,
    /// `wsrep_last_committed`: the seqno of the last committed write-set.
    pub last_committed: i64,
    /// `@@wsrep_desync`.
    pub desync: bool,
    /// `@@wsrep_reject_queries`: `NONE`, `ALL` or `ALL_KILL`.
    pub reject_queries: String,
    /// `@@wsrep_sst_donor_rejects_queries`.
    pub sst_donor_rejects_queries: bool,
    /// Percona XtraDB Cluster's `@@pxc_maint_mode` (`DISABLED`, `SHUTDOWN`, `MAINTENANCE`);
    /// `None` where it does not exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pxc_maint_mode: Option<String>,
}

/// Why the heartbeat table gave no lag, or why a heartbeat write failed, in the server's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HeartbeatError(pub String);

impl From<String> for HeartbeatError {
    fn from(message: String) -> HeartbeatError {
        HeartbeatError(message)
    }
}

impl From<&str> for HeartbeatError {
    fn from(message: &str) -> HeartbeatError {
        HeartbeatError(message.to_string())
    }
}

fn ser_heartbeat<S: serde::Serializer>(
    h: &Option<Result<i64, HeartbeatError>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match h {
        None => s.serialize_none(),
        Some(Ok(us)) => s.serialize_some(&serde_json::json!({ "lag_s": *us as f64 / 1e6 })),
        Some(Err(e)) => s.serialize_some(&serde_json::json!({ "error": e.0 })),
    }
}

fn ser_heartbeat_write<S: serde::Serializer>(
    h: &Option<Result<(), HeartbeatError>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match h {
        None => s.serialize_none(),
        Some(Ok(())) => s.serialize_some("ok"),
        Some(Err(e)) => s.serialize_some(&e.0),
    }
}

impl ServerState {
    /// The lag policies judge for a channel: the heartbeat's when one is configured (negative,
    /// i.e. clock skew, counts as 0; unreadable as unknown), else Seconds_Behind.
    pub fn effective_lag(&self, ch: &Channel) -> Option<Duration> {
        match &self.heartbeat {
            Some(Ok(us)) => Some(Duration::from_micros((*us).max(0) as u64)),
            Some(Err(_)) => None,
            None => ch.lag,
        }
    }

    /// The lag policies judge for the whole server, the one place that decides it: the
    /// heartbeat's when a table is configured (as [`ServerState::effective_lag`]), else the
    /// worst `Seconds_Behind` over the channels; unknown when any channel's is NULL, the
    /// heartbeat is unreadable, or there is no channel.
    pub fn judged_lag(&self) -> Option<Duration> {
        match &self.heartbeat {
            Some(_) => self.channels.first().and_then(|c| self.effective_lag(c)),
            None => self
                .channels
                .iter()
                .map(|c| c.lag)
                .try_fold(None::<Duration>, |acc, l| {
                    l.map(|l| Some(acc.map_or(l, |a| a.max(l))))
                })
                .flatten(),
        }
    }

    /// True when the server takes writes from ordinary clients: every read-only flag is off.
    pub fn writable(&self) -> bool {
        !self.read_only && self.super_read_only != Some(true) && !self.innodb_read_only
    }

    /// The writes this server took itself (not replicated), as its GTIDs tell; `None` when they
    /// cannot tell (no GTIDs, positions that do not parse).
    pub fn own_writes(&self) -> Option<Origin> {
        match self.flavor {
            Flavor::MariaDb => {
                Origin::mariadb(self.gtid.binlog_state.as_deref()?, self.server_id).ok()
            }
            Flavor::MySql => {
                Origin::mysql(self.gtid.executed.as_deref()?, self.server_uuid.as_deref()?).ok()
            }
        }
    }

    /// Whether this server has applied every one of `writes` (another server's own writes);
    /// `None` when its positions cannot tell.
    pub fn has_applied(&self, writes: &Origin) -> Option<bool> {
        let g = &self.gtid;
        writes
            .covered_by(&[
                g.executed.as_deref(),
                g.binlog_pos.as_deref(),
                g.slave_pos.as_deref(),
                g.current_pos.as_deref(),
            ])
            .ok()
    }
}

impl SourceState {
    /// The writes the source took itself, as its GTIDs tell; `None` when they cannot tell.
    pub fn own_writes(&self) -> Option<Origin> {
        match self.flavor {
            Flavor::MariaDb => {
                Origin::mariadb(self.gtid_binlog_state.as_deref()?, self.server_id).ok()
            }
            Flavor::MySql => Origin::mysql(&self.gtid_executed, self.server_uuid.as_deref()?).ok(),
        }
    }

    /// Whether the source has applied every one of `writes`; `None` when it cannot tell.
    pub fn has_applied(&self, writes: &Origin) -> Option<bool> {
        writes
            .covered_by(&[Some(&self.gtid_executed), self.gtid_slave_pos.as_deref()])
            .ok()
    }
}

/// Server-wide GTID positions; each field is `None` where the flavour has no such variable.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GtidState {
    /// MySQL `@@gtid_mode` (`ON`, `OFF`, …).
    pub mode: Option<String>,
    /// MySQL `@@gtid_executed`.
    pub executed: Option<String>,
    /// MariaDB `@@gtid_binlog_pos`.
    pub binlog_pos: Option<String>,
    /// MariaDB `@@gtid_slave_pos`.
    pub slave_pos: Option<String>,
    /// MariaDB `@@gtid_current_pos`.
    pub current_pos: Option<String>,
    /// MariaDB `@@gtid_binlog_state` (per domain *and* server_id).
    pub binlog_state: Option<String>,
}

/// A replication thread's state as `SHOW REPLICA STATUS` reports it. `Connecting` is kept apart
/// from `Yes` and `No`: it means the thread runs but has no source, which is not "running".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadState {
    Yes,
    Connecting,
    No,
    /// Anything else the server said, kept verbatim rather than guessed into one of the above.
    Other(String),
}

impl ThreadState {
    pub fn parse(text: &str) -> ThreadState {
        match text {
            "Yes" => ThreadState::Yes,
            "Connecting" => ThreadState::Connecting,
            "No" => ThreadState::No,
            other => ThreadState::Other(other.to_string()),
        }
    }
}

impl fmt::Display for ThreadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ThreadState::Yes => "Yes",
            ThreadState::Connecting => "Connecting",
            ThreadState::No => "No",
            ThreadState::Other(s) => s,
        })
    }
}

impl Serialize for ThreadState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One row of `SHOW REPLICA STATUS` / `SHOW ALL SLAVES STATUS`, under one set of names whichever
/// spelling (`Slave_*`/`Master_*` or `Replica_*`/`Source_*`) the server used.
#[derive(Debug, Clone, Serialize)]
pub struct Channel {
    /// Channel (MySQL) or connection (MariaDB multi-source) name; empty for the default one.
    pub name: String,
    /// `Replica_IO_Running` / `Slave_IO_Running`.
    pub io_thread: ThreadState,
    /// `Replica_SQL_Running` / `Slave_SQL_Running`.
    pub sql_thread: ThreadState,
    /// `Seconds_Behind_Source` / `_Master`; `None` when the server says NULL (never read as 0).
    #[serde(rename = "lag_s", serialize_with = "ser_opt_secs")]
    pub lag: Option<Duration>,
    /// `Last_IO_Errno` and `Last_IO_Error`.
    pub last_io_errno: u32,
    pub last_io_error: String,
    /// `Last_SQL_Errno` and `Last_SQL_Error`.
    pub last_sql_errno: u32,
    pub last_sql_error: String,
    /// Where this channel replicates from.
    pub source_host: String,
    pub source_port: u16,
    /// How far the IO thread has read: `Source_Log_File` / `Read_Source_Log_Pos`.
    pub read_log_file: String,
    pub read_log_pos: u64,
    /// How far the SQL thread has applied: `Relay_Source_Log_File` / `Exec_Source_Log_Pos`.
    pub exec_log_file: String,
    pub exec_log_pos: u64,
    /// `Relay_Log_Space`, bytes of relay log not yet purged.
    pub relay_log_space: u64,
    /// `SQL_Delay` (seconds of deliberate delay), `None` where the server has no such column.
    #[serde(rename = "sql_delay_s", serialize_with = "ser_opt_secs")]
    pub sql_delay: Option<Duration>,
    /// MySQL `Retrieved_Gtid_Set` and `Executed_Gtid_Set`.
    pub retrieved_gtid_set: Option<String>,
    pub executed_gtid_set: Option<String>,
    /// MariaDB `Using_Gtid` (`No`, `Slave_Pos`, `Current_Pos`) and `Gtid_IO_Pos`.
    pub using_gtid: Option<String>,
    pub gtid_io_pos: Option<String>,
}

impl Channel {
    /// The source this channel replicates from, as `host:port`.
    pub fn source_addr(&self) -> String {
        format!("{}:{}", self.source_host, self.source_port)
    }

    /// The name used in check lines: `sql_thread` for the default channel, `sql_thread[ch2]` else.
    pub fn label(&self, check: &str) -> String {
        if self.name.is_empty() {
            check.to_string()
        } else {
            format!("{check}[{}]", self.name)
        }
    }
}

/// Why a poll saw nothing. Kinds are distinct so that a check-user problem is reported as such
/// rather than as an unhealthy replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeErrorKind {
    /// The server refused the check user's credentials (1045).
    AccessDenied,
    /// The check user lacks a privilege a query needs (1227, 1142).
    NotPermitted,
    /// The server has no connection slot left (1040, 1203).
    TooManyConnections,
    /// Nothing listens at the address (connection refused, no socket file).
    Refused,
    /// A connect or query did not finish within `timeout`.
    Timeout,
    /// Another error the server returned, with its errno.
    Server,
    /// The connection broke or could not be made for another network reason.
    Network,
    /// The server answered something the probe does not understand (e.g. a missing column).
    Protocol,
    /// The TLS handshake failed (certificate not trusted, issued for another host, …).
    Tls,
    /// The server refuses connections without TLS (`require_secure_transport`, 3159).
    InsecureTransport,
    /// `ssl_mode` requires TLS and the server offers none.
    NoTlsOffered,
}

/// A failed poll, with enough detail for an operator to act on.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeError {
    pub kind: ProbeErrorKind,
    /// MySQL errno when the server sent one.
    pub errno: Option<u16>,
    /// What went wrong, as the server or the OS said it; never contains the password.
    pub message: String,
}

impl ProbeError {
    /// The kind and error number, without the message: two errors with the same key have the
    /// same cause (a message may carry changing details).
    pub fn kind_key(&self) -> String {
        format!("{:?} {}", self.kind, self.errno.unwrap_or(0))
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ProbeErrorKind::AccessDenied => "check user refused",
            ProbeErrorKind::NotPermitted => "check user lacks a privilege",
            ProbeErrorKind::TooManyConnections => "too many connections",
            ProbeErrorKind::Refused => "connection refused",
            ProbeErrorKind::Timeout => "timeout",
            ProbeErrorKind::Server => "server error",
            ProbeErrorKind::Network => "network error",
            ProbeErrorKind::Protocol => "unexpected answer",
            ProbeErrorKind::Tls => "TLS",
            ProbeErrorKind::InsecureTransport => {
                return write!(
                    f,
                    "server requires secure transport ({}): set ssl_mode; {}",
                    self.errno.unwrap_or(3159),
                    self.message
                )
            }
            ProbeErrorKind::NoTlsOffered => "no TLS",
        };
        match self.errno {
            Some(errno) => write!(f, "{what}: {errno} {}", self.message),
            None => write!(f, "{what}: {}", self.message),
        }
    }
}

/// Hand-built states for tests of policies, reports and HTTP handlers.
#[cfg(test)]
pub mod fixtures {
    use super::*;
    use crate::snapshot::Snapshot;

    pub fn channel() -> Channel {
        Channel {
            name: String::new(),
            io_thread: ThreadState::Yes,
            sql_thread: ThreadState::Yes,
            lag: Some(Duration::ZERO),
            last_io_errno: 0,
            last_io_error: String::new(),
            last_sql_errno: 0,
            last_sql_error: String::new(),
            source_host: "127.0.0.1".into(),
            source_port: 3306,
            read_log_file: "mysql-bin.000001".into(),
            read_log_pos: 100,
            exec_log_file: "mysql-bin.000001".into(),
            exec_log_pos: 100,
            relay_log_space: 0,
            sql_delay: Some(Duration::ZERO),
            retrieved_gtid_set: None,
            executed_gtid_set: None,
            using_gtid: Some("Slave_Pos".into()),
            gtid_io_pos: Some("0-1-5".into()),
        }
    }

    pub fn replica() -> ServerState {
        ServerState {
            flavor: Flavor::MariaDb,
            version: "10.11.19-MariaDB".into(),
            server_id: 2,
            server_uuid: None,
            read_only: true,
            super_read_only: None,
            innodb_read_only: false,
            uptime: Some(Duration::from_secs(100)),
            log_bin: Some(true),
            log_replica_updates: Some(true),
            heartbeat: None,
            heartbeat_written: None,
            gtid: GtidState::default(),
            channels: vec![channel()],
            galera: None,
            group: None,
            semi_sync: None,
        }
    }

    pub fn primary() -> ServerState {
        ServerState {
            read_only: false,
            server_id: 1,
            channels: vec![],
            ..replica()
        }
    }

    /// A snapshot whose only sample finished `age` before `now`.
    pub fn snap(outcome: Result<ServerState, ProbeError>, now: Instant, age: Duration) -> Snapshot {
        Snapshot::default().next(Sample {
            taken_at: now - age,
            taken_at_wall: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(2),
            outcome,
            source: None,
            maintenance: None,
            maintenance_error: None,
            lease: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{primary, replica};
    use std::time::Duration;

    #[test]
    fn the_judged_lag_is_the_heartbeats_or_the_worst_channel_and_null_stays_unknown() {
        let secs = Duration::from_secs;
        let mut two = replica();
        let mut second = two.channels[0].clone();
        second.name = "b".into();
        second.lag = Some(secs(7));
        two.channels.push(second);
        assert_eq!(two.judged_lag(), Some(secs(7)), "the worst channel");
        two.channels[0].lag = None;
        assert_eq!(two.judged_lag(), None, "one NULL makes it unknown, never 0");
        two.heartbeat = Some(Ok(2_500_000));
        assert_eq!(
            two.judged_lag(),
            Some(Duration::from_millis(2500)),
            "heartbeat wins"
        );
        two.heartbeat = Some(Ok(-1_000_000));
        assert_eq!(
            two.judged_lag(),
            Some(Duration::ZERO),
            "clock skew reads as 0"
        );
        two.heartbeat = Some(Err("no row".into()));
        assert_eq!(two.judged_lag(), None);
        assert_eq!(primary().judged_lag(), None, "no channel, no lag");
    }
}
