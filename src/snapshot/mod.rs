//! The unit the poller publishes and every reader shares: the latest sample of one instance plus
//! what the poller remembers across polls.
//!
//! A snapshot is immutable once published (readers hold an `Arc`). Moving from one snapshot to the
//! next is the pure [`Snapshot::next`]; no I/O and no clock reads happen here.

pub mod lease;
pub mod sample;

use crate::gtid::Origin;
use crate::snapshot::sample::{
    ProbeError, Sample, ServerState, SourceSample, SourceState, ThreadState,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Everything known about one instance at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The latest finished poll; `None` until the first poll finishes (a check then fails closed).
    pub sample: Option<Arc<Sample>>,
    /// What earlier polls showed that later policies need.
    pub memory: Memory,
    /// How many polls have finished, for `/status` and tests.
    pub polls: u64,
    /// A one-shot `replguard check`: one poll, never more; checks over several polls say
    /// "not judged: one-shot".
    pub one_shot: bool,
}

/// Facts carried from poll to poll.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// Per channel name: the last poll that saw its IO thread connected (`Yes`), and the lag then.
    /// When the source vanishes the lag becomes NULL; this is what was known just before.
    pub io_last_connected: BTreeMap<String, SeenConnected>,
    /// The most recent failed poll, kept after recovery so `/status` can tell what happened.
    pub last_error: Option<(SystemTime, ProbeError)>,
    /// True when `io_last_connected` came from the state file of an earlier replguard run.
    pub restored: bool,
    /// The last successful read of the replica's source: the evidence the promotion checklist
    /// falls back to when the source is unreachable.
    pub last_source: Option<SourceSeen>,
    /// The worst channel lag of each recent successful poll, oldest first, at most
    /// [`LAG_HISTORY`] entries: lag hysteresis is judged on it, per request.
    pub lag_history: VecDeque<LagPoint>,
    /// Per channel: the IO thread's read position and since when it has not moved.
    pub read_progress: BTreeMap<String, ReadProgress>,
    /// The source's executed GTIDs as last read, and when they last changed.
    pub source_progress: Option<SourceProgress>,
    /// The errant transactions (`count: set`) the last successful source read showed on this
    /// server; `None`: none. Kept while the source is unreadable: a source that dies does not
    /// make them go away (set by the poller, which reads both).
    pub errant_at_last_source: Option<String>,
    /// This server's own writes (the GTIDs it originated) at each change, oldest first, at most
    /// [`LAG_HISTORY`] entries: `yield` asks whether its source has applied them.
    pub own_writes: VecDeque<WritesSeen>,
    /// The source's own writes as last read, and since when this server has applied all of
    /// them: `handover` asks whether the peer has stopped taking writes.
    pub source_writes: Option<SourceWrites>,
    /// Whether the source was really semi-synchronous at its readings, since when, and whether
    /// this server was an acking replica at the last one: `semi_sync` judges on it, also after
    /// the source is lost.
    pub source_semi_sync: Option<SourceSemiSync>,
    /// Since when this server's commits have waited for a semi-sync ack with no ack arriving:
    /// `semi_sync_wait` judges on it.
    pub semi_sync_stuck: Option<SemiSyncStuck>,
}

/// The source's semi-sync status across its readings.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSemiSync {
    /// `Rpl_semi_sync_master_status` ON at the last reading.
    pub on: bool,
    /// The first reading that showed `on` as it is now.
    pub since: Instant,
    pub since_wall: SystemTime,
    /// `since` is replguard's first reading of this source: it was so already before.
    pub since_first_reading: bool,
    /// This server's `Rpl_semi_sync_slave_status` at the last reading (`None`: no semi-sync
    /// here).
    pub acking: Option<bool>,
}

/// Commits waiting for a semi-sync ack while the ack count stands still.
#[derive(Debug, Clone, PartialEq)]
pub struct SemiSyncStuck {
    pub since: Instant,
    pub since_wall: SystemTime,
    /// Sessions waiting at the latest poll.
    pub sessions: u64,
    /// `yes_tx + no_tx` when the wait began: an ack (or a timeout) moves it.
    pub acked_tx: Option<u64>,
}

