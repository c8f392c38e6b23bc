//! Evidence from the source: how a replica compares with its source (missing and errant
//! transactions as exact GTID sets or binlog positions, versions, server ids), for the
//! promotion checklist, the backup gate's `errant_transactions`, and the `source`/`peer`
//! memory that newer source readings void.
//!
//! Pure: it reads the snapshot it is given and does no I/O. When the source was unreachable at
//! the latest poll it falls back to the last source read the poller remembers, and says so;
//! that evidence can warn, never be "ok".

use super::verdict::{Check, Input, Level};
use crate::gtid::{GtidError, MariadbBinlogState, MariadbGtidPos, MysqlGtidSet};
use crate::snapshot::sample::{Channel, Flavor, ServerState, SourceState};
use crate::units::clock_time;
use std::time::SystemTime;

/// The source comparison: `source`, `missing_transactions`, `errant_transactions`,
/// `same_version`, `server_id`.
pub fn source_checks(state: &ServerState, input: &Input<'_>) -> Vec<Check> {
    let live = input
        .snapshot
        .sample
        .as_ref()
        .and_then(|s| s.source.as_ref());
    let remembered = input.snapshot.memory.last_source.as_ref();
    let mut out = Vec::new();
    // The evidence, and when it was true (None: it is live).
    let evidence: Option<(&SourceState, Option<SystemTime>)> = match live {
        Some(src) => match &src.outcome {
            Ok(s) => {
                out.push(Check::fact(
                    "source",
                    true,
                    format!(
                        "{} reachable: {} {} server_id {}",
                        src.addr, s.flavor, s.version, s.server_id
                    ),
                ));
                Some((s, None))
            }
            Err(e) => match remembered {
                Some(seen) => {
                    out.push(Check::leveled(
                        "source",
                        Level::Warn,
                        format!(
                            "{} unreachable ({e}); comparing with what it had at {}",
                            src.addr,
                            clock_time(seen.at_wall)
                        ),
                    ));
                    Some((&seen.state, Some(seen.at_wall)))
                }
                None => {
                    out.push(Check::leveled(
                        "source",
                        Level::Unknown,
                        format!("{} unreachable ({e}) and never read: no evidence", src.addr),
                    ));
                    None
                }
            },
        },
        None => {
            out.push(Check::leveled(
                "source",
                Level::Unknown,
                "no source to compare with (not a replica, or no sample)".to_string(),
            ));
            None
        }
    };
    let Some((src, as_of)) = evidence else {
        for name in ["missing_transactions", "errant_transactions"] {
            out.push(Check::leveled(
                name,
                Level::Unknown,
                "no source evidence".to_string(),
            ));
        }
        return out;
    };
    match compare(state, src, as_of.is_some()) {
        Ok(_) if src.binlog_position.is_some() => {
            // No GTIDs: positions tell whether anything is missing, not what.
            out.push(
                match state
                    .channels
                    .first()
                    .and_then(|ch| position_behind(ch, src))
                {
                    Some(behind) => {
                        Check::fact("missing_transactions", false, behind).with_fix(MISSING_FIX)
                    }
                    None => gtid_check(
                        "missing_transactions",
                        (0, String::new()),
                        as_of,
                        MISSING_FIX,
                    ),
                },
            );
            // Without GTIDs nothing tells a local write from a replicated one.
            out.push(Check::leveled(
                "errant_transactions",
                Level::Unknown,
                "cannot be seen without GTIDs (gtid_mode OFF)".to_string(),
            ));
        }
        Ok((missing, errant)) => {
            out.push(gtid_check(
                "missing_transactions",
                missing,
                as_of,
                MISSING_FIX,
            ));
            out.push(gtid_check("errant_transactions", errant, as_of, ERRANT_FIX));
        }
        Err(e) => {
            for name in ["missing_transactions", "errant_transactions"] {
                out.push(Check::leveled(
                    name,
                    Level::Unknown,
                    format!("cannot compare GTIDs: {e}"),
                ));
            }
        }
    }
    let series = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
    let (mine, theirs) = (series(&state.version), series(&src.version));
    out.push(if state.flavor == src.flavor && mine == theirs {
        Check::fact(
            "same_version",
            true,
            format!("{} {mine} on both", state.flavor),
        )
    } else {
        Check::leveled(
            "same_version",
            Level::Warn,
            format!(
                "replica {} {mine}, source {} {theirs}: other replicas must be able to follow it",
                state.flavor, src.flavor
            ),
        )
    });
    out.push(if state.server_id != src.server_id {
        Check::fact(
            "server_id",
            true,
            format!(
                "{} differs from the source's {}",
                state.server_id, src.server_id
            ),
        )
    } else {
        Check::fact(
            "server_id",
            false,
            format!("{} is also the source's server_id", state.server_id),
        )
        .with_fix("give every server a unique server_id before promoting")
    });
    out
}

