//! Oracle MySQL 5.7, 8.0 and 8.4 behaviour, proven against a stand-in server that speaks the
//! real MySQL wire protocol (opensrv-mysql): no Oracle MySQL package exists on these machines.
//! The stand-in answers the probe's statements with result sets laid out as MySQL documents
//! them (column names and order, NULLs, error 1064 for `SHOW SLAVE STATUS` on 8.4), and the
//! real probe, poller, policies and HTTP layer run against it.

mod common;

use async_trait::async_trait;
use common::guard::{user_block, Guard, FAST};
use opensrv_mysql::{
    AsyncMysqlIntermediary, AsyncMysqlShim, Column, ColumnFlags, ColumnType, ErrorKind, OkResponse,
    ParamParser, QueryResultWriter, StatementMetaWriter,
};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::net::TcpListener;

const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

/// What the stand-in server reports; tests change it while the guard watches.
#[derive(Debug, Clone)]
struct Replica {
    version: &'static str,
    io_running: &'static str,
    lag: Option<u64>,
    last_io_errno: u32,
    /// Every statement received, to check which syntax the probe used.
    queries: Vec<String>,
    /// Replica status hangs forever (a server stuck on the statement).
    hang: bool,
    /// Connection ids handed out so far.
    connections: u32,
    /// `@@server_id`, `@@server_uuid` and `@@gtid_executed`.
    server_id: u32,
    uuid: String,
    gtid_executed: String,
    /// `@@gtid_mode`.
    gtid_mode: &'static str,
    /// The replica status' `Retrieved_Gtid_Set` and `Executed_Gtid_Set`.
    retrieved: String,
    /// This server's own binary log position (`SHOW MASTER STATUS`).
    binlog: (&'static str, u64),
    /// Every statement fails with 1053, as a server shutting down answers.
    down: bool,
    /// A Percona XtraDB Cluster 8 node: its wsrep status and variables.
    pxc: Option<Pxc>,
    /// A Group Replication member: the group as this member sees it.
    group: Option<Group>,
    /// Semi-sync status and variables (lower-case names, as MySQL's tables hold them); empty:
    /// no semi-sync plugin.
    semi_sync: Vec<(&'static str, String)>,
}

/// A three-member group as one member sees it; `members[0]` is this server.
#[derive(Debug, Clone)]
struct Group {
    /// (MEMBER_ID, MEMBER_HOST, MEMBER_PORT, MEMBER_STATE, MEMBER_ROLE, MEMBER_VERSION)
    members: Vec<[String; 6]>,
    cert_queue: u64,
    applier_queue: u64,
}

impl Group {
    fn three(self_uuid: &str, version: &str, self_role: &str) -> Group {
        let other = |n: u32, role: &str| {
            [
                format!("4a2bb8e0-1111-11ee-8000-00000000000{n}"),
                format!("db{n}"),
                "3306".to_string(),
                "ONLINE".to_string(),
                role.to_string(),
                version.to_string(),
            ]
        };
        let others_role = if self_role == "PRIMARY" {
            "SECONDARY"
        } else {
            "PRIMARY"
        };
        Group {
            members: vec![
                [
                    self_uuid.to_string(),
                    "db2".to_string(),
                    "3306".to_string(),
                    "ONLINE".to_string(),
                    self_role.to_string(),
                    version.to_string(),
                ],
                other(7, others_role),
                other(8, "SECONDARY"),
            ],
            cert_queue: 0,
            applier_queue: 0,
        }
    }

    fn me(&mut self) -> &mut [String; 6] {
        &mut self.members[0]
    }
}

/// The columns of `performance_schema.replication_group_members` in MySQL 8.0 and 8.4.
const GROUP_MEMBER_COLUMNS: [&str; 6] = [
    "MEMBER_ID",
    "MEMBER_HOST",
    "MEMBER_PORT",
    "MEMBER_STATE",
    "MEMBER_ROLE",
    "MEMBER_VERSION",
];

/// What a PXC 8 node reports: `performance_schema.global_status` rows and the variables that
/// take it out of service.
#[derive(Debug, Clone)]
struct Pxc {
    status: Vec<(&'static str, String)>,
    maint_mode: &'static str,
    desync: &'static str,
}

impl Pxc {
    fn synced() -> Pxc {
        Pxc {
            status: vec![
                ("wsrep_local_state", "4".into()),
                ("wsrep_local_state_comment", "Synced".into()),
                ("wsrep_cluster_status", "Primary".into()),
                ("wsrep_ready", "ON".into()),
                ("wsrep_connected", "ON".into()),
                ("wsrep_cluster_size", "3".into()),
                ("wsrep_local_recv_queue", "0".into()),
                ("wsrep_flow_control_paused", "0".into()),
                (
                    "wsrep_cluster_state_uuid",
                    "6a6c0d5c-ee7d-11f1-9437-cbad913f2650".into(),
                ),
                ("wsrep_last_committed", "1234".into()),
            ],
            maint_mode: "DISABLED",
            desync: "OFF",
        }
    }
}

type Shared = Arc<Mutex<Replica>>;

struct Server(Shared, u32);

/// A replica status column: its name, and its value (None is SQL NULL).
type Col = (&'static str, Option<String>);

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// `SHOW REPLICA STATUS` (8.0.22+) or `SHOW SLAVE STATUS` (5.7, 8.0 before .22), column by
/// column in the documented order, for one default channel.
fn replica_status(r: &Replica) -> Vec<Col> {
    let new = r.version.starts_with("8.4") || r.version.starts_with("8.0");
    let n = |new_name: &'static str, old_name: &'static str| if new { new_name } else { old_name };
    let lag = r.lag.map(|l| l.to_string());
    let err = if r.last_io_errno != 0 {
        s("error connecting to source 'repl@127.0.0.1:1' - retry-time: 60 retries: 1")
    } else {
        s("")
    };
    vec![
        (
            n("Replica_IO_State", "Slave_IO_State"),
            s("Waiting for source to send event"),
        ),
        (n("Source_Host", "Master_Host"), s("127.0.0.1")),
        (n("Source_User", "Master_User"), s("repl")),
        (n("Source_Port", "Master_Port"), s("1")),
        ("Connect_Retry", s("60")),
        (n("Source_Log_File", "Master_Log_File"), s("binlog.000003")),
        (n("Read_Source_Log_Pos", "Read_Master_Log_Pos"), s("1234")),
        ("Relay_Log_File", s("relay.000002")),
        ("Relay_Log_Pos", s("1450")),
        (
            n("Relay_Source_Log_File", "Relay_Master_Log_File"),
            s("binlog.000003"),
        ),
        (n("Replica_IO_Running", "Slave_IO_Running"), s(r.io_running)),
        (n("Replica_SQL_Running", "Slave_SQL_Running"), s("Yes")),
        ("Replicate_Do_DB", s("")),
        ("Replicate_Ignore_DB", s("")),
        ("Replicate_Do_Table", s("")),
        ("Replicate_Ignore_Table", s("")),
        ("Replicate_Wild_Do_Table", s("")),
        ("Replicate_Wild_Ignore_Table", s("")),
        ("Last_Errno", s("0")),
        ("Last_Error", s("")),
        ("Skip_Counter", s("0")),
        (n("Exec_Source_Log_Pos", "Exec_Master_Log_Pos"), s("1234")),
        ("Relay_Log_Space", s("1660")),
        ("Until_Condition", s("None")),
        ("Until_Log_File", s("")),
        ("Until_Log_Pos", s("0")),
        (n("Source_SSL_Allowed", "Master_SSL_Allowed"), s("No")),
        (n("Source_SSL_CA_File", "Master_SSL_CA_File"), s("")),
        (n("Source_SSL_CA_Path", "Master_SSL_CA_Path"), s("")),
        (n("Source_SSL_Cert", "Master_SSL_Cert"), s("")),
        (n("Source_SSL_Cipher", "Master_SSL_Cipher"), s("")),
        (n("Source_SSL_Key", "Master_SSL_Key"), s("")),
        (n("Seconds_Behind_Source", "Seconds_Behind_Master"), lag),
        (
            n(
                "Source_SSL_Verify_Server_Cert",
                "Master_SSL_Verify_Server_Cert",
            ),
            s("No"),
        ),
        ("Last_IO_Errno", Some(r.last_io_errno.to_string())),
        ("Last_IO_Error", err),
        ("Last_SQL_Errno", s("0")),
        ("Last_SQL_Error", s("")),
        ("Replicate_Ignore_Server_Ids", s("")),
        (n("Source_Server_Id", "Master_Server_Id"), s("1")),
        (n("Source_UUID", "Master_UUID"), s(UUID)),
        (
            n("Source_Info_File", "Master_Info_File"),
            s("mysql.slave_master_info"),
        ),
        ("SQL_Delay", s("0")),
        ("SQL_Remaining_Delay", None),
        (
            n("Replica_SQL_Running_State", "Slave_SQL_Running_State"),
            s("Replica has read all relay log; waiting for more updates"),
        ),
        (n("Source_Retry_Count", "Master_Retry_Count"), s("86400")),
        (n("Source_Bind", "Master_Bind"), s("")),
        ("Last_IO_Error_Timestamp", s("")),
        ("Last_SQL_Error_Timestamp", s("")),
        (n("Source_SSL_Crl", "Master_SSL_Crl"), s("")),
        (n("Source_SSL_Crlpath", "Master_SSL_Crlpath"), s("")),
        ("Retrieved_Gtid_Set", s(&r.retrieved)),
        ("Executed_Gtid_Set", s(&r.gtid_executed)),
        ("Auto_Position", s("1")),
        ("Replicate_Rewrite_DB", s("")),
        ("Channel_Name", s("")),
        (n("Source_TLS_Version", "Master_TLS_Version"), s("")),
    ]
}

/// The value of one `@@global.x` expression, or the 1193 error MySQL gives.
fn variable(r: &Replica, expr: &str) -> Result<Option<String>, String> {
    let name = expr
        .trim()
        .trim_start_matches("@@global.")
        .trim_start_matches("@@");
    Ok(match name {
        "NULL" => None,
        "VERSION()" => s(r.version),
        "server_id" => Some(r.server_id.to_string()),
        "read_only" | "super_read_only" => {
            let writer = r.pxc.is_some()
                || r.group
                    .as_ref()
                    .is_some_and(|g| g.members[0][4] == "PRIMARY");
            s(if writer { "0" } else { "1" })
        }
        "wsrep_desync" if r.pxc.is_some() => s(r.pxc.as_ref().unwrap().desync),
        "wsrep_reject_queries" if r.pxc.is_some() => s("NONE"),
        "wsrep_sst_donor_rejects_queries" if r.pxc.is_some() => s("OFF"),
        "pxc_maint_mode" if r.pxc.is_some() => s(r.pxc.as_ref().unwrap().maint_mode),
        "innodb_read_only" => s("0"),
        "gtid_mode" => s(r.gtid_mode),
        "gtid_executed" => Some(r.gtid_executed.clone()),
        "log_bin" => s("1"),
        // Renamed in 8.0.26; the old name is gone in 8.4.
        "log_replica_updates" if r.version >= "8.0.26" => s("1"),
        "log_slave_updates" if !r.version.starts_with("8.4") => s("1"),
        "max_allowed_packet" => s("67108864"),
        "wait_timeout" => s("28800"),
        "socket" => s("/var/run/mysqld/mysqld.sock"),
        "server_uuid" => Some(r.uuid.clone()),
        // Only where the semi-sync plugin is installed (then `semi_sync` lists it).
        semi if semi.starts_with("rpl_semi_sync_") => {
            match r.semi_sync.iter().find(|(n, _)| *n == semi) {
                Some((_, v)) => Some(v.clone()),
                None => return Err(format!("Unknown system variable '{semi}'")),
            }
        }
        other => return Err(format!("Unknown system variable '{other}'")),
    })
}

async fn rows<'a, W: AsyncWrite + Send + Unpin, N: AsRef<str>>(
    results: QueryResultWriter<'a, W>,
    cols: &[(N, Option<String>)],
) -> io::Result<()> {
    let columns: Vec<Column> = cols
        .iter()
        .map(|(name, _)| Column {
            table: String::new(),
            column: name.as_ref().to_string(),
            coltype: ColumnType::MYSQL_TYPE_VAR_STRING,
            colflags: ColumnFlags::empty(),
        })
        .collect();
    let mut w = results.start(&columns).await?;
    for (_, v) in cols {
        w.write_col(v.as_deref())?;
    }
    w.end_row().await?;
    w.finish().await
}

#[async_trait]
impl<W: AsyncWrite + Send + Unpin> AsyncMysqlShim<W> for Server {
    type Error = io::Error;

    fn version(&self) -> String {
        self.0.lock().unwrap().version.to_string()
    }

    fn connect_id(&self) -> u32 {
        self.1
    }

    async fn on_prepare<'a>(
        &'a mut self,
        _: &'a str,
        info: StatementMetaWriter<'a, W>,
    ) -> io::Result<()> {
        info.error(
            ErrorKind::ER_UNKNOWN_COM_ERROR,
            b"no prepared statements here",
        )
        .await
    }

    async fn on_execute<'a>(
        &'a mut self,
        _: u32,
        _: ParamParser<'a>,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        results.completed(OkResponse::default()).await
    }

    async fn on_close(&mut self, _: u32) {}

    async fn on_query<'a>(
        &'a mut self,
        sql: &'a str,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        // The lock is released before any .await: a std Mutex is fine here.
        let r = {
            let mut g = self.0.lock().unwrap();
            g.queries.push(sql.to_string());
            g.clone()
        };
        let q = sql.trim();
        let parse_error = || {
            format!(
                "You have an error in your SQL syntax; check the manual that corresponds to your \
                 MySQL server version for the right syntax to use near '{q}' at line 1"
            )
        };
        if r.down {
            return results
                .error(
                    ErrorKind::ER_SERVER_SHUTDOWN,
                    b"Server shutdown in progress",
                )
                .await;
        }
        if (q == "SHOW BINARY LOG STATUS" && r.version >= "8.2")
            || (q == "SHOW MASTER STATUS" && !r.version.starts_with("8.4"))
        {
            return rows(
                results,
                &[
                    ("File", s(r.binlog.0)),
                    ("Position", Some(r.binlog.1.to_string())),
                    ("Binlog_Do_DB", s("")),
                    ("Binlog_Ignore_DB", s("")),
                    ("Executed_Gtid_Set", s(&r.gtid_executed)),
                ],
            )
            .await;
        }
        if q == "SELECT VERSION()" {
            return rows(results, &[("VERSION()", s(r.version))]).await;
        }
        if q == "SHOW GLOBAL STATUS LIKE 'Uptime'" {
            return rows(
                results,
                &[("Variable_name", s("Uptime")), ("Value", s("86400"))],
            )
            .await;
        }
        if let Some(list) = q.strip_prefix("SHOW GLOBAL VARIABLES WHERE Variable_name IN (") {
            // As MySQL: one row per named variable the server has.
            let mut have: Vec<(String, String)> = Vec::new();
            for name in list.trim_end_matches(')').split(',') {
                let name = name.trim().trim_matches('\'');
                let value = match name {
                    "wsrep_on" if r.pxc.is_some() => Some("ON".to_string()),
                    "server_uuid" => Some(r.uuid.clone()),
                    "group_replication_group_name" if r.group.is_some() => {
                        Some("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee".to_string())
                    }
                    "group_replication_single_primary_mode" if r.group.is_some() => {
                        Some("ON".to_string())
                    }
                    semi => r
                        .semi_sync
                        .iter()
                        .find(|(n, _)| *n == semi)
                        .map(|(_, v)| v.clone()),
                };
                if let Some(v) = value {
                    have.push((name.to_string(), v));
                }
            }
            let columns = ["Variable_name", "Value"].map(|c| Column {
                table: String::new(),
                column: c.to_string(),
                coltype: ColumnType::MYSQL_TYPE_VAR_STRING,
                colflags: ColumnFlags::empty(),
            });
            let mut w = results.start(&columns).await?;
            for (name, value) in &have {
                w.write_col(Some(name.as_str()))?;
                w.write_col(Some(value.as_str()))?;
                w.end_row().await?;
            }
            return w.finish().await;
        }
        if let Some(rest) = q.strip_prefix("SELECT ") {
            if let Some((list, table)) =
                rest.split_once(" FROM performance_schema.replication_group_")
            {
                // As MySQL would: the named columns of every row of the table (members), or of
                // the row a `WHERE MEMBER_ID = '...'` selects (stats); empty without a group.
                let cols: Vec<&str> = list.split(',').map(str::trim).collect();
                let group = r.group.clone();
                let data: Vec<Vec<Option<String>>> = if table == "members" {
                    let mut out = Vec::new();
                    for m in group.iter().flat_map(|g| g.members.iter()) {
                        let mut row = Vec::new();
                        for c in &cols {
                            match GROUP_MEMBER_COLUMNS.iter().position(|k| k == c) {
                                Some(i) => row.push(Some(m[i].clone())),
                                None => {
                                    let e = format!("Unknown column '{c}' in 'field list'");
                                    return results
                                        .error(ErrorKind::ER_BAD_FIELD_ERROR, e.as_bytes())
                                        .await;
                                }
                            }
                        }
                        out.push(row);
                    }
                    out
                } else if let Some(id) = table
                    .strip_prefix("member_stats WHERE MEMBER_ID = '")
                    .map(|t| t.trim_end_matches('\''))
                {
                    let mut out = Vec::new();
                    if let Some(g) = group.as_ref().filter(|g| g.members[0][0] == id) {
                        let mut row = Vec::new();
                        for c in &cols {
                            row.push(match *c {
                                "COUNT_TRANSACTIONS_IN_QUEUE" => Some(g.cert_queue.to_string()),
                                "COUNT_TRANSACTIONS_REMOTE_IN_APPLIER_QUEUE" => {
                                    Some(g.applier_queue.to_string())
                                }
                                "MEMBER_ID" => Some(id.to_string()),
                                other => {
                                    let e = format!("Unknown column '{other}' in 'field list'");
                                    return results
                                        .error(ErrorKind::ER_BAD_FIELD_ERROR, e.as_bytes())
                                        .await;
                                }
                            });
                        }
                        out.push(row);
                    }
                    out
                } else {
                    return results
                        .error(ErrorKind::ER_PARSE_ERROR, parse_error().as_bytes())
                        .await;
                };
                let columns: Vec<Column> = cols
                    .iter()
                    .map(|c| Column {
                        table: String::new(),
                        column: c.to_string(),
                        coltype: ColumnType::MYSQL_TYPE_VAR_STRING,
                        colflags: ColumnFlags::empty(),
                    })
                    .collect();
                let mut w = results.start(&columns).await?;
                for row in &data {
                    for v in row {
                        w.write_col(v.as_deref())?;
                    }
                    w.end_row().await?;
                }
                return w.finish().await;
            }
        }
        if q.contains("RPL_SEMI_SYNC") {
            // performance_schema.global_status and global_variables filtered by each UNION ALL
            // part's IN list; without the plugin they hold no such row.
            let mut out: Vec<(String, String)> = Vec::new();
            for part in q.split(" UNION ALL ") {
                if let Some((_, list)) = part.split_once(" IN (") {
                    for name in list.trim_end_matches(')').split(',') {
                        let name = name.trim().trim_matches('\'').to_ascii_lowercase();
                        if let Some((n, v)) = r.semi_sync.iter().find(|(n, _)| *n == name) {
                            out.push((n.to_string(), v.clone()));
                        }
                    }
                }
            }
            let columns = ["LOWER(VARIABLE_NAME)", "VARIABLE_VALUE"].map(|c| Column {
                table: String::new(),
                column: c.to_string(),
                coltype: ColumnType::MYSQL_TYPE_VAR_STRING,
                colflags: ColumnFlags::empty(),
            });
            let mut w = results.start(&columns).await?;
            for (name, value) in &out {
                w.write_col(Some(name.as_str()))?;
                w.write_col(Some(value.as_str()))?;
                w.end_row().await?;
            }
            return w.finish().await;
        }
        if q.contains(" FROM performance_schema.global_status ") {
            // As MySQL would: each UNION ALL part answered in turn, the status rows filtered by
            // the IN list, a `SELECT 'name', @@global.var` part as one row.
            let Some(pxc) = &r.pxc else {
                return results
                    .error(
                        ErrorKind::ER_UNKNOWN_SYSTEM_VARIABLE,
                        b"Unknown system variable",
                    )
                    .await;
            };
            let mut out: Vec<(String, Option<String>)> = Vec::new();
            for part in q.split(" UNION ALL ") {
                if let Some((_, list)) = part.split_once(" IN (") {
                    let wanted: Vec<String> = list
                        .trim_end_matches(')')
                        .split(',')
                        .map(|n| n.trim().trim_matches('\'').to_ascii_lowercase())
                        .collect();
                    for (name, value) in &pxc.status {
                        if wanted.iter().any(|w| w == name) {
                            out.push((name.to_string(), Some(value.clone())));
                        }
                    }
                } else if let Some((name, var)) =
                    part.trim_start_matches("SELECT ").split_once(", ")
                {
                    match variable(&r, var) {
                        Ok(v) => out.push((name.trim_matches('\'').to_string(), v)),
                        Err(e) => {
                            return results
                                .error(ErrorKind::ER_UNKNOWN_SYSTEM_VARIABLE, e.as_bytes())
                                .await
                        }
                    }
                }
            }
            let columns = ["LOWER(VARIABLE_NAME)", "VARIABLE_VALUE"].map(|c| Column {
                table: String::new(),
                column: c.to_string(),
                coltype: ColumnType::MYSQL_TYPE_VAR_STRING,
                colflags: ColumnFlags::empty(),
            });
            let mut w = results.start(&columns).await?;
            for (name, value) in &out {
                w.write_col(Some(name.as_str()))?;
                w.write_col(value.as_deref())?;
                w.end_row().await?;
            }
            return w.finish().await;
        }
        if q.starts_with("KILL ") {
            return results.completed(OkResponse::default()).await;
        }
        if r.hang && q.starts_with("SHOW ") && q.ends_with(" STATUS") && !q.contains("GLOBAL") {
            std::future::pending::<()>().await;
        }
        if q == "SHOW REPLICA STATUS" && r.version >= "8.0.22" {
            return rows(results, &replica_status(&r)).await;
        }
        if q == "SHOW SLAVE STATUS" && !r.version.starts_with("8.4") {
            return rows(results, &replica_status(&r)).await;
        }
        if let Some(list) = q.strip_prefix("SELECT ") {
            if list.contains("@@") {
                let mut cols = Vec::new();
                for expr in list.split(',') {
                    match variable(&r, expr) {
                        Ok(v) => cols.push((expr.trim().to_string(), v)),
                        Err(e) => {
                            return results
                                .error(ErrorKind::ER_UNKNOWN_SYSTEM_VARIABLE, e.as_bytes())
                                .await
                        }
                    }
                }
                return rows(results, &cols).await;
            }
        }
        results
            .error(ErrorKind::ER_PARSE_ERROR, parse_error().as_bytes())
            .await
    }
}