/// This server's own writes as one poll first showed them.
#[derive(Debug, Clone, PartialEq)]
pub struct WritesSeen {
    pub at: Instant,
    pub writes: Origin,
    /// False for the first reading: replguard did not see them come, they may be old.
    pub changed: bool,
}

/// A source's own writes (in master-master: the writes its peer took) as the guard last read
/// them, and what this server had applied of them then.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceWrites {
    /// `host:port` of the source read.
    pub addr: String,
    pub writes: Origin,
    /// When a reading last showed them change; `None`: unchanged since replguard first read
    /// this source, and applied here already then.
    pub changed_at: Option<Instant>,
    /// Since when this server has applied every one of them (`None`: it has not).
    pub applied_since: Option<Instant>,
    /// The reading that showed them.
    pub read_at: Instant,
}

/// A channel's read position (`Source_Log_File`, `Read_Source_Log_Pos`) and since when.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadProgress {
    pub file: String,
    pub pos: u64,
    pub since: Instant,
}

/// The source's executed GTIDs and when they were first seen as such.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceProgress {
    pub gtid_executed: String,
    pub changed_at: Instant,
}

/// How many polls of lag history a snapshot keeps.
pub const LAG_HISTORY: usize = 64;

/// One poll's worst lag over all channels; `None` when any channel's lag was NULL or the server
/// had no replica status (unknown lag counts as failing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LagPoint {
    pub at: Instant,
    pub lag: Option<Duration>,
    /// The largest `SQL_Delay` over the channels then (a policy may judge lag net of it).
    pub delay: Duration,
}

/// One successful read of a replica's source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSeen {
    pub at: Instant,
    pub at_wall: SystemTime,
    pub addr: String,
    pub state: SourceState,
}

/// One observation of a channel with its IO thread connected.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenConnected {
    pub at: Instant,
    pub at_wall: SystemTime,
    /// The lag reported then; `None` if it was NULL even while connected.
    pub lag: Option<Duration>,
    /// The server's uptime then: a later uptime that does not cover the time since means the
    /// server restarted in between.
    pub uptime: Option<Duration>,
    /// `host:port` of the source it was connected to: after the channel is repointed, the
    /// observation says nothing about the new source.
    pub source: String,
}

/// The memory of a source's own writes after a reading (`at`) that showed `writes`, with
/// `state` read just before it.
fn source_writes(
    prev: Option<&SourceWrites>,
    addr: &str,
    writes: Origin,
    state: &ServerState,
    at: Instant,
) -> SourceWrites {
    let prev = prev.filter(|p| p.addr == addr);
    let unchanged = prev.filter(|p| p.writes == writes);
    let applied = state.has_applied(&writes) == Some(true);
    let changed_at = match (prev, unchanged) {
        // The first reading cannot tell when they were taken: old if this server has them
        // all already (a guard started beside a caught-up writer), new if it lacks some.
        (None, _) if applied => None,
        (None, _) | (Some(_), None) => Some(at),
        (Some(p), Some(_)) => p.changed_at,
    };
    let applied_since = match applied {
        true => unchanged.and_then(|p| p.applied_since).or(Some(at)),
        false => None,
    };
    SourceWrites {
        addr: addr.to_string(),
        writes,
        changed_at,
        applied_since,
        read_at: at,
    }
}

