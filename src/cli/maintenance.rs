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

/// How long one question to the daemon may take, connect to last byte.
const ASK_LIMIT: Duration = Duration::from_secs(3);

/// Why the switch could not be set.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// The instance has no maintenance file configured (exit 2).
    #[error(
        "{}: instance[{instance}] has no maintenance_file (set it in the instance block, or \
         maintenance_file at the top level)",
        config.display()
    )]
    NoFile { config: PathBuf, instance: String },
    /// No instance by that name (exit 2).
    #[error("{}: no instance named {name:?}", config.display())]
    NoSuchInstance { config: PathBuf, name: String },
    /// Several instances and none named (exit 2).
    #[error("{}: name an instance with --instance (configured: {configured})", config.display())]
    NoInstance { config: PathBuf, configured: String },
    /// The file could not be written or removed (exit 1): `what` is `write` or `remove`.
    #[error("cannot {what} {}: {why}", file.display())]
    Io {
        what: &'static str,
        file: PathBuf,
        why: std::io::Error,
    },
}

impl MaintenanceError {
    /// A usage error (exit 2), rather than a failure to change the file (exit 1).
    pub fn is_usage(&self) -> bool {
        !matches!(self, MaintenanceError::Io { .. })
    }
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
        return Err(MaintenanceError::NoFile {
            config: config.path.clone(),
            instance: inst.name.clone(),
        });
    };
    let mut was_off = false;
    let reason = match reason {
        Some(r) => {
            let line = r.lines().next().unwrap_or("").trim().to_string();
            std::fs::write(&file, format!("{line}\n")).map_err(|why| MaintenanceError::Io {
                what: "write",
                file: file.clone(),
                why,
            })?;
            Some(line)
        }
        None => {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => was_off = true,
                Err(why) => {
                    return Err(MaintenanceError::Io {
                        what: "remove",
                        file,
                        why,
                    })
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
    config
        .named_or_only(instance)
        .ok_or_else(|| match instance {
            Some(name) => MaintenanceError::NoSuchInstance {
                config: config.path.clone(),
                name: name.to_string(),
            },
            None => MaintenanceError::NoInstance {
                config: config.path.clone(),
                configured: config
                    .instances
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            },
        })
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
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Seen::NotSeen(why);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Why the daemon's `/status` gave no answer about the switch (said after "has not seen it:").
#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error("cannot ask it: {0}")]
    Io(std::io::Error),
    #[error("it did not answer /status within {ASK_LIMIT:?}")]
    Slow,
    #[error("its /status is larger than {MAX_STATUS} bytes")]
    TooLarge,
    #[error("it sent no HTTP answer")]
    NotHttp,
    #[error("its /status requires credentials ([web] basic_auth_users)")]
    NeedsCredentials,
    #[error("its /status answered {0}")]
    Status(String),
    #[error("its /status is not JSON: {0}")]
    NotJson(serde_json::Error),
}

/// The maintenance state `/status` at `addr` shows for `instance`: `None` when it has no such
/// instance, `Some(None)` when it is not in maintenance.
fn ask(addr: SocketAddr, instance: &str) -> Result<Option<Option<String>>, AskError> {
    let io = AskError::Io;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(io)?;
    stream
        .write_all(b"GET /status HTTP/1.0\r\nHost: replguard\r\nAccept: application/json\r\n\r\n")
        .map_err(io)?;
    // Bounded in size and in total time: whatever listens there must not hold the command up
    // by dribbling bytes (each read waits at most the time left).
    let deadline = Instant::now() + ASK_LIMIT;
    let mut reply = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(AskError::Slow);
        }
        stream.set_read_timeout(Some(left)).map_err(io)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if reply.len() as u64 + n as u64 > MAX_STATUS => return Err(AskError::TooLarge),
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(AskError::Slow)
            }
            Err(e) => return Err(io(e)),
        }
    }
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text.split_once("\r\n\r\n").ok_or(AskError::NotHttp)?;
    let status = head.split(' ').nth(1).unwrap_or("");
    match status {
        "200" => {}
        "401" => return Err(AskError::NeedsCredentials),
        other => return Err(AskError::Status(other.to_string())),
    }
    let doc: serde_json::Value = serde_json::from_str(body).map_err(AskError::NotJson)?;
    let found = doc["instances"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["name"] == instance));
    Ok(found.map(|i| i["maintenance"].as_str().map(str::to_string)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Something on `listen` that answers with `reply`, a byte at a time every `pause`.
    fn server(reply: &'static [u8], pause: Duration) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut req = [0u8; 512];
                let _ = s.read(&mut req);
                for b in reply {
                    if s.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(pause);
                }
            }
        });
        addr
    }

    #[test]
    fn a_dribbling_listener_cannot_hold_the_command_up() {
        let addr = server(
            b"HTTP/1.1 200 OK\r\n\r\n{\"instances\": []}",
            Duration::from_millis(400),
        );
        let start = Instant::now();
        let e = ask(addr, "db").expect_err("too slow");
        assert!(matches!(e, AskError::Slow), "{e}");
        assert!(start.elapsed() < ASK_LIMIT + Duration::from_secs(1));
    }

    #[test]
    fn the_daemon_view_of_an_instance_is_read_from_status() {
        let addr = server(
            b"HTTP/1.1 200 OK\r\n\r\n{\"instances\": [{\"name\": \"db\", \"maintenance\": \"upgrade\"}]}",
            Duration::ZERO,
        );
        assert_eq!(ask(addr, "db").unwrap(), Some(Some("upgrade".to_string())));
        let addr = server(b"HTTP/1.1 401 Unauthorized\r\n\r\n", Duration::ZERO);
        let e = ask(addr, "db").unwrap_err();
        assert!(matches!(e, AskError::NeedsCredentials), "{e}");
        assert!(e.to_string().contains("requires credentials"));
    }
}
