//! The write handover in master-master, judged on each server's own writes (the GTIDs it
//! originated): the writer's `handover` rule waits until its peer has stopped taking writes and
//! everything the peer took is applied here; the backup's `yield` rule gives the writes back,
//! stopping first, once the returning primary has caught up. Between the two, at no moment do
//! two servers answer 200 for the write port while both take writes.

use super::lag::round_secs;
use super::limits::Limits;
use super::verdict::{Check, Input, Level};
use crate::snapshot::sample::{ServerState, ThreadState};
use crate::units::fmt_duration;

/// In a writer group the lease orders the hand-over, not these checks: the holder stops
/// answering 200, waits `handover_delay`, releases at its position, and the next holder applies
/// that position before it answers (`writer_lease`). Waiting here as well would deadlock: the
/// holder keeps taking writes until the preferred writer asks, which it does only once its
/// policy passes.
fn lease_orders(input: &Input<'_>, name: &str) -> Option<Check> {
    let view = input.snapshot.sample.as_ref()?.lease.as_ref()?;
    Some(Check::fact(
        name,
        true,
        format!(
            "writer group {}: the writer lease orders the failback (the preferred writer asks \
             for the writes back)",
            view.group
        ),
    ))
}

/// The writer's `handover` line (see [`Rule::Handover`](super::Rule::Handover)).
pub(super) fn handover_check(state: &ServerState, limits: &Limits, input: &Input<'_>) -> Check {
    const NAME: &str = "handover";
    if let Some(c) = lease_orders(input, NAME) {
        return c;
    }
    if state.channels.is_empty() {
        return Check::fact(NAME, true, "none (no replica status)".to_string());
    }
    let delay = limits.handover_delay;
    let streaming = state
        .channels
        .iter()
        .any(|c| c.io_thread == ThreadState::Yes);
    let reading = input
        .snapshot
        .sample
        .as_ref()
        .and_then(|s| s.source.as_ref());
    match reading.map(|r| (&r.addr, &r.outcome)) {
        Some((_, Ok(src))) if src.own_writes().is_none() => {
            return Check::leveled(
                NAME,
                Level::NotJudged,
                "not judged: the peer's GTIDs cannot tell its own writes apart (no GTIDs): \
                 the peer check alone decides"
                    .to_string(),
            )
        }
        Some((_, Ok(_))) => {}
        // The peer lives (its channel streams) but the guard cannot read it: whether it
        // still takes writes is unknown.
        Some((addr, Err(e))) if streaming => {
            return Check::leveled(
                NAME,
                Level::Unknown,
                format!(
                    "peer {addr} streams to this server but the guard cannot read it ({e}): \
                     cannot tell whether it still takes writes"
                ),
            )
        }
        None if streaming => {
            return Check::leveled(
                NAME,
                Level::Unknown,
                "no reading of the peer: cannot tell whether it still takes writes".to_string(),
            )
        }
        // The peer is lost: its last reading stands (a lost peer takes no writes through
        // this server's HAProxy that this server could see; the peer check judges the rest).
        _ => {}
    }
    let Some(mem) = &input.snapshot.memory.source_writes else {
        return Check::fact(
            NAME,
            false,
            "the peer's own writes were never read: cannot tell whether it takes writes"
                .to_string(),
        );
    };
    let peer = &mem.addr;
    if mem.writes.is_empty() {
        return Check::fact(NAME, true, format!("peer {peer} took no writes of its own"));
    }
    let Some(since) = mem.applied_since else {
        return Check::fact(
            NAME,
            false,
            format!(
                "peer {peer} took writes not applied here yet (its own: {})",
                mem.writes
            ),
        );
    };
    if mem.changed_at.is_none() {
        return Check::fact(
            NAME,
            true,
            format!(
                "peer {peer}'s own writes {} applied here, unchanged since replguard first read it",
                mem.writes
            ),
        );
    }
    let quiet = input.now.saturating_duration_since(since);
    if quiet >= delay {
        Check::fact(
            NAME,
            true,
            format!(
                "peer {peer}'s own writes {} applied here, unchanged for {} >= handover_delay {}",
                mem.writes,
                fmt_duration(round_secs(quiet)),
                fmt_duration(delay)
            ),
        )
    } else {
        Check::fact(
            NAME,
            false,
            format!(
                "peer {peer} took writes lately ({} applied here, unchanged for {} < \
                 handover_delay {}): waiting until HAProxy has marked it DOWN",
                mem.writes,
                fmt_duration(round_secs(quiet)),
                fmt_duration(delay)
            ),
        )
    }
}

/// The backup's `yield` line (see [`Rule::Yield`](super::Rule::Yield)).
pub(super) fn yield_check(limits: &Limits, input: &Input<'_>) -> Check {
    const NAME: &str = "yield";
    // The returning primary cannot take writes before this server hands the lease over, so
    // giving them back here would only leave nobody writing (its guard may be the one cut off
    // from etcd).
    if let Some(c) = lease_orders(input, NAME) {
        return c;
    }
    let window = limits.handover_delay.saturating_mul(2);
    let own = &input.snapshot.memory.own_writes;
    let recent = own
        .iter()
        .rev()
        .find(|w| w.changed)
        .filter(|w| input.now.saturating_duration_since(w.at) <= window);
    let Some(last) = recent else {
        return Check::fact(
            NAME,
            true,
            format!(
                "took no writes of its own in the last {} (2 x handover_delay)",
                fmt_duration(window)
            ),
        );
    };
    let ago = fmt_duration(round_secs(input.now.saturating_duration_since(last.at)));
    let reading = input
        .snapshot
        .sample
        .as_ref()
        .and_then(|s| s.source.as_ref());
    let Some((addr, Ok(src))) = reading.map(|r| (&r.addr, &r.outcome)) else {
        return Check::fact(
            NAME,
            true,
            format!("took writes {ago} ago; its source is not readable: keeps them"),
        );
    };
    if src.read_only != Some(false) {
        return Check::fact(
            NAME,
            true,
            format!("took writes {ago} ago; source {addr} is read-only: keeps them"),
        );
    }
    // What this server had taken max_lag ago (at least its first recent write): the source
    // need not chase writes still arriving, only be within max_lag of them.
    let horizon = input.now.checked_sub(limits.max_lag);
    let mut recent_writes = own
        .iter()
        .filter(|w| w.changed && input.now.saturating_duration_since(w.at) <= window);
    let first = recent_writes.next().unwrap_or(last);
    let target = own
        .iter()
        .rev()
        .filter(|w| w.changed && w.at >= first.at)
        .find(|w| horizon.is_some_and(|h| w.at <= h))
        .unwrap_or(first);
    match src.has_applied(&target.writes) {
        Some(true) => Check::fact(
            NAME,
            false,
            format!(
                "took writes {ago} ago; source {addr} is back, writable and has applied them \
                 up to {} ago ({}): gives the writes back (stops first; the source takes them \
                 handover_delay {} after the last)",
                fmt_duration(limits.max_lag),
                target.writes,
                fmt_duration(limits.handover_delay)
            ),
        )
        .with_fix(
            "none needed: the returning primary takes the writes once this server has stopped; \
             to keep them here, SET GLOBAL read_only = ON on the returning primary",
        ),
        _ => Check::fact(
            NAME,
            true,
            format!(
                "took writes {ago} ago; source {addr} is back but has not applied them: keeps \
                 them"
            ),
        ),
    }
}
