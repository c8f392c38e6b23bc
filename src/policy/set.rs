//! `PolicySet`: every policy one process knows, and the evaluation of a policy by name (an
//! instance in maintenance fails every policy; `ByRole` picks a policy by the server's role).

use super::file::{Body, Policy, PolicyError, Thresholds, BUILTIN};
use super::limits::Limits;
use super::rules::{not_judged, root_cause, run_rules};
use super::verdict::{Check, Input, Level, Verdict};

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
                when_galera,
                when_group_primary,
                when_group_secondary,
            } = &policy.body
            {
                let galera = when_galera
                    .iter()
                    .map(|t| ("when_galera", t))
                    .chain(when_group_primary.iter().map(|t| ("when_group_primary", t)))
                    .chain(
                        when_group_secondary
                            .iter()
                            .map(|t| ("when_group_secondary", t)),
                    );
                for (key, target) in [
                    ("when_writable", when_writable),
                    ("when_read_only", when_read_only),
                ]
                .into_iter()
                .chain(galera)
                {
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

    /// Whether policy `name` (or any policy it picks by role) runs `rule`: readers gather what
    /// only some rules read (a sibling's state for `most_advanced`) only for those.
    pub fn uses(&self, name: &str, rule: super::file::Rule) -> bool {
        match self.get(name).map(|p| &p.body) {
            Some(Body::Checks { rules, .. }) => rules.contains(&rule),
            Some(Body::ByRole {
                when_writable,
                when_read_only,
                when_galera,
                when_group_primary,
                when_group_secondary,
            }) => [when_writable, when_read_only]
                .into_iter()
                .chain(when_galera)
                .chain(when_group_primary)
                .chain(when_group_secondary)
                .any(|t| match self.get(t).map(|p| &p.body) {
                    Some(Body::Checks { rules, .. }) => rules.contains(&rule),
                    _ => false,
                }),
            None => false,
        }
    }

    /// Where policy `name` stands among [`PolicySet::names`]: a small key for caches.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.search(name).ok()
    }

    /// The limits policy `name` judges by for an instance's and a request's thresholds;
    /// `None` unless it is a policy with checks.
    pub fn limits(
        &self,
        name: &str,
        instance: &Thresholds,
        request: &Thresholds,
    ) -> Option<Limits> {
        match &self.get(name)?.body {
            Body::Checks { thresholds, .. } => Some(Limits::resolve(thresholds, instance, request)),
            Body::ByRole { .. } => None,
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| p.name.as_str())
    }

    /// Evaluates policy `name` for one snapshot; `None` if there is no such policy. An instance
    /// in maintenance fails every policy, with the maintenance reason first.
    pub(super) fn evaluate(&self, name: &str, input: &Input<'_>) -> Option<Verdict> {
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
                let checks = run_rules(rules, &input.limits(thresholds), input);
                let mut v = Verdict::new(name, name, checks, input);
                let member = input.state().and_then(|s| s.group.as_ref());
                if let (true, Some(g)) = (*promotion_steps, member) {
                    // A group elects its primary: promoting a member by hand is not a thing.
                    v.checks.insert(
                        0,
                        Check::fact(
                            "group_replication",
                            false,
                            format!(
                                "member of a group ({}, {}): the group elects its primary, \
                                 there is nothing to promote by hand",
                                g.state,
                                if g.role.is_empty() {
                                    "no role"
                                } else {
                                    &g.role
                                }
                            ),
                        )
                        .with_fix("use group_replication_set_as_primary() to choose the primary"),
                    );
                    v.healthy = false;
                } else if *promotion_steps {
                    // Steps only for a replica: a primary has nothing to be promoted to.
                    match input.state() {
                        Some(state) if !state.channels.is_empty() => {
                            v.steps = super::promotion::steps(state.flavor)
                        }
                        _ => {}
                    }
                }
                v
            }
            Body::ByRole {
                when_writable,
                when_read_only,
                when_galera,
                when_group_primary,
                when_group_secondary,
            } => {
                let state = input.state();
                let group = state.and_then(|s| s.group.as_ref());
                let (target, role_check) = match (state, when_galera) {
                    (Some(s), Some(galera)) if s.galera.is_some() => (
                        galera,
                        Check::fact("role", true, format!("galera node -> {galera}")),
                    ),
                    _ if group.is_some_and(|g| g.role == "PRIMARY")
                        && when_group_primary.is_some() =>
                    {
                        let t = when_group_primary.as_ref().expect("checked");
                        (
                            t,
                            Check::fact("role", true, format!("group PRIMARY -> {t}")),
                        )
                    }
                    _ if group.is_some() && when_group_secondary.is_some() => {
                        let t = when_group_secondary.as_ref().expect("checked");
                        let role = group.map(|g| g.role.as_str()).unwrap_or("");
                        let role = if role.is_empty() { "member" } else { role };
                        (t, Check::fact("role", true, format!("group {role} -> {t}")))
                    }
                    _ => match state {
                        Some(s) if s.writable() => (
                            when_writable,
                            Check::fact("role", true, format!("writable -> {when_writable}")),
                        ),
                        Some(_) => (
                            when_read_only,
                            Check::fact("role", true, format!("read-only -> {when_read_only}")),
                        ),
                        None => (
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
                    },
                };
                let mut checks = match self.get(target).map(|p| &p.body) {
                    Some(Body::Checks {
                        rules, thresholds, ..
                    }) => run_rules(rules, &input.limits(thresholds), input),
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
