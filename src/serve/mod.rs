//! Wiring for `replguard serve`: the pollers and the hub they publish into ([`Fleet`]), the agent
//! and the HTTP server, all stopped by one cancellation token; config reloads on SIGHUP.
//!
//! Takes its listener and its shutdown token from the caller, so tests bind port 0 and stop the
//! daemon without signals.

pub mod agent;
pub mod http;
pub mod listen;
mod notify;
pub mod signals;

use crate::config::Config;
use crate::hub::Reload;
use crate::poll::fleet::Fleet;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long open HTTP connections get to finish at shutdown before they are dropped: a client
/// that sent half a request must not hold the daemon up.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why the daemon stopped on its own, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("a poller died ({0}): its instance would have stayed stale; stopping so a supervisor restarts replguard")]
    PollerDied(String),
    #[error("web.tls_cert_file: {0}")]
    Tls(crate::config::web::TlsError),
}

/// Runs the daemon on `listener` (and the agent-check listener, if given) until `shutdown` is
/// cancelled, then stops the HTTP server gracefully and waits (bounded) for every poller to
/// close its connection. A poller that dies (a bug) stops the daemon with an error rather than
/// leaving its instance silently stale. Reloads each time `reload` changes (SIGHUP): the config file is read again and,
/// when it validates, applied without a gap (see [`Fleet::apply`]); one that does not is logged
/// and reported (`/status`, `replguard_config_last_reload_success`) while the old one stays in
/// force. The HTTPS certificates are re-read too. Listener settings (`listen`, `agent_listen`,
/// `max_connections`, the timeouts, `[web]`) need a restart: a reload says so.
pub async fn serve_reloading(
    config: Config,
    listener: TcpListener,
    agent: Option<TcpListener>,
    shutdown: CancellationToken,
    mut reload: Option<watch::Receiver<u64>>,
) -> Result<(), ServeError> {
    // Validated with the config; a failure here (a file changed since) stops before polling.
    let (tls_tx, tls) = match &config.web.tls {
        Some(t) => {
            let (tx, rx) =
                watch::channel(crate::config::web::acceptor(t).map_err(ServeError::Tls)?);
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let mut fleet = Fleet::start(&config, &shutdown);
    let hub = fleet.hub();
    let gate = Arc::new(crate::serve::listen::gate::Gate::new(
        config.web.clone(),
        hub.metrics().clone(),
    ));
    // Fair admission, per listener: caps in all and per client address (README, Security).
    let admission = |listener, max| {
        crate::serve::listen::admission::Admission::new(
            listener,
            max,
            config.max_connections_per_client,
            config.check_from.clone(),
            hub.metrics().clone(),
        )
    };
    if let Some(agent) = agent {
        tokio::spawn(crate::serve::agent::serve(
            agent,
            fleet.hubs(),
            gate.clone(),
            admission("agent", crate::serve::agent::MAX_CONNECTIONS),
            shutdown.clone(),
        ));
    }
    let http_admission = admission("http", config.max_connections);
    tokio::spawn(crate::serve::notify::run(fleet.hubs(), shutdown.clone()));
    let (routes_tx, routes) = watch::channel(crate::serve::http::served(hub));
    let limits = crate::serve::listen::Limits {
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
        shutdown_grace: SHUTDOWN_GRACE,
    };
    let server = crate::serve::listen::serve(
        listener,
        routes,
        limits,
        gate,
        http_admission,
        tls,
        shutdown.clone(),
    );
    tokio::pin!(server);
    let mut died = None;
    loop {
        let reloaded = async {
            match reload.as_mut() {
                Some(r) => r.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut server => break,
            e = fleet.died(), if !shutdown.is_cancelled() => {
                tracing::error!(error = %e, "a poller died; shutting down");
                died = Some(e.to_string());
                shutdown.cancel();
            }
            ok = reloaded => {
                if !ok {
                    reload = None;
                    continue;
                }
                if let (Some(tx), Some(t)) = (&tls_tx, &config.web.tls) {
                    match crate::config::web::acceptor(t) {
                        Ok(acceptor) => {
                            tx.send_replace(acceptor);
                            tracing::info!("TLS certificates re-read");
                        }
                        Err(e) => tracing::warn!(
                            error = %e,
                            "TLS certificates not re-read: keeping the ones in use"
                        ),
                    }
                }
                reload_config(&config, &mut fleet);
                routes_tx.send_replace(crate::serve::http::served(fleet.hub()));
            }
        }
    }
    // Pollers stop during their sleep or abandon their poll; closing takes at most one timeout.
    fleet.drain(config.timeout + Duration::from_secs(1)).await;
    match died {
        Some(e) => Err(ServeError::PollerDied(e)),
        None => Ok(()),
    }
}

/// Reads `running`'s config file again and applies it to `fleet` if it validates; records the
/// outcome for `/status` and `/metrics` either way.
fn reload_config(running: &Config, fleet: &mut Fleet) {
    let at = std::time::SystemTime::now();
    let reload = match Config::load(&running.path) {
        Err(e) => {
            tracing::error!(error = %e, "config reload refused: the running config stays in force");
            Reload {
                at,
                applied: false,
                detail: e.to_string(),
            }
        }
        Ok(new) => {
            let changes = fleet.apply(&new);
            let restart = needs_restart(running, &new);
            let mut detail = changes.to_string();
            if !restart.is_empty() {
                detail.push_str(&format!(
                    "; not applied, needs a restart: {}",
                    restart.join(", ")
                ));
                tracing::warn!(keys = %restart.join(", "), "config reload: these changes need a restart");
            }
            tracing::info!(changes = %detail, "config reloaded");
            Reload {
                at,
                applied: true,
                detail,
            }
        }
    };
    fleet.hub().shared().reload.set(reload);
}

/// The listener settings `new` changes, which a reload cannot apply.
fn needs_restart(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if running.listen != new.listen {
        keys.push("listen");
    }
    if running.agent_listen != new.agent_listen {
        keys.push("agent_listen");
    }
    if running.max_connections != new.max_connections {
        keys.push("max_connections");
    }
    if running.max_connections_per_client != new.max_connections_per_client {
        keys.push("max_connections_per_client");
    }
    if running.check_from != new.check_from {
        keys.push("check_from");
    }
    if running.header_read_timeout != new.header_read_timeout {
        keys.push("header_read_timeout");
    }
    if running.idle_timeout != new.idle_timeout {
        keys.push("idle_timeout");
    }
    if running.web != new.web {
        keys.push("web");
    }
    keys
}
