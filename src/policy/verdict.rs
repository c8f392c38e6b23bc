//! The verdict vocabulary every other part of the policy package speaks: what an evaluation
//! reads ([`Input`]) and what it answers ([`Verdict`], one [`Check`] per line, each with a
//! [`Level`]). A leaf: it imports nothing else of the package.

use super::file::Thresholds;
use super::limits::Limits;
use crate::snapshot::sample::ServerState;
use crate::snapshot::Snapshot;
use crate::units::fmt_duration;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Everything an evaluation reads besides the policy itself.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub snapshot: &'a Snapshot,
    /// How fresh the sample is, as the [`Judge`](super::Judge) found it: the `sample` check.
    pub freshness: Freshness,
    /// The instance's thresholds (its config), laid over the policy file's ...
    pub instance: &'a Thresholds,
    /// ... and the request's, laid over both.
    pub request: &'a Thresholds,
    /// The moment of evaluation; the only notion of time evaluation has.
    pub now: Instant,
    /// Whether `writer_lease` is judged (the lease task asks whether a policy passes without
    /// it).
    pub judge_lease: bool,
    /// Other replicas of the same source, for `most_advanced`.
    pub siblings: &'a [Sibling<'a>],
}

/// Another replica of the same source, as the reader last sampled it (see `siblings`).
#[derive(Debug, Clone, Copy)]
pub struct Sibling<'a> {
    pub name: &'a str,
    /// Its state, or why it cannot be compared (unreachable, stale, no sample yet).
    pub state: Result<&'a ServerState, &'a str>,
}

/// Whether a snapshot's sample is fresh at a moment: decided by [`Judge::freshness`]
/// (super::Judge::freshness) alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// No poll has finished yet.
    Unsampled,
    /// The sample is `age` old, within `max` (`max_sample_age`).
    Fresh { age: Duration, max: Duration },
    /// The sample is `age` old, beyond `max`.
    Stale { age: Duration, max: Duration },
}

impl Freshness {
    pub fn is_fresh(self) -> bool {
        matches!(self, Freshness::Fresh { .. })
    }

    /// How much longer the sample stays fresh; `None` when it is not fresh now.
    pub fn remaining(self) -> Option<Duration> {
        match self {
            Freshness::Fresh { age, max } => Some(max - age),
            _ => None,
        }
    }
}

impl Input<'_> {
    /// The limits a policy file's `thresholds` give with this input's instance and request.
    pub(crate) fn limits(&self, policy: &Thresholds) -> Limits {
        Limits::resolve(policy, self.instance, self.request)
    }

    /// When the latest sample was taken (`now` without one): the moment observations are
    /// compared against.
    pub(crate) fn taken_at(&self) -> Instant {
        self.snapshot
            .sample
            .as_ref()
            .map(|s| s.taken_at)
            .unwrap_or(self.now)
    }

    /// The server state of the latest sample; `None` without a sample or when the poll failed
    /// (the root cause check says which).
    pub(crate) fn state(&self) -> Option<&ServerState> {
        self.snapshot
            .sample
            .as_ref()
            .and_then(|s| s.outcome.as_ref().ok())
    }
}

/// The answer to "does this instance pass this policy now?", with one entry per check.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The policy asked for (e.g. `auto`).
    pub policy: String,
    /// The policy whose checks ran (e.g. `replica` when `auto` saw a read-only server).
    pub resolved_policy: String,
    pub healthy: bool,
    pub checks: Vec<Check>,
    /// Age of the sample judged, `None` before the first poll.
    pub sample_age_ms: Option<u64>,
    /// Manual steps printed after the checks (the promotion checklist); never run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
}

impl Verdict {
    pub(super) fn new(
        policy: &str,
        resolved: &str,
        checks: Vec<Check>,
        input: &Input<'_>,
    ) -> Verdict {
        Verdict {
            policy: policy.to_string(),
            resolved_policy: resolved.to_string(),
            healthy: checks.iter().all(|c| c.ok),
            checks,
            sample_age_ms: input.snapshot.age(input.now).map(|a| a.as_millis() as u64),
            steps: Vec::new(),
        }
    }

