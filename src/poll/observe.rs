//! The observer of transitions: what a poller last saw of the facts whose changes are events
//! (IO thread connected per channel, maintenance, Galera and Group Replication states, each
//! policy's cause), and the events a new sample or a new set of verdicts makes of them. Pure:
//! the poll step calls it, the loop records what it returns.

use crate::hub::events::{Event, Kind};
use crate::policy::Verdict;
use crate::snapshot::sample::{Sample, ThreadState};
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

/// What the poller last saw of the facts whose changes are events: per channel whether the IO
/// thread was connected, and whether the maintenance file was present. Owned by one poller;
/// [`Observer::observe`] is a pure function of this and the new sample.
#[derive(Debug, Default)]
pub struct Observer {
    /// Per channel name: IO thread connected at the last successful poll.
    io_connected: BTreeMap<String, bool>,
    /// Maintenance at the last poll; `None` before the first.
    maintenance: Option<bool>,
    /// Per policy: the cause of its last verdict (`None`: healthy).
    causes: HashMap<String, Option<String>>,
    /// A Galera node's `wsrep_local_state_comment` and `wsrep_cluster_status` at the last
    /// successful poll.
    galera: Option<(String, String)>,
    /// A Group Replication member's state and role at the last successful poll.
    group: Option<(String, String)>,
    /// Semi-sync really on at this server as a source, and at its source, at the last readings.
    semi_sync: Option<bool>,
    source_semi_sync: Option<bool>,
}

impl Observer {
    /// The verdict transitions among `verdicts` (every policy's, on the latest snapshot), each
    /// with whether it is quiet (not logged). A change is a change of cause (see
    /// [`Verdict::cause_key`]). The instance's `own` policy records its first verdict too and
    /// is logged; other policies record changes only, quietly: a replica's first "fails
    /// primary" is noise.
    pub fn verdicts(
        &mut self,
        instance: &str,
        own: &str,
        at: SystemTime,
        verdicts: &[Verdict],
    ) -> Vec<(Event, bool)> {
        let mut out = Vec::new();
        for v in verdicts {
            let cause = v.cause_key();
            let before = self.causes.get(&v.policy);
            let event = match before {
                Some(before) if *before == cause => continue,
                Some(Some(_)) if cause.is_some() => Event::cause_changed(at, instance, v),
                _ => Event::verdict(at, instance, v, before.is_none()),
            };
            if v.policy == own {
                out.push((event, false));
            } else if before.is_some() {
                out.push((event, true));
            }
            self.causes.insert(v.policy.clone(), cause);
        }
        out
    }

