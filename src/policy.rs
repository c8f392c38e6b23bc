//! Policies: named sets of checks with thresholds, read from TOML files, and their evaluation.
//!
//! Evaluation is a pure function of (policy, snapshot, thresholds, now) that returns a
//! [`Verdict`] with one entry per check. This module does no I/O, reads no clock and imports
//! nothing from tokio, mysql_async or warp; the built-in policy files are compiled in.

use crate::sample::{Channel, ServerState, ThreadState};
use crate::snapshot::{LagPoint, Snapshot};
use crate::units::{clock_time, fmt_duration, serde_humantime};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The built-in policy files, by name; a file in `policies_dir` with the same name replaces one.
pub const BUILTIN: &[(&str, &str)] = &[
    ("any-lag", include_str!("../policies/any-lag.toml")),
    ("auto", include_str!("../policies/auto.toml")),
    ("backup", include_str!("../policies/backup.toml")),
    ("primary", include_str!("../policies/primary.toml")),
    ("promotion", include_str!("../policies/promotion.toml")),
    ("replica", include_str!("../policies/replica.toml")),
];

/// One rule a policy can require. Its name in a policy file is also the check name in verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A sample exists and is no older than `max_sample_age`.
    Sample,
    /// The last poll reached the server.
    Reachable,
    /// read_only, super_read_only and innodb_read_only are all OFF.
    Writable,
    /// The server has at least one replication channel.
    ReplicaStatus,
    /// Every channel's IO thread is `Yes`.
    IoThread,
    /// Every channel's SQL thread is `Yes`.
    SqlThread,
    /// No channel reports an IO or SQL error.
    ReplicationErrors,
    /// Every channel's lag is known and at most `max_lag`.
    Lag,
    /// No channel reports an SQL error (IO errors are expected while the source is gone).
    SqlError,
    /// Every channel has applied what its IO thread received (within `max_apply_backlog`).
    Applied,
    /// The backup gate's lag rule: with the IO thread connected, lag known and at most
    /// `max_lag`; with the source lost, the last connected observation showed lag at most
    /// `max_lag`, the server has not restarted since, and the relay log is applied.
    Source,
    /// Master-master for a writer: a channel from its peer must be connected with the SQL thread
    /// applying everything and lag within `max_lag`, or, with the peer lost, have been caught up
    /// when it vanished (as [`Rule::Source`]); `allow_isolated` admits it anyway, loudly. A writer
    /// without a replica status passes.
    Peer,
    /// Promotion: no channel is a delayed replica (`SQL_Delay` 0).
    NotDelayed,
    /// The IO thread says `Yes` but its read position has not moved for `max_stall` while the
    /// source (read by the guard) kept executing transactions: replication is stalled.
    Stall,
    /// Promotion: binary log and log_replica_updates on.
    Binlog,
    /// Promotion: GTID in use (MySQL gtid_mode ON, MariaDB Using_Gtid).
    Gtid,
    /// Promotion: read_only still ON (warns when OFF).
    ReadOnlyOn,
    /// Promotion: compare with the source: missing and errant transactions, version, server_id.
    CompareSource,
    /// The backup gate: no transactions the source (read by the guard this poll) never had,
    /// unless `allow_errant`. Not judged while the source is unreadable.
    ErrantTransactions,
}

/// Thresholds a policy file sets and an instance or a request may override.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Largest acceptable replication lag.
    #[serde(default, with = "serde_humantime::option")]
    pub max_lag: Option<Duration>,
    /// Bytes of received but not yet applied relay log tolerated by `applied` (default 0).
    #[serde(default)]
    pub max_apply_backlog: Option<u64>,
    /// How long the `source` rule trusts the last connected observation after the source is
    /// lost (default: as long as the server keeps running).
    #[serde(default, with = "serde_humantime::option")]
    pub max_source_lost: Option<Duration>,
    /// Also require the server to be writable (every read-only flag OFF).
    #[serde(default)]
    pub require_writable: Option<bool>,
    /// `peer`: admit a writer whose peer is gone for good (split-brain risk, said loudly).
    #[serde(default)]
    pub allow_isolated: Option<bool>,
    /// Hysteresis of the `lag` rule: after a lag failure, lag must stay at most this (default
    /// half of `max_lag`) ...
    #[serde(default, with = "serde_humantime::option")]
    pub recover_lag: Option<Duration>,
    /// ... for this many consecutive polls (default 3; 0 turns hysteresis off).
    #[serde(default)]
    pub recover_for: Option<u32>,
    /// Agent weight: full weight up to this lag (default a quarter of `max_lag`), then falling
    /// linearly towards `max_lag`.
    #[serde(default, with = "serde_humantime::option")]
    pub soft_lag: Option<Duration>,
    /// Judge a deliberately delayed replica against its `SQL_Delay` (lag minus the delay)
    /// instead of failing it as stale by design; for watching the delayed replica itself.
    #[serde(default)]
    pub allow_delay: Option<bool>,
    /// `stall`: how long the read position may stand still while the source advances.
    #[serde(default, with = "serde_humantime::option")]
    pub max_stall: Option<Duration>,
    /// `errant_transactions` on the backup gate: admit a backup holding transactions its
    /// source never had (warned, not failed).
    #[serde(default)]
    pub allow_errant: Option<bool>,
}

/// Defaults of the read-farm thresholds, derived from `max_lag`.
pub const DEFAULT_RECOVER_FOR: u32 = 3;

impl Thresholds {
    /// `recover_lag`, or half of `max_lag`.
    pub fn recover_lag_or_default(&self, max_lag: Duration) -> Duration {
        self.recover_lag.unwrap_or(max_lag / 2)
    }
    /// `soft_lag`, or a quarter of `max_lag`.
    pub fn soft_lag_or_default(&self, max_lag: Duration) -> Duration {
        self.soft_lag.unwrap_or(max_lag / 4)
    }
}

impl Thresholds {
    /// `self` with every threshold that `over` sets replaced by `over`'s value.
    pub fn overlay(&self, over: &Thresholds) -> Thresholds {
        Thresholds {
            max_lag: over.max_lag.or(self.max_lag),
            max_apply_backlog: over.max_apply_backlog.or(self.max_apply_backlog),
            max_source_lost: over.max_source_lost.or(self.max_source_lost),
            require_writable: over.require_writable.or(self.require_writable),
            allow_isolated: over.allow_isolated.or(self.allow_isolated),
            recover_lag: over.recover_lag.or(self.recover_lag),
            recover_for: over.recover_for.or(self.recover_for),
            soft_lag: over.soft_lag.or(self.soft_lag),
            allow_delay: over.allow_delay.or(self.allow_delay),
            max_stall: over.max_stall.or(self.max_stall),
            allow_errant: over.allow_errant.or(self.allow_errant),
        }
    }
}

/// A named policy as loaded from its file.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub description: String,
    pub body: Body,
}

/// What a policy does: run checks, or pick another policy by the server's role.
#[derive(Debug, Clone)]
pub enum Body {
    Checks {
        rules: Vec<Rule>,
        thresholds: Thresholds,
        /// Append the manual promotion steps to the verdict.
        promotion_steps: bool,
    },
    ByRole {
        when_writable: String,
        when_read_only: String,
    },
}

/// The file format; `deny_unknown_fields` so a misspelt key is an error, not a silent default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    description: Option<String>,
    checks: Option<Vec<Rule>>,
    when_writable: Option<String>,
    when_read_only: Option<String>,
    /// Print the manual promotion steps for the server's flavour after the checks.
    #[serde(default)]
    promotion_steps: bool,
    #[serde(flatten)]
    thresholds: Thresholds,
}

/// A policy file that cannot be used, and why. `line` is 1-based where the parser knows it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    pub line: Option<usize>,
    pub message: String,
}

impl PolicyError {
    fn new(message: impl Into<String>) -> Self {
        PolicyError {
            line: None,
            message: message.into(),
        }
    }
}

impl Policy {
    /// Parses one policy file's text.
    pub fn parse(name: &str, text: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError {
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().to_string(),
        })?;
        let body = match (file.checks, file.when_writable, file.when_read_only) {
            (Some(rules), None, None) => {
                if rules.is_empty() {
                    return Err(PolicyError::new(
                        "checks: a policy needs at least one check",
                    ));
                }
                if [Rule::Lag, Rule::Source, Rule::Peer]
                    .iter()
                    .any(|r| rules.contains(r))
                    && file.thresholds.max_lag.is_none()
                {
                    return Err(PolicyError::new("max_lag: the lag check needs a max_lag"));
                }
                Body::Checks {
                    rules,
                    thresholds: file.thresholds,
                    promotion_steps: file.promotion_steps,
                }
            }
            (None, Some(when_writable), Some(when_read_only)) => {
                if file.thresholds != Thresholds::default() || file.promotion_steps {
                    return Err(PolicyError::new(
                        "max_lag: a policy that picks by role takes its thresholds from the \
                         policies it picks",
                    ));
                }
                Body::ByRole {
                    when_writable,
                    when_read_only,
                }
            }
            _ => {
                return Err(PolicyError::new(
                    "checks: give either `checks` or both `when_writable` and `when_read_only`",
                ))
            }
        };
        Ok(Policy {
            name: name.to_string(),
            description: file.description.unwrap_or_default(),
            body,
        })
    }
}

/// 1-based line number of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// All policies known to one process: the built-ins plus those from `policies_dir`.
#[derive(Debug, Clone)]
pub struct PolicySet {
    /// Sorted by name, names unique: a check request finds its policy by binary search, and a
    /// policy's index is a small key for caches and counters.
    policies: Vec<Policy>,
}

impl PolicySet {
    /// The built-in policies only.
    pub fn builtin() -> PolicySet {
        let mut set = PolicySet {
            policies: Vec::new(),
        };
        for (name, text) in BUILTIN {
            // The built-ins are compiled in and covered by tests: a parse failure is a bug.
            set.insert(Policy::parse(name, text).expect("built-in policy parses"));
        }
        set
    }

    /// Adds a policy, replacing a built-in of the same name.
    pub fn insert(&mut self, policy: Policy) {
        match self.search(&policy.name) {
            Ok(i) => self.policies[i] = policy,
            Err(i) => self.policies.insert(i, policy),
        }
    }

