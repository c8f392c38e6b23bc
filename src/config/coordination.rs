//! `[coordination]`: the optional writer lease in etcd, and each instance's `writer_group`.
//! Checked without contacting etcd: durations, `handover_delay` < `lease_ttl`, the endpoint
//! URLs, the TLS and password files.

use super::files::{check_private, read_password_file};
use super::{Secret, Secrets};
use crate::units::serde_humantime;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default `etcd_prefix`.
pub const DEFAULT_PREFIX: &str = "/replguard";
/// Default `lease_ttl`: how long etcd keeps a holder's key after its last keep-alive.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// Default `handover_delay`: HAProxy's `fall x inter + timeout check` of the write port with the
/// recommended profile is 3 s; a margin on top.
pub const DEFAULT_HANDOVER_DELAY: Duration = Duration::from_secs(5);
/// The shortest `lease_ttl` accepted: etcd's own minimum lease is about 5 s on a default
/// election timeout; shorter TTLs are raised by etcd, and a fence computed on the asked TTL
/// would then be wrong in the safe direction only by luck.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
/// The most etcd endpoints listed (a cluster has 3, 5 or 7 members).
pub const MAX_ENDPOINTS: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCoordination {
    #[serde(default)]
    etcd_endpoints: Vec<String>,
    etcd_prefix: Option<String>,
    #[serde(default, with = "serde_humantime::option")]
    lease_ttl: Option<Duration>,
    #[serde(default, with = "serde_humantime::option")]
    handover_delay: Option<Duration>,
    etcd_ca_file: Option<PathBuf>,
    etcd_cert_file: Option<PathBuf>,
    etcd_key_file: Option<PathBuf>,
    etcd_user: Option<String>,
    etcd_password_file: Option<PathBuf>,
    /// How this guard names itself in the lease's value; default: the host name.
    guard_name: Option<String>,
}

/// The validated `[coordination]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Coordination {
    /// `http://host:port` or `https://host:port`, each a member of one etcd cluster.
    pub endpoints: Vec<String>,
    /// Keys live under `<prefix>/<group>/`.
    pub prefix: String,
    pub lease_ttl: Duration,
    /// A new holder answers 200 only this long after it acquired; a holder handing over waits
    /// this long after it stopped answering 200 before it releases.
    pub handover_delay: Duration,
    pub tls: Option<EtcdTls>,
    /// etcd authentication (`etcd_user`, `etcd_password_file`).
    pub auth: Option<(String, Secret)>,
    /// How this guard names itself in the lease's value (`guard_name`, else the host name).
    pub guard: String,
}

/// TLS to etcd: the CA that signs the members' certificates, and a client identity if asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca_file: PathBuf,
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl Coordination {
    /// The etcd key of a writer group's lease.
    pub fn writer_key(&self, group: &str) -> String {
        format!("{}/{group}/writer", self.prefix)
    }

    /// The etcd key a holder records its position in when it hands over; the next holder
    /// applies it before it answers 200, then deletes it.
    pub fn released_key(&self, group: &str) -> String {
        format!("{}/{group}/released", self.prefix)
    }

    /// The etcd key a preferred instance writes to ask for the lease back.
    pub fn handover_key(&self, group: &str) -> String {
        format!("{}/{group}/handover", self.prefix)
    }

    /// How long before the lease can have expired in etcd a holder stops answering 200: a
    /// fifth of the TTL, at least 1 s (clock rate differences, a keep-alive in flight).
    pub fn fence_margin(&self) -> Duration {
        (self.lease_ttl / 5).max(Duration::from_secs(1))
    }
}

/// A name usable in etcd keys and URLs: letters, digits, `.`, `_`, `-`.
pub(super) fn valid_name(name: &str) -> bool {
    name.len() <= 64 && super::is_label(name)
}

