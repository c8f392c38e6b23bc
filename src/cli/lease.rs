//! `replguard lease status`, `replguard lease handover` and `replguard lease waive`: what etcd
//! holds for each writer group of the config; the operator's planned switchover (the holder
//! stops answering 200, waits `handover_delay`, releases with its position; another instance
//! of the group takes the lease once it passes; the one moved off neither takes it back nor
//! asks for it while the request holds); and the operator's escape when a released position
//! can never be applied (a server re-cloned, a Galera cluster bootstrapped anew).

use crate::config::coordination::Coordination;
use crate::config::Config;
use crate::lease::{connect_one, HandoverRequest, OPERATOR};
use crate::snapshot::lease::{Holder, Released};
use crate::units::{clock_time, fmt_duration};
use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use std::time::{Duration, Instant};

/// Why a lease command could not run.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{}: no [coordination] section: there is no writer lease", config.display())]
    NoCoordination { config: std::path::PathBuf },
    #[error("{}: no instance has writer_group = {group:?}", config.display())]
    NoSuchGroup {
        config: std::path::PathBuf,
        group: String,
    },
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("group {0}: nobody holds the lease: there is nothing to hand over")]
    NoHolder(String),
    #[error("group {0}: no released position: there is nothing to waive")]
    NothingToWaive(String),
    #[error("group {group}: the released position is {found}, not {asked}: nothing waived")]
    OtherPosition {
        group: String,
        found: String,
        asked: String,
    },
}

impl LeaseError {
    /// A usage or configuration error (exit 2), rather than etcd failing (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            LeaseError::NoCoordination { .. }
                | LeaseError::NoSuchGroup { .. }
                | LeaseError::OtherPosition { .. }
        )
    }
}

fn coordination(config: &Config) -> Result<&Coordination, LeaseError> {
    config
        .coordination
        .as_ref()
        .ok_or_else(|| LeaseError::NoCoordination {
            config: config.path.clone(),
        })
}

/// The writer groups of the config, or `group` if one of them.
fn groups(config: &Config, group: Option<&str>) -> Result<Vec<String>, LeaseError> {
    let mut all: Vec<String> = config
        .instances
        .iter()
        .filter_map(|i| i.writer.as_ref().map(|w| w.group.clone()))
        .collect();
    all.sort();
    all.dedup();
    match group {
        None => Ok(all),
        Some(g) if all.iter().any(|a| a == g) => Ok(vec![g.to_string()]),
        Some(g) => Err(LeaseError::NoSuchGroup {
            config: config.path.clone(),
            group: g.to_string(),
        }),
    }
}

async fn read<T: serde::de::DeserializeOwned>(
    client: &mut Client,
    key: String,
) -> Result<Option<(T, i64)>, LeaseError> {
    let r = client.get(key, None).await?;
    Ok(r.kvs()
        .first()
        .and_then(|kv| Some((serde_json::from_slice(kv.value()).ok()?, kv.lease()))))
}

/// `replguard lease status`: one paragraph per writer group.
pub async fn status(config: &Config, group: Option<&str>) -> Result<String, LeaseError> {
    let c = coordination(config)?;
    let mut client = connect_one(c, &mut 0).await?;
    let mut out = String::new();
    for g in groups(config, group)? {
        let holder: Option<(Holder, i64)> = read(&mut client, c.writer_key(&g)).await?;
        match holder {
            Some((h, lease)) => {
                let left = client
                    .lease_time_to_live(lease, None)
                    .await
                    .map(|t| format!(", lease {}s left", t.ttl()))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "{g}: held by {} (guard {}) since {}{left}\n",
                    h.instance,
                    h.guard,
                    clock_time(h.since())
                ));
            }
            None => out.push_str(&format!("{g}: free (no instance holds the lease)\n")),
        }
        let request: Option<(HandoverRequest, i64)> = read(&mut client, c.handover_key(&g)).await?;
        if let Some((r, _)) = request {
            out.push_str(&match (r.by.as_str(), r.from) {
                (OPERATOR, Some(from)) => {
                    format!("  handover: an operator moves the writes off {from}\n")
                }
                (by, _) => {
                    format!("  handover: {by} (the preferred writer) asks for the writes back\n")
                }
            });
        }
        let released: Option<(Released, i64)> = read(&mut client, c.released_key(&g)).await?;
        if let Some((r, _)) = released {
            out.push_str(&format!(
                "  released by {} (guard {}) at {}: the holder answers 200 once it has applied it \
                 (replguard lease waive if it never can)\n",
                r.instance, r.guard, r.position
            ));
        }
    }
    Ok(out)
}

