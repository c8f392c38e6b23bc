//! The read side shared by HTTP handlers and the CLI: each instance's latest snapshot, the
//! policies, and the lookup of an instance from a request.
//!
//! Reading a snapshot clones an `Arc` out of a `watch` channel; nothing here waits on MySQL or
//! holds a lock across an `.await`.

use crate::config::InstanceConfig;
use crate::policy::{Input, PolicySet, Thresholds, Verdict};
use crate::snapshot::Snapshot;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One watched instance as readers see it.
pub struct Watched {
    pub config: InstanceConfig,
    /// The poller's latest snapshot; the poller is the only sender.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
}

impl Watched {
    /// The latest snapshot. The `watch` read lock is held only for the `Arc` clone.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }
}

/// How a request names its instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Port(u16),
    Name(String),
    /// Neither given: fine only when exactly one instance is configured.
    Only,
}

/// Why a request's instance could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("no instance with port {0}")]
    NoSuchPort(u16),
    #[error("no instance named {0:?}")]
    NoSuchName(String),
    #[error("{0} instances are configured: name one with ?port= or ?instance=")]
    Ambiguous(usize),
}

/// Everything a check request can read.
pub struct Hub {
    pub instances: Vec<Watched>,
    pub policies: Arc<PolicySet>,
    pub max_sample_age: Duration,
    /// The transition log the pollers write and `/events` reads.
    pub events: Arc<crate::events::Events>,
    /// Counters and histograms the pollers and HTTP handlers increment; `/metrics` renders them.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Hub {
    pub fn find(&self, selector: &Selector) -> Result<&Watched, LookupError> {
        match selector {
            Selector::Port(port) => self
                .instances
                .iter()
                .find(|w| w.config.port == Some(*port))
                .ok_or(LookupError::NoSuchPort(*port)),
            Selector::Name(name) => self
                .instances
                .iter()
                .find(|w| &w.config.name == name)
                .ok_or_else(|| LookupError::NoSuchName(name.clone())),
            Selector::Only => match self.instances.as_slice() {
                [only] => Ok(only),
                all => Err(LookupError::Ambiguous(all.len())),
            },
        }
    }

    /// Evaluates `policy` (or the instance's configured one) against the latest snapshot, with
    /// thresholds overlaid policy file < instance config < `request`. `None`: no such policy.
    pub fn evaluate(
        &self,
        watched: &Watched,
        policy: Option<&str>,
        request: &Thresholds,
        now: Instant,
    ) -> Option<Verdict> {
        let snapshot = watched.latest();
        let overrides = watched.config.thresholds.overlay(request);
        self.policies.evaluate(
            policy.unwrap_or(&watched.config.policy),
            &Input {
                snapshot: &snapshot,
                max_sample_age: self.max_sample_age,
                overrides: &overrides,
                now,
            },
        )
    }
}
