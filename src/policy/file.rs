//! The policy file format: the rules a policy can require, the thresholds it sets, and the
//! built-in policy files (compiled in from `policies/`).

use crate::units::serde_humantime;
use serde::Deserialize;
use std::time::Duration;

/// The fixed endpoints other than checks; a single segment that is none of these is a policy.
pub const FIXED: [&str; 5] = ["healthz", "status", "metrics", "ui", "events"];

/// Names no policy may have: the fixed endpoints, and the two check paths with a name of their
/// own (`/check/{name}` would work, `/{name}` would not).
pub const RESERVED: [&str; 7] = [
    FIXED[0], FIXED[1], FIXED[2], FIXED[3], FIXED[4], "check", "mysqlchk",
];

/// The built-in policy files, by name; a file in `policies_dir` with the same name replaces one.
pub const BUILTIN: &[(&str, &str)] = &[
    ("any-lag", include_str!("../../policies/any-lag.toml")),
    ("auto", include_str!("../../policies/auto.toml")),
    ("galera", include_str!("../../policies/galera.toml")),
    (
        "galera-writer",
        include_str!("../../policies/galera-writer.toml"),
    ),
    ("gr-primary", include_str!("../../policies/gr-primary.toml")),
    (
        "gr-secondary",
        include_str!("../../policies/gr-secondary.toml"),
    ),
    ("backup", include_str!("../../policies/backup.toml")),
    ("primary", include_str!("../../policies/primary.toml")),
    ("promotion", include_str!("../../policies/promotion.toml")),
    ("replica", include_str!("../../policies/replica.toml")),
];

/// One rule a policy can require. Its name in a policy file is also the check name in verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A sample exists and is no older than `max_sample_age`.
    Sample,
    /// The last poll reached the server.
    Reachable,
    /// read_only, super_read_only and innodb_read_only are all OFF.
    Writable,
    /// The server has at least one replication channel.
    ReplicaStatus,
    /// Every channel's IO thread is `Yes`.
    IoThread,
    /// Every channel's SQL thread is `Yes`.
    SqlThread,
    /// No channel reports an IO or SQL error.
    ReplicationErrors,
    /// Every channel's lag is known and at most `max_lag`.
    Lag,
    /// No channel reports an SQL error (IO errors are expected while the source is gone).
    SqlError,
    /// Every channel has applied what its IO thread received (within `max_apply_backlog`).
    Applied,
    /// The backup gate's lag rule: with the IO thread connected, lag known and at most
    /// `max_lag`; with the source lost, the last connected observation showed lag at most
    /// `max_lag`, the server has not restarted since, and the relay log is applied.
    Source,
    /// Master-master for a writer: a channel from its peer must be connected with the SQL thread
    /// applying everything and lag within `max_lag`, or, with the peer lost, have been caught up
    /// when it vanished (as [`Rule::Source`]); `allow_isolated` admits it anyway, loudly. A writer
    /// without a replica status passes.
    Peer,
    /// Promotion: no channel is a delayed replica (`SQL_Delay` 0).
    NotDelayed,
    /// The IO thread says `Yes` but its read position has not moved for `max_stall` while the
    /// source (read by the guard) kept executing transactions: replication is stalled.
    Stall,
    /// Promotion: binary log and log_replica_updates on.
    Binlog,
    /// Promotion: GTID in use (MySQL gtid_mode ON, MariaDB Using_Gtid).
    Gtid,
    /// Promotion: read_only still ON (warns when OFF).
    ReadOnlyOn,
    /// Promotion: compare with the source: missing and errant transactions, version, server_id.
    CompareSource,
    /// The backup gate: no transactions the source (read by the guard this poll) never had,
    /// unless `allow_errant`. Not judged while the source is unreadable.
    ErrantTransactions,
    /// A Galera node fit for traffic: wsrep ready and connected, in the Primary component,
    /// Synced (Donor/Desynced only with `available_when_donor`), not rejecting queries, not in
    /// PXC maintenance, writable unless `available_when_readonly`, and within the optional
    /// `min_cluster_size`, `max_recv_queue` and `max_flow_control_paused`.
    Galera,
    /// A Group Replication member fit to take writes: ONLINE, role PRIMARY, super_read_only
    /// OFF, and seeing a majority of its group.
    GrPrimary,
    /// A Group Replication member fit to serve reads: ONLINE, role SECONDARY, a majority, and
    /// its applier and certification queues within `max_applier_queue` and `max_cert_queue`.
    GrSecondary,
    /// Master-master for a writer: the peer's own writes (the GTIDs it originated) are all
    /// applied here and have not changed for `handover_delay`: the peer stopped taking writes
    /// long enough for HAProxy to have marked it DOWN. A writer without a replica status, or
    /// whose peer never took writes, passes.
    Handover,
    /// The backup gate in master-master: a backup that took writes of its own lately (within
    /// twice `handover_delay`) fails while its source is back, writable, and has applied its
    /// writes up to `max_lag` ago: it gives the writes back, stopping first.
    Yield,
    /// The backup gate and the checklist: whether the source was semi-synchronous
    /// (`AFTER_SYNC`, this server the acking replica) at its last reading, so that no commit
    /// it acknowledged can be missing here; an honest account otherwise, failing only with
    /// `require_semi_sync`.
    SemiSync,
    /// A primary whose commits wait for a semi-sync ack, with no ack arriving, for longer than
    /// `max_semi_sync_wait`: its clients hang.
    SemiSyncWait,
    /// A writer policy with `[coordination]`: this instance holds its writer group's lease in
    /// etcd (confirmed, past `handover_delay`, not handing over). Says nothing for an instance
    /// in no writer group.
    WriterLease,
    /// The checklist on a guard that watches other replicas of the same source: this replica
    /// has received every transaction any of them has (received ∪ executed, as GTIDs). Not
    /// judged when the guard watches no sibling.
    MostAdvanced,
}

