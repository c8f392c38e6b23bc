//! The file as written (`Raw*`, every key optional) and its resolution into the validated
//! types: defaults, credential files read, TLS and `[web]` settings checked.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Option<String>,
    #[serde(default, with = "serde_humantime::option")]
    pub(super) interval: Option<Duration>,
    #[serde(default, with = "serde_humantime::option")]
    pub(super) timeout: Option<Duration>,
    #[serde(default, with = "serde_humantime::option")]
    pub(super) max_sample_age: Option<Duration>,
    pub(super) policies_dir: Option<PathBuf>,
    pub(super) state_dir: Option<PathBuf>,
    pub(super) agent_listen: Option<String>,
    pub(super) maintenance_file: Option<PathBuf>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_client: Option<usize>,
    #[serde(default)]
    pub(super) check_from: Vec<String>,
    #[serde(default, with = "serde_humantime::option")]
    pub(super) header_read_timeout: Option<Duration>,
    #[serde(default, with = "serde_humantime::option")]
    pub(super) idle_timeout: Option<Duration>,
    pub(super) web: Option<RawWeb>,
    pub(super) coordination: Option<super::coordination::RawCoordination>,
    #[serde(default, rename = "instance")]
    pub(super) instances: Vec<RawInstance>,
    #[serde(default, rename = "pool")]
    pub(super) pools: Vec<RawPool>,
}

/// `[[pool]]`: replicas that serve one read pool together.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub(super) name: String,
    pub(super) instances: Vec<String>,
    pub(super) min_serving: Option<usize>,
}

/// `[web]`: the Prometheus exporters' web-config keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    pub(super) tls_cert_file: Option<PathBuf>,
    pub(super) tls_key_file: Option<PathBuf>,
    pub(super) tls_client_ca_file: Option<PathBuf>,
    pub(super) tls_client_auth: Option<String>,
    #[serde(default)]
    pub(super) basic_auth_users: std::collections::BTreeMap<String, String>,
    pub(super) auth_exempt: Option<Vec<String>>,
    #[serde(default)]
    pub(super) allow_from: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInstance {
    pub(super) name: String,
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) socket: Option<PathBuf>,
    pub(super) user: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) defaults_file: Option<PathBuf>,
    pub(super) policy: Option<String>,
    #[serde(default, with = "serde_humantime::option")]
    pub(super) max_lag: Option<Duration>,
    pub(super) max_apply_backlog: Option<u64>,
    #[serde(default, with = "serde_humantime::option")]
    pub(super) max_source_lost: Option<Duration>,
    pub(super) require_writable: Option<bool>,
    pub(super) allow_isolated: Option<bool>,
    #[serde(default, with = "serde_humantime::option")]
    pub(super) recover_lag: Option<Duration>,
    pub(super) recover_for: Option<u32>,
    #[serde(default, with = "serde_humantime::option")]
    pub(super) soft_lag: Option<Duration>,
    pub(super) maintenance_file: Option<PathBuf>,
    pub(super) allow_delay: Option<bool>,
    #[serde(default, with = "serde_humantime::option")]
    pub(super) max_stall: Option<Duration>,
    pub(super) allow_errant: Option<bool>,
    pub(super) available_when_donor: Option<bool>,
    pub(super) available_when_readonly: Option<bool>,
    pub(super) min_cluster_size: Option<u32>,
    pub(super) max_recv_queue: Option<u64>,
    pub(super) max_flow_control_paused: Option<crate::policy::file::Fraction>,
    pub(super) max_applier_queue: Option<u64>,
    pub(super) max_cert_queue: Option<u64>,
    #[serde(default, with = "serde_humantime::option")]
    pub(super) handover_delay: Option<Duration>,
    pub(super) require_semi_sync: Option<bool>,
    #[serde(default, with = "serde_humantime::option")]
    pub(super) max_semi_sync_wait: Option<Duration>,
    pub(super) source: Option<RawSource>,
    pub(super) heartbeat: Option<RawHeartbeat>,
    pub(super) heartbeat_write: Option<bool>,
    pub(super) ssl_mode: Option<String>,
    pub(super) ssl_ca: Option<PathBuf>,
    pub(super) ssl_cert: Option<PathBuf>,
    pub(super) ssl_key: Option<PathBuf>,
    pub(super) writer_group: Option<String>,
    pub(super) writer_preferred: Option<bool>,
}

