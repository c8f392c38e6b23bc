//! The read façade shared by HTTP handlers, the agent, metrics, the pollers' event log and the
//! CLI: each instance's latest snapshot, the lookup of an instance from a request, and the
//! [`Judge`] of the config in force.
//!
//! Reading a snapshot clones an `Arc` out of a `watch` channel; nothing here waits on MySQL or
//! holds a lock across an `.await`.

pub mod across;
pub mod events;
pub mod metrics;

use crate::config::InstanceConfig;
use crate::hub::events::Events;
use crate::hub::metrics::Metrics;
use crate::policy::Judge;
#[cfg(test)]
use crate::policy::PolicySet;
use crate::snapshot::Snapshot;
use std::sync::Arc;
#[cfg(test)]
use std::time::Duration;
use tokio::sync::watch;

/// One watched instance as readers see it.
pub struct Watched {
    pub config: InstanceConfig,
    /// The poller's latest snapshot; the poller is the only sender.
    snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Its position among the hub's instances: a small key for per-instance state of readers.
    index: usize,
    /// Its pool (`[[pool]]`) and its place among the pool's members.
    pool: Option<(usize, usize)>,
}

impl Watched {
    /// The latest snapshot. The `watch` read lock is held only for the `Arc` clone.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// The latest snapshot, borrowed without cloning a handle: hold it only briefly (it holds
    /// the `watch` read lock).
    pub fn current(&self) -> watch::Ref<'_, Arc<Snapshot>> {
        self.snapshot.borrow()
    }

    /// Its position among [`Hub::instances`].
    pub fn index(&self) -> usize {
        self.index
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

/// What outlives a config reload: every generation of the hub shares it.
#[derive(Clone, Default)]
pub struct Shared {
    /// The transition log the pollers write and `/events` reads.
    pub events: Arc<Events>,
    /// Counters and histograms the pollers and HTTP handlers increment.
    pub metrics: Arc<Metrics>,
    /// The outcome of the latest config reload (SIGHUP).
    pub reload: Arc<ReloadStatus>,
}

/// The outcome of the latest config reload, for `/status` and `/metrics`; `None` until the
/// first SIGHUP.
#[derive(Default)]
pub struct ReloadStatus(std::sync::Mutex<Option<Reload>>);

/// One config reload: when, whether it was applied, and what it changed or why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reload {
    #[serde(serialize_with = "ser_rfc3339")]
    pub at: std::time::SystemTime,
    /// False when the new config failed validation: the old one stays in force.
    pub applied: bool,
    /// What changed (instances started, stopped, restarted, kept; keys that need a restart),
    /// or the validation error.
    pub detail: String,
}

fn ser_rfc3339<S: serde::Serializer>(t: &std::time::SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

impl ReloadStatus {
    pub fn set(&self, reload: Reload) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(reload);
    }

    pub fn last(&self) -> Option<Reload> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Everything a reader can see: the instances, the policies and the logs the pollers fill.
/// One generation per config: a reload builds a new hub (sharing [`Shared`]).
pub struct Hub {
    instances: Vec<Watched>,
    /// Positions in `instances` by name and by port (the first instance with that port), so a
    /// check finds its instance in a fleet of thousands without a scan.
    by_name: std::collections::HashMap<String, usize>,
    by_port: std::collections::HashMap<u16, usize>,
    judge: Arc<Judge>,
    shared: Shared,
    /// The read pools over the instances (see [`Hub::with_pools`]).
    pools: Vec<across::Pool>,
}

impl Hub {
    /// A hub over `instances` (each with the receiving end of its poller's snapshots).
    pub fn new(
        instances: Vec<(InstanceConfig, watch::Receiver<Arc<Snapshot>>)>,
        judge: Arc<Judge>,
        shared: Shared,
    ) -> Hub {
        let instances: Vec<Watched> = instances
            .into_iter()
            .enumerate()
            .map(|(index, (config, snapshot))| Watched {
                config,
                snapshot,
                index,
                pool: None,
            })
            .collect();
        let mut by_name = std::collections::HashMap::with_capacity(instances.len());
        let mut by_port = std::collections::HashMap::with_capacity(instances.len());
        for w in &instances {
            by_name.entry(w.config.name.clone()).or_insert(w.index);
            if let Some(port) = w.config.port {
                by_port.entry(port).or_insert(w.index);
            }
        }
        Hub {
            instances,
            by_name,
            by_port,
            judge,
            shared,
            pools: Vec::new(),
        }
    }

    pub fn instances(&self) -> &[Watched] {
        &self.instances
    }

    /// The policies and freshness bound of this generation's config: every verdict.
    pub fn judge(&self) -> &Judge {
        &self.judge
    }

    pub fn events(&self) -> &Events {
        &self.shared.events
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// What this generation shares with the next one.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    pub fn find(&self, selector: &Selector) -> Result<&Watched, LookupError> {
        match selector {
            Selector::Port(port) => self
                .by_port
                .get(port)
                .map(|&i| &self.instances[i])
                .ok_or(LookupError::NoSuchPort(*port)),
            Selector::Name(name) => self
                .by_name
                .get(name)
                .map(|&i| &self.instances[i])
                .ok_or_else(|| LookupError::NoSuchName(name.clone())),
            Selector::Only => match self.instances.as_slice() {
                [only] => Ok(only),
                all => Err(LookupError::Ambiguous(all.len())),
            },
        }
    }
}

#[cfg(test)]
impl Hub {
    /// A hub over fixed snapshots (no pollers), the built-in policies and a 3 s
    /// `max_sample_age`: for tests of readers.
    pub fn with_snapshots(entries: Vec<(InstanceConfig, Snapshot)>) -> Hub {
        let instances = entries
            .into_iter()
            // The receiver keeps the last value after the sender is gone.
            .map(|(config, s)| (config, watch::channel(Arc::new(s)).1))
            .collect();
        Hub::new(
            instances,
            Arc::new(Judge::new(PolicySet::builtin(), Duration::from_secs(3))),
            Shared::default(),
        )
    }
}
