//! The running pollers, one per configured instance, and the hub readers see over them. A config
//! reload ([`Fleet::apply`]) starts the pollers of added instances, stops those of removed ones,
//! restarts changed ones (keeping their memory when the server is the same) and leaves unchanged
//! ones alone: their connection, memory and hysteresis carry on, and readers never see a gap.

use crate::config::{Config, InstanceConfig};
use crate::hub::{Hub, Shared};
use crate::lease;
use crate::policy::Judge;
use crate::poll;
use crate::probe::{Probe, SourceReads, SourceWatch};
use crate::snapshot::Snapshot;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

/// Longest pause between reconnect attempts, in poll intervals: a server that comes back is
/// seen within this many intervals.
const MAX_BACKOFF_INTERVALS: u32 = 4;

/// The settings every poller shares: a change restarts them all.
#[derive(Debug, Clone, PartialEq)]
struct PollSettings {
    interval: Duration,
    timeout: Duration,
    state_dir: Option<PathBuf>,
    coordination: Option<crate::config::coordination::Coordination>,
}

impl PollSettings {
    fn of(config: &Config) -> PollSettings {
        PollSettings {
            interval: config.interval,
            timeout: config.timeout,
            state_dir: config.state_dir.clone(),
            coordination: config.coordination.clone(),
        }
    }
}