/// Starts a stand-in server on a free port; it serves until the test ends.
async fn standin(version: &'static str) -> (u16, Shared) {
    let state = Arc::new(Mutex::new(Replica {
        version,
        io_running: "Yes",
        lag: Some(0),
        last_io_errno: 0,
        queries: Vec::new(),
        hang: false,
        connections: 0,
        server_id: 2,
        uuid: "4a2bb8e0-1111-11ee-8000-000000000002".to_string(),
        gtid_executed: format!("{UUID}:1-42"),
        gtid_mode: "ON",
        retrieved: format!("{UUID}:1-42"),
        binlog: ("binlog.000003", 1234),
        down: false,
        pxc: None,
        group: None,
        semi_sync: Vec::new(),
    }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shared = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (r, w) = stream.into_split();
            let id = {
                let mut s = shared.lock().unwrap();
                s.connections += 1;
                100 + s.connections
            };
            let server = Server(shared.clone(), id);
            tokio::spawn(async move {
                let _ = AsyncMysqlIntermediary::run_on(server, r, w).await;
            });
        }
    });
    (port, state)
}

async fn run_version(version: &'static str) {
    let (port, state) = standin(version).await;
    let g = Guard::start(FAST, |dir| {
        user_block(dir, port, "replguard", "secret", "replica")
    })
    .await;
    let limit = Duration::from_secs(20);

    let ok = g.wait_for("/replica", limit, |r| r.status == 200).await;
    assert!(
        ok.line("reachable")
            .unwrap()
            .starts_with(&format!("ok reachable MySQL {version}")),
        "{version}: {}",
        ok.body
    );
    assert_eq!(
        ok.line("lag"),
        Some("ok lag 0s <= 10s"),
        "{version}: {}",
        ok.body
    );
    // The writer policy sees super_read_only, which MariaDB does not have.
    let primary = g.get("/primary").await;
    assert_eq!(primary.reason, "read_only ON, want OFF", "{version}");
    assert_eq!(
        primary.line("super_read_only"),
        Some("FAIL super_read_only ON, want OFF")
    );

    state.lock().unwrap().lag = None;
    let null = g.wait_for("/replica", limit, |r| r.status == 503).await;
    assert_eq!(null.reason, "lag NULL (unknown), want <= 10s", "{version}");

    {
        let mut s = state.lock().unwrap();
        s.io_running = "Connecting";
        s.last_io_errno = 2003;
    }
    let connecting = g
        .wait_for("/replica", limit, |r| r.reason.starts_with("io_thread"))
        .await;
    assert!(
        connecting
            .reason
            .starts_with("io_thread Connecting, want Yes (source 127.0.0.1:1): error 2003 "),
        "{version}: {}",
        connecting.reason
    );

    let queries = state.lock().unwrap().queries.clone();
    let used = |stmt: &str| queries.iter().any(|q| q == stmt);
    if version >= "8.0.22" {
        assert!(
            used("SHOW REPLICA STATUS") && !used("SHOW SLAVE STATUS"),
            "{version}: {queries:?}"
        );
    } else {
        assert!(
            used("SHOW SLAVE STATUS") && !used("SHOW REPLICA STATUS"),
            "{version}: {queries:?}"
        );
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_5_7() {
    run_version("5.7.44-log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_8_0() {
    run_version("8.0.36").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_8_4() {
    run_version("8.4.3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_8_4_refuses_the_old_syntax() {
    let (port, _state) = standin("8.4.3").await;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("replguard"))
        .pass(Some("secret"))
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts).await.unwrap();
    use mysql_async::prelude::Queryable;
    let err = conn.query_drop("SHOW SLAVE STATUS").await.unwrap_err();
    match err {
        mysql_async::Error::Server(e) => assert_eq!(e.code, 1064),
        other => panic!("expected 1064, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_hangs_times_out_and_its_session_is_killed() {
    let (port, state) = standin("8.4.3").await;
    let g = Guard::start(FAST, |dir| {
        user_block(dir, port, "replguard", "secret", "replica")
    })
    .await;
    let limit = Duration::from_secs(20);
    g.wait_for("/replica", limit, |r| r.status == 200).await;
    state.lock().unwrap().hang = true;
    let r = g
        .wait_for("/replica", limit, |r| {
            r.reason.starts_with("reachable timeout")
        })
        .await;
    assert!(
        r.reason
            .contains("SHOW REPLICA STATUS took longer than 250ms"),
        "{r:#?}"
    );
    // The stuck session (the first connection, id 101) is ended from a second one.
    let start = std::time::Instant::now();
    while !state
        .lock()
        .unwrap()
        .queries
        .iter()
        .any(|q| q == "KILL 101")
    {
        assert!(
            start.elapsed() < limit,
            "no KILL: {:?}",
            state.lock().unwrap().queries
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    g.stop().await;
}

/// Two MySQL replicas of one source, one of which received more (its IO thread fetched
/// transactions 43-50 it has not applied yet): the other's checklist names it and what it
/// has (received ∪ executed, exact GTID sets); its own passes `most_advanced`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checklist_names_the_mysql_sibling_that_received_more() {
    let (p1, _r1) = standin("8.0.36").await;
    let (p2, r2) = standin("8.0.36").await;
    {
        let mut r = r2.lock().unwrap();
        r.uuid = "4a2bb8e0-1111-11ee-8000-000000000003".into();
        r.server_id = 3;
        r.gtid_executed = format!("{UUID}:1-40");
        r.retrieved = format!("{UUID}:1-50");
    }
    let g = Guard::start(FAST, |dir| {
        let pw = common::mariadb::write_password_file(dir, "pw", "secret");
        [("r1", p1), ("r2", p2)]
            .iter()
            .map(|(name, port)| {
                format!(
                    "[[instance]]\nname = \"{name}\"\nport = {port}\nuser = \"replguard\"\n\
                     password_file = \"{}\"\npolicy = \"replica\"\n",
                    pw.display()
                )
            })
            .collect()
    })
    .await;
    let limit = Duration::from_secs(20);
    let r = g
        .wait_for("/promotion?instance=r1", limit, |r| {
            r.body.contains("FAIL most_advanced")
        })
        .await;
    assert!(
        r.body.contains(&format!(
            "FAIL most_advanced r2 is ahead: it has {UUID}:43-50; this one lacks it"
        )),
        "{}",
        r.body
    );
    let r = g
        .wait_for("/promotion?instance=r2", limit, |r| {
            r.body.contains("ok most_advanced")
        })
        .await;
    assert!(
        r.line("most_advanced").is_some_and(
            |l| l == "ok most_advanced has received everything its 1 sibling has received (r1)"
        ),
        "{}",
        r.body
    );
    g.stop().await;
}

/// MySQL's equivalent of an errant write overtaken by later source writes: the replica wrote
/// one transaction of its own (its uuid), then applied the source's later ones. Exact GTID set
/// difference keeps it errant; the checklist and the backup gate fail on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errant_transaction_overtaken_by_later_source_writes() {
    let (replica_port, replica) = standin("8.0.36").await;
    let (source_port, source) = standin("8.0.36").await;
    let own = replica.lock().unwrap().uuid.clone();
    {
        let mut src = source.lock().unwrap();
        src.server_id = 1;
        src.uuid = UUID.to_string();
        src.gtid_executed = format!("{UUID}:1-60");
    }
    replica.lock().unwrap().gtid_executed = format!("{UUID}:1-60,\n{own}:1");
    let g = Guard::start(FAST, |dir| {
        user_block(dir, replica_port, "replguard", "secret", "backup")
            + &format!("source = {{ host = \"127.0.0.1\", port = {source_port} }}\n")
    })
    .await;
    let limit = Duration::from_secs(20);
    let backup = g
        .wait_for("/backup", limit, |r| {
            r.body.contains("errant_transactions 1")
        })
        .await;
    assert_eq!(backup.status, 503, "{}", backup.body);
    assert!(
        backup.reason.starts_with(&format!(
            "errant_transactions 1: {own}:1, never on the source"
        )),
        "{backup:#?}"
    );
    let promotion = g.get("/promotion").await;
    assert!(
        promotion
            .line("errant_transactions")
            .is_some_and(|l| l.starts_with(&format!("FAIL errant_transactions 1: {own}:1"))),
        "{}",
        promotion.body
    );
    assert!(
        promotion
            .line("missing_transactions")
            .is_some_and(|l| l.starts_with("ok missing_transactions none")),
        "{}",
        promotion.body
    );
    g.stop().await;
}

/// Without GTIDs (`gtid_mode=OFF`), the source's binary log position is the evidence: a backup
/// that lost its source while the source's binary log moved past what it had read stays out,
/// and still does once the source stops answering (its last reading is newer evidence than the
/// caught-up memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_gtids_the_source_position_beats_the_memory() {
    let (replica_port, replica) = standin("8.0.36").await;
    let (source_port, source) = standin("8.0.36").await;
    for server in [&replica, &source] {
        let mut s = server.lock().unwrap();
        s.gtid_mode = "OFF";
        s.gtid_executed = String::new();
    }
    source.lock().unwrap().server_id = 1;
    let g = Guard::start(FAST, |dir| {
        user_block(dir, replica_port, "replguard", "secret", "backup")
            + &format!("source = {{ host = \"127.0.0.1\", port = {source_port} }}\n")
    })
    .await;
    let limit = Duration::from_secs(20);
    g.wait_for("/backup", limit, |r| r.status == 200).await;

    // The link breaks; the source writes on.
    {
        let mut r = replica.lock().unwrap();
        r.io_running = "Connecting";
        r.last_io_errno = 2003;
        r.lag = None;
    }
    source.lock().unwrap().binlog = ("binlog.000003", 5000);
    let behind = g
        .wait_for("/backup", limit, |r| {
            r.body.contains("past what this server has read")
        })
        .await;
    assert_eq!(behind.status, 503, "{}", behind.body);
    assert!(
        behind.line("source_lost").is_some_and(|l| l.contains(
            "is reachable and its binary log at binlog.000003:5000 is past what this server \
             has read (binlog.000003:1234)"
        )),
        "{}",
        behind.body
    );

    // The source stops answering: its last reading still decides.
    source.lock().unwrap().down = true;
    let dead = g
        .wait_for("/backup", limit, |r| r.body.contains("at its last reading"))
        .await;
    assert_eq!(dead.status, 503, "{}", dead.body);
    assert!(
        dead.line("source_lost").is_some_and(|l| l.contains(
            "but the source's binary log at binlog.000003:5000 is past what this server has \
             read (binlog.000003:1234), at its last reading ("
        )),
        "{}",
        dead.body
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percona_xtradb_cluster_node_maintenance_and_desync() {
    let (port, state) = standin("8.0.36").await;
    state.lock().unwrap().pxc = Some(Pxc::synced());
    let g = Guard::start(FAST, |dir| {
        user_block(dir, port, "replguard", "secret", "auto")
    })
    .await;
    let limit = Duration::from_secs(20);
    let ok = g.wait_for("/mysqlchk/", limit, |r| r.status == 200).await;
    assert_eq!(
        ok.line("role"),
        Some("ok role galera node -> galera"),
        "{}",
        ok.body
    );
    assert_eq!(
        ok.line("pxc_maint_mode"),
        Some("ok pxc_maint_mode DISABLED")
    );
    assert_eq!(
        ok.line("wsrep_local_state"),
        Some("ok wsrep_local_state Synced (4)")
    );
    // PXC's documented way to drain a node: HAProxy must stop sending new connections.
    state.lock().unwrap().pxc.as_mut().unwrap().maint_mode = "MAINTENANCE";
    let r = g.wait_for("/galera", limit, |r| r.status == 503).await;
    assert_eq!(r.reason, "pxc_maint_mode MAINTENANCE, want DISABLED");
    {
        let mut s = state.lock().unwrap();
        let pxc = s.pxc.as_mut().unwrap();
        pxc.maint_mode = "DISABLED";
        pxc.desync = "ON";
        pxc.status[0].1 = "2".into();
        pxc.status[1].1 = "Donor/Desynced".into();
    }
    let r = g
        .wait_for("/galera", limit, |r| {
            r.reason.starts_with("wsrep_local_state")
        })
        .await;
    assert_eq!(
        r.reason,
        "wsrep_local_state Donor/Desynced (2), want Synced (4)"
    );
    // The state came from performance_schema.global_status, as PXC 8 serves it.
    let queries = state.lock().unwrap().queries.clone();
    assert!(
        queries
            .iter()
            .any(|q| q.contains("FROM performance_schema.global_status")),
        "{queries:?}"
    );
    g.stop().await;
}

/// A three-member group seen from this member: roles, elections, queues, recovery, a minority
/// partition, the ERROR state, with MySQL 8.0's and 8.4's tables.
async fn group_member(version: &'static str) {
    let (port, state) = standin(version).await;
    {
        let mut s = state.lock().unwrap();
        let uuid = s.uuid.clone();
        s.group = Some(Group::three(&uuid, version, "PRIMARY"));
    }
    let g = Guard::start(FAST, |dir| {
        user_block(dir, port, "replguard", "secret", "auto")
    })
    .await;
    let limit = Duration::from_secs(20);
    let set = |f: &dyn Fn(&mut Group)| f(state.lock().unwrap().group.as_mut().unwrap());

    // The primary: the write port's check passes here only.
    let r = g.wait_for("/mysqlchk/", limit, |r| r.status == 200).await;
    assert_eq!(
        r.line("role"),
        Some("ok role group PRIMARY -> gr-primary"),
        "{}",
        r.body
    );
    assert_eq!(
        r.line("gr_majority"),
        Some("ok gr_majority 3 of 3 members reachable")
    );
    assert_eq!(r.line("super_read_only"), Some("ok super_read_only OFF"));
    let r = g.get("/gr-secondary").await;
    assert_eq!(
        r.reason, "gr_member_role PRIMARY, want SECONDARY",
        "{version}"
    );
    let metrics = g.get("/metrics").await.body;
    for line in [
        r#"replguard_gr_member_online{instance="db"} 1"#,
        r#"replguard_gr_primary{instance="db"} 1"#,
        r#"replguard_gr_members_online{instance="db"} 3"#,
        r#"replguard_gr_applier_queue{instance="db"} 0"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    // The checklist has nothing to do on a group member.
    let r = g.get("/promotion").await;
    assert!(
        r.reason.starts_with("group_replication member of a group"),
        "{}",
        r.reason
    );

    // A new primary is elected elsewhere: the checks follow the role.
    set(&|g| {
        g.me()[4] = "SECONDARY".into();
        g.members[1][4] = "PRIMARY".into();
    });
    let r = g.wait_for("/gr-primary", limit, |r| r.status == 503).await;
    assert_eq!(r.reason, "gr_member_role SECONDARY, want PRIMARY");
    let r = g.wait_for("/mysqlchk/", limit, |r| r.status == 200).await;
    assert_eq!(
        r.line("role"),
        Some("ok role group SECONDARY -> gr-secondary")
    );
    let events = g.get("/events?instance=db").await.body;
    assert!(
        events.contains("\"group_role_changed\"") && events.contains("PRIMARY -> SECONDARY"),
        "{events}"
    );

    // A secondary falling behind: its applier queue grows past max_applier_queue.
    set(&|g| g.applier_queue = 50);
    let r = g
        .wait_for("/gr-secondary", limit, |r| r.status == 503)
        .await;
    assert_eq!(r.reason, "gr_applier_queue 50 > 10");
    set(&|g| g.applier_queue = 2);
    g.wait_for("/gr-secondary", limit, |r| r.status == 200)
        .await;

    // RECOVERING: catching up after joining, its own reason.
    set(&|g| g.me()[3] = "RECOVERING".into());
    let r = g
        .wait_for("/gr-secondary", limit, |r| r.status == 503)
        .await;
    assert!(
        r.reason
            .starts_with("gr_member_state RECOVERING: catching up"),
        "{}",
        r.reason
    );

    // A minority partition: itself ONLINE, the two others UNREACHABLE.
    set(&|g| {
        g.me()[3] = "ONLINE".into();
        g.members[1][3] = "UNREACHABLE".into();
        g.members[2][3] = "UNREACHABLE".into();
    });
    let r = g
        .wait_for("/gr-secondary", limit, |r| {
            r.reason.starts_with("gr_majority")
        })
        .await;
    assert!(
        r.reason.starts_with(
            "gr_majority 1 of 3 members reachable (db7:3306 UNREACHABLE, db8:3306 UNREACHABLE)"
        ),
        "{}",
        r.reason
    );

    // ERROR names the state.
    set(&|g| {
        g.me()[3] = "ERROR".into();
        g.me()[4] = "".into();
        g.members[1][3] = "ONLINE".into();
        g.members[2][3] = "ONLINE".into();
    });
    let r = g
        .wait_for("/mysqlchk/", limit, |r| {
            r.reason.starts_with("gr_member_state")
        })
        .await;
    assert_eq!(r.reason, "gr_member_state ERROR, want ONLINE");
    assert_eq!(r.line("role"), Some("ok role group member -> gr-secondary"));
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_replication_member_on_mysql_8_0() {
    group_member("8.0.36").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_replication_member_on_mysql_8_4() {
    group_member("8.4.3").await;
}

/// MySQL >= 8.0.26 names semi-sync `rpl_semi_sync_source_*` / `_replica_*`: read, judged
/// (`semi_sync_wait` on a source whose waiting sessions see no ack) and exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semi_sync_with_the_mysql_8_0_26_names() {
    let (port, state) = standin("8.0.36").await;
    state.lock().unwrap().semi_sync = vec![
        ("rpl_semi_sync_source_enabled", "ON".into()),
        ("rpl_semi_sync_source_status", "ON".into()),
        ("rpl_semi_sync_source_wait_point", "AFTER_SYNC".into()),
        ("rpl_semi_sync_source_timeout", "10000".into()),
        ("rpl_semi_sync_source_clients", "1".into()),
        ("rpl_semi_sync_source_wait_sessions", "2".into()),
        ("rpl_semi_sync_source_yes_tx", "7".into()),
        ("rpl_semi_sync_source_no_tx", "0".into()),
        ("rpl_semi_sync_replica_enabled", "OFF".into()),
        ("rpl_semi_sync_replica_status", "OFF".into()),
    ];
    let g = Guard::start(FAST, |dir| {
        user_block(dir, port, "replguard", "secret", "primary") + "max_semi_sync_wait = \"1s\"\n"
    })
    .await;
    let limit = Duration::from_secs(20);
    let stuck = g
        .wait_for("/primary", limit, |r| {
            r.line("semi_sync_wait")
                .is_some_and(|l| l.starts_with("FAIL"))
        })
        .await;
    let line = stuck.line("semi_sync_wait").unwrap();
    assert!(
        line.starts_with("FAIL semi_sync_wait 2 sessions waiting for an ack for ")
            && line.contains("> max_semi_sync_wait 1s (since ")
            && line.contains("no ack since, 1 acking replicas): clients hang"),
        "{line}"
    );
    let metrics = g.get("/metrics").await.body;
    for want in [
        "replguard_semi_sync_status{instance=\"db\"} 1",
        "replguard_semi_sync_clients{instance=\"db\"} 1",
        "replguard_semi_sync_wait_sessions{instance=\"db\"} 2",
        "replguard_semi_sync_replica_status{instance=\"db\"} 0",
    ] {
        assert!(metrics.contains(want), "no {want} in\n{metrics}");
    }
    // An ack arrives: the wait is not stuck any more.
    state.lock().unwrap().semi_sync[6].1 = "8".into();
    let moving = g
        .wait_for("/primary", limit, |r| {
            r.line("semi_sync_wait")
                .is_some_and(|l| l.starts_with("ok"))
        })
        .await;
    assert!(
        moving
            .line("semi_sync_wait")
            .unwrap()
            .contains("<= max_semi_sync_wait 1s"),
        "{}",
        moving.body
    );
    g.stop().await;
}
