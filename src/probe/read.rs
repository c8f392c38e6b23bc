//! The queries of a poll and the mapping of their columns, by flavour: server variables,
//! replica status channels, the heartbeat table, the source's positions.

use super::conn::{bounded, protocol};
use super::*;
use crate::snapshot::sample::{GaleraState, GroupMember, GroupState, HeartbeatError, SemiSync};

/// `8.0.36-log` → (8, 0, 36); unknown parts are 0.
pub(super) fn parse_version(v: &str) -> (u32, u32, u32) {
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

pub(super) async fn read_state(
    conn: &mut Conn,
    kind: &ServerKind,
    timeout: Duration,
) -> Result<ServerState, ProbeError> {
    let vars: Row = bounded(
        timeout,
        "variables",
        conn.query_first::<Row, _>(kind.vars_sql.as_str()),
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

    // The semi-sync columns at the end (see `ServerKind::semi_sync`): whether each side is on.
    let semi_sync = kind.semi_sync.then(|| SemiSync {
        source_enabled: flag(13),
        replica_enabled: flag(14),
        ..SemiSync::default()
    });
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
        // MySQL only; the MariaDB statement has NULL there.
        server_uuid: var(12),
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
        galera: None,
        group: None,
        semi_sync,
    })
}

/// The semi-sync status and variable names asked for, both spellings (upper case).
const SEMI_SYNC_STATUS: &str = "'RPL_SEMI_SYNC_MASTER_STATUS', 'RPL_SEMI_SYNC_MASTER_CLIENTS', \
     'RPL_SEMI_SYNC_MASTER_WAIT_SESSIONS', 'RPL_SEMI_SYNC_MASTER_YES_TX', \
     'RPL_SEMI_SYNC_MASTER_NO_TX', 'RPL_SEMI_SYNC_SLAVE_STATUS', 'RPL_SEMI_SYNC_SOURCE_STATUS', \
     'RPL_SEMI_SYNC_SOURCE_CLIENTS', 'RPL_SEMI_SYNC_SOURCE_WAIT_SESSIONS', \
     'RPL_SEMI_SYNC_SOURCE_YES_TX', 'RPL_SEMI_SYNC_SOURCE_NO_TX', 'RPL_SEMI_SYNC_REPLICA_STATUS'";
const SEMI_SYNC_VARIABLES: &str = "'RPL_SEMI_SYNC_MASTER_ENABLED', \
     'RPL_SEMI_SYNC_MASTER_TIMEOUT', 'RPL_SEMI_SYNC_MASTER_WAIT_POINT', \
     'RPL_SEMI_SYNC_SLAVE_ENABLED', 'RPL_SEMI_SYNC_SOURCE_ENABLED', \
     'RPL_SEMI_SYNC_SOURCE_TIMEOUT', 'RPL_SEMI_SYNC_SOURCE_WAIT_POINT', \
     'RPL_SEMI_SYNC_REPLICA_ENABLED'";

/// One statement for both sides of semi-sync, status and variables, from the flavour's
/// tables (MySQL 5.7+ moved them to performance_schema).
pub(super) fn semi_sync_sql(kind: &ServerKind) -> String {
    let (status, variables) = match kind.flavor {
        Flavor::MariaDb => (
            "information_schema.GLOBAL_STATUS",
            "information_schema.GLOBAL_VARIABLES",
        ),
        Flavor::MySql => (
            "performance_schema.global_status",
            "performance_schema.global_variables",
        ),
    };
    format!(
        "SELECT LOWER(VARIABLE_NAME), VARIABLE_VALUE FROM {status} \
         WHERE UPPER(VARIABLE_NAME) IN ({SEMI_SYNC_STATUS}) \
         UNION ALL SELECT LOWER(VARIABLE_NAME), VARIABLE_VALUE FROM {variables} \
         WHERE UPPER(VARIABLE_NAME) IN ({SEMI_SYNC_VARIABLES})"
    )
}