/// The newest reading of the replica's source: this poll's when it succeeded, else the last one
/// the poller remembers. Returns where it was read, what it said, and when it was taken (`None`:
/// this very poll, i.e. live).
pub fn source_evidence<'a>(
    input: &Input<'a>,
) -> Option<(&'a str, &'a SourceState, Option<SystemTime>)> {
    let snapshot = input.snapshot;
    let live = snapshot.sample.as_ref().and_then(|s| s.source.as_ref());
    if let Some(src) = live {
        if let Ok(state) = &src.outcome {
            return Some((&src.addr, state, None));
        }
    }
    let seen = snapshot.memory.last_source.as_ref()?;
    Some((&seen.addr, &seen.state, Some(seen.at_wall)))
}

/// Newer evidence beats memory: when the newest reading of the source (live, or the last one
/// remembered) holds transactions this server still lacks, says which. A caught-up memory from
/// before that reading is then void: the server was behind as of that reading, and is until it
/// has them (its executed set is compared now, so catching up later clears it).
pub fn missing_from_source(state: &ServerState, ch: &Channel, input: &Input<'_>) -> Option<String> {
    let (addr, src, as_of) = source_evidence(input)?;
    if let Some(behind) = position_behind(ch, src) {
        return Some(match as_of {
            None => format!("the source {addr} is reachable and its {behind}"),
            Some(t) => format!(
                "but the source's {behind}, at its last reading ({})",
                clock_time(t)
            ),
        });
    }
    match (compare(state, src, as_of.is_some()), as_of) {
        (Ok(((0, _), _)), _) => None,
        (Ok(((n, set), _)), None) => Some(format!(
            "the source {addr} is reachable and has {n} transactions this server lacks: {set}"
        )),
        (Ok(((_, set), _)), Some(t)) => Some(format!(
            "but the source had {set} that this server lacks at its last reading ({})",
            clock_time(t)
        )),
        (Err(e), None) => Some(format!(
            "cannot compare with the reachable source {addr}: {e}"
        )),
        (Err(e), Some(t)) => Some(format!(
            "cannot compare with the source's last reading ({}): {e}",
            clock_time(t)
        )),
    }
}

/// Without GTIDs (a MySQL source with `gtid_mode=OFF` reports its binary log position
/// instead): the source's position past what channel `ch`'s IO thread has read, as a phrase.
/// A binary log of another name than the one read is past it too (fail closed).
fn position_behind(ch: &Channel, src: &SourceState) -> Option<String> {
    let (file, pos) = src.binlog_position.as_ref()?;
    let (base, index) = split_binlog_name(file);
    let (read_base, read_index) = split_binlog_name(&ch.read_log_file);
    let behind = base != read_base || (index, *pos) > (read_index, ch.read_log_pos);
    behind.then(|| {
        format!(
            "binary log at {file}:{pos} is past what this server has read ({}:{})",
            ch.read_log_file, ch.read_log_pos
        )
    })
}

/// `mysql-bin.000012` → (`mysql-bin`, 12); a name without a numeric suffix has index 0.
fn split_binlog_name(name: &str) -> (&str, u64) {
    match name.rsplit_once('.') {
        Some((base, n)) => match n.parse() {
            Ok(n) => (base, n),
            Err(_) => (name, 0),
        },
        None => (name, 0),
    }
}

