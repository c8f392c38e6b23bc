//! The transition log behind `/events`: the last changes of each instance (its configured
//! policy's verdict, source lost/found per channel, memory restored/void, maintenance on/off)
//! with wall-clock times and reasons — the post-mortem answer to "when did the backup stop being
//! safe, and why?".
//!
//! Recording an event also writes it as the log line (warn for a change for the worse, info
//! otherwise), so the log and `/events` say the same thing. The log is bounded: at most
//! [`PER_INSTANCE`] events per instance, the oldest dropped first. The pollers write, HTTP
//! handlers read; nothing here touches MySQL or waits on anything.

use crate::policy::Verdict;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

/// How many events are kept per instance: enough for hours of flapping, a few hundred KB at most.
pub const PER_INSTANCE: usize = 200;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A policy started failing (for the instance's own policy, also a warn log line).
    Unhealthy,
    /// A policy passes again (or, for the instance's own policy, its first verdict passes).
    Healthy,
    /// A policy still fails, for another cause (another check fails, or the same check with
    /// another error: SQL thread stopped, then the IO thread too; refused, then access denied).
    CauseChanged,
    /// A channel's IO thread stopped being connected (`Yes`), or the channel vanished.
    SourceLost,
    /// A channel's IO thread is connected again.
    SourceFound,
    /// The memory of an earlier replguard run was read back from the state file.
    MemoryRestored,
    /// The state file's memory was refused (the server's position moved, or it restarted).
    MemoryVoid,
    /// The maintenance file appeared.
    MaintenanceOn,
    /// The maintenance file is gone.
    MaintenanceOff,
    /// A Galera node left the state it may serve in: not Synced any more (Donor/Desynced,
    /// Joining, …) or out of the Primary component.
    GaleraDegraded,
    /// A Galera node is Synced in the Primary component again.
    GaleraRecovered,
    /// A Group Replication member's role changed (a new primary was elected).
    GroupRoleChanged,
    /// A Group Replication member left ONLINE (RECOVERING, ERROR, OFFLINE, ...).
    GroupDegraded,
    /// A Group Replication member is ONLINE again.
    GroupOnline,
    /// Semi-sync turned off (or fell back to asynchronous) at a source: this server, or the
    /// source this replica reads.
    SemiSyncOff,
    /// Semi-sync is on again at a source.
    SemiSyncOn,
    /// This instance acquired its writer group's lease in etcd.
    LeaseAcquired,
    /// This instance released the lease (its policy failed, or the guard stops).
    LeaseReleased,
    /// This instance gave the lease to the preferred writer, recording its position.
    LeaseHandedOver,
    /// The lease is gone without a release: etcd expired it or another holds the key.
    LeaseLost,
    /// An operator waived the position the previous holder released at
    /// (`replguard lease waive`): the holder answers without having applied it.
    LeaseWaived,
    /// etcd cannot be reached (logged once per change), or can again.
    EtcdUnreachable,
    EtcdReachable,
}

impl Kind {
    /// True for changes for the worse, logged at warn.
    fn is_bad(self) -> bool {
        matches!(
            self,
            Kind::Unhealthy
                | Kind::CauseChanged
                | Kind::SourceLost
                | Kind::MemoryVoid
                | Kind::MaintenanceOn
                | Kind::GaleraDegraded
                | Kind::GroupDegraded
                | Kind::SemiSyncOff
                | Kind::LeaseLost
                | Kind::LeaseWaived
                | Kind::EtcdUnreachable
        )
    }

    /// The log message, as the log line's message field.
    fn message(self) -> &'static str {
        match self {
            Kind::Unhealthy => "unhealthy",
            Kind::Healthy => "healthy",
            Kind::CauseChanged => "still unhealthy, cause changed",
            Kind::SourceLost => "source lost",
            Kind::SourceFound => "source found",
            Kind::MemoryRestored => "memory restored from state file",
            Kind::MemoryVoid => "remembered state void",
            Kind::MaintenanceOn => "maintenance on",
            Kind::MaintenanceOff => "maintenance off",
            Kind::GaleraDegraded => "galera node degraded",
            Kind::GaleraRecovered => "galera node synced in the primary component",
            Kind::GroupRoleChanged => "group role changed",
            Kind::GroupDegraded => "group member not online",
            Kind::GroupOnline => "group member online",
            Kind::SemiSyncOff => "semi-sync off at a source",
            Kind::SemiSyncOn => "semi-sync on at a source",
            Kind::LeaseAcquired => "writer lease acquired",
            Kind::LeaseReleased => "writer lease released",
            Kind::LeaseHandedOver => "writer lease handed over",
            Kind::LeaseLost => "writer lease lost",
            Kind::LeaseWaived => "writer lease: released position waived",
            Kind::EtcdUnreachable => "etcd unreachable",
            Kind::EtcdReachable => "etcd reachable",
        }
    }
}

/// One transition of one instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// When the poll that saw the change finished (wall clock), RFC 3339 in JSON.
    #[serde(serialize_with = "ser_rfc3339")]
    pub at: SystemTime,
    /// The configured instance name.
    pub instance: String,
    /// What changed; `kind` in JSON, the message of the log line.
    pub kind: Kind,
    /// The policy whose verdict changed; verdict events only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The replication channel (empty for the default one); source events only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The first failing check's name; `unhealthy` and `cause_changed` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Why, in the words of the verdict line or the server.
    pub reason: String,
}

fn ser_rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

impl Event {
    pub(crate) fn new(at: SystemTime, instance: &str, kind: Kind, reason: String) -> Event {
        Event {
            at,
            instance: instance.to_string(),
            kind,
            policy: None,
            channel: None,
            check: None,
            reason,
        }
    }