/// Reads semi-sync (see [`semi_sync_sql`]) when `enabled` (from the poll's variables) says a
/// side is on; `None` when the server has no semi-sync variable (no plugin), `enabled` as it is
/// when neither side is on (no statement then). A server error (a table the user may not
/// read, performance_schema off) is kept in [`SemiSync::error`], not a failed poll; a timeout
/// or a lost connection is one.
pub(super) async fn read_semi_sync(
    conn: &mut Conn,
    kind: &ServerKind,
    enabled: Option<SemiSync>,
    timeout: Duration,
) -> Result<Option<SemiSync>, ProbeError> {
    let Some(enabled) = enabled else {
        return Ok(None);
    };
    if enabled.source_enabled != Some(true) && enabled.replica_enabled != Some(true) {
        return Ok(Some(enabled));
    }
    let rows: Result<Vec<(String, Option<String>)>, ProbeError> =
        bounded(timeout, "semi-sync", conn.query(semi_sync_sql(kind))).await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) if e.kind == crate::snapshot::sample::ProbeErrorKind::Server => {
            return Ok(Some(SemiSync {
                error: Some(e.message),
                ..SemiSync::default()
            }))
        }
        Err(e) => return Err(e),
    };
    // Enabled, yet no status rows: what the variables said stands.
    Ok(parse_semi_sync(&rows).or(Some(enabled)))
}

/// Maps semi-sync rows (either spelling) onto [`SemiSync`]; `None` without any row.
pub(super) fn parse_semi_sync(rows: &[(String, Option<String>)]) -> Option<SemiSync> {
    if rows.is_empty() {
        return None;
    }
    let get = |suffix: &str| {
        rows.iter()
            .find(|(name, _)| {
                let name = name
                    .to_ascii_lowercase()
                    .replace("_source_", "_master_")
                    .replace("_replica_", "_slave_");
                name == format!("rpl_semi_sync_{suffix}")
            })
            .and_then(|(_, v)| v.clone())
    };
    let flag = |suffix: &str| {
        get(suffix).map(|v| matches!(v.to_ascii_uppercase().as_str(), "ON" | "1" | "TRUE"))
    };
    let num = |suffix: &str| get(suffix).and_then(|v| v.trim().parse::<u64>().ok());
    Some(SemiSync {
        error: None,
        source_enabled: flag("master_enabled"),
        source_status: flag("master_status"),
        wait_point: get("master_wait_point").map(|v| v.to_ascii_uppercase()),
        timeout_ms: num("master_timeout"),
        clients: num("master_clients"),
        wait_sessions: num("master_wait_sessions"),
        acked_tx: match (num("master_yes_tx"), num("master_no_tx")) {
            (None, None) => None,
            (yes, no) => Some(yes.unwrap_or(0).saturating_add(no.unwrap_or(0))),
        },
        replica_enabled: flag("slave_enabled"),
        replica_status: flag("slave_status"),
    })
}

/// Reads a Group Replication member's view: every member (state, role, version), then this
/// member's queues. Two statements on `performance_schema`, which a member in a minority
/// partition still answers.
pub(super) async fn read_group(
    conn: &mut Conn,
    group: &GroupIdentity,
    timeout: Duration,
) -> Result<GroupState, ProbeError> {
    let rows: Vec<Row> = bounded(
        timeout,
        "replication_group_members",
        conn.query(
            "SELECT MEMBER_ID, MEMBER_HOST, MEMBER_PORT, MEMBER_STATE, MEMBER_ROLE, \
             MEMBER_VERSION FROM performance_schema.replication_group_members",
        ),
    )
    .await?;
    let cell = |r: &Row, i: usize| r.as_ref(i).and_then(text);
    let members: Vec<GroupMember> = rows
        .iter()
        .map(|r| GroupMember {
            id: cell(r, 0).unwrap_or_default(),
            host: cell(r, 1).unwrap_or_default(),
            port: cell(r, 2).and_then(|p| p.parse().ok()),
            state: cell(r, 3).unwrap_or_default(),
            role: cell(r, 4).unwrap_or_default(),
            version: cell(r, 5).unwrap_or_default(),
        })
        .collect();
    let me = members
        .iter()
        .find(|m| m.id == group.server_uuid)
        .cloned()
        .unwrap_or(GroupMember {
            // Not in its own member list: the plugin is stopped.
            state: "OFFLINE".into(),
            ..GroupMember::default()
        });
    // The uuid was read from the server itself and is a uuid: safe to quote.
    let stats: Option<Row> = bounded(
        timeout,
        "replication_group_member_stats",
        conn.query_first(format!(
            "SELECT COUNT_TRANSACTIONS_IN_QUEUE, COUNT_TRANSACTIONS_REMOTE_IN_APPLIER_QUEUE \
             FROM performance_schema.replication_group_member_stats WHERE MEMBER_ID = '{}'",
            group.server_uuid
        )),
    )
    .await?;
    let count = |i: usize| {
        stats
            .as_ref()
            .and_then(|r| r.as_ref(i).and_then(text))
            .and_then(|v| v.parse().ok())
    };
    Ok(GroupState {
        member_id: group.server_uuid.clone(),
        state: me.state,
        role: me.role,
        single_primary: group.single_primary,
        members,
        cert_queue: count(0),
        applier_queue: count(1),
    })
}

