//! The counters and histograms behind `GET /metrics` that accumulate over the daemon's life:
//! check requests (HTTP handlers), poll durations and errors (pollers), refusals (listeners).
//! What describes an instance now is built at scrape time by [`crate::serve::http::scrape`] from the hub.

use crate::snapshot::sample::Sample;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::{Arc, RwLock};

/// Poll duration buckets, in seconds: a healthy local poll takes a few milliseconds; the
/// default `timeout` (500 ms) bounds each statement, so the top buckets show timeouts.
const POLL_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct InstanceLabels {
    pub(crate) instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    instance: String,
    /// The `ProbeErrorKind` in snake_case (`refused`, `timeout`, `access_denied`, ...).
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    /// The check endpoint in a bounded form: `/mysqlchk/` or `/{known policy}`, else `other`.
    endpoint: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    /// `http` or `agent`.
    listener: String,
    /// `allow_from` (address not allowed), `auth` (missing or wrong credentials),
    /// `tls` (handshake failed), `limit` (too many connections).
    reason: String,
}

fn new_poll_histogram() -> Histogram {
    Histogram::new(POLL_BUCKETS)
}

/// Which check counter a request lands on: the label set stays bounded by the configured
/// policies, whatever paths clients choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckEndpoint<'a> {
    /// `/mysqlchk/` or `/`: the instance's own policy.
    Own,
    /// `/{policy}` for a known policy: its position among the known ones, and its name.
    Policy(usize, &'a str),
    /// Any other name: counted as `other`.
    Other,
}

impl CheckEndpoint<'_> {
    /// A small key for the handle cache.
    fn slot(self) -> usize {
        match self {
            CheckEndpoint::Own => 0,
            CheckEndpoint::Other => 1,
            CheckEndpoint::Policy(i, _) => i + 2,
        }
    }

    fn label(self) -> String {
        match self {
            CheckEndpoint::Own => "/mysqlchk/".into(),
            CheckEndpoint::Other => "other".into(),
            CheckEndpoint::Policy(_, name) => format!("/{name}"),
        }
    }
}

/// Check counter handles already created, by endpoint slot and status code: a short list (a few
/// endpoints times a few codes), so a scan of small integers beats hashing a label.
type CheckCounters = Vec<(usize, u16, Counter)>;

/// The counters and histograms that accumulate over the daemon's life. Cheap to share: the
/// families are internally reference-counted and synchronised.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Check requests answered, by endpoint and status code (HTTP handlers).
    check_requests: Family<CheckLabels, Counter>,
    /// How long each poll took, connect and source read included (pollers).
    poll_duration: Family<InstanceLabels, Histogram, fn() -> Histogram>,
    /// Failed polls by error kind (pollers).
    poll_errors: Family<ErrorLabels, Counter>,
    /// Connections and requests refused by the listeners, by listener and reason.
    refused: Family<RefusedLabels, Counter>,
    /// Connections displaced by newer ones (fair admission), by listener and reason.
    displaced: Family<RefusedLabels, Counter>,
    /// The check counters already created, by endpoint and code: counting a check is then a
    /// short scan and an atomic increment, with no allocation on the hot path.
    check_counters: Arc<RwLock<CheckCounters>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            check_requests: Family::default(),
            poll_duration: Family::new_with_constructor(new_poll_histogram),
            poll_errors: Family::default(),
            refused: Family::default(),
            displaced: Family::default(),
            check_counters: Default::default(),
        }
    }
}

impl Metrics {
    /// Counts one answered check request: a lookup of two small integers under a read lock and
    /// an atomic increment, with no allocation once the endpoint and code have been seen.
    pub fn count_check(&self, endpoint: CheckEndpoint<'_>, code: u16) {
        let slot = endpoint.slot();
        // The lock guards only the handle cache (no .await inside); a poisoned one still holds
        // valid handles.
        let known = self
            .check_counters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(s, c, _)| *s == slot && *c == code)
            .map(|(_, _, counter)| counter.clone());
        let counter = known.unwrap_or_else(|| {
            let counter = self
                .check_requests
                .get_or_create(&CheckLabels {
                    endpoint: endpoint.label(),
                    code,
                })
                .clone();
            self.check_counters
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .push((slot, code, counter.clone()));
            counter
        });
        counter.inc();
    }

    /// Counts a connection or request refused by `listener` (`http`, `agent`) for `reason`.
    pub fn count_refused(&self, listener: &str, reason: &str) {
        self.refused
            .get_or_create(&RefusedLabels {
                listener: listener.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a connection of `listener` displaced to admit a newer one, for `reason`
    /// (`per_client`: its address was at `max_connections_per_client`; `full`: the listener was
    /// at its cap).
    pub fn count_displaced(&self, listener: &str, reason: &str) {
        self.displaced
            .get_or_create(&RefusedLabels {
                listener: listener.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Records one finished poll: its duration and, if it failed, why (pollers keep their
    /// histogram: [`Metrics::poll_histogram`]).
    #[cfg(test)]
    pub fn observe_poll(&self, instance: &str, sample: &Sample) {
        self.poll_histogram(instance)
            .observe(sample.duration.as_secs_f64());
        self.observe_poll_error(instance, sample);
    }

    /// The poll duration histogram of `instance`, for a poller to keep: observing it then
    /// costs no label, no allocation and no lookup per poll.
    pub fn poll_histogram(&self, instance: &str) -> Histogram {
        self.poll_duration
            .get_or_create(&InstanceLabels {
                instance: instance.to_string(),
            })
            .clone()
    }

    /// Records a failed poll's reason (nothing for a successful one).
    pub fn observe_poll_error(&self, instance: &str, sample: &Sample) {
        if let Err(err) = &sample.outcome {
            // ProbeErrorKind serialises as its snake_case name; anything else is a bug.
            let reason = serde_json::to_value(err.kind)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_else(|| "unknown".into());
            self.poll_errors
                .get_or_create(&ErrorLabels {
                    instance: instance.to_string(),
                    reason,
                })
                .inc();
        }
    }

    /// Registers the accumulated counters and histograms in a scrape's `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "poll_duration",
            "Duration of each poll, connect and source read included",
            Unit::Seconds,
            self.poll_duration.clone(),
        );
        registry.register(
            "poll_errors",
            "Failed polls by reason (the probe error kind)",
            self.poll_errors.clone(),
        );
        registry.register(
            "check_requests",
            "Check requests answered, by endpoint and HTTP status code",
            self.check_requests.clone(),
        );
        registry.register(
            "refused",
            "Connections and requests refused by the HTTP and agent listeners, by reason",
            self.refused.clone(),
        );
        registry.register(
            "displaced",
            "Connections that had not delivered a request, closed to admit a newer one (fair \
             admission), by listener and reason",
            self.displaced.clone(),
        );
    }
}