/// Thresholds a policy file sets and an instance or a request may override.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Largest acceptable replication lag.
    #[serde(default, with = "serde_humantime::option")]
    pub max_lag: Option<Duration>,
    /// Bytes of received but not yet applied relay log tolerated by `applied` (default 0).
    #[serde(default)]
    pub max_apply_backlog: Option<u64>,
    /// How long the `source` rule trusts the last connected observation after the source is
    /// lost (default: as long as the server keeps running).
    #[serde(default, with = "serde_humantime::option")]
    pub max_source_lost: Option<Duration>,
    /// Also require the server to be writable (every read-only flag OFF).
    #[serde(default)]
    pub require_writable: Option<bool>,
    /// `peer`: admit a writer whose peer is gone for good (split-brain risk, said loudly).
    #[serde(default)]
    pub allow_isolated: Option<bool>,
    /// Hysteresis of the `lag` rule: after a lag failure, lag must stay at most this (default
    /// half of `max_lag`) ...
    #[serde(default, with = "serde_humantime::option")]
    pub recover_lag: Option<Duration>,
    /// ... for this many consecutive polls (default 3; 0 turns hysteresis off).
    #[serde(default)]
    pub recover_for: Option<u32>,
    /// Agent weight: full weight up to this lag (default a quarter of `max_lag`), then falling
    /// linearly towards `max_lag`.
    #[serde(default, with = "serde_humantime::option")]
    pub soft_lag: Option<Duration>,
    /// Judge a deliberately delayed replica against its `SQL_Delay` (lag minus the delay)
    /// instead of failing it as stale by design; for watching the delayed replica itself.
    #[serde(default)]
    pub allow_delay: Option<bool>,
    /// `stall`: how long the read position may stand still while the source advances.
    #[serde(default, with = "serde_humantime::option")]
    pub max_stall: Option<Duration>,
    /// `errant_transactions` on the backup gate: admit a backup holding transactions its
    /// source never had (warned, not failed).
    #[serde(default)]
    pub allow_errant: Option<bool>,
    /// `galera`: a Donor/Desynced node passes (clustercheck's AVAILABLE_WHEN_DONOR), unless it
    /// rejects queries during SST (`wsrep_sst_donor_rejects_queries`).
    #[serde(default)]
    pub available_when_donor: Option<bool>,
    /// `galera`: a read-only node passes (clustercheck's AVAILABLE_WHEN_READONLY).
    #[serde(default)]
    pub available_when_readonly: Option<bool>,
    /// `galera`: the node's component must have at least this many nodes.
    #[serde(default)]
    pub min_cluster_size: Option<u32>,
    /// `galera`: write-sets received but not applied (`wsrep_local_recv_queue`) tolerated.
    #[serde(default)]
    pub max_recv_queue: Option<u64>,
    /// `galera`: the fraction of time flow control may have paused replication (0 to 1).
    #[serde(default)]
    pub max_flow_control_paused: Option<Fraction>,
    /// `gr_secondary`: transactions waiting to be applied tolerated (default 10).
    #[serde(default)]
    pub max_applier_queue: Option<u64>,
    /// `gr_secondary`: transactions waiting for certification tolerated (default 10).
    #[serde(default)]
    pub max_cert_queue: Option<u64>,
    /// `handover` and `yield`: how long a writer waits after its master-master peer stopped
    /// taking writes (at least HAProxy's `fall` x `inter` + `timeout check` on the write
    /// port, plus one poll), default 20s.
    #[serde(default, with = "serde_humantime::option")]
    pub handover_delay: Option<Duration>,
    /// `semi_sync`: fail unless the source was semi-sync (AFTER_SYNC) with this server acking
    /// at its last reading (default false: the account is a warning).
    #[serde(default)]
    pub require_semi_sync: Option<bool>,
    /// `semi_sync_wait`: fail a primary whose commits have waited for a semi-sync ack longer
    /// than this (default: not judged).
    #[serde(default, with = "serde_humantime::option")]
    pub max_semi_sync_wait: Option<Duration>,
}

