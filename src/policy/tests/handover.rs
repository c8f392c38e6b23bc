//! The ordered write handover in master-master: `handover` on the writer, `yield` on the
//! backup, judged over a sequence of polls (the memory is built by `Snapshot::next`).

use super::*;
use crate::snapshot::sample::{Sample, SourceSample, SourceState};
use std::time::SystemTime;

/// A MariaDB server's reading as its peer's guard sees it: `binlog_state` and what it applied
/// from its own source (`slave_pos`), `read_only`.
fn peer(server_id: u32, binlog_state: &str, slave_pos: &str, read_only: bool) -> SourceState {
    SourceState {
        flavor: Flavor::MariaDb,
        server_id,
        version: "10.11.19-MariaDB".into(),
        gtid_executed: String::new(),
        server_uuid: None,
        gtid_binlog_state: Some(binlog_state.into()),
        binlog_position: None,
        read_only: Some(read_only),
        gtid_slave_pos: Some(slave_pos.into()),
        semi_sync: None,
    }
}

/// One poll: at `at` seconds, this server's own binary log state and applied position, its
/// channel connected or lost, and the peer's reading (`None`: unreadable).
struct Poll {
    at: u64,
    binlog_state: &'static str,
    slave_pos: &'static str,
    connected: bool,
    peer: Option<SourceState>,
}

fn polls(server: ServerState, seq: Vec<Poll>, start: Instant) -> Snapshot {
    let mut s = Snapshot::default();
    for p in seq {
        let state = with(server.clone(), |s| {
            s.read_only = false;
            s.gtid.binlog_state = Some(p.binlog_state.into());
            s.gtid.slave_pos = Some(p.slave_pos.into());
            s.uptime = Some(Duration::from_secs(1000 + p.at));
            if !p.connected {
                s.channels[0].io_thread = ThreadState::Connecting;
                s.channels[0].last_io_errno = 2003;
                s.channels[0].lag = None;
            }
        });
        s = s.next(Sample {
            taken_at: start + Duration::from_secs(p.at),
            taken_at_wall: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(2),
            outcome: Ok(state),
            source: Some(SourceSample {
                addr: "127.0.0.1:3306".into(),
                outcome: p
                    .peer
                    .ok_or_else(|| err(ProbeErrorKind::Refused, None, "refused")),
            }),
            maintenance: None,
            maintenance_error: None,
            lease: None,
        });
    }
    s
}

/// `snap` with a lease view in its sample, as for an instance in writer group `m0`.
fn in_writer_group(snap: &Snapshot) -> Snapshot {
    let mut sample = (**snap.sample.as_ref().unwrap()).clone();
    sample.lease = Some(crate::snapshot::lease::LeaseView::for_tests(None));
    Snapshot {
        sample: Some(std::sync::Arc::new(sample)),
        ..snap.clone()
    }
}

fn line(v: &Verdict, name: &str) -> String {
    v.checks
        .iter()
        .find(|c| c.name == name)
        .map(Check::line)
        .unwrap_or_else(|| panic!("no {name} line: {v:#?}"))
}

