//! Running a policy's rules over one snapshot: the per-rule dispatch, and the root cause a
//! verdict on an unreadable server always carries.

use super::channel::channel_check;
use super::evidence;
use super::file::{rule_name, Rule};
use super::galera::galera_checks;
use super::group::group_checks;
use super::handover::{handover_check, yield_check};
use super::lag::{heartbeat_check, lag_stable_check, stall_check};
use super::lease::writer_lease_check;
use super::limits::Limits;
use super::promotion;
use super::semisync::{semi_sync_check, semi_sync_wait_check};
use super::siblings;
use super::source::{peer_check, source_check};
use super::verdict::{on_off, Check, Freshness, Input, Level};

pub(super) fn run_rules(rules: &[Rule], limits: &Limits, input: &Input<'_>) -> Vec<Check> {
    let mut out = Vec::new();
    for rule in rules {
        run_rule(*rule, limits, input, &mut out);
    }
    if limits.require_writable && !rules.contains(&Rule::Writable) {
        run_rule(Rule::Writable, limits, input, &mut out);
    }
    // One root cause, reported once: the checks that depend on it say "not judged". Fail
    // closed when the policy does not list the check that names the cause: it leads then.
    let dependents = out
        .iter()
        .any(|c| c.cause.as_deref() == Some(DEPENDS_ON_ROOT_CAUSE));
    if dependents && out.iter().all(|c| c.ok) {
        out.insert(0, root_cause(input));
    }
    for check in out.iter_mut().filter(|c| !c.ok && c.fix.is_none()) {
        check.fix = default_fix(&check.name).map(str::to_string);
    }
    out
}

/// What usually fixes a failing check, by check name (a channel suffix is ignored).
fn default_fix(name: &str) -> Option<&'static str> {
    let base = name.split('[').next().unwrap_or(name);
    Some(match base {
        "sample" => "replguard has no fresh sample: see /status and replguard's log",
        "reachable" => "make sure MySQL runs and the check user can log in (see the error)",
        "role" => "make sure MySQL runs and the check user can log in",
        "replica_status" => "this server is not a replica: CHANGE MASTER TO ... and START SLAVE",
        "io_thread" => "START SLAVE IO_THREAD; see Last_IO_Error and whether the source is up",
        "sql_thread" => "START SLAVE SQL_THREAD once Last_SQL_Error is resolved",
        "replication_errors" | "sql_error" => {
            "resolve the error SHOW REPLICA STATUS shows before trusting this server"
        }
        "applied" => "let the SQL thread apply the relay log (START SLAVE SQL_THREAD) and wait",
        "lag" => "wait until it catches up, or find what slows it (long transactions, load)",
        "source_lost" => "rely on a server that was caught up when the source was lost",
        "peer" => "let it reconnect to its peer and catch up before it takes traffic",
        "handover" => {
            "none needed: it takes the writes handover_delay after its peer stopped taking them \
             (make sure HAProxy marks the peer DOWN: on-marked-down shutdown-sessions)"
        }
        "read_only" | "super_read_only" | "innodb_read_only" => {
            "SET GLOBAL read_only = OFF (and super_read_only) on the intended writer only"
        }
        _ => return None,
    })
}

