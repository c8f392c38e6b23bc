//! The poller: one task per instance that samples the server every `interval` and publishes an
//! immutable [`Snapshot`] for every reader.
//!
//! One writer, many readers: the poller is the only sender on its `watch` channel; HTTP handlers
//! clone the `Arc` and never wait on MySQL. A failed poll is published like any other. The poller
//! logs verdict transitions of the instance's own policy (warn when it fails, info on recovery),
//! and source, memory and maintenance transitions, into the [`Events`](crate::hub::events::Events) log.

pub mod fleet;
mod observe;
mod step;
pub mod store;

use crate::config::InstanceConfig;
pub use step::{step, Carry, Recorded, Step};

use crate::hub::events::Events;
use crate::hub::metrics::Metrics;
use crate::policy::Judge;
use crate::probe::{Probe, SourceWatch};
use crate::snapshot::sample::Sample;
use crate::snapshot::Snapshot;
use observe::Observer;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use store::Persisted;
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
            Err(e) => (None, Some(e.to_string())),
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
        lease: None,
    }
}

/// The first line of the maintenance file if it exists (`Ok(None)`: it does not). A file that
/// cannot be read is its own failure, never taken for "maintenance on": running out of file
/// descriptors must not read as an operator's decision. Reads at most [`MAX_MAINTENANCE_FILE`]
/// bytes of a regular file.
async fn maintenance_reason(path: &Path) -> Result<Option<String>, Unreadable> {
    use tokio::io::AsyncReadExt;
    let unreadable = |e: std::io::Error| Unreadable {
        path: path.to_path_buf(),
        why: e.to_string(),
    };
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
        return Err(Unreadable {
            path: path.to_path_buf(),
            why: "not a regular file".to_string(),
        });
    }
    let mut head = Vec::new();
    file.take(MAX_MAINTENANCE_FILE)
        .read_to_end(&mut head)
        .await
        .map_err(unreadable)?;
    let text = String::from_utf8_lossy(&head);
    Ok(Some(text.lines().next().unwrap_or("").trim().to_string()))
}

/// A maintenance file that exists but cannot be read: its own failure in every policy.
#[derive(Debug, thiserror::Error)]
#[error("{} unreadable: {why}", path.display())]
struct Unreadable {
    path: PathBuf,
    why: String,
}

/// How much of a maintenance file is read: its first line is the reason.
const MAX_MAINTENANCE_FILE: u64 = 4096;

/// Everything one instance's poller owns.
pub struct Poller {
    /// The instance as configured (a change restarts the poller).
    pub instance: InstanceConfig,
    /// The judge of the config in force (a reload may change the policies without restarting
    /// the poller): for the verdict transitions.
    pub judges: watch::Receiver<Arc<Judge>>,
    /// Where transitions go (shared by every generation of the config).
    pub events: Arc<Events>,
    /// Where polls are counted.
    pub metrics: Arc<Metrics>,
    pub probe: Probe,
    pub source: SourceWatch,
    pub interval: Duration,
    /// The only sender of this instance's snapshots.
    pub tx: watch::Sender<Arc<Snapshot>>,
    /// Where the memory is kept across restarts (`state_dir`), if anywhere.
    pub state_file: Option<PathBuf>,
    /// The instance's maintenance switch, if it has one.
    pub maintenance_file: Option<PathBuf>,
    /// The lease task's view of the instance's writer lease, copied into each sample; `None`:
    /// the instance is in no writer group.
    pub lease: Option<watch::Receiver<crate::snapshot::lease::LeaseView>>,
}

/// Samples every `interval` until `shutdown`, then closes the connections: the I/O and timing
/// around [`step`]. With a state file, memory from an earlier run is restored at the first
/// successful poll (if the server's executed position has not moved) and the memory is
/// written back whenever it changes.
pub async fn run(poller: Poller, shutdown: CancellationToken) {
    let Poller {
        instance: config,
        judges,
        events: log,
        metrics,
        mut probe,
        mut source,
        interval,
        tx,
        state_file,
        maintenance_file,
        lease,
    } = poller;
    let instance = &config.name;
    let mut carry = Carry {
        observer: Observer::default(),
        pending: state_file
            .as_deref()
            .and_then(|path| match store::load(path) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(instance = %instance, error = %e, "state file ignored");
                    None
                }
            }),
    };
    let mut written: Option<Persisted> = None;
    let mut ticker = tokio::time::interval(interval);
    // After a slow poll, keep the spacing rather than firing a burst to catch up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let mut sample = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = poll_once(&mut probe, &mut source, maintenance_file.as_deref()) => s,
        };
        sample.lease = lease.as_ref().map(|rx| rx.borrow().clone());
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
        metrics.observe_poll(instance, &sample);
        let previous = tx.borrow().clone();
        let now = Instant::now().into_std();
        // The judge of the config in force: policies may change at a reload.
        let judge = judges.borrow().clone();
        let Step { snapshot, events } = step(&judge, &config, &previous, sample, &mut carry, now);
        if let (Some(path), Some(Ok(state))) = (
            &state_file,
            snapshot.sample.as_ref().map(|s| s.outcome.as_ref()),
        ) {
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
        tx.send_replace(Arc::new(snapshot));
        for Recorded { event, quiet } in events {
            if quiet {
                log.record_quietly(event);
            } else {
                log.record(event);
            }
        }
    }
    probe.close().await;
    source.close().await;
    tracing::debug!(instance = %instance, "poller stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::SourceReads;

    /// The loop only does timing and I/O: with time paused, a server that refuses connections
    /// is polled once per interval, each poll published and counted.
    #[tokio::test(start_paused = true)]
    async fn the_loop_polls_once_per_interval_and_publishes_each_poll() {
        // A port nothing listens on: every poll fails fast with "refused".
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let config = crate::config::fixtures::instance("db2", port, "replica");
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let judge = Arc::new(Judge::new(
            crate::policy::PolicySet::builtin(),
            Duration::from_secs(3),
        ));
        let events = Arc::new(Events::default());
        let interval = Duration::from_secs(1);
        let timeout = Duration::from_millis(500);
        let poller = Poller {
            instance: config.clone(),
            judges: watch::channel(judge).1,
            events: events.clone(),
            metrics: Default::default(),
            probe: Probe::new(&config.target, timeout, interval),
            source: SourceWatch::new(
                None,
                config.target.clone(),
                timeout,
                interval,
                SourceReads::default(),
            ),
            interval,
            tx,
            state_file: None,
            maintenance_file: None,
            lease: None,
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(poller, shutdown.clone()));
        let mut polls = Vec::new();
        let mut rx = rx;
        for _ in 0..3 {
            rx.changed().await.unwrap();
            let s = rx.borrow_and_update().clone();
            assert!(s.sample.as_ref().unwrap().outcome.is_err(), "refused");
            polls.push((s.polls, Instant::now()));
        }
        assert_eq!(polls.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        // Paused time moves only by the ticker: the polls are one interval apart.
        assert_eq!(polls[2].1 - polls[1].1, interval);
        let unhealthy = events.recent(Some("db2"));
        assert!(
            !unhealthy.is_empty(),
            "the first verdict of its own policy is an event"
        );
        shutdown.cancel();
        task.await.unwrap();
    }
}
