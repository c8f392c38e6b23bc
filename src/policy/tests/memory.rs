//! The backup gate, `peer` and the source evidence that beats memory.

use super::*;

/// A backup whose IO thread was last seen connected with `seen_lag` `ago` before `now`
/// (`None`: never seen connected), now in `state` with `uptime`.
fn backup_history(
    seen_lag: Option<Option<u64>>,
    ago: u64,
    state: ServerState,
    uptime: u64,
    now: Instant,
) -> Snapshot {
    let mut s = Snapshot::default();
    if let Some(lag) = seen_lag {
        // The server has run continuously since unless `uptime` says otherwise.
        let then_up = Duration::from_secs(uptime.max(ago) - ago);
        let connected = with(
            with_ch(replica(), |c| c.lag = lag.map(Duration::from_secs)),
            |s| s.uptime = Some(then_up),
        );
        s = snap(Ok(connected), now, Duration::from_secs(ago));
    }
    let now_state = with(state, |s| s.uptime = Some(Duration::from_secs(uptime)));
    let mut next = snap(Ok(now_state), now, Duration::ZERO);
    next.memory = s.memory.clone();
    let sample = next.sample.take().unwrap();
    s.next(Arc::try_unwrap(sample).unwrap())
}

/// A MariaDB source reading at `gtid` (binary log state `state`).
fn source_at(gtid: &str, state: Option<&str>) -> crate::snapshot::sample::SourceState {
    crate::snapshot::sample::SourceState {
        flavor: Flavor::MariaDb,
        server_id: 1,
        version: "10.11.19-MariaDB".into(),
        gtid_executed: gtid.into(),
        server_uuid: None,
        gtid_binlog_state: state.map(str::to_string),
        binlog_position: None,
        read_only: None,
        gtid_slave_pos: None,
        semi_sync: None,
    }
}

/// `s` with this poll's source reading (`Err`: unreachable) and, if given, a remembered
/// earlier one taken 3 s before `now`.
fn with_source(
    mut s: Snapshot,
    live: Result<crate::snapshot::sample::SourceState, ()>,
    remembered: Option<crate::snapshot::sample::SourceState>,
    now: Instant,
) -> Snapshot {
    let mut sample = (**s.sample.as_ref().unwrap()).clone();
    sample.source = Some(crate::snapshot::sample::SourceSample {
        addr: "127.0.0.1:3306".into(),
        outcome: live.map_err(|()| err(ProbeErrorKind::Refused, None, "refused")),
    });
    s.sample = Some(Arc::new(sample));
    s.memory.last_source = remembered.map(|state| crate::snapshot::SourceSeen {
        at: now - Duration::from_secs(3),
        at_wall: std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(7),
        addr: "127.0.0.1:3306".into(),
        state,
    });
    s
}

