//! Hysteresis, heartbeat, delayed replicas and stalls.

use super::*;

fn points(lags: &[Option<u64>], start: Instant) -> VecDeque<LagPoint> {
    lags.iter()
        .enumerate()
        .map(|(i, l)| LagPoint {
            at: start + Duration::from_secs(i as u64),
            lag: l.map(Duration::from_secs),
            delay: Duration::ZERO,
        })
        .collect()
}

#[test]
fn lag_hysteresis_table() {
    let t0 = Instant::now();
    let at = |i: u64| t0 + Duration::from_secs(i);
    let (max, rec) = (Duration::from_secs(10), Duration::from_secs(5));
    let recovering = |good, failed| Recovery::Recovering {
        good,
        need: 3,
        failed_at: at(failed),
    };
    #[rustfmt::skip]
    let cases: Vec<(&[Option<u64>], Recovery)> = vec![
        (&[], Recovery::Steady),
        (&[Some(0), Some(9), Some(10)], Recovery::Steady),
        (&[Some(0), Some(11)], recovering(0, 1)),
        (&[Some(11), Some(1), Some(2)], recovering(2, 0)),
        (&[Some(11), Some(1), Some(2), Some(3)], Recovery::Recovered),
        // Between recover_lag and max_lag: not failing, but not recovering either.
        (&[Some(11), Some(1), Some(7), Some(2), Some(3)], recovering(2, 0)),
        // After recovery, lag up to max_lag stays healthy.
        (&[Some(11), Some(1), Some(1), Some(1), Some(9), Some(9)], Recovery::Recovered),
        // Flapping 0 <-> thousands never comes back.
        (&[Some(0), Some(5000), Some(0), Some(5000), Some(0), Some(0)], recovering(2, 3)),
        // Unknown (NULL) lag fails like a high one.
        (&[Some(0), None, Some(0)], recovering(1, 1)),
    ];
    for (i, (lags, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            lag_recovery(&points(lags, t0), max, rec, 3),
            want,
            "case {i}: {lags:?}"
        );
    }
}

#[test]
fn hysteresis_holds_a_recovering_replica_out() {
    let now = Instant::now() + Duration::from_secs(3600);
    // Lag 30s, then back to 0 for one poll: lag passes, lag_stable does not.
    let lagging = with_ch(replica(), |c| c.lag = Some(Duration::from_secs(30)));
    let s = snap(Ok(lagging), now, Duration::from_secs(1));
    let s =
        s.next(Arc::try_unwrap(snap(Ok(replica()), now, Duration::ZERO).sample.unwrap()).unwrap());
    let v = eval("replica", &s, now, None);
    assert_eq!(
        v.first_failure().map(Check::line).as_deref(),
        Some("FAIL lag_stable recovering: 1 of 3 polls <= 5s since a lag failure 1s ago")
    );
    // A request that allows 60s never saw a failure.
    assert!(eval("replica", &s, now, Some(60)).healthy);
    // An instance in maintenance fails every policy, maintenance first.
    let mut m = (**s.sample.as_ref().unwrap()).clone();
    m.maintenance = Some("kernel upgrade".into());
    let s = Snapshot {
        sample: Some(Arc::new(m)),
        ..s
    };
    for p in ["replica", "primary", "auto", "backup", "promotion"] {
        let v = eval(p, &s, now, Some(60));
        assert_eq!(v.checks[0].line(), "FAIL maintenance kernel upgrade", "{p}");
        assert_eq!(
            crate::policy::render::reason(&v).as_deref(),
            Some("maintenance: kernel upgrade")
        );
    }
}

#[test]
fn heartbeat_and_delay_table() {
    let now = Instant::now() + Duration::from_secs(3600);
    let hb = |r: Result<i64, &str>| with(replica(), |s| s.heartbeat = Some(r.map_err(Into::into)));
    let allow = Thresholds {
        allow_delay: Some(true),
        ..Default::default()
    };
    let none = Thresholds::default();
    let delayed = with_ch(replica(), |c| {
        c.sql_delay = Some(Duration::from_secs(3600));
        c.lag = Some(Duration::from_secs(3000));
    });
    // (state, overrides, healthy, the lag line or first failure contains)
    #[rustfmt::skip]
    let cases: Vec<(ServerState, &Thresholds, bool, &str)> = vec![
        (hb(Ok(400_000)), &none, true, "ok lag 400ms <= 10s (heartbeat; Seconds_Behind_Master 0s)"),
        (hb(Ok(12_000_000)), &none, false, "FAIL lag heartbeat stale: newest heartbeat 12s old > 10s, relay log applied"),
        (with_ch(hb(Ok(12_000_000)), |c| c.read_log_pos += 50), &none, false, "FAIL lag 12s > 10s (heartbeat; Seconds_Behind_Master 0s)"),
        (hb(Ok(-200_000)), &none, true, "ok lag 0s <= 10s (heartbeat; clock skew: the source's clock is 200ms ahead"),
        (hb(Ok(-20_000_000)), &none, false, "FAIL lag heartbeat from the future: the source's clock is 20s ahead"),
        (hb(Err("table percona.heartbeat does not exist (1146)")), &none, false, "FAIL lag heartbeat: table percona.heartbeat does not exist (1146)"),
        (delayed.clone(), &none, false, "FAIL not_delayed delayed replica, SQL_Delay=3600s"),
        (delayed, &allow, true, "ok lag 0s <= 10s (lag 3000s minus SQL_Delay 3600s)"),
    ];
    for (i, (state, overrides, healthy, want)) in cases.into_iter().enumerate() {
        let snapshot = snap(Ok(state), now, Duration::ZERO);
        let v = eval_with(&PolicySet::builtin(), "replica", &snapshot, overrides, now);
        let shown = match v.first_failure() {
            Some(c) => c.line(),
            None => v
                .checks
                .iter()
                .find(|c| c.name == "lag")
                .map(Check::line)
                .unwrap_or_default(),
        };
        assert_eq!(v.healthy, healthy, "case {i}: {v:#?}");
        assert!(shown.contains(want), "case {i}: want {want:?} in {shown:?}");
    }
}

