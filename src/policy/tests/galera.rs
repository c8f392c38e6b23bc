//! The `galera` rule: clustercheck's conditions and what it misses.

use super::*;
use crate::snapshot::sample::fixtures::primary;
use crate::snapshot::sample::GaleraState;

fn node(f: impl FnOnce(&mut GaleraState)) -> ServerState {
    let mut g = GaleraState {
        local_state: 4,
        local_state_comment: "Synced".into(),
        cluster_status: "Primary".into(),
        ready: true,
        connected: true,
        cluster_size: 3,
        recv_queue: 0,
        flow_control_paused: 0.0,
        cluster_state_uuid: "892a03f2-ee7d-11f1-9437-cbad913f2650".into(),
        last_committed: 42,
        desync: false,
        reject_queries: "NONE".into(),
        sst_donor_rejects_queries: false,
        pxc_maint_mode: None,
    };
    f(&mut g);
    let mut s = primary();
    s.galera = Some(g);
    s
}

#[test]
fn galera_rule_table() {
    let now = Instant::now() + Duration::from_secs(3600);
    let fresh = Duration::from_millis(100);
    let donor = |g: &mut GaleraState| {
        g.local_state = 2;
        g.local_state_comment = "Donor/Desynced".into();
    };
    let t = |f: fn(&mut Thresholds)| {
        let mut t = Thresholds::default();
        f(&mut t);
        t
    };
    #[rustfmt::skip]
    let cases: Vec<(ServerState, Thresholds, bool, &str)> = vec![
        (node(|_| {}), Thresholds::default(), true, ""),
        (node(|g| { g.cluster_status = "non-Primary".into(); g.ready = false; g.local_state = 0; g.local_state_comment = "Initialized".into() }),
            Thresholds::default(), false, "wsrep_cluster_status non-Primary, want Primary"),
        (node(donor), Thresholds::default(), false, "wsrep_local_state Donor/Desynced (2), want Synced (4)"),
        (node(donor), t(|t| t.available_when_donor = Some(true)), true, ""),
        (node(|g| { donor(g); g.sst_donor_rejects_queries = true }), t(|t| t.available_when_donor = Some(true)),
            false, "wsrep_local_state Donor/Desynced (2), and wsrep_sst_donor_rejects_queries is ON"),
        (node(|g| { g.local_state = 1; g.local_state_comment = "Joining".into() }), t(|t| t.available_when_donor = Some(true)),
            false, "wsrep_local_state Joining (1), want Synced (4)"),
        (node(|g| { g.local_state = 3; g.local_state_comment = "Joined".into() }), Thresholds::default(),
            false, "wsrep_local_state Joined (3), want Synced (4)"),
        (node(|g| g.ready = false), Thresholds::default(), false, "wsrep_ready OFF, want ON"),
        (node(|g| g.connected = false), Thresholds::default(), false, "wsrep_connected OFF, want ON"),
        (node(|g| g.reject_queries = "ALL".into()), Thresholds::default(), false, "wsrep_reject_queries ALL, want NONE"),
        (node(|g| g.pxc_maint_mode = Some("MAINTENANCE".into())), Thresholds::default(), false, "pxc_maint_mode MAINTENANCE, want DISABLED"),
        (node(|g| g.pxc_maint_mode = Some("DISABLED".into())), Thresholds::default(), true, ""),
        (with(node(|_| {}), |s| s.read_only = true), Thresholds::default(), false, "read_only ON, want OFF"),
        (with(node(|_| {}), |s| s.read_only = true), t(|t| t.available_when_readonly = Some(true)), true, ""),
        (node(|g| g.cluster_size = 2), t(|t| t.min_cluster_size = Some(3)), false, "wsrep_cluster_size 2 < 3"),
        (node(|g| g.recv_queue = 120), t(|t| t.max_recv_queue = Some(100)), false, "wsrep_local_recv_queue 120 > 100"),
        (node(|g| g.recv_queue = 100), t(|t| t.max_recv_queue = Some(100)), true, ""),
        (node(|g| g.flow_control_paused = 0.5), t(|t| t.max_flow_control_paused = Some(crate::policy::file::Fraction(200_000))),
            false, "wsrep_flow_control_paused 0.500 > 0.200"),
        // Not a Galera node at all: the policy says so rather than passing.
        (primary(), Thresholds::default(), false, "wsrep_on OFF: not a Galera node (use another policy for it)"),
    ];
    for (i, (state, thresholds, healthy, reason)) in cases.into_iter().enumerate() {
        let snapshot = snap(Ok(state), now, fresh);
        let v = eval_with(&PolicySet::builtin(), "galera", &snapshot, &thresholds, now);
        assert_eq!(v.healthy, healthy, "case {i}: {v:#?}");
        if !healthy {
            assert_eq!(
                crate::policy::render::reason(&v).as_deref(),
                Some(reason),
                "case {i}: {v:#?}"
            );
        }
    }
}

#[test]
fn auto_picks_the_galera_policy_on_a_wsrep_node_whatever_its_read_only_flag() {
    let now = Instant::now() + Duration::from_secs(3600);
    for read_only in [false, true] {
        let state = with(node(|_| {}), |s| s.read_only = read_only);
        let v = eval(
            "auto",
            &snap(Ok(state), now, Duration::from_millis(100)),
            now,
            None,
        );
        assert_eq!(v.resolved_policy, "galera");
        assert_eq!(v.checks[0].line(), "ok role galera node -> galera");
        assert_eq!(v.healthy, !read_only, "{v:#?}");
    }
    let v = eval(
        "auto",
        &snap(Ok(primary()), now, Duration::from_millis(100)),
        now,
        None,
    );
    assert_eq!(v.resolved_policy, "primary", "no wsrep: as before");
}

#[test]
fn galera_policy_files_are_checked() {
    let bad = [
        (
            "checks = [\"galera\"]\nwhen_galera = \"galera\"",
            "when_galera: only a policy",
        ),
        (
            "checks = [\"galera\"]\nmax_flow_control_paused = 1.5",
            "not a fraction",
        ),
        (
            "checks = [\"galera\"]\nmin_cluster_size = -1",
            "invalid value",
        ),
    ];
    for (text, want) in bad {
        let e = Policy::parse("p", text).expect_err(text);
        assert!(e.message.contains(want), "{text}: {}", e.message);
    }
    let ok = Policy::parse("p", "checks = [\"galera\"]\nmax_flow_control_paused = 0.25").unwrap();
    match ok.body {
        Body::Checks { thresholds, .. } => assert_eq!(
            thresholds.max_flow_control_paused,
            Some(crate::policy::file::Fraction(250_000))
        ),
        _ => panic!("checks"),
    }
}

#[test]
fn a_galera_writer_hands_over_at_the_cluster_seqno() {
    use crate::policy::evidence::{has_applied, writer_position};
    let old = node(|g| g.last_committed = 42);
    let at = writer_position(&old).expect("a galera node has a position");
    assert_eq!(at, "wsrep:892a03f2-ee7d-11f1-9437-cbad913f2650:42");
    assert!(has_applied(&node(|g| g.last_committed = 42), &at));
    assert!(has_applied(&node(|g| g.last_committed = 43), &at));
    assert!(!has_applied(&node(|g| g.last_committed = 41), &at));
    // Another cluster's history (a bootstrap since) or a server without wsrep: not applied.
    assert!(!has_applied(
        &node(|g| g.cluster_state_uuid = "00000000-0000-0000-0000-000000000001".into()),
        &at
    ));
    assert!(!has_applied(&primary(), &at));
    assert!(!has_applied(&node(|_| {}), "wsrep:garbage"));
}
