//! The configuration file: parse, resolve credentials and policies, validate.
//!
//! Everything that can be wrong with a configuration is found here, before anything binds or
//! connects, and reported as one [`ConfigError`] naming the file and the key. Error messages never
//! quote a value from a credentials file or a config line, so a password cannot leak through them.

pub mod coordination;
pub mod web;

mod files;
mod raw;

use files::*;
pub use files::{FileError, OptionFileError};
use raw::*;

use crate::policy::{line_of, Policy, PolicySet, Thresholds};
use crate::units::serde_humantime;
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Defaults, chosen for HAProxy's classic `inter 5000 rise 3 fall 3` (any check sees a sample
/// at most `max_sample_age` old, well inside one check interval).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:31337";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
pub const DEFAULT_MAX_SAMPLE_AGE: Duration = Duration::from_secs(3);
/// Bounds of `interval`: below, a poll storm on MySQL; above, a guard that hardly looks.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// The shortest `timeout`: a connect or query needs at least this.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// HTTP bounds: a few seconds for headers and idleness (HAProxy sends a check at once and
/// closes), and a connection cap well below the usual descriptor limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// Default `max_connections_per_client`: a browser opens six, HAProxy one per check.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 32;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether loading a config reads its credentials files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Secrets {
    Read,
    /// Leave credentials empty (and a missing `user` too): `replguard maintenance`.
    Skip,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, for messages.
    pub path: PathBuf,
    /// HTTP address for checks.
    pub listen: SocketAddr,
    /// Time between the starts of two polls of one instance.
    pub interval: Duration,
    /// Bound on each connect and each query of a poll.
    pub timeout: Duration,
    /// A sample older than this makes every policy fail ("stale sample").
    pub max_sample_age: Duration,
    /// The MySQL servers to watch, in file order.
    pub instances: Vec<InstanceConfig>,
    /// Built-in policies plus those from `policies_dir`.
    pub policies: PolicySet,
    /// Where each instance's memory is kept across replguard restarts (created if missing);
    /// `None`: memory lives in RAM only.
    pub state_dir: Option<PathBuf>,
    /// TCP address of the HAProxy agent-check listener; `None`: no agent.
    pub agent_listen: Option<SocketAddr>,
    /// HTTP connections served at once (`max_connections`).
    pub max_connections: usize,
    /// Connections one client address may hold on each listener
    /// (`max_connections_per_client`); addresses in `check_from` are held only to the cap.
    pub max_connections_per_client: usize,
    /// Where HAProxy checks from (`check_from`): no per-client cap, displaced last.
    pub check_from: Vec<ipnet::IpNet>,
    /// How long a client may take to send a request's headers (`header_read_timeout`).
    pub header_read_timeout: Duration,
    /// How long an HTTP connection may sit with nothing moving (`idle_timeout`).
    pub idle_timeout: Duration,
    /// Who may use the listeners (`[web]`).
    pub web: crate::config::web::WebSettings,
    /// The writer lease in etcd (`[coordination]`); `None`: each guard judges alone.
    pub coordination: Option<coordination::Coordination>,
    /// Read pools (`[[pool]]`) that never empty: each member in at most one.
    pub pools: Vec<PoolConfig>,
}

/// `[[pool]]`: replicas that serve one read pool. While fewer than `min_serving` members pass
/// their policy, the least-lagged members that fail only on lag are admitted as degraded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Shown in check lines, `/status` and metric labels.
    pub name: String,
    /// Member instances' names, in config order (which breaks ties of equal lag).
    pub instances: Vec<String>,
    /// Members the pool keeps serving (default 2, as Vitess' `min_number_serving_vttablets`).
    pub min_serving: usize,
}

/// `min_serving` when a pool does not set it.
pub const DEFAULT_MIN_SERVING: usize = 2;

