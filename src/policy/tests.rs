use super::*;
use crate::snapshot::sample::fixtures::{channel, primary, replica, snap};
use crate::snapshot::sample::Channel;
use crate::snapshot::sample::{Flavor, ProbeError, ProbeErrorKind, ServerState, ThreadState};
use crate::snapshot::{LagPoint, Snapshot};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn err(kind: ProbeErrorKind, errno: Option<u16>, msg: &str) -> ProbeError {
    ProbeError {
        kind,
        errno,
        message: msg.into(),
    }
}

fn eval(policy: &str, snapshot: &Snapshot, now: Instant, max_lag: Option<u64>) -> Verdict {
    let overrides = Thresholds {
        max_lag: max_lag.map(Duration::from_secs),
        ..Default::default()
    };
    eval_with(&PolicySet::builtin(), policy, snapshot, &overrides, now)
}

/// Evaluates `policy` of `set` with `overrides` and a 3 s `max_sample_age`.
fn eval_with(
    set: &PolicySet,
    policy: &str,
    snapshot: &Snapshot,
    overrides: &Thresholds,
    now: Instant,
) -> Verdict {
    Judge::new(set.clone(), Duration::from_secs(3))
        .evaluate(
            Subject {
                policy,
                thresholds: overrides,
                judge_lease: true,
                siblings: &[],
            },
            snapshot,
            None,
            &Thresholds::default(),
            now,
        )
        .expect("policy exists")
}

fn with<F: FnOnce(&mut ServerState)>(mut s: ServerState, f: F) -> ServerState {
    f(&mut s);
    s
}

fn with_ch<F: FnOnce(&mut Channel)>(s: ServerState, f: F) -> ServerState {
    with(s, |s| f(&mut s.channels[0]))
}

/// (policy, outcome, sample age, request max_lag, healthy, first failing line or "")
type Case = (
    &'static str,
    Result<ServerState, ProbeError>,
    Duration,
    Option<u64>,
    bool,
    &'static str,
);

