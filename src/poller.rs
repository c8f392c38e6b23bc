//! The poller: one task per instance that samples the server every `interval` and publishes an
//! immutable [`Snapshot`] for every reader.
//!
//! One writer, many readers: the poller is the only sender on its `watch` channel; HTTP handlers
//! clone the `Arc` and never wait on MySQL. A failed poll is published like any other. The poller
//! logs verdict transitions of the instance's own policy (warn when it fails, info on recovery),
//! and source, memory and maintenance transitions, into the [`Events`] log.

use crate::config::{Addr, Target};
use crate::events::{Event, Events, Observer};
use crate::metrics::Metrics;
use crate::policy::{PolicySet, Thresholds};
use crate::probe::Probe;
use crate::sample::{Sample, ServerState, SourceSample};
use crate::snapshot::Snapshot;
use crate::store::{self, Persisted};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Polls the probe once (and, for a replica, its source), times it, and notes whether the
/// instance's maintenance file is present.
pub async fn poll_once(
    probe: &mut Probe,
    source: &mut SourceWatch,
    maintenance_file: Option<&Path>,
) -> Sample {
    let (maintenance, maintenance_error) = match maintenance_file {
        Some(path) => match maintenance_reason(path).await {
            Ok(reason) => (reason, None),
            Err(e) => (None, Some(e)),
        },
        None => (None, None),
    };
    let start = Instant::now();
    let outcome = probe.sample().await;
    // The source must be read after the replica: read earlier, it could lack transactions the
    // replica already has, and those would look errant.
    let replica_read = Instant::now();
    let source = match &outcome {
        Ok(state) => source.sample(state, replica_read).await,
        Err(_) => None,
    };
    let end = Instant::now();
    Sample {
        taken_at: end.into_std(),
        taken_at_wall: SystemTime::now(),
        duration: end - start,
        outcome,
        source,
        maintenance,
        maintenance_error,
    }
}

/// The first line of the maintenance file if it exists (`Ok(None)`: it does not). A file that
/// cannot be read is its own failure, never taken for "maintenance on": running out of file
/// descriptors must not read as an operator's decision. Reads at most [`MAX_MAINTENANCE_FILE`]
/// bytes of a regular file.
async fn maintenance_reason(path: &Path) -> Result<Option<String>, String> {
    use tokio::io::AsyncReadExt;
    let unreadable = |e: std::io::Error| format!("{} unreadable: {e}", path.display());
    // Opened without blocking (a FIFO put there would otherwise wait for a writer forever),
    // then checked on the opened file, so nothing can be swapped in between.
    let file = match tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .await
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    if !file.metadata().await.map_err(unreadable)?.is_file() {
        return Err(format!("{} unreadable: not a regular file", path.display()));
    }
    let mut head = Vec::new();
    file.take(MAX_MAINTENANCE_FILE)
        .read_to_end(&mut head)
        .await
        .map_err(unreadable)?;
    let text = String::from_utf8_lossy(&head);
    Ok(Some(text.lines().next().unwrap_or("").trim().to_string()))
}

/// How much of a maintenance file is read: its first line is the reason.
const MAX_MAINTENANCE_FILE: u64 = 4096;

/// The connection to a replica's source, for the promotion checklist: the configured `source`,
/// or else the host and port the replica reports, with the instance's credentials. Follows the
/// replica when it is repointed. One light query per poll; reads only.
pub struct SourceWatch {
    configured: Option<Target>,
    /// The instance's own target, whose credentials are used for a reported source.
    instance: Target,
    timeout: Duration,
    max_backoff: Duration,
    /// Where this process's source connections live, shared by its pollers.
    reads: SourceReads,
    /// The source currently followed: its address and its shared connection.
    current: Option<(Addr, Shared)>,
}

/// Source connections shared by the pollers of one process. Instances that replicate from the
/// same source with the same credentials (one guard watching many replicas of one primary) share
/// one connection, and one reading when it was taken after their own replica read: the source
/// sees a few statements per tick (one per wave of replica reads) rather than one per replica.
#[derive(Default, Clone)]
pub struct SourceReads {
    /// By address, user, password (held here only as the key, never shown) and TLS settings.
    shared: Arc<std::sync::Mutex<HashMap<SourceKey, Shared>>>,
}