/// One watched server.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceConfig {
    /// Unique name, used in `?instance=` and logs.
    pub name: String,
    /// The port HAProxy names in `?port=`; the TCP port, or the one given beside `socket`.
    pub port: Option<u16>,
    /// Where and as whom to connect.
    pub target: Target,
    /// The policy `/mysqlchk/` and `/` evaluate for this instance.
    pub policy: String,
    /// Per-instance threshold overrides (applied over the policy file's values).
    pub thresholds: Thresholds,
    /// The replica's source as configured (`source = {..}`); `None`: use the host and port the
    /// replica reports, with this instance's credentials.
    pub source: Option<Target>,
    /// A file whose presence takes the instance out of every policy (its first line is the
    /// reason); `None`: no maintenance switch for this instance.
    pub maintenance_file: Option<PathBuf>,
    /// The writer group whose lease its writer policies need (`writer_group`).
    pub writer: Option<Writer>,
}

/// An instance's place in a writer group (`writer_group`, `writer_preferred`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    /// The group: the instances, on any guard, that may take its writes.
    pub group: String,
    /// The group's primary: gets the writes back by handover once caught up.
    pub preferred: bool,
}

impl Config {
    /// The judge of this config's verdicts: its policies and `max_sample_age`.
    pub fn judge(&self) -> crate::policy::Judge {
        crate::policy::Judge::new(self.policies.clone(), self.max_sample_age)
    }
}

impl InstanceConfig {
    /// Both are configured with the same `source` address (neither reports it otherwise):
    /// replicas of one source, even while one cannot be read.
    pub fn same_configured_source(&self, other: &InstanceConfig) -> bool {
        match (&self.source, &other.source) {
            (Some(a), Some(b)) => a.addr == b.addr,
            _ => false,
        }
    }

    /// What the [`Judge`](crate::policy::Judge) judges this instance as: its own policy and
    /// thresholds.
    pub fn subject(&self) -> crate::policy::Subject<'_> {
        crate::policy::Subject {
            policy: &self.policy,
            thresholds: &self.thresholds,
            judge_lease: true,
            siblings: &[],
        }
    }
}

/// Connection parameters for the probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub addr: Addr,
    pub user: String,
    pub password: Secret,
    /// A pt-heartbeat table to read lag from (and, with `write`, to update on a writer).
    pub heartbeat: Option<Heartbeat>,
    /// TLS to the server (`ssl_mode`, `ssl_ca`, `ssl_cert`, `ssl_key`).
    pub tls: Tls,
}

/// How the guard secures its connection to MySQL, with the MySQL client's names and meanings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Tls {
    pub mode: SslMode,
    /// CA certificate(s) (PEM) that sign the server's certificate.
    pub ca: Option<PathBuf>,
    /// Client certificate and its key (PEM), for users that `REQUIRE X509`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// `ssl_mode`, as the MySQL client spells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SslMode {
    /// No TLS (the default: the guard's behaviour before TLS existed).
    #[default]
    Disabled,
    /// TLS when the server offers it, unverified; plain otherwise.
    Preferred,
    /// TLS, unverified.
    Required,
    /// TLS, the certificate signed by `ssl_ca`; any host name.
    VerifyCa,
    /// TLS, signed by `ssl_ca` and issued for the host connected to.
    VerifyIdentity,
}

impl SslMode {
    fn parse(text: &str) -> Result<SslMode, UnknownSslMode> {
        Ok(match text.to_ascii_uppercase().as_str() {
            "DISABLED" => SslMode::Disabled,
            "PREFERRED" => SslMode::Preferred,
            "REQUIRED" => SslMode::Required,
            "VERIFY_CA" => SslMode::VerifyCa,
            "VERIFY_IDENTITY" => SslMode::VerifyIdentity,
            _ => return Err(UnknownSslMode),
        })
    }
}