/// `ssl_mode`, `ssl_ca`, `ssl_cert`, `ssl_key` (an instance's, or its `source`'s).
#[derive(Default, Clone)]
pub(super) struct RawTls {
    pub(super) ssl_mode: Option<String>,
    pub(super) ssl_ca: Option<PathBuf>,
    pub(super) ssl_cert: Option<PathBuf>,
    pub(super) ssl_key: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeartbeat {
    pub(super) table: String,
    pub(super) server_id: Option<u32>,
    pub(super) utc: Option<bool>,
}

/// `source = { host = "…", port = 3306, user = "…", password_file = "…" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) host: String,
    pub(super) port: Option<u16>,
    pub(super) user: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) ssl_mode: Option<String>,
    pub(super) ssl_ca: Option<PathBuf>,
    pub(super) ssl_cert: Option<PathBuf>,
    pub(super) ssl_key: Option<PathBuf>,
}

pub(super) fn display_name(name: &str, index: usize) -> String {
    if name.is_empty() {
        index.to_string()
    } else {
        name.to_string()
    }
}

/// Turns one `[[instance]]` block into an [`InstanceConfig`], reading its credential files.
/// Errors are (key, message).
pub(super) fn resolve_instance(
    ri: RawInstance,
    base: &Path,
    default_maintenance: Option<&Path>,
    secrets: Secrets,
    at: &dyn Fn(&str) -> String,
) -> Result<InstanceConfig, (String, String)> {
    let read = secrets == Secrets::Read;
    let opt_file = match &ri.defaults_file {
        Some(p) if read => {
            let p = base.join(p);
            read_option_file(&p).map_err(|m| (at("defaults_file"), m.to_string()))?
        }
        _ => ClientOptions::default(),
    };
    let password = match (&ri.password_file, &opt_file.password) {
        _ if !read => Secret::default(),
        (Some(_), Some(_)) => {
            return Err((
                at("password_file"),
                "both password_file and defaults_file give a password; keep one".into(),
            ))
        }
        (Some(p), None) => {
            read_password_file(&base.join(p)).map_err(|m| (at("password_file"), m.to_string()))?
        }
        (None, Some(pw)) => Secret::new(pw.clone()),
        (None, None) => Secret::default(),
    };
    let user = ri.user.or(opt_file.user);
    // Without the defaults_file read, its user is unknown: no reason to refuse then.
    let user = if read {
        user
    } else {
        user.or_else(|| Some(String::new()))
    };
    let user = user.ok_or_else(|| {
        (
            at("user"),
            "missing (set user, or user= in defaults_file [client])".to_string(),
        )
    })?;
    let port = ri.port.or(opt_file.port);
    let socket = ri.socket.or(opt_file.socket.map(PathBuf::from));
    let host = ri.host.or(opt_file.host);
    let addr = match (socket, host) {
        (Some(_), Some(_)) => {
            return Err((
                at("socket"),
                "give either socket or host, not both (port may stand beside socket as the \
                 port HAProxy names)"
                    .into(),
            ))
        }
        (Some(socket), None) => Addr::Socket(base.join(socket)),
        (None, host) => Addr::Tcp {
            host: host.unwrap_or_else(|| "127.0.0.1".to_string()),
            port: port.unwrap_or(3306),
        },
    };
    let port = match &addr {
        Addr::Tcp { port, .. } => Some(*port),
        Addr::Socket(_) => port,
    };
    // The instance's own file, or the global one ("{instance}" stands for the name; without it
    // one file takes every instance out).
    let maintenance_file = ri
        .maintenance_file
        .as_ref()
        .map(|p| base.join(p))
        .or_else(|| {
            default_maintenance
                .map(|p| PathBuf::from(p.to_string_lossy().replace("{instance}", &ri.name)))
        });
    let heartbeat = match (ri.heartbeat, ri.heartbeat_write) {
        (None, Some(true)) => {
            return Err((
                at("heartbeat_write"),
                "needs heartbeat = { table = \"db.table\" }".into(),
            ))
        }
        (None, _) => None,
        (Some(h), write) => {
            let valid = |part: &str| {
                !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            };
            match h.table.split_once('.') {
                Some((db, t)) if valid(db) && valid(t) => {}
                _ => {
                    return Err((
                        at("heartbeat.table"),
                        "write it as db.table with letters, digits and _ only".into(),
                    ))
                }
            }
            Some(Heartbeat {
                table: h.table,
                server_id: h.server_id,
                utc: h.utc.unwrap_or(false),
                write: write.unwrap_or(false),
            })
        }
    };
    // The block's own keys win over the option file's, as for the other client options.
    let own_tls = RawTls {
        ssl_mode: ri.ssl_mode.or(opt_file.ssl_mode),
        ssl_ca: ri.ssl_ca.or(opt_file.ssl_ca.map(PathBuf::from)),
        ssl_cert: ri.ssl_cert.or(opt_file.ssl_cert.map(PathBuf::from)),
        ssl_key: ri.ssl_key.or(opt_file.ssl_key.map(PathBuf::from)),
    };
    let tls = resolve_tls(&own_tls, base).map_err(|(k, m)| (at(k), m))?;
    let source = match ri.source {
        None => None,
        Some(rs) => Some(Target {
            // A source without TLS keys of its own is reached like the instance.
            tls: if rs.ssl_mode.is_none()
                && rs.ssl_ca.is_none()
                && rs.ssl_cert.is_none()
                && rs.ssl_key.is_none()
            {
                tls.clone()
            } else {
                let raw = RawTls {
                    ssl_mode: rs.ssl_mode,
                    ssl_ca: rs.ssl_ca,
                    ssl_cert: rs.ssl_cert,
                    ssl_key: rs.ssl_key,
                };
                resolve_tls(&raw, base).map_err(|(k, m)| (at(&format!("source.{k}")), m))?
            },
            addr: Addr::Tcp {
                host: rs.host,
                port: rs.port.unwrap_or(3306),
            },
            user: rs.user.unwrap_or_else(|| user.clone()),
            password: match rs.password_file {
                Some(_) if !read => Secret::default(),
                Some(p) => read_password_file(&base.join(p))
                    .map_err(|m| (at("source.password_file"), m.to_string()))?,
                None => password.clone(),
            },
            heartbeat: None,
        }),
    };
    Ok(InstanceConfig {
        name: ri.name,
        port,
        target: Target {
            addr,
            user,
            password,
            heartbeat,
            tls,
        },
        policy: ri.policy.unwrap_or_else(|| "auto".to_string()),
        thresholds: Thresholds {
            max_lag: ri.max_lag,
            max_apply_backlog: ri.max_apply_backlog,
            max_source_lost: ri.max_source_lost,
            require_writable: ri.require_writable,
            allow_isolated: ri.allow_isolated,
            recover_lag: ri.recover_lag,
            recover_for: ri.recover_for,
            soft_lag: ri.soft_lag,
            allow_delay: ri.allow_delay,
            max_stall: ri.max_stall,
            allow_errant: ri.allow_errant,
            available_when_donor: ri.available_when_donor,
            available_when_readonly: ri.available_when_readonly,
            min_cluster_size: ri.min_cluster_size,
            max_recv_queue: ri.max_recv_queue,
            max_flow_control_paused: ri.max_flow_control_paused,
            max_applier_queue: ri.max_applier_queue,
            max_cert_queue: ri.max_cert_queue,
            handover_delay: ri.handover_delay,
            require_semi_sync: ri.require_semi_sync,
            max_semi_sync_wait: ri.max_semi_sync_wait,
        },
        maintenance_file,
        source,
        writer: match (ri.writer_group, ri.writer_preferred) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err((
                    at("writer_preferred"),
                    "needs writer_group (the group whose writes it takes back)".into(),
                ))
            }
            (Some(group), preferred) if super::coordination::valid_name(&group) => Some(Writer {
                group,
                preferred: preferred.unwrap_or(false),
            }),
            (Some(_), _) => {
                return Err((
                    at("writer_group"),
                    "use letters, digits, '.', '_' and '-' only (it is part of an etcd key)".into(),
                ))
            }
        },
    })
}