fn run_rule(rule: Rule, limits: &Limits, input: &Input<'_>, out: &mut Vec<Check>) {
    let name = rule_name(rule);
    if rule == Rule::WriterLease {
        out.extend(writer_lease_check(input));
        return;
    }
    if rule == Rule::Sample {
        out.push(match input.freshness {
            Freshness::Unsampled => {
                Check::fact(name, false, "none yet: no poll has finished".to_string())
            }
            Freshness::Fresh { age, max } => Check::bounded(name, true, age, max, "age "),
            Freshness::Stale { age, max } => {
                let c = Check::bounded(name, false, age, max, "age ");
                let detail = format!("stale: {}", c.detail);
                Check { detail, ..c }
            }
        });
        return;
    }
    let state = match input.state() {
        Some(state) => state,
        None => {
            out.push(match (&input.snapshot.sample, rule) {
                (Some(_), Rule::Reachable) => root_cause(input),
                (None, _) => not_judged(name, "no sample yet"),
                (Some(_), _) => not_judged(name, "server unreachable"),
            });
            return;
        }
    };
    match rule {
        Rule::Sample | Rule::WriterLease => {}
        Rule::Reachable => out.push(Check::fact(
            name,
            true,
            format!(
                "{} {} server_id {}",
                state.flavor, state.version, state.server_id
            ),
        )),
        Rule::Writable => {
            out.push(Check::want("read_only", on_off(state.read_only), "OFF"));
            out.push(match state.super_read_only {
                Some(flag) => Check::want("super_read_only", on_off(flag), "OFF"),
                None => Check::fact("super_read_only", true, format!("n/a ({})", state.flavor)),
            });
            out.push(Check::want(
                "innodb_read_only",
                on_off(state.innodb_read_only),
                "OFF",
            ));
        }
        Rule::ReplicaStatus => out.push(match state.channels.len() {
            0 => root_cause(input),
            1 => Check::fact(name, true, "1 channel".to_string()),
            n => Check::fact(name, true, format!("{n} channels")),
        }),
        Rule::NotDelayed => {
            if state.channels.is_empty() {
                out.push(not_judged(name, "no replica status"));
            }
            let allowed = limits.allow_delay;
            out.extend(promotion::not_delayed(state).into_iter().map(|c| {
                if allowed && !c.ok && c.level == Level::Fail {
                    Check::fact(
                        c.name,
                        true,
                        format!("{} (judged against it: allow_delay)", c.detail),
                    )
                } else {
                    c
                }
            }));
        }
        Rule::Stall => {
            for ch in &state.channels {
                out.push(stall_check(ch, limits, input));
            }
        }
        Rule::MostAdvanced => out.push(siblings::most_advanced(state, input.siblings)),
        Rule::Galera => out.extend(galera_checks(state, limits)),
        Rule::GrPrimary => out.extend(group_checks(state, limits, true)),
        Rule::GrSecondary => out.extend(group_checks(state, limits, false)),
        Rule::Handover => out.push(handover_check(state, limits, input)),
        Rule::Yield => out.push(yield_check(limits, input)),
        Rule::SemiSync => out.push(semi_sync_check(state, limits, input)),
        Rule::SemiSyncWait => out.push(semi_sync_wait_check(state, limits, input)),
        Rule::Binlog => out.push(promotion::binlog(state)),
        Rule::Gtid => out.extend(promotion::gtid_in_use(state)),
        Rule::ReadOnlyOn => out.push(promotion::read_only_on(state)),
        Rule::CompareSource if state.channels.is_empty() => {
            for name in ["source", "missing_transactions", "errant_transactions"] {
                out.push(not_judged(name, "no replica status"));
            }
        }
        Rule::CompareSource => out.extend(evidence::source_checks(state, input)),
        Rule::ErrantTransactions => {
            out.push(evidence::errant_check(state, input, limits.allow_errant))
        }
        Rule::Peer => {
            if state.channels.is_empty() {
                out.push(Check::fact(
                    name,
                    true,
                    "none (no replica status)".to_string(),
                ));
            }
            for ch in &state.channels {
                out.push(peer_check(ch, state, limits, input));
            }
        }
        Rule::IoThread
        | Rule::SqlThread
        | Rule::ReplicationErrors
        | Rule::Lag
        | Rule::SqlError
        | Rule::Applied
        | Rule::Source => {
            if state.channels.is_empty() {
                out.push(not_judged(name, "no replica status"));
            }
            match (&state.heartbeat, rule) {
                // With a heartbeat table, that is the lag the policy judges (one line).
                (Some(hb), Rule::Lag) if !state.channels.is_empty() => {
                    out.push(heartbeat_check(hb, state, limits))
                }
                _ => {
                    for ch in &state.channels {
                        out.push(match rule {
                            Rule::Source => source_check(ch, state, limits, input),
                            _ => channel_check(rule, ch, limits),
                        });
                    }
                }
            }
            if rule == Rule::Lag && !state.channels.is_empty() {
                out.push(lag_stable_check(limits, input));
            }
        }
    }
}

/// The `cause` of a check not judged because the server could not be read or is not a replica.
const DEPENDS_ON_ROOT_CAUSE: &str = "depends on the root cause";

/// A check not judged because `cause` (reported once, by its own check) makes it meaningless.
pub(super) fn not_judged(name: &str, cause: &str) -> Check {
    Check::leveled(name, Level::NotJudged, format!("not judged: {cause}"))
        .with_cause(DEPENDS_ON_ROOT_CAUSE)
}

/// The check that names why the server could not be judged: no sample yet, the poll's error,
/// or an empty replica status.
pub(super) fn root_cause(input: &Input<'_>) -> Check {
    match input.snapshot.sample.as_ref().map(|s| &s.outcome) {
        None => Check::fact(
            "sample",
            false,
            "none yet: no poll has finished".to_string(),
        ),
        Some(Err(err)) => {
            Check::fact("reachable", false, err.to_string()).with_cause(err.kind_key())
        }
        Some(Ok(_)) => Check::fact(
            "replica_status",
            false,
            "empty: not configured as a replica (no replica status row)".to_string(),
        ),
    }
}