/// The backup gate's `errant_transactions` line: a backup holding transactions its primary
/// never had is not a safe takeover. Judged on a read-only backup against a source read by this
/// very poll only: once the source is gone the backup takes writes of its own, and a writable
/// backup is a master-master peer whose own writes flow back to its source; neither must shut
/// it out.
pub fn errant_check(state: &ServerState, input: &Input<'_>, allow: bool) -> Check {
    const NAME: &str = "errant_transactions";
    if state.writable() {
        return Check::leveled(
            NAME,
            Level::NotJudged,
            "not judged: writable (a master-master peer: its own writes flow back to its source)"
                .to_string(),
        );
    }
    let Some((addr, src, None)) = source_evidence(input) else {
        let failed = input
            .snapshot
            .sample
            .as_ref()
            .and_then(|s| s.source.as_ref())
            .and_then(|s| s.outcome.as_ref().err());
        return match failed {
            // The guard cannot read a living source (its own credentials, privileges or TLS
            // settings): a configuration to fix, not a lost source. Fail closed.
            Some(e) if unreadable_by_config(e) => Check::leveled(
                NAME,
                Level::Unknown,
                format!("the guard cannot read the source: {e}"),
            ),
            // The source is gone: what its last reading showed still stands (writes this
            // server takes after that reading are not in it).
            _ => match (
                &input.snapshot.memory.errant_at_last_source,
                &input.snapshot.memory.last_source,
            ) {
                (Some(errant), Some(seen)) => {
                    let detail = format!(
                        "{errant}, at the source's last reading ({})",
                        clock_time(seen.at_wall)
                    );
                    if allow {
                        Check::leveled(
                            NAME,
                            Level::Warn,
                            format!("{detail}; ADMITTED BY allow_errant"),
                        )
                    } else {
                        Check::fact(NAME, false, detail).with_fix(ERRANT_FIX)
                    }
                }
                _ => Check::leveled(
                    NAME,
                    Level::NotJudged,
                    "not judged: the source is not readable by the guard".to_string(),
                ),
            },
        };
    };
    if src.binlog_position.is_some() {
        return Check::leveled(
            NAME,
            Level::NotJudged,
            "not judged: without GTIDs writes made on this server cannot be told apart".to_string(),
        );
    }
    match compare(state, src, false) {
        Ok((_, (0, _))) => Check::fact(NAME, true, format!("none (source {addr})")),
        Ok((_, (n, set))) if allow => Check::leveled(
            NAME,
            Level::Warn,
            format!("{n}: {set} (source {addr}); ADMITTED BY allow_errant"),
        ),
        Ok((_, (n, set))) => Check::fact(
            NAME,
            false,
            format!("{n}: {set}, never on the source {addr}"),
        )
        .with_fix(ERRANT_FIX),
        Err(e) => Check::leveled(
            NAME,
            Level::Unknown,
            format!("cannot compare GTIDs with the source {addr}: {e}"),
        ),
    }
}

/// The errant transactions `state` holds against a source reading taken just after it, as
/// `count: set`; `None` when there are none (or the reading cannot tell: no GTIDs, or sets that
/// do not parse, which the live check reports itself).
pub fn errant_against(state: &ServerState, src: &SourceState) -> Option<String> {
    if src.binlog_position.is_some() {
        return None;
    }
    match compare(state, src, false) {
        Ok((_, (n, set))) if n > 0 => Some(format!("{n}: {set}")),
        _ => None,
    }
}

/// A source read that failed because of how the guard reaches it, not because it is gone.
fn unreadable_by_config(e: &crate::snapshot::sample::ProbeError) -> bool {
    use crate::snapshot::sample::ProbeErrorKind::*;
    matches!(
        e.kind,
        AccessDenied | NotPermitted | Tls | InsecureTransport | NoTlsOffered | Protocol
    )
}

const MISSING_FIX: &str = "let it replicate them before promoting (start replication, wait), or \
                           promote a replica that has them";