/// A source's address, user, password and TLS settings: instances that reach the same source
/// differently (one in the clear, one verifying its certificate) never share a connection.
type SourceKey = (String, String, String, crate::config::Tls);
/// A source connection as its pollers hold it.
type Shared = Arc<tokio::sync::Mutex<SharedSource>>;

/// One source connection and its latest reading.
pub struct SharedSource {
    probe: Probe,
    /// When the latest reading started, and what it found.
    last: Option<(Instant, SourceSample)>,
}

impl SourceReads {
    fn get(
        &self,
        target: &Target,
        timeout: Duration,
        max_backoff: Duration,
    ) -> Arc<tokio::sync::Mutex<SharedSource>> {
        let key = (
            target.addr.to_string(),
            target.user.clone(),
            target.password.expose().to_string(),
            target.tls.clone(),
        );
        // Held only for the map lookup, never across an .await.
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared
            .entry(key)
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(SharedSource {
                    probe: Probe::new(target, timeout, max_backoff),
                    last: None,
                }))
            })
            .clone()
    }
}

impl SourceWatch {
    pub fn new(
        configured: Option<Target>,
        instance: Target,
        timeout: Duration,
        max_backoff: Duration,
        reads: SourceReads,
    ) -> SourceWatch {
        SourceWatch {
            configured,
            instance,
            timeout,
            max_backoff,
            reads,
            current: None,
        }
    }

    /// Reads the source of `state`'s first channel; `None` when it is not a replica. A reading
    /// another poller started after `replica_read` (when this instance's own read finished) is
    /// reused; an earlier one is not.
    pub async fn sample(
        &mut self,
        state: &ServerState,
        replica_read: Instant,
    ) -> Option<SourceSample> {
        let ch = state.channels.first()?;
        let addr = match &self.configured {
            Some(t) => t.addr.clone(),
            None if ch.source_host.is_empty() => return None,
            None => Addr::Tcp {
                host: ch.source_host.clone(),
                port: ch.source_port,
            },
        };
        if self.current.as_ref().map(|(a, _)| a) != Some(&addr) {
            // The configured source as is, or the reported one with the instance's credentials.
            let target = Target {
                addr: addr.clone(),
                ..self.configured.as_ref().unwrap_or(&self.instance).clone()
            };
            let shared = self.reads.get(&target, self.timeout, self.max_backoff);
            // Repointed: close the old source's connection unless another poller still uses it
            // (held by the map and by us only).
            if let Some((_, old)) = self.current.replace((addr, shared)) {
                if Arc::strong_count(&old) <= 2 {
                    old.lock().await.probe.close().await;
                }
            }
        }
        let (_, shared) = self.current.as_ref().expect("set just above");
        let mut shared = shared.lock().await;
        if let Some((started, sample)) = &shared.last {
            if *started >= replica_read {
                return Some(sample.clone());
            }
        }
        let started = Instant::now();
        let sample = SourceSample {
            addr: shared.probe.addr().to_string(),
            outcome: shared.probe.source_sample().await,
        };
        shared.last = Some((started, sample.clone()));
        Some(sample)
    }

    /// Closes the source connection (at shutdown: the other pollers sharing it are stopping
    /// too; one that polls again reconnects).
    pub async fn close(&mut self) {
        if let Some((_, shared)) = self.current.take() {
            shared.lock().await.probe.close().await;
        }
    }
}

/// What the poller needs to follow verdict transitions (its instance's own policy is `policy`).
pub struct Judge {
    pub policies: Arc<PolicySet>,
    pub policy: String,
    pub thresholds: Thresholds,
    pub max_sample_age: Duration,
}

/// Everything one instance's poller owns.
pub struct Poller {
    pub instance: String,
    pub probe: Probe,
    pub source: SourceWatch,
    pub interval: Duration,
    /// The only sender of this instance's snapshots.
    pub tx: watch::Sender<Arc<Snapshot>>,
    pub judge: Judge,
    /// Where the memory is kept across restarts (`state_dir`), if anywhere.
    pub state_file: Option<PathBuf>,
    /// The instance's maintenance switch, if it has one.
    pub maintenance_file: Option<PathBuf>,
    /// Where transitions are recorded (and logged) for `/events`.
    pub events: Arc<Events>,
    /// Poll durations and errors for `/metrics`.
    pub metrics: Arc<Metrics>,
}

