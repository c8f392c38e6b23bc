//! Pools that never empty (`[[pool]]`, after Vitess' `min_number_serving_vttablets`): while
//! fewer than `min_serving` members pass their policy, the least-lagged members that fail
//! **only** on lag (`lag`, `lag_stable`) are admitted as degraded, up to `min_serving`. A
//! member that is not replicating, errant, unreachable, stale or in maintenance fails some
//! other check, and is never admitted; nor is one whose lag is not known (NULL, a heartbeat
//! that cannot be read): there is no least behind among unknowns.
//!
//! Pure: the verdicts come in, the pool's standing and the amended verdict go out.

use super::verdict::{Check, Level, Verdict};
use crate::units::fmt_duration;
use std::time::Duration;

/// The checks a degraded member may fail: lag alone, never anything else.
const LAG_CHECKS: [&str; 2] = ["lag", "lag_stable"];

/// One member's verdict and the lag it was judged by (`None`: not known).
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub verdict: &'a Verdict,
    pub lag: Option<Duration>,
}

/// How a pool stands: how many pass, and which members are admitted as degraded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub members: usize,
    pub healthy: usize,
    pub min_serving: usize,
    /// Positions (in the pool's member order) of the members admitted as degraded, least
    /// behind first, with their lag.
    pub admitted: Vec<(usize, Duration)>,
}

impl Standing {
    /// Members serving: those that pass and those admitted.
    pub fn serving(&self) -> usize {
        self.healthy + self.admitted.len()
    }

    /// The lag member `at` was admitted with, if it was.
    pub fn admitted_lag(&self, at: usize) -> Option<Duration> {
        self.admitted
            .iter()
            .find(|(i, _)| *i == at)
            .map(|(_, l)| *l)
    }
}

/// Whether `v` fails, and only on lag, with its lag known: a candidate for admission.
pub fn fails_only_on_lag(v: &Verdict, lag: Option<Duration>) -> bool {
    let mut failing = v.checks.iter().filter(|c| !c.ok).peekable();
    !v.healthy && lag.is_some() && failing.peek().is_some() && failing.all(lag_over_limit)
}

/// A failing lag line that measured a lag beyond its limit (`lag 12s > 10s`, or `lag_stable`
/// recovering from one): not one that could not measure it (a heartbeat from the future, an
/// unreadable heartbeat, NULL), whose threshold is empty.
fn lag_over_limit(c: &Check) -> bool {
    match c.name.as_str() {
        "lag" => !c.threshold.is_empty(),
        name => LAG_CHECKS.contains(&name),
    }
}