    /// The first failing check, which names the verdict's reason.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| !c.ok)
    }

    /// What the verdict fails on, as a key that changes when the cause does (another check
    /// fails, an error number or probe error kind changes) and not when only a measured value
    /// does; `None` when healthy.
    pub fn cause_key(&self) -> Option<String> {
        let failing: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| match &c.cause {
                Some(cause) => format!("{} ({cause})", c.name),
                None => c.name.clone(),
            })
            .collect();
        (!failing.is_empty()).then(|| failing.join(", "))
    }
}

/// How a check came out. `Warn` passes (it asks for attention); `Unknown` fails (fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
    Unknown,
    /// Not judged: what it depends on failed (reported once, as its own check), or it cannot
    /// be judged from what is known (one poll, an unreadable source). Does not fail the verdict
    /// by itself; a verdict whose server could not be read always has a failing check.
    #[serde(rename = "not_judged")]
    NotJudged,
}

/// One line of a verdict: `ok|WARN|FAIL|UNKNOWN <name> <detail>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    /// True for `Ok` and `Warn`.
    pub ok: bool,
    #[serde(rename = "status")]
    pub level: Level,
    /// Measured value and threshold as one phrase, e.g. `12s > 10s` or `No, want Yes`.
    pub detail: String,
    /// The measured value alone, e.g. `12s`, `No`, `NULL`.
    pub measured: String,
    /// The threshold alone, e.g. `<= 10s`, `Yes`; empty where the check has none.
    pub threshold: String,
    /// For a failure: what would fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// What kind of cause a failure has beyond its name (an error number, a probe error kind),
    /// so that a change of cause while unhealthy is seen as one; not shown.
    #[serde(skip)]
    pub cause: Option<String>,
}

impl Check {
    /// A check with no separate threshold: the detail is the measurement.
    pub(crate) fn fact(name: impl Into<String>, ok: bool, detail: String) -> Check {
        Check::leveled(name, if ok { Level::Ok } else { Level::Fail }, detail)
    }

    /// A check with an explicit level.
    pub(crate) fn leveled(name: impl Into<String>, level: Level, detail: String) -> Check {
        Check {
            name: name.into(),
            ok: matches!(level, Level::Ok | Level::Warn | Level::NotJudged),
            level,
            measured: detail.clone(),
            detail,
            threshold: String::new(),
            fix: None,
            cause: None,
        }
    }

    /// The same check with its kind of cause (see [`Check::cause`]).
    pub(crate) fn with_cause(mut self, cause: impl Into<String>) -> Check {
        self.cause = Some(cause.into());
        self
    }

    /// The same check with a fix hint.
    pub(crate) fn with_fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }

    /// A passing or failing check with its measured value and threshold shown apart.
    fn compared(
        name: impl Into<String>,
        ok: bool,
        detail: String,
        measured: String,
        threshold: String,
    ) -> Check {
        Check {
            name: name.into(),
            ok,
            level: if ok { Level::Ok } else { Level::Fail },
            fix: None,
            cause: None,
            detail,
            measured,
            threshold,
        }
    }

    /// A check that a value equals what is wanted.
    pub(super) fn want(name: impl Into<String>, measured: String, want: &str) -> Check {
        let ok = measured == want;
        let detail = if ok {
            measured.clone()
        } else {
            format!("{measured}, want {want}")
        };
        Check::compared(name, ok, detail, measured, want.to_string())
    }

    /// A check that a duration is at most a limit.
    pub(super) fn at_most(
        name: impl Into<String>,
        measured: Duration,
        limit: Duration,
        what: &str,
    ) -> Check {
        Check::bounded(name, measured <= limit, measured, limit, what)
    }

    /// A duration against its limit, `ok` as decided by the caller (the judge, for freshness).
    pub(super) fn bounded(
        name: impl Into<String>,
        ok: bool,
        measured: Duration,
        limit: Duration,
        what: &str,
    ) -> Check {
        let (m, l) = (fmt_duration(measured), fmt_duration(limit));
        let detail = format!("{what}{m} {} {l}", if ok { "<=" } else { ">" });
        Check::compared(name, ok, detail, m, format!("<= {l}"))
    }

    /// The line as it appears in a text body.
    pub fn line(&self) -> String {
        format!(
            "{} {} {}",
            match self.level {
                Level::Ok => "ok",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
                Level::Unknown => "UNKNOWN",
                Level::NotJudged => "--",
            },
            self.name,
            self.detail
        )
    }
}

pub(super) fn on_off(flag: bool) -> String {
    if flag { "ON" } else { "OFF" }.to_string()
}