/// `heartbeat = { table = "percona.heartbeat", server_id = 1, utc = false }` plus
/// `heartbeat_write = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// `db.table`, validated to plain identifiers (it is spliced into SQL).
    pub table: String,
    /// Whose rows count: the source's server_id; `None`: every row but this server's own.
    pub server_id: Option<u32>,
    /// pt-heartbeat `--utc`: timestamps are UTC rather than the server's local time.
    pub utc: bool,
    /// Update this server's row every poll while it is writable (the one feature that writes).
    pub write: bool,
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Tcp { host: String, port: u16 },
    Socket(PathBuf),
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp { host, port } => write!(f, "{host}:{port}"),
            Addr::Socket(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A password. Its `Debug` never shows it, so a stray `{:?}` cannot log it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// An `ssl_mode` that is none of MySQL's five.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY")]
pub struct UnknownSslMode;

/// Why a configuration was refused: the file, where in it, and what is wrong.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// Dotted key path, e.g. `instance[db201].password_file`; empty when not about one key.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ": line {line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every key a config file may hold, at any level: the only text of a refused file that an
/// error message names.
const KNOWN_KEYS: &[&str] = &[
    "listen",
    "interval",
    "timeout",
    "max_sample_age",
    "policies_dir",
    "state_dir",
    "agent_listen",
    "maintenance_file",
    "instance",
    "name",
    "host",
    "port",
    "socket",
    "user",
    "password_file",
    "defaults_file",
    "policy",
    "max_lag",
    "max_apply_backlog",
    "max_source_lost",
    "require_writable",
    "allow_isolated",
    "recover_lag",
    "recover_for",
    "soft_lag",
    "allow_delay",
    "max_stall",
    "allow_errant",
    "available_when_donor",
    "available_when_readonly",
    "min_cluster_size",
    "max_recv_queue",
    "max_flow_control_paused",
    "max_applier_queue",
    "max_cert_queue",
    "handover_delay",
    "require_semi_sync",
    "max_semi_sync_wait",
    "source",
    "heartbeat",
    "heartbeat_write",
    "table",
    "server_id",
    "utc",
    "max_connections",
    "max_connections_per_client",
    "check_from",
    "header_read_timeout",
    "idle_timeout",
    "ssl_mode",
    "ssl_ca",
    "ssl_cert",
    "ssl_key",
    "web",
    "tls_cert_file",
    "tls_key_file",
    "tls_client_ca_file",
    "tls_client_auth",
    "basic_auth_users",
    "auth_exempt",
    "allow_from",
    "coordination",
    "etcd_endpoints",
    "etcd_prefix",
    "lease_ttl",
    "etcd_ca_file",
    "etcd_cert_file",
    "etcd_key_file",
    "etcd_user",
    "etcd_password_file",
    "guard_name",
    "writer_group",
    "writer_preferred",
    "pool",
    "instances",
    "min_serving",
];

impl Config {
    /// Reads and validates the configuration at `path`, with everything it refers to.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, Secrets::Read)
    }

    /// [`Config::load`] without reading any credentials file (password files, `defaults_file`,
    /// a `source`'s password file): for `replguard maintenance`, which an operator without
    /// access to the database password may run. Every other check is the same; the
    /// credentials are left empty.
    pub fn load_without_secrets(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, Secrets::Skip)
    }

    fn load_with(path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
        let refuse = |message: String| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: String::new(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| refuse(format!("cannot read: {e}")))?;
        if !meta.is_file() {
            return Err(refuse("not a regular file".to_string()));
        }
        if meta.len() > MAX_CONFIG_FILE {
            return Err(refuse(format!(
                "larger than {MAX_CONFIG_FILE} bytes: not a replguard config"
            )));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| refuse(format!("cannot read: {e}")))?;
        Config::parse_with(path, &text, secrets)
    }

    /// Checks `text` against the file format only (TOML, known keys, value types), touching
    /// no file: the pure first step of [`Config::parse`], and what the fuzzer drives.
    pub fn check_syntax(text: &str) -> Result<(), toml::de::Error> {
        toml::from_str::<RawConfig>(text).map(|_| ())
    }

    /// Validates configuration `text` as if read from `path` (relative paths resolve against
    /// the directory of `path`).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_with(path, text, Secrets::Read)
    }

    fn parse_with(path: &Path, text: &str, secrets: Secrets) -> Result<Config, ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: key.to_string(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            ConfigError {
                file: path.to_path_buf(),
                line,
                // Name the key from the line's text before '=', never quoting the value, and
                // only when it is a key replguard knows: the text of a file that is not a
                // config at all (a password file passed by mistake) must not be echoed.
                key: line
                    .and_then(|l| text.lines().nth(l - 1))
                    .and_then(|l| l.split_once('='))
                    .map(|(k, _)| k.trim())
                    .filter(|k| KNOWN_KEYS.contains(k))
                    .map(str::to_string)
                    .unwrap_or_default(),
                message: e.message().trim().to_string(),
            }
        })?;
        let base = path.parent().unwrap_or(Path::new("."));

        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            err(
                "listen",
                format!("{listen_text:?} is not an IP:port address (e.g. \"127.0.0.1:31337\")"),
            )
        })?;
        let interval = raw.interval.unwrap_or(DEFAULT_INTERVAL);
        let timeout = raw.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let max_sample_age = raw.max_sample_age.unwrap_or(DEFAULT_MAX_SAMPLE_AGE);
        // Bounded both ways: a tiny interval is a poll storm on MySQL, a huge one never polls.
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
            return Err(err(
                "interval",
                format!(
                    "{} is outside {}..{}",
                    crate::units::fmt_duration(interval),
                    crate::units::fmt_duration(MIN_INTERVAL),
                    crate::units::fmt_duration(MAX_INTERVAL)
                ),
            ));
        }
        if timeout < MIN_TIMEOUT {
            return Err(err(
                "timeout",
                format!(
                    "{} is shorter than {}",
                    crate::units::fmt_duration(timeout),
                    crate::units::fmt_duration(MIN_TIMEOUT)
                ),
            ));
        }
        if timeout >= interval {
            return Err(err(
                "timeout",
                format!(
                    "{} must be shorter than interval ({}) so a slow server cannot stack polls",
                    crate::units::fmt_duration(timeout),
                    crate::units::fmt_duration(interval)
                ),
            ));
        }
        if max_sample_age <= interval {
            return Err(err(
                "max_sample_age",
                format!(
                    "{} must be longer than interval ({}) or every sample goes stale between polls",
                    crate::units::fmt_duration(max_sample_age),
                    crate::units::fmt_duration(interval)
                ),
            ));
        }

        let mut policies = PolicySet::builtin();
        if let Some(dir) = &raw.policies_dir {
            load_policy_dir(&base.join(dir), &mut policies).map_err(|mut e| {
                if e.file.as_os_str().is_empty() {
                    e.file = path.to_path_buf();
                }
                e
            })?;
        }
        policies.validate().map_err(|(name, e)| ConfigError {
            file: raw
                .policies_dir
                .as_ref()
                .map(|d| base.join(d).join(format!("{name}.toml")))
                .unwrap_or_else(|| path.to_path_buf()),
            line: e.line,
            key: String::new(),
            message: e.message,
        })?;

        if raw.instances.is_empty() {
            return Err(err(
                "instance",
                "no [[instance]] configured: name at least one server to watch".into(),
            ));
        }
        let default_maintenance = raw.maintenance_file.as_ref().map(|p| base.join(p));
        let agent_listen = match &raw.agent_listen {
            None => None,
            Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| {
                err(
                    "agent_listen",
                    format!("{a:?} is not an IP:port address (e.g. \"127.0.0.1:31338\")"),
                )
            })?),
        };
        if agent_listen == Some(listen) {
            return Err(err(
                "agent_listen",
                format!("{listen} is also `listen`: the two listeners need their own ports"),
            ));
        }
        let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if !(1..=65536).contains(&max_connections) {
            return Err(err("max_connections", "must be between 1 and 65536".into()));
        }
        let max_connections_per_client = raw
            .max_connections_per_client
            .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_CLIENT);
        if !(1..=65536).contains(&max_connections_per_client) {
            return Err(err(
                "max_connections_per_client",
                "must be between 1 and 65536".into(),
            ));
        }
        let check_from =
            raw::parse_cidrs("check_from", &raw.check_from).map_err(|(k, m)| err(k, m))?;
        let bounded = |key: &str, value: Option<Duration>, default: Duration| {
            let d = value.unwrap_or(default);
            if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
                return Err(err(
                    key,
                    format!("{} is outside 100ms..3600s", crate::units::fmt_duration(d)),
                ));
            }
            Ok(d)
        };
        let header_read_timeout = bounded(
            "header_read_timeout",
            raw.header_read_timeout,
            DEFAULT_HEADER_READ_TIMEOUT,
        )?;
        let idle_timeout = bounded("idle_timeout", raw.idle_timeout, DEFAULT_IDLE_TIMEOUT)?;
        let web = match raw.web {
            None => crate::config::web::WebSettings {
                auth_exempt: crate::config::web::default_auth_exempt(),
                ..Default::default()
            },
            Some(w) => resolve_web(w, base).map_err(|(k, m)| err(&format!("web.{k}"), m))?,
        };
        let coordination = match raw.coordination {
            Some(c) => Some(
                coordination::resolve(c, base, secrets)
                    .map_err(|(k, m)| err(&format!("coordination.{k}"), m))?,
            ),
            None => None,
        };
        let mut names = HashSet::new();
        let mut ports = HashSet::new();
        let mut preferred = std::collections::HashMap::new();
        let mut instances = Vec::new();
        for (i, ri) in raw.instances.into_iter().enumerate() {
            let shown = display_name(&ri.name, i);
            let at = |key: &str| format!("instance[{shown}].{key}");
            if !is_label(&ri.name) {
                return Err(err(
                    &at("name"),
                    "use letters, digits, '.', '_' and '-' only (it appears in URLs)".into(),
                ));
            }
            if !names.insert(ri.name.clone()) {
                return Err(err(&at("name"), "duplicate instance name".into()));
            }
            let inst = resolve_instance(ri, base, default_maintenance.as_deref(), secrets, &at)
                .map_err(|(key, message)| ConfigError {
                    file: path.to_path_buf(),
                    line: None,
                    key,
                    message,
                })?;
            if let Some(port) = inst.port {
                if !ports.insert(port) {
                    return Err(err(
                        &at("port"),
                        format!(
                            "port {port} is used by another instance; ?port= would be ambiguous"
                        ),
                    ));
                }
            }
            if policies.get(&inst.policy).is_none() {
                let known: Vec<&str> = policies.names().collect();
                return Err(err(
                    &at("policy"),
                    format!(
                        "no policy named {:?} (known: {})",
                        inst.policy,
                        known.join(", ")
                    ),
                ));
            }
            if let Some(w) = &inst.writer {
                if coordination.is_none() {
                    return Err(err(
                        &at("writer_group"),
                        "needs a [coordination] section (the etcd that holds the lease)".into(),
                    ));
                }
                if w.preferred {
                    if let Some(other) = preferred.insert(w.group.clone(), inst.name.clone()) {
                        return Err(err(
                            &at("writer_preferred"),
                            format!(
                                "instance {other} is already the preferred writer of {}",
                                w.group
                            ),
                        ));
                    }
                }
            }
            instances.push(inst);
        }

        let pools = resolve_pools(raw.pools, &names).map_err(|(k, m)| err(&k, m))?;

        let state_dir = match raw.state_dir {
            Some(dir) => {
                let dir = base.join(dir);
                check_state_dir(&dir).map_err(|e| err("state_dir", e.to_string()))?;
                Some(dir)
            }
            None => None,
        };

        Ok(Config {
            state_dir,
            agent_listen,
            max_connections,
            max_connections_per_client,
            check_from,
            header_read_timeout,
            idle_timeout,
            web,
            coordination,
            pools,
            path: path.to_path_buf(),
            listen,
            interval,
            timeout,
            max_sample_age,
            instances,
            policies,
        })
    }

    /// The instance named `name`, or with no name given the only one configured.
    pub fn named_or_only(&self, name: Option<&str>) -> Option<&InstanceConfig> {
        match name {
            Some(name) => self.instance(name),
            None => match self.instances.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        }
    }

    /// The instance with this name.
    pub fn instance(&self, name: &str) -> Option<&InstanceConfig> {
        self.instances.iter().find(|i| i.name == name)
    }
}