/// The pool's standing from every member's verdict, in the pool's member order: the least
/// lagged candidates (ties in member order, so every guard and every HAProxy agrees) fill the
/// places up to `min_serving` that passing members leave.
pub fn standing(min_serving: usize, members: &[Member<'_>]) -> Standing {
    let healthy = members.iter().filter(|m| m.verdict.healthy).count();
    let mut candidates: Vec<(usize, Duration)> = members
        .iter()
        .enumerate()
        .filter(|(_, m)| fails_only_on_lag(m.verdict, m.lag))
        .filter_map(|(i, m)| Some((i, m.lag?)))
        .collect();
    candidates.sort_by_key(|&(i, lag)| (lag, i));
    candidates.truncate(min_serving.saturating_sub(healthy));
    Standing {
        members: members.len(),
        healthy,
        min_serving,
        admitted: candidates,
    }
}

/// Amends member `at`'s failing verdict with the pool's line: admitted, its lag lines become
/// `WARN` and the verdict passes; otherwise a not-judged line says why the pool did not admit
/// it (its own failure stays the reason). A member that passes, or fails on more than lag, is
/// left as it is. Returns whether it was admitted.
pub fn amend(verdict: &mut Verdict, pool: &str, standing: &Standing, at: usize) -> bool {
    if verdict.healthy {
        return false;
    }
    let counted = format!(
        "{pool}: {} of {} healthy",
        standing.healthy, standing.members
    );
    if let Some(lag) = standing.admitted_lag(at) {
        for c in verdict.checks.iter_mut().filter(|c| !c.ok) {
            c.level = Level::Warn;
            c.ok = true;
        }
        verdict.checks.push(Check::leveled(
            "pool",
            Level::Warn,
            format!(
                "{counted}, admitted as degraded (lag {}, least behind)",
                fmt_duration(lag)
            ),
        ));
        verdict.healthy = true;
        return true;
    }
    let why = if standing.healthy >= standing.min_serving {
        format!("min_serving {} is met", standing.min_serving)
    } else if standing.admitted.is_empty() {
        // It fails on lag alone only when its lag is known; here it is not a candidate.
        "not admitted: it fails on more than lag, or its lag is unknown".to_string()
    } else {
        format!(
            "not admitted: {} less behind admitted up to min_serving {}",
            standing.admitted.len(),
            standing.min_serving
        )
    };
    let lag_only = verdict.checks.iter().filter(|c| !c.ok).all(lag_over_limit);
    if lag_only {
        verdict.checks.push(Check::leveled(
            "pool",
            Level::NotJudged,
            format!("{counted}, {why}"),
        ));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(failing: &[&str]) -> Verdict {
        let mut checks = vec![Check::fact("replica_status", true, "1 channel".into())];
        for name in failing {
            checks.push(match *name {
                "lag" => Check {
                    detail: "failed".into(),
                    ..Check::at_most("lag", Duration::from_secs(12), Duration::from_secs(10), "")
                },
                // The lag could not be measured: no threshold to be beyond.
                "unmeasured" => Check::fact("lag", false, "heartbeat from the future".into()),
                _ => Check::fact(*name, false, "failed".into()),
            });
        }
        Verdict {
            policy: "replica".into(),
            resolved_policy: "replica".into(),
            healthy: failing.is_empty(),
            checks,
            sample_age_ms: Some(100),
            steps: Vec::new(),
        }
    }

    fn s(secs: u64) -> Option<Duration> {
        Some(Duration::from_secs(secs))
    }

    #[test]
    fn the_least_lagged_fill_the_places_passing_members_leave() {
        let (ok, lag) = (verdict(&[]), verdict(&["lag"]));
        let members = [
            Member {
                verdict: &lag,
                lag: s(30),
            },
            Member {
                verdict: &ok,
                lag: s(0),
            },
            Member {
                verdict: &lag,
                lag: s(12),
            },
            Member {
                verdict: &lag,
                lag: s(20),
            },
        ];
        let st = standing(3, &members);
        assert_eq!(st.healthy, 1);
        assert_eq!(
            st.admitted,
            vec![(2, Duration::from_secs(12)), (3, Duration::from_secs(20))]
        );
        assert_eq!(st.serving(), 3);
        // Enough pass: nobody is admitted.
        let st = standing(1, &members);
        assert!(st.admitted.is_empty());
    }

    #[test]
    fn ties_go_in_member_order() {
        let lag = verdict(&["lag"]);
        let members = [
            Member {
                verdict: &lag,
                lag: s(5),
            },
            Member {
                verdict: &lag,
                lag: s(5),
            },
        ];
        assert_eq!(
            standing(1, &members).admitted,
            vec![(0, Duration::from_secs(5))]
        );
    }

    #[test]
    fn a_member_failing_on_more_than_lag_or_with_unknown_lag_is_never_admitted() {
        let broken = verdict(&["lag", "sql_thread"]);
        let maint = verdict(&["maintenance"]);
        let stale = verdict(&["sample"]);
        let recovering = verdict(&["lag_stable"]);
        let lag = verdict(&["lag"]);
        let skewed = verdict(&["unmeasured"]);
        let members = [
            Member {
                verdict: &broken,
                lag: s(1),
            },
            Member {
                verdict: &maint,
                lag: s(0),
            },
            Member {
                verdict: &stale,
                lag: s(0),
            },
            Member {
                verdict: &lag,
                lag: None,
            },
            Member {
                verdict: &recovering,
                lag: s(2),
            },
            Member {
                verdict: &skewed,
                lag: s(0),
            },
        ];
        let st = standing(6, &members);
        assert_eq!(st.healthy, 0);
        assert_eq!(st.admitted, vec![(4, Duration::from_secs(2))]);
    }

    #[test]
    fn an_admitted_member_passes_with_its_lag_lines_warned_and_the_pool_line() {
        let (ok, lag) = (verdict(&[]), verdict(&["lag"]));
        let members = [
            Member {
                verdict: &ok,
                lag: s(0),
            },
            Member {
                verdict: &lag,
                lag: s(12),
            },
            Member {
                verdict: &lag,
                lag: s(40),
            },
        ];
        let st = standing(2, &members);
        let mut v = lag.clone();
        assert!(amend(&mut v, "r", &st, 1));
        assert!(v.healthy);
        let lines: Vec<String> = v.checks.iter().map(Check::line).collect();
        assert!(lines.contains(&"WARN lag failed".to_string()), "{lines:?}");
        assert!(
            lines.contains(
                &"WARN pool r: 1 of 3 healthy, admitted as degraded (lag 12s, least behind)"
                    .to_string()
            ),
            "{lines:?}"
        );
        let mut v = lag.clone();
        assert!(!amend(&mut v, "r", &st, 2));
        assert!(!v.healthy);
        assert_eq!(
            v.checks.last().map(Check::line).as_deref(),
            Some("-- pool r: 1 of 3 healthy, not admitted: 1 less behind admitted up to min_serving 2")
        );
        assert_eq!(v.first_failure().map(|c| c.name.as_str()), Some("lag"));
        // A passing member is left as it is.
        let mut v = ok.clone();
        assert!(!amend(&mut v, "r", &st, 0));
        assert_eq!(v.checks.len(), ok.checks.len());
        // One failing on more than lag gets no pool line: its own failure says it all.
        let broken = verdict(&["lag", "io_thread"]);
        let mut v = broken.clone();
        assert!(!amend(&mut v, "r", &st, 2));
        assert_eq!(v.checks.len(), broken.checks.len());
    }
}
