//! The HAProxy agent-check listener (`agent_listen`): one line per connection with the full
//! state, so HAProxy can weigh replicas by freshness and drain them for maintenance.
//!
//! Replies `up ready N%` (N = 100 up to `soft_lag`, falling linearly to a floor as lag nears
//! `max_lag`; 1% for a member its pool admits as degraded), `drain` in maintenance,
//! `down #<reason>` when the `replica` policy fails. Every
//! healthy reply says `ready`, because HAProxy keeps an agent-set drain until told so. Answers
//! from snapshots, like HTTP: never touches MySQL.

use crate::hub::{Hub, Selector, Watched};
use crate::policy::render;
use crate::policy::{Limits, Thresholds, Verdict};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The weight a replica keeps however close it lags to `max_lag`, while it still passes.
pub const WEIGHT_FLOOR: u32 = 10;
/// The weight of a replica its pool admits as degraded (`min_serving`): below any that passes.
pub const DEGRADED_WEIGHT: u32 = 1;
/// How long to wait for `agent-send` when several instances are configured.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest `agent-send` line: an instance name or a port is short. A client sending more
/// without a newline is cut off, so no client can make the guard buffer without bound.
pub const MAX_LINE: u64 = 256;
/// Agent connections held at once (fair admission: a newer one displaces the oldest that has
/// not sent its line). HAProxy holds one per server for a moment per check.
pub const MAX_CONNECTIONS: usize = crate::serve::listen::admission::AGENT_MAX_CONNECTIONS;

/// Serves agent checks until `shutdown`, each connection from the hub of the config in force
/// when it arrives.
pub async fn serve(
    listener: TcpListener,
    hubs: tokio::sync::watch::Receiver<Arc<Hub>>,
    gate: Arc<crate::serve::listen::gate::Gate>,
    admission: Arc<crate::serve::listen::admission::Admission>,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "agent accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (stream, peer) = stream;
        if !gate.allows(peer.ip(), "agent") {
            continue; // not in allow_from: closed at once
        }
        let hub = hubs.borrow().clone();
        // One instance: the reply needs nothing from the client. It fits the new socket's
        // buffer, so it is written here and the connection closed, holding no place at all:
        // a flood of agent connections from one address costs it one small write each.
        if hub.instances().len() == 1 {
            let mut reply = match hub.find(&Selector::Only) {
                Ok(w) => reply_for(&hub, w, tokio::time::Instant::now().into_std()),
                Err(e) => format!("down #{e}"),
            };
            reply.push('\n');
            if matches!(stream.try_write(reply.as_bytes()), Ok(n) if n == reply.len()) {
                continue; // dropped: the reply goes out, then the FIN
            }
        }
        let Ok(ticket) = admission.admit(peer.ip()) else {
            tracing::debug!(%peer, "agent connection refused: every place answers a request");
            continue; // dropped: closed at once
        };
        // One instance: answered at once, whatever was sent; several: once the line is in.
        if hub.instances().len() == 1
            || crate::serve::listen::waiting(&stream, crate::serve::listen::Waiting::Line)
        {
            ticket.conn.arrived();
        }
        tokio::spawn(async move {
            // A displaced connection (it had not sent its line yet) is dropped at once.
            let result = tokio::select! {
                r = answer(stream, &hub, &ticket.conn) => r,
                _ = ticket.conn.displaced() => Ok(()),
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "agent connection");
            }
            drop(ticket);
        });
    }
}

