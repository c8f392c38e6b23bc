//! The checks that judge a replica by its source: the backup gate's `source` rule, the writer's
//! `peer` rule (failback), and the memory both fall back on when the source is lost (newer
//! source readings beat it).

use super::channel::{applied, in_flight, streaming};
use super::evidence;
use super::lag::{lag_line, round_secs};
use super::limits::Limits;
use super::verdict::{Check, Input};
use crate::snapshot::sample::{Channel, ServerState, ThreadState};
use crate::units::{clock_time, fmt_duration};
use std::time::Duration;

/// The backup gate's lag rule for one channel (see [`Rule::Source`]).
pub(super) fn source_check(
    ch: &Channel,
    state: &ServerState,
    limits: &Limits,
    input: &Input<'_>,
) -> Check {
    if ch.io_thread == ThreadState::Yes {
        return lag_line(ch, state, limits);
    }
    if !source_unreachable(ch) {
        return broken_io(ch, "");
    }
    let recall = remembered(ch, state, limits, input);
    Check::fact(ch.label("source_lost"), recall.trusted, recall.detail)
}

/// The master-master rule for a writer (see [`Rule::Peer`]): its channel from the peer must be
/// connected and caught up, or have been caught up when the peer vanished.
pub(super) fn peer_check(
    ch: &Channel,
    state: &ServerState,
    limits: &Limits,
    input: &Input<'_>,
) -> Check {
    let name = ch.label("peer");
    let peer = ch.source_addr();
    let limit = limits.max_lag;
    if ch.io_thread == ThreadState::Yes {
        // While the peer streams, bytes between read and executed are in flight (in
        // master-master they are often this writer's own writes coming back, which the SQL
        // thread skips): lag judges. The handover rule decides whether every write the peer
        // took is applied here.
        let (applied_ok, applied_detail) = applied(ch, limits.max_apply_backlog);
        let in_flight_ok = applied_ok || streaming(ch);
        let applied_detail = if applied_ok {
            "relay log applied".to_string()
        } else if in_flight_ok {
            in_flight(ch)
        } else {
            applied_detail
        };
        let (ok, detail) = match state.effective_lag(ch) {
            _ if ch.sql_thread != ThreadState::Yes => (
                false,
                format!("{peer} connected, SQL thread {}, want Yes", ch.sql_thread),
            ),
            None => (
                false,
                format!(
                    "{peer} connected, lag NULL (unknown), want <= {}",
                    fmt_duration(limit)
                ),
            ),
            Some(lag) if lag > limit => (
                false,
                format!(
                    "{peer} connected, lag {} > {}",
                    fmt_duration(lag),
                    fmt_duration(limit)
                ),
            ),
            Some(lag) if !in_flight_ok => (
                false,
                format!(
                    "{peer} connected, lag {}, {applied_detail}",
                    fmt_duration(lag)
                ),
            ),
            Some(lag) => (
                true,
                format!(
                    "{peer} connected, lag {} <= {}, {applied_detail}",
                    fmt_duration(lag),
                    fmt_duration(limit)
                ),
            ),
        };
        return Check::fact(name, ok, detail);
    }
    if !source_unreachable(ch) {
        let broken = broken_io(ch, &format!(" (peer {peer})"));
        return if limits.allow_isolated {
            Check::fact(
                name,
                true,
                format!(
                    "{}; ADMITTED BY allow_isolated: if {peer} still takes writes this is \
                     split brain",
                    broken.detail
                ),
            )
        } else {
            broken
        };
    }
    match remembered(ch, state, limits, input) {
        Recall {
            trusted: true,
            detail,
        } => Check::fact(name, true, format!("{peer} lost {detail}")),
        Recall { detail, .. } if limits.allow_isolated => Check::fact(
            name,
            true,
            format!(
                "{peer} lost {detail}; ADMITTED BY allow_isolated: if {peer} still takes \
                 writes this is split brain"
            ),
        ),
        Recall { detail, .. } => Check::fact(name, false, format!("{peer} lost {detail}")),
    }
}

/// The `io_thread` line of a channel whose IO thread is not connected although its source is
/// not lost: stopped by hand, or failing for another reason than the network (1236 binlog
/// purged on the source, 1045 replication user refused). The source lives and may keep taking
/// writes this server does not get: that is broken replication, named as such. `whose` follows
/// the state in the detail (e.g. the peer's address).
fn broken_io(ch: &Channel, whose: &str) -> Check {
    let name = ch.label("io_thread");
    if ch.last_io_errno == 0 {
        return Check::fact(
            name,
            false,
            format!(
                "{}{whose}: stopped without a connection error, so the source is not lost: \
                 replication is broken and the source may still take writes",
                ch.io_thread
            ),
        );
    }
    Check::fact(
        name,
        false,
        format!(
            "{}{whose}: error {} {}: replication broken, the source is not lost",
            ch.io_thread, ch.last_io_errno, ch.last_io_error
        ),
    )
    .with_cause(format!("errno {}", ch.last_io_errno))
}