/// Newer evidence beats memory: a source reading (live, or remembered after the source
/// died) that holds transactions the backup lacks voids the older caught-up observation,
/// until the backup has them; errant transactions fail the gate against a live source.
#[test]
fn source_readings_override_the_caught_up_memory() {
    let now = Instant::now() + Duration::from_secs(3600);
    let at = |current: &str, binlog_state: &str, state: ServerState| {
        let state = with(state, |s| {
            s.gtid.current_pos = Some(current.into());
            s.gtid.binlog_pos = Some(current.into());
            s.gtid.binlog_state = Some(binlog_state.into());
        });
        backup_history(Some(Some(0)), 10, state, 100, now)
    };
    let allow = Thresholds {
        allow_errant: Some(true),
        ..Default::default()
    };
    let none = Thresholds::default();
    #[rustfmt::skip]
    let cases: Vec<(&str, Snapshot, &Thresholds, bool, &str)> = vec![
        ("live source ahead", with_source(at("0-1-10", "0-1-10", lost(replica())), Ok(source_at("0-1-14", None)), None, now), &none, false,
         "FAIL source_lost since 00:00:00 UTC (10s ago), the source 127.0.0.1:3306 is reachable and has 4 transactions this server lacks: 0-1-11..0-1-14"),
        ("source died after a reading that was ahead", with_source(at("0-1-10", "0-1-10", lost(replica())), Err(()), Some(source_at("0-1-14", None)), now), &none, false,
         "FAIL source_lost since 00:00:00 UTC (10s ago), but the source had 0-1-11..0-1-14 that this server lacks at its last reading (00:00:07 UTC)"),
        ("caught up with that reading since", with_source(at("0-1-14", "0-1-14", lost(replica())), Err(()), Some(source_at("0-1-14", None)), now), &none, true,
         "ok source_lost since 00:00:00 UTC (10s ago), last lag 0s, relay log applied"),
        ("one missing transaction", with_source(at("0-1-13", "0-1-13", lost(replica())), Err(()), Some(source_at("0-1-14", None)), now), &none, false,
         "but the source had 0-1-14 that this server lacks"),
        ("errant write overtaken by later source writes", with_source(at("0-1-22", "0-1-22,0-2-8", replica()), Ok(source_at("0-1-22", Some("0-1-22"))), None, now), &none, false,
         "FAIL errant_transactions 1: 0-2-8, never on the source 127.0.0.1:3306"),
        ("errant, admitted by allow_errant", with_source(at("0-1-22", "0-1-22,0-2-8", replica()), Ok(source_at("0-1-22", Some("0-1-22"))), None, now), &allow, true,
         "WARN errant_transactions 1: 0-2-8 (source 127.0.0.1:3306); ADMITTED BY allow_errant"),
        ("a writable backup (master-master) is not judged on errant transactions", with_source(at("0-1-22", "0-1-22,0-2-8", with(replica(), |s| s.read_only = false)), Ok(source_at("0-1-22", Some("0-1-22"))), None, now), &none, true,
         "-- errant_transactions not judged: writable"),
        ("the backup's own writes once the source is gone are not errant", with_source(at("0-1-22", "0-1-22,0-2-30", lost(replica())), Err(()), Some(source_at("0-1-22", Some("0-1-22"))), now), &none, true,
         "-- errant_transactions not judged: the source is not readable by the guard"),
    ];
    for (what, snapshot, overrides, healthy, want) in cases {
        let v = eval_with(&PolicySet::builtin(), "backup", &snapshot, overrides, now);
        let lines: Vec<String> = v.checks.iter().map(Check::line).collect();
        assert_eq!(v.healthy, healthy, "{what}: {lines:#?}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(want) || l.contains(&format!(", {want}"))),
            "{what}: want {want:?} in {lines:#?}"
        );
    }
    // The failback rule reads the same evidence.
    let writer = with(lost(replica()), |s| {
        s.read_only = false;
        s.gtid.current_pos = Some("0-1-10".into());
    });
    let snapshot = with_source(
        backup_history(Some(Some(0)), 10, writer, 100, now),
        Err(()),
        Some(source_at("0-1-14", None)),
        now,
    );
    let mut set = PolicySet::builtin();
    set.insert(Policy::parse("pp", "checks = [\"peer\"]\nmax_lag = \"2s\"\n").unwrap());
    let v = eval_with(&set, "pp", &snapshot, &none, now);
    assert!(!v.healthy);
    assert!(
        v.checks[0]
            .line()
            .contains("lost since 00:00:00 UTC (10s ago), but the source had 0-1-11..0-1-14"),
        "{}",
        v.checks[0].line()
    );
}

fn lost(s: ServerState) -> ServerState {
    with_ch(s, |c| {
        c.io_thread = ThreadState::Connecting;
        c.lag = None;
        c.last_io_errno = 2003;
        c.last_io_error = "error connecting to master".into();
    })
}