async fn answer(
    stream: TcpStream,
    hub: &Hub,
    conn: &crate::serve::listen::admission::Conn,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    // With one instance there is nothing to choose: reply at once, whatever HAProxy sends.
    let selector = if hub.instances().len() == 1 {
        Selector::Only
    } else {
        let mut line = Vec::new();
        let mut reader = BufReader::new(read.take(MAX_LINE + 1));
        match tokio::time::timeout(READ_TIMEOUT, reader.read_until(b'\n', &mut line)).await {
            Ok(Ok(n)) if n as u64 > MAX_LINE => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("agent-send line longer than {MAX_LINE} bytes: closed"),
                ));
            }
            Ok(Ok(_)) => parse_line(&line),
            _ => Selector::Only,
        }
    };
    // The request is in: from here the connection is answering, never displaced.
    conn.busy();
    let reply = match hub.find(&selector) {
        Ok(w) => reply_for(hub, w, tokio::time::Instant::now().into_std()),
        Err(e) => format!("down #{e}; set agent-send \"<instance name or port>\\n\""),
    };
    write.write_all(reply.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

/// The instance an `agent-send` line (at most [`MAX_LINE`] bytes, any bytes) names.
pub fn parse_line(line: &[u8]) -> Selector {
    parse_selector(String::from_utf8_lossy(line).trim())
}

/// `agent-send` names the instance by name or port.
fn parse_selector(text: &str) -> Selector {
    match text.parse::<u16>() {
        Ok(port) => Selector::Port(port),
        Err(_) => Selector::Name(text.to_string()),
    }
}

/// The agent line for one instance, from its `replica` verdict (its `galera` verdict on a
/// Galera node).
pub fn reply_for(hub: &Hub, w: &Watched, now: Instant) -> String {
    let snapshot = w.latest();
    let (judge, subject) = (hub.judge(), w.config.subject());
    let galera = snapshot
        .sample
        .as_ref()
        .and_then(|s| s.outcome.as_ref().ok())
        .and_then(|s| s.galera.as_ref());
    // The verdict and the weight's input come from the same snapshot.
    if let Some(g) = galera {
        let (Some(verdict), Some(limits)) = (
            judge.evaluate(
                subject,
                &snapshot,
                Some("galera"),
                &Thresholds::default(),
                now,
            ),
            judge.limits(subject, "galera"),
        ) else {
            return "down #no galera policy".to_string();
        };
        return galera_line(&verdict, g.recv_queue, &limits);
    }
    let Some(judged) = hub.evaluate(w, &snapshot, Some("replica"), &Thresholds::default(), now)
    else {
        return "down #no replica policy".to_string();
    };
    if judged.degraded {
        // Admitted by its pool only because too few members pass: the least share of traffic.
        return format!("up ready {DEGRADED_WEIGHT}%");
    }
    let verdict = judged.verdict;
    let worst = snapshot
        .sample
        .as_ref()
        .and_then(|s| s.outcome.as_ref().ok())
        // The lag the verdict judged: the heartbeat's when configured, else Seconds_Behind.
        .and_then(|s| s.judged_lag());
    let Some(limits) = judge.limits(subject, "replica") else {
        return "down #no replica policy".to_string();
    };
    line(&verdict, worst, &limits)
}

/// `drain` for an instance in maintenance, `down #reason` for a failing verdict; `None` when
/// the verdict passes (the reply is then `up ready N%`).
fn not_ready(verdict: &Verdict) -> Option<String> {
    if verdict
        .checks
        .first()
        .is_some_and(|c| c.name == "maintenance")
    {
        return Some("drain".to_string());
    }
    if !verdict.healthy {
        let reason = render::reason(verdict).unwrap_or_else(|| "unhealthy".into());
        return Some(format!("down #{reason}"));
    }
    None
}

/// Pure: the reply for a verdict, the worst channel lag and the limits it was judged by.
pub fn line(verdict: &Verdict, worst_lag: Option<Duration>, limits: &Limits) -> String {
    if let Some(out) = not_ready(verdict) {
        return out;
    }
    format!(
        "up ready {}%",
        weight(
            worst_lag.unwrap_or(Duration::ZERO),
            limits.soft_lag,
            limits.max_lag
        )
    )
}

/// Pure: the reply for a Galera node's verdict; the weight falls with the applier queue
/// (`wsrep_local_recv_queue`) from a quarter of `max_recv_queue` to `max_recv_queue` (full
/// weight without that threshold).
pub fn galera_line(verdict: &Verdict, recv_queue: u64, limits: &Limits) -> String {
    if let Some(out) = not_ready(verdict) {
        return out;
    }
    let w = match limits.max_recv_queue {
        // The same curve as for lag, in write-sets instead of seconds.
        Some(max) => curve(recv_queue as f64, max as f64 / 4.0, max as f64),
        None => 100,
    };
    format!("up ready {w}%")
}

/// 100 up to `soft`, then linearly down to [`WEIGHT_FLOOR`] at `max`.
pub fn weight(lag: Duration, soft: Duration, max: Duration) -> u32 {
    curve(lag.as_secs_f64(), soft.as_secs_f64(), max.as_secs_f64())
}

/// The weight curve over any measure: 100 up to `soft`, linearly down to [`WEIGHT_FLOOR`] at
/// `max`.
fn curve(value: f64, soft: f64, max: f64) -> u32 {
    if value <= soft || max <= soft {
        return 100;
    }
    let span = max - soft;
    let over = (value - soft).min(span);
    let w = 100.0 - over / span * f64::from(100 - WEIGHT_FLOOR);
    (w.round() as u32).clamp(WEIGHT_FLOOR, 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Check, Level};

    fn verdict(checks: Vec<Check>) -> Verdict {
        Verdict {
            policy: "replica".into(),
            resolved_policy: "replica".into(),
            healthy: checks.iter().all(|c| c.ok),
            checks,
            sample_age_ms: Some(1),
            steps: vec![],
        }
    }

    #[test]
    fn weights_fall_linearly_between_soft_and_max_lag() {
        let s = Duration::from_secs;
        let cases = [
            (0, 100),
            (2, 100),
            (3, 93),
            (5, 78),
            (8, 55),
            (10, 40),
            (12, 25),
            (14, 10),
            (20, 10),
        ];
        for (lag, want) in cases {
            assert_eq!(weight(s(lag), s(2), s(14)), want, "lag {lag}s");
        }
    }

    #[test]
    fn replies() {
        let t = Limits::resolve(
            &Thresholds {
                max_lag: Some(Duration::from_secs(8)),
                ..Default::default()
            },
            &Thresholds::default(),
            &Thresholds::default(),
        );
        let ok = verdict(vec![Check::fact("lag", true, "0s <= 8s".into())]);
        assert_eq!(line(&ok, Some(Duration::ZERO), &t), "up ready 100%");
        assert_eq!(line(&ok, Some(Duration::from_secs(5)), &t), "up ready 55%");
        let bad = verdict(vec![Check::fact(
            "sql_thread",
            false,
            "No, want Yes".into(),
        )]);
        assert_eq!(line(&bad, None, &t), "down #sql_thread No, want Yes");
        let maint = verdict(vec![Check::leveled(
            "maintenance",
            Level::Fail,
            "upgrade".into(),
        )]);
        assert_eq!(line(&maint, Some(Duration::ZERO), &t), "drain");
        assert_eq!(parse_selector("3307"), Selector::Port(3307));
        assert_eq!(
            parse_selector("replica1"),
            Selector::Name("replica1".into())
        );
    }
}