/// What the memory of a lost source says: whether it is trusted, and the detail for the
/// verdict line either way.
struct Recall {
    trusted: bool,
    detail: String,
}

impl Recall {
    fn void(detail: String) -> Recall {
        Recall {
            trusted: false,
            detail,
        }
    }
}

/// Judges a channel whose IO thread is not connected by what the poller remembers: the last
/// connected observation must have shown lag within `max_lag`, the server must not have
/// restarted since, the relay log must be applied, and `max_source_lost` (if set) must not have
/// run out.
fn remembered(ch: &Channel, state: &ServerState, limits: &Limits, input: &Input<'_>) -> Recall {
    let limit = limits.max_lag;
    let Some(seen) = input.snapshot.memory.io_last_connected.get(&ch.name) else {
        return Recall::void(format!(
            "IO thread {} and never seen connected: no caught-up observation to trust",
            ch.io_thread
        ));
    };
    let source_now = ch.source_addr();
    if seen.source != source_now {
        return Recall::void(format!(
            "the channel now replicates from {source_now}, last seen connected to {}: no \
             caught-up observation of this source",
            seen.source
        ));
    }
    let taken_at = input.taken_at();
    let since = format!(
        "since {} ({} ago)",
        clock_time(seen.at_wall),
        fmt_duration(round_secs(input.now.saturating_duration_since(seen.at)))
    );
    // Newer evidence beats memory. The guard may still reach the source the replica lost (a
    // partition between the two), or have read it after the replica lost it: what the source
    // had then decides, not the older caught-up observation.
    if let Some(missing) = evidence::missing_from_source(state, ch, input) {
        return Recall::void(format!("{since}, {missing}"));
    }
    // A server that restarted after the observation may have missed writes while it was down:
    // its uptime now must cover its uptime then plus the time since. Uptime has whole-second
    // granularity (both readings may be up to 1s short), hence the tolerance.
    const UPTIME_TOLERANCE: Duration = Duration::from_millis(1250);
    match (state.uptime, seen.uptime) {
        (Some(now_up), Some(then_up))
            if now_up + UPTIME_TOLERANCE
                >= then_up + taken_at.saturating_duration_since(seen.at) => {}
        (Some(now_up), Some(_)) => {
            return Recall::void(format!(
                "{since}, memory void: the server restarted {} ago",
                fmt_duration(now_up)
            ))
        }
        _ => return Recall::void(format!("{since}, memory void: server uptime unknown")),
    }
    let last = match seen.lag {
        Some(lag) if lag <= limit => format!("last lag {}", fmt_duration(lag)),
        Some(lag) => {
            return Recall::void(format!(
                "{since}, last lag {} > {}",
                fmt_duration(lag),
                fmt_duration(limit)
            ))
        }
        None => return Recall::void(format!("{since}, last lag NULL (unknown)")),
    };
    if let Some(max) = limits.max_source_lost {
        let lost_for = input.now.saturating_duration_since(seen.at);
        if lost_for > max {
            return Recall::void(format!(
                "{since}, {last}, lost for longer than max_source_lost {}",
                fmt_duration(max)
            ));
        }
    }
    let (applied, detail) = applied(ch, limits.max_apply_backlog);
    if !applied {
        return Recall::void(format!("{since}, {last}, {detail}"));
    }
    let restored = if input.snapshot.memory.restored {
        " (remembered across a replguard restart)"
    } else {
        ""
    };
    Recall {
        trusted: true,
        detail: format!("{since}, {last}, relay log applied{restored}"),
    }
}

/// MySQL client errors that mean "cannot reach the source" (2003 can't connect, 2005 unknown
/// host, 2013/2006 lost connection, 2026 TLS, 2002 socket) and the server's network
/// read/write errors (1158-1161). A `Connecting` thread without an error yet is reconnecting.
pub(super) fn source_unreachable(ch: &Channel) -> bool {
    const NETWORK: &[u32] = &[2002, 2003, 2005, 2006, 2013, 2026, 1158, 1159, 1160, 1161];
    match ch.io_thread {
        ThreadState::Connecting => ch.last_io_errno == 0 || NETWORK.contains(&ch.last_io_errno),
        _ => NETWORK.contains(&ch.last_io_errno),
    }
}
