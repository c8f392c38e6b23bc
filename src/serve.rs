//! Wiring for `replguard serve`: one poller task per instance, the hub they publish into, and the
//! HTTP server, all stopped by one cancellation token.
//!
//! Takes its listener and its shutdown token from the caller, so tests bind port 0 and stop the
//! daemon without signals.

use crate::config::Config;
use crate::hub::{Hub, Watched};
use crate::poller::{self, Judge};
use crate::probe::Probe;
use crate::snapshot::Snapshot;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest pause between reconnect attempts, in poll intervals: a server that comes back is
/// seen within this many intervals.
const MAX_BACKOFF_INTERVALS: u32 = 4;

/// Starts one poller per instance; returns the hub readers use and the poller tasks.
pub fn start_pollers(
    config: &Config,
    shutdown: &CancellationToken,
) -> (Arc<Hub>, Vec<JoinHandle<()>>) {
    let policies = Arc::new(config.policies.clone());
    let events = Arc::new(crate::events::Events::default());
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let mut instances = Vec::new();
    let mut tasks = Vec::new();
    for inst in &config.instances {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let probe = Probe::new(
            &inst.target,
            config.timeout,
            config.interval * MAX_BACKOFF_INTERVALS,
        );
        let judge = Judge {
            policies: policies.clone(),
            policy: inst.policy.clone(),
            thresholds: inst.thresholds.clone(),
            max_sample_age: config.max_sample_age,
        };
        let source = poller::SourceWatch::new(
            inst.source.clone(),
            inst.target.clone(),
            config.timeout,
            config.interval * MAX_BACKOFF_INTERVALS,
        );
        let state_file = config
            .state_dir
            .as_deref()
            .map(|dir| crate::store::file_for(dir, &inst.name));
        let poller = poller::Poller {
            instance: inst.name.clone(),
            probe,
            source,
            interval: config.interval,
            tx,
            judge,
            state_file,
            maintenance_file: inst.maintenance_file.clone(),
            events: events.clone(),
            metrics: metrics.clone(),
        };
        tasks.push(tokio::spawn(poller::run(poller, shutdown.clone())));
        instances.push(Watched {
            config: inst.clone(),
            snapshot: rx,
        });
    }
    let hub = Arc::new(Hub {
        instances,
        policies,
        max_sample_age: config.max_sample_age,
        events,
        metrics,
        answers: Default::default(),
    });
    (hub, tasks)
}

/// Runs the daemon on `listener` (and the agent-check listener, if given) until `shutdown` is
/// cancelled, then stops the HTTP server gracefully and waits (bounded) for every poller to
/// close its connection.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    agent: Option<TcpListener>,
    shutdown: CancellationToken,
) {
    let (hub, pollers) = start_pollers(&config, &shutdown);
    if let Some(agent) = agent {
        tokio::spawn(crate::agent::serve(agent, hub.clone(), shutdown.clone()));
    }
    let routes = crate::http::routes(hub);
    let stop = shutdown.clone();
    warp::serve(routes)
        .incoming(listener)
        .graceful(async move { stop.cancelled().await })
        .run()
        .await;
    // Pollers stop during their sleep or abandon their poll; closing takes at most one timeout.
    let grace = config.timeout + Duration::from_secs(1);
    for task in pollers {
        let _ = tokio::time::timeout(grace, task).await;
    }
}