#[test]
fn policy_rules_table() {
    let now = Instant::now() + Duration::from_secs(3600);
    let fresh = Duration::from_millis(300);
    let refused = err(ProbeErrorKind::Refused, None, "127.0.0.1:3307");
    let denied = err(
        ProbeErrorKind::AccessDenied,
        Some(1045),
        "Access denied for user 'replguard'@'localhost' (using password: YES)",
    );
    // (policy, outcome, sample age, request max_lag, healthy, first failing line or "")
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("replica", Ok(replica()), fresh, None, true, ""),
        ("replica", Ok(replica()), Duration::from_secs(4), None, false, "FAIL sample stale: age 4s > 3s"),
        ("replica", Ok(replica()), Duration::from_secs(3), None, true, ""),
        ("replica", Err(refused.clone()), fresh, None, false, "FAIL reachable connection refused: 127.0.0.1:3307"),
        ("replica", Err(denied.clone()), fresh, None, false, "FAIL reachable check user refused: 1045 Access denied for user 'replguard'@'localhost' (using password: YES)"),
        ("replica", Err(err(ProbeErrorKind::Timeout, None, "query took over 500ms")), fresh, None, false, "FAIL reachable timeout: query took over 500ms"),
        ("replica", Ok(with(replica(), |s| s.channels.clear())), fresh, None, false, "FAIL replica_status empty: not configured as a replica (no replica status row)"),
        ("replica", Ok(with_ch(replica(), |c| c.io_thread = ThreadState::Connecting)), fresh, None, false, "FAIL io_thread Connecting, want Yes (source 127.0.0.1:3306)"),
        ("replica", Ok(with_ch(replica(), |c| c.io_thread = ThreadState::No)), fresh, None, false, "FAIL io_thread No, want Yes (source 127.0.0.1:3306)"),
        ("replica", Ok(with_ch(replica(), |c| c.sql_thread = ThreadState::No)), fresh, None, false, "FAIL sql_thread No, want Yes"),
        ("replica", Ok(with_ch(replica(), |c| { c.last_sql_errno = 1062; c.last_sql_error = "Duplicate entry".into() })), fresh, None, false, "FAIL replication_errors sql 1062 Duplicate entry"),
        ("replica", Ok(with_ch(replica(), |c| { c.last_io_errno = 2003; c.last_io_error = "error connecting".into() })), fresh, None, false, "FAIL replication_errors io 2003 error connecting"),
        ("replica", Ok(with_ch(replica(), |c| c.lag = None)), fresh, None, false, "FAIL lag NULL (unknown), want <= 10s"),
        ("replica", Ok(with_ch(replica(), |c| c.lag = Some(Duration::from_secs(10)))), fresh, None, true, ""),
        ("replica", Ok(with_ch(replica(), |c| c.lag = Some(Duration::from_secs(11)))), fresh, None, false, "FAIL lag 11s > 10s"),
        ("replica", Ok(with_ch(replica(), |c| c.lag = Some(Duration::from_secs(11)))), fresh, Some(20), true, ""),
        ("replica", Ok(with_ch(replica(), |c| c.lag = Some(Duration::from_secs(3)))), fresh, Some(2), false, "FAIL lag 3s > 2s"),
        ("replica", Ok(with_ch(replica(), |c| c.lag = Some(Duration::ZERO))), fresh, Some(0), true, ""),
        ("replica", Ok(with(replica(), |s| { let mut c = channel(); c.name = "b".into(); c.sql_thread = ThreadState::No; s.channels.push(c) })), fresh, None, false, "FAIL sql_thread[b] No, want Yes"),
        ("replica", Ok(primary()), fresh, None, false, "FAIL replica_status empty: not configured as a replica (no replica status row)"),
        ("primary", Ok(primary()), fresh, None, true, ""),
        ("primary", Ok(replica()), fresh, None, false, "FAIL read_only ON, want OFF"),
        ("primary", Ok(with(primary(), |s| { s.flavor = Flavor::MySql; s.super_read_only = Some(true) })), fresh, None, false, "FAIL super_read_only ON, want OFF"),
        ("primary", Ok(with(primary(), |s| s.innodb_read_only = true)), fresh, None, false, "FAIL innodb_read_only ON, want OFF"),
        ("primary", Ok(with(primary(), |s| s.channels = vec![with_ch(replica(), |c| c.lag = None).channels[0].clone()])), fresh, None, false, "FAIL peer 127.0.0.1:3306 connected, lag NULL (unknown), want <= 2s"),
        // Master-master without a reading of the peer: whether it takes writes is unknown.
        ("primary", Ok(with(primary(), |s| s.channels = replica().channels)), fresh, None, false, "UNKNOWN handover no reading of the peer: cannot tell whether it still takes writes"),
        ("primary", Err(refused.clone()), fresh, None, false, "FAIL reachable connection refused: 127.0.0.1:3307"),
        ("auto", Ok(primary()), fresh, None, true, ""),
        ("auto", Ok(replica()), fresh, None, true, ""),
        ("auto", Ok(with_ch(replica(), |c| c.lag = Some(Duration::from_secs(60)))), fresh, None, false, "FAIL lag 60s > 10s"),
        ("auto", Err(refused), fresh, None, false, "FAIL reachable connection refused: 127.0.0.1:3307"),
    ];
    for (i, (policy, outcome, age, max_lag, healthy, first_fail)) in cases.into_iter().enumerate() {
        let snapshot = snap(outcome, now, age);
        let v = eval(policy, &snapshot, now, max_lag);
        let got = v.first_failure().map(Check::line).unwrap_or_default();
        assert_eq!(
            (v.healthy, got.as_str()),
            (healthy, first_fail),
            "case {i} ({policy}): {v:#?}"
        );
    }
}

#[test]
fn no_sample_fails_closed_for_every_policy() {
    let now = Instant::now();
    let empty = Snapshot::default();
    for policy in ["primary", "replica", "auto"] {
        let v = eval(policy, &empty, now, None);
        assert!(!v.healthy, "{policy}");
        assert_eq!(
            v.checks[0].line(),
            "FAIL sample none yet: no poll has finished",
            "{policy}"
        );
        // One root cause: every other check depends on it and is not judged.
        assert!(
            v.checks
                .iter()
                .skip(1)
                .all(|c| c.level == Level::NotJudged && c.line().starts_with("-- ")),
            "{policy}: {v:#?}"
        );
    }
}

/// A role-picking policy whose pick depends on nothing the server said still fails when
/// the server could not be read.
#[test]
fn picking_by_role_fails_closed_for_an_unreadable_server() {
    let now = Instant::now() + Duration::from_secs(10);
    let mut set = PolicySet::builtin();
    set.insert(Policy::parse("fresh", "checks = [\"sample\"]\n").unwrap());
    set.insert(
        Policy::parse(
            "pick",
            "when_writable = \"fresh\"\nwhen_read_only = \"fresh\"\n",
        )
        .unwrap(),
    );
    let down = snap(
        Err(err(ProbeErrorKind::Refused, None, "refused")),
        now,
        Duration::ZERO,
    );
    let v = eval_with(&set, "pick", &down, &Thresholds::default(), now);
    assert!(!v.healthy, "{v:#?}");
    assert_eq!(
        v.first_failure().map(|c| c.name.as_str()),
        Some("reachable")
    );
}

