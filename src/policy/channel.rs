//! The per-channel checks every replica policy builds on: threads, errors, lag (from
//! `Seconds_Behind`), and whether the relay log is applied.

use super::file::{rule_name, Rule};
use super::limits::Limits;
use super::verdict::{Check, Level};
use crate::snapshot::sample::{Channel, ThreadState};
use crate::units::fmt_duration;
use std::time::Duration;

pub(super) fn channel_check(rule: Rule, ch: &Channel, limits: &Limits) -> Check {
    let name = ch.label(rule_name(rule));
    match rule {
        Rule::IoThread => {
            let mut c = Check::want(name, ch.io_thread.to_string(), "Yes");
            if !c.ok {
                c.detail = format!(
                    "{}, want Yes (source {}:{}){}",
                    ch.io_thread,
                    ch.source_host,
                    ch.source_port,
                    thread_error(ch.last_io_errno, &ch.last_io_error),
                );
                c.cause = Some(format!("errno {}", ch.last_io_errno));
            }
            c
        }
        Rule::SqlThread => {
            let mut c = Check::want(name, ch.sql_thread.to_string(), "Yes");
            if !c.ok {
                // HAProxy's log often keeps only the reason phrase: the error number goes in it.
                c.detail = format!(
                    "{}{}, want Yes",
                    ch.sql_thread,
                    thread_error(ch.last_sql_errno, &ch.last_sql_error)
                );
                c.cause = Some(format!("errno {}", ch.last_sql_errno));
            }
            c
        }
        Rule::ReplicationErrors => {
            let mut errors = Vec::new();
            if ch.last_io_errno != 0 {
                errors.push(format!("io {} {}", ch.last_io_errno, ch.last_io_error));
            }
            if ch.last_sql_errno != 0 {
                errors.push(format!("sql {} {}", ch.last_sql_errno, ch.last_sql_error));
            }
            if errors.is_empty() {
                Check::fact(name, true, "none".to_string())
            } else {
                Check::fact(name, false, errors.join("; "))
            }
        }
        Rule::Lag => {
            let limit = limits.max_lag;
            // With allow_delay, a delayed replica's lag is judged net of its SQL_Delay.
            let delay = match (limits.allow_delay, ch.sql_delay) {
                (true, Some(d)) => d,
                _ => Duration::ZERO,
            };
            match ch.lag {
                Some(lag) if !delay.is_zero() => {
                    let mut c = Check::at_most(name, lag.saturating_sub(delay), limit, "");
                    c.detail = format!(
                        "{} (lag {} minus SQL_Delay {})",
                        c.detail,
                        fmt_duration(lag),
                        fmt_duration(delay)
                    );
                    c
                }
                Some(lag) => Check::at_most(name, lag, limit, ""),
                None => {
                    // NULL has a cause: a stopped thread makes waiting pointless; say which.
                    let (why, fix) = if ch.sql_thread != ThreadState::Yes {
                        (
                            format!(": SQL thread {}", ch.sql_thread),
                            Some(
                                "the SQL thread is not running, so waiting will not help: \
                                 START SLAVE SQL_THREAD once Last_SQL_Error is resolved",
                            ),
                        )
                    } else if ch.io_thread != ThreadState::Yes {
                        (
                            format!(": IO thread {}", ch.io_thread),
                            Some(
                                "the IO thread is not connected, so waiting will not help: see \
                                 Last_IO_Error and whether the source is up",
                            ),
                        )
                    } else {
                        (String::new(), None)
                    };
                    Check {
                        name,
                        ok: false,
                        level: Level::Fail,
                        fix: fix.map(str::to_string),
                        cause: None,
                        detail: format!("NULL (unknown{why}), want <= {}", fmt_duration(limit)),
                        measured: "NULL".to_string(),
                        threshold: format!("<= {}", fmt_duration(limit)),
                    }
                }
            }
        }
        Rule::SqlError => {
            if ch.last_sql_errno == 0 {
                Check::fact(name, true, "none".to_string())
            } else {
                Check::fact(
                    name,
                    false,
                    format!("{} {}", ch.last_sql_errno, ch.last_sql_error),
                )
            }
        }
        Rule::Applied => {
            let backlog = limits.max_apply_backlog;
            let (ok, detail) = applied(ch, backlog);
            if !ok && streaming(ch) {
                // A streaming replica always has a few hundred bytes between read and executed
                // under writes: that is not a backlog, and its lag line judges how far behind it
                // is. Once the source is lost, everything received must be applied.
                return Check::fact(name, true, in_flight(ch));
            }
            Check::fact(name, ok, detail)
        }
        _ => unreachable!("channel_check is called for per-channel rules only"),
    }
}

/// `: error 1062 Duplicate entry …` for a thread's last error, empty without one.
fn thread_error(errno: u32, error: &str) -> String {
    if errno == 0 {
        String::new()
    } else {
        format!(": error {errno} {error}")
    }
}

/// Whether the channel streams from a live source: IO and SQL threads running without error.
/// Then bytes between read and executed are in flight, judged by lag, not as a backlog.
pub(super) fn streaming(ch: &Channel) -> bool {
    ch.io_thread == ThreadState::Yes
        && ch.sql_thread == ThreadState::Yes
        && ch.last_io_errno == 0
        && ch.last_sql_errno == 0
}

/// The detail of a streaming channel's bytes in flight.
pub(super) fn in_flight(ch: &Channel) -> String {
    let read = format!("{}:{}", ch.read_log_file, ch.read_log_pos);
    let executed = format!("{}:{}", ch.exec_log_file, ch.exec_log_pos);
    if ch.read_log_file == ch.exec_log_file {
        format!(
            "{} bytes in flight (read {read}, executed {executed}) while the IO thread streams: \
             judged by lag",
            ch.read_log_pos.saturating_sub(ch.exec_log_pos)
        )
    } else {
        format!("in flight (read {read}, executed {executed}) while the IO thread streams: judged by lag")
    }
}

/// Whether the SQL thread has applied what the IO thread received, within `backlog` bytes,
/// judged on source coordinates (read vs executed), which every flavour reports.
pub(super) fn applied(ch: &Channel, backlog: u64) -> (bool, String) {
    let read = format!("{}:{}", ch.read_log_file, ch.read_log_pos);
    if ch.read_log_file == ch.exec_log_file {
        let behind = ch.read_log_pos.saturating_sub(ch.exec_log_pos);
        if behind == 0 {
            (true, format!("relay log applied (executed = read {read})"))
        } else {
            (
                behind <= backlog,
                format!(
                    "{behind} bytes not applied (read {read}, executed {}), max {backlog}",
                    ch.exec_log_pos
                ),
            )
        }
    } else {
        (
            false,
            format!(
                "not applied: read {read}, executed {}:{}",
                ch.exec_log_file, ch.exec_log_pos
            ),
        )
    }
}
