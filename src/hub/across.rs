//! What only a guard watching several instances can judge: pools that never empty
//! (`[[pool]]`, `min_serving`) and `most_advanced` among the replicas of one source. The hub
//! finds the other instances' latest snapshots; the rules themselves are pure, in
//! [`policy::pool`](crate::policy::pool) and [`policy::siblings`](crate::policy::siblings).

use super::{Hub, Watched};
use crate::config::PoolConfig;
use crate::policy::pool::{self, Member, Standing};
use crate::policy::siblings::{self, Other};
use crate::policy::{Freshness, Rule, Thresholds, Verdict};
use crate::snapshot::Snapshot;
use std::sync::Arc;
use std::time::Instant;

/// A pool as the hub holds it: its config and its members' positions among the instances.
pub(super) struct Pool {
    pub(super) config: PoolConfig,
    pub(super) members: Vec<usize>,
    /// Standings recently computed (a lookup or an insert under the lock, never a verdict).
    cache: std::sync::Mutex<Vec<Cached>>,
}

/// A verdict as readers answer it.
pub struct Judged {
    pub verdict: Verdict,
    /// Admitted by its pool as degraded: it passes only because too few members do.
    pub degraded: bool,
    /// The verdict read only this instance's snapshot (so it may be cached with it).
    pub alone: bool,
}

/// One pool's health, for `/status` and `/metrics`: each member's own policy, its own
/// thresholds.
pub struct PoolHealth<'a> {
    pub config: &'a PoolConfig,
    pub standing: Standing,
}

impl Hub {
    /// Sets the pools of this generation (validated by the config: members exist, each in one
    /// pool at most).
    pub fn with_pools(mut self, pools: &[PoolConfig]) -> Hub {
        self.pools = pools
            .iter()
            .enumerate()
            .map(|(p, config)| {
                let members = config
                    .instances
                    .iter()
                    .filter_map(|name| self.instances.iter().position(|w| &w.config.name == name))
                    .collect::<Vec<_>>();
                for (at, &i) in members.iter().enumerate() {
                    self.instances[i].pool = Some((p, at));
                }
                Pool {
                    config: config.clone(),
                    members,
                    cache: Default::default(),
                }
            })
            .collect();
        self
    }

    /// The verdict of `policy` (the instance's own when `None`) on `w`'s `snapshot` with the
    /// request's thresholds: the judge's, with the siblings `most_advanced` compares with, and
    /// amended by the instance's pool when it fails only on lag.
    pub fn evaluate(
        &self,
        w: &Watched,
        snapshot: &Snapshot,
        policy: Option<&str>,
        request: &Thresholds,
        now: Instant,
    ) -> Option<Judged> {
        let name = policy.unwrap_or(&w.config.policy);
        let wants_siblings = self.judge.policies().uses(name, Rule::MostAdvanced);
        let others: Vec<(&Watched, Arc<Snapshot>)> = if wants_siblings {
            self.instances
                .iter()
                .filter(|o| o.index != w.index)
                .map(|o| (o, o.latest()))
                .collect()
        } else {
            Vec::new()
        };
        let others: Vec<Other<'_>> = others
            .iter()
            .map(|(o, snap)| Other {
                name: &o.config.name,
                state: snap.sample.as_ref().and_then(|s| s.outcome.as_ref().ok()),
                unusable: match self.judge.freshness(snap, now) {
                    Freshness::Fresh { .. } => None,
                    Freshness::Stale { .. } => Some("stale sample"),
                    Freshness::Unsampled => Some("no sample yet"),
                },
                same_configured_source: w.config.same_configured_source(&o.config),
            })
            .collect();
        let siblings = match snapshot
            .sample
            .as_ref()
            .and_then(|s| s.outcome.as_ref().ok())
        {
            Some(me) if wants_siblings => siblings::select(me, &others),
            _ => Vec::new(),
        };
        let subject = crate::policy::Subject {
            siblings: &siblings,
            ..w.config.subject()
        };
        let mut verdict = self
            .judge
            .evaluate(subject, snapshot, policy, request, now)?;
        let (mut degraded, mut alone) = (false, !wants_siblings);
        if let Some((p, at)) = w.pool {
            let lag = judged_lag(snapshot);
            if pool::fails_only_on_lag(&verdict, lag) {
                let standing = self.standing(p, policy, request, now);
                degraded = pool::amend(&mut verdict, &self.pools[p].config.name, &standing, at);
                alone = false;
            }
        }
        Some(Judged {
            verdict,
            degraded,
            alone,
        })
    }