    fn search(&self, name: &str) -> Result<usize, usize> {
        self.policies
            .binary_search_by(|p| p.name.as_str().cmp(name))
    }

    /// Checks that every role-picking policy names policies that exist and run checks.
    pub fn validate(&self) -> Result<(), (String, PolicyError)> {
        for policy in &self.policies {
            if let Body::ByRole {
                when_writable,
                when_read_only,
            } = &policy.body
            {
                for (key, target) in [
                    ("when_writable", when_writable),
                    ("when_read_only", when_read_only),
                ] {
                    match self.get(target).map(|p| &p.body) {
                        Some(Body::Checks { .. }) => {}
                        Some(Body::ByRole { .. }) => {
                            return Err((
                                policy.name.clone(),
                                PolicyError::new(format!(
                                "{key}: {target:?} picks by role itself; name a policy with checks"
                            )),
                            ))
                        }
                        None => {
                            return Err((
                                policy.name.clone(),
                                PolicyError::new(format!("{key}: no policy named {target:?}")),
                            ))
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.position(name).map(|i| &self.policies[i])
    }

    /// Where policy `name` stands among [`PolicySet::names`]: a small key for caches.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.search(name).ok()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| p.name.as_str())
    }

    /// Evaluates policy `name` for one snapshot; `None` if there is no such policy. An instance
    /// in maintenance fails every policy, with the maintenance reason first.
    pub fn evaluate(&self, name: &str, input: &Input<'_>) -> Option<Verdict> {
        let mut verdict = self.evaluate_policy(name, input)?;
        let unreadable = input
            .snapshot
            .sample
            .as_ref()
            .and_then(|s| s.maintenance_error.as_ref());
        if let Some(why) = unreadable {
            // Whether the operator meant maintenance is unknown: fail, for what it is.
            verdict.checks.insert(
                0,
                Check::fact("maintenance_file", false, why.clone())
                    .with_fix("make the maintenance file readable by replguard (or remove it)"),
            );
            verdict.healthy = false;
        }
        let maintenance = input
            .snapshot
            .sample
            .as_ref()
            .and_then(|s| s.maintenance.as_ref());
        if let Some(reason) = maintenance {
            let reason = if reason.is_empty() {
                "(no reason given)".to_string()
            } else {
                reason.clone()
            };
            verdict.checks.insert(
                0,
                Check::fact("maintenance", false, reason).with_fix(
                    "replguard maintenance off --config FILE --instance NAME (removes the file)",
                ),
            );
            verdict.healthy = false;
        }
        Some(verdict)
    }

    fn evaluate_policy(&self, name: &str, input: &Input<'_>) -> Option<Verdict> {
        let policy = self.get(name)?;
        Some(match &policy.body {
            Body::Checks {
                rules,
                thresholds,
                promotion_steps,
            } => {
                let thresholds = thresholds.overlay(input.overrides);
                let checks = run_rules(rules, &thresholds, input);
                let mut v = Verdict::new(name, name, checks, input);
                if *promotion_steps {
                    // Steps only for a replica: a primary has nothing to be promoted to.
                    match input.state() {
                        Ok(state) if !state.channels.is_empty() => {
                            v.steps = crate::promotion::steps(state.flavor)
                        }
                        _ => {}
                    }
                }
                v
            }
            Body::ByRole {
                when_writable,
                when_read_only,
            } => {
                let state = input.state();
                let (target, role_check) = match state {
                    Ok(s) if s.writable() => (
                        when_writable,
                        Check::fact("role", true, format!("writable -> {when_writable}")),
                    ),
                    Ok(_) => (
                        when_read_only,
                        Check::fact("role", true, format!("read-only -> {when_read_only}")),
                    ),
                    Err(_) => (
                        when_read_only,
                        not_judged(
                            "role",
                            if input.snapshot.sample.is_none() {
                                "no sample yet"
                            } else {
                                "server unreachable"
                            },
                        ),
                    ),
                };
                let mut checks = match self.get(target).map(|p| &p.body) {
                    Some(Body::Checks {
                        rules, thresholds, ..
                    }) => run_rules(rules, &thresholds.overlay(input.overrides), input),
                    // validate() rules this out; fail closed if it was skipped.
                    _ => vec![Check::fact("policy", false, format!("{target:?} unusable"))],
                };
                if role_check.level == Level::Ok {
                    checks.insert(0, role_check);
                } else {
                    // The real cause (no sample, unreachable) leads, for the reason phrase;
                    // and it is there even when the picked policy does not depend on it.
                    if checks.iter().all(|c| c.ok) {
                        checks.insert(0, root_cause(input));
                    }
                    checks.push(role_check);
                }
                Verdict::new(name, target, checks, input)
            }
        })
    }
}

/// Everything an evaluation reads besides the policy itself.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub snapshot: &'a Snapshot,
    /// A sample older than this fails the `sample` check.
    pub max_sample_age: Duration,
    /// Thresholds from the instance's config and the request, already overlaid in that order.
    pub overrides: &'a Thresholds,
    /// The moment of evaluation; the only notion of time evaluation has.
    pub now: Instant,
}

impl Input<'_> {
    /// When the latest sample was taken (`now` without one): the moment observations are
    /// compared against.
    pub(crate) fn taken_at(&self) -> Instant {
        self.snapshot
            .sample
            .as_ref()
            .map(|s| s.taken_at)
            .unwrap_or(self.now)
    }

    /// The server state of the latest sample, or why there is none to judge.
    pub(crate) fn state(&self) -> Result<&ServerState, String> {
        match &self.snapshot.sample {
            None => Err("no sample yet".to_string()),
            Some(sample) => match &sample.outcome {
                Ok(state) => Ok(state),
                Err(err) => Err(format!("unreachable ({err})")),
            },
        }
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
    fn new(policy: &str, resolved: &str, checks: Vec<Check>, input: &Input<'_>) -> Verdict {
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

    /// A check that a value equals what is wanted.
    fn want(name: impl Into<String>, measured: String, want: &str) -> Check {
        let ok = measured == want;
        Check {
            name: name.into(),
            ok,
            level: if ok { Level::Ok } else { Level::Fail },
            fix: None,
            cause: None,
            detail: if ok {
                measured.clone()
            } else {
                format!("{measured}, want {want}")
            },
            measured,
            threshold: want.to_string(),
        }
    }

    /// A check that a duration is at most a limit.
    fn at_most(name: impl Into<String>, measured: Duration, limit: Duration, what: &str) -> Check {
        let ok = measured <= limit;
        let (m, l) = (fmt_duration(measured), fmt_duration(limit));
        Check {
            name: name.into(),
            ok,
            level: if ok { Level::Ok } else { Level::Fail },
            fix: None,
            cause: None,
            detail: if ok {
                format!("{what}{m} <= {l}")
            } else {
                format!("{what}{m} > {l}")
            },
            measured: m,
            threshold: format!("<= {l}"),
        }
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

fn on_off(flag: bool) -> String {
    if flag { "ON" } else { "OFF" }.to_string()
}

fn run_rules(rules: &[Rule], thresholds: &Thresholds, input: &Input<'_>) -> Vec<Check> {
    let mut out = Vec::new();
    for rule in rules {
        run_rule(*rule, thresholds, input, &mut out);
    }
    if thresholds.require_writable == Some(true) && !rules.contains(&Rule::Writable) {
        run_rule(Rule::Writable, thresholds, input, &mut out);
    }
    // One root cause, reported once: the checks that depend on it say "not judged". Fail
    // closed when the policy does not list the check that names the cause: it leads then.
    let dependents = out
        .iter()
        .any(|c| c.cause.as_deref() == Some(DEPENDS_ON_ROOT_CAUSE));
    if dependents && out.iter().all(|c| c.ok) {
        out.insert(0, root_cause(input));
    }
    for check in out.iter_mut().filter(|c| !c.ok && c.fix.is_none()) {
        check.fix = default_fix(&check.name).map(str::to_string);
    }
    out
}

/// What usually fixes a failing check, by check name (a channel suffix is ignored).
fn default_fix(name: &str) -> Option<&'static str> {
    let base = name.split('[').next().unwrap_or(name);
    Some(match base {
        "sample" => "replguard has no fresh sample: see /status and replguard's log",
        "reachable" => "make sure MySQL runs and the check user can log in (see the error)",
        "role" => "make sure MySQL runs and the check user can log in",
        "replica_status" => "this server is not a replica: CHANGE MASTER TO ... and START SLAVE",
        "io_thread" => "START SLAVE IO_THREAD; see Last_IO_Error and whether the source is up",
        "sql_thread" => "START SLAVE SQL_THREAD once Last_SQL_Error is resolved",
        "replication_errors" | "sql_error" => {
            "resolve the error SHOW REPLICA STATUS shows before trusting this server"
        }
        "applied" => "let the SQL thread apply the relay log (START SLAVE SQL_THREAD) and wait",
        "lag" => "wait until it catches up, or find what slows it (long transactions, load)",
        "source_lost" => "rely on a server that was caught up when the source was lost",
        "peer" => "let it reconnect to its peer and catch up before it takes traffic",
        "read_only" | "super_read_only" | "innodb_read_only" => {
            "SET GLOBAL read_only = OFF (and super_read_only) on the intended writer only"
        }
        _ => return None,
    })
}

fn run_rule(rule: Rule, thresholds: &Thresholds, input: &Input<'_>, out: &mut Vec<Check>) {
    let name = rule_name(rule);
    if rule == Rule::Sample {
        out.push(match input.snapshot.age(input.now) {
            None => Check::fact(name, false, "none yet: no poll has finished".to_string()),
            Some(age) => {
                let mut c = Check::at_most(name, age, input.max_sample_age, "age ");
                if !c.ok {
                    c.detail = format!("stale: {}", c.detail);
                }
                c
            }
        });
        return;
    }
    let state = match input.state() {
        Ok(state) => state,
        Err(_) => {
            out.push(match (&input.snapshot.sample, rule) {
                (Some(_), Rule::Reachable) => root_cause(input),
                (None, _) => not_judged(name, "no sample yet"),
                (Some(_), _) => not_judged(name, "server unreachable"),
            });
            return;
        }
    };
    match rule {
        Rule::Sample => {}
        Rule::Reachable => out.push(Check::fact(
            name,
            true,
            format!(
                "{} {} server_id {}",
                state.flavor, state.version, state.server_id
            ),
        )),
        Rule::Writable => {
            out.push(Check::want("read_only", on_off(state.read_only), "OFF"));
            out.push(match state.super_read_only {
                Some(flag) => Check::want("super_read_only", on_off(flag), "OFF"),
                None => Check::fact("super_read_only", true, format!("n/a ({})", state.flavor)),
            });
            out.push(Check::want(
                "innodb_read_only",
                on_off(state.innodb_read_only),
                "OFF",
            ));
        }
        Rule::ReplicaStatus => out.push(match state.channels.len() {
            0 => root_cause(input),
            1 => Check::fact(name, true, "1 channel".to_string()),
            n => Check::fact(name, true, format!("{n} channels")),
        }),
        Rule::NotDelayed => {
            if state.channels.is_empty() {
                out.push(not_judged(name, "no replica status"));
            }
            let allowed = thresholds.allow_delay == Some(true);
            out.extend(crate::promotion::not_delayed(state).into_iter().map(|c| {
                if allowed && !c.ok && c.level == Level::Fail {
                    Check::fact(
                        c.name,
                        true,
                        format!("{} (judged against it: allow_delay)", c.detail),
                    )
                } else {
                    c
                }
            }));
        }
        Rule::Stall => {
            for ch in &state.channels {
                out.push(stall_check(ch, thresholds, input));
            }
        }
        Rule::Binlog => out.push(crate::promotion::binlog(state)),
        Rule::Gtid => out.extend(crate::promotion::gtid_in_use(state)),
        Rule::ReadOnlyOn => out.push(crate::promotion::read_only_on(state)),
        Rule::CompareSource if state.channels.is_empty() => {
            for name in ["source", "missing_transactions", "errant_transactions"] {
                out.push(not_judged(name, "no replica status"));
            }
        }
        Rule::CompareSource => out.extend(crate::promotion::source_checks(state, input)),
        Rule::ErrantTransactions => out.push(crate::promotion::errant_check(
            state,
            input,
            thresholds.allow_errant == Some(true),
        )),
        Rule::Peer => {
            if state.channels.is_empty() {
                out.push(Check::fact(
                    name,
                    true,
                    "none (no replica status)".to_string(),
                ));
            }
            for ch in &state.channels {
                out.push(peer_check(ch, state, thresholds, input));
            }
        }
        Rule::IoThread
        | Rule::SqlThread
        | Rule::ReplicationErrors
        | Rule::Lag
        | Rule::SqlError
        | Rule::Applied
        | Rule::Source => {
            if state.channels.is_empty() {
                out.push(not_judged(name, "no replica status"));
            }
            match (&state.heartbeat, rule) {
                // With a heartbeat table, that is the lag the policy judges (one line).
                (Some(hb), Rule::Lag) if !state.channels.is_empty() => {
                    out.push(heartbeat_check(hb, state, thresholds))
                }
                _ => {
                    for ch in &state.channels {
                        out.push(match rule {
                            Rule::Source => source_check(ch, state, thresholds, input),
                            _ => channel_check(rule, ch, thresholds),
                        });
                    }
                }
            }
            if rule == Rule::Lag && !state.channels.is_empty() {
                out.push(lag_stable_check(thresholds, input));
            }
        }
    }
}

/// The `cause` of a check not judged because the server could not be read or is not a replica.
const DEPENDS_ON_ROOT_CAUSE: &str = "depends on the root cause";

/// A check not judged because `cause` (reported once, by its own check) makes it meaningless.
fn not_judged(name: &str, cause: &str) -> Check {
    Check::leveled(name, Level::NotJudged, format!("not judged: {cause}"))
        .with_cause(DEPENDS_ON_ROOT_CAUSE)
}

/// The check that names why the server could not be judged: no sample yet, the poll's error,
/// or an empty replica status.
fn root_cause(input: &Input<'_>) -> Check {
    match input.snapshot.sample.as_ref().map(|s| &s.outcome) {
        None => Check::fact(
            "sample",
            false,
            "none yet: no poll has finished".to_string(),
        ),
        Some(Err(err)) => {
            Check::fact("reachable", false, err.to_string()).with_cause(err.kind_key())
        }
        Some(Ok(_)) => Check::fact(
            "replica_status",
            false,
            "empty: not configured as a replica (no replica status row)".to_string(),
        ),
    }
}

fn channel_check(rule: Rule, ch: &Channel, thresholds: &Thresholds) -> Check {
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
            // Policy::parse refuses a lag rule without max_lag and overrides only replace it.
            let limit = thresholds.max_lag.unwrap_or(Duration::ZERO);
            // With allow_delay, a delayed replica's lag is judged net of its SQL_Delay.
            let delay = match (thresholds.allow_delay, ch.sql_delay) {
                (Some(true), Some(d)) => d,
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
            let backlog = thresholds.max_apply_backlog.unwrap_or(0);
            let (ok, detail) = applied(ch, backlog);
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

/// Whether the SQL thread has applied what the IO thread received, within `backlog` bytes,
/// judged on source coordinates (read vs executed), which every flavour reports.
fn applied(ch: &Channel, backlog: u64) -> (bool, String) {
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

/// The backup gate's lag rule for one channel (see [`Rule::Source`]).
fn source_check(
    ch: &Channel,
    state: &ServerState,
    thresholds: &Thresholds,
    input: &Input<'_>,
) -> Check {
    if ch.io_thread == ThreadState::Yes {
        return match &state.heartbeat {
            Some(hb) => heartbeat_check(hb, state, thresholds),
            None => channel_check(Rule::Lag, ch, thresholds),
        };
    }
    if !source_unreachable(ch) {
        return broken_io(ch, "");
    }
    let (ok, detail) = match remembered(ch, state, thresholds, input) {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    Check::fact(ch.label("source_lost"), ok, detail)
}

/// The master-master rule for a writer (see [`Rule::Peer`]): its channel from the peer must be
/// connected and caught up, or have been caught up when the peer vanished.
fn peer_check(
    ch: &Channel,
    state: &ServerState,
    thresholds: &Thresholds,
    input: &Input<'_>,
) -> Check {
    let name = ch.label("peer");
    let peer = format!("{}:{}", ch.source_host, ch.source_port);
    // Policy::parse refuses a peer rule without max_lag and overrides only replace it.
    let limit = thresholds.max_lag.unwrap_or(Duration::ZERO);
    if ch.io_thread == ThreadState::Yes {
        let (applied_ok, applied_detail) = applied(ch, thresholds.max_apply_backlog.unwrap_or(0));
        let (ok, detail) = match state.effective_lag(ch) {
            _ if ch.sql_thread != ThreadState::Yes => (
                false,
                format!("{peer} connected, SQL thread {}, want Yes", ch.sql_thread),
            ),
            None => (
                false,
                format!(
                    "{peer} connected, lag NULL (unknown), want <= {}",
                    fmt_duration(limit)
                ),
            ),
            Some(lag) if lag > limit => (
                false,
                format!(
                    "{peer} connected, lag {} > {}",
                    fmt_duration(lag),
                    fmt_duration(limit)
                ),
            ),
            Some(lag) if !applied_ok => (
                false,
                format!(
                    "{peer} connected, lag {}, {applied_detail}",
                    fmt_duration(lag)
                ),
            ),
            Some(lag) => (
                true,
                format!(
                    "{peer} connected, lag {} <= {}, relay log applied",
                    fmt_duration(lag),
                    fmt_duration(limit)
                ),
            ),
        };
        return Check::fact(name, ok, detail);
    }
    if !source_unreachable(ch) {
        let broken = broken_io(ch, &format!(" (peer {peer})"));
        return if thresholds.allow_isolated == Some(true) {
            Check::fact(
                name,
                true,
                format!(
                    "{}; ADMITTED BY allow_isolated: if {peer} still takes writes this is \
                     split brain",
                    broken.detail
                ),
            )
        } else {
            broken
        };
    }
    match remembered(ch, state, thresholds, input) {
        Ok(detail) => Check::fact(name, true, format!("{peer} lost {detail}")),
        Err(detail) if thresholds.allow_isolated == Some(true) => Check::fact(
            name,
            true,
            format!(
                "{peer} lost {detail}; ADMITTED BY allow_isolated: if {peer} still takes \
                 writes this is split brain"
            ),
        ),
        Err(detail) => Check::fact(name, false, format!("{peer} lost {detail}")),
    }
}

/// The `io_thread` line of a channel whose IO thread is not connected although its source is
/// not lost: stopped by hand, or failing for another reason than the network (1236 binlog
/// purged on the source, 1045 replication user refused). The source lives and may keep taking
/// writes this server does not get: that is broken replication, named as such. `whose` follows
/// the state in the detail (e.g. the peer's address).
fn broken_io(ch: &Channel, whose: &str) -> Check {
    let name = ch.label("io_thread");
    if ch.last_io_errno == 0 {
        return Check::fact(
            name,
            false,
            format!(
                "{}{whose}: stopped without a connection error, so the source is not lost: \
                 replication is broken and the source may still take writes",
                ch.io_thread
            ),
        );
    }
    Check::fact(
        name,
        false,
        format!(
            "{}{whose}: error {} {}: replication broken, the source is not lost",
            ch.io_thread, ch.last_io_errno, ch.last_io_error
        ),
    )
    .with_cause(format!("errno {}", ch.last_io_errno))
}

/// Judges a channel whose IO thread is not connected by what the poller remembers: the last
/// connected observation must have shown lag within `max_lag`, the server must not have
/// restarted since, the relay log must be applied, and `max_source_lost` (if set) must not have
/// run out. `Ok`/`Err` carry the detail for the verdict line.
fn remembered(
    ch: &Channel,
    state: &ServerState,
    thresholds: &Thresholds,
    input: &Input<'_>,
) -> Result<String, String> {
    let limit = thresholds.max_lag.unwrap_or(Duration::ZERO);
    let Some(seen) = input.snapshot.memory.io_last_connected.get(&ch.name) else {
        return Err(format!(
            "IO thread {} and never seen connected: no caught-up observation to trust",
            ch.io_thread
        ));
    };
    let source_now = format!("{}:{}", ch.source_host, ch.source_port);
    if seen.source != source_now {
        return Err(format!(
            "the channel now replicates from {source_now}, last seen connected to {}: no \
             caught-up observation of this source",
            seen.source
        ));
    }
    let taken_at = input.taken_at();
    let since = format!(
        "since {} ({} ago)",
        clock_time(seen.at_wall),
        fmt_duration(round_secs(input.now.saturating_duration_since(seen.at)))
    );
    // Newer evidence beats memory. The guard may still reach the source the replica lost (a
    // partition between the two), or have read it after the replica lost it: what the source
    // had then decides, not the older caught-up observation.
    if let Some(missing) = crate::promotion::missing_from_source(state, ch, input) {
        return Err(format!("{since}, {missing}"));
    }
    // A server that restarted after the observation may have missed writes while it was down:
    // its uptime now must cover its uptime then plus the time since. Uptime has whole-second
    // granularity (both readings may be up to 1s short), hence the tolerance.
    const UPTIME_TOLERANCE: Duration = Duration::from_millis(1250);
    match (state.uptime, seen.uptime) {
        (Some(now_up), Some(then_up))
            if now_up + UPTIME_TOLERANCE
                >= then_up + taken_at.saturating_duration_since(seen.at) => {}
        (Some(now_up), Some(_)) => {
            return Err(format!(
                "{since}, memory void: the server restarted {} ago",
                fmt_duration(now_up)
            ))
        }
        _ => return Err(format!("{since}, memory void: server uptime unknown")),
    }
    let last = match seen.lag {
        Some(lag) if lag <= limit => format!("last lag {}", fmt_duration(lag)),
        Some(lag) => {
            return Err(format!(
                "{since}, last lag {} > {}",
                fmt_duration(lag),
                fmt_duration(limit)
            ))
        }
        None => return Err(format!("{since}, last lag NULL (unknown)")),
    };
    if let Some(max) = thresholds.max_source_lost {
        let lost_for = input.now.saturating_duration_since(seen.at);
        if lost_for > max {
            return Err(format!(
                "{since}, {last}, lost for longer than max_source_lost {}",
                fmt_duration(max)
            ));
        }
    }
    let (applied, detail) = applied(ch, thresholds.max_apply_backlog.unwrap_or(0));
    if !applied {
        return Err(format!("{since}, {last}, {detail}"));
    }
    let restored = if input.snapshot.memory.restored {
        " (remembered across a replguard restart)"
    } else {
        ""
    };
    Ok(format!("{since}, {last}, relay log applied{restored}"))
}

/// The `lag` line from a heartbeat reading (microseconds; negative: the source's clock is
/// ahead). Seconds_Behind_Master is still shown. A stale heartbeat with everything applied most
/// likely means the writer stopped, and says so.
fn heartbeat_check(
    hb: &Result<i64, String>,
    state: &ServerState,
    thresholds: &Thresholds,
) -> Check {
    let max = thresholds.max_lag.unwrap_or(Duration::ZERO);
    let sbm = state
        .channels
        .iter()
        .map(|c| match c.lag {
            Some(l) => fmt_duration(l),
            None => "NULL".to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let us = match hb {
        Err(e) => return Check::fact("lag", false, format!("heartbeat: {e}")),
        Ok(us) => *us,
    };
    if us < 0 {
        let skew = Duration::from_micros(us.unsigned_abs());
        if skew > max {
            return Check::fact(
                "lag",
                false,
                format!(
                    "heartbeat from the future: the source's clock is {} ahead, beyond max_lag \
                     {}: lag cannot be measured (clock skew)",
                    fmt_duration(skew),
                    fmt_duration(max)
                ),
            );
        }
        return Check::fact(
            "lag",
            true,
            format!(
                "0s <= {} (heartbeat; clock skew: the source's clock is {} ahead; \
                 Seconds_Behind_Master {sbm})",
                fmt_duration(max),
                fmt_duration(skew)
            ),
        );
    }
    let lag = Duration::from_micros(us as u64);
    let mut c = Check::at_most("lag", lag, max, "");
    if c.ok {
        c.detail = format!("{} (heartbeat; Seconds_Behind_Master {sbm})", c.detail);
    } else if state.channels.iter().all(|ch| applied(ch, 0).0) {
        c.detail = format!(
            "heartbeat stale: newest heartbeat {} old > {}, relay log applied: the heartbeat \
             writer has most likely stopped",
            fmt_duration(lag),
            fmt_duration(max)
        );
    } else {
        c.detail = format!("{} (heartbeat; Seconds_Behind_Master {sbm})", c.detail);
    }
    c
}

/// Default `max_stall` when a policy uses the stall rule without setting it.
pub const DEFAULT_MAX_STALL: Duration = Duration::from_secs(30);

/// The stall rule for one channel (see [`Rule::Stall`]).
fn stall_check(ch: &Channel, thresholds: &Thresholds, input: &Input<'_>) -> Check {
    let name = ch.label("stall");
    let max = thresholds.max_stall.unwrap_or(DEFAULT_MAX_STALL);
    let memory = &input.snapshot.memory;
    if ch.io_thread != ThreadState::Yes {
        return Check::fact(
            name,
            true,
            format!("not judged: IO thread {}", ch.io_thread),
        );
    }
    if let Some(why) = single_poll(input) {
        return Check::leveled(name, Level::NotJudged, why);
    }
    let Some(read) = memory.read_progress.get(&ch.name) else {
        return Check::fact(name, true, "no read position seen yet".to_string());
    };
    let taken_at = input.taken_at();
    let frozen = taken_at.saturating_duration_since(read.since);
    let live = input
        .snapshot
        .sample
        .as_ref()
        .and_then(|s| s.source.as_ref())
        .is_some_and(|s| s.outcome.is_ok());
    let source_moved = memory
        .source_progress
        .as_ref()
        .is_some_and(|p| p.changed_at > read.since);
    let at = format!("{}:{}", read.file, read.pos);
    match (live, source_moved) {
        (true, true) if frozen > max => Check::fact(
            name,
            false,
            format!(
                "replication stalled: read position {at} unchanged for {} > {} while the \
                 source kept executing transactions (the IO thread still says Yes)",
                fmt_duration(round_secs(frozen)),
                fmt_duration(max)
            ),
        )
        .with_fix(
            "STOP SLAVE IO_THREAD; START SLAVE IO_THREAD; and check the network to the source",
        ),
        (true, true) => Check::fact(
            name,
            true,
            format!(
                "read position {at} unchanged for {} <= {} while the source advances",
                fmt_duration(round_secs(frozen)),
                fmt_duration(max)
            ),
        ),
        (true, false) if frozen.is_zero() => {
            Check::fact(name, true, format!("read position moving ({at})"))
        }
        (true, false) => Check::fact(
            name,
            true,
            format!("read position {at}; the source has not advanced since"),
        ),
        (false, _) => Check::fact(
            name,
            true,
            "not judged: the source is not readable by the guard".to_string(),
        ),
    }
}

/// Why a check over several polls (hysteresis, stall) cannot be judged from the snapshot: a
/// one-shot `replguard check` sees one poll, and so does the daemon's first; `None` otherwise.
fn single_poll(input: &Input<'_>) -> Option<String> {
    if input.snapshot.one_shot {
        Some("not judged: one-shot".to_string())
    } else if input.snapshot.polls <= 1 {
        Some("not judged: first poll".to_string())
    } else {
        None
    }
}

/// Where a replica stands in lag hysteresis after replaying its recent polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// No lag failure in the history.
    Steady,
    /// A lag failure, then `recover_for` consecutive polls at most `recover_lag`.
    Recovered,
    /// Failed on lag and not yet back: `good` of `need` consecutive polls so far.
    Recovering {
        good: u32,
        need: u32,
        failed_at: Instant,
    },
}

/// Replays `history` (oldest first) through the hysteresis: a lag above `max_lag` (or
/// unknown) fails; coming back takes `recover_for` consecutive polls with lag at most
/// `recover_lag`. A pure function of its inputs, so a per-request `max_lag` gets its own
/// hysteresis from the same history. Readings that flap 0 <-> thousands never recover.
pub fn lag_recovery(
    history: &VecDeque<LagPoint>,
    max_lag: Duration,
    recover_lag: Duration,
    recover_for: u32,
) -> Recovery {
    let mut state = Recovery::Steady;
    for p in history {
        let within_max = p.lag.is_some_and(|l| l <= max_lag);
        let within_recover = p.lag.is_some_and(|l| l <= recover_lag);
        state = match state {
            Recovery::Steady | Recovery::Recovered if within_max => state,
            Recovery::Steady | Recovery::Recovered => Recovery::Recovering {
                good: 0,
                need: recover_for,
                failed_at: p.at,
            },
            Recovery::Recovering { .. } if !within_max => Recovery::Recovering {
                good: 0,
                need: recover_for,
                failed_at: p.at,
            },
            Recovery::Recovering {
                good, failed_at, ..
            } if within_recover => {
                if good + 1 >= recover_for {
                    Recovery::Recovered
                } else {
                    Recovery::Recovering {
                        good: good + 1,
                        need: recover_for,
                        failed_at,
                    }
                }
            }
            Recovery::Recovering { failed_at, .. } => Recovery::Recovering {
                good: 0,
                need: recover_for,
                failed_at,
            },
        };
    }
    state
}

/// The `lag_stable` line that follows the `lag` lines: hysteresis over the recent polls.
fn lag_stable_check(thresholds: &Thresholds, input: &Input<'_>) -> Check {
    let max = thresholds.max_lag.unwrap_or(Duration::ZERO);
    let recover_lag = thresholds.recover_lag_or_default(max);
    let recover_for = thresholds.recover_for.unwrap_or(DEFAULT_RECOVER_FOR);
    if recover_for == 0 {
        return Check::fact("lag_stable", true, "hysteresis off (recover_for 0)".into());
    }
    if let Some(why) = single_poll(input) {
        return Check::leveled("lag_stable", Level::NotJudged, why);
    }
    let history = &input.snapshot.memory.lag_history;
    let net: VecDeque<LagPoint>;
    let history = if thresholds.allow_delay == Some(true) {
        net = history
            .iter()
            .map(|p| LagPoint {
                lag: p.lag.map(|l| l.saturating_sub(p.delay)),
                ..*p
            })
            .collect();
        &net
    } else {
        history
    };
    match lag_recovery(history, max, recover_lag, recover_for) {
        Recovery::Steady => Check::fact(
            "lag_stable",
            true,
            format!("no lag failure in the last {} polls", history.len()),
        ),
        Recovery::Recovered => Check::fact(
            "lag_stable",
            true,
            format!(
                "recovered: {recover_for} polls in a row <= {}",
                fmt_duration(recover_lag)
            ),
        ),
        Recovery::Recovering {
            good,
            need,
            failed_at,
        } => Check::fact(
            "lag_stable",
            false,
            format!(
                "recovering: {good} of {need} polls <= {} since a lag failure {} ago",
                fmt_duration(recover_lag),
                fmt_duration(round_secs(input.now.saturating_duration_since(failed_at)))
            ),
        ),
    }
}

/// MySQL client errors that mean "cannot reach the source" (2003 can't connect, 2005 unknown
/// host, 2013/2006 lost connection, 2026 TLS, 2002 socket) and the server's network
/// read/write errors (1158-1161). A `Connecting` thread without an error yet is reconnecting.
fn source_unreachable(ch: &Channel) -> bool {
    const NETWORK: &[u32] = &[2002, 2003, 2005, 2006, 2013, 2026, 1158, 1159, 1160, 1161];
    match ch.io_thread {
        ThreadState::Connecting => ch.last_io_errno == 0 || NETWORK.contains(&ch.last_io_errno),
        _ => NETWORK.contains(&ch.last_io_errno),
    }
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

fn rule_name(rule: Rule) -> &'static str {
    match rule {
        Rule::Sample => "sample",
        Rule::Reachable => "reachable",
        Rule::Writable => "writable",
        Rule::ReplicaStatus => "replica_status",
        Rule::IoThread => "io_thread",
        Rule::SqlThread => "sql_thread",
        Rule::ReplicationErrors => "replication_errors",
        Rule::Lag => "lag",
        Rule::SqlError => "sql_error",
        Rule::Applied => "applied",
        Rule::Source => "source",
        Rule::Peer => "peer",
        Rule::NotDelayed => "not_delayed",
        Rule::Stall => "stall",
        Rule::Binlog => "binlog",
        Rule::Gtid => "gtid",
        Rule::ReadOnlyOn => "read_only",
        Rule::CompareSource => "source",
        Rule::ErrantTransactions => "errant_transactions",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::fixtures::{channel, primary, replica, snap};
    use crate::sample::{Flavor, ProbeError, ProbeErrorKind, ServerState, ThreadState};
    use std::sync::Arc;

    fn err(kind: ProbeErrorKind, errno: Option<u16>, msg: &str) -> ProbeError {
        ProbeError {
            kind,
            errno,
            message: msg.into(),
        }
    }

    fn eval(policy: &str, snapshot: &Snapshot, now: Instant, max_lag: Option<u64>) -> Verdict {
        let overrides = Thresholds {
            max_lag: max_lag.map(Duration::from_secs),
            ..Default::default()
        };
        eval_with(&PolicySet::builtin(), policy, snapshot, &overrides, now)
    }

    /// Evaluates `policy` of `set` with `overrides` and a 3 s `max_sample_age`.
    fn eval_with(
        set: &PolicySet,
        policy: &str,
        snapshot: &Snapshot,
        overrides: &Thresholds,
        now: Instant,
    ) -> Verdict {
        set.evaluate(
            policy,
            &Input {
                snapshot,
                max_sample_age: Duration::from_secs(3),
                overrides,
                now,
            },
        )
        .expect("policy exists")
    }

    fn with<F: FnOnce(&mut ServerState)>(mut s: ServerState, f: F) -> ServerState {
        f(&mut s);
        s
    }

    fn with_ch<F: FnOnce(&mut Channel)>(s: ServerState, f: F) -> ServerState {
        with(s, |s| f(&mut s.channels[0]))
    }

    /// (policy, outcome, sample age, request max_lag, healthy, first failing line or "")
    type Case = (
        &'static str,
        Result<ServerState, ProbeError>,
        Duration,
        Option<u64>,
        bool,
        &'static str,
    );

    #[test]
    fn policy_rules_table() {
        let now = Instant::now() + Duration::from_secs(3600);
        let fresh = Duration::from_millis(300);
        let refused = err(ProbeErrorKind::Refused, None, "127.0.0.1:3307");
        let denied = err(
            ProbeErrorKind::AccessDenied,
            Some(1045),
            "Access denied for user 'replguard'@'localhost' (using password: YES)",
        );
        // (policy, outcome, sample age, request max_lag, healthy, first failing line or "")
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("replica", Ok(replica()), fresh, None, true, ""),
            ("replica", Ok(replica()), Duration::from_secs(4), None, false, "FAIL sample stale: age 4s > 3s"),
            ("replica", Ok(replica()), Duration::from_secs(3), None, true, ""),
            ("replica", Err(refused.clone()), fresh, None, false, "FAIL reachable connection refused: 127.0.0.1:3307"),
            ("replica", Err(denied.clone()), fresh, None, false, "FAIL reachable check user refused: 1045 Access denied for user 'replguard'@'localhost' (using password: YES)"),
            ("replica", Err(err(ProbeErrorKind::Timeout, None, "query took over 500ms")), fresh, None, false, "FAIL reachable timeout: query took over 500ms"),
            ("replica", Ok(with(replica(), |s| s.channels.clear())), fresh, None, false, "FAIL replica_status empty: not configured as a replica (no replica status row)"),
            ("replica", Ok(with_ch(replica(), |c| c.io_thread = ThreadState::Connecting)), fresh, None, false, "FAIL io_thread Connecting, want Yes (source 127.0.0.1:3306)"),
            ("replica", Ok(with_ch(replica(), |c| c.io_thread = ThreadState::No)), fresh, None, false, "FAIL io_thread No, want Yes (source 127.0.0.1:3306)"),
            ("replica", Ok(with_ch(replica(), |c| c.sql_thread = ThreadState::No)), fresh, None, false, "FAIL sql_thread No, want Yes"),
            ("replica", Ok(with_ch(replica(), |c| { c.last_sql_errno = 1062; c.last_sql_error = "Duplicate entry".into() })), fresh, None, false, "FAIL replication_errors sql 1062 Duplicate entry"),
            ("replica", Ok(with_ch(replica(), |c| { c.last_io_errno = 2003; c.last_io_error = "error connecting".into() })), fresh, None, false, "FAIL replication_errors io 2003 error connecting"),
            ("replica", Ok(with_ch(replica(), |c| c.lag = None)), fresh, None, false, "FAIL lag NULL (unknown), want <= 10s"),
            ("replica", Ok(with_ch(replica(), |c| c.lag = Some(Duration::from_secs(10)))), fresh, None, true, ""),
            ("replica", Ok(with_ch(replica(), |c| c.lag = Some(Duration::from_secs(11)))), fresh, None, false, "FAIL lag 11s > 10s"),
            ("replica", Ok(with_ch(replica(), |c| c.lag = Some(Duration::from_secs(11)))), fresh, Some(20), true, ""),
            ("replica", Ok(with_ch(replica(), |c| c.lag = Some(Duration::from_secs(3)))), fresh, Some(2), false, "FAIL lag 3s > 2s"),
            ("replica", Ok(with_ch(replica(), |c| c.lag = Some(Duration::ZERO))), fresh, Some(0), true, ""),
            ("replica", Ok(with(replica(), |s| { let mut c = channel(); c.name = "b".into(); c.sql_thread = ThreadState::No; s.channels.push(c) })), fresh, None, false, "FAIL sql_thread[b] No, want Yes"),
            ("replica", Ok(primary()), fresh, None, false, "FAIL replica_status empty: not configured as a replica (no replica status row)"),
            ("primary", Ok(primary()), fresh, None, true, ""),
            ("primary", Ok(replica()), fresh, None, false, "FAIL read_only ON, want OFF"),
            ("primary", Ok(with(primary(), |s| { s.flavor = Flavor::MySql; s.super_read_only = Some(true) })), fresh, None, false, "FAIL super_read_only ON, want OFF"),
            ("primary", Ok(with(primary(), |s| s.innodb_read_only = true)), fresh, None, false, "FAIL innodb_read_only ON, want OFF"),
            ("primary", Ok(with(primary(), |s| s.channels = vec![with_ch(replica(), |c| c.lag = None).channels[0].clone()])), fresh, None, false, "FAIL peer 127.0.0.1:3306 connected, lag NULL (unknown), want <= 2s"),
            ("primary", Ok(with(primary(), |s| s.channels = replica().channels)), fresh, None, true, ""),
            ("primary", Err(refused.clone()), fresh, None, false, "FAIL reachable connection refused: 127.0.0.1:3307"),
            ("auto", Ok(primary()), fresh, None, true, ""),
            ("auto", Ok(replica()), fresh, None, true, ""),
            ("auto", Ok(with_ch(replica(), |c| c.lag = Some(Duration::from_secs(60)))), fresh, None, false, "FAIL lag 60s > 10s"),
            ("auto", Err(refused), fresh, None, false, "FAIL reachable connection refused: 127.0.0.1:3307"),
        ];
        for (i, (policy, outcome, age, max_lag, healthy, first_fail)) in
            cases.into_iter().enumerate()
        {
            let snapshot = snap(outcome, now, age);
            let v = eval(policy, &snapshot, now, max_lag);
            let got = v.first_failure().map(Check::line).unwrap_or_default();
            assert_eq!(
                (v.healthy, got.as_str()),
                (healthy, first_fail),
                "case {i} ({policy}): {v:#?}"
            );
        }
    }

    #[test]
    fn no_sample_fails_closed_for_every_policy() {
        let now = Instant::now();
        let empty = Snapshot::default();
        for policy in ["primary", "replica", "auto"] {
            let v = eval(policy, &empty, now, None);
            assert!(!v.healthy, "{policy}");
            assert_eq!(
                v.checks[0].line(),
                "FAIL sample none yet: no poll has finished",
                "{policy}"
            );
            // One root cause: every other check depends on it and is not judged.
            assert!(
                v.checks
                    .iter()
                    .skip(1)
                    .all(|c| c.level == Level::NotJudged && c.line().starts_with("-- ")),
                "{policy}: {v:#?}"
            );
        }
    }

    /// A role-picking policy whose pick depends on nothing the server said still fails when
    /// the server could not be read.
    #[test]
    fn picking_by_role_fails_closed_for_an_unreadable_server() {
        let now = Instant::now() + Duration::from_secs(10);
        let mut set = PolicySet::builtin();
        set.insert(Policy::parse("fresh", "checks = [\"sample\"]\n").unwrap());
        set.insert(
            Policy::parse(
                "pick",
                "when_writable = \"fresh\"\nwhen_read_only = \"fresh\"\n",
            )
            .unwrap(),
        );
        let down = snap(
            Err(err(ProbeErrorKind::Refused, None, "refused")),
            now,
            Duration::ZERO,
        );
        let v = eval_with(&set, "pick", &down, &Thresholds::default(), now);
        assert!(!v.healthy, "{v:#?}");
        assert_eq!(
            v.first_failure().map(|c| c.name.as_str()),
            Some("reachable")
        );
    }

    /// A change of cause while unhealthy is a new key; a changing measurement is not.
    #[test]
    fn cause_key_follows_the_cause_not_the_value() {
        let now = Instant::now() + Duration::from_secs(10);
        let key =
            |outcome| eval("replica", &snap(outcome, now, Duration::ZERO), now, None).cause_key();
        let refused = key(Err(err(ProbeErrorKind::Refused, None, "refused (111)")));
        let refused_again = key(Err(err(ProbeErrorKind::Refused, None, "refused (112)")));
        let denied = key(Err(err(ProbeErrorKind::AccessDenied, Some(1045), "denied")));
        assert_eq!(refused, refused_again);
        assert_ne!(refused, denied);
        let lag = |s| {
            key(Ok(with_ch(replica(), |c| {
                c.lag = Some(Duration::from_secs(s))
            })))
        };
        assert_eq!(lag(20), lag(30));
        let sql = key(Ok(with_ch(replica(), |c| c.sql_thread = ThreadState::No)));
        let sql_error = key(Ok(with_ch(replica(), |c| {
            c.sql_thread = ThreadState::No;
            c.last_sql_errno = 1062;
        })));
        let both = key(Ok(with_ch(replica(), |c| {
            c.sql_thread = ThreadState::No;
            c.io_thread = ThreadState::No;
        })));
        assert!(sql.is_some() && sql != sql_error && sql != both);
        assert_eq!(key(Ok(replica())), None);
    }

    #[test]
    fn auto_names_the_role_it_picked() {
        let now = Instant::now() + Duration::from_secs(10);
        let v = eval("auto", &snap(Ok(primary()), now, Duration::ZERO), now, None);
        assert_eq!(v.resolved_policy, "primary");
        assert_eq!(v.checks[0].line(), "ok role writable -> primary");
        let v = eval("auto", &snap(Ok(replica()), now, Duration::ZERO), now, None);
        assert_eq!(v.resolved_policy, "replica");
        assert_eq!(v.checks[0].line(), "ok role read-only -> replica");
    }

    #[test]
    fn every_check_line_lists_measured_and_threshold() {
        let now = Instant::now() + Duration::from_secs(10);
        let v = eval(
            "replica",
            &snap(Ok(replica()), now, Duration::from_millis(400)),
            now,
            None,
        );
        let lines: Vec<String> = v.checks.iter().map(Check::line).collect();
        assert_eq!(
            lines,
            [
                "ok sample age 400ms <= 3s",
                "ok reachable MariaDB 10.11.19-MariaDB server_id 2",
                "ok replica_status 1 channel",
                "ok io_thread Yes",
                "-- stall not judged: first poll",
                "ok sql_thread Yes",
                "ok replication_errors none",
                "ok not_delayed SQL_Delay=0",
                "ok lag 0s <= 10s",
                "-- lag_stable not judged: first poll",
            ]
        );
    }

    #[test]
    fn policy_files_are_checked() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("checks = [\"lag\"]", "max_lag: the lag check needs a max_lag"),
            ("checks = []", "checks: a policy needs at least one check"),
            ("checks = [\"sample\", \"telepathy\"]", "unknown variant `telepathy`"),
            ("checks = [\"sample\"]\nmax_lga = \"1s\"", "unknown field `max_lga`"),
            ("checks = [\"lag\"]\nmax_lag = \"10\"", "has no unit"),
            ("when_writable = \"primary\"", "checks: give either"),
            ("when_writable = \"a\"\nwhen_read_only = \"b\"\nmax_lag = \"1s\"", "max_lag: a policy that picks by role"),
        ];
        for (text, want) in cases {
            let err = Policy::parse("p", text).expect_err(text);
            assert!(
                err.message.contains(want),
                "{text:?}: got {:?}",
                err.message
            );
        }
        let mut set = PolicySet::builtin();
        set.insert(
            Policy::parse(
                "auto",
                "when_writable = \"primary\"\nwhen_read_only = \"nope\"",
            )
            .unwrap(),
        );
        let (name, err) = set.validate().expect_err("dangling target");
        assert_eq!(
            (name.as_str(), err.message.as_str()),
            ("auto", "when_read_only: no policy named \"nope\"")
        );
        assert!(PolicySet::builtin().validate().is_ok());
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let base = Thresholds {
            max_lag: Some(Duration::from_secs(10)),
            ..Default::default()
        };
        assert_eq!(base.overlay(&Thresholds::default()), base);
        let over = Thresholds {
            max_lag: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        assert_eq!(base.overlay(&over), over);
    }

    /// A backup whose IO thread was last seen connected with `seen_lag` `ago` before `now`
    /// (`None`: never seen connected), now in `state` with `uptime`.
    fn backup_history(
        seen_lag: Option<Option<u64>>,
        ago: u64,
        state: ServerState,
        uptime: u64,
        now: Instant,
    ) -> Snapshot {
        let mut s = Snapshot::default();
        if let Some(lag) = seen_lag {
            // The server has run continuously since unless `uptime` says otherwise.
            let then_up = Duration::from_secs(uptime.max(ago) - ago);
            let connected = with(
                with_ch(replica(), |c| c.lag = lag.map(Duration::from_secs)),
                |s| s.uptime = Some(then_up),
            );
            s = snap(Ok(connected), now, Duration::from_secs(ago));
        }
        let now_state = with(state, |s| s.uptime = Some(Duration::from_secs(uptime)));
        let mut next = snap(Ok(now_state), now, Duration::ZERO);
        next.memory = s.memory.clone();
        let sample = next.sample.take().unwrap();
        s.next(Arc::try_unwrap(sample).unwrap())
    }

    /// A MariaDB source reading at `gtid` (binary log state `state`).
    fn source_at(gtid: &str, state: Option<&str>) -> crate::sample::SourceState {
        crate::sample::SourceState {
            flavor: Flavor::MariaDb,
            server_id: 1,
            version: "10.11.19-MariaDB".into(),
            gtid_executed: gtid.into(),
            server_uuid: None,
            gtid_binlog_state: state.map(str::to_string),
            binlog_position: None,
        }
    }

    /// `s` with this poll's source reading (`Err`: unreachable) and, if given, a remembered
    /// earlier one taken 3 s before `now`.
    fn with_source(
        mut s: Snapshot,
        live: Result<crate::sample::SourceState, ()>,
        remembered: Option<crate::sample::SourceState>,
        now: Instant,
    ) -> Snapshot {
        let mut sample = (**s.sample.as_ref().unwrap()).clone();
        sample.source = Some(crate::sample::SourceSample {
            addr: "127.0.0.1:3306".into(),
            outcome: live.map_err(|()| err(ProbeErrorKind::Refused, None, "refused")),
        });
        s.sample = Some(Arc::new(sample));
        s.memory.last_source = remembered.map(|state| crate::snapshot::SourceSeen {
            at: now - Duration::from_secs(3),
            at_wall: std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(7),
            addr: "127.0.0.1:3306".into(),
            state,
        });
        s
    }

    /// Newer evidence beats memory: a source reading (live, or remembered after the source
    /// died) that holds transactions the backup lacks voids the older caught-up observation,
    /// until the backup has them; errant transactions fail the gate against a live source.
    #[test]
    fn source_readings_override_the_caught_up_memory() {
        let now = Instant::now() + Duration::from_secs(3600);
        let at = |current: &str, binlog_state: &str, state: ServerState| {
            let state = with(state, |s| {
                s.gtid.current_pos = Some(current.into());
                s.gtid.binlog_pos = Some(current.into());
                s.gtid.binlog_state = Some(binlog_state.into());
            });
            backup_history(Some(Some(0)), 10, state, 100, now)
        };
        let allow = Thresholds {
            allow_errant: Some(true),
            ..Default::default()
        };
        let none = Thresholds::default();
        #[rustfmt::skip]
        let cases: Vec<(&str, Snapshot, &Thresholds, bool, &str)> = vec![
            ("live source ahead", with_source(at("0-1-10", "0-1-10", lost(replica())), Ok(source_at("0-1-14", None)), None, now), &none, false,
             "FAIL source_lost since 00:00:00 UTC (10s ago), the source 127.0.0.1:3306 is reachable and has 4 transactions this server lacks: 0-1-11..0-1-14"),
            ("source died after a reading that was ahead", with_source(at("0-1-10", "0-1-10", lost(replica())), Err(()), Some(source_at("0-1-14", None)), now), &none, false,
             "FAIL source_lost since 00:00:00 UTC (10s ago), but the source had 0-1-11..0-1-14 that this server lacks at its last reading (00:00:07 UTC)"),
            ("caught up with that reading since", with_source(at("0-1-14", "0-1-14", lost(replica())), Err(()), Some(source_at("0-1-14", None)), now), &none, true,
             "ok source_lost since 00:00:00 UTC (10s ago), last lag 0s, relay log applied"),
            ("one missing transaction", with_source(at("0-1-13", "0-1-13", lost(replica())), Err(()), Some(source_at("0-1-14", None)), now), &none, false,
             "but the source had 0-1-14 that this server lacks"),
            ("errant write overtaken by later source writes", with_source(at("0-1-22", "0-1-22,0-2-8", replica()), Ok(source_at("0-1-22", Some("0-1-22"))), None, now), &none, false,
             "FAIL errant_transactions 1: 0-2-8, never on the source 127.0.0.1:3306"),
            ("errant, admitted by allow_errant", with_source(at("0-1-22", "0-1-22,0-2-8", replica()), Ok(source_at("0-1-22", Some("0-1-22"))), None, now), &allow, true,
             "WARN errant_transactions 1: 0-2-8 (source 127.0.0.1:3306); ADMITTED BY allow_errant"),
            ("a writable backup (master-master) is not judged on errant transactions", with_source(at("0-1-22", "0-1-22,0-2-8", with(replica(), |s| s.read_only = false)), Ok(source_at("0-1-22", Some("0-1-22"))), None, now), &none, true,
             "-- errant_transactions not judged: writable"),
            ("the backup's own writes once the source is gone are not errant", with_source(at("0-1-22", "0-1-22,0-2-30", lost(replica())), Err(()), Some(source_at("0-1-22", Some("0-1-22"))), now), &none, true,
             "-- errant_transactions not judged: the source is not readable by the guard"),
        ];
        for (what, snapshot, overrides, healthy, want) in cases {
            let v = eval_with(&PolicySet::builtin(), "backup", &snapshot, overrides, now);
            let lines: Vec<String> = v.checks.iter().map(Check::line).collect();
            assert_eq!(v.healthy, healthy, "{what}: {lines:#?}");
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(want) || l.contains(&format!(", {want}"))),
                "{what}: want {want:?} in {lines:#?}"
            );
        }
        // The failback rule reads the same evidence.
        let writer = with(lost(replica()), |s| {
            s.read_only = false;
            s.gtid.current_pos = Some("0-1-10".into());
        });
        let snapshot = with_source(
            backup_history(Some(Some(0)), 10, writer, 100, now),
            Err(()),
            Some(source_at("0-1-14", None)),
            now,
        );
        let mut set = PolicySet::builtin();
        set.insert(Policy::parse("pp", "checks = [\"peer\"]\nmax_lag = \"2s\"\n").unwrap());
        let v = eval_with(&set, "pp", &snapshot, &none, now);
        assert!(!v.healthy);
        assert!(
            v.checks[0]
                .line()
                .contains("lost since 00:00:00 UTC (10s ago), but the source had 0-1-11..0-1-14"),
            "{}",
            v.checks[0].line()
        );
    }

    fn lost(s: ServerState) -> ServerState {
        with_ch(s, |c| {
            c.io_thread = ThreadState::Connecting;
            c.lag = None;
            c.last_io_errno = 2003;
            c.last_io_error = "error connecting to master".into();
        })
    }

    #[test]
    fn backup_gate_table() {
        let now = Instant::now() + Duration::from_secs(3600);
        let t = |max_apply_backlog: Option<u64>,
                 max_source_lost: Option<u64>,
                 require_writable: Option<bool>| Thresholds {
            max_apply_backlog,
            max_source_lost: max_source_lost.map(Duration::from_secs),
            require_writable,
            ..Default::default()
        };
        let ahead = |s: ServerState| with_ch(s, |c| c.read_log_pos += 100);
        // (history, thresholds, healthy, text the first failing line or the source line contains)
        #[rustfmt::skip]
        let cases: Vec<(Snapshot, Thresholds, bool, &str)> = vec![
            (backup_history(Some(Some(0)), 1, replica(), 100, now), t(None, None, None), true, "ok lag 0s <= 2s"),
            (backup_history(Some(Some(0)), 1, with_ch(replica(), |c| c.lag = Some(Duration::from_secs(3))), 100, now), t(None, None, None), false, "FAIL lag 3s > 2s"),
            (backup_history(Some(Some(0)), 1, ahead(replica()), 100, now), t(None, None, None), false, "FAIL applied 100 bytes not applied (read mysql-bin.000001:200, executed 100), max 0"),
            (backup_history(Some(Some(0)), 1, ahead(replica()), 100, now), t(Some(100), None, None), true, "ok lag 0s"),
            (backup_history(Some(Some(0)), 10, lost(replica()), 100, now), t(None, None, None), true, "ok source_lost since 00:00:00 UTC (10s ago), last lag 0s, relay log applied"),
            (backup_history(Some(Some(5)), 10, lost(replica()), 100, now), t(None, None, None), false, "FAIL source_lost since 00:00:00 UTC (10s ago), last lag 5s > 2s"),
            (backup_history(Some(None), 10, lost(replica()), 100, now), t(None, None, None), false, "last lag NULL (unknown)"),
            (backup_history(None, 10, lost(replica()), 100, now), t(None, None, None), false, "FAIL source_lost IO thread Connecting and never seen connected"),
            (backup_history(Some(Some(0)), 10, lost(replica()), 5, now), t(None, None, None), false, "memory void: the server restarted 5s ago"),
            (backup_history(Some(Some(0)), 10, lost(replica()), 9, now), t(None, None, None), true, "ok source_lost"),
            (backup_history(Some(Some(0)), 10, ahead(lost(replica())), 100, now), t(None, None, None), false, "FAIL applied 100 bytes not applied"),
            (backup_history(Some(Some(0)), 10, lost(replica()), 100, now), t(None, Some(5), None), false, "lost for longer than max_source_lost 5s"),
            (backup_history(Some(Some(0)), 10, lost(replica()), 100, now), t(None, Some(60), None), true, "ok source_lost"),
            (backup_history(Some(Some(0)), 1, with_ch(replica(), |c| c.sql_thread = ThreadState::No), 100, now), t(None, None, None), false, "FAIL sql_thread No, want Yes"),
            (backup_history(Some(Some(0)), 1, with_ch(replica(), |c| { c.last_sql_errno = 1062; c.last_sql_error = "Duplicate".into() }), 100, now), t(None, None, None), false, "FAIL sql_error 1062 Duplicate"),
            (backup_history(Some(Some(0)), 1, replica(), 100, now), t(None, None, Some(true)), false, "FAIL read_only ON, want OFF"),
            (backup_history(Some(Some(0)), 1, with(replica(), |s| s.read_only = false), 100, now), t(None, None, Some(true)), true, "ok read_only OFF"),
            // Not lost: stopped by hand, or broken with a live source.
            (backup_history(Some(Some(0)), 10, with_ch(lost(replica()), |c| { c.io_thread = ThreadState::No; c.last_io_errno = 0 }), 100, now), t(None, None, None), false, "FAIL io_thread No: stopped without a connection error, so the source is not lost"),
            (backup_history(Some(Some(0)), 10, with_ch(lost(replica()), |c| c.last_io_errno = 1236), 100, now), t(None, None, None), false, "FAIL io_thread Connecting: error 1236 error connecting to master: replication broken, the source is not lost"),
            // Repointed to another source: the old observation says nothing about it.
            (backup_history(Some(Some(0)), 10, with_ch(lost(replica()), |c| c.source_host = "10.9.9.9".into()), 100, now), t(None, None, None), false, "now replicates from 10.9.9.9:3306, last seen connected to 127.0.0.1:3306"),
        ];
        for (i, (snapshot, overrides, healthy, want)) in cases.into_iter().enumerate() {
            let v = eval_with(&PolicySet::builtin(), "backup", &snapshot, &overrides, now);
            let lines: Vec<String> = v.checks.iter().map(Check::line).collect();
            let shown = match v.first_failure() {
                Some(c) => c.line(),
                None => lines.join("\n"),
            };
            assert_eq!(v.healthy, healthy, "case {i}: {lines:#?}");
            assert!(shown.contains(want), "case {i}: want {want:?} in {shown:?}");
        }
    }

    #[test]
    fn peer_rule_table() {
        let now = Instant::now() + Duration::from_secs(3600);
        let writer = |s: ServerState| with(s, |s| s.read_only = false);
        let isolated = Thresholds {
            allow_isolated: Some(true),
            ..Default::default()
        };
        let none = Thresholds::default();
        // (history, overrides, healthy, the peer line contains)
        #[rustfmt::skip]
        let cases: Vec<(Snapshot, &Thresholds, bool, &str)> = vec![
            (backup_history(Some(Some(0)), 1, writer(replica()), 100, now), &none, true, "ok peer 127.0.0.1:3306 connected, lag 0s <= 2s, relay log applied"),
            (backup_history(Some(Some(0)), 1, writer(with_ch(replica(), |c| c.lag = Some(Duration::from_secs(9)))), 100, now), &none, false, "FAIL peer 127.0.0.1:3306 connected, lag 9s > 2s"),
            (backup_history(Some(Some(0)), 1, writer(with_ch(replica(), |c| { c.sql_thread = ThreadState::No; c.lag = None })), 100, now), &none, false, "FAIL peer 127.0.0.1:3306 connected, SQL thread No, want Yes"),
            (backup_history(Some(Some(0)), 1, writer(with_ch(replica(), |c| c.read_log_pos += 5)), 100, now), &none, false, "5 bytes not applied"),
            // The backup vanished while this writer was caught up: it keeps passing.
            (backup_history(Some(Some(0)), 30, writer(lost(replica())), 100, now), &none, true, "ok peer 127.0.0.1:3306 lost since 00:00:00 UTC (30s ago), last lag 0s, relay log applied"),
            // This writer's own server restarted: it must reconnect and catch up first.
            (backup_history(Some(Some(0)), 30, writer(lost(replica())), 3, now), &none, false, "memory void: the server restarted 3s ago"),
            (backup_history(None, 30, writer(with_ch(replica(), |c| c.io_thread = ThreadState::No)), 3, now), &none, false, "FAIL io_thread No (peer 127.0.0.1:3306): stopped without a connection error"),
            (backup_history(None, 30, writer(with_ch(replica(), |c| c.io_thread = ThreadState::No)), 3, now), &isolated, true, "ADMITTED BY allow_isolated: if 127.0.0.1:3306 still takes writes this is split brain"),
            (backup_history(None, 30, writer(primary()), 3, now), &none, true, "ok peer none (no replica status)"),
        ];
        for (i, (snapshot, overrides, healthy, want)) in cases.into_iter().enumerate() {
            let v = eval_with(&PolicySet::builtin(), "primary", &snapshot, overrides, now);
            let peer = v
                .checks
                .iter()
                .find(|c| c.name == "peer" || c.name == "io_thread")
                .map(Check::line)
                .unwrap_or_default();
            assert_eq!(v.healthy, healthy, "case {i}: {v:#?}");
            assert!(peer.contains(want), "case {i}: want {want:?} in {peer:?}");
        }
    }

    fn points(lags: &[Option<u64>], start: Instant) -> VecDeque<LagPoint> {
        lags.iter()
            .enumerate()
            .map(|(i, l)| LagPoint {
                at: start + Duration::from_secs(i as u64),
                lag: l.map(Duration::from_secs),
                delay: Duration::ZERO,
            })
            .collect()
    }

    #[test]
    fn lag_hysteresis_table() {
        let t0 = Instant::now();
        let at = |i: u64| t0 + Duration::from_secs(i);
        let (max, rec) = (Duration::from_secs(10), Duration::from_secs(5));
        let recovering = |good, failed| Recovery::Recovering {
            good,
            need: 3,
            failed_at: at(failed),
        };
        #[rustfmt::skip]
        let cases: Vec<(&[Option<u64>], Recovery)> = vec![
            (&[], Recovery::Steady),
            (&[Some(0), Some(9), Some(10)], Recovery::Steady),
            (&[Some(0), Some(11)], recovering(0, 1)),
            (&[Some(11), Some(1), Some(2)], recovering(2, 0)),
            (&[Some(11), Some(1), Some(2), Some(3)], Recovery::Recovered),
            // Between recover_lag and max_lag: not failing, but not recovering either.
            (&[Some(11), Some(1), Some(7), Some(2), Some(3)], recovering(2, 0)),
            // After recovery, lag up to max_lag stays healthy.
            (&[Some(11), Some(1), Some(1), Some(1), Some(9), Some(9)], Recovery::Recovered),
            // Flapping 0 <-> thousands never comes back.
            (&[Some(0), Some(5000), Some(0), Some(5000), Some(0), Some(0)], recovering(2, 3)),
            // Unknown (NULL) lag fails like a high one.
            (&[Some(0), None, Some(0)], recovering(1, 1)),
        ];
        for (i, (lags, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                lag_recovery(&points(lags, t0), max, rec, 3),
                want,
                "case {i}: {lags:?}"
            );
        }
    }

    #[test]
    fn hysteresis_holds_a_recovering_replica_out() {
        let now = Instant::now() + Duration::from_secs(3600);
        // Lag 30s, then back to 0 for one poll: lag passes, lag_stable does not.
        let lagging = with_ch(replica(), |c| c.lag = Some(Duration::from_secs(30)));
        let s = snap(Ok(lagging), now, Duration::from_secs(1));
        let s = s.next(
            Arc::try_unwrap(snap(Ok(replica()), now, Duration::ZERO).sample.unwrap()).unwrap(),
        );
        let v = eval("replica", &s, now, None);
        assert_eq!(
            v.first_failure().map(Check::line).as_deref(),
            Some("FAIL lag_stable recovering: 1 of 3 polls <= 5s since a lag failure 1s ago")
        );
        // A request that allows 60s never saw a failure.
        assert!(eval("replica", &s, now, Some(60)).healthy);
        // An instance in maintenance fails every policy, maintenance first.
        let mut m = (**s.sample.as_ref().unwrap()).clone();
        m.maintenance = Some("kernel upgrade".into());
        let s = Snapshot {
            sample: Some(Arc::new(m)),
            ..s
        };
        for p in ["replica", "primary", "auto", "backup", "promotion"] {
            let v = eval(p, &s, now, Some(60));
            assert_eq!(v.checks[0].line(), "FAIL maintenance kernel upgrade", "{p}");
            assert_eq!(
                crate::report::reason(&v).as_deref(),
                Some("maintenance: kernel upgrade")
            );
        }
    }

    #[test]
    fn heartbeat_and_delay_table() {
        let now = Instant::now() + Duration::from_secs(3600);
        let hb = |r: Result<i64, &str>| {
            with(replica(), |s| s.heartbeat = Some(r.map_err(str::to_string)))
        };
        let allow = Thresholds {
            allow_delay: Some(true),
            ..Default::default()
        };
        let none = Thresholds::default();
        let delayed = with_ch(replica(), |c| {
            c.sql_delay = Some(Duration::from_secs(3600));
            c.lag = Some(Duration::from_secs(3000));
        });
        // (state, overrides, healthy, the lag line or first failure contains)
        #[rustfmt::skip]
        let cases: Vec<(ServerState, &Thresholds, bool, &str)> = vec![
            (hb(Ok(400_000)), &none, true, "ok lag 400ms <= 10s (heartbeat; Seconds_Behind_Master 0s)"),
            (hb(Ok(12_000_000)), &none, false, "FAIL lag heartbeat stale: newest heartbeat 12s old > 10s, relay log applied"),
            (with_ch(hb(Ok(12_000_000)), |c| c.read_log_pos += 50), &none, false, "FAIL lag 12s > 10s (heartbeat; Seconds_Behind_Master 0s)"),
            (hb(Ok(-200_000)), &none, true, "ok lag 0s <= 10s (heartbeat; clock skew: the source's clock is 200ms ahead"),
            (hb(Ok(-20_000_000)), &none, false, "FAIL lag heartbeat from the future: the source's clock is 20s ahead"),
            (hb(Err("table percona.heartbeat does not exist (1146)")), &none, false, "FAIL lag heartbeat: table percona.heartbeat does not exist (1146)"),
            (delayed.clone(), &none, false, "FAIL not_delayed delayed replica, SQL_Delay=3600s"),
            (delayed, &allow, true, "ok lag 0s <= 10s (lag 3000s minus SQL_Delay 3600s)"),
        ];
        for (i, (state, overrides, healthy, want)) in cases.into_iter().enumerate() {
            let snapshot = snap(Ok(state), now, Duration::ZERO);
            let v = eval_with(&PolicySet::builtin(), "replica", &snapshot, overrides, now);
            let shown = match v.first_failure() {
                Some(c) => c.line(),
                None => v
                    .checks
                    .iter()
                    .find(|c| c.name == "lag")
                    .map(Check::line)
                    .unwrap_or_default(),
            };
            assert_eq!(v.healthy, healthy, "case {i}: {v:#?}");
            assert!(shown.contains(want), "case {i}: want {want:?} in {shown:?}");
        }
    }

    /// (seconds ago, read position, the source's GTIDs or None when unreadable)
    type Poll = (u64, u64, Option<&'static str>);

    #[test]
    fn stall_needs_a_frozen_read_position_and_an_advancing_source() {
        let now = Instant::now() + Duration::from_secs(3600);
        let src = |gtid: &str| crate::sample::SourceSample {
            addr: "127.0.0.1:3306".into(),
            outcome: Ok(crate::sample::SourceState {
                flavor: Flavor::MariaDb,
                server_id: 1,
                version: "10.11".into(),
                gtid_executed: gtid.into(),
                server_uuid: None,
                gtid_binlog_state: None,
                binlog_position: None,
            }),
        };
        // Polls `ago` seconds before now, each with the replica's read position and the
        // source's GTIDs (None: source unreadable).
        let history = |polls: &[Poll]| {
            let mut s = Snapshot::default();
            for (ago, pos, gtid) in polls {
                let state = with_ch(replica(), |c| c.read_log_pos = *pos);
                let mut next = snap(Ok(state), now, Duration::from_secs(*ago));
                let mut sample = Arc::try_unwrap(next.sample.take().unwrap()).unwrap();
                sample.source = gtid.map(src);
                s = s.next(sample);
            }
            s
        };
        let stall = |s: &Snapshot| {
            let v = eval("replica", s, now, None);
            v.checks.iter().find(|c| c.name == "stall").unwrap().line()
        };
        #[rustfmt::skip]
        let cases: Vec<(Vec<Poll>, &str)> = vec![
            (vec![(40, 100, Some("0-1-5")), (0, 100, Some("0-1-9"))], "FAIL stall replication stalled: read position mysql-bin.000001:100 unchanged for 40s > 30s while the source kept executing transactions"),
            (vec![(40, 100, Some("0-1-5")), (0, 100, Some("0-1-5"))], "ok stall read position mysql-bin.000001:100; the source has not advanced since"),
            (vec![(10, 100, Some("0-1-5")), (0, 100, Some("0-1-9"))], "ok stall read position mysql-bin.000001:100 unchanged for 10s <= 30s while the source advances"),
            (vec![(40, 100, Some("0-1-5")), (0, 200, Some("0-1-9"))], "ok stall read position moving"),
            (vec![(40, 100, Some("0-1-5")), (0, 100, None)], "ok stall not judged: the source is not readable by the guard"),
        ];
        for (i, (polls, want)) in cases.into_iter().enumerate() {
            let got = stall(&history(&polls));
            assert!(got.starts_with(want), "case {i}: {got}");
        }
    }

    #[test]
    fn heartbeat_is_the_lag_of_backup_and_peer_too() {
        let now = Instant::now() + Duration::from_secs(3600);
        // Seconds_Behind_Master says 0; the heartbeat says 5s.
        let hb5 = |s: ServerState| with(s, |s| s.heartbeat = Some(Ok(5_000_000)));
        let backup = snap(Ok(hb5(replica())), now, Duration::ZERO);
        let v = eval("backup", &backup, now, None);
        assert_eq!(
            v.first_failure().map(Check::line).as_deref(),
            Some("FAIL lag heartbeat stale: newest heartbeat 5s old > 2s, relay log applied: the heartbeat writer has most likely stopped")
        );
        let writer = snap(
            Ok(hb5(with(replica(), |s| s.read_only = false))),
            now,
            Duration::ZERO,
        );
        let v = eval("primary", &writer, now, None);
        assert_eq!(
            v.first_failure().map(Check::line).as_deref(),
            Some("FAIL peer 127.0.0.1:3306 connected, lag 5s > 2s")
        );
        // What the memory keeps for a lost source is the heartbeat's lag too.
        assert_eq!(
            backup.memory.io_last_connected[""].lag,
            Some(Duration::from_secs(5))
        );
    }
}