/// The status variables a Galera node's verdict judges, as `information_schema` (MariaDB) or
/// `performance_schema` (MySQL 8 / PXC) name them.
const GALERA_STATUS: &str = "'WSREP_LOCAL_STATE','WSREP_LOCAL_STATE_COMMENT',\
    'WSREP_CLUSTER_STATUS','WSREP_READY','WSREP_CONNECTED','WSREP_CLUSTER_SIZE',\
    'WSREP_LOCAL_RECV_QUEUE','WSREP_FLOW_CONTROL_PAUSED','WSREP_CLUSTER_STATE_UUID',\
    'WSREP_LAST_COMMITTED'";

/// One statement for a Galera node's state: its status variables and the variables that take
/// it out of service. A node in a non-Primary component still answers it (it touches no table
/// the cluster replicates).
pub(super) fn galera_sql(kind: &ServerKind) -> String {
    let (status_table, pxc) = match kind.flavor {
        Flavor::MariaDb => ("information_schema.GLOBAL_STATUS", false),
        Flavor::MySql => ("performance_schema.global_status", true),
    };
    let mut sql = format!(
        "SELECT LOWER(VARIABLE_NAME), VARIABLE_VALUE FROM {status_table} \
         WHERE UPPER(VARIABLE_NAME) IN ({GALERA_STATUS}) \
         UNION ALL SELECT 'wsrep_desync', @@global.wsrep_desync \
         UNION ALL SELECT 'wsrep_reject_queries', @@global.wsrep_reject_queries \
         UNION ALL SELECT 'wsrep_sst_donor_rejects_queries', \
         @@global.wsrep_sst_donor_rejects_queries"
    );
    if pxc {
        sql.push_str(" UNION ALL SELECT 'pxc_maint_mode', @@global.pxc_maint_mode");
    }
    sql
}

/// Reads a Galera node's state (see [`galera_sql`]). A missing status variable is an error:
/// never a default that could pass.
pub(super) async fn read_galera(
    conn: &mut Conn,
    kind: &ServerKind,
    timeout: Duration,
) -> Result<GaleraState, ProbeError> {
    let rows: Vec<(String, Option<String>)> =
        bounded(timeout, "galera status", conn.query(galera_sql(kind))).await?;
    let map: std::collections::HashMap<String, Option<String>> = rows.into_iter().collect();
    let get = |name: &str| -> Result<String, ProbeError> {
        map.get(name)
            .cloned()
            .flatten()
            .ok_or_else(|| protocol(&format!("galera: {name} not reported")))
    };
    let on = |name: &str| -> Result<bool, ProbeError> {
        let v = get(name)?;
        Ok(matches!(
            v.to_ascii_uppercase().as_str(),
            "ON" | "1" | "TRUE"
        ))
    };
    let num = |name: &str| -> Result<u64, ProbeError> {
        get(name)?
            .trim()
            .parse()
            .map_err(|_| protocol(&format!("galera: {name} is not a number")))
    };
    Ok(GaleraState {
        local_state: num("wsrep_local_state")? as u32,
        local_state_comment: get("wsrep_local_state_comment")?,
        cluster_status: get("wsrep_cluster_status")?,
        ready: on("wsrep_ready")?,
        connected: on("wsrep_connected")?,
        cluster_size: num("wsrep_cluster_size")? as u32,
        recv_queue: num("wsrep_local_recv_queue")?,
        flow_control_paused: get("wsrep_flow_control_paused")?
            .trim()
            .parse()
            .map_err(|_| protocol("galera: wsrep_flow_control_paused is not a number"))?,
        cluster_state_uuid: get("wsrep_cluster_state_uuid")?,
        last_committed: get("wsrep_last_committed")?
            .trim()
            .parse()
            .map_err(|_| protocol("galera: wsrep_last_committed is not a number"))?,
        desync: on("wsrep_desync")?,
        reject_queries: get("wsrep_reject_queries")?,
        sst_donor_rejects_queries: on("wsrep_sst_donor_rejects_queries")?,
        pxc_maint_mode: map.get("pxc_maint_mode").cloned().flatten(),
    })
}

