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
    config.named_or_only(instance).ok_or_else(|| {
        MaintenanceError::Usage(match instance {
            Some(name) => format!("{}: no instance named {name:?}", config.path.display()),
            None => format!(
                "{}: name an instance with --instance (configured: {})",
                config.path.display(),
                config
                    .instances
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
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
            return Err(format!("it did not answer /status within {ASK_LIMIT:?}"));
        }
        stream.set_read_timeout(Some(left)).map_err(io)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if reply.len() as u64 + n as u64 > MAX_STATUS => {
                return Err(format!("its /status is larger than {MAX_STATUS} bytes"))
            }
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("it did not answer /status within {ASK_LIMIT:?}"))
            }
            Err(e) => return Err(io(e)),
        }
    }
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
        assert!(e.contains("did not answer /status within"), "{e}");
        assert!(start.elapsed() < ASK_LIMIT + Duration::from_secs(1));
    }

    #[test]
    fn the_daemon_view_of_an_instance_is_read_from_status() {
        let addr = server(
            b"HTTP/1.1 200 OK\r\n\r\n{\"instances\": [{\"name\": \"db\", \"maintenance\": \"upgrade\"}]}",
            Duration::ZERO,
        );
        assert_eq!(ask(addr, "db"), Ok(Some(Some("upgrade".to_string()))));
        let addr = server(b"HTTP/1.1 401 Unauthorized\r\n\r\n", Duration::ZERO);
        assert!(ask(addr, "db")
            .unwrap_err()
            .contains("requires credentials"));
    }
}