/// A fraction between 0 and 1, kept in millionths so thresholds stay `Eq` and `Hash`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Fraction(pub u32);

impl Fraction {
    pub fn value(self) -> f64 {
        f64::from(self.0) / 1e6
    }
}

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fraction, D::Error> {
        let v = f64::deserialize(d)?;
        if !(0.0..=1.0).contains(&v) {
            return Err(serde::de::Error::custom(format!(
                "{v} is not a fraction between 0 and 1"
            )));
        }
        Ok(Fraction((v * 1e6).round() as u32))
    }
}

impl Thresholds {
    /// `self` with every threshold that `over` sets replaced by `over`'s value.
    pub fn overlay(&self, over: &Thresholds) -> Thresholds {
        Thresholds {
            max_lag: over.max_lag.or(self.max_lag),
            max_apply_backlog: over.max_apply_backlog.or(self.max_apply_backlog),
            max_source_lost: over.max_source_lost.or(self.max_source_lost),
            require_writable: over.require_writable.or(self.require_writable),
            allow_isolated: over.allow_isolated.or(self.allow_isolated),
            recover_lag: over.recover_lag.or(self.recover_lag),
            recover_for: over.recover_for.or(self.recover_for),
            soft_lag: over.soft_lag.or(self.soft_lag),
            allow_delay: over.allow_delay.or(self.allow_delay),
            max_stall: over.max_stall.or(self.max_stall),
            allow_errant: over.allow_errant.or(self.allow_errant),
            available_when_donor: over.available_when_donor.or(self.available_when_donor),
            available_when_readonly: over
                .available_when_readonly
                .or(self.available_when_readonly),
            min_cluster_size: over.min_cluster_size.or(self.min_cluster_size),
            max_recv_queue: over.max_recv_queue.or(self.max_recv_queue),
            max_flow_control_paused: over
                .max_flow_control_paused
                .or(self.max_flow_control_paused),
            max_applier_queue: over.max_applier_queue.or(self.max_applier_queue),
            max_cert_queue: over.max_cert_queue.or(self.max_cert_queue),
            handover_delay: over.handover_delay.or(self.handover_delay),
            require_semi_sync: over.require_semi_sync.or(self.require_semi_sync),
            max_semi_sync_wait: over.max_semi_sync_wait.or(self.max_semi_sync_wait),
        }
    }
}

/// A named policy as loaded from its file.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub description: String,
    pub body: Body,
}

/// What a policy does: run checks, or pick another policy by the server's role.
#[derive(Debug, Clone)]
pub enum Body {
    Checks {
        rules: Vec<Rule>,
        thresholds: Thresholds,
        /// Append the manual promotion steps to the verdict.
        promotion_steps: bool,
    },
    ByRole {
        when_writable: String,
        when_read_only: String,
        /// On a Galera node (`wsrep_on`), this policy whatever the read-only flags say.
        when_galera: Option<String>,
        /// On a Group Replication member, by its role: PRIMARY, anything else.
        when_group_primary: Option<String>,
        when_group_secondary: Option<String>,
    },
}

