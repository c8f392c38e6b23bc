//! Policies: named sets of checks with thresholds, read from TOML files, and their evaluation.
//!
//! Evaluation is a pure function of (policy, snapshot, thresholds, now) that returns a
//! [`Verdict`] with one entry per check. This package does no I/O, reads no clock and imports
//! nothing from tokio, mysql_async or warp; the built-in policy files are compiled in.
//!
//! - [`verdict`]: the vocabulary (`Input`, `Verdict`, `Check`, `Level`), the leaf the rest imports;
//! - [`file`](mod@file): the file format (`Rule`, `Thresholds`, `Policy`) and the built-ins;
//! - [`limits`]: `Limits`, the thresholds of one evaluation, resolved once;
//! - [`judge`](Judge): the policies and `max_sample_age` in force; the only builder of `Input`
//!   and the only place a sample is found fresh;
//! - [`set`]: `PolicySet`, evaluation by name, maintenance and picking by role;
//! - `rules`: the per-rule dispatch and the root cause;
//! - `channel`: per-channel checks (threads, errors, lag, relay log applied);
//! - `source`: `source`, `peer` and the memory they fall back on;
//! - `handover`: `handover` and `yield`, the ordered write handover in master-master;
//! - `semisync`: `semi_sync` (what acknowledged commits a backup can miss) and `semi_sync_wait`;
//! - `lag`: heartbeat, hysteresis and stall;
//! - `galera`: the `galera` rule (a Galera node fit for traffic);
//! - `group`: the `gr_primary` and `gr_secondary` rules (Group Replication);
//! - [`evidence`]: the source comparison (missing and errant transactions) behind the
//!   checklist, the backup gate's errant check and the memory newer readings void;
//! - [`promotion`]: the checklist's prerequisites and printed steps;
//! - [`siblings`]: `most_advanced`, the checklist's comparison with the other replicas of the
//!   same source a central guard watches;
//! - [`pool`]: pools that never empty (`min_serving`): who is admitted as degraded.

mod channel;
pub mod evidence;
pub mod file;
mod galera;
mod group;
mod handover;
mod judge;
mod lag;
mod lease;
pub mod limits;
pub mod pool;
pub mod promotion;
pub mod render;
mod rules;
mod semisync;
pub mod set;
pub mod siblings;
mod source;
pub mod verdict;

pub use file::{line_of, Body, Policy, Rule, Thresholds};
pub use judge::{Judge, Subject};
pub use limits::Limits;
pub use set::PolicySet;
pub use verdict::{Freshness, Verdict};
#[cfg(test)]
pub(crate) use {
    lag::{lag_recovery, Recovery},
    verdict::{Check, Level},
};

#[cfg(test)]
mod tests;
