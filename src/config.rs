//! The configuration file: parse, resolve credentials and policies, validate.
//!
//! Everything that can be wrong with a configuration is found here, before anything binds or
//! connects, and reported as one [`ConfigError`] naming the file and the key. Error messages never
//! quote a value from a credentials file or a config line, so a password cannot leak through them.

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
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// How long a client may take to send a request's headers (`header_read_timeout`).
    pub header_read_timeout: Duration,
    /// How long an HTTP connection may sit with nothing moving (`idle_timeout`).
    pub idle_timeout: Duration,
    /// Who may use the listeners (`[web]`).
    pub web: crate::web::WebSettings,
}

/// One watched server.
#[derive(Debug, Clone)]
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
}

/// Connection parameters for the probe.
#[derive(Debug, Clone)]
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
    fn parse(text: &str) -> Result<SslMode, String> {
        Ok(match text.to_ascii_uppercase().as_str() {
            "DISABLED" => SslMode::Disabled,
            "PREFERRED" => SslMode::Preferred,
            "REQUIRED" => SslMode::Required,
            "VERIFY_CA" => SslMode::VerifyCa,
            "VERIFY_IDENTITY" => SslMode::VerifyIdentity,
            _ => {
                return Err(
                    "must be DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY".into(),
                )
            }
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
    "source",
    "heartbeat",
    "heartbeat_write",
    "table",
    "server_id",
    "utc",
    "max_connections",
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
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    #[serde(default, with = "serde_humantime::option")]
    interval: Option<Duration>,
    #[serde(default, with = "serde_humantime::option")]
    timeout: Option<Duration>,
    #[serde(default, with = "serde_humantime::option")]
    max_sample_age: Option<Duration>,
    policies_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    agent_listen: Option<String>,
    maintenance_file: Option<PathBuf>,
    max_connections: Option<usize>,
    #[serde(default, with = "serde_humantime::option")]
    header_read_timeout: Option<Duration>,
    #[serde(default, with = "serde_humantime::option")]
    idle_timeout: Option<Duration>,
    web: Option<RawWeb>,
    #[serde(default, rename = "instance")]
    instances: Vec<RawInstance>,
}

/// `[web]`: the Prometheus exporters' web-config keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_client_ca_file: Option<PathBuf>,
    tls_client_auth: Option<String>,
    #[serde(default)]
    basic_auth_users: std::collections::BTreeMap<String, String>,
    auth_exempt: Option<Vec<String>>,
    #[serde(default)]
    allow_from: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    name: String,
    host: Option<String>,
    port: Option<u16>,
    socket: Option<PathBuf>,
    user: Option<String>,
    password_file: Option<PathBuf>,
    defaults_file: Option<PathBuf>,
    policy: Option<String>,
    #[serde(default, with = "serde_humantime::option")]
    max_lag: Option<Duration>,
    max_apply_backlog: Option<u64>,
    #[serde(default, with = "serde_humantime::option")]
    max_source_lost: Option<Duration>,
    require_writable: Option<bool>,
    allow_isolated: Option<bool>,
    #[serde(default, with = "serde_humantime::option")]
    recover_lag: Option<Duration>,
    recover_for: Option<u32>,
    #[serde(default, with = "serde_humantime::option")]
    soft_lag: Option<Duration>,
    maintenance_file: Option<PathBuf>,
    allow_delay: Option<bool>,
    #[serde(default, with = "serde_humantime::option")]
    max_stall: Option<Duration>,
    allow_errant: Option<bool>,
    source: Option<RawSource>,
    heartbeat: Option<RawHeartbeat>,
    heartbeat_write: Option<bool>,
    ssl_mode: Option<String>,
    ssl_ca: Option<PathBuf>,
    ssl_cert: Option<PathBuf>,
    ssl_key: Option<PathBuf>,
}

/// `ssl_mode`, `ssl_ca`, `ssl_cert`, `ssl_key` (an instance's, or its `source`'s).
#[derive(Default, Clone)]
struct RawTls {
    ssl_mode: Option<String>,
    ssl_ca: Option<PathBuf>,
    ssl_cert: Option<PathBuf>,
    ssl_key: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeartbeat {
    table: String,
    server_id: Option<u32>,
    utc: Option<bool>,
}

/// `source = { host = "…", port = 3306, user = "…", password_file = "…" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    host: String,
    port: Option<u16>,
    user: Option<String>,
    password_file: Option<PathBuf>,
    ssl_mode: Option<String>,
    ssl_ca: Option<PathBuf>,
    ssl_cert: Option<PathBuf>,
    ssl_key: Option<PathBuf>,
}

impl Config {
    /// Reads and validates the configuration at `path`, with everything it refers to.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
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
        Config::parse(path, &text)
    }

    /// Checks `text` against the file format only (TOML, known keys, value types), touching
    /// no file: the pure first step of [`Config::parse`], and what the fuzzer drives.
    pub fn check_syntax(text: &str) -> Result<(), String> {
        toml::from_str::<RawConfig>(text)
            .map(|_| ())
            .map_err(|e| e.message().to_string())
    }

    /// Validates configuration `text` as if read from `path` (relative paths resolve against
    /// the directory of `path`).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
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
            None => crate::web::WebSettings {
                auth_exempt: crate::web::default_auth_exempt(),
                ..Default::default()
            },
            Some(w) => resolve_web(w, base).map_err(|(k, m)| err(&format!("web.{k}"), m))?,
        };
        let mut names = HashSet::new();
        let mut ports = HashSet::new();
        let mut instances = Vec::new();
        for (i, ri) in raw.instances.into_iter().enumerate() {
            let shown = display_name(&ri.name, i);
            let at = |key: &str| format!("instance[{shown}].{key}");
            if ri.name.is_empty()
                || !ri
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(err(
                    &at("name"),
                    "use letters, digits, '.', '_' and '-' only (it appears in URLs)".into(),
                ));
            }
            if !names.insert(ri.name.clone()) {
                return Err(err(&at("name"), "duplicate instance name".into()));
            }
            let inst = resolve_instance(ri, base, default_maintenance.as_deref(), &at).map_err(
                |(key, message)| ConfigError {
                    file: path.to_path_buf(),
                    line: None,
                    key,
                    message,
                },
            )?;
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
            instances.push(inst);
        }

        let state_dir = match raw.state_dir {
            Some(dir) => {
                let dir = base.join(dir);
                // Private: the state files tell hosts, positions and GTID sets.
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| {
                        err("state_dir", format!("cannot create {}: {e}", dir.display()))
                    })?;
                Some(dir)
            }
            None => None,
        };

        Ok(Config {
            state_dir,
            agent_listen,
            max_connections,
            header_read_timeout,
            idle_timeout,
            web,
            path: path.to_path_buf(),
            listen,
            interval,
            timeout,
            max_sample_age,
            instances,
            policies,
        })
    }

    /// The instance with this name.
    pub fn instance(&self, name: &str) -> Option<&InstanceConfig> {
        self.instances.iter().find(|i| i.name == name)
    }
}