impl Snapshot {
    /// The snapshot that follows `self` once `sample` has been taken.
    pub fn next(&self, sample: Sample) -> Snapshot {
        let mut memory = self.memory.clone();
        match &sample.outcome {
            Ok(state) => {
                let worst = state.judged_lag();
                if memory.lag_history.len() == LAG_HISTORY {
                    memory.lag_history.pop_front();
                }
                memory.lag_history.push_back(LagPoint {
                    at: sample.taken_at,
                    lag: worst,
                    delay: state
                        .channels
                        .iter()
                        .filter_map(|c| c.sql_delay)
                        .max()
                        .unwrap_or_default(),
                });
                for ch in &state.channels {
                    let moved = memory
                        .read_progress
                        .get(&ch.name)
                        .is_none_or(|p| p.file != ch.read_log_file || p.pos != ch.read_log_pos);
                    if moved {
                        memory.read_progress.insert(
                            ch.name.clone(),
                            ReadProgress {
                                file: ch.read_log_file.clone(),
                                pos: ch.read_log_pos,
                                since: sample.taken_at,
                            },
                        );
                    }
                    if ch.io_thread == ThreadState::Yes {
                        memory.restored = false;
                        memory.io_last_connected.insert(
                            ch.name.clone(),
                            SeenConnected {
                                at: sample.taken_at,
                                at_wall: sample.taken_at_wall,
                                lag: state.effective_lag(ch),
                                uptime: state.uptime,
                                source: ch.source_addr(),
                            },
                        );
                    }
                }
            }
            Err(err) => memory.last_error = Some((sample.taken_at_wall, err.clone())),
        }
        if let Ok(state) = &sample.outcome {
            memory.semi_sync_stuck = match state.semi_sync.as_ref() {
                Some(s) if s.wait_sessions.unwrap_or(0) > 0 => {
                    let sessions = s.wait_sessions.unwrap_or(0);
                    match &memory.semi_sync_stuck {
                        Some(p) if p.acked_tx == s.acked_tx => Some(SemiSyncStuck {
                            sessions,
                            ..p.clone()
                        }),
                        _ => Some(SemiSyncStuck {
                            since: sample.taken_at,
                            since_wall: sample.taken_at_wall,
                            sessions,
                            acked_tx: s.acked_tx,
                        }),
                    }
                }
                _ => None,
            };
            if let Some(SourceSample {
                outcome: Ok(src), ..
            }) = &sample.source
            {
                let on = src.semi_sync.as_ref().and_then(|s| s.source_status) == Some(true);
                let acking = state.semi_sync.as_ref().and_then(|s| s.replica_status);
                memory.source_semi_sync = Some(match &memory.source_semi_sync {
                    Some(p) if p.on == on => SourceSemiSync {
                        acking,
                        ..p.clone()
                    },
                    prev => SourceSemiSync {
                        on,
                        since: sample.taken_at,
                        since_wall: sample.taken_at_wall,
                        since_first_reading: prev.is_none(),
                        acking,
                    },
                });
            }
            if let Some(writes) = state.own_writes() {
                if memory.own_writes.back().is_none_or(|w| w.writes != writes) {
                    if memory.own_writes.len() == LAG_HISTORY {
                        memory.own_writes.pop_front();
                    }
                    let changed = !memory.own_writes.is_empty();
                    memory.own_writes.push_back(WritesSeen {
                        at: sample.taken_at,
                        writes,
                        changed,
                    });
                }
            }
            if let Some(SourceSample {
                addr,
                outcome: Ok(src),
            }) = &sample.source
            {
                memory.source_writes = src.own_writes().map(|writes| {
                    source_writes(
                        memory.source_writes.as_ref(),
                        addr,
                        writes,
                        state,
                        sample.taken_at,
                    )
                });
            }
        }
        if let Some(SourceSample {
            addr,
            outcome: Ok(state),
        }) = &sample.source
        {
            if memory
                .source_progress
                .as_ref()
                .is_none_or(|p| p.gtid_executed != state.gtid_executed)
            {
                memory.source_progress = Some(SourceProgress {
                    gtid_executed: state.gtid_executed.clone(),
                    changed_at: sample.taken_at,
                });
            }
            memory.last_source = Some(SourceSeen {
                at: sample.taken_at,
                at_wall: sample.taken_at_wall,
                addr: addr.clone(),
                state: state.clone(),
            });
        }
        Snapshot {
            sample: Some(Arc::new(sample)),
            memory,
            polls: self.polls + 1,
            one_shot: self.one_shot,
        }
    }

    /// How old the latest sample is at `now`; `None` before the first poll.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.sample
            .as_ref()
            .map(|s| now.saturating_duration_since(s.taken_at))
    }
}
