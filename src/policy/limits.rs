//! [`Limits`]: the thresholds one evaluation judges by, resolved once from the policy file, the
//! instance's config and the request (in that order), with every default applied. The checks
//! read values from it, never options.

use super::file::Thresholds;
use std::time::Duration;

/// Default of `recover_for`: consecutive polls within `recover_lag` after a lag failure.
pub const DEFAULT_RECOVER_FOR: u32 = 3;

/// Default `max_stall` when a policy uses the stall rule without setting it.
pub const DEFAULT_MAX_STALL: Duration = Duration::from_secs(30);

/// Concrete thresholds for one evaluation. Built by [`Limits::resolve`] only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest acceptable lag. Zero where no layer sets it: `Policy::parse` refuses a `lag`,
    /// `source` or `peer` rule without one, and later layers can only replace it.
    pub max_lag: Duration,
    /// Bytes of received but not applied relay log tolerated (default 0).
    pub max_apply_backlog: u64,
    /// How long a caught-up memory is trusted after the source is lost; `None`: as long as the
    /// server keeps running.
    pub max_source_lost: Option<Duration>,
    pub require_writable: bool,
    pub allow_isolated: bool,
    /// Hysteresis: after a lag failure, lag must stay at most this (default `max_lag / 2`) ...
    pub recover_lag: Duration,
    /// ... for this many consecutive polls (default 3; 0 turns hysteresis off).
    pub recover_for: u32,
    /// Agent weight: full up to this lag (default `max_lag / 4`).
    pub soft_lag: Duration,
    pub allow_delay: bool,
    pub max_stall: Duration,
    pub allow_errant: bool,
    pub available_when_donor: bool,
    pub available_when_readonly: bool,
    pub min_cluster_size: Option<u32>,
    pub max_recv_queue: Option<u64>,
    pub max_flow_control_paused: Option<super::file::Fraction>,
    pub max_applier_queue: u64,
    pub max_cert_queue: u64,
    pub handover_delay: Duration,
    pub require_semi_sync: bool,
    pub max_semi_sync_wait: Option<Duration>,
}

/// Default `handover_delay`: the seed HAProxy settings' `fall 3` x `inter 5000` plus a
/// `timeout check` and a poll.
pub const DEFAULT_HANDOVER_DELAY: Duration = Duration::from_secs(20);

/// Default `max_applier_queue` and `max_cert_queue`: a few transactions.
pub const DEFAULT_MAX_GROUP_QUEUE: u64 = 10;

impl Limits {
    /// The one place thresholds are resolved: `policy` < `instance` < `request`, then defaults.
    pub fn resolve(policy: &Thresholds, instance: &Thresholds, request: &Thresholds) -> Limits {
        let t = policy.overlay(instance).overlay(request);
        let max_lag = t.max_lag.unwrap_or(Duration::ZERO);
        Limits {
            max_lag,
            max_apply_backlog: t.max_apply_backlog.unwrap_or(0),
            max_source_lost: t.max_source_lost,
            require_writable: t.require_writable == Some(true),
            allow_isolated: t.allow_isolated == Some(true),
            recover_lag: t.recover_lag.unwrap_or(max_lag / 2),
            recover_for: t.recover_for.unwrap_or(DEFAULT_RECOVER_FOR),
            soft_lag: t.soft_lag.unwrap_or(max_lag / 4),
            allow_delay: t.allow_delay == Some(true),
            max_stall: t.max_stall.unwrap_or(DEFAULT_MAX_STALL),
            allow_errant: t.allow_errant == Some(true),
            available_when_donor: t.available_when_donor == Some(true),
            available_when_readonly: t.available_when_readonly == Some(true),
            min_cluster_size: t.min_cluster_size,
            max_recv_queue: t.max_recv_queue,
            max_flow_control_paused: t.max_flow_control_paused,
            max_applier_queue: t.max_applier_queue.unwrap_or(DEFAULT_MAX_GROUP_QUEUE),
            max_cert_queue: t.max_cert_queue.unwrap_or(DEFAULT_MAX_GROUP_QUEUE),
            handover_delay: t.handover_delay.unwrap_or(DEFAULT_HANDOVER_DELAY),
            require_semi_sync: t.require_semi_sync == Some(true),
            max_semi_sync_wait: t.max_semi_sync_wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_win_and_defaults_follow_the_resolved_max_lag() {
        let secs = |s| Some(Duration::from_secs(s));
        let policy = Thresholds {
            max_lag: secs(10),
            recover_for: Some(5),
            ..Default::default()
        };
        let instance = Thresholds {
            max_lag: secs(8),
            allow_errant: Some(true),
            ..Default::default()
        };
        let request = Thresholds {
            max_lag: secs(4),
            ..Default::default()
        };
        let l = Limits::resolve(&policy, &instance, &request);
        assert_eq!(l.max_lag, Duration::from_secs(4));
        assert_eq!(
            l.recover_lag,
            Duration::from_secs(2),
            "half the resolved max_lag"
        );
        assert_eq!(l.soft_lag, Duration::from_secs(1), "a quarter of it");
        assert_eq!(l.recover_for, 5);
        assert!(l.allow_errant && !l.allow_delay && !l.require_writable);
        assert_eq!(l.max_stall, DEFAULT_MAX_STALL);
        assert_eq!(l.max_source_lost, None, "unset is unbounded, not zero");
        let none = Limits::resolve(&Thresholds::default(), &Thresholds::default(), &request);
        assert_eq!(none.recover_for, DEFAULT_RECOVER_FOR);
    }
}