fn display_name(name: &str, index: usize) -> String {
    if name.is_empty() {
        index.to_string()
    } else {
        name.to_string()
    }
}

/// Turns one `[[instance]]` block into an [`InstanceConfig`], reading its credential files.
/// Errors are (key, message).
fn resolve_instance(
    ri: RawInstance,
    base: &Path,
    default_maintenance: Option<&Path>,
    at: &dyn Fn(&str) -> String,
) -> Result<InstanceConfig, (String, String)> {
    let opt_file = match &ri.defaults_file {
        Some(p) => {
            let p = base.join(p);
            read_option_file(&p).map_err(|m| (at("defaults_file"), m))?
        }
        None => ClientOptions::default(),
    };
    let password = match (&ri.password_file, &opt_file.password) {
        (Some(_), Some(_)) => {
            return Err((
                at("password_file"),
                "both password_file and defaults_file give a password; keep one".into(),
            ))
        }
        (Some(p), None) => {
            read_password_file(&base.join(p)).map_err(|m| (at("password_file"), m))?
        }
        (None, Some(pw)) => Secret::new(pw.clone()),
        (None, None) => Secret::default(),
    };
    let user = ri.user.or(opt_file.user).ok_or_else(|| {
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
                Some(p) => read_password_file(&base.join(p))
                    .map_err(|m| (at("source.password_file"), m))?,
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
        },
        maintenance_file,
        source,
    })
}