/// One running poller.
struct Running {
    config: InstanceConfig,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Stops this poller alone (a child of the daemon's shutdown token).
    stop: CancellationToken,
}

/// What a reload did, by instance name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Restarted because their settings changed; memory kept where the server is the same.
    pub restarted: Vec<String>,
    pub kept: Vec<String>,
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (what, names) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("restarted", &self.restarted),
            ("kept", &self.kept),
        ] {
            if !names.is_empty() {
                parts.push(format!("{what} {}", names.join(", ")));
            }
        }
        if parts.is_empty() {
            f.write_str("no instances")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// The thread the pollers run on: one current-thread runtime of their own. Polls are short
/// waits on MySQL, a thousand of them a second at fleet size; on the daemon's multi-threaded
/// runtime every one woke a second worker (measured: a quarter of the guard's CPU at 1000
/// instances). Apart, they also never delay an HTTP answer. Dropped, it stops its runtime
/// (tasks still there are dropped with it).
struct PollThread {
    handle: tokio::runtime::Handle,
    stop: CancellationToken,
}

impl PollThread {
    fn start() -> PollThread {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("replguard-poll")
            .build()
            .expect("a current-thread runtime builds");
        let handle = runtime.handle().clone();
        let stop = CancellationToken::new();
        let until = stop.clone();
        std::thread::Builder::new()
            .name("replguard-poll".into())
            .spawn(move || runtime.block_on(until.cancelled()))
            .expect("the poll thread starts");
        PollThread { handle, stop }
    }
}

impl Drop for PollThread {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The pollers of one daemon and the current hub over them.
pub struct Fleet {
    /// Where the pollers run.
    thread: PollThread,
    running: Vec<Running>,
    tasks: JoinSet<()>,
    shutdown: CancellationToken,
    settings: PollSettings,
    /// Source connections shared by the pollers (kept across reloads).
    source_reads: SourceReads,
    shared: Shared,
    hubs: watch::Sender<Arc<Hub>>,
    /// The judge of the config in force, for the pollers (the readers find it in the hub).
    judges: watch::Sender<Arc<Judge>>,
    /// The start of every poller's phase grid: fixed for the daemon's life, so an instance
    /// keeps its place in the interval across reloads.
    epoch: tokio::time::Instant,
}

impl Fleet {
    /// Starts one poller per instance of `config`, all stopped by `shutdown`.
    pub fn start(config: &Config, shutdown: &CancellationToken) -> Fleet {
        let shared = Shared::default();
        let judge = Arc::new(config.judge());
        let empty = Hub::new(Vec::new(), judge.clone(), shared.clone());
        let mut fleet = Fleet {
            thread: PollThread::start(),
            running: Vec::new(),
            tasks: JoinSet::new(),
            shutdown: shutdown.clone(),
            settings: PollSettings::of(config),
            source_reads: SourceReads::default(),
            shared,
            hubs: watch::channel(Arc::new(empty)).0,
            judges: watch::channel(judge).0,
            epoch: tokio::time::Instant::now(),
        };
        fleet.apply(config);
        fleet
    }

    /// The hub of the config in force.
    pub fn hub(&self) -> Arc<Hub> {
        self.hubs.borrow().clone()
    }

    /// Follows the hub across reloads.
    pub fn hubs(&self) -> watch::Receiver<Arc<Hub>> {
        self.hubs.subscribe()
    }

    /// Makes the pollers match `config` and publishes a new hub over them.
    pub fn apply(&mut self, config: &Config) -> Changes {
        let settings = PollSettings::of(config);
        let same_settings = settings == self.settings;
        let judge = Arc::new(config.judge());
        // Pollers that carry on judge by the new policies from their next poll.
        self.judges.send_replace(judge.clone());
        self.settings = settings;
        let mut old: Vec<Running> = std::mem::take(&mut self.running);
        let mut changes = Changes::default();
        for inst in &config.instances {
            let previous = old
                .iter()
                .position(|r| r.config.name == inst.name)
                .map(|i| old.swap_remove(i));
            let running = match previous {
                Some(r) if same_settings && r.config == *inst => {
                    changes.kept.push(inst.name.clone());
                    r
                }
                Some(r) => {
                    r.stop.cancel();
                    changes.restarted.push(inst.name.clone());
                    // The same server: what was learnt about it still holds.
                    let seed = if r.config.target.addr == inst.target.addr {
                        r.snapshots.borrow().clone()
                    } else {
                        Arc::new(Snapshot::default())
                    };
                    self.spawn(config, inst, seed)
                }
                None => {
                    changes.added.push(inst.name.clone());
                    self.spawn(config, inst, Arc::new(Snapshot::default()))
                }
            };
            self.running.push(running);
        }
        for r in old {
            r.stop.cancel();
            changes.removed.push(r.config.name);
        }
        let hub = Hub::new(
            self.running
                .iter()
                .map(|r| (r.config.clone(), r.snapshots.clone()))
                .collect(),
            judge,
            self.shared.clone(),
        )
        .with_pools(&config.pools);
        self.hubs.send_replace(Arc::new(hub));
        changes
    }

    fn spawn(&mut self, config: &Config, inst: &InstanceConfig, seed: Arc<Snapshot>) -> Running {
        let (tx, snapshots) = watch::channel(seed);
        let stop = self.shutdown.child_token();
        let lease = match (&config.coordination, &inst.writer) {
            (Some(c), Some(w)) => {
                let (lease_tx, lease_rx) = watch::channel(lease::initial_view(&w.group, c));
                let task = lease::LeaseTask {
                    instance: inst.clone(),
                    coordination: c.clone(),
                    interval: config.interval,
                    judges: self.judges.subscribe(),
                    snapshots: snapshots.clone(),
                    tx: lease_tx,
                    events: self.shared.events.clone(),
                };
                self.tasks.spawn(lease::run(task, stop.clone()));
                Some(lease_rx)
            }
            _ => None,
        };
        let (probe, source) = connections(config, inst, self.source_reads.clone());
        let poller = poll::Poller {
            instance: inst.clone(),
            judges: self.judges.subscribe(),
            events: self.shared.events.clone(),
            metrics: self.shared.metrics.clone(),
            probe,
            source,
            interval: config.interval,
            tx,
            state_file: config
                .state_dir
                .as_deref()
                .map(|dir| crate::poll::store::file_for(dir, &inst.name)),
            maintenance_file: inst.maintenance_file.clone(),
            lease,
            // Spread over the interval by name (at most `PHASE_SLOTS` wake-ups per interval),
            // so that a fleet's servers are not all asked in one burst.
            phase: poll::Phase::of(&inst.name, config.interval, self.epoch),
            first_spread: poll::first_spread(config.interval, config.instances.len()),
        };
        self.tasks
            .spawn_on(poll::run(poller, stop.clone()), &self.thread.handle);
        Running {
            config: inst.clone(),
            snapshots,
            stop,
        }
    }

    /// The next poller that panicked (a bug: its instance would stay stale); pending while none
    /// does. Pollers stopped by a reload end normally and are not reported.
    pub async fn died(&mut self) -> JoinError {
        loop {
            match self.tasks.join_next().await {
                Some(Err(e)) if !e.is_cancelled() => return e,
                Some(_) => continue,
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Waits at most `grace` for every poller to close its connections (after shutdown).
    pub async fn drain(&mut self, grace: Duration) {
        let _ = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
    }
}

/// The probe of instance `inst` and the watch of its source, as the daemon and a one-shot
/// check set them up: bounded by `timeout`, reconnecting with a backoff of at most
/// `MAX_BACKOFF_INTERVALS` (4) intervals.
pub fn connections(
    config: &Config,
    inst: &InstanceConfig,
    source_reads: SourceReads,
) -> (Probe, SourceWatch) {
    let max_backoff = config.interval.saturating_mul(MAX_BACKOFF_INTERVALS);
    let probe = Probe::new(&inst.target, config.timeout, max_backoff);
    let source = SourceWatch::new(
        inst.source.clone(),
        inst.target.clone(),
        config.timeout,
        max_backoff,
        source_reads,
    );
    (probe, source)
}