/// The worst heartbeat lag over the source rows, in microseconds, computed by the server
/// (`NOW(6)` or `UTC_TIMESTAMP(6)` minus `ts`, as pt-heartbeat --check does), or why not.
pub(super) async fn read_heartbeat(
    conn: &mut Conn,
    hb: &Heartbeat,
    own_server_id: u32,
    timeout: Duration,
) -> Result<i64, HeartbeatError> {
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
        })
        .map_err(HeartbeatError)?;
    let mut worst: Option<i64> = None;
    for (server_id, lag) in rows {
        let ours = match hb.server_id {
            Some(id) => server_id == id,
            None => server_id != own_server_id,
        };
        if !ours {
            continue;
        }
        let lag = lag.ok_or_else(|| {
            HeartbeatError(format!("row of server_id {server_id} has an unreadable ts"))
        })?;
        worst = Some(worst.map_or(lag, |w| w.max(lag)));
    }
    worst.ok_or_else(|| {
        HeartbeatError(match hb.server_id {
            Some(id) => format!("no heartbeat row from server_id {id} in {}", hb.table),
            None => format!("no heartbeat row from another server in {}", hb.table),
        })
    })
}

/// Updates this server's heartbeat row, pt-heartbeat compatible (`ts` as
/// `YYYY-MM-DDTHH:MM:SS.ffffff`). The one statement replguard ever writes.
pub(super) async fn write_heartbeat(
    conn: &mut Conn,
    hb: &Heartbeat,
    timeout: Duration,
) -> Result<(), HeartbeatError> {
    let now = if hb.utc { "UTC_TIMESTAMP(6)" } else { "NOW(6)" };
    let (db, table) = hb.table.split_once('.').unwrap_or(("", &hb.table));
    let sql = format!(
        "REPLACE INTO `{db}`.`{table}` (ts, server_id) \
         VALUES (DATE_FORMAT({now}, '%Y-%m-%dT%H:%i:%s.%f'), @@server_id)"
    );
    bounded(timeout, "heartbeat write", conn.query_drop(sql))
        .await
        .map_err(|e| HeartbeatError(e.to_string()))
}

pub(super) async fn read_source(
    conn: &mut Conn,
    kind: &ServerKind,
    timeout: Duration,
) -> Result<SourceState, ProbeError> {
    let row: Row = bounded(
        timeout,
        "source variables",
        conn.query_first::<Row, _>(kind.source_sql.as_str()),
    )
    .await?
    .ok_or_else(|| protocol("source query returned no row"))?;
    let var = |i: usize| row.as_ref(i).and_then(text);
    let flag = |i: usize| var(i).map(|v| !matches!(v.as_str(), "0" | "OFF"));
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
        read_only: match (flag(5), flag(6)) {
            (None, None) => None,
            (ro, sro) => Some(ro == Some(true) || sro == Some(true)),
        },
        gtid_slave_pos: var(7),
        semi_sync: read_semi_sync(
            conn,
            kind,
            kind.semi_sync.then(|| SemiSync {
                source_enabled: flag(8),
                replica_enabled: flag(9),
                ..SemiSync::default()
            }),
            timeout,
        )
        .await?,
    })
}

/// Maps one replica status row, whichever spelling its columns use, into a [`Channel`].
pub(super) fn parse_channel(row: &Row) -> Result<Channel, ProbeError> {
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
pub(super) fn channel_from_columns<N: AsRef<str>, V: AsRef<str>>(
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
pub(super) fn text(v: &Value) -> Option<String> {
    text_ref(v).map(Cow::into_owned)
}

/// [`text`], borrowing the value's bytes when they are UTF-8 (as text-protocol values are).
pub(super) fn text_ref(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b)),
        Value::Int(i) => Some(i.to_string().into()),
        Value::UInt(u) => Some(u.to_string().into()),
        other => Some(other.as_sql(true).into()),
    }
}
