//! The state file: each instance's memory (when its IO thread was last seen connected, and the
//! lag then) kept under `state_dir`, so the backup gate survives a replguard restart.
//!
//! The file also records the server's executed position (executed GTID set and applied source
//! coordinates) at the latest poll. A restarted replguard trusts the file only if that position
//! is unchanged: a local write on the server, or events applied from its source while nobody was
//! watching, both move it. Files are written atomically (temporary file, then rename); only the
//! instance's poller writes its file. Conversions are pure; `load` and `save` do the I/O.

use crate::snapshot::sample::{Flavor, Sample, ServerState, SourceState};
use crate::snapshot::{Memory, SeenConnected, SourceSeen};
use crate::units::{from_unix_ms, unix_ms};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bumped when the format changes; a file of another version is ignored (fail closed).
const FORMAT: u32 = 1;

/// What is written to `<state_dir>/<instance>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    pub format: u32,
    /// The server's executed position at the latest poll.
    pub position: Position,
    /// Per channel: the last observation with the IO thread connected.
    pub seen: Vec<PersistedSeen>,
    /// The last successful read of the replica's source (promotion evidence).
    #[serde(default)]
    pub source: Option<PersistedSource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedSource {
    pub at_unix_ms: u64,
    pub addr: String,
    pub state: SourceState,
    /// The errant transactions that reading showed on this server, if any.
    #[serde(default)]
    pub errant: Option<String>,
    /// The source's semi-sync status at its readings: on or not, since when, and whether this
    /// server was acking then (the semi-sync state itself is in `state`).
    #[serde(default)]
    pub semi_sync: Option<PersistedSemiSync>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedSemiSync {
    pub on: bool,
    pub since_unix_ms: u64,
    pub since_first_reading: bool,
    pub acking: Option<bool>,
}

/// Where the server's data stands: moves with every applied event and every local write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// MySQL `@@gtid_executed`, MariaDB `@@gtid_current_pos`.
    pub gtid_executed: Option<String>,
    /// Per channel: (name, `Relay_Source_Log_File`, `Exec_Source_Log_Pos`).
    pub applied: Vec<(String, String, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedSeen {
    pub channel: String,
    /// Wall-clock time of the observation, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The lag then, in milliseconds; `None` when it was NULL.
    pub lag_ms: Option<u64>,
    /// The server's uptime then, in seconds.
    pub uptime_s: Option<u64>,
    /// `host:port` of the source it was connected to.
    pub source: String,
}

/// Why a state file was not used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} is not a replguard state file: {1}")]
    Parse(PathBuf, serde_json::Error),
    #[error("{0} has format {1}, this replguard writes {FORMAT}")]
    Format(PathBuf, u32),
}

/// Why a state file's memory was void at the first poll.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The server executed transactions (or was replaced) since the file was written: what it
    /// remembers no longer describes this server.
    #[error("executed position moved since it was recorded (was {was}, now {now})")]
    Moved { was: String, now: String },
}

/// The state file of `instance` in `dir`.
pub fn file_for(dir: &Path, instance: &str) -> PathBuf {
    dir.join(format!("{instance}.json"))
}

/// The executed position of a server state.
pub fn position(state: &ServerState) -> Position {
    Position {
        gtid_executed: match state.flavor {
            Flavor::MySql => state.gtid.executed.clone(),
            Flavor::MariaDb => state.gtid.current_pos.clone(),
        },
        applied: state
            .channels
            .iter()
            .map(|c| (c.name.clone(), c.exec_log_file.clone(), c.exec_log_pos))
            .collect(),
    }
}

impl Persisted {
    /// What to write after a successful poll that saw `state`.
    pub fn new(memory: &Memory, state: &ServerState) -> Persisted {
        Persisted {
            format: FORMAT,
            position: position(state),
            seen: memory
                .io_last_connected
                .iter()
                .map(|(channel, s)| PersistedSeen {
                    channel: channel.clone(),
                    at_unix_ms: unix_ms(s.at_wall),
                    lag_ms: s.lag.map(|l| l.as_millis() as u64),
                    uptime_s: s.uptime.map(|u| u.as_secs()),
                    source: s.source.clone(),
                })
                .collect(),
            source: memory.last_source.as_ref().map(|s| PersistedSource {
                at_unix_ms: unix_ms(s.at_wall),
                addr: s.addr.clone(),
                state: s.state.clone(),
                errant: memory.errant_at_last_source.clone(),
                semi_sync: memory.source_semi_sync.as_ref().map(|t| PersistedSemiSync {
                    on: t.on,
                    since_unix_ms: unix_ms(t.since_wall),
                    since_first_reading: t.since_first_reading,
                    acking: t.acking,
                }),
            }),
        }
    }