/// A (server_id 1, domain 0) judges whether B (server_id 2, domain 1) has stopped writing.
#[test]
fn the_writer_waits_until_the_peer_stopped_and_its_writes_are_applied() {
    let start = Instant::now();
    let delay = Thresholds {
        handover_delay: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let a = |at, slave_pos, b_state: &'static str, connected| Poll {
        at,
        binlog_state: "0-1-100",
        slave_pos,
        connected,
        peer: Some(peer(2, b_state, "0-1-100", false)),
    };
    let unreadable = |at, connected| Poll {
        peer: None,
        ..a(at, "1-2-50", "", connected)
    };
    #[rustfmt::skip]
    let cases: Vec<(Vec<Poll>, u64, bool, &str)> = vec![
        // Steady state: B never took a write of its own.
        (vec![a(0, "", "0-1-100", true)], 0, true, "ok handover peer 127.0.0.1:3306 took no writes of its own"),
        // B's old writes, applied here before this guard started: nothing to wait for.
        (vec![a(0, "1-2-50", "0-1-100,1-2-50", true)], 0, true, "unchanged since replguard first read it"),
        // The first reading lacks some of them: they count as new.
        (vec![a(0, "1-2-49", "0-1-100,1-2-50", true), a(1, "1-2-50", "0-1-100,1-2-50", true)], 1, false, "unchanged for 0s < handover_delay 5s"),
        // Failback: B took writes while A was away, A applies them, B keeps writing.
        (vec![a(0, "", "0-1-100", true), a(1, "1-2-40", "0-1-100,1-2-50", true)], 1, false, "FAIL handover peer 127.0.0.1:3306 took writes not applied here yet (its own: 1-2-50)"),
        (vec![a(0, "", "0-1-100", true), a(1, "1-2-50", "0-1-100,1-2-50", true), a(2, "1-2-60", "0-1-100,1-2-60", true)], 2, false, "unchanged for 0s < handover_delay 5s"),
        // B stopped (HAProxy marked it DOWN): A takes the writes handover_delay later.
        (vec![a(0, "", "0-1-100", true), a(1, "1-2-60", "0-1-100,1-2-60", true), a(5, "1-2-60", "0-1-100,1-2-60", true)], 5, false, "unchanged for 4s < handover_delay 5s"),
        (vec![a(0, "", "0-1-100", true), a(1, "1-2-60", "0-1-100,1-2-60", true), a(6, "1-2-60", "0-1-100,1-2-60", true)], 6, true, "ok handover peer 127.0.0.1:3306's own writes 1-2-60 applied here, unchanged for 5s >= handover_delay 5s"),
        // The peer streams but the guard cannot read it: unknown, fail closed.
        (vec![a(0, "", "0-1-100", true), unreadable(1, true)], 1, false, "UNKNOWN handover peer 127.0.0.1:3306 streams to this server but the guard cannot read it"),
        // The peer is lost: its last reading stands (losing the backup never takes the writer down).
        (vec![a(0, "1-2-50", "0-1-100,1-2-50", true), unreadable(100, false)], 100, true, "unchanged since replguard first read it"),
        (vec![a(0, "", "0-1-100", true), a(1, "1-2-50", "0-1-100,1-2-50", true), unreadable(100, false)], 100, true, "unchanged for 99s >= handover_delay 5s"),
        (vec![a(0, "", "0-1-100", true), a(1, "1-2-40", "0-1-100,1-2-50", true), unreadable(100, false)], 100, false, "took writes not applied here yet"),
        // Never read at all, peer lost: fail closed.
        (vec![unreadable(0, false)], 0, false, "FAIL handover the peer's own writes were never read"),
    ];
    for (i, (seq, now, healthy, want)) in cases.into_iter().enumerate() {
        let snapshot = polls(
            with(primary(), |s| s.channels = replica().channels),
            seq,
            start,
        );
        let now = start + Duration::from_secs(now);
        let v = eval_with(&PolicySet::builtin(), "primary", &snapshot, &delay, now);
        let got = line(&v, "handover");
        assert!(got.contains(want), "case {i}: want {want:?} in {got:?}");
        let ok = v.checks.iter().find(|c| c.name == "handover").unwrap().ok;
        assert_eq!(ok, healthy, "case {i}: {got}");
    }
}

