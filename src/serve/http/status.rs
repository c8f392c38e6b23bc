//! The `/status` document: every instance's latest sample, memory and verdicts, for people and
//! tools (the status page reads it).

use crate::hub::Hub;
use crate::policy::render::reason;
use crate::snapshot::lease::{Holder, LeaseView, Released};
use crate::snapshot::sample::{ProbeError, ServerState};
use serde::Serialize;
use std::time::{Duration, Instant, SystemTime};

/// One instance in `/status`.
#[derive(Serialize)]
pub struct InstanceStatus<'a> {
    pub name: &'a str,
    pub port: Option<u16>,
    pub address: String,
    pub policy: &'a str,
    pub polls: u64,
    pub sample_age_ms: Option<u64>,
    pub sampled_at: Option<String>,
    pub poll_ms: Option<u64>,
    /// The maintenance reason when the latest poll found the maintenance file (`""`: no
    /// reason given); `null` when it did not.
    pub maintenance: Option<&'a str>,
    /// The maintenance file this daemon watches for the instance, if any.
    pub maintenance_file: Option<String>,
    /// The server state of the latest sample, when the poll succeeded.
    pub state: Option<&'a ServerState>,
    /// Why the latest poll failed, when it did.
    pub error: Option<&'a ProbeError>,
    /// The latest failed poll, even if later polls succeeded.
    pub last_error: Option<TimedError<'a>>,
    /// Per channel: when the IO thread was last seen connected, and the lag then.
    pub io_last_connected: Vec<SeenConnected<'a>>,
    /// Every policy's verdict: healthy, and the first failing check.
    pub verdicts: Vec<PolicyVerdict>,
    /// The lag the policies judged at each recent successful poll, oldest first (`/ui` graph).
    pub lag_history: Vec<LagPoint>,
    /// The writer lease in etcd, for an instance in a writer group (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer_lease: Option<LeaseStatus<'a>>,
}

/// An instance's writer lease as its latest sample saw it.
#[derive(Serialize)]
pub struct LeaseStatus<'a> {
    pub group: &'a str,
    /// This instance holds the key (whether it answers 200 is the `writer_lease` check's).
    pub held: bool,
    /// Holding, confirmed by etcd within the TTL minus the margin: not fenced.
    pub confirmed: bool,
    /// Who the key names (this instance included); `null`: free, or not known.
    pub holder: Option<&'a Holder>,
    pub acquired_at: Option<String>,
    /// Since the last keep-alive etcd acknowledged.
    pub renewed_ago_ms: Option<u64>,
    pub handing_over_since: Option<String>,
    /// The position the previous holder released at, to apply before answering 200.
    pub must_apply: Option<&'a Released>,
    pub etcd_error: Option<&'a str>,
    pub etcd_error_since: Option<String>,
    pub lease_ttl_s: u64,
    pub handover_delay_ms: u64,
}

/// One poll of `lag_history`: how long ago, and the lag then (`null`: unknown).
#[derive(Serialize)]
pub struct LagPoint {
    /// How long before the `/status` request the poll finished.
    pub ago_ms: u64,
    /// The lag then, in seconds; `null` when unknown (NULL, or no replica status).
    #[serde(serialize_with = "crate::units::ser_opt_secs")]
    pub lag_s: Option<Duration>,
}

#[derive(Serialize)]
pub struct TimedError<'a> {
    pub at: String,
    pub error: &'a ProbeError,
}

#[derive(Serialize)]
pub struct SeenConnected<'a> {
    pub channel: &'a str,
    pub at: String,
    pub ago_ms: u64,
    #[serde(serialize_with = "crate::units::ser_opt_secs")]
    pub lag_s: Option<Duration>,
}

#[derive(Serialize)]
pub struct PolicyVerdict {
    pub policy: String,
    pub healthy: bool,
    /// The reason phrase (at most 120 characters, as in the status line).
    pub reason: Option<String>,
    /// The first failing check's whole line, never shortened.
    pub failing: Option<String>,
}

/// One `[[pool]]` in `/status`.
#[derive(Serialize)]
pub struct PoolStatus<'a> {
    pub name: &'a str,
    pub members: Vec<&'a str>,
    pub min_serving: usize,
    /// Members that pass their own policy.
    pub healthy: usize,
    /// Healthy members and those admitted as degraded.
    pub serving: usize,
    /// Members admitted as degraded (failing only on lag), least behind first.
    pub degraded: Vec<Degraded<'a>>,
}

#[derive(Serialize)]
pub struct Degraded<'a> {
    pub instance: &'a str,
    pub lag_s: f64,
}

/// Which instances a `/status` request asks for (all, by default).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Only instances whose own policy fails.
    pub failing: bool,
    /// Only instances whose name contains this.
    pub name: Option<String>,
    /// The failing first (otherwise in config order).
    pub failing_first: bool,
    /// At most this many.
    pub limit: Option<usize>,
}

impl Filter {
    /// Parses `/status`'s query strictly.
    pub fn parse(query: &str) -> Result<Filter, String> {
        let mut f = Filter::default();
        let flag = |v: &str| match v {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" => Ok(false),
            other => Err(format!("failing must be 1 or 0, not {other:?}")),
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "failing" => f.failing = flag(&value)?,
                "name" if value.len() > 256 => return Err("name is longer than 256".into()),
                "name" => f.name = (!value.is_empty()).then(|| value.into_owned()),
                "order" if value == "failing" => f.failing_first = true,
                "order" if value == "config" => f.failing_first = false,
                "order" => return Err(format!("order must be failing or config, not {value:?}")),
                "limit" => {
                    f.limit = Some(
                        value
                            .parse()
                            .map_err(|_| format!("limit must be a number, not {value:?}"))?,
                    )
                }
                other => {
                    return Err(format!(
                        "unknown parameter {other:?} (known: failing, name, order, limit)"
                    ))
                }
            }
        }
        Ok(f)
    }
}