    /// The event for a verdict that differs from the previous one; `first` when there was none.
    pub fn verdict(at: SystemTime, instance: &str, verdict: &Verdict, first: bool) -> Event {
        let (kind, check, reason) = match verdict.first_failure() {
            Some(c) => (Kind::Unhealthy, Some(c.name.clone()), c.detail.clone()),
            None if first => (
                Kind::Healthy,
                None,
                "first verdict: every check passes".into(),
            ),
            None => (Kind::Healthy, None, "every check passes again".into()),
        };
        Event {
            policy: Some(verdict.policy.clone()),
            check,
            ..Event::new(at, instance, kind, reason)
        }
    }

    /// The event for a verdict that failed before and still fails, for another cause.
    pub fn cause_changed(at: SystemTime, instance: &str, verdict: &Verdict) -> Event {
        let (check, reason) = match verdict.first_failure() {
            Some(c) => (Some(c.name.clone()), c.detail.clone()),
            None => (None, String::new()),
        };
        Event {
            policy: Some(verdict.policy.clone()),
            check,
            ..Event::new(at, instance, Kind::CauseChanged, reason)
        }
    }
}

/// The bounded event log of every instance. Shared as an `Arc` by the pollers and the HTTP
/// handlers.
///
/// A std `Mutex` (not tokio's) is right here: it is held only to push or copy a few hundred small
/// records, never across an `.await`, so it cannot stall the runtime or deadlock a task that
/// yields while holding it.
#[derive(Debug)]
pub struct Events {
    /// Per instance name: its events, oldest first, at most `per_instance`.
    log: Mutex<HashMap<String, VecDeque<Event>>>,
    /// The bound per instance.
    per_instance: usize,
}

impl Default for Events {
    fn default() -> Events {
        Events::new(PER_INSTANCE)
    }
}

impl Events {
    pub fn new(per_instance: usize) -> Events {
        Events {
            log: Mutex::new(HashMap::new()),
            per_instance: per_instance.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, VecDeque<Event>>> {
        // A panic while holding the lock can only have interrupted a push or pop: the deques
        // stay valid, so a poisoned lock is still safe to use.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `event` and logs it at debug only: verdict changes of the policies an instance is
    /// not configured for (a replica always fails `primary`) would drown the warn/info log.
    pub fn record_quietly(&self, event: Event) {
        tracing::debug!(
            instance = %event.instance,
            policy = event.policy.as_deref().unwrap_or(""),
            reason = %event.reason,
            "{}",
            event.kind.message()
        );
        self.keep(event);
    }

    /// Logs `event` (warn for a change for the worse, info otherwise) and keeps it.
    pub fn record(&self, event: Event) {
        let kind = event.kind;
        // Displayed like the other fields (`policy=backup`, not `policy="backup"`); absent when None.
        let show = |f: &Option<String>| f.clone().map(tracing::field::display);
        let fields = (
            show(&event.policy),
            show(&event.channel),
            show(&event.check),
        );
        if kind.is_bad() {
            tracing::warn!(
                instance = %event.instance,
                policy = fields.0,
                channel = fields.1,
                check = fields.2,
                reason = %event.reason,
                "{}",
                kind.message()
            );
        } else {
            tracing::info!(
                instance = %event.instance,
                policy = fields.0,
                channel = fields.1,
                check = fields.2,
                reason = %event.reason,
                "{}",
                kind.message()
            );
        }
        self.keep(event);
    }

    fn keep(&self, event: Event) {
        let mut log = self.lock();
        let list = log.entry(event.instance.clone()).or_default();
        if list.len() == self.per_instance {
            list.pop_front();
        }
        list.push_back(event);
    }

    /// The kept events of `instance` (or of all instances), oldest first.
    pub fn recent(&self, instance: Option<&str>) -> Vec<Event> {
        let log = self.lock();
        let mut out: Vec<Event> = match instance {
            Some(name) => log
                .get(name)
                .map(|l| l.iter().cloned().collect())
                .unwrap_or_default(),
            None => log.values().flatten().cloned().collect(),
        };
        drop(log);
        // Stable: events of one instance keep their recorded order at equal times.
        out.sort_by_key(|e| e.at);
        out
    }
}

/// The `/events` document: `{"events":[{"at","instance","kind",...}]}`.
pub fn json(events: &[Event]) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        events: &'a [Event],
    }
    serde_json::to_string_pretty(&Doc { events }).expect("events serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bounded_per_instance_and_ordered() {
        let log = Events::new(3);
        for i in 0..5u64 {
            for inst in ["a", "b"] {
                log.record(Event::new(
                    SystemTime::UNIX_EPOCH + Duration::from_secs(i),
                    inst,
                    Kind::Healthy,
                    format!("{i}"),
                ));
            }
        }
        let a: Vec<String> = log
            .recent(Some("a"))
            .into_iter()
            .map(|e| e.reason)
            .collect();
        assert_eq!(a, ["2", "3", "4"]);
        let all = log.recent(None);
        assert_eq!(all.len(), 6);
        assert!(all.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(log.recent(Some("c")).is_empty());
    }

    #[test]
    fn json_has_rfc3339_times_and_snake_case_kinds() {
        let e = Event {
            check: Some("sql_thread".into()),
            policy: Some("replica".into()),
            ..Event::new(
                SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
                "db2",
                Kind::Unhealthy,
                "No, want Yes".into(),
            )
        };
        let v: serde_json::Value = serde_json::from_str(&json(&[e])).unwrap();
        assert_eq!(
            v["events"][0],
            serde_json::json!({
                "at": "2023-11-14T22:13:20.123Z",
                "instance": "db2",
                "kind": "unhealthy",
                "policy": "replica",
                "check": "sql_thread",
                "reason": "No, want Yes",
            })
        );
    }
}