/// Validates `[web]`: TLS files that load, bcrypt hashes, CIDRs. Errors carry the key and
/// never a hash.
pub(super) fn resolve_web(
    w: RawWeb,
    base: &Path,
) -> Result<crate::config::web::WebSettings, (&'static str, String)> {
    use crate::config::web::{ClientAuth, TlsSettings};
    let client_auth = match w.tls_client_auth.as_deref() {
        None | Some("none") => ClientAuth::None,
        Some("request") => ClientAuth::Request,
        Some("require") => ClientAuth::Require,
        Some(_) => {
            return Err((
                "tls_client_auth",
                "must be \"none\", \"request\" or \"require\"".into(),
            ))
        }
    };
    let tls = match (w.tls_cert_file, w.tls_key_file) {
        (None, None) => {
            if w.tls_client_ca_file.is_some() || client_auth != ClientAuth::None {
                return Err((
                    "tls_cert_file",
                    "client certificates need TLS: set tls_cert_file and tls_key_file".into(),
                ));
            }
            None
        }
        (Some(_), None) => {
            return Err((
                "tls_key_file",
                "tls_cert_file needs its tls_key_file".into(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                "tls_cert_file",
                "tls_key_file needs its tls_cert_file".into(),
            ))
        }
        (Some(cert), Some(key)) => {
            let settings = TlsSettings {
                cert_file: base.join(cert),
                key_file: base.join(key),
                client_ca_file: w.tls_client_ca_file.map(|p| base.join(p)),
                client_auth,
            };
            crate::config::web::check_file(&settings.cert_file)
                .map_err(|m| ("tls_cert_file", m.to_string()))?;
            check_private(&settings.key_file).map_err(|m| ("tls_key_file", m.to_string()))?;
            if let Some(ca) = &settings.client_ca_file {
                crate::config::web::check_file(ca)
                    .map_err(|m| ("tls_client_ca_file", m.to_string()))?;
            }
            // Loaded once here so that a bad certificate is a config error, not a runtime one.
            crate::config::web::acceptor(&settings)
                .map_err(|m| ("tls_cert_file", m.to_string()))?;
            Some(settings)
        }
    };
    for (user, hash) in &w.basic_auth_users {
        if user.is_empty() || user.contains(':') {
            return Err((
                "basic_auth_users",
                "a user name is not empty and has no ':'".into(),
            ));
        }
        if !crate::config::web::valid_hash(hash) {
            return Err((
                "basic_auth_users",
                format!("{user}: not a bcrypt hash (e.g. from htpasswd -nBC 10 {user})"),
            ));
        }
    }
    let allow_from = parse_cidrs("allow_from", &w.allow_from)?;
    Ok(crate::config::web::WebSettings {
        tls,
        users: w.basic_auth_users,
        auth_exempt: w
            .auth_exempt
            .unwrap_or_else(crate::config::web::default_auth_exempt),
        allow_from,
    })
}

/// Validates TLS settings: a known mode, verification modes with a CA, a client certificate
/// with its key, files that exist (the key private). Errors carry the key.
pub(super) fn resolve_tls(raw: &RawTls, base: &Path) -> Result<Tls, (&'static str, String)> {
    let mode = match &raw.ssl_mode {
        Some(m) => SslMode::parse(m).map_err(|e| ("ssl_mode", e.to_string()))?,
        // Certificates given but no mode: the MySQL client verifies the CA then.
        None if raw.ssl_ca.is_some() => SslMode::VerifyCa,
        None => SslMode::Disabled,
    };
    let file = |key: &'static str,
                p: &Option<PathBuf>|
     -> Result<Option<PathBuf>, (&'static str, String)> {
        match p {
            None => Ok(None),
            Some(p) => {
                let p = base.join(p);
                crate::config::web::check_file(&p).map_err(|m| (key, m.to_string()))?;
                Ok(Some(p))
            }
        }
    };
    let ca = file("ssl_ca", &raw.ssl_ca)?;
    let cert = file("ssl_cert", &raw.ssl_cert)?;
    let key = file("ssl_key", &raw.ssl_key)?;
    if matches!(mode, SslMode::VerifyCa | SslMode::VerifyIdentity) && ca.is_none() {
        return Err(("ssl_ca", "VERIFY_CA and VERIFY_IDENTITY need ssl_ca".into()));
    }
    match (&cert, &key) {
        (Some(_), None) => return Err(("ssl_key", "ssl_cert needs its ssl_key".into())),
        (None, Some(_)) => return Err(("ssl_cert", "ssl_key needs its ssl_cert".into())),
        (Some(_), Some(k)) => check_private(k).map_err(|m| ("ssl_key", m.to_string()))?,
        (None, None) => {}
    }
    if mode == SslMode::Disabled && (ca.is_some() || cert.is_some()) {
        return Err(("ssl_mode", "DISABLED, yet certificates are given".into()));
    }
    Ok(Tls {
        mode,
        ca,
        cert,
        key,
    })
}

/// A list of CIDRs (a bare address is its /32 or /128) for `key`; host bits set are refused.
pub(super) fn parse_cidrs(
    key: &'static str,
    list: &[String],
) -> Result<Vec<ipnet::IpNet>, (&'static str, String)> {
    list.iter()
        .map(|net| {
            let parsed = net
                .parse::<ipnet::IpNet>()
                .or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| (key, format!("{net:?} is not a CIDR (e.g. \"10.0.0.0/8\")")))?;
            // 10.1.2.3/8 is most likely a typo for a host or for 10.0.0.0/8: say which.
            if parsed != parsed.trunc() {
                return Err((
                    key,
                    format!("{net:?} has host bits set; write {}", parsed.trunc()),
                ));
            }
            Ok(parsed)
        })
        .collect()
}