/// (seconds ago, read position, the source's GTIDs or None when unreadable)
type Poll = (u64, u64, Option<&'static str>);

#[test]
fn stall_needs_a_frozen_read_position_and_an_advancing_source() {
    let now = Instant::now() + Duration::from_secs(3600);
    let src = |gtid: &str| crate::snapshot::sample::SourceSample {
        addr: "127.0.0.1:3306".into(),
        outcome: Ok(crate::snapshot::sample::SourceState {
            flavor: Flavor::MariaDb,
            server_id: 1,
            version: "10.11".into(),
            gtid_executed: gtid.into(),
            server_uuid: None,
            gtid_binlog_state: None,
            binlog_position: None,
            read_only: None,
            gtid_slave_pos: None,
            semi_sync: None,
        }),
    };
    // Polls `ago` seconds before now, each with the replica's read position and the
    // source's GTIDs (None: source unreadable).
    let history = |polls: &[Poll]| {
        let mut s = Snapshot::default();
        for (ago, pos, gtid) in polls {
            let state = with_ch(replica(), |c| c.read_log_pos = *pos);
            let mut next = snap(Ok(state), now, Duration::from_secs(*ago));
            let mut sample = Arc::try_unwrap(next.sample.take().unwrap()).unwrap();
            sample.source = gtid.map(src);
            s = s.next(sample);
        }
        s
    };
    let stall = |s: &Snapshot| {
        let v = eval("replica", s, now, None);
        v.checks.iter().find(|c| c.name == "stall").unwrap().line()
    };
    #[rustfmt::skip]
    let cases: Vec<(Vec<Poll>, &str)> = vec![
        (vec![(40, 100, Some("0-1-5")), (0, 100, Some("0-1-9"))], "FAIL stall replication stalled: read position mysql-bin.000001:100 unchanged for 40s > 30s while the source kept executing transactions"),
        (vec![(40, 100, Some("0-1-5")), (0, 100, Some("0-1-5"))], "ok stall read position mysql-bin.000001:100; the source has not advanced since"),
        (vec![(10, 100, Some("0-1-5")), (0, 100, Some("0-1-9"))], "ok stall read position mysql-bin.000001:100 unchanged for 10s <= 30s while the source advances"),
        (vec![(40, 100, Some("0-1-5")), (0, 200, Some("0-1-9"))], "ok stall read position moving"),
        (vec![(40, 100, Some("0-1-5")), (0, 100, None)], "ok stall not judged: the source is not readable by the guard"),
    ];
    for (i, (polls, want)) in cases.into_iter().enumerate() {
        let got = stall(&history(&polls));
        assert!(got.starts_with(want), "case {i}: {got}");
    }
}

#[test]
fn heartbeat_is_the_lag_of_backup_and_peer_too() {
    let now = Instant::now() + Duration::from_secs(3600);
    // Seconds_Behind_Master says 0; the heartbeat says 5s.
    let hb5 = |s: ServerState| with(s, |s| s.heartbeat = Some(Ok(5_000_000)));
    let backup = snap(Ok(hb5(replica())), now, Duration::ZERO);
    let v = eval("backup", &backup, now, None);
    assert_eq!(
        v.first_failure().map(Check::line).as_deref(),
        Some("FAIL lag heartbeat stale: newest heartbeat 5s old > 2s, relay log applied: the heartbeat writer has most likely stopped")
    );
    let writer = snap(
        Ok(hb5(with(replica(), |s| s.read_only = false))),
        now,
        Duration::ZERO,
    );
    let v = eval("primary", &writer, now, None);
    assert_eq!(
        v.first_failure().map(Check::line).as_deref(),
        Some("FAIL peer 127.0.0.1:3306 connected, lag 5s > 2s")
    );
    // What the memory keeps for a lost source is the heartbeat's lag too.
    assert_eq!(
        backup.memory.io_last_connected[""].lag,
        Some(Duration::from_secs(5))
    );
}