#[test]
fn backup_gate_table() {
    let now = Instant::now() + Duration::from_secs(3600);
    let t = |max_apply_backlog: Option<u64>,
             max_source_lost: Option<u64>,
             require_writable: Option<bool>| Thresholds {
        max_apply_backlog,
        max_source_lost: max_source_lost.map(Duration::from_secs),
        require_writable,
        ..Default::default()
    };
    let ahead = |s: ServerState| with_ch(s, |c| c.read_log_pos += 100);
    // (history, thresholds, healthy, text the first failing line or the source line contains)
    #[rustfmt::skip]
    let cases: Vec<(Snapshot, Thresholds, bool, &str)> = vec![
        (backup_history(Some(Some(0)), 1, replica(), 100, now), t(None, None, None), true, "ok lag 0s <= 2s"),
        (backup_history(Some(Some(0)), 1, with_ch(replica(), |c| c.lag = Some(Duration::from_secs(3))), 100, now), t(None, None, None), false, "FAIL lag 3s > 2s"),
        // Streaming from a live source under writes: bytes between read and executed are in
        // flight, judged by lag (issue 21: a caught-up backup flapped on them).
        (backup_history(Some(Some(0)), 1, ahead(replica()), 100, now), t(None, None, None), true, "ok applied 100 bytes in flight (read mysql-bin.000001:200, executed mysql-bin.000001:100) while the IO thread streams: judged by lag"),
        (backup_history(Some(Some(0)), 1, with_ch(ahead(replica()), |c| c.lag = Some(Duration::from_secs(3))), 100, now), t(None, None, None), false, "FAIL lag 3s > 2s"),
        // Not streaming (SQL error): what was received and not applied counts.
        (backup_history(Some(Some(0)), 1, with_ch(ahead(replica()), |c| { c.last_sql_errno = 1062; c.last_sql_error = "Duplicate".into() }), 100, now), t(None, None, None), false, "FAIL sql_error 1062 Duplicate"),
        (backup_history(Some(Some(0)), 1, ahead(replica()), 100, now), t(Some(100), None, None), true, "ok lag 0s"),
        (backup_history(Some(Some(0)), 10, lost(replica()), 100, now), t(None, None, None), true, "ok source_lost since 00:00:00 UTC (10s ago), last lag 0s, relay log applied"),
        (backup_history(Some(Some(5)), 10, lost(replica()), 100, now), t(None, None, None), false, "FAIL source_lost since 00:00:00 UTC (10s ago), last lag 5s > 2s"),
        (backup_history(Some(None), 10, lost(replica()), 100, now), t(None, None, None), false, "last lag NULL (unknown)"),
        (backup_history(None, 10, lost(replica()), 100, now), t(None, None, None), false, "FAIL source_lost IO thread Connecting and never seen connected"),
        (backup_history(Some(Some(0)), 10, lost(replica()), 5, now), t(None, None, None), false, "memory void: the server restarted 5s ago"),
        (backup_history(Some(Some(0)), 10, lost(replica()), 9, now), t(None, None, None), true, "ok source_lost"),
        (backup_history(Some(Some(0)), 10, ahead(lost(replica())), 100, now), t(None, None, None), false, "FAIL applied 100 bytes not applied"),
        (backup_history(Some(Some(0)), 10, lost(replica()), 100, now), t(None, Some(5), None), false, "lost for longer than max_source_lost 5s"),
        (backup_history(Some(Some(0)), 10, lost(replica()), 100, now), t(None, Some(60), None), true, "ok source_lost"),
        (backup_history(Some(Some(0)), 1, with_ch(replica(), |c| c.sql_thread = ThreadState::No), 100, now), t(None, None, None), false, "FAIL sql_thread No, want Yes"),
        (backup_history(Some(Some(0)), 1, with_ch(replica(), |c| { c.last_sql_errno = 1062; c.last_sql_error = "Duplicate".into() }), 100, now), t(None, None, None), false, "FAIL sql_error 1062 Duplicate"),
        (backup_history(Some(Some(0)), 1, replica(), 100, now), t(None, None, Some(true)), false, "FAIL read_only ON, want OFF"),
        (backup_history(Some(Some(0)), 1, with(replica(), |s| s.read_only = false), 100, now), t(None, None, Some(true)), true, "ok read_only OFF"),
        // Not lost: stopped by hand, or broken with a live source.
        (backup_history(Some(Some(0)), 10, with_ch(lost(replica()), |c| { c.io_thread = ThreadState::No; c.last_io_errno = 0 }), 100, now), t(None, None, None), false, "FAIL io_thread No: stopped without a connection error, so the source is not lost"),
        (backup_history(Some(Some(0)), 10, with_ch(lost(replica()), |c| c.last_io_errno = 1236), 100, now), t(None, None, None), false, "FAIL io_thread Connecting: error 1236 error connecting to master: replication broken, the source is not lost"),
        // Repointed to another source: the old observation says nothing about it.
        (backup_history(Some(Some(0)), 10, with_ch(lost(replica()), |c| c.source_host = "10.9.9.9".into()), 100, now), t(None, None, None), false, "now replicates from 10.9.9.9:3306, last seen connected to 127.0.0.1:3306"),
    ];
    for (i, (snapshot, overrides, healthy, want)) in cases.into_iter().enumerate() {
        let v = eval_with(&PolicySet::builtin(), "backup", &snapshot, &overrides, now);
        let lines: Vec<String> = v.checks.iter().map(Check::line).collect();
        let shown = match v.first_failure() {
            Some(c) => c.line(),
            None => lines.join("\n"),
        };
        assert_eq!(v.healthy, healthy, "case {i}: {lines:#?}");
        assert!(shown.contains(want), "case {i}: want {want:?} in {shown:?}");
    }
}