/// A change of cause while unhealthy is a new key; a changing measurement is not.
#[test]
fn cause_key_follows_the_cause_not_the_value() {
    let now = Instant::now() + Duration::from_secs(10);
    let key = |outcome| eval("replica", &snap(outcome, now, Duration::ZERO), now, None).cause_key();
    let refused = key(Err(err(ProbeErrorKind::Refused, None, "refused (111)")));
    let refused_again = key(Err(err(ProbeErrorKind::Refused, None, "refused (112)")));
    let denied = key(Err(err(ProbeErrorKind::AccessDenied, Some(1045), "denied")));
    assert_eq!(refused, refused_again);
    assert_ne!(refused, denied);
    let lag = |s| {
        key(Ok(with_ch(replica(), |c| {
            c.lag = Some(Duration::from_secs(s))
        })))
    };
    assert_eq!(lag(20), lag(30));
    let sql = key(Ok(with_ch(replica(), |c| c.sql_thread = ThreadState::No)));
    let sql_error = key(Ok(with_ch(replica(), |c| {
        c.sql_thread = ThreadState::No;
        c.last_sql_errno = 1062;
    })));
    let both = key(Ok(with_ch(replica(), |c| {
        c.sql_thread = ThreadState::No;
        c.io_thread = ThreadState::No;
    })));
    assert!(sql.is_some() && sql != sql_error && sql != both);
    assert_eq!(key(Ok(replica())), None);
}

#[test]
fn auto_names_the_role_it_picked() {
    let now = Instant::now() + Duration::from_secs(10);
    let v = eval("auto", &snap(Ok(primary()), now, Duration::ZERO), now, None);
    assert_eq!(v.resolved_policy, "primary");
    assert_eq!(v.checks[0].line(), "ok role writable -> primary");
    let v = eval("auto", &snap(Ok(replica()), now, Duration::ZERO), now, None);
    assert_eq!(v.resolved_policy, "replica");
    assert_eq!(v.checks[0].line(), "ok role read-only -> replica");
}

#[test]
fn every_check_line_lists_measured_and_threshold() {
    let now = Instant::now() + Duration::from_secs(10);
    let v = eval(
        "replica",
        &snap(Ok(replica()), now, Duration::from_millis(400)),
        now,
        None,
    );
    let lines: Vec<String> = v.checks.iter().map(Check::line).collect();
    assert_eq!(
        lines,
        [
            "ok sample age 400ms <= 3s",
            "ok reachable MariaDB 10.11.19-MariaDB server_id 2",
            "ok replica_status 1 channel",
            "ok io_thread Yes",
            "-- stall not judged: first poll",
            "ok sql_thread Yes",
            "ok replication_errors none",
            "ok not_delayed SQL_Delay=0",
            "ok lag 0s <= 10s",
            "-- lag_stable not judged: first poll",
        ]
    );
}

#[test]
fn policy_files_are_checked() {
    #[rustfmt::skip]
    let cases: &[(&str, &str)] = &[
        ("checks = [\"lag\"]", "max_lag: the lag check needs a max_lag"),
        ("checks = []", "checks: a policy needs at least one check"),
        ("checks = [\"sample\", \"telepathy\"]", "unknown variant `telepathy`"),
        ("checks = [\"sample\"]\nmax_lga = \"1s\"", "unknown field `max_lga`"),
        ("checks = [\"lag\"]\nmax_lag = \"10\"", "has no unit"),
        ("when_writable = \"primary\"", "checks: give either"),
        ("when_writable = \"a\"\nwhen_read_only = \"b\"\nmax_lag = \"1s\"", "max_lag: a policy that picks by role"),
    ];
    for (text, want) in cases {
        let err = Policy::parse("p", text).expect_err(text);
        assert!(
            err.message.contains(want),
            "{text:?}: got {:?}",
            err.message
        );
    }
    let mut set = PolicySet::builtin();
    set.insert(
        Policy::parse(
            "auto",
            "when_writable = \"primary\"\nwhen_read_only = \"nope\"",
        )
        .unwrap(),
    );
    let (name, err) = set.validate().expect_err("dangling target");
    assert_eq!(
        (name.as_str(), err.message.as_str()),
        ("auto", "when_read_only: no policy named \"nope\"")
    );
    assert!(PolicySet::builtin().validate().is_ok());
}

#[test]
fn overrides_replace_only_what_they_set() {
    let base = Thresholds {
        max_lag: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    assert_eq!(base.overlay(&Thresholds::default()), base);
    let over = Thresholds {
        max_lag: Some(Duration::from_secs(2)),
        ..Default::default()
    };
    assert_eq!(base.overlay(&over), over);
}

mod galera;
mod group;
mod handover;
mod lag;
mod memory;
mod semisync;
