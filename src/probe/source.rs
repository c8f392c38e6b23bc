//! A replica's source, read once per poll for the checklist and the backup gate:
//! [`SourceWatch`] follows the configured or reported source; [`SourceReads`] shares one
//! connection and one reading among the replicas of one source.

use super::Probe;
use crate::config::{Addr, Target};
use crate::snapshot::sample::{ServerState, SourceSample};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

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
        // Forget sources no poller follows any more (their last user closed the connection
        // when it let go): replicas repointed again and again, or pollers restarted by
        // reloads with other credentials, must not grow the map.
        shared.retain(|_, s| Arc::strong_count(s) > 1);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Addr, Secret, Target};

    fn target(port: u16) -> Target {
        Target {
            addr: Addr::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            user: "u".into(),
            password: Secret::default(),
            heartbeat: None,
            tls: Default::default(),
        }
    }

    #[test]
    fn sources_nobody_follows_are_forgotten() {
        let reads = SourceReads::default();
        let t = Duration::from_secs(1);
        let kept = reads.get(&target(1), t, t);
        for port in 2..50 {
            // Each one let go at once, as a repointed replica lets go of its old source.
            drop(reads.get(&target(port), t, t));
        }
        let again = reads.get(&target(1), t, t);
        assert!(
            Arc::ptr_eq(&kept, &again),
            "a followed source is shared, not replaced"
        );
        let len = reads.shared.lock().unwrap().len();
        assert!(len <= 2, "{len} sources remembered");
    }
}