#[test]
fn peer_rule_table() {
    let now = Instant::now() + Duration::from_secs(3600);
    let writer = |s: ServerState| with(s, |s| s.read_only = false);
    let isolated = Thresholds {
        allow_isolated: Some(true),
        ..Default::default()
    };
    let none = Thresholds::default();
    // (history, overrides, healthy, the peer line contains)
    #[rustfmt::skip]
    let cases: Vec<(Snapshot, &Thresholds, bool, &str)> = vec![
        (backup_history(Some(Some(0)), 1, writer(replica()), 100, now), &none, true, "ok peer 127.0.0.1:3306 connected, lag 0s <= 2s, relay log applied"),
        (backup_history(Some(Some(0)), 1, writer(with_ch(replica(), |c| c.lag = Some(Duration::from_secs(9)))), 100, now), &none, false, "FAIL peer 127.0.0.1:3306 connected, lag 9s > 2s"),
        (backup_history(Some(Some(0)), 1, writer(with_ch(replica(), |c| { c.sql_thread = ThreadState::No; c.lag = None })), 100, now), &none, false, "FAIL peer 127.0.0.1:3306 connected, SQL thread No, want Yes"),
        // Its own writes coming back from the peer, in flight: no backlog (issue 21).
        (backup_history(Some(Some(0)), 1, writer(with_ch(replica(), |c| c.read_log_pos += 5)), 100, now), &none, true, "ok peer 127.0.0.1:3306 connected, lag 0s <= 2s, 5 bytes in flight"),
        (backup_history(Some(Some(0)), 1, writer(with_ch(replica(), |c| { c.read_log_pos += 5; c.last_sql_errno = 1032; })), 100, now), &none, false, "5 bytes not applied"),
        // The backup vanished while this writer was caught up: it keeps passing.
        (backup_history(Some(Some(0)), 30, writer(lost(replica())), 100, now), &none, true, "ok peer 127.0.0.1:3306 lost since 00:00:00 UTC (30s ago), last lag 0s, relay log applied"),
        // This writer's own server restarted: it must reconnect and catch up first.
        (backup_history(Some(Some(0)), 30, writer(lost(replica())), 3, now), &none, false, "memory void: the server restarted 3s ago"),
        (backup_history(None, 30, writer(with_ch(replica(), |c| c.io_thread = ThreadState::No)), 3, now), &none, false, "FAIL io_thread No (peer 127.0.0.1:3306): stopped without a connection error"),
        (backup_history(None, 30, writer(with_ch(replica(), |c| c.io_thread = ThreadState::No)), 3, now), &isolated, true, "ADMITTED BY allow_isolated: if 127.0.0.1:3306 still takes writes this is split brain"),
        (backup_history(None, 30, writer(primary()), 3, now), &none, true, "ok peer none (no replica status)"),
    ];
    for (i, (snapshot, overrides, healthy, want)) in cases.into_iter().enumerate() {
        let v = eval_with(&PolicySet::builtin(), "primary", &snapshot, overrides, now);
        let peer = v
            .checks
            .iter()
            .find(|c| c.name == "peer" || c.name == "io_thread")
            .unwrap();
        // The peer rule is judged here; these snapshots have no reading of the peer, which
        // the handover rule (its own table) fails.
        assert_eq!(peer.ok, healthy, "case {i}: {v:#?}");
        assert!(
            v.checks
                .iter()
                .all(|c| c.ok || c == peer || c.name == "handover"),
            "case {i}: {v:#?}"
        );
        let peer = peer.line();
        assert!(peer.contains(want), "case {i}: want {want:?} in {peer:?}");
    }
}