    /// The source and maintenance transitions `sample` shows against what was seen before.
    /// A failed poll says nothing about the channels, so they keep their last known state.
    /// At the first sight of a channel, only a disconnected one is an event.
    pub fn observe(&mut self, instance: &str, sample: &Sample) -> Vec<Event> {
        let at = sample.taken_at_wall;
        let mut out = Vec::new();
        let on = sample.maintenance.is_some();
        // An unreadable file says nothing about maintenance: no transition either way.
        if sample.maintenance_error.is_none() && self.maintenance.unwrap_or(false) != on {
            out.push(if on {
                Event::new(
                    at,
                    instance,
                    Kind::MaintenanceOn,
                    match sample.maintenance.as_deref() {
                        Some("") | None => "maintenance file present".into(),
                        Some(why) => why.to_string(),
                    },
                )
            } else {
                Event::new(
                    at,
                    instance,
                    Kind::MaintenanceOff,
                    "maintenance file gone".into(),
                )
            });
        }
        if sample.maintenance_error.is_none() {
            self.maintenance = Some(on);
        }
        let Ok(state) = &sample.outcome else {
            return out;
        };
        let mut now = BTreeMap::new();
        for ch in &state.channels {
            let connected = ch.io_thread == ThreadState::Yes;
            let before = self.io_connected.get(&ch.name).copied();
            let source = ch.source_addr();
            if connected && before == Some(false) {
                let lag = ch
                    .lag
                    .map_or("NULL".to_string(), crate::units::fmt_duration);
                out.push(Event {
                    channel: Some(ch.name.clone()),
                    ..Event::new(
                        at,
                        instance,
                        Kind::SourceFound,
                        format!("io_thread Yes, connected to {source}, lag {lag}"),
                    )
                });
            } else if !connected && before != Some(false) {
                let mut reason = format!("io_thread {} (source {source})", ch.io_thread);
                if ch.last_io_errno != 0 {
                    reason.push_str(&format!(
                        ", last IO error {} {}",
                        ch.last_io_errno, ch.last_io_error
                    ));
                }
                out.push(Event {
                    channel: Some(ch.name.clone()),
                    ..Event::new(at, instance, Kind::SourceLost, reason)
                });
            }
            now.insert(ch.name.clone(), connected);
        }
        for (name, connected) in &self.io_connected {
            if *connected && !now.contains_key(name) {
                out.push(Event {
                    channel: Some(name.clone()),
                    ..Event::new(
                        at,
                        instance,
                        Kind::SourceLost,
                        "channel gone from replica status".into(),
                    )
                });
            }
        }
        self.io_connected = now;
        if let Some(g) = &state.group {
            let seen = (g.state.clone(), g.role.clone());
            match &self.group {
                Some((state, role)) if *state != seen.0 => out.push(Event::new(
                    at,
                    instance,
                    if seen.0 == "ONLINE" {
                        Kind::GroupOnline
                    } else {
                        Kind::GroupDegraded
                    },
                    format!("{state} -> {}", seen.0),
                )),
                Some((_, role)) if *role != seen.1 && !seen.1.is_empty() => out.push(Event::new(
                    at,
                    instance,
                    Kind::GroupRoleChanged,
                    format!("{role} -> {}", seen.1),
                )),
                None if seen.0 != "ONLINE" => out.push(Event::new(
                    at,
                    instance,
                    Kind::GroupDegraded,
                    seen.0.clone(),
                )),
                _ => {}
            }
            self.group = Some(seen);
        }
        if let Some(g) = &state.galera {
            let seen = (g.local_state_comment.clone(), g.cluster_status.clone());
            if self.galera.as_ref() != Some(&seen) {
                let fit = g.local_state_comment == "Synced" && g.cluster_status == "Primary";
                let reason = match &self.galera {
                    Some((state, component)) => {
                        format!("{state} in {component} -> {} in {}", seen.0, seen.1)
                    }
                    None => format!("{} in {}", seen.0, seen.1),
                };
                // The first sight of a fit node is not news; of an unfit one it is.
                if self.galera.is_some() || !fit {
                    let kind = if fit {
                        Kind::GaleraRecovered
                    } else {
                        Kind::GaleraDegraded
                    };
                    out.push(Event::new(at, instance, kind, reason));
                }
                self.galera = Some(seen);
            }
        }
        // Semi-sync at a source: this server's own source side, and the source it reads. The
        // first sight is no transition; a server without semi-sync has none to report.
        let own = state
            .semi_sync
            .as_ref()
            .filter(|s| s.error.is_none() && s.source_enabled.is_some())
            .map(|s| s.source_status == Some(true));
        let source = match &sample.source {
            Some(crate::snapshot::sample::SourceSample {
                addr,
                outcome: Ok(src),
            }) => src
                .semi_sync
                .as_ref()
                .filter(|s| s.error.is_none() && s.source_enabled.is_some())
                .map(|s| (addr.clone(), s.source_status == Some(true))),
            _ => None,
        };
        let mut transition = |before: &mut Option<bool>, now: Option<bool>, whose: String| {
            if let (Some(was), Some(on)) = (*before, now) {
                if was != on {
                    out.push(Event::new(
                        at,
                        instance,
                        if on {
                            Kind::SemiSyncOn
                        } else {
                            Kind::SemiSyncOff
                        },
                        if on {
                            format!("{whose}: semi-sync on")
                        } else {
                            format!("{whose}: semi-sync off (asynchronous)")
                        },
                    ));
                }
            }
            if now.is_some() {
                *before = now;
            }
        };
        transition(&mut self.semi_sync, own, "this server".to_string());
        let (addr, on) = match source {
            Some((addr, on)) => (addr, Some(on)),
            None => (String::new(), None),
        };
        transition(&mut self.source_semi_sync, on, format!("source {addr}"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::sample::fixtures::replica;
    use crate::snapshot::sample::{ProbeError, ProbeErrorKind, ServerState};
    use std::time::{Duration, Instant};

    fn sample(outcome: Result<ServerState, ProbeError>, maintenance: Option<&str>) -> Sample {
        Sample {
            taken_at: Instant::now(),
            taken_at_wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            duration: Duration::from_millis(1),
            outcome,
            source: None,
            maintenance: maintenance.map(String::from),
            maintenance_error: None,
            lease: None,
        }
    }

    fn io(state: ThreadState) -> ServerState {
        let mut s = replica();
        s.channels[0].io_thread = state;
        if s.channels[0].io_thread != ThreadState::Yes {
            s.channels[0].last_io_errno = 2003;
            s.channels[0].last_io_error = "error connecting to master".into();
            s.channels[0].lag = None;
        }
        s
    }

    fn down() -> ProbeError {
        ProbeError {
            kind: ProbeErrorKind::Refused,
            errno: None,
            message: "connection refused".into(),
        }
    }

    #[test]
    fn source_and_maintenance_transitions() {
        #[rustfmt::skip]
        type Step = (Result<ServerState, ProbeError>, Option<&'static str>, &'static [Kind]);
        let steps: &[Step] = &[
            (Ok(io(ThreadState::Yes)), None, &[]), // first sight, connected
            (Ok(io(ThreadState::Yes)), None, &[]),
            (Ok(io(ThreadState::Connecting)), None, &[Kind::SourceLost]),
            (Ok(io(ThreadState::Connecting)), None, &[]), // still lost: no repeat
            (Err(down()), None, &[]),                     // a failed poll says nothing
            (Ok(io(ThreadState::Connecting)), None, &[]),
            (
                Ok(io(ThreadState::Yes)),
                Some("kernel"),
                &[Kind::MaintenanceOn, Kind::SourceFound],
            ),
            (Ok(io(ThreadState::Yes)), Some("kernel"), &[]),
            (Ok(io(ThreadState::Yes)), None, &[Kind::MaintenanceOff]),
            (
                Ok(crate::snapshot::sample::fixtures::primary()),
                None,
                &[Kind::SourceLost],
            ), // channel gone
            (Ok(crate::snapshot::sample::fixtures::primary()), None, &[]),
        ];
        let mut o = Observer::default();
        for (i, (outcome, m, want)) in steps.iter().enumerate() {
            let got: Vec<Kind> = o
                .observe("db2", &sample(outcome.clone(), *m))
                .iter()
                .map(|e| e.kind)
                .collect();
            assert_eq!(&got, want, "step {i}");
        }
    }

    #[test]
    fn lost_source_names_the_thread_state_and_error() {
        let mut o = Observer::default();
        let e = o.observe("db2", &sample(Ok(io(ThreadState::Connecting)), None));
        assert_eq!(e.len(), 1, "a channel first seen disconnected is an event");
        assert_eq!(e[0].channel.as_deref(), Some(""));
        assert_eq!(
            e[0].reason,
            "io_thread Connecting (source 127.0.0.1:3306), last IO error 2003 error connecting to master"
        );
    }
}