    /// Puts the remembered observations into `memory` for channels it knows nothing about yet,
    /// if the server's executed position in `sample` is the one recorded. Returns how many
    /// channels were restored, or why the file is void.
    pub fn restore_into(
        &self,
        memory: &mut Memory,
        sample: &Sample,
        state: &ServerState,
    ) -> Result<usize, RestoreError> {
        // Source evidence is about the source at its own time, whatever the replica did since.
        if let (None, Some(src)) = (&memory.last_source, &self.source) {
            if let Some((at, at_wall)) = carry(sample, src.at_unix_ms) {
                memory.last_source = Some(SourceSeen {
                    at,
                    at_wall,
                    addr: src.addr.clone(),
                    state: src.state.clone(),
                });
                memory.errant_at_last_source = src.errant.clone();
                if let Some(t) = &src.semi_sync {
                    // A since that cannot be carried over (the clock stepped back) is the
                    // reading's own time: the status held then at least.
                    let (since, since_wall) =
                        carry(sample, t.since_unix_ms).unwrap_or((at, at_wall));
                    memory.source_semi_sync = Some(crate::snapshot::SourceSemiSync {
                        on: t.on,
                        since,
                        since_wall,
                        since_first_reading: t.since_first_reading,
                        acking: t.acking,
                    });
                }
            }
        }
        let now = position(state);
        if now != self.position {
            return Err(RestoreError::Moved {
                was: describe(&self.position),
                now: describe(&now),
            });
        }
        let mut restored = 0;
        for s in &self.seen {
            if memory.io_last_connected.contains_key(&s.channel) {
                continue;
            }
            let Some((at, at_wall)) = carry(sample, s.at_unix_ms) else {
                continue;
            };
            memory.io_last_connected.insert(
                s.channel.clone(),
                SeenConnected {
                    at,
                    at_wall,
                    lag: s.lag_ms.map(Duration::from_millis),
                    uptime: s.uptime_s.map(Duration::from_secs),
                    source: s.source.clone(),
                },
            );
            restored += 1;
        }
        if restored > 0 {
            memory.restored = true;
        }
        Ok(restored)
    }
}

/// Carries an observation recorded at `at_unix_ms` (wall clock) over to this process's
/// monotonic clock, by its age at `sample`. An observation from the future means the wall clock
/// stepped back: its age is unknown, so it cannot vouch for anything (`None`).
fn carry(sample: &Sample, at_unix_ms: u64) -> Option<(std::time::Instant, std::time::SystemTime)> {
    let at_wall = from_unix_ms(at_unix_ms);
    let age = sample.taken_at_wall.duration_since(at_wall).ok()?;
    Some((sample.taken_at.checked_sub(age)?, at_wall))
}

fn describe(p: &Position) -> String {
    let mut parts = vec![format!(
        "gtid {}",
        p.gtid_executed.as_deref().unwrap_or("none")
    )];
    for (ch, file, pos) in &p.applied {
        parts.push(format!("{ch:?} {file}:{pos}"));
    }
    parts.join(", ")
}

/// The largest state file read: a few channels and one source reading take a few KB.
pub const MAX_STATE_FILE: u64 = 1024 * 1024;

