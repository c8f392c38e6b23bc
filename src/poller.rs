//! The poller: one task per instance that samples the server every `interval` and publishes an
//! immutable [`Snapshot`] for every reader.
//!
//! One writer, many readers: the poller is the only sender on its `watch` channel; HTTP handlers
//! clone the `Arc` and never wait on MySQL. A failed poll is published like any other. The poller
//! logs verdict transitions of the instance's own policy (warn when it fails, info on recovery).

use crate::policy::{PolicySet, Thresholds};
use crate::probe::Probe;
use crate::sample::Sample;
use crate::snapshot::Snapshot;
use crate::store::{self, Persisted};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Polls the probe once and times it.
pub async fn poll_once(probe: &mut Probe) -> Sample {
    let start = Instant::now();
    let outcome = probe.sample().await;
    let end = Instant::now();
    Sample {
        taken_at: end.into_std(),
        taken_at_wall: SystemTime::now(),
        duration: end - start,
        outcome,
    }
}

/// What the poller needs to log verdict transitions of its instance's configured policy.
pub struct Judge {
    pub policies: Arc<PolicySet>,
    pub policy: String,
    pub thresholds: Thresholds,
    pub max_sample_age: Duration,
}

/// Samples every `interval` until `shutdown`, then closes the connection. With a `state_file`,
/// memory from an earlier run is restored at the first successful poll (if the server's
/// executed position has not moved) and the memory is written back whenever it changes.
pub async fn run(
    instance: String,
    mut probe: Probe,
    interval: Duration,
    tx: watch::Sender<Arc<Snapshot>>,
    judge: Judge,
    state_file: Option<PathBuf>,
    shutdown: CancellationToken,
) {
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
    let mut was_healthy: Option<bool> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let sample = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = poll_once(&mut probe) => s,
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
        let mut snapshot = tx.borrow().next(sample);
        if let Some(sample) = snapshot.sample.clone() {
            if let Ok(state) = &sample.outcome {
                if let Some(p) = pending.take() {
                    match p.restore_into(&mut snapshot.memory, &sample, state) {
                        Ok(n) => {
                            tracing::info!(instance = %instance, channels = n, "memory restored from state file")
                        }
                        Err(why) => {
                            tracing::warn!(instance = %instance, reason = %why, "remembered state void")
                        }
                    }
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
        let verdict = judge.policies.evaluate(
            &judge.policy,
            &crate::policy::Input {
                snapshot: &snapshot,
                max_sample_age: judge.max_sample_age,
                overrides: &judge.thresholds,
                now: Instant::now().into_std(),
            },
        );
        tx.send_replace(Arc::new(snapshot));
        if let Some(v) = verdict {
            if was_healthy != Some(v.healthy) {
                match v.first_failure() {
                    Some(check) => tracing::warn!(
                        instance = %instance,
                        policy = %v.policy,
                        check = %check.name,
                        reason = %check.detail,
                        "unhealthy"
                    ),
                    None if was_healthy.is_some() => {
                        tracing::info!(instance = %instance, policy = %v.policy, "healthy again")
                    }
                    None => tracing::info!(instance = %instance, policy = %v.policy, "healthy"),
                }
                was_healthy = Some(v.healthy);
            }
        }
    }
    probe.close().await;
    tracing::debug!(instance = %instance, "poller stopped");
}
