//! Lag over time: the heartbeat reading, lag hysteresis (`lag_stable`) and stall detection.

use super::channel::{applied, channel_check};
use super::file::Rule;
use super::limits::Limits;
use super::verdict::{Check, Input, Level};
use crate::snapshot::sample::{Channel, HeartbeatError, ServerState, ThreadState};
use crate::snapshot::LagPoint;
use crate::units::fmt_duration;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The `lag` line for channel `ch`: from the heartbeat table when one is configured, else from
/// the channel's `Seconds_Behind`.
pub(super) fn lag_line(ch: &Channel, state: &ServerState, limits: &Limits) -> Check {
    match &state.heartbeat {
        Some(hb) => heartbeat_check(hb, state, limits),
        None => channel_check(Rule::Lag, ch, limits),
    }
}

/// The `lag` line from a heartbeat reading (microseconds; negative: the source's clock is
/// ahead). Seconds_Behind_Master is still shown. A stale heartbeat with everything applied most
/// likely means the writer stopped, and says so.
pub(super) fn heartbeat_check(
    hb: &Result<i64, HeartbeatError>,
    state: &ServerState,
    limits: &Limits,
) -> Check {
    let max = limits.max_lag;
    let sbm = state
        .channels
        .iter()
        .map(|c| match c.lag {
            Some(l) => fmt_duration(l),
            None => "NULL".to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let us = match hb {
        Err(e) => return Check::fact("lag", false, format!("heartbeat: {e}")),
        Ok(us) => *us,
    };
    if us < 0 {
        let skew = Duration::from_micros(us.unsigned_abs());
        if skew > max {
            return Check::fact(
                "lag",
                false,
                format!(
                    "heartbeat from the future: the source's clock is {} ahead, beyond max_lag \
                     {}: lag cannot be measured (clock skew)",
                    fmt_duration(skew),
                    fmt_duration(max)
                ),
            );
        }
        return Check::fact(
            "lag",
            true,
            format!(
                "0s <= {} (heartbeat; clock skew: the source's clock is {} ahead; \
                 Seconds_Behind_Master {sbm})",
                fmt_duration(max),
                fmt_duration(skew)
            ),
        );
    }
    let lag = Duration::from_micros(us as u64);
    let mut c = Check::at_most("lag", lag, max, "");
    if c.ok {
        c.detail = format!("{} (heartbeat; Seconds_Behind_Master {sbm})", c.detail);
    } else if state.channels.iter().all(|ch| applied(ch, 0).0) {
        c.detail = format!(
            "heartbeat stale: newest heartbeat {} old > {}, relay log applied: the heartbeat \
             writer has most likely stopped",
            fmt_duration(lag),
            fmt_duration(max)
        );
    } else {
        c.detail = format!("{} (heartbeat; Seconds_Behind_Master {sbm})", c.detail);
    }
    c
}

/// The stall rule for one channel (see [`Rule::Stall`]).
pub(super) fn stall_check(ch: &Channel, limits: &Limits, input: &Input<'_>) -> Check {
    let name = ch.label("stall");
    let max = limits.max_stall;
    let memory = &input.snapshot.memory;
    if ch.io_thread != ThreadState::Yes {
        return Check::fact(
            name,
            true,
            format!("not judged: IO thread {}", ch.io_thread),
        );
    }
    if let Some(why) = single_poll(input) {
        return Check::leveled(name, Level::NotJudged, why);
    }
    let Some(read) = memory.read_progress.get(&ch.name) else {
        return Check::fact(name, true, "no read position seen yet".to_string());
    };
    let taken_at = input.taken_at();
    let frozen = taken_at.saturating_duration_since(read.since);
    let live = input
        .snapshot
        .sample
        .as_ref()
        .and_then(|s| s.source.as_ref())
        .is_some_and(|s| s.outcome.is_ok());
    let source_moved = memory
        .source_progress
        .as_ref()
        .is_some_and(|p| p.changed_at > read.since);
    let at = format!("{}:{}", read.file, read.pos);
    match (live, source_moved) {
        (true, true) if frozen > max => Check::fact(
            name,
            false,
            format!(
                "replication stalled: read position {at} unchanged for {} > {} while the \
                 source kept executing transactions (the IO thread still says Yes)",
                fmt_duration(round_secs(frozen)),
                fmt_duration(max)
            ),
        )
        .with_fix(
            "STOP SLAVE IO_THREAD; START SLAVE IO_THREAD; and check the network to the source",
        ),
        (true, true) => Check::fact(
            name,
            true,
            format!(
                "read position {at} unchanged for {} <= {} while the source advances",
                fmt_duration(round_secs(frozen)),
                fmt_duration(max)
            ),
        ),
        (true, false) if frozen.is_zero() => {
            Check::fact(name, true, format!("read position moving ({at})"))
        }
        (true, false) => Check::fact(
            name,
            true,
            format!("read position {at}; the source has not advanced since"),
        ),
        (false, _) => Check::fact(
            name,
            true,
            "not judged: the source is not readable by the guard".to_string(),
        ),
    }
}

/// Why a check over several polls (hysteresis, stall) cannot be judged from the snapshot: a
/// one-shot `replguard check` sees one poll, and so does the daemon's first; `None` otherwise.
fn single_poll(input: &Input<'_>) -> Option<String> {
    if input.snapshot.one_shot {
        Some("not judged: one-shot".to_string())
    } else if input.snapshot.polls <= 1 {
        Some("not judged: first poll".to_string())
    } else {
        None
    }
}

/// Where a replica stands in lag hysteresis after replaying its recent polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// No lag failure in the history.
    Steady,
    /// A lag failure, then `recover_for` consecutive polls at most `recover_lag`.
    Recovered,
    /// Failed on lag and not yet back: `good` of `need` consecutive polls so far.
    Recovering {
        good: u32,
        need: u32,
        failed_at: Instant,
    },
}

/// Replays `history` (oldest first) through the hysteresis: a lag above `max_lag` (or
/// unknown) fails; coming back takes `recover_for` consecutive polls with lag at most
/// `recover_lag`. A pure function of its inputs, so a per-request `max_lag` gets its own
/// hysteresis from the same history. Readings that flap 0 <-> thousands never recover.
pub fn lag_recovery(
    history: &VecDeque<LagPoint>,
    max_lag: Duration,
    recover_lag: Duration,
    recover_for: u32,
) -> Recovery {
    let mut state = Recovery::Steady;
    for p in history {
        let within_max = p.lag.is_some_and(|l| l <= max_lag);
        let within_recover = p.lag.is_some_and(|l| l <= recover_lag);
        state = match state {
            Recovery::Steady | Recovery::Recovered if within_max => state,
            Recovery::Steady | Recovery::Recovered => Recovery::Recovering {
                good: 0,
                need: recover_for,
                failed_at: p.at,
            },
            Recovery::Recovering { .. } if !within_max => Recovery::Recovering {
                good: 0,
                need: recover_for,
                failed_at: p.at,
            },
            Recovery::Recovering {
                good, failed_at, ..
            } if within_recover => {
                if good + 1 >= recover_for {
                    Recovery::Recovered
                } else {
                    Recovery::Recovering {
                        good: good + 1,
                        need: recover_for,
                        failed_at,
                    }
                }
            }
            Recovery::Recovering { failed_at, .. } => Recovery::Recovering {
                good: 0,
                need: recover_for,
                failed_at,
            },
        };
    }
    state
}

/// The `lag_stable` line that follows the `lag` lines: hysteresis over the recent polls.
pub(super) fn lag_stable_check(limits: &Limits, input: &Input<'_>) -> Check {
    let max = limits.max_lag;
    let recover_lag = limits.recover_lag;
    let recover_for = limits.recover_for;
    if recover_for == 0 {
        return Check::fact("lag_stable", true, "hysteresis off (recover_for 0)".into());
    }
    if let Some(why) = single_poll(input) {
        return Check::leveled("lag_stable", Level::NotJudged, why);
    }
    let history = &input.snapshot.memory.lag_history;
    let net: VecDeque<LagPoint>;
    let history = if limits.allow_delay {
        net = history
            .iter()
            .map(|p| LagPoint {
                lag: p.lag.map(|l| l.saturating_sub(p.delay)),
                ..*p
            })
            .collect();
        &net
    } else {
        history
    };
    match lag_recovery(history, max, recover_lag, recover_for) {
        Recovery::Steady => Check::fact(
            "lag_stable",
            true,
            format!("no lag failure in the last {} polls", history.len()),
        ),
        Recovery::Recovered => Check::fact(
            "lag_stable",
            true,
            format!(
                "recovered: {recover_for} polls in a row <= {}",
                fmt_duration(recover_lag)
            ),
        ),
        Recovery::Recovering {
            good,
            need,
            failed_at,
        } => Check::fact(
            "lag_stable",
            false,
            format!(
                "recovering: {good} of {need} polls <= {} since a lag failure {} ago",
                fmt_duration(recover_lag),
                fmt_duration(round_secs(input.now.saturating_duration_since(failed_at)))
            ),
        ),
    }
}

pub(super) fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}