const ERRANT_FIX: &str = "written on the replica directly: inspect them, then remove them \
                          (empty transactions on the source) or re-clone the replica";

/// The prefix of a Galera node's position: `wsrep:<cluster state UUID>:<last committed seqno>`.
/// The seqno is the cluster's own, the same on every node (GTIDs need not be: without
/// `wsrep_gtid_mode` each node numbers its local commits itself).
const WSREP: &str = "wsrep:";

/// The executed position of `state` as a writer records it when it hands over: on a Galera
/// node its cluster seqno, else MySQL `gtid_executed`, MariaDB `gtid_binlog_pos` (what it
/// wrote to its binary log). `None` without GTIDs.
pub fn writer_position(state: &ServerState) -> Option<String> {
    if let Some(g) = &state.galera {
        return Some(format!(
            "{WSREP}{}:{}",
            g.cluster_state_uuid, g.last_committed
        ));
    }
    match state.flavor {
        Flavor::MySql => state.gtid.executed.clone(),
        Flavor::MariaDb => state.gtid.binlog_pos.clone(),
    }
}

/// Whether `state` has applied everything in `position` (a [`writer_position`] of another
/// server). A position that does not parse is not applied (fail closed).
pub fn has_applied(state: &ServerState, position: &str) -> bool {
    if let Some(theirs) = position.strip_prefix(WSREP) {
        // Another node of the same cluster history, at or past its seqno.
        let Some((uuid, seqno)) = theirs.rsplit_once(':') else {
            return false;
        };
        return match (&state.galera, seqno.parse::<i64>()) {
            (Some(g), Ok(seqno)) => g.cluster_state_uuid == uuid && g.last_committed >= seqno,
            _ => false,
        };
    }
    match state.flavor {
        Flavor::MySql => {
            let (Ok(mine), Ok(theirs)) = (
                MysqlGtidSet::parse(state.gtid.executed.as_deref().unwrap_or("")),
                MysqlGtidSet::parse(position),
            ) else {
                return false;
            };
            mine.contains(&theirs)
        }
        Flavor::MariaDb => {
            let (Ok(mine), Ok(theirs)) = (
                MariadbGtidPos::parse(state.gtid.current_pos.as_deref().unwrap_or("")),
                MariadbGtidPos::parse(position),
            ) else {
                return false;
            };
            mine.contains(&theirs)
        }
    }
}

/// A GTID difference: how many transactions, and which (as the server would print them).
type Diff = (u64, String);

