//! The manual-promotion checklist's prerequisites (binary log, GTID, not delayed, read-only)
//! and the printed steps. The source comparison the checklist also runs lives in
//! [`super::evidence`].
//!
//! Pure, like the rest of `policy`: it reads the snapshot it is given and does no I/O.

use super::verdict::{Check, Level};
use crate::snapshot::sample::{Flavor, ServerState};

/// Checks that the replica could be promoted: SQL_Delay 0 on every channel.
pub fn not_delayed(state: &ServerState) -> Vec<Check> {
    state
        .channels
        .iter()
        .map(|ch| {
            let name = ch.label("not_delayed");
            match ch.sql_delay {
                Some(d) if d.is_zero() => Check::fact(name, true, "SQL_Delay=0".to_string()),
                Some(d) => Check::fact(
                    name,
                    false,
                    format!("delayed replica, SQL_Delay={}s", d.as_secs()),
                )
                .with_fix(
                    "a delayed replica is stale by design: promote another one, or \
                     CHANGE MASTER TO MASTER_DELAY=0 and wait until it has caught up",
                ),
                None => Check::leveled(name, Level::Unknown, "SQL_Delay not reported".to_string()),
            }
        })
        .collect()
}

/// Binary log and log_replica_updates on: a promoted server must feed the other replicas.
pub fn binlog(state: &ServerState) -> Check {
    let updates = match state.flavor {
        Flavor::MariaDb => "log_slave_updates",
        Flavor::MySql => "log_replica_updates",
    };
    let show = |v: Option<bool>| match v {
        Some(true) => "ON",
        Some(false) => "OFF",
        None => "unknown",
    };
    let detail = format!(
        "log_bin {}, {updates} {}",
        show(state.log_bin),
        show(state.log_replica_updates)
    );
    match (state.log_bin, state.log_replica_updates) {
        (Some(true), Some(true)) => Check::fact("binlog", true, detail),
        (Some(_), Some(_)) => Check::fact("binlog", false, detail).with_fix(format!(
            "set log_bin and {updates} in the server config and restart: without them the \
             other replicas cannot follow the promoted server"
        )),
        _ => Check::leveled("binlog", Level::Unknown, detail),
    }
}

/// GTID in use: MySQL `gtid_mode=ON`; MariaDB `Using_Gtid` on every channel.
pub fn gtid_in_use(state: &ServerState) -> Vec<Check> {
    match state.flavor {
        Flavor::MySql => {
            let mode = state.gtid.mode.clone().unwrap_or_else(|| "unknown".into());
            vec![if mode == "ON" {
                Check::fact("gtid", true, "gtid_mode ON".to_string())
            } else {
                Check::fact("gtid", false, format!("gtid_mode {mode}, want ON")).with_fix(
                    "without GTIDs the other replicas cannot be repointed safely: enable \
                     gtid_mode step by step (OFF_PERMISSIVE, ON_PERMISSIVE, ON)",
                )
            }]
        }
        Flavor::MariaDb => state
            .channels
            .iter()
            .map(|ch| {
                let name = ch.label("gtid");
                match ch.using_gtid.as_deref() {
                    Some(u @ ("Slave_Pos" | "Current_Pos")) => {
                        Check::fact(name, true, format!("Using_Gtid {u}"))
                    }
                    other => Check::fact(
                        name,
                        false,
                        format!("Using_Gtid {}, want Slave_Pos", other.unwrap_or("unknown")),
                    )
                    .with_fix("CHANGE MASTER TO MASTER_USE_GTID=slave_pos on the replicas"),
                }
            })
            .collect(),
    }
}

/// read_only still ON: nobody but replication can have written to it (warn otherwise).
pub fn read_only_on(state: &ServerState) -> Check {
    if state.read_only {
        Check::fact(
            "read_only",
            true,
            "ON: only replication wrote to it".to_string(),
        )
    } else {
        Check::leveled(
            "read_only",
            Level::Warn,
            "OFF: clients may have written to it; see errant_transactions".to_string(),
        )
    }
}

/// The manual promotion steps for the flavour, printed after the checklist; never run by
/// replguard.
pub fn steps(flavor: Flavor) -> Vec<String> {
    let sql: &[&str] = match flavor {
        Flavor::MariaDb => &[
            "Make sure the old primary is dead or fenced: it must not take writes again.",
            "On this replica: STOP SLAVE;   (STOP REPLICA on 10.5+)",
            "On this replica: RESET SLAVE ALL;   (forget the old source)",
            "On this replica: SET GLOBAL read_only = OFF;   (and in its config file)",
            "Repoint HAProxy: make this server the write server (its guard's primary policy now passes).",
            "Repoint the other replicas: CHANGE MASTER TO MASTER_HOST='<this host>', MASTER_PORT=<port>, MASTER_USE_GTID=slave_pos; START SLAVE;",
        ],
        Flavor::MySql => &[
            "Make sure the old primary is dead or fenced: it must not take writes again.",
            "On this replica: STOP REPLICA;   (STOP SLAVE before 8.0.22)",
            "On this replica: RESET REPLICA ALL;   (forget the old source)",
            "On this replica: SET GLOBAL super_read_only = OFF; SET GLOBAL read_only = OFF;   (and in its config file)",
            "Repoint HAProxy: make this server the write server (its guard's primary policy now passes).",
            "Repoint the other replicas: CHANGE REPLICATION SOURCE TO SOURCE_HOST='<this host>', SOURCE_PORT=<port>, SOURCE_AUTO_POSITION=1; START REPLICA;",
        ],
    };
    sql.iter()
        .enumerate()
        .map(|(i, s)| format!("{}. {s}", i + 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::sample::fixtures::replica;

    #[test]
    fn prerequisites() {
        let mut s = replica();
        assert!(binlog(&s).ok && read_only_on(&s).level == Level::Ok);
        s.log_replica_updates = Some(false);
        s.read_only = false;
        assert_eq!(binlog(&s).level, Level::Fail);
        assert_eq!(read_only_on(&s).level, Level::Warn);
        s.log_bin = None;
        assert_eq!(binlog(&s).level, Level::Unknown);
        s.channels[0].sql_delay = Some(std::time::Duration::from_secs(60));
        assert_eq!(
            not_delayed(&s)[0].line(),
            "FAIL not_delayed delayed replica, SQL_Delay=60s"
        );
        s.channels[0].using_gtid = Some("No".into());
        assert_eq!(
            gtid_in_use(&s)[0].line(),
            "FAIL gtid Using_Gtid No, want Slave_Pos"
        );
        assert_eq!(steps(Flavor::MySql).len(), 6);
    }
}