/// The longest `--hold` accepted.
pub const MAX_HOLD: Duration = Duration::from_secs(24 * 3600);

/// `replguard lease handover --group G`: asks the holder to hand over, the request holding for
/// `hold`; then waits (at most `handover_delay` + 2 TTLs + `interval`) for another instance to
/// hold the lease. `Ok(Some(holder))` once moved, `Ok(None)` when not seen in time.
pub async fn handover(
    config: &Config,
    group: &str,
    hold: Duration,
) -> Result<(String, Option<Holder>), LeaseError> {
    let c = coordination(config)?;
    groups(config, Some(group))?;
    let mut client = connect_one(c, &mut 0).await?;
    let Some((from, _)) = read::<Holder>(&mut client, c.writer_key(group)).await? else {
        return Err(LeaseError::NoHolder(group.to_string()));
    };
    let lease = client
        .lease_grant(hold.as_secs().max(1) as i64, None)
        .await?
        .id();
    let request = HandoverRequest {
        by: OPERATOR.to_string(),
        from: Some(from.instance.clone()),
    };
    client
        .put(
            c.handover_key(group),
            serde_json::to_vec(&request).expect("serialises"),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await?;
    let deadline = Instant::now() + c.handover_delay + c.lease_ttl * 2 + config.interval * 4;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some((h, _)) = read::<Holder>(&mut client, c.writer_key(group)).await? {
            if h.instance != from.instance {
                return Ok((from.instance, Some(h)));
            }
        }
    }
    Ok((from.instance, None))
}

/// `replguard lease waive --group G [--position P]`: deletes the position the last holder
/// released at (only if it is still `P`, when given), so that the holder stops waiting to apply
/// it. For a position that can never be applied; the holder then takes writes without the
/// previous holder's last ones. Returns what was waived.
pub async fn waive(
    config: &Config,
    group: &str,
    position: Option<&str>,
) -> Result<Released, LeaseError> {
    let c = coordination(config)?;
    groups(config, Some(group))?;
    let mut client = connect_one(c, &mut 0).await?;
    let key = c.released_key(group);
    let got = client.get(key.clone(), None).await?;
    let Some(kv) = got.kvs().first() else {
        return Err(LeaseError::NothingToWaive(group.to_string()));
    };
    let released: Released = serde_json::from_slice(kv.value()).unwrap_or(Released {
        guard: String::new(),
        instance: String::new(),
        position: kv.value_str().unwrap_or("").to_string(),
    });
    if let Some(asked) = position {
        if asked != released.position {
            return Err(LeaseError::OtherPosition {
                group: group.to_string(),
                found: released.position,
                asked: asked.to_string(),
            });
        }
    }
    let txn = Txn::new()
        .when([Compare::mod_revision(
            key.clone(),
            CompareOp::Equal,
            kv.mod_revision(),
        )])
        .and_then([TxnOp::delete(key, None)]);
    if !client.txn(txn).await?.succeeded() {
        return Err(LeaseError::NothingToWaive(group.to_string()));
    }
    Ok(released)
}

/// A `--hold` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error(transparent)]
    Duration(#[from] crate::units::DurationError),
    #[error(
        "between 1s and {} (how long the moved-off instance stays off)",
        fmt_duration(MAX_HOLD)
    )]
    OutOfRange,
}

/// For `--hold`: a duration from 1 s to [`MAX_HOLD`].
pub fn parse_hold(text: &str) -> Result<Duration, HoldError> {
    let d = crate::units::parse_duration(text)?;
    if d > MAX_HOLD || d < Duration::from_secs(1) {
        return Err(HoldError::OutOfRange);
    }
    Ok(d)
}
