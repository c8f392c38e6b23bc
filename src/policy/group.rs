//! The Group Replication rules: `gr_primary` (the group's writer) and `gr_secondary` (a member
//! fit for reads). One line per condition, so the reason phrase names what failed.

use super::limits::Limits;
use super::verdict::{on_off, Check};
use crate::snapshot::sample::{GroupState, ServerState};

/// The lines of `gr_primary` (`primary`) or `gr_secondary`; one failing line on a server that
/// is not a group member.
pub(super) fn group_checks(state: &ServerState, limits: &Limits, primary: bool) -> Vec<Check> {
    let Some(g) = &state.group else {
        return vec![Check::fact(
            "group_replication",
            false,
            "not a member of a group (group_replication_group_name empty or the plugin absent)"
                .to_string(),
        )
        .with_fix("point the gr-* policies at Group Replication members only")];
    };
    let mut out = vec![member_state(g), majority(g)];
    let want = if primary { "PRIMARY" } else { "SECONDARY" };
    let role = if g.role.is_empty() {
        "none".to_string()
    } else {
        g.role.clone()
    };
    out.push(
        Check::want("gr_member_role", role, want).with_fix(if primary {
            "the group elected another primary: HAProxy follows it (every member is listed)"
        } else {
            "this member is the primary: it takes writes, not reads"
        }),
    );
    if primary {
        out.push(
            Check::want(
                "super_read_only",
                on_off(state.super_read_only.unwrap_or(state.read_only)),
                "OFF",
            )
            .with_fix("the group sets super_read_only on secondaries; a primary with it ON is in transition"),
        );
    } else {
        out.push(queue(
            "gr_applier_queue",
            g.applier_queue,
            limits.max_applier_queue,
        ));
        out.push(queue("gr_cert_queue", g.cert_queue, limits.max_cert_queue));
    }
    out
}

/// `gr_member_state`: ONLINE passes; RECOVERING is its own reason (catching up after joining);
/// ERROR, OFFLINE and UNREACHABLE name the state.
fn member_state(g: &GroupState) -> Check {
    match g.state.as_str() {
        "ONLINE" => Check::fact("gr_member_state", true, "ONLINE".to_string()),
        "RECOVERING" => Check::fact(
            "gr_member_state",
            false,
            "RECOVERING: catching up with the group after joining, want ONLINE".to_string(),
        )
        .with_fix("wait until the member has applied what the group committed meanwhile"),
        other => Check::fact("gr_member_state", false, format!("{other}, want ONLINE"))
            .with_fix("see the error log: START GROUP_REPLICATION once the cause is fixed"),
    }
}

/// `gr_majority`: the members this one sees ONLINE or RECOVERING are more than half the group.
/// A member cut off into a minority partition still reports itself ONLINE: this is what fails.
fn majority(g: &GroupState) -> Check {
    let (seen, total) = (g.reachable(), g.members.len());
    let others: Vec<String> = g
        .members
        .iter()
        .filter(|m| m.state != "ONLINE" && m.state != "RECOVERING")
        .map(|m| format!("{}:{} {}", m.host, m.port.unwrap_or(0), m.state))
        .collect();
    if g.has_majority() {
        Check::fact(
            "gr_majority",
            true,
            format!("{seen} of {total} members reachable"),
        )
    } else {
        Check::fact(
            "gr_majority",
            false,
            format!(
                "{seen} of {total} members reachable ({}): a minority partition, it cannot commit",
                others.join(", ")
            ),
        )
        .with_fix("restore the network between the members; the majority side carries on")
    }
}

/// A queue (transactions) against its bound; unknown fails.
fn queue(name: &str, value: Option<u64>, max: u64) -> Check {
    match value {
        Some(v) => Check::fact(
            name,
            v <= max,
            format!("{v} {} {max}", if v <= max { "<=" } else { ">" }),
        )
        .with_fix("the member is behind the group: wait, or find what slows its applier"),
        None => Check::fact(name, false, format!("unknown, want <= {max}")),
    }
}
