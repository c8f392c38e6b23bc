//! `semi_sync` on the backup gate: the guarantee, and an honest account otherwise (a warning,
//! a failure with `require_semi_sync`).

use super::*;
use crate::snapshot::sample::{Sample, SemiSync, SourceSample, SourceState};
use std::time::SystemTime;

fn source(semi: Option<SemiSync>) -> SourceState {
    SourceState {
        flavor: Flavor::MariaDb,
        server_id: 1,
        version: "10.11.19-MariaDB".into(),
        gtid_executed: "0-1-5".into(),
        server_uuid: None,
        gtid_binlog_state: Some("0-1-5".into()),
        binlog_position: None,
        read_only: Some(false),
        gtid_slave_pos: Some(String::new()),
        semi_sync: semi,
    }
}

fn on(wait_point: &str, clients: u64) -> SemiSync {
    SemiSync {
        source_enabled: Some(true),
        source_status: Some(true),
        wait_point: Some(wait_point.into()),
        clients: Some(clients),
        ..SemiSync::default()
    }
}

#[test]
fn semi_sync_table() {
    let now = Instant::now() + Duration::from_secs(3600);
    let acking = |yes: bool| {
        with(replica(), |s| {
            s.gtid.current_pos = Some("0-1-5".into());
            s.semi_sync = Some(SemiSync {
                replica_enabled: Some(yes),
                replica_status: Some(yes),
                ..SemiSync::default()
            });
        })
    };
    let fallen = SemiSync {
        source_status: Some(false),
        ..on("AFTER_SYNC", 0)
    };
    #[rustfmt::skip]
    let cases: Vec<(ServerState, Option<SemiSync>, bool, &str)> = vec![
        (acking(true), Some(on("AFTER_SYNC", 1)), true, "ok semi_sync source 127.0.0.1:3306 was semi-sync (AFTER_SYNC), this server acking: no acknowledged commit can be missing"),
        (acking(true), Some(on("AFTER_COMMIT", 1)), false, "semi-sync AFTER_COMMIT: other sessions may have read a commit before any replica had it"),
        (acking(false), Some(on("AFTER_SYNC", 1)), false, "but this server is not an acking replica"),
        (acking(true), Some(on("AFTER_SYNC", 2)), false, "with 2 acking replicas: an acknowledged commit reached one of them, not necessarily this one"),
        (acking(true), Some(fallen), false, "asynchronous since before replguard's first reading"),
        (acking(true), None, false, "has no semi-sync: asynchronous, commits it acknowledged may be missing here"),
    ];
    for (i, (state, semi, guaranteed, want)) in cases.into_iter().enumerate() {
        let snapshot = Snapshot::default().next(Sample {
            taken_at: now,
            taken_at_wall: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(2),
            outcome: Ok(state),
            source: Some(SourceSample {
                addr: "127.0.0.1:3306".into(),
                outcome: Ok(source(semi)),
            }),
            maintenance: None,
            maintenance_error: None,
            lease: None,
        });
        for require in [false, true] {
            let t = Thresholds {
                require_semi_sync: Some(require),
                ..Default::default()
            };
            let v = eval_with(&PolicySet::builtin(), "backup", &snapshot, &t, now);
            let c = v.checks.iter().find(|c| c.name == "semi_sync").unwrap();
            assert!(
                c.detail.contains(want) || c.line().contains(want),
                "case {i}: {}",
                c.line()
            );
            let level = if guaranteed {
                Level::Ok
            } else if require {
                Level::Fail
            } else {
                Level::Warn
            };
            assert_eq!(c.level, level, "case {i} require {require}: {}", c.line());
        }
    }
}