    /// Every pool's health by its members' own policies and thresholds.
    pub fn pools(&self, now: Instant) -> Vec<PoolHealth<'_>> {
        (0..self.pools.len())
            .map(|p| PoolHealth {
                config: &self.pools[p].config,
                standing: self.standing(p, None, &Thresholds::default(), now),
            })
            .collect()
    }

    /// Pool `p`'s standing under `policy` (each member's own when `None`) and `request`:
    /// from the pool's cache while every member's snapshot is the one it was computed from
    /// and it is under [`STANDING_TTL`] old (freshness moves with time), else every member
    /// judged anew. A check of a lagging member in a large pool thus costs a comparison of
    /// snapshot handles, not a verdict per member.
    fn standing(
        &self,
        p: usize,
        policy: Option<&str>,
        request: &Thresholds,
        now: Instant,
    ) -> Standing {
        let pool = &self.pools[p];
        let snapshots: Vec<Arc<Snapshot>> = pool
            .members
            .iter()
            .map(|&i| self.instances[i].latest())
            .collect();
        let same = |c: &Cached| {
            c.policy.as_deref() == policy
                && &c.request == request
                && now.saturating_duration_since(c.at) < STANDING_TTL
                && c.snapshots.len() == snapshots.len()
                && c.snapshots
                    .iter()
                    .zip(&snapshots)
                    .all(|(a, b)| Arc::ptr_eq(a, b))
        };
        if let Some(hit) = pool.lock().iter().find(|c| same(c)) {
            return hit.standing.clone();
        }
        let judged: Vec<(Option<Verdict>, Option<std::time::Duration>)> = pool
            .members
            .iter()
            .zip(&snapshots)
            .map(|(&i, snapshot)| {
                let w = &self.instances[i];
                let v = self
                    .judge
                    .evaluate(w.config.subject(), snapshot, policy, request, now);
                (v, judged_lag(snapshot))
            })
            .collect();
        let unknown = unknown_verdict();
        let members: Vec<Member<'_>> = judged
            .iter()
            // A member whose policy is gone counts as failing, never as a candidate.
            .map(|(v, lag)| Member {
                verdict: v.as_ref().unwrap_or(&unknown),
                lag: *lag,
            })
            .collect();
        let standing = pool::standing(pool.config.min_serving, &members);
        let mut cache = pool.lock();
        cache.retain(|c| now.saturating_duration_since(c.at) < STANDING_TTL);
        if cache.len() >= STANDING_ENTRIES {
            // Requests choose thresholds: the cache is bounded whatever they ask.
            cache.remove(0);
        }
        cache.push(Cached {
            policy: policy.map(str::to_string),
            request: request.clone(),
            snapshots,
            at: now,
            standing: standing.clone(),
        });
        standing
    }
}

/// How long a pool's computed standing is reused while no member's snapshot changed.
const STANDING_TTL: std::time::Duration = std::time::Duration::from_millis(100);
/// Standings (distinct questions) a pool keeps.
const STANDING_ENTRIES: usize = 8;

/// One computed standing of a pool and what it was computed from.
struct Cached {
    policy: Option<String>,
    request: Thresholds,
    snapshots: Vec<Arc<Snapshot>>,
    at: Instant,
    standing: Standing,
}

