//! Semi-synchronous replication: which acknowledged commits a backup can be missing
//! (`semi_sync`, on the backup gate and the checklist), and a primary stuck on acks
//! (`semi_sync_wait`).

use super::lag::round_secs;
use super::limits::Limits;
use super::verdict::{Check, Input, Level};
use crate::snapshot::sample::{SemiSync, ServerState, SourceState};
use crate::units::{clock_time, fmt_duration};

/// The `semi_sync` line: the source's semi-sync at its newest reading (live, or the last one
/// before it was lost) decides whether a commit it acknowledged can be missing here.
pub(super) fn semi_sync_check(state: &ServerState, limits: &Limits, input: &Input<'_>) -> Check {
    const NAME: &str = "semi_sync";
    let memory = &input.snapshot.memory;
    let live = input
        .snapshot
        .sample
        .as_ref()
        .and_then(|s| s.source.as_ref())
        .and_then(|s| s.outcome.as_ref().ok().map(|src| (s.addr.clone(), src)));
    let (addr, src, when): (String, &SourceState, String) = match (&live, &memory.last_source) {
        (Some((addr, src)), _) => (addr.clone(), src, String::new()),
        (None, Some(seen)) => (
            seen.addr.clone(),
            &seen.state,
            format!(
                " at the source's last reading ({})",
                clock_time(seen.at_wall)
            ),
        ),
        (None, None) => {
            return account(
                NAME,
                limits,
                "the source was never read: whether it acknowledged commits this server lacks \
                 is unknown"
                    .to_string(),
            )
        }
    };
    let Some(ss) = &src.semi_sync else {
        return account(
            NAME,
            limits,
            format!(
                "source {addr} has no semi-sync{when}: asynchronous, commits it acknowledged \
                 may be missing here"
            ),
        );
    };
    if let Some(e) = &ss.error {
        return account(
            NAME,
            limits,
            format!("source {addr}: semi-sync unreadable{when}: {e}"),
        );
    }
    let tracked = memory.source_semi_sync.as_ref();
    let since = tracked.map(|t| {
        if t.since_first_reading {
            format!(
                "since before replguard's first reading ({})",
                clock_time(t.since_wall)
            )
        } else {
            format!(
                "since {} ({} ago)",
                clock_time(t.since_wall),
                fmt_duration(round_secs(input.now.saturating_duration_since(t.since)))
            )
        }
    });
    if ss.source_status != Some(true) {
        let why = if ss.source_enabled == Some(true) {
            "enabled but fallen back to asynchronous (no ack within rpl_semi_sync_master_timeout)"
        } else {
            "not enabled"
        };
        return account(
            NAME,
            limits,
            format!(
                "source {addr} asynchronous {}{when}: semi-sync {why}; commits it acknowledged \
                 may be missing here",
                since.unwrap_or_default()
            ),
        );
    }
    let wait_point = ss.wait_point.as_deref().unwrap_or("unknown");
    if wait_point != "AFTER_SYNC" {
        return account(
            NAME,
            limits,
            format!(
                "source {addr} semi-sync {wait_point}{when}: other sessions may have read a \
                 commit before any replica had it"
            ),
        );
    }
    // After the source is lost this server's own status drops: what it was at the source's
    // last reading counts.
    let acking = match &live {
        Some(_) => state.semi_sync.as_ref().and_then(|s| s.replica_status),
        None => tracked.and_then(|t| t.acking),
    };
    if acking != Some(true) {
        return account(
            NAME,
            limits,
            format!(
                "source {addr} semi-sync (AFTER_SYNC){when}, but this server is not an acking \
                 replica (rpl_semi_sync_slave_enabled, and the IO thread restarted since): an \
                 acknowledged commit may be on another replica only"
            ),
        );
    }
    if let Some(n) = ss.clients.filter(|n| *n > 1) {
        return account(
            NAME,
            limits,
            format!(
                "source {addr} semi-sync (AFTER_SYNC){when} with {n} acking replicas: an \
                 acknowledged commit reached one of them, not necessarily this one"
            ),
        );
    }
    Check::fact(
        NAME,
        true,
        format!(
            "source {addr} was semi-sync (AFTER_SYNC){when}, this server acking: no \
             acknowledged commit can be missing"
        ),
    )
}

/// A `semi_sync` line that is not the guarantee: a warning, a failure with `require_semi_sync`.
fn account(name: &str, limits: &Limits, detail: String) -> Check {
    if limits.require_semi_sync {
        Check::fact(name, false, format!("{detail} (require_semi_sync)")).with_fix(
            "semi-sync on the source with rpl_semi_sync_master_wait_point = AFTER_SYNC and a \
             timeout that never degrades, this server an acking replica",
        )
    } else {
        Check::leveled(name, Level::Warn, detail)
    }
}

/// The `semi_sync_wait` line: commits waiting for an ack, none arriving, for longer than
/// `max_semi_sync_wait`.
pub(super) fn semi_sync_wait_check(
    state: &ServerState,
    limits: &Limits,
    input: &Input<'_>,
) -> Check {
    const NAME: &str = "semi_sync_wait";
    let Some(ss) = state.semi_sync.as_ref().filter(|s| s.error.is_none()) else {
        return Check::fact(
            NAME,
            true,
            match &state.semi_sync {
                Some(SemiSync { error: Some(e), .. }) => format!("semi-sync unreadable: {e}"),
                _ => "no semi-sync on this server".to_string(),
            },
        );
    };
    let clients = ss.clients.map_or("unknown".to_string(), |n| n.to_string());
    let Some(stuck) = &input.snapshot.memory.semi_sync_stuck else {
        return Check::fact(
            NAME,
            true,
            format!("no commit waiting for an ack ({clients} acking replicas)"),
        );
    };
    let waited = input.now.saturating_duration_since(stuck.since);
    let waiting = format!(
        "{} sessions waiting for an ack for {}",
        stuck.sessions,
        fmt_duration(round_secs(waited))
    );
    // The comparison first: HAProxy logs the first 120 characters.
    let context = format!(
        "since {}, no ack since, {clients} acking replicas",
        clock_time(stuck.since_wall)
    );
    match limits.max_semi_sync_wait {
        None => Check::fact(
            NAME,
            true,
            format!("{waiting} ({context}; max_semi_sync_wait not set)"),
        ),
        Some(max) if waited > max => Check::fact(
            NAME,
            false,
            format!(
                "{waiting} > max_semi_sync_wait {} ({context}): clients hang",
                fmt_duration(max)
            ),
        )
        .with_fix(
            "let a replica ack: start an acking replica's IO thread (rpl_semi_sync_slave_enabled \
             = ON), or lower rpl_semi_sync_master_timeout",
        ),
        Some(max) => Check::fact(
            NAME,
            true,
            format!(
                "{waiting} <= max_semi_sync_wait {} ({context})",
                fmt_duration(max)
            ),
        ),
    }
}
