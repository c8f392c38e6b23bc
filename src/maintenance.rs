//! `replguard maintenance on|off`: writes or removes an instance's maintenance file, then asks
//! the running daemon (its `/status` on the configured `listen`) whether it has seen the change.
//! Needs the config and write access to the file, never the database password.

use crate::config::{Config, InstanceConfig};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The largest `/status` document read (a guard watching hundreds of instances stays far below).
const MAX_STATUS: u64 = 8 * 1024 * 1024;

/// Why the switch could not be set.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// A usage error (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The file could not be written or removed (exit 1).
    #[error("{0}")]
    Io(String),
}

/// What was done to the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switched {
    pub instance: String,
    pub file: PathBuf,
    /// The reason written (`Some`, maintenance on) or `None` (off).
    pub reason: Option<String>,
    /// For `off`: the file was not there.
    pub was_off: bool,
}

/// Whether the running daemon has seen the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Confirmed,
    /// Not within the wait; why, as far as known.
    NotSeen(String),
}

/// Writes (`reason` given: on) or removes (off) the maintenance file of `instance` (optional
/// with one instance). Only the first line of the reason is kept.
pub fn switch(
    config: &Config,
    instance: Option<&str>,
    reason: Option<&str>,
) -> Result<Switched, MaintenanceError> {
    let inst = pick(config, instance)?;
    let Some(file) = inst.maintenance_file.clone() else {
        return Err(MaintenanceError::Usage(format!(
            "{}: instance[{}] has no maintenance_file (set it in the instance block, or \
             maintenance_file at the top level)",
            config.path.display(),
            inst.name
        )));
    };
    let mut was_off = false;
    let reason = match reason {
        Some(r) => {
            let line = r.lines().next().unwrap_or("").trim().to_string();
            std::fs::write(&file, format!("{line}\n")).map_err(|e| {
                MaintenanceError::Io(format!("cannot write {}: {e}", file.display()))
            })?;
            Some(line)
        }
        None => {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => was_off = true,
                Err(e) => {
                    return Err(MaintenanceError::Io(format!(
                        "cannot remove {}: {e}",
                        file.display()
                    )))
                }
            }
            None
        }
    };
    Ok(Switched {
        instance: inst.name.clone(),
        file,
        reason,
        was_off,
    })
}

fn pick<'a>(
    config: &'a Config,
    instance: Option<&str>,
) -> Result<&'a InstanceConfig, MaintenanceError> {
    match instance {
        Some(name) => config.instance(name).ok_or_else(|| {
            MaintenanceError::Usage(format!(
                "{}: no instance named {name:?}",
                config.path.display()
            ))
        }),
        None => match config.instances.as_slice() {
            [only] => Ok(only),
            all => Err(MaintenanceError::Usage(format!(
                "{}: name an instance with --instance (configured: {})",
                config.path.display(),
                all.iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
    }
}

/// Where to ask the daemon: its `listen` address, loopback for an unspecified one.
pub fn daemon_addr(config: &Config) -> SocketAddr {
    let mut addr = config.listen;
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
        _ => {}
    }
    addr
}

/// Asks the daemon's `/status` until it shows `switched` (the maintenance reason, or none) for
/// the instance, for at most two poll intervals plus a poll's timeout.
pub fn confirm(config: &Config, switched: &Switched) -> Seen {
    if config.web.tls.is_some() {
        return Seen::NotSeen(
            "the daemon serves HTTPS; check /status or /events yourself".to_string(),
        );
    }
    let addr = daemon_addr(config);
    let deadline = Instant::now() + config.interval * 2 + config.timeout;
    let mut why;
    loop {
        why = match ask(addr, &switched.instance) {
            Ok(Some(shown)) if shown == switched.reason => return Seen::Confirmed,
            Ok(Some(Some(other))) => format!("it shows maintenance {other:?}"),
            Ok(Some(None)) => "it shows no maintenance".to_string(),
            Ok(None) => format!(
                "it watches no instance named {:?} (another config?)",
                switched.instance
            ),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Seen::NotSeen(why);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The maintenance state `/status` at `addr` shows for `instance`: `None` when it has no such
/// instance, `Some(None)` when it is not in maintenance.
fn ask(addr: SocketAddr, instance: &str) -> Result<Option<Option<String>>, String> {
    let io = |e: std::io::Error| format!("cannot ask it: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(io)?;
    stream
        .write_all(b"GET /status HTTP/1.0\r\nHost: replguard\r\nAccept: application/json\r\n\r\n")
        .map_err(io)?;
    let mut reply = Vec::new();
    stream
        .take(MAX_STATUS)
        .read_to_end(&mut reply)
        .map_err(io)?;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "it sent no HTTP answer".to_string())?;
    let status = head.split(' ').nth(1).unwrap_or("");
    match status {
        "200" => {}
        "401" => return Err("its /status requires credentials ([web] basic_auth_users)".into()),
        other => return Err(format!("its /status answered {other}")),
    }
    let doc: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("its /status is not JSON: {e}"))?;
    let found = doc["instances"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["name"] == instance));
    Ok(found.map(|i| i["maintenance"].as_str().map(str::to_string)))
}
