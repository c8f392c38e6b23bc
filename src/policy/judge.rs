//! The judge: the policies and `max_sample_age` of the config in force, and the only builder of
//! an evaluation's [`Input`]. Every reader (HTTP checks, the agent, `/status`, `/metrics`,
//! systemd's watchdog, the poll step's event log and the CLI) asks it for verdicts, and it is the
//! only place that decides whether a sample is fresh. Plain data: no clock, no tokio.

use super::file::Thresholds;
use super::limits::Limits;
use super::set::PolicySet;
use super::verdict::{Freshness, Input, Sibling, Verdict};
use crate::snapshot::Snapshot;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one instance is judged as: its own policy and its own thresholds (its config).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The policy a check that names none evaluates (`/`, `/mysqlchk/`, the agent).
    pub policy: &'a str,
    /// Laid over the policy file's thresholds, under a request's.
    pub thresholds: &'a Thresholds,
    /// Judge `writer_lease` (HAProxy's question); false: does the policy pass without it (the
    /// lease task's question before it acquires or keeps the lease).
    pub judge_lease: bool,
    /// The other replicas of its source this guard watches, as last sampled: what
    /// `most_advanced` compares with. Empty where the reader does not look (and for the lease).
    pub siblings: &'a [Sibling<'a>],
}

/// The policies and the freshness bound every verdict of one config is given by.
#[derive(Debug, Clone)]
pub struct Judge {
    policies: Arc<PolicySet>,
    max_sample_age: Duration,
}

impl Judge {
    pub fn new(policies: PolicySet, max_sample_age: Duration) -> Judge {
        Judge {
            policies: Arc::new(policies),
            max_sample_age,
        }
    }

    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// How fresh `snapshot`'s sample is at `now`: the one freshness rule (a sample no older than
    /// `max_sample_age`) that the `sample` check, `/metrics`, the watchdog and the answer cache
    /// share.
    pub fn freshness(&self, snapshot: &Snapshot, now: Instant) -> Freshness {
        match snapshot.age(now) {
            None => Freshness::Unsampled,
            Some(age) if age <= self.max_sample_age => Freshness::Fresh {
                age,
                max: self.max_sample_age,
            },
            Some(age) => Freshness::Stale {
                age,
                max: self.max_sample_age,
            },
        }
    }

    /// Evaluates `policy` (or the subject's own) on `snapshot` at `now`, with thresholds laid
    /// policy file < instance < `request`. `None`: no such policy.
    pub fn evaluate(
        &self,
        subject: Subject<'_>,
        snapshot: &Snapshot,
        policy: Option<&str>,
        request: &Thresholds,
        now: Instant,
    ) -> Option<Verdict> {
        self.policies.evaluate(
            policy.unwrap_or(subject.policy),
            &Input {
                snapshot,
                freshness: self.freshness(snapshot, now),
                instance: subject.thresholds,
                request,
                now,
                judge_lease: subject.judge_lease,
                siblings: subject.siblings,
            },
        )
    }

    /// Every policy's verdict on `snapshot` with the subject's own thresholds, in policy name
    /// order: what `/status`, `/metrics` and the event log report.
    pub fn verdicts<'a>(
        &'a self,
        subject: Subject<'a>,
        snapshot: &'a Snapshot,
        now: Instant,
    ) -> impl Iterator<Item = Verdict> + 'a {
        self.policies.names().filter_map(move |name| {
            self.evaluate(subject, snapshot, Some(name), &Thresholds::default(), now)
        })
    }

    /// The limits `policy` judges the subject by (no request thresholds); `None` unless it is
    /// a policy with checks.
    pub fn limits(&self, subject: Subject<'_>, policy: &str) -> Option<Limits> {
        self.policies
            .limits(policy, subject.thresholds, &Thresholds::default())
    }
}