impl Pool {
    /// The cache; a poisoned lock still holds valid entries (each is pushed whole).
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Cached>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The lag a pool may admit a member by: the one its verdict judged (heartbeat or
/// Seconds_Behind); `None` when unknown, or when the member holds transactions its source never
/// had (errant at the last source reading): such a member is never admitted, whatever policy
/// the pool's checks ask (`replica` does not check errant transactions).
fn judged_lag(snapshot: &Snapshot) -> Option<std::time::Duration> {
    if snapshot.memory.errant_at_last_source.is_some() {
        return None;
    }
    snapshot
        .sample
        .as_ref()
        .and_then(|s| s.outcome.as_ref().ok())
        .and_then(|s| s.judged_lag())
}

/// Stands in for a member whose policy could not be evaluated: failing, with no check a
/// degraded member may fail.
fn unknown_verdict() -> Verdict {
    Verdict {
        policy: String::new(),
        resolved_policy: String::new(),
        healthy: false,
        checks: Vec::new(),
        sample_age_ms: None,
        steps: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixtures::instance;
    use crate::policy::{Judge, PolicySet};
    use crate::snapshot::sample::fixtures::{replica, snap};
    use std::time::Duration;
    use tokio::sync::watch;

    /// A replica lagging `secs` (Seconds_Behind), sampled 100 ms before `now`.
    fn lagging(secs: u64, now: Instant) -> Arc<Snapshot> {
        let mut s = replica();
        s.channels[0].lag = Some(Duration::from_secs(secs));
        Arc::new(snap(Ok(s), now, Duration::from_millis(100)))
    }

    #[test]
    fn a_pool_admits_the_least_behind_and_follows_every_members_newest_snapshot() {
        let now = Instant::now();
        let names = ["r1", "r2", "r3"];
        let (senders, receivers): (Vec<_>, Vec<_>) = [0, 30, 40]
            .iter()
            .map(|&lag| watch::channel(lagging(lag, now)))
            .unzip();
        let hub = Hub::new(
            names
                .iter()
                .zip(receivers)
                .enumerate()
                .map(|(i, (n, rx))| (instance(n, 3310 + i as u16, "replica"), rx))
                .collect(),
            Arc::new(Judge::new(PolicySet::builtin(), Duration::from_secs(3))),
            Default::default(),
        )
        .with_pools(&[PoolConfig {
            name: "reads".into(),
            instances: names.iter().map(|n| n.to_string()).collect(),
            min_serving: 2,
        }]);
        let ask = |i: usize| {
            let w = &hub.instances()[i];
            hub.evaluate(w, &w.latest(), None, &Thresholds::default(), now)
                .expect("a verdict")
        };
        let r2 = ask(1);
        assert!(r2.verdict.healthy && r2.degraded && !r2.alone);
        assert!(!ask(2).verdict.healthy);
        assert!(ask(0).alone, "a passing member reads no other");
        // r1 falls behind too (50s): the asked question is the same, the snapshots are not.
        senders[0].send_replace(lagging(50, now));
        let r3 = ask(2);
        assert!(r3.verdict.healthy && r3.degraded, "{:?}", r3.verdict.checks);
        let line = r3.verdict.checks.last().map(|c| c.line());
        assert_eq!(
            line.as_deref(),
            Some("WARN pool reads: 0 of 3 healthy, admitted as degraded (lag 40s, least behind)")
        );
        assert!(!ask(0).verdict.healthy, "the most behind stays out");
        let health = hub.pools(now);
        assert_eq!(health[0].standing.healthy, 0);
        assert_eq!(health[0].standing.admitted.len(), 2);
        // A request with its own max_lag is judged as its own question: at 45s two pass,
        // min_serving is met, r1 stays out.
        let lenient = Thresholds {
            max_lag: Some(Duration::from_secs(45)),
            ..Thresholds::default()
        };
        let w = &hub.instances()[0];
        let r1 = hub.evaluate(w, &w.latest(), None, &lenient, now).unwrap();
        assert!(!r1.verdict.healthy && !r1.degraded);
        assert_eq!(
            r1.verdict.checks.last().map(|c| c.line()).as_deref(),
            Some("-- pool reads: 2 of 3 healthy, min_serving 2 is met")
        );
        // ... and the pool's default question was not overwritten by it.
        assert!(ask(2).degraded);
        // r3 turns out to hold an errant transaction: never admitted; r1 takes its place.
        let mut errant = (*lagging(40, now)).clone();
        errant.memory.errant_at_last_source = Some("1: 0-3-7".into());
        senders[2].send_replace(Arc::new(errant));
        assert!(
            !ask(2).verdict.healthy,
            "an errant member is never admitted"
        );
        assert!(ask(0).degraded && ask(1).degraded);
        senders[2].send_replace(lagging(40, now));
        // A hostile client asking a lagging member with ever new thresholds: the pool keeps
        // at most STANDING_ENTRIES standings, and every answer is still judged right.
        for secs in 0..1000u64 {
            let t = Thresholds {
                max_lag: Some(Duration::from_millis(10_000 + secs)),
                ..Thresholds::default()
            };
            let w = &hub.instances()[2];
            let v = hub.evaluate(w, &w.latest(), None, &t, now).unwrap();
            assert!(
                v.degraded,
                "all three lag: the two least behind are admitted"
            );
        }
        assert!(hub.pools[0].lock().len() <= STANDING_ENTRIES);
    }
}
