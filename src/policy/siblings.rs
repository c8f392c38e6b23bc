//! `most_advanced`: on a guard that watches several replicas of the same source, whether this
//! one has received every transaction any sibling has received (a GTID superset of their
//! received ∪ executed), as MOCO, MaxScale and mariadb-operator pick the replica to promote.
//! A replica caught up with a dead source can still lack what a sibling received before the
//! source died; promoting it would lose those transactions.
//!
//! Pure: the siblings' states come in (the reader that has them, the hub, finds them).

pub use super::verdict::Sibling;
use super::verdict::{Check, Level};
use crate::gtid::{MariadbGtidPos, MysqlGtidSet};
use crate::snapshot::sample::{Flavor, ServerState};

/// Another instance a reader has, to find the siblings among: its latest state when its
/// latest poll succeeded, why that state cannot be compared even so (a stale sample), and
/// whether it is configured with the same `source` as the judged instance.
#[derive(Debug, Clone, Copy)]
pub struct Other<'a> {
    pub name: &'a str,
    pub state: Option<&'a ServerState>,
    pub unusable: Option<&'a str>,
    pub same_configured_source: bool,
}

/// The siblings of `me` among `others`: those whose replica status names a source `me`'s
/// does (host and port); one without a state counts when configured with the same `source`
/// (it may have received more, so it makes `most_advanced` unknown).
pub fn select<'a>(me: &ServerState, others: &[Other<'a>]) -> Vec<Sibling<'a>> {
    let sources: Vec<String> = me.channels.iter().map(|c| c.source_addr()).collect();
    others
        .iter()
        .filter_map(|o| match o.state {
            Some(t)
                if t.channels
                    .iter()
                    .any(|c| sources.contains(&c.source_addr())) =>
            {
                Some(Sibling {
                    name: o.name,
                    state: o.unusable.map_or(Ok(t), Err),
                })
            }
            Some(_) => None,
            None if o.same_configured_source => Some(Sibling {
                name: o.name,
                state: Err(o.unusable.unwrap_or("unreachable")),
            }),
            None => None,
        })
        .collect()
}

/// What a server has received: everything its IO threads fetched and everything it executed.
#[derive(Debug, Clone, PartialEq)]
enum Received {
    Mysql(MysqlGtidSet),
    Mariadb(MariadbGtidPos),
}

/// Received ∪ executed of `state`, or why it cannot be told.
fn received(state: &ServerState) -> Result<Received, String> {
    match state.flavor {
        Flavor::MySql => {
            // Without GTIDs the sets are empty whatever was received: nothing to compare.
            if state.gtid.mode.as_deref() != Some("ON") {
                return Err(format!(
                    "gtid_mode {}",
                    state.gtid.mode.as_deref().unwrap_or("unknown")
                ));
            }
            let executed = state
                .gtid
                .executed
                .as_deref()
                .ok_or("no gtid_executed (GTID off?)")?;
            let mut set =
                MysqlGtidSet::parse(executed).map_err(|e| format!("gtid_executed: {e}"))?;
            for ch in &state.channels {
                if let Some(r) = ch.retrieved_gtid_set.as_deref() {
                    let r = MysqlGtidSet::parse(r)
                        .map_err(|e| format!("Retrieved_Gtid_Set of {}: {e}", ch.label("")))?;
                    set = set.union(&r);
                }
            }
            Ok(Received::Mysql(set))
        }
        Flavor::MariaDb => {
            // A channel not using GTIDs has no Gtid_IO_Pos: what it received but has not
            // applied would go unseen, and "nothing lacks" would be a guess.
            if let Some(ch) = state.channels.iter().find(|c| c.gtid_io_pos.is_none()) {
                return Err(format!(
                    "{} does not use GTIDs (Using_Gtid {})",
                    if ch.name.is_empty() {
                        "its replication channel".to_string()
                    } else {
                        format!("channel {}", ch.name)
                    },
                    ch.using_gtid.as_deref().unwrap_or("unknown")
                ));
            }
            let mut pos = MariadbGtidPos::new();
            let mut any = false;
            let positions = [
                ("gtid_binlog_pos", state.gtid.binlog_pos.as_deref()),
                ("gtid_slave_pos", state.gtid.slave_pos.as_deref()),
            ];
            let io = state
                .channels
                .iter()
                .map(|ch| ("Gtid_IO_Pos", ch.gtid_io_pos.as_deref()));
            for (what, text) in positions.into_iter().chain(io) {
                let Some(text) = text else { continue };
                let p = MariadbGtidPos::parse(text).map_err(|e| format!("{what}: {e}"))?;
                pos = pos.union(&p);
                any = true;
            }
            if !any {
                return Err("no GTID position".into());
            }
            Ok(Received::Mariadb(pos))
        }
    }
}

