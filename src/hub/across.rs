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
                same_configured_source: w.config.source.is_some()
                    && o.config.source.as_ref().map(|t| &t.addr)
                        == w.config.source.as_ref().map(|t| &t.addr),
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
                let standing = self.standing(p, policy, request, now, Some((at, &verdict, lag)));
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
                standing: self.standing(p, None, &Thresholds::default(), now, None),
            })
            .collect()
    }

    /// Pool `p`'s standing under `policy` (each member's own when `None`) and `request`;
    /// `known` is a member already judged (its position, verdict and lag).
    fn standing(
        &self,
        p: usize,
        policy: Option<&str>,
        request: &Thresholds,
        now: Instant,
        known: Option<(usize, &Verdict, Option<std::time::Duration>)>,
    ) -> Standing {
        let pool = &self.pools[p];
        let judged: Vec<(Option<Verdict>, Option<std::time::Duration>)> = pool
            .members
            .iter()
            .enumerate()
            .map(|(at, &i)| {
                if known.is_some_and(|(k, _, _)| k == at) {
                    return (None, None);
                }
                let w = &self.instances[i];
                let snapshot = w.latest();
                let v = self
                    .judge
                    .evaluate(w.config.subject(), &snapshot, policy, request, now);
                (v, judged_lag(&snapshot))
            })
            .collect();
        let unknown = unknown_verdict();
        let members: Vec<Member<'_>> = judged
            .iter()
            .enumerate()
            .map(|(at, (v, lag))| match known {
                Some((k, kv, klag)) if k == at => Member {
                    verdict: kv,
                    lag: klag,
                },
                // A member whose policy is gone counts as failing, never as a candidate.
                _ => Member {
                    verdict: v.as_ref().unwrap_or(&unknown),
                    lag: *lag,
                },
            })
            .collect();
        pool::standing(pool.config.min_serving, &members)
    }
}

/// The lag a snapshot's verdict judged (heartbeat or Seconds_Behind), `None` when unknown.
fn judged_lag(snapshot: &Snapshot) -> Option<std::time::Duration> {
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