/// Samples every `interval` until `shutdown`, then closes the connections. With a state file,
/// memory from an earlier run is restored at the first successful poll (if the server's
/// executed position has not moved) and the memory is written back whenever it changes.
pub async fn run(poller: Poller, shutdown: CancellationToken) {
    let Poller {
        instance,
        mut probe,
        mut source,
        interval,
        tx,
        judge,
        state_file,
        maintenance_file,
        events,
        metrics,
    } = poller;
    let mut observer = Observer::default();
    let mut pending = state_file
        .as_deref()
        .and_then(|path| match store::load(path) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(instance = %instance, error = %e, "state file ignored");
                None
            }
        });
    let mut written: Option<Persisted> = None;
    let mut ticker = tokio::time::interval(interval);
    // After a slow poll, keep the spacing rather than firing a burst to catch up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Per policy: the cause of its last verdict (`None`: healthy).
    let mut was: HashMap<String, Option<String>> = Default::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let sample = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = poll_once(&mut probe, &mut source, maintenance_file.as_deref()) => s,
        };
        match &sample.outcome {
            Ok(state) => tracing::debug!(
                instance = %instance,
                poll_ms = sample.duration.as_millis() as u64,
                channels = state.channels.len(),
                read_only = state.read_only,
                "polled"
            ),
            Err(err) => tracing::debug!(instance = %instance, error = %err, "poll failed"),
        }
        metrics.observe_poll(&instance, &sample);
        let at = sample.taken_at_wall;
        for event in observer.observe(&instance, &sample) {
            events.record(event);
        }
        let mut snapshot = tx.borrow().next(sample);
        if let Some(sample) = snapshot.sample.clone() {
            if let (Ok(state), Some(Ok(src))) = (
                &sample.outcome,
                sample.source.as_ref().map(|s| s.outcome.as_ref()),
            ) {
                snapshot.memory.errant_at_last_source =
                    crate::policy::promotion::errant_against(state, src);
            }
            if let Ok(state) = &sample.outcome {
                if let Some(p) = pending.take() {
                    let outcome = p.restore_into(&mut snapshot.memory, &sample, state);
                    events.record(Event::restore(at, &instance, outcome));
                }
                if let Some(path) = &state_file {
                    let p = Persisted::new(&snapshot.memory, state);
                    if written.as_ref() != Some(&p) {
                        match store::save(path, &p).await {
                            Ok(()) => written = Some(p),
                            Err(e) => {
                                tracing::warn!(instance = %instance, error = %e, path = %path.display(), "cannot write state file")
                            }
                        }
                    }
                }
            }
        }
        // Every policy's verdict changes go to /events ("when did the backup stop being safe?");
        // those of the instance's own policy are also the warn/info log lines.
        let input = crate::policy::Input {
            snapshot: &snapshot,
            max_sample_age: judge.max_sample_age,
            overrides: &judge.thresholds,
            now: Instant::now().into_std(),
        };
        let verdicts: Vec<_> = judge
            .policies
            .names()
            .filter_map(|name| judge.policies.evaluate(name, &input))
            .collect();
        tx.send_replace(Arc::new(snapshot));
        for v in verdicts {
            let cause = v.cause_key();
            let before = was.get(&v.policy);
            let event = match before {
                Some(before) if *before == cause => continue,
                Some(Some(_)) if cause.is_some() => Event::cause_changed(at, &instance, &v),
                _ => Event::verdict(at, &instance, &v, before.is_none()),
            };
            if v.policy == judge.policy {
                events.record(event);
            } else if before.is_some() {
                // Other policies: changes only; a replica's first "fails primary" is noise.
                events.record_quietly(event);
            }
            was.insert(v.policy.clone(), cause);
        }
    }
    probe.close().await;
    source.close().await;
    tracing::debug!(instance = %instance, "poller stopped");
}
