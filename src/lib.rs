//! replguard: a replication-aware health check for MySQL and MariaDB behind HAProxy.
//!
//! A poller per instance samples replication state into immutable snapshots; HTTP checks are
//! answered from those snapshots by pure policies. The folders, from the leaves up (each
//! imports only those before it; ARCHITECTURE.md gives each one's invariant):
//!
//! - `units`: strict duration parsing and compact rendering.
//! - [`gtid`]: MySQL GTID sets and MariaDB GTID positions: strict parsing, set algebra (pure).
//! - `snapshot`: plain data: what one poll observed, the published snapshot and its memory.
//! - `policy`: policy files, `Limits`, the pure rules, the `Judge`, verdict rendering.
//! - [`config`]: the TOML configuration, its files, validation with clear errors.
//! - `probe`: the only code that talks to MySQL, bounded by timeouts.
//! - `hub`: the read side: latest snapshots, instance lookup, the judge, events, counters.
//! - `lease`: the writer lease in etcd (`[coordination]`).
//! - `poll`: the write side: the loop, the pure step, the state file, the fleet and reloads.
//! - `serve`: signals, systemd, the agent, the HTTP listener (`listen`) and routes (`http`).
//! - [`cli`]: the command line's commands and log formats.

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod gtid;
mod hub;
mod lease;
mod policy;
mod poll;
mod probe;
mod serve;
mod snapshot;
mod units;

// The rest of the face: what tests and fuzz targets drive besides the command line.
pub use hub::Selector;
pub use policy::{Body, Policy, Rule};
pub use poll::store::{parse as parse_state_file, Persisted};
pub use serve::agent::{
    parse_line as parse_agent_line, MAX_CONNECTIONS as AGENT_MAX_CONNECTIONS,
    MAX_LINE as AGENT_MAX_LINE,
};
pub use serve::http::{is_check_path, parse_params, Params};
pub use serve::{serve_reloading, ServeError};