/// The file format; `deny_unknown_fields` so a misspelt key is an error, not a silent default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    description: Option<String>,
    checks: Option<Vec<Rule>>,
    when_writable: Option<String>,
    when_read_only: Option<String>,
    when_galera: Option<String>,
    when_group_primary: Option<String>,
    when_group_secondary: Option<String>,
    /// Print the manual promotion steps for the server's flavour after the checks.
    #[serde(default)]
    promotion_steps: bool,
    #[serde(flatten)]
    thresholds: Thresholds,
}

/// A policy file that cannot be used, and why. `line` is 1-based where the parser knows it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    pub line: Option<usize>,
    pub message: String,
}

impl PolicyError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        PolicyError {
            line: None,
            message: message.into(),
        }
    }
}

impl Policy {
    /// Parses one policy file's text.
    pub fn parse(name: &str, text: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError {
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().to_string(),
        })?;
        let body = match (file.checks, file.when_writable, file.when_read_only) {
            (Some(_), _, _)
                if file.when_galera.is_some()
                    || file.when_group_primary.is_some()
                    || file.when_group_secondary.is_some() =>
            {
                return Err(PolicyError::new(
                    "when_galera: only a policy that picks by role (when_writable, \
                     when_read_only) can pick for Galera nodes",
                ))
            }
            (Some(rules), None, None) => {
                if rules.is_empty() {
                    return Err(PolicyError::new(
                        "checks: a policy needs at least one check",
                    ));
                }
                if [Rule::Lag, Rule::Source, Rule::Peer]
                    .iter()
                    .any(|r| rules.contains(r))
                    && file.thresholds.max_lag.is_none()
                {
                    return Err(PolicyError::new("max_lag: the lag check needs a max_lag"));
                }
                Body::Checks {
                    rules,
                    thresholds: file.thresholds,
                    promotion_steps: file.promotion_steps,
                }
            }
            (None, Some(when_writable), Some(when_read_only)) => {
                if file.thresholds != Thresholds::default() || file.promotion_steps {
                    return Err(PolicyError::new(
                        "max_lag: a policy that picks by role takes its thresholds from the \
                         policies it picks",
                    ));
                }
                Body::ByRole {
                    when_writable,
                    when_read_only,
                    when_galera: file.when_galera,
                    when_group_primary: file.when_group_primary,
                    when_group_secondary: file.when_group_secondary,
                }
            }
            _ => {
                return Err(PolicyError::new(
                    "checks: give either `checks` or both `when_writable` and `when_read_only`",
                ))
            }
        };
        Ok(Policy {
            name: name.to_string(),
            description: file.description.unwrap_or_default(),
            body,
        })
    }
}

/// 1-based line number of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

pub(super) fn rule_name(rule: Rule) -> &'static str {
    match rule {
        Rule::Sample => "sample",
        Rule::Reachable => "reachable",
        Rule::Writable => "writable",
        Rule::ReplicaStatus => "replica_status",
        Rule::IoThread => "io_thread",
        Rule::SqlThread => "sql_thread",
        Rule::ReplicationErrors => "replication_errors",
        Rule::Lag => "lag",
        Rule::SqlError => "sql_error",
        Rule::Applied => "applied",
        Rule::Source => "source",
        Rule::Peer => "peer",
        Rule::NotDelayed => "not_delayed",
        Rule::Stall => "stall",
        Rule::Binlog => "binlog",
        Rule::Gtid => "gtid",
        Rule::ReadOnlyOn => "read_only",
        Rule::CompareSource => "source",
        Rule::ErrantTransactions => "errant_transactions",
        Rule::Galera => "galera",
        Rule::GrPrimary => "gr_primary",
        Rule::GrSecondary => "gr_secondary",
        Rule::Handover => "handover",
        Rule::Yield => "yield",
        Rule::SemiSync => "semi_sync",
        Rule::SemiSyncWait => "semi_sync_wait",
        Rule::WriterLease => "writer_lease",
        Rule::MostAdvanced => "most_advanced",
    }
}