/// B (server_id 2, domain 1, replicating from A) gives the writes back once A has caught up.
#[test]
fn the_backup_that_took_writes_yields_to_a_caught_up_writable_source() {
    let start = Instant::now();
    let delay = Thresholds {
        handover_delay: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let b = |at, own: &'static str, a_applied: &'static str, a_read_only| Poll {
        at,
        binlog_state: own,
        slave_pos: "0-1-100",
        connected: true,
        peer: Some(peer(1, "0-1-100", a_applied, a_read_only)),
    };
    let lost = |at, own| Poll {
        peer: None,
        connected: false,
        ..b(at, own, "", false)
    };
    #[rustfmt::skip]
    let cases: Vec<(Vec<Poll>, u64, bool, &str)> = vec![
        // Steady state: the backup takes no writes; a writable, caught-up source changes nothing.
        (vec![b(0, "0-1-100,1-2-5", "1-2-5", false), b(1, "0-1-100,1-2-5", "1-2-5", false)], 1, true, "ok yield took no writes of its own in the last 10s (2 x handover_delay)"),
        // Failover: the backup takes the writes while its source is gone.
        (vec![b(0, "0-1-100", "", false), lost(1, "0-1-100,1-2-5"), lost(2, "0-1-100,1-2-9")], 2, true, "ok yield took writes 0s ago; its source is not readable: keeps them"),
        // The source is back but read-only: the operator keeps the writes here.
        (vec![b(0, "0-1-100", "", false), lost(1, "0-1-100,1-2-5"), b(2, "0-1-100,1-2-9", "1-2-9", true)], 2, true, "source 127.0.0.1:3306 is read-only: keeps them"),
        // Back, writable, but behind: keeps them.
        (vec![b(0, "0-1-100", "", false), lost(1, "0-1-100,1-2-5"), b(2, "0-1-100,1-2-9", "1-2-4", false)], 2, true, "is back but has not applied them: keeps them"),
        // Back, writable and within max_lag (2s) of the writes still arriving: yields.
        (vec![b(0, "0-1-100", "", false), b(1, "0-1-100,1-2-5", "", false), b(2, "0-1-100,1-2-7", "", false), b(3, "0-1-100,1-2-9", "1-2-7", false), b(4, "0-1-100,1-2-11", "1-2-7", false)], 4, false, "FAIL yield took writes 0s ago; source 127.0.0.1:3306 is back, writable and has applied them up to 2s ago (1-2-7)"),
        // Its writes are older than 2 x handover_delay: it is a backup again.
        (vec![b(0, "0-1-100", "", false), b(1, "0-1-100,1-2-5", "", false), b(12, "0-1-100,1-2-5", "1-2-5", false)], 12, true, "took no writes of its own in the last 10s"),
    ];
    for (i, (seq, now, healthy, want)) in cases.into_iter().enumerate() {
        let snapshot = polls(with(replica(), |s| s.server_id = 2), seq, start);
        let now = start + Duration::from_secs(now);
        let v = eval_with(&PolicySet::builtin(), "backup", &snapshot, &delay, now);
        let got = line(&v, "yield");
        assert!(got.contains(want), "case {i}: want {want:?} in {got:?}");
        let ok = v.checks.iter().find(|c| c.name == "yield").unwrap().ok;
        assert_eq!(ok, healthy, "case {i}: {got}");
    }
}

/// MySQL: own writes are the transactions of the server's `server_uuid` in `gtid_executed`.
#[test]
fn mysql_handover_and_yield_judge_by_server_uuid() {
    const UA: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const UB: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562";
    let start = Instant::now();
    let delay = Thresholds {
        handover_delay: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let mysql = |s: ServerState, uuid: &str, executed: String| {
        with(s, |s| {
            s.flavor = Flavor::MySql;
            s.super_read_only = Some(false);
            s.read_only = false;
            s.server_uuid = Some(uuid.into());
            s.gtid.executed = Some(executed);
        })
    };
    let reading = |uuid: &str, executed: String| SourceState {
        flavor: Flavor::MySql,
        server_id: 9,
        version: "8.0.36".into(),
        gtid_executed: executed,
        server_uuid: Some(uuid.into()),
        gtid_binlog_state: None,
        binlog_position: None,
        read_only: Some(false),
        gtid_slave_pos: None,
        semi_sync: None,
    };
    let step = |s: Snapshot, at: u64, state: ServerState, src: SourceState| {
        s.next(Sample {
            taken_at: start + Duration::from_secs(at),
            taken_at_wall: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(2),
            outcome: Ok(state),
            source: Some(SourceSample {
                addr: "127.0.0.1:3306".into(),
                outcome: Ok(src),
            }),
            maintenance: None,
            maintenance_error: None,
            lease: None,
        })
    };
    let a = with(primary(), |s| s.channels = replica().channels);
    // A has B's first write; B takes a second; A applies it and B stays quiet.
    let mut snap_a = step(
        Snapshot::default(),
        0,
        mysql(a.clone(), UA, format!("{UA}:1-100")),
        reading(UB, format!("{UA}:1-100")),
    );
    snap_a = step(
        snap_a,
        1,
        mysql(a.clone(), UA, format!("{UA}:1-100,{UB}:1")),
        reading(UB, format!("{UA}:1-100,{UB}:1-2")),
    );
    let v = eval_with(
        &PolicySet::builtin(),
        "primary",
        &snap_a,
        &delay,
        start + Duration::from_secs(1),
    );
    assert!(
        line(&v, "handover").contains(&format!("not applied here yet (its own: {UB}:1-2)")),
        "{v:#?}"
    );
    // In a writer group the lease orders it: the holder releases at its position and this
    // server applies it before it answers (writer_lease), so handover does not wait too.
    let v = eval_with(
        &PolicySet::builtin(),
        "primary",
        &in_writer_group(&snap_a),
        &delay,
        start + Duration::from_secs(1),
    );
    assert!(
        line(&v, "handover").starts_with("ok handover writer group m0: the writer lease orders"),
        "{v:#?}"
    );
    snap_a = step(
        snap_a,
        2,
        mysql(a.clone(), UA, format!("{UA}:1-100,{UB}:1-2")),
        reading(UB, format!("{UA}:1-100,{UB}:1-2")),
    );
    let v = eval_with(
        &PolicySet::builtin(),
        "primary",
        &snap_a,
        &delay,
        start + Duration::from_secs(7),
    );
    assert!(line(&v, "handover").starts_with("ok handover"), "{v:#?}");

    // B took them and its source A has them all: B yields.
    let b = replica();
    let mut snap_b = step(
        Snapshot::default(),
        0,
        mysql(b.clone(), UB, format!("{UA}:1-100")),
        reading(UA, format!("{UA}:1-100")),
    );
    snap_b = step(
        snap_b,
        1,
        mysql(b.clone(), UB, format!("{UA}:1-100,{UB}:1-2")),
        reading(UA, format!("{UA}:1-100,{UB}:1-2")),
    );
    let v = eval_with(
        &PolicySet::builtin(),
        "backup",
        &snap_b,
        &delay,
        start + Duration::from_secs(1),
    );
    assert!(
        line(&v, "yield").starts_with("FAIL yield took writes 0s ago"),
        "{v:#?}"
    );

    // The same backup in a writer group: the lease orders the failback, it keeps the writes
    // until the preferred writer asks for them (the writer_lease line decides the rest).
    let leased = in_writer_group(&snap_b);
    let v = eval_with(
        &PolicySet::builtin(),
        "backup",
        &leased,
        &delay,
        start + Duration::from_secs(1),
    );
    assert!(
        line(&v, "yield").starts_with("ok yield writer group m0: the writer lease orders"),
        "{v:#?}"
    );
}
