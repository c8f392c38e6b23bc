//! systemd readiness and watchdog (`Type=notify`, `WatchdogSec=`), through the `NOTIFY_SOCKET`
//! protocol (sd-notify); nothing happens outside systemd.
//!
//! `READY=1` is sent once every instance has its first sample, so `systemctl start` returns
//! when checks answer from real data. `WATCHDOG=1` is sent every half watchdog period while
//! every instance's sample is fresh: a poller that stopped publishing (a bug) stops the
//! keep-alives and systemd restarts the daemon. A failed poll is a fresh sample: an unreachable
//! MySQL never trips the watchdog.

use crate::hub::Hub;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Every instance of `hub` has a sample no older than its `max_sample_age` at `now`.
fn all_fresh(hub: &Hub, now: Instant) -> bool {
    hub.instances()
        .iter()
        .all(|w| hub.judge().freshness(&w.current(), now).is_fresh())
}

/// Every instance of `hub` has had a sample.
fn all_sampled(hub: &Hub) -> bool {
    hub.instances().iter().all(|w| w.current().sample.is_some())
}

/// Sends readiness, then keep-alives while the samples are fresh, until `shutdown`.
pub async fn run(hubs: watch::Receiver<Arc<Hub>>, shutdown: CancellationToken) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if all_sampled(&hubs.borrow()) {
            break;
        }
    }
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot tell systemd the daemon is ready");
    }
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_micros(usec / 2));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let hub = hubs.borrow().clone();
        if all_fresh(&hub, tokio::time::Instant::now().into_std()) {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::warn!("a sample is stale: withholding the systemd watchdog keep-alive");
        }
    }
}