/// (missing, errant) as (count, set text): missing = source − replica, errant = replica −
/// source. With remembered evidence, errant transactions are only those that originate on
/// the replica itself: later ones from the source are expected.
fn compare(
    state: &ServerState,
    src: &SourceState,
    remembered: bool,
) -> Result<(Diff, Diff), GtidError> {
    match state.flavor {
        Flavor::MySql => {
            let mine = MysqlGtidSet::parse(state.gtid.executed.as_deref().unwrap_or(""))?;
            let theirs = MysqlGtidSet::parse(&src.gtid_executed)?;
            let missing = theirs.subtract(&mine);
            let mut errant = mine.subtract(&theirs);
            if remembered {
                if let Some(uuid) = &src.server_uuid {
                    let from_source =
                        MysqlGtidSet::parse(&format!("{uuid}:1-{}", crate::gtid::MAX_GNO))?;
                    errant = errant.subtract(&from_source);
                }
            }
            Ok((
                (missing.count(), missing.to_string()),
                (errant.count(), errant.to_string()),
            ))
        }
        Flavor::MariaDb => {
            let current = MariadbGtidPos::parse(state.gtid.current_pos.as_deref().unwrap_or(""))?;
            let theirs = MariadbGtidPos::parse(&src.gtid_executed)?;
            let missing = current.missing(&theirs);
            let missing_text = missing
                .iter()
                .map(|g| match current.get(g.domain) {
                    // Seqs are dense within a domain: the missing ones are the next ones.
                    Some(mine) if mine.seq + 1 < g.seq => {
                        format!("{}-{}-{}..{g}", g.domain, g.server_id, mine.seq + 1)
                    }
                    None if g.seq > 1 => format!("{}-{}-1..{g}", g.domain, g.server_id),
                    _ => g.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",");
            let errant = match (&state.gtid.binlog_state, &src.gtid_binlog_state) {
                (Some(mine), Some(theirs)) => errant_by_origin(state, mine, theirs, remembered)?,
                _ => errant_by_domain(state, &theirs, remembered)?,
            };
            Ok(((current.behind_by(&theirs), missing_text), errant))
        }
    }
}

/// MariaDB errant transactions per (domain, server_id) from both binary log states: exact even
/// when later source writes overtook the errant seq. With remembered evidence only the
/// replica's own writes count (later ones from the source are expected).
fn errant_by_origin(
    state: &ServerState,
    mine: &str,
    theirs: &str,
    remembered: bool,
) -> Result<Diff, GtidError> {
    let mine = MariadbBinlogState::parse(mine)?;
    let theirs = MariadbBinlogState::parse(theirs)?;
    let ahead: Vec<String> = mine
        .ahead_of(&theirs)
        .into_iter()
        .filter(|g| !remembered || g.server_id == state.server_id)
        .map(|g| g.to_string())
        .collect();
    Ok((ahead.len() as u64, ahead.join(",")))
}

/// MariaDB errant transactions from per-domain positions, for a source whose binary log state
/// is unknown (a state file from an older replguard): blind to errant writes that later source
/// writes overtook.
fn errant_by_domain(
    state: &ServerState,
    theirs: &MariadbGtidPos,
    remembered: bool,
) -> Result<Diff, GtidError> {
    let binlog = MariadbGtidPos::parse(state.gtid.binlog_pos.as_deref().unwrap_or(""))?;
    // Domains where the replica's own binary log is ahead of the source's.
    let ahead = theirs.missing(&binlog);
    let errant: Vec<_> = ahead
        .iter()
        .filter(|g| !remembered || g.server_id == state.server_id)
        .collect();
    let errant_count: u64 = errant
        .iter()
        .map(|g| {
            g.seq
                .saturating_sub(theirs.get(g.domain).map(|t| t.seq).unwrap_or(0))
        })
        .sum();
    let errant_text = errant
        .iter()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let diverged = binlog.diverged(theirs);
    let errant_text = if diverged.is_empty() {
        errant_text
    } else {
        format!("{errant_text} diverged in domains {diverged:?}")
    };
    Ok((errant_count + diverged.len() as u64, errant_text))
}

fn gtid_check(
    name: &str,
    (count, set): (u64, String),
    as_of: Option<SystemTime>,
    fix: &str,
) -> Check {
    match (count, as_of) {
        (0, None) => Check::fact(name, true, "none".to_string()),
        (0, Some(t)) => Check::leveled(
            name,
            Level::Warn,
            format!(
                "none as of {} (source unreachable since: later source writes cannot be checked)",
                clock_time(t)
            ),
        ),
        (n, _) => Check::fact(name, false, format!("{n}: {set}")).with_fix(fix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::sample::fixtures::replica;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "4a2bb8e0-1111-11ee-8000-000000000002";

    fn mysql(executed: &str) -> ServerState {
        let mut s = replica();
        s.flavor = Flavor::MySql;
        s.gtid.executed = Some(executed.to_string());
        s
    }

    fn src(flavor: Flavor, executed: &str) -> SourceState {
        SourceState {
            flavor,
            server_id: 1,
            version: "8.0.36".into(),
            gtid_executed: executed.into(),
            server_uuid: Some(A.into()),
            gtid_binlog_state: None,
            binlog_position: None,
            read_only: None,
            gtid_slave_pos: None,
            semi_sync: None,
        }
    }

    #[test]
    fn missing_and_errant_by_flavour() {
        #[rustfmt::skip]
        let cases: Vec<(ServerState, SourceState, bool, Diff, Diff)> = vec![
            // MySQL: exact set differences.
            (mysql(&format!("{A}:1-10")), src(Flavor::MySql, &format!("{A}:1-10")), false, (0, String::new()), (0, String::new())),
            (mysql(&format!("{A}:1-8")), src(Flavor::MySql, &format!("{A}:1-10")), false, (2, format!("{A}:9-10")), (0, String::new())),
            (mysql(&format!("{A}:1-10,{B}:1")), src(Flavor::MySql, &format!("{A}:1-10")), false, (0, String::new()), (1, format!("{B}:1"))),
            // Remembered evidence: later transactions from the source are not errant.
            (mysql(&format!("{A}:1-12")), src(Flavor::MySql, &format!("{A}:1-10")), true, (0, String::new()), (0, String::new())),
            (mysql(&format!("{A}:1-12,{B}:3")), src(Flavor::MySql, &format!("{A}:1-10")), true, (0, String::new()), (1, format!("{B}:3"))),
            // MariaDB: per-domain positions; the replica's own server_id marks its writes.
            (with_pos(replica(), "0-1-10", "0-1-10"), src(Flavor::MariaDb, "0-1-10"), false, (0, String::new()), (0, String::new())),
            (with_pos(replica(), "0-1-7", "0-1-7"), src(Flavor::MariaDb, "0-1-10"), false, (3, "0-1-8..0-1-10".to_string()), (0, String::new())),
            (with_pos(replica(), "0-1-9", "0-1-9"), src(Flavor::MariaDb, "0-1-10"), false, (1, "0-1-10".to_string()), (0, String::new())),
            (with_pos(replica(), "0-2-11", "0-2-11"), src(Flavor::MariaDb, "0-1-10"), false, (0, String::new()), (1, "0-2-11".to_string())),
            (with_pos(replica(), "0-1-12", "0-1-12"), src(Flavor::MariaDb, "0-1-10"), true, (0, String::new()), (0, String::new())),
        ];
        for (i, (state, source, remembered, missing, errant)) in cases.into_iter().enumerate() {
            let (m, e) = compare(&state, &source, remembered).unwrap();
            assert_eq!(m, missing, "case {i} missing");
            assert_eq!(e, errant, "case {i} errant");
        }
    }

    #[test]
    fn without_gtids_the_binlog_position_decides() {
        let mut source = src(Flavor::MySql, "");
        let state = mysql(""); // read up to mysql-bin.000001:100 (fixture)
        let at = |file: &str, pos: u64, source: &mut SourceState| {
            source.binlog_position = Some((file.to_string(), pos));
            position_behind(&state.channels[0], source).is_some()
        };
        assert!(!at("mysql-bin.000001", 100, &mut source), "same position");
        assert!(!at("mysql-bin.000001", 90, &mut source), "read past it");
        assert!(
            at("mysql-bin.000001", 101, &mut source),
            "further in the same file"
        );
        assert!(
            at("mysql-bin.000002", 4, &mut source),
            "a later file, whatever the offset"
        );
        assert!(
            at("other-bin.000001", 4, &mut source),
            "another log: fail closed"
        );
        source.binlog_position = None;
        assert!(
            position_behind(&state.channels[0], &source).is_none(),
            "GTIDs: not by position"
        );
    }

    fn with_pos(mut s: ServerState, current: &str, binlog: &str) -> ServerState {
        s.gtid.current_pos = Some(current.into());
        s.gtid.binlog_pos = Some(binlog.into());
        s
    }

    #[test]
    fn remembered_evidence_warns_but_never_says_ok() {
        let t = SystemTime::UNIX_EPOCH;
        let c = gtid_check("missing_transactions", (0, String::new()), Some(t), "fix");
        assert_eq!((c.level, c.ok), (Level::Warn, true));
        assert!(
            c.detail.starts_with("none as of 00:00:00 UTC"),
            "{}",
            c.detail
        );
        let c = gtid_check("missing_transactions", (0, String::new()), None, "fix");
        assert_eq!(c.level, Level::Ok);
        let c = gtid_check("errant_transactions", (2, "x".into()), Some(t), "fix it");
        assert_eq!((c.level, c.fix.as_deref()), (Level::Fail, Some("fix it")));
    }
}
