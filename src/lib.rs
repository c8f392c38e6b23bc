//! replguard: a replication-aware health check for MySQL and MariaDB behind HAProxy.
//!
//! A poller per instance samples replication state into immutable snapshots; HTTP checks are
//! answered from those snapshots by pure policies. Modules:
//!
//! - [`agent`]: the HAProxy agent-check listener: weight from lag, drain, down with a reason.
//! - [`check`]: one-shot evaluation for `replguard check` and `checklist`.
//! - [`config`]: the TOML configuration, credentials files, validation with clear errors.
//! - [`units`]: strict duration parsing and compact rendering.
//! - [`gtid`]: MySQL GTID sets and MariaDB GTID positions: strict parsing, set algebra (pure).
//! - [`sample`]: what one poll observed (plain data), and which lag is judged.
//! - [`snapshot`]: the published unit (latest sample + memory across polls), pure transitions.
//! - [`policy`]: policy files, `Limits`, and their pure evaluation into verdicts (no I/O, no
//!   tokio), with the promotion checklist and the source evidence.
//! - [`probe`]: the only module that talks to MySQL (mysql_async), bounded by timeouts; the
//!   replica's source watch beside it.
//! - [`tlsname`]: `VERIFY_CA` on rustls: the name a server's CA-signed certificate holds.
//! - [`poller`]: the per-instance loop around a pure step that publishes snapshots.
//! - [`hub`]: the read façade: latest snapshots, instance lookup, every verdict for readers.
//! - [`report`]: text/JSON rendering of verdicts and `/status`.
//! - [`http`]: warp endpoints for HAProxy and people, and their answer cache; never touches MySQL.
//! - [`httpd`]: the HTTP/1.1 listener: header and idle timeouts, shutdown deadline.
//! - [`signals`]: SIGTERM/SIGINT stop, SIGHUP reloads, the rest is logged and ignored.
//! - [`logs`]: the log line formats (text, JSON, journald priorities).
//! - [`admission`]: fair admission for both listeners: caps in all and per client address,
//!   displacement of silent connections instead of refusal.
//! - [`store`]: the state file that carries memory across replguard restarts.
//! - [`serve`]: wiring of the hub, pollers and listeners under one shutdown token.
//! - [`metrics`]: the counters and histograms (check requests, polls, refusals).
//! - [`scrape`]: the `/metrics` body, built from the hub's snapshots at scrape time.
//! - [`fleet`]: the running pollers and the hub over them; config reloads without a gap.
//! - [`notify`]: systemd readiness and watchdog keep-alives.
//! - [`events`]: the bounded log of transitions (verdicts, source lost/found, maintenance).
//! - [`web`]: the `[web]` settings (`allow_from`, basic auth, TLS) and the TLS acceptor.
//! - [`gate`]: applies them to connections and requests; counts refusals.
//! - [`maintenance`]: `replguard maintenance`: the switch file and the daemon's confirmation.
//! - [`paths`]: which request paths are checks (for the routes and `auth_exempt`).
//! - [`ui`]: the embedded status page (`/ui`), which reads `/status` and `/events`.

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