/// Reads a state file; `Ok(None)` when there is none yet. Only a regular file of at most
/// [`MAX_STATE_FILE`] bytes is read (a symlink to `/dev/zero` must not grow the guard).
pub fn load(path: &Path) -> Result<Option<Persisted>, StoreError> {
    let refuse = |why: &str| StoreError::Read(path.to_path_buf(), std::io::Error::other(why));
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return Err(refuse("not a regular file")),
        Ok(meta) if meta.len() > MAX_STATE_FILE => {
            return Err(refuse("larger than a state file can be"))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::Read(path.to_path_buf(), e)),
    }
    let mut text = String::new();
    match std::fs::File::open(path) {
        Ok(f) => {
            use std::io::Read;
            f.take(MAX_STATE_FILE)
                .read_to_string(&mut text)
                .map_err(|e| StoreError::Read(path.to_path_buf(), e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::Read(path.to_path_buf(), e)),
    }
    parse(path, &text).map(Some)
}

/// Parses a state file's text (read from `path`, named in errors); pure.
pub fn parse(path: &Path, text: &str) -> Result<Persisted, StoreError> {
    let p: Persisted =
        serde_json::from_str(text).map_err(|e| StoreError::Parse(path.to_path_buf(), e))?;
    if p.format != FORMAT {
        return Err(StoreError::Format(path.to_path_buf(), p.format));
    }
    Ok(p)
}

/// Writes a state file atomically: a reader sees the old file or the new one, never half.
pub async fn save(path: &Path, p: &Persisted) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(p).map_err(std::io::Error::other)?;
    // Private to the guard's user: it tells hosts, positions and GTID sets.
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .await?;
    tokio::io::AsyncWriteExt::write_all(&mut file, &body).await?;
    // tokio's write_all returns once the bytes are handed to a blocking thread, not written:
    // without the flush the rename could publish an empty or partial file (seen in a test).
    // sync_data: a crash right after the rename must not leave an empty file in its place.
    tokio::io::AsyncWriteExt::flush(&mut file).await?;
    file.sync_data().await?;
    drop(file);
    tokio::fs::rename(&tmp, path).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::sample::fixtures::replica;
    use crate::snapshot::Snapshot;
    use std::time::{Instant, SystemTime};

    /// A snapshot whose sample was taken `ago` before (`now`, `wall`).
    fn at(state: &ServerState, now: Instant, wall: SystemTime, ago: Duration) -> Snapshot {
        Snapshot::default().next(Sample {
            taken_at: now - ago,
            taken_at_wall: wall - ago,
            duration: Duration::from_millis(1),
            outcome: Ok(state.clone()),
            source: None,
            maintenance: None,
            maintenance_error: None,
            lease: None,
        })
    }

    #[test]
    fn restores_only_at_the_recorded_position() {
        let now = Instant::now() + Duration::from_secs(3600);
        let wall = SystemTime::now();
        let mut state = replica();
        state.gtid.current_pos = Some("0-1-42".into());
        // Recorded by an earlier run: connected 10 minutes ago with lag 1s.
        let earlier = at(&state, now, wall, Duration::from_secs(600));
        let recorded = Persisted::new(&earlier.memory, &state);
        assert_eq!(recorded.seen.len(), 1);

        // A new run, first poll: the source is gone and nothing moved.
        state.channels[0].io_thread = crate::snapshot::sample::ThreadState::Connecting;
        let fresh = at(&state, now, wall, Duration::ZERO);
        let mut memory = Memory::default();
        let sample = fresh.sample.as_deref().unwrap();
        assert_eq!(recorded.restore_into(&mut memory, sample, &state), Ok(1));
        assert!(memory.restored);
        let seen = &memory.io_last_connected[""];
        let age = now.duration_since(seen.at);
        assert!(
            age >= Duration::from_secs(599) && age <= Duration::from_secs(601),
            "{age:?}"
        );

        // A local write moved gtid_current_pos: the memory is void.
        let mut moved = state.clone();
        moved.gtid.current_pos = Some("0-2-43".into());
        let err = recorded
            .restore_into(&mut Memory::default(), sample, &moved)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("was gtid 0-1-42") && err.contains("now gtid 0-2-43"),
            "{err}"
        );

        // Events applied from the source moved the coordinates: void too.
        let mut applied = state.clone();
        applied.channels[0].exec_log_pos += 10;
        assert!(recorded
            .restore_into(&mut Memory::default(), sample, &applied)
            .is_err());
    }

    #[tokio::test]
    async fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_for(dir.path(), "db1");
        assert!(load(&path).unwrap().is_none());
        let p = Persisted {
            format: FORMAT,
            position: Position {
                gtid_executed: Some("0-1-5".into()),
                applied: vec![("".into(), "mysql-bin.000001".into(), 100)],
            },
            seen: vec![PersistedSeen {
                channel: "".into(),
                at_unix_ms: 1_700_000_000_000,
                lag_ms: None,
                uptime_s: Some(7),
                source: "127.0.0.1:3306".into(),
            }],
            source: None,
        };
        save(&path, &p).await.unwrap();
        assert_eq!(load(&path).unwrap(), Some(p));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "state files are private");
        std::fs::write(&path, "{ not json").unwrap();
        assert!(matches!(load(&path), Err(StoreError::Parse(..))));
        // Not a regular file (a symlink to /dev/zero), or too large: refused, not read.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        assert!(matches!(load(&path), Err(StoreError::Read(..))));
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, vec![b' '; MAX_STATE_FILE as usize + 1]).unwrap();
        assert!(matches!(load(&path), Err(StoreError::Read(..))));
    }
}