/// Validates `[web]`: TLS files that load, bcrypt hashes, CIDRs. Errors carry the key and
/// never a hash.
fn resolve_web(w: RawWeb, base: &Path) -> Result<crate::web::WebSettings, (&'static str, String)> {
    use crate::web::{ClientAuth, TlsSettings};
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
            crate::web::check_file(&settings.cert_file).map_err(|m| ("tls_cert_file", m))?;
            check_private(&settings.key_file).map_err(|m| ("tls_key_file", m))?;
            if let Some(ca) = &settings.client_ca_file {
                crate::web::check_file(ca).map_err(|m| ("tls_client_ca_file", m))?;
            }
            // Loaded once here so that a bad certificate is a config error, not a runtime one.
            crate::web::acceptor(&settings).map_err(|m| ("tls_cert_file", m))?;
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
        if !crate::web::valid_hash(hash) {
            return Err((
                "basic_auth_users",
                format!("{user}: not a bcrypt hash (e.g. from htpasswd -nBC 10 {user})"),
            ));
        }
    }
    let allow_from = w
        .allow_from
        .iter()
        .map(|net| {
            let parsed = net
                .parse::<ipnet::IpNet>()
                .or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    (
                        "allow_from",
                        format!("{net:?} is not a CIDR (e.g. \"10.0.0.0/8\")"),
                    )
                })?;
            // 10.1.2.3/8 is most likely a typo for a host or for 10.0.0.0/8: say which.
            if parsed != parsed.trunc() {
                return Err((
                    "allow_from",
                    format!("{net:?} has host bits set; write {}", parsed.trunc()),
                ));
            }
            Ok(parsed)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::web::WebSettings {
        tls,
        users: w.basic_auth_users,
        auth_exempt: w
            .auth_exempt
            .unwrap_or_else(crate::web::default_auth_exempt),
        allow_from,
    })
}

/// Validates TLS settings: a known mode, verification modes with a CA, a client certificate
/// with its key, files that exist (the key private). Errors carry the key.
fn resolve_tls(raw: &RawTls, base: &Path) -> Result<Tls, (&'static str, String)> {
    let mode = match &raw.ssl_mode {
        Some(m) => SslMode::parse(m).map_err(|e| ("ssl_mode", e))?,
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
                crate::web::check_file(&p).map_err(|m| (key, m))?;
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
        (Some(_), Some(k)) => check_private(k).map_err(|m| ("ssl_key", m))?,
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

/// Reads a password file: private to its owner, not empty, one trailing newline ignored.
fn read_password_file(p: &Path) -> Result<Secret, String> {
    check_private(p)?;
    let text =
        std::fs::read_to_string(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))?;
    let password = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(format!("{} is empty", p.display()));
    }
    Ok(Secret::new(password.to_string()))
}

/// Refuses a credentials file that others may read or write (a writable one lets them swap
/// the password, and so the server the guard trusts), or that is not a regular file.
fn check_private(path: &Path) -> Result<(), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o044 != 0 {
        return Err(format!(
            "{} is readable by group or others (mode {mode:04o}); chmod 600 it",
            path.display()
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {mode:04o}); chmod 600 it",
            path.display()
        ));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(format!(
            "{} is larger than {MAX_SECRET_FILE} bytes: not a password or option file",
            path.display()
        ));
    }
    Ok(())
}

/// The largest config file read.
const MAX_CONFIG_FILE: u64 = 1024 * 1024;

/// The largest password or option file read (they hold a few lines).
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// The `[client]` options replguard takes from a MySQL option file.
#[derive(Debug, Default, PartialEq)]
struct ClientOptions {
    user: Option<String>,
    password: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    socket: Option<String>,
    ssl_mode: Option<String>,
    ssl_ca: Option<String>,
    ssl_cert: Option<String>,
    ssl_key: Option<String>,
}

fn read_option_file(path: &Path) -> Result<ClientOptions, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let opts = parse_option_file(&text).map_err(|m| format!("{}: {m}", path.display()))?;
    if opts.password.is_some() {
        check_private(path)?;
    }
    Ok(opts)
}

