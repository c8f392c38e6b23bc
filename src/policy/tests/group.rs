//! The Group Replication rules.

use super::*;
use crate::snapshot::sample::fixtures::primary;
use crate::snapshot::sample::{GroupMember, GroupState};

fn member(id: &str, state: &str, role: &str) -> GroupMember {
    GroupMember {
        id: id.into(),
        host: format!("h{id}"),
        port: Some(3306),
        state: state.into(),
        role: role.into(),
        version: "8.0.36".into(),
    }
}

fn group(me: (&str, &str), others: [(&str, &str); 2], applier: u64) -> ServerState {
    let mut s = primary();
    s.flavor = crate::snapshot::sample::Flavor::MySql;
    s.super_read_only = Some(me.1 != "PRIMARY");
    s.read_only = me.1 != "PRIMARY";
    s.group = Some(GroupState {
        member_id: "a".into(),
        state: me.0.into(),
        role: me.1.into(),
        single_primary: true,
        members: vec![
            member("a", me.0, me.1),
            member("b", others[0].0, others[0].1),
            member("c", others[1].0, others[1].1),
        ],
        cert_queue: Some(0),
        applier_queue: Some(applier),
    });
    s
}

#[test]
fn group_rules_table() {
    let now = Instant::now() + Duration::from_secs(3600);
    let ok = ("ONLINE", "SECONDARY");
    #[rustfmt::skip]
    let cases: Vec<(&str, ServerState, &str)> = vec![
        ("gr-primary", group(("ONLINE", "PRIMARY"), [ok, ok], 0), ""),
        ("gr-secondary", group(ok, [("ONLINE", "PRIMARY"), ok], 3), ""),
        ("gr-secondary", group(ok, [("ONLINE", "PRIMARY"), ok], 11), "gr_applier_queue 11 > 10"),
        ("gr-primary", group(ok, [("ONLINE", "PRIMARY"), ok], 0), "gr_member_role SECONDARY, want PRIMARY"),
        // A minority: itself ONLINE, the others UNREACHABLE.
        ("gr-primary", group(("ONLINE", "PRIMARY"), [("UNREACHABLE", "SECONDARY"), ("UNREACHABLE", "SECONDARY")], 0),
            "gr_majority 1 of 3 members reachable (hb:3306 UNREACHABLE, hc:3306 UNREACHABLE): a minority partition, it cannot commit"),
        // One of three unreachable: still a majority.
        ("gr-primary", group(("ONLINE", "PRIMARY"), [("UNREACHABLE", "SECONDARY"), ok], 0), ""),
        ("gr-secondary", group(("RECOVERING", "SECONDARY"), [("ONLINE", "PRIMARY"), ok], 0),
            "gr_member_state RECOVERING: catching up with the group after joining, want ONLINE"),
        ("gr-secondary", group(("ERROR", ""), [("ONLINE", "PRIMARY"), ok], 0), "gr_member_state ERROR, want ONLINE"),
        ("gr-primary", group(("OFFLINE", ""), [("ONLINE", "PRIMARY"), ok], 0), "gr_member_state OFFLINE, want ONLINE"),
        ("gr-primary", primary(), "group_replication not a member of a group (group_replication_group_name empty or the plugin absent)"),
    ];
    for (i, (policy, state, reason)) in cases.into_iter().enumerate() {
        let v = eval(
            policy,
            &snap(Ok(state), now, Duration::from_millis(100)),
            now,
            None,
        );
        assert_eq!(v.healthy, reason.is_empty(), "case {i}: {v:#?}");
        if !reason.is_empty() {
            assert_eq!(
                crate::policy::render::reason(&v).as_deref(),
                Some(reason),
                "case {i}"
            );
        }
    }
    // A primary that still has super_read_only ON is in transition: not a writer yet.
    let mut s = group(("ONLINE", "PRIMARY"), [ok, ok], 0);
    s.super_read_only = Some(true);
    let v = eval(
        "gr-primary",
        &snap(Ok(s), now, Duration::from_millis(100)),
        now,
        None,
    );
    assert_eq!(
        crate::policy::render::reason(&v).as_deref(),
        Some("super_read_only ON, want OFF")
    );
}