/// A name that appears in URLs and metric labels (instances, pools, writer groups): not empty;
/// letters, digits, '.', '_' and '-' only.
pub(crate) fn is_label(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Validates `[[pool]]` sections: names as instance names are, members that exist, each
/// instance in one pool at most, `min_serving` between 1 and the number of members.
fn resolve_pools(
    raw: Vec<raw::RawPool>,
    instances: &HashSet<String>,
) -> Result<Vec<PoolConfig>, (String, String)> {
    let mut names = HashSet::new();
    let mut member_of = std::collections::HashMap::new();
    let mut pools = Vec::with_capacity(raw.len());
    for (i, rp) in raw.into_iter().enumerate() {
        let shown = display_name(&rp.name, i);
        let at = |key: &str| format!("pool[{shown}].{key}");
        if !is_label(&rp.name) {
            return Err((
                at("name"),
                "use letters, digits, '.', '_' and '-' only (it appears in metric labels)".into(),
            ));
        }
        if !names.insert(rp.name.clone()) {
            return Err((at("name"), "duplicate pool name".into()));
        }
        if rp.instances.is_empty() {
            return Err((at("instances"), "name the pool's instances".into()));
        }
        for m in &rp.instances {
            if !instances.contains(m) {
                return Err((at("instances"), format!("no instance named {m:?}")));
            }
            if let Some(other) = member_of.insert(m.clone(), rp.name.clone()) {
                return Err((
                    at("instances"),
                    if other == rp.name {
                        format!("{m} is named twice")
                    } else {
                        format!("{m} is already a member of pool {other}")
                    },
                ));
            }
        }
        let min_serving = rp.min_serving.unwrap_or(DEFAULT_MIN_SERVING);
        if min_serving == 0 || min_serving > rp.instances.len() {
            return Err((
                at("min_serving"),
                format!(
                    "{min_serving} is not between 1 and the pool's {} members{}",
                    rp.instances.len(),
                    if rp.min_serving.is_none() {
                        " (the default is 2: set it)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        pools.push(PoolConfig {
            name: rp.name,
            instances: rp.instances,
            min_serving,
        });
    }
    Ok(pools)
}

/// Instance configs for tests of the readers.
#[cfg(test)]
pub mod fixtures {
    use super::*;

    /// Instance `name` on 127.0.0.1:`port` (also its `port` key) with `policy`.
    pub fn instance(name: &str, port: u16, policy: &str) -> InstanceConfig {
        InstanceConfig {
            name: name.into(),
            port: Some(port),
            target: Target {
                addr: Addr::Tcp {
                    host: "127.0.0.1".into(),
                    port,
                },
                user: "replguard".into(),
                password: Secret::default(),
                heartbeat: None,
                tls: Default::default(),
            },
            policy: policy.into(),
            thresholds: Thresholds::default(),
            source: None,
            maintenance_file: None,
            writer: None,
        }
    }
}

#[cfg(test)]
mod tests;
