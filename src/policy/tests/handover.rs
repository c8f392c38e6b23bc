//! The ordered write handover in master-master: `handover` on the writer, `yield` on the
//! backup, judged over a sequence of polls (the memory is built by `Snapshot::next`).

use super::*;
use crate::sample::{Sample, SourceSample, SourceState};
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
        });
    }
    s
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
