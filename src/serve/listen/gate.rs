//! Who may use the HTTP and agent listeners: the `[web]` rules ([`crate::config::web`]) applied to
//! connections and requests, with refusals counted in the metrics.
//!
//! Nothing here touches MySQL. bcrypt is slow on purpose: verifications run off the async
//! threads, at most two at once, and a verified `Authorization` header is remembered (a few of
//! them), so a scraper costs one verification, and a flood of wrong passwords costs at most two
//! threads.

use crate::config::web::WebSettings;
use crate::hub::metrics::Metrics;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// How many verified `Authorization` headers are remembered.
const VERIFIED: usize = 16;
/// bcrypt verifications running at once.
const VERIFYING: usize = 2;
/// How long a request waits for a verification slot.
const VERIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The access rules of one daemon, shared by its listeners.
pub struct Gate {
    settings: WebSettings,
    metrics: Arc<Metrics>,
    /// Recently verified `Authorization` header values, newest last.
    verified: Mutex<VecDeque<String>>,
    verifying: Arc<tokio::sync::Semaphore>,
    /// A hash of nothing, at the users' cost: an unknown user is verified against it, so that
    /// timing does not tell which user names exist.
    dummy: Option<String>,
}

/// Why a request is not served (an address not in `allow_from` is refused per connection,
/// before any request: see [`Gate::allows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Missing or wrong credentials (401).
    Credentials,
}

impl Gate {
    pub fn new(settings: WebSettings, metrics: Arc<Metrics>) -> Gate {
        let dummy = settings.users.values().next().and_then(|h| {
            let cost = h.parse::<bcrypt::HashParts>().ok()?.get_cost();
            bcrypt::hash("", cost).ok()
        });
        Gate {
            settings,
            metrics,
            verified: Mutex::new(VecDeque::new()),
            verifying: Arc::new(tokio::sync::Semaphore::new(VERIFYING)),
            dummy,
        }
    }

    /// Counts an HTTPS connection whose TLS handshake failed (no or a bad client certificate).
    pub fn count_tls_refusal(&self) {
        self.metrics.count_refused("http", "tls");
    }

    /// Whether `ip` may connect at all; counts a refusal on `listener`.
    pub fn allows(&self, ip: IpAddr, listener: &str) -> bool {
        // A listener on `[::]` sees IPv4 clients as `::ffff:a.b.c.d`: judge them as IPv4.
        let ip = ip.to_canonical();
        let allowed = self.settings.allow_from.is_empty()
            || self.settings.allow_from.iter().any(|net| net.contains(&ip));
        if !allowed {
            self.metrics.count_refused(listener, "allow_from");
        }
        allowed
    }

    /// Whether a request for `path` with `authorization` (the header's value) is served.
    pub async fn authorize(&self, path: &str, authorization: Option<&[u8]>) -> Result<(), Refusal> {
        if self.open_for(path) {
            return Ok(());
        }
        let ok = match authorization.and_then(|h| std::str::from_utf8(h).ok()) {
            Some(header) => self.verify(header).await,
            None => false,
        };
        if ok {
            Ok(())
        } else {
            self.metrics.count_refused("http", "auth");
            Err(Refusal::Credentials)
        }
    }

    /// Whether a request for `path` is served without credentials (no users configured, or
    /// the path exempt): then [`Gate::authorize`] would pass at once, and need not be asked.
    pub fn open_for(&self, path: &str) -> bool {
        self.settings.users.is_empty() || self.exempt(path)
    }

    fn exempt(&self, path: &str) -> bool {
        self.settings.auth_exempt.iter().any(|e| {
            if e == "checks" {
                crate::serve::http::paths::is_check_path(path)
            } else {
                e == path
            }
        })
    }

    async fn verify(&self, header: &str) -> bool {
        if self.lock().iter().any(|h| h == header) {
            return true;
        }
        let Some((user, password)) = basic_credentials(header) else {
            return false;
        };
        let (hash, known) = match self.settings.users.get(&user) {
            Some(h) => (h.clone(), true),
            None => match &self.dummy {
                Some(d) => (d.clone(), false),
                None => return false,
            },
        };
        // At most VERIFYING at once; a request waits a moment for a slot, then is refused: a
        // flood of wrong passwords costs two threads and cannot queue without bound.
        let slot = tokio::time::timeout(VERIFY_WAIT, self.verifying.clone().acquire_owned()).await;
        let Ok(Ok(slot)) = slot else {
            return false;
        };
        let ok = tokio::task::spawn_blocking(move || {
            let ok = bcrypt::verify(password, &hash).unwrap_or(false) && known;
            drop(slot);
            ok
        })
        .await
        .unwrap_or(false);
        if ok {
            let mut verified = self.lock();
            if verified.len() == VERIFIED {
                verified.pop_front();
            }
            verified.push_back(header.to_string());
        }
        ok
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        // Held for a scan or a push, never across an .await; a poisoned one is still valid.
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `Basic base64(user:password)` → (user, password).
fn basic_credentials(header: &str) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::web::default_auth_exempt;

    fn gate(users: &[(&str, &str)], exempt: Vec<String>, allow: &[&str]) -> Gate {
        Gate::new(
            WebSettings {
                tls: None,
                users: users
                    .iter()
                    .map(|(u, p)| (u.to_string(), bcrypt::hash(p, 4).unwrap()))
                    .collect(),
                auth_exempt: exempt,
                allow_from: allow.iter().map(|n| n.parse().unwrap()).collect(),
            },
            Arc::new(Metrics::default()),
        )
    }

    fn basic(user: &str, password: &str) -> String {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[tokio::test]
    async fn basic_auth_with_exempt_checks() {
        let g = gate(&[("monitor", "s3cret")], default_auth_exempt(), &[]);
        let good = basic("monitor", "s3cret");
        for (path, header, ok) in [
            ("/status", None, false),
            ("/status", Some(basic("monitor", "wrong")), false),
            ("/status", Some(basic("nobody", "s3cret")), false),
            ("/status", Some("Bearer x".to_string()), false),
            ("/status", Some(good.clone()), true),
            ("/status", Some(good.clone()), true), // remembered
            ("/metrics", None, false),
            ("/healthz", None, true),
            ("/mysqlchk/", None, true),
            ("/replica", None, true),
            ("/check/backup", None, true),
        ] {
            let got = g
                .authorize(path, header.as_deref().map(str::as_bytes))
                .await;
            assert_eq!(got.is_ok(), ok, "{path} {header:?}");
        }
        // No users: everything open.
        let open = gate(&[], default_auth_exempt(), &[]);
        assert!(open.authorize("/status", None).await.is_ok());
    }

    #[test]
    fn allow_from_networks() {
        let g = gate(&[], vec![], &["127.0.0.0/8", "10.0.0.0/8", "::1/128"]);
        assert!(g.allows("127.0.0.1".parse().unwrap(), "http"));
        assert!(g.allows("10.1.2.3".parse().unwrap(), "http"));
        assert!(g.allows("::1".parse().unwrap(), "http"));
        assert!(!g.allows("192.168.1.1".parse().unwrap(), "agent"));
        // IPv4 clients of a listener on [::] arrive v4-mapped.
        assert!(g.allows("::ffff:10.1.2.3".parse().unwrap(), "http"));
        assert!(!g.allows("::ffff:192.168.1.1".parse().unwrap(), "http"));
        assert!(gate(&[], vec![], &[]).allows("192.168.1.1".parse().unwrap(), "http"));
    }
}