/// How many instances there are, fail, and are shown: a filtered `/status` still says how
/// large the fleet is.
#[derive(Serialize)]
struct Summary {
    instances: usize,
    failing: usize,
    shown: usize,
}

/// The `/status` document for the instances `filter` asks for.
pub fn status_filtered(hub: &Hub, now: Instant, filter: &Filter) -> String {
    let instances = hub.instances();
    let snapshots: Vec<_> = instances.iter().map(|w| w.latest()).collect();
    let mut entries: Vec<InstanceStatus<'_>> = instances
        .iter()
        .zip(&snapshots)
        .map(|(w, snap)| {
            let sample = snap.sample.as_deref();
            let verdicts = hub
                .judge()
                .verdicts(w.config.subject(), snap, now)
                .map(|v| PolicyVerdict {
                    reason: reason(&v),
                    failing: v.first_failure().map(|c| c.line()),
                    healthy: v.healthy,
                    policy: v.policy,
                })
                .collect();
            InstanceStatus {
                name: &w.config.name,
                port: w.config.port,
                address: w.config.target.addr.to_string(),
                policy: &w.config.policy,
                polls: snap.polls,
                sample_age_ms: snap.age(now).map(|a| a.as_millis() as u64),
                sampled_at: sample.map(|s| wall(s.taken_at_wall)),
                poll_ms: sample.map(|s| s.duration.as_millis() as u64),
                maintenance: sample.and_then(|s| s.maintenance.as_deref()),
                maintenance_file: w
                    .config
                    .maintenance_file
                    .as_ref()
                    .map(|p| p.display().to_string()),
                state: sample.and_then(|s| s.outcome.as_ref().ok()),
                error: sample.and_then(|s| s.outcome.as_ref().err()),
                last_error: snap
                    .memory
                    .last_error
                    .as_ref()
                    .map(|(at, error)| TimedError {
                        at: wall(*at),
                        error,
                    }),
                io_last_connected: snap
                    .memory
                    .io_last_connected
                    .iter()
                    .map(|(channel, seen)| SeenConnected {
                        channel,
                        at: wall(seen.at_wall),
                        ago_ms: now.saturating_duration_since(seen.at).as_millis() as u64,
                        lag_s: seen.lag,
                    })
                    .collect(),
                verdicts,
                lag_history: snap
                    .memory
                    .lag_history
                    .iter()
                    .map(|p| LagPoint {
                        ago_ms: now.saturating_duration_since(p.at).as_millis() as u64,
                        lag_s: p.lag,
                    })
                    .collect(),
                writer_lease: sample
                    .and_then(|s| s.lease.as_ref())
                    .map(|l| lease_status(l, now)),
            }
        })
        .collect();
    let fails =
        |e: &InstanceStatus<'_>| !e.verdicts.iter().any(|v| v.policy == e.policy && v.healthy);
    let total = entries.len();
    let failing = entries.iter().filter(|e| fails(e)).count();
    entries.retain(|e| {
        (!filter.failing || fails(e))
            && filter
                .name
                .as_ref()
                .is_none_or(|n| e.name.contains(n.as_str()))
    });
    if filter.failing_first {
        // Stable: config order within each group.
        entries.sort_by_key(|e| !fails(e));
    }
    if let Some(limit) = filter.limit {
        entries.truncate(limit);
    }
    #[derive(Serialize)]
    struct Doc<'a> {
        instances: Vec<InstanceStatus<'a>>,
        /// Each `[[pool]]`'s health by its members' own policies.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pools: Vec<PoolStatus<'a>>,
        /// The latest config reload (SIGHUP); `null` until the first.
        last_reload: Option<crate::hub::Reload>,
        summary: Summary,
    }
    let pools = hub
        .pools(now)
        .into_iter()
        .map(|h| PoolStatus {
            name: &h.config.name,
            members: h.config.instances.iter().map(String::as_str).collect(),
            min_serving: h.config.min_serving,
            healthy: h.standing.healthy,
            serving: h.standing.serving(),
            degraded: h
                .standing
                .admitted
                .iter()
                .map(|&(at, lag)| Degraded {
                    instance: &h.config.instances[at],
                    lag_s: lag.as_secs_f64(),
                })
                .collect(),
        })
        .collect();
    let shown = entries.len();
    serde_json::to_string_pretty(&Doc {
        instances: entries,
        pools,
        last_reload: hub.shared().reload.last(),
        summary: Summary {
            instances: total,
            failing,
            shown,
        },
    })
    .expect("status serialises")
}

fn lease_status(l: &LeaseView, now: Instant) -> LeaseStatus<'_> {
    LeaseStatus {
        group: &l.group,
        held: l.mine.is_some(),
        confirmed: l.confirmed(now),
        holder: l.holder.as_ref(),
        acquired_at: l.mine.as_ref().map(|m| wall(m.acquired_wall)),
        renewed_ago_ms: l
            .mine
            .as_ref()
            .map(|m| now.saturating_duration_since(m.confirmed_at).as_millis() as u64),
        handing_over_since: l.handing_over.map(|(_, w)| wall(w)),
        must_apply: l.must_apply.as_ref(),
        etcd_error: l.etcd_error.as_ref().map(|(e, _)| e.as_str()),
        etcd_error_since: l.etcd_error.as_ref().map(|(_, w)| wall(*w)),
        lease_ttl_s: l.lease_ttl.as_secs(),
        handover_delay_ms: l.handover_delay.as_millis() as u64,
    }
}

fn wall(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