/// Parses the `[client]` group of a MySQL option file as `mysql --defaults-file` reads it:
/// `key=value` or bare keys, `#`/`;` comments, optional quotes, `-` and `_` alike in names.
/// Later values win, as in MySQL. `!include` is refused rather than half-supported.
fn parse_option_file(text: &str) -> Result<ClientOptions, String> {
    let mut opts = ClientOptions::default();
    let mut in_client = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('!') {
            return Err(format!(
                "line {}: !include directives are not supported; put [client] in this file",
                n + 1
            ));
        }
        if let Some(group) = line.strip_prefix('[') {
            in_client = group.trim_end_matches(']').trim() == "client";
            continue;
        }
        if !in_client {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), unquote(v.trim())),
            None => (line, String::new()),
        };
        match key.replace('-', "_").as_str() {
            "user" => opts.user = Some(value),
            "password" => opts.password = Some(value),
            "host" => opts.host = Some(value),
            "socket" => opts.socket = Some(value),
            "ssl_mode" => opts.ssl_mode = Some(value),
            "ssl_ca" => opts.ssl_ca = Some(value),
            "ssl_cert" => opts.ssl_cert = Some(value),
            "ssl_key" => opts.ssl_key = Some(value),
            "port" => {
                opts.port = Some(
                    value
                        .parse()
                        .map_err(|_| format!("line {}: port is not a number", n + 1))?,
                )
            }
            _ => {} // other client options (charset, ...) do not concern the guard
        }
    }
    Ok(opts)
}

fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    // An unquoted value ends at a comment.
    match v.find(" #") {
        Some(i) => v[..i].trim_end().to_string(),
        None => v.to_string(),
    }
}