/// Resolves `[coordination]`. Errors are (key, message).
pub(super) fn resolve(
    raw: RawCoordination,
    base: &Path,
    secrets: Secrets,
) -> Result<Coordination, (&'static str, String)> {
    if raw.etcd_endpoints.is_empty() {
        return Err((
            "etcd_endpoints",
            "list the etcd members, e.g. [\"http://10.0.0.11:2379\"] (three are recommended)"
                .into(),
        ));
    }
    if raw.etcd_endpoints.len() > MAX_ENDPOINTS {
        return Err((
            "etcd_endpoints",
            format!("at most {MAX_ENDPOINTS} endpoints"),
        ));
    }
    let tls_wanted = raw.etcd_ca_file.is_some();
    for e in &raw.etcd_endpoints {
        let Ok(url) = e.parse::<hyper::Uri>() else {
            return Err((
                "etcd_endpoints",
                format!("{e:?} is not a URL like http://10.0.0.11:2379"),
            ));
        };
        let scheme_ok = match url.scheme_str() {
            Some("http") => !tls_wanted,
            Some("https") => tls_wanted,
            _ => false,
        };
        let bare = url
            .path_and_query()
            .is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/");
        if !scheme_ok || url.host().is_none() || url.port_u16().is_none() || !bare {
            return Err((
                "etcd_endpoints",
                format!(
                    "{e:?}: want {}://host:port ({})",
                    if tls_wanted { "https" } else { "http" },
                    if tls_wanted {
                        "etcd_ca_file is set: every endpoint uses TLS"
                    } else {
                        "https needs etcd_ca_file"
                    }
                ),
            ));
        }
    }
    let prefix = raw.etcd_prefix.unwrap_or_else(|| DEFAULT_PREFIX.into());
    if !prefix.starts_with('/')
        || prefix.len() > 128
        || prefix.ends_with('/')
        || !prefix[1..].split('/').all(valid_name)
    {
        return Err((
            "etcd_prefix",
            "an absolute key path like /replguard (letters, digits, '.', '_', '-' between \
             slashes, no trailing slash)"
                .into(),
        ));
    }
    let lease_ttl = raw.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL);
    if lease_ttl < MIN_LEASE_TTL || lease_ttl > Duration::from_secs(3600) {
        return Err(("lease_ttl", "must be between 2s and 1h".into()));
    }
    if lease_ttl.subsec_nanos() != 0 {
        return Err((
            "lease_ttl",
            "must be whole seconds (etcd leases count seconds)".into(),
        ));
    }
    let handover_delay = raw.handover_delay.unwrap_or(DEFAULT_HANDOVER_DELAY);
    if handover_delay >= lease_ttl {
        return Err((
            "handover_delay",
            format!(
                "must be shorter than lease_ttl ({}): a holder cut off from etcd stops within \
                 the TTL, and a successor waits handover_delay",
                crate::units::fmt_duration(lease_ttl)
            ),
        ));
    }
    let read = secrets == Secrets::Read;
    let tls = match (raw.etcd_ca_file, raw.etcd_cert_file, raw.etcd_key_file) {
        (None, None, None) => None,
        (None, _, _) => {
            return Err((
                "etcd_cert_file",
                "a client certificate needs etcd_ca_file".into(),
            ))
        }
        (Some(ca), cert, key) => {
            let ca = base.join(ca);
            super::web::check_file(&ca).map_err(|e| ("etcd_ca_file", e.to_string()))?;
            let identity = match (cert, key) {
                (None, None) => None,
                (Some(c), Some(k)) => {
                    let (c, k) = (base.join(c), base.join(k));
                    super::web::check_file(&c).map_err(|e| ("etcd_cert_file", e.to_string()))?;
                    if read {
                        check_private(&k).map_err(|e| ("etcd_key_file", e.to_string()))?;
                    }
                    Some((c, k))
                }
                _ => {
                    return Err((
                        "etcd_key_file",
                        "give etcd_cert_file and etcd_key_file together".into(),
                    ))
                }
            };
            Some(EtcdTls {
                ca_file: ca,
                identity,
            })
        }
    };
    let auth = match (raw.etcd_user, raw.etcd_password_file) {
        (None, None) => None,
        (Some(user), Some(p)) => {
            let password = if read {
                read_password_file(&base.join(p))
                    .map_err(|e| ("etcd_password_file", e.to_string()))?
            } else {
                Secret::default()
            };
            Some((user, password))
        }
        (Some(_), None) => {
            return Err((
                "etcd_password_file",
                "etcd_user needs etcd_password_file".into(),
            ))
        }
        (None, Some(_)) => return Err(("etcd_user", "etcd_password_file needs etcd_user".into())),
    };
    let guard = match raw.guard_name {
        Some(g) if valid_name(&g) => g,
        Some(_) => {
            return Err((
                "guard_name",
                "use letters, digits, '.', '_' and '-' only".into(),
            ))
        }
        None => host_name(),
    };
    Ok(Coordination {
        endpoints: raw.etcd_endpoints,
        prefix,
        lease_ttl,
        handover_delay,
        tls,
        auth,
        guard,
    })
}

/// This machine's host name (`/proc/sys/kernel/hostname`), or `replguard` where unknown.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| valid_name(h))
        .unwrap_or_else(|| "replguard".to_string())
}