/// What `theirs` has that `mine` lacks, rendered; `None` when nothing.
fn lacking(mine: &Received, theirs: &Received) -> Result<Option<String>, String> {
    match (mine, theirs) {
        (Received::Mysql(m), Received::Mysql(t)) => {
            let d = t.subtract(m);
            Ok((!d.is_empty()).then(|| d.to_string()))
        }
        (Received::Mariadb(m), Received::Mariadb(t)) => {
            let d = m.missing(t);
            Ok((!d.is_empty()).then(|| {
                let has: Vec<String> = d
                    .iter()
                    .map(|g| match m.get(g.domain) {
                        Some(ours) => format!("{g} (this one: {ours})"),
                        None => format!("{g} (this one: none in domain {})", g.domain),
                    })
                    .collect();
                has.join(", ")
            }))
        }
        _ => Err("another flavour".into()),
    }
}

/// The `most_advanced` line.
pub(super) fn most_advanced(state: &ServerState, siblings: &[Sibling<'_>]) -> Check {
    const NAME: &str = "most_advanced";
    if state.channels.is_empty() {
        return Check::leveled(NAME, Level::NotJudged, "no replica status".into());
    }
    if siblings.is_empty() {
        return Check::leveled(
            NAME,
            Level::NotJudged,
            "this guard watches no other replica of its source".into(),
        );
    }
    let mine = match received(state) {
        Ok(m) => m,
        Err(why) => {
            return Check::leveled(NAME, Level::Unknown, format!("its own GTIDs: {why}"))
                .with_fix("enable GTIDs: without them replicas cannot be compared")
        }
    };
    let mut ahead = Vec::new();
    let mut unknown = Vec::new();
    for s in siblings {
        let theirs = match s.state {
            Ok(st) => received(st),
            Err(why) => Err(why.to_string()),
        };
        match theirs.and_then(|t| lacking(&mine, &t)) {
            Ok(Some(has)) => ahead.push(format!("{} is ahead: it has {has}", s.name)),
            Ok(None) => {}
            Err(why) => unknown.push(format!("{} ({why})", s.name)),
        }
    }
    let names: Vec<&str> = siblings.iter().map(|s| s.name).collect();
    if !ahead.is_empty() {
        return Check::fact(
            NAME,
            false,
            format!("{}; this one lacks it", ahead.join("; ")),
        )
        .with_fix("promote the sibling that is ahead, or wait until this one has received it");
    }
    if !unknown.is_empty() {
        return Check::leveled(
            NAME,
            Level::Unknown,
            format!("cannot compare with {}", unknown.join(", ")),
        )
        .with_fix("a sibling that cannot be read may have received more: check it by hand");
    }
    Check::fact(
        NAME,
        true,
        format!(
            "has received everything its {} sibling{} {} received ({})",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            if names.len() == 1 { "has" } else { "have" },
            names.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::sample::fixtures;
    use crate::snapshot::sample::ThreadState;

    fn replica(flavor: Flavor, executed: &str, received: &str) -> ServerState {
        let mut s = ServerState {
            flavor,
            ..fixtures::replica()
        };
        let mut ch = fixtures::channel();
        ch.io_thread = ThreadState::Connecting;
        match flavor {
            Flavor::MySql => {
                s.gtid.mode = Some("ON".into());
                s.gtid.executed = Some(executed.into());
                ch.retrieved_gtid_set = Some(received.into());
            }
            Flavor::MariaDb => {
                s.gtid.slave_pos = Some(executed.into());
                ch.gtid_io_pos = Some(received.into());
            }
        }
        s.channels = vec![ch];
        s
    }

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn mariadb_a_sibling_that_received_more_is_named_with_what_it_has() {
        let me = replica(Flavor::MariaDb, "0-1-120", "0-1-120");
        let b = replica(Flavor::MariaDb, "0-1-100", "0-1-150");
        let c = replica(Flavor::MariaDb, "0-1-120", "0-1-120");
        let sib = [
            Sibling {
                name: "b",
                state: Ok(&b),
            },
            Sibling {
                name: "c",
                state: Ok(&c),
            },
        ];
        let check = most_advanced(&me, &sib);
        assert_eq!(
            check.line(),
            "FAIL most_advanced b is ahead: it has 0-1-150 (this one: 0-1-120); this one lacks it"
        );
        // b itself has received everything: its IO position is ahead of the others' execution.
        let sib = [
            Sibling {
                name: "a",
                state: Ok(&me),
            },
            Sibling {
                name: "c",
                state: Ok(&c),
            },
        ];
        assert_eq!(
            most_advanced(&b, &sib).line(),
            "ok most_advanced has received everything its 2 siblings have received (a, c)"
        );
    }

    #[test]
    fn mysql_received_and_executed_count_together() {
        let me = replica(Flavor::MySql, &format!("{U}:1-100"), &format!("{U}:1-120"));
        let b = replica(Flavor::MySql, &format!("{U}:1-110"), &format!("{U}:1-125"));
        let check = most_advanced(
            &me,
            &[Sibling {
                name: "b",
                state: Ok(&b),
            }],
        );
        assert!(!check.ok);
        assert_eq!(
            check.detail,
            format!("b is ahead: it has {U}:121-125; this one lacks it")
        );
        let check = most_advanced(
            &b,
            &[Sibling {
                name: "a",
                state: Ok(&me),
            }],
        );
        assert!(check.ok, "{}", check.line());
    }

    #[test]
    fn an_unreadable_sibling_is_unknown_and_no_sibling_is_not_judged() {
        let me = replica(Flavor::MariaDb, "0-1-120", "0-1-120");
        let check = most_advanced(
            &me,
            &[Sibling {
                name: "b",
                state: Err("unreachable"),
            }],
        );
        assert_eq!(check.level, Level::Unknown);
        assert!(!check.ok);
        assert_eq!(check.detail, "cannot compare with b (unreachable)");
        let check = most_advanced(&me, &[]);
        assert_eq!(check.level, Level::NotJudged);
        // A sibling ahead is the verdict even when another cannot be read.
        let b = replica(Flavor::MariaDb, "0-1-121", "0-1-121");
        let check = most_advanced(
            &me,
            &[
                Sibling {
                    name: "b",
                    state: Ok(&b),
                },
                Sibling {
                    name: "c",
                    state: Err("stale"),
                },
            ],
        );
        assert_eq!(check.level, Level::Fail);
        // Without GTIDs on a channel, what it received is not known: unknown, never ok.
        let mut no_gtid = replica(Flavor::MariaDb, "0-1-120", "0-1-120");
        no_gtid.channels[0].gtid_io_pos = None;
        no_gtid.channels[0].using_gtid = Some("No".into());
        let check = most_advanced(
            &no_gtid,
            &[Sibling {
                name: "b",
                state: Ok(&b),
            }],
        );
        assert_eq!(check.level, Level::Unknown, "{}", check.line());
        assert!(check.detail.contains("Using_Gtid No"), "{}", check.line());
        let check = most_advanced(
            &me,
            &[Sibling {
                name: "n",
                state: Ok(&no_gtid),
            }],
        );
        assert_eq!(check.level, Level::Unknown, "{}", check.line());
        let mut off = replica(Flavor::MySql, "", "");
        off.gtid.mode = Some("OFF".into());
        let check = most_advanced(
            &off,
            &[Sibling {
                name: "b",
                state: Ok(&off),
            }],
        );
        assert_eq!(check.detail, "its own GTIDs: gtid_mode OFF");
        // A domain this one never saw.
        let d = replica(Flavor::MariaDb, "0-1-120,1-2-5", "0-1-120");
        let check = most_advanced(
            &me,
            &[Sibling {
                name: "d",
                state: Ok(&d),
            }],
        );
        assert_eq!(
            check.detail,
            "d is ahead: it has 1-2-5 (this one: none in domain 1); this one lacks it"
        );
    }
}