fn load_policy_dir(dir: &Path, set: &mut PolicySet) -> Result<(), ConfigError> {
    let fail = |file: &Path, line, message: String| ConfigError {
        file: file.to_path_buf(),
        line,
        key: String::new(),
        message,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| {
        fail(
            Path::new(""),
            None,
            format!("policies_dir {}: {e}", dir.display()),
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for file in files {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| fail(&file, None, "policy file name is not UTF-8".into()))?
            .to_string();
        // These paths are endpoints of their own: /check/{name} would work, /{name} would not.
        if crate::paths::RESERVED.contains(&name.as_str()) {
            return Err(fail(
                &file,
                None,
                format!("{name:?} is an endpoint name; call the policy something else"),
            ));
        }
        let text = std::fs::read_to_string(&file)
            .map_err(|e| fail(&file, None, format!("cannot read: {e}")))?;
        let policy = Policy::parse(&name, &text).map_err(|e| fail(&file, e.line, e.message))?;
        set.insert(policy);
    }
    Ok(())
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    struct Dir(tempfile::TempDir);

    impl Dir {
        fn new() -> Dir {
            Dir(tempfile::tempdir().unwrap())
        }
        fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
            let p = self.0.path().join(name);
            let mut f = std::fs::File::create(&p).unwrap();
            f.write_all(text.as_bytes()).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        }
        fn parse(&self, text: &str) -> Result<Config, ConfigError> {
            Config::parse(&self.0.path().join("replguard.toml"), text)
        }
    }

    const ONE: &str =
        "[[instance]]\nname = \"db1\"\nport = 3307\nuser = \"u\"\npassword_file = \"pw\"\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let d = Dir::new();
        d.file("pw", "s3cret\n", 0o600);
        let c = d.parse(ONE).unwrap();
        assert_eq!(c.listen, "127.0.0.1:31337".parse().unwrap());
        assert_eq!(
            (c.interval, c.timeout, c.max_sample_age),
            (DEFAULT_INTERVAL, DEFAULT_TIMEOUT, DEFAULT_MAX_SAMPLE_AGE)
        );
        let i = &c.instances[0];
        assert_eq!(i.policy, "auto");
        assert_eq!(i.port, Some(3307));
        assert_eq!(i.target.password.expose(), "s3cret");
        assert_eq!(format!("{:?}", i.target.password), "\"***\"");
    }

    #[test]
    fn full_example_parses() {
        let d = Dir::new();
        d.file("pw", "x", 0o400);
        std::fs::create_dir(d.0.path().join("pol")).unwrap();
        d.file(
            "pol/lenient.toml",
            "checks = [\"sample\", \"lag\"]\nmax_lag = \"60s\"\n",
            0o644,
        );
        let c = d
            .parse(
                r#"
listen = "0.0.0.0:31337"
interval = "2s"
timeout = "1s"
max_sample_age = "5s"
policies_dir = "pol"

[[instance]]
name = "db201"
host = "10.0.0.1"
port = 3306
user = "replguard"
password_file = "pw"
policy = "lenient"
max_lag = "5s"

[[instance]]
name = "db202"
socket = "/run/mysqld/mysqld2.sock"
port = 3307
user = "replguard"
password_file = "pw"
"#,
            )
            .unwrap();
        assert_eq!(c.instances.len(), 2);
        assert_eq!(
            c.instances[0].thresholds.max_lag,
            Some(Duration::from_secs(5))
        );
        assert!(c.policies.get("lenient").is_some());
        assert_eq!(
            c.instances[1].target.addr,
            Addr::Socket("/run/mysqld/mysqld2.sock".into())
        );
        assert_eq!(c.instances[1].port, Some(3307));
    }

    #[test]
    fn bad_configs_are_refused_naming_the_key() {
        let d = Dir::new();
        d.file("pw", "hunter2\n", 0o600);
        d.file("open", "hunter2\n", 0o644);
        d.file("group", "hunter2\n", 0o640);
        d.file("empty", "", 0o600);
        d.file("gw", "hunter2\n", 0o620);
        d.file("ow", "hunter2\n", 0o602);
        let two = |a: &str, b: &str| {
            format!("[[instance]]\nname = \"a\"\nuser = \"u\"\n{a}\n[[instance]]\nname = \"b\"\nuser = \"u\"\n{b}\n")
        };
        #[rustfmt::skip]
        let cases: Vec<(String, &str, &str)> = vec![
            // An unknown key is named by the message only: the line's text is echoed only for
            // keys replguard knows (a file that is no config at all must not be quoted).
            (format!("colour = \"blue\"\n{ONE}"), "", "unknown field `colour`"),
            ("hunter2 pass = x\n".to_string(), "", "expected `=`"),
            (format!("interval = \"2ns\"\n{ONE}"), "interval", "is outside 10ms..3600s"),
            (format!("interval = \"2h\"\n{ONE}"), "interval", "is outside 10ms..3600s"),
            (format!("interval = \"200000000000y\"\n{ONE}"), "interval", "longer than the largest accepted (366 days)"),
            (format!("interval = \"2000y\"\n{ONE}"), "interval", "longer than the largest accepted"),
            (format!("{ONE}max_source_lost = \"2000y\"\n"), "max_source_lost", "longer than the largest accepted"),
            (format!("interval = \"100ms\"\ntimeout = \"500us\"\nmax_sample_age = \"1s\"\n{ONE}"), "timeout", "is shorter than 1ms"),
            (format!("{ONE}ssl_mode = \"SOMETIMES\"\n"), "instance[db1].ssl_mode", "must be DISABLED, PREFERRED"),
            (format!("{ONE}ssl_mode = \"VERIFY_CA\"\n"), "instance[db1].ssl_ca", "need ssl_ca"),
            (format!("{ONE}ssl_mode = \"REQUIRED\"\nssl_cert = \"pw\"\n"), "instance[db1].ssl_key", "ssl_cert needs its ssl_key"),
            (format!("{ONE}ssl_mode = \"REQUIRED\"\nssl_cert = \"pw\"\nssl_key = \"open\"\n"), "instance[db1].ssl_key", "readable by group or others"),
            (format!("{ONE}ssl_ca = \"missing.crt\"\n"), "instance[db1].ssl_ca", "cannot read"),
            (format!("{ONE}[web]\nallow_from = [\"10.1.2.3/8\"]\n"), "web.allow_from", "has host bits set; write 10.0.0.0/8"),
            (format!("{ONE}[web]\nbasic_auth_users = {{ m = \"$2b$20$abcdefghijklmnopqrstuuPLe4Mmw0N9OxGh2JRCo3V0a1NXnbB4e\" }}\n"), "web.basic_auth_users", "not a bcrypt hash"),
            (format!("{ONE}[web]\ntls_client_auth = \"require\"\n"), "web.tls_cert_file", "client certificates need TLS"),
            (ONE.replace("\"pw\"", "\"gw\""), "instance[db1].password_file", "writable by group or others (mode 0620)"),
            (ONE.replace("\"pw\"", "\"ow\""), "instance[db1].password_file", "writable by group or others (mode 0602)"),
            (format!("interval = \"1x\"\n{ONE}"), "interval", "invalid duration"),
            (format!("interval = \"5\"\n{ONE}"), "interval", "has no unit"),
            (format!("interval = \"1s\"\ntimeout = \"1s\"\n{ONE}"), "timeout", "must be shorter than interval"),
            (format!("max_sample_age = \"1s\"\n{ONE}"), "max_sample_age", "must be longer than interval"),
            (format!("listen = \"localhost\"\n{ONE}"), "listen", "not an IP:port"),
            ("interval = \"1s\"\n".to_string(), "instance", "no [[instance]]"),
            (two("port = 1", "port = 2").replace("name = \"b\"", "name = \"a\""), "instance[a].name", "duplicate instance name"),
            (two("port = 1", "port = 1"), "instance[b].port", "port 1 is used by another instance"),
            (ONE.replace("3307", "3307\npassword = \"hunter2\""), "", "unknown field `password`"),
            (ONE.replace("\"pw\"", "\"open\""), "instance[db1].password_file", "readable by group or others (mode 0644)"),
            (ONE.replace("\"pw\"", "\"group\""), "instance[db1].password_file", "readable by group or others (mode 0640)"),
            (ONE.replace("\"pw\"", "\"missing\""), "instance[db1].password_file", "cannot read"),
            (ONE.replace("\"pw\"", "\"empty\""), "instance[db1].password_file", "is empty"),
            (format!("{ONE}policy = \"nope\"\n"), "instance[db1].policy", "no policy named \"nope\""),
            (format!("{ONE}max_lag = \"-1s\"\n"), "max_lag", "is negative"),
            (format!("{ONE}socket = \"/s\"\nhost = \"h\"\n"), "instance[db1].socket", "either socket or host"),
            (ONE.replace("db1", "db 1"), "instance[db 1].name", "letters, digits"),
            (ONE.replace("user = \"u\"\n", ""), "instance[db1].user", "missing"),
        ];
        for (text, key, msg) in cases {
            let e = d.parse(&text).expect_err(&text);
            assert_eq!(e.key, key, "{text}\n=> {e}");
            assert!(e.message.contains(msg), "{text}\n=> {e}");
            let shown = e.to_string();
            assert!(
                shown.starts_with(&d.0.path().join("replguard.toml").display().to_string()),
                "{shown}"
            );
            assert!(!shown.contains("hunter2"), "password leaked: {shown}");
        }
    }

    #[test]
    fn option_file_supplies_credentials() {
        let d = Dir::new();
        d.file(
            "my.cnf",
            "[mysqld]\nport = 1\n[client]\nuser = guard\npassword = \"p w#1\" \nport=3310\nssl-mode = DISABLED\n",
            0o600,
        );
        let c = d
            .parse("[[instance]]\nname = \"x\"\ndefaults_file = \"my.cnf\"\n")
            .unwrap();
        let i = &c.instances[0];
        assert_eq!(i.target.user, "guard");
        assert_eq!(i.target.password.expose(), "p w#1");
        assert_eq!(i.port, Some(3310));
        // The instance's own keys win over the option file's.
        let c = d
            .parse("[[instance]]\nname = \"x\"\nuser = \"other\"\nport = 4000\ndefaults_file = \"my.cnf\"\n")
            .unwrap();
        assert_eq!(
            (c.instances[0].target.user.as_str(), c.instances[0].port),
            ("other", Some(4000))
        );
        d.file("open.cnf", "[client]\npassword=hunter2\n", 0o644);
        let e = d
            .parse("[[instance]]\nname = \"x\"\nuser = \"u\"\ndefaults_file = \"open.cnf\"\n")
            .unwrap_err();
        assert_eq!(e.key, "instance[x].defaults_file");
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn deploy_example_config_is_valid() {
        let d = Dir::new();
        let pw = d.file("db201.password", "x", 0o600);
        let state = d.0.path().join("state");
        let text = include_str!("../deploy/replguard.toml")
            .replace("/etc/replguard/db201.password", pw.to_str().unwrap())
            .replace("/var/lib/replguard", state.to_str().unwrap());
        let c = d.parse(&text).expect("deploy/replguard.toml parses");
        assert_eq!(c.instances[0].name, "db201");
        assert_eq!(
            c.instances[0].thresholds.max_lag,
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn option_file_parsing() {
        let cases: &[(&str, ClientOptions)] = &[
            (
                "[client]\nuser=a\n",
                ClientOptions {
                    user: Some("a".into()),
                    ..Default::default()
                },
            ),
            ("[mysql]\nuser=a\n", ClientOptions::default()),
            (
                "[client]\npassword='x y'\n# c\n; c\n",
                ClientOptions {
                    password: Some("x y".into()),
                    ..Default::default()
                },
            ),
            (
                "[client]\nuser = b # comment\nsocket=/tmp/s\n",
                ClientOptions {
                    user: Some("b".into()),
                    socket: Some("/tmp/s".into()),
                    ..Default::default()
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_option_file(text).unwrap(), want, "{text:?}");
        }
        assert!(parse_option_file("!include /etc/x\n").is_err());
        assert!(parse_option_file("[client]\nport=abc\n").is_err());
    }
}
