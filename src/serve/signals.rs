//! The daemon's signals: SIGTERM and SIGINT stop it, SIGHUP reloads the config (and re-reads
//! the HTTPS certificates), SIGUSR1, SIGUSR2 and SIGQUIT are logged and ignored (their default
//! would end the daemon without a word).

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Starts watching every signal; returns the token SIGTERM/SIGINT cancel and the counter each
/// SIGHUP bumps. Needs a tokio runtime.
pub fn watch() -> (CancellationToken, tokio::sync::watch::Receiver<u64>) {
    ignore_others();
    let (reload_tx, reload_rx) = tokio::sync::watch::channel(0u64);
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the config and the HTTPS certificates");
                    reload_tx.send_modify(|n| *n += 1);
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot watch SIGHUP"),
    }
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        }
        on_signal.cancel();
    });
    (shutdown, reload_rx)
}

/// SIGUSR1, SIGUSR2 and SIGQUIT: logged and ignored.
fn ignore_others() {
    for (kind, name) in [
        (SignalKind::user_defined1(), "SIGUSR1"),
        (SignalKind::user_defined2(), "SIGUSR2"),
        (SignalKind::quit(), "SIGQUIT"),
    ] {
        match signal(kind) {
            Ok(mut s) => {
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        tracing::warn!(
                            signal = name,
                            "signal ignored (SIGTERM or SIGINT stop replguard; SIGHUP reloads the config)"
                        );
                    }
                });
            }
            Err(e) => tracing::warn!(signal = name, error = %e, "cannot watch signal"),
        }
    }
}
