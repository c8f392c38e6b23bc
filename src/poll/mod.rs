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
use tokio::time::Instant;
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
    /// When this instance polls within the interval: its steady place on the fleet's grid.
    pub phase: Phase,
    /// Over how long the fleet's first polls are spread (see [`first_spread`]).
    pub first_spread: Duration,
}

/// Over how long a fleet of `instances` spreads its first polls, each by its phase: 1 ms per
/// instance, at most [`FIRST_POLL_SPREAD`] and one `interval`. A thousand connects in one
/// millisecond overflowed the servers' listen backlogs (EAGAIN on connect); a few instances
/// poll at once, as ever, and a long interval never leaves an instance without a sample.
pub fn first_spread(interval: Duration, instances: usize) -> Duration {
    let per = Duration::from_millis(1).saturating_mul(u32::try_from(instances).unwrap_or(u32::MAX));
    per.min(FIRST_POLL_SPREAD).min(interval)
}

/// An instance's steady place in the poll interval: it polls at `epoch + offset + k * interval`.
/// The epoch is the fleet's (fixed for the daemon's life) and the offset comes from the
/// instance's name alone, so polls of a fleet are spread over the interval rather than in one
/// burst, and an instance keeps its phase across reloads (even when its poller restarts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    pub epoch: Instant,
    pub offset: Duration,
}

/// Over how long a fleet's first polls are spread at start (each instance by its phase).
pub const FIRST_POLL_SPREAD: Duration = Duration::from_secs(1);

/// How finely phases are placed: slots of an interval / `PHASE_SLOTS` (at least 1 ms). Pollers
/// in one slot wake together, so a large fleet costs at most this many timer wake-ups per
/// interval, while no slot holds much more than its share of the polls.
pub const PHASE_SLOTS: u32 = 200;

impl Phase {
    /// The phase of the instance `name` polled every `interval` on the grid starting at `epoch`.
    pub fn of(name: &str, interval: Duration, epoch: Instant) -> Phase {
        // FNV-1a: stable across runs and builds (std's hasher promises neither).
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let slot = interval
            .checked_div(PHASE_SLOTS)
            .unwrap_or_default()
            .max(Duration::from_millis(1))
            .min(interval.max(Duration::from_millis(1)));
        let slots = (interval.as_nanos() / slot.as_nanos()).max(1) as u64;
        Phase {
            epoch,
            offset: slot * ((hash % slots) as u32),
        }
    }

    /// When the poll after one that started at `started` is due, given that it ended at `now`:
    /// the first point of the grid at least half an interval after `started` (so a poller that
    /// started off the grid joins it at once) and not before `now` (a slow poll delays the next
    /// rather than bursting to catch up). On the grid, polls are exactly one interval apart.
    pub fn next(&self, interval: Duration, started: Instant, now: Instant) -> Instant {
        self.at_or_after(interval, (started + interval / 2).max(now))
    }

    /// The first point of the grid at or after `after`: a poller's first poll.
    pub fn at_or_after(&self, interval: Duration, after: Instant) -> Instant {
        let first = self.epoch + self.offset;
        if after <= first || interval.is_zero() {
            return first.max(after);
        }
        let since = after - first;
        let k = since.as_nanos().div_ceil(interval.as_nanos());
        let k = u32::try_from(k).unwrap_or(u32::MAX);
        first + interval.saturating_mul(k)
    }
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
        phase,
        first_spread,
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
    let poll_duration = metrics.poll_histogram(instance);
    // The first poll spread by the instance's phase over `first_spread`, then every poll on
    // the grid.
    let mut due = Instant::now()
        + first_spread.mul_f64(phase.offset.as_secs_f64() / interval.as_secs_f64().max(1e-9));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(due) => {}
        }
        let started = Instant::now();
        // Boxed: the probe's futures are large, and a poller waits most of its life between
        // polls; inside the task they would make every idle poller that size.
        let polling = Box::pin(poll_once(
            &mut probe,
            &mut source,
            maintenance_file.as_deref(),
        ));
        let mut sample = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = polling => s,
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
        poll_duration.observe(sample.duration.as_secs_f64());
        metrics.observe_poll_error(instance, &sample);
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
                match Box::pin(store::save(path, &p)).await {
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
        due = phase.next(interval, started, Instant::now());
    }
    // Boxed too, for the same reason as the poll.
    Box::pin(async {
        probe.close().await;
        source.close().await;
    })
    .await;
    tracing::debug!(instance = %instance, "poller stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::SourceReads;

    #[test]
    fn an_instance_keeps_its_phase_and_a_fleet_spreads_over_the_interval() {
        let interval = Duration::from_secs(1);
        let epoch = Instant::now();
        let later = epoch + Duration::from_secs(7);
        assert_eq!(
            Phase::of("db2", interval, epoch).offset,
            Phase::of("db2", interval, later).offset,
            "the offset comes from the name alone"
        );
        let offsets: Vec<Duration> = (0..1000)
            .map(|i| Phase::of(&format!("r{i:04}"), interval, epoch).offset)
            .collect();
        assert!(offsets.iter().all(|o| *o < interval));
        // No tenth of the interval (wherever it starts) holds much more than a tenth of them.
        let tenth = interval / 10;
        let busiest = offsets
            .iter()
            .map(|start| {
                offsets
                    .iter()
                    .filter(|o| {
                        (**o + interval - *start).as_nanos() % interval.as_nanos()
                            < tenth.as_nanos()
                    })
                    .count()
            })
            .max()
            .unwrap();
        assert!(busiest <= 150, "busiest tenth holds {busiest} of 1000");
        let slots: std::collections::BTreeSet<_> = offsets.iter().collect();
        assert!(
            slots.len() as u32 > PHASE_SLOTS / 2,
            "{} slots used",
            slots.len()
        );
    }

    #[test]
    fn polls_follow_the_grid_and_a_slow_poll_delays_the_next_instead_of_bursting() {
        let interval = Duration::from_secs(1);
        let epoch = Instant::now();
        let phase = Phase {
            epoch,
            offset: Duration::from_millis(300),
        };
        let ms = |n: u64| Duration::from_millis(n);
        // Started off the grid (at start or after a reload): joins it at least half an
        // interval later, at most one and a half.
        assert_eq!(phase.next(interval, epoch, epoch + ms(5)), epoch + ms(1300));
        assert_eq!(
            phase.next(interval, epoch + ms(900), epoch + ms(905)),
            epoch + ms(2300)
        );
        // On the grid: one interval apart.
        let on = epoch + ms(5300);
        assert_eq!(phase.next(interval, on, on + ms(4)), on + interval);
        // A poll slower than the interval: the next grid point after it ended, not at once.
        assert_eq!(phase.next(interval, on, on + ms(1200)), on + 2 * interval);
        // A poller's first poll: the grid's next point, within an interval.
        assert_eq!(phase.at_or_after(interval, on + ms(1)), on + interval);
        assert_eq!(phase.at_or_after(interval, on), on);
        // First polls: 1 ms per instance, at most a second and an interval.
        assert_eq!(first_spread(interval, 2), ms(2));
        assert_eq!(first_spread(interval, 1000), ms(1000));
        assert_eq!(first_spread(interval, 5000), ms(1000));
        assert_eq!(first_spread(ms(300), 1000), ms(300));
        // Before the grid's first point.
        let early = Phase {
            epoch: epoch + ms(10_000),
            offset: ms(300),
        };
        assert_eq!(
            early.next(interval, epoch, epoch + ms(1)),
            epoch + ms(10_300)
        );
    }

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
            phase: Phase::of("db2", interval, Instant::now()),
            first_spread: first_spread(interval, 1),
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
