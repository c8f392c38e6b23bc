//! The `GET /metrics` body, in the Prometheus text exposition format (0.0.4), encoded by the
//! official `prometheus-client` crate.
//!
//! What describes an instance now (sample age, lag, thread states, every policy's verdict,
//! maintenance) is built afresh at each scrape from the hub's latest snapshots and verdicts, so
//! it can never disagree with what a check would answer; the counters that accumulate over time
//! come from [`Metrics`](crate::hub::metrics::Metrics). A scrape never touches MySQL and never waits
//! on a poller; its answer is 200 whatever the verdicts are: health is a value here.

use crate::hub::metrics::InstanceLabels;
use crate::hub::Hub;
use crate::snapshot::sample::ThreadState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::time::Instant;

/// The `Content-Type` of `/metrics`: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A gauge holding seconds or other fractional values.
type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    instance: String,
    /// The channel (MySQL) or connection (MariaDB) name; empty for the default one.
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    instance: String,
    channel: String,
    /// Where the lag was read: `seconds_behind` (`Seconds_Behind_Source`/`_Master`) or
    /// `heartbeat` (the configured heartbeat table).
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    instance: String,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabels {
    group: String,
    instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// The `/metrics` body at `now`: the instance families built from `hub`'s latest snapshots,
/// then the accumulated counters and histograms.
pub fn render(hub: &Hub, now: Instant) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("replguard");

    let build = Family::<BuildLabels, Gauge>::default();
    build
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
        .set(1);
    registry.register("build_info", "replguard's version; always 1", build);

    let reload = Gauge::<i64>::default();
    reload.set(i64::from(
        hub.shared().reload.last().is_none_or(|r| r.applied),
    ));
    registry.register(
        "config_last_reload_success",
        "0 when the latest config reload (SIGHUP) was refused and the old config is in force, else 1",
        reload,
    );

    let polls = Family::<InstanceLabels, Counter>::default();
    let age = Family::<InstanceLabels, FloatGauge>::default();
    let fresh = Family::<InstanceLabels, Gauge>::default();
    let poll_ok = Family::<InstanceLabels, Gauge>::default();
    let maintenance = Family::<InstanceLabels, Gauge>::default();
    let lag = Family::<LagLabels, FloatGauge>::default();
    let io_running = Family::<ChannelLabels, Gauge>::default();
    let sql_running = Family::<ChannelLabels, Gauge>::default();
    let source_lost = Family::<ChannelLabels, FloatGauge>::default();
    let healthy = Family::<PolicyLabels, Gauge>::default();
    let galera_state = Family::<InstanceLabels, Gauge>::default();
    let galera_primary = Family::<InstanceLabels, Gauge>::default();
    let galera_ready = Family::<InstanceLabels, Gauge>::default();
    let galera_size = Family::<InstanceLabels, Gauge>::default();
    let galera_recv = Family::<InstanceLabels, Gauge>::default();
    let galera_paused = Family::<InstanceLabels, FloatGauge>::default();
    let gr_online = Family::<InstanceLabels, Gauge>::default();
    let gr_primary = Family::<InstanceLabels, Gauge>::default();
    let gr_members_online = Family::<InstanceLabels, Gauge>::default();
    let gr_applier = Family::<InstanceLabels, Gauge>::default();
    let gr_cert = Family::<InstanceLabels, Gauge>::default();
    let semi_status = Family::<InstanceLabels, Gauge>::default();
    let semi_clients = Family::<InstanceLabels, Gauge>::default();
    let semi_waiting = Family::<InstanceLabels, Gauge>::default();
    let semi_replica = Family::<InstanceLabels, Gauge>::default();
    let lease_held = Family::<LeaseLabels, Gauge>::default();

    for w in hub.instances() {
        let snap = w.latest();
        let name = &w.config.name;
        let inst = InstanceLabels {
            instance: name.clone(),
        };
        polls.get_or_create(&inst).inc_by(snap.polls);
        let sample_age = snap.age(now);
        fresh
            .get_or_create(&inst)
            .set(i64::from(hub.judge().freshness(&snap, now).is_fresh()));
        if let Some(a) = sample_age {
            age.get_or_create(&inst).set(a.as_secs_f64());
        }
        if let Some(l) = snap.sample.as_ref().and_then(|s| s.lease.as_ref()) {
            lease_held
                .get_or_create(&LeaseLabels {
                    group: l.group.clone(),
                    instance: name.clone(),
                })
                .set(i64::from(l.confirmed(now)));
        }
        for v in hub.judge().verdicts(w.config.subject(), &snap, now) {
            healthy
                .get_or_create(&PolicyLabels {
                    instance: name.clone(),
                    policy: v.policy,
                })
                .set(i64::from(v.healthy));
        }
        let Some(sample) = snap.sample.as_deref() else {
            continue;
        };
        poll_ok
            .get_or_create(&inst)
            .set(i64::from(sample.outcome.is_ok()));
        maintenance
            .get_or_create(&inst)
            .set(i64::from(sample.maintenance.is_some()));
        // A failed poll says nothing about the channels: their series are absent then.
        let Ok(state) = &sample.outcome else { continue };
        if let Some(g) = &state.group {
            gr_online
                .get_or_create(&inst)
                .set(i64::from(g.state == "ONLINE"));
            gr_primary
                .get_or_create(&inst)
                .set(i64::from(g.role == "PRIMARY"));
            let online = g.members.iter().filter(|m| m.state == "ONLINE").count();
            gr_members_online
                .get_or_create(&inst)
                .set(i64::try_from(online).unwrap_or(i64::MAX));
            // Unknown queues are absent, never 0.
            if let Some(q) = g.applier_queue {
                gr_applier
                    .get_or_create(&inst)
                    .set(i64::try_from(q).unwrap_or(i64::MAX));
            }
            if let Some(q) = g.cert_queue {
                gr_cert
                    .get_or_create(&inst)
                    .set(i64::try_from(q).unwrap_or(i64::MAX));
            }
        }
        // Absent where unknown (no semi-sync, unreadable, not reported): never a made-up 0.
        if let Some(s) = state.semi_sync.as_ref().filter(|s| s.error.is_none()) {
            let set = |f: &Family<InstanceLabels, Gauge>, v: Option<u64>| {
                if let Some(v) = v {
                    f.get_or_create(&inst)
                        .set(i64::try_from(v).unwrap_or(i64::MAX));
                }
            };
            set(&semi_status, s.source_status.map(u64::from));
            set(&semi_clients, s.clients);
            set(&semi_waiting, s.wait_sessions);
            set(&semi_replica, s.replica_status.map(u64::from));
        }
        if let Some(g) = &state.galera {
            galera_state
                .get_or_create(&inst)
                .set(i64::from(g.local_state));
            galera_primary
                .get_or_create(&inst)
                .set(i64::from(g.cluster_status == "Primary"));
            galera_ready.get_or_create(&inst).set(i64::from(g.ready));
            galera_size
                .get_or_create(&inst)
                .set(i64::from(g.cluster_size));
            galera_recv
                .get_or_create(&inst)
                .set(i64::try_from(g.recv_queue).unwrap_or(i64::MAX));
            galera_paused
                .get_or_create(&inst)
                .set(g.flow_control_paused);
        }
        // The heartbeat table's lag is the server's (worst over its source rows), not one
        // channel's: it carries an empty channel. Negative (the source's clock ahead) reads
        // as 0, as the policies judge it; an unreadable heartbeat is absent.
        if let Some(Ok(us)) = state.heartbeat {
            lag.get_or_create(&LagLabels {
                instance: name.clone(),
                channel: String::new(),
                source: "heartbeat".into(),
            })
            .set(us.max(0) as f64 / 1e6);
        }
        for ch in &state.channels {
            let labels = ChannelLabels {
                instance: name.clone(),
                channel: ch.name.clone(),
            };
            // NULL lag is unknown, not zero: the series is absent.
            if let Some(l) = ch.lag {
                lag.get_or_create(&LagLabels {
                    instance: name.clone(),
                    channel: ch.name.clone(),
                    source: "seconds_behind".into(),
                })
                .set(l.as_secs_f64());
            }
            io_running
                .get_or_create(&labels)
                .set(i64::from(ch.io_thread == ThreadState::Yes));
            sql_running
                .get_or_create(&labels)
                .set(i64::from(ch.sql_thread == ThreadState::Yes));
            // Connected: 0. Not connected: time since it was last seen connected; never seen
            // connected (in this run or the state file): unknown, so absent.
            let lost = if ch.io_thread == ThreadState::Yes {
                Some(0.0)
            } else {
                snap.memory
                    .io_last_connected
                    .get(&ch.name)
                    .map(|seen| now.saturating_duration_since(seen.at).as_secs_f64())
            };
            if let Some(lost) = lost {
                source_lost.get_or_create(&labels).set(lost);
            }
        }
    }

    registry.register(
        "polls",
        "Polls finished since replguard started, successful or not",
        polls,
    );
    registry.register_with_unit(
        "sample_age",
        "Age of the latest sample (absent before the first poll)",
        Unit::Seconds,
        age,
    );
    registry.register(
        "sample_fresh",
        "1 when the latest sample is no older than max_sample_age, else 0",
        fresh,
    );
    registry.register(
        "last_poll_success",
        "1 when the latest poll read the server, 0 when it failed",
        poll_ok,
    );
    registry.register(
        "maintenance",
        "1 when the instance's maintenance file is present",
        maintenance,
    );
    registry.register_with_unit(
        "replication_lag",
        "Replication lag per channel by source of the reading (absent when the server reports NULL)",
        Unit::Seconds,
        lag,
    );
    registry.register(
        "io_thread_running",
        "1 when the channel's IO thread is Yes (Connecting and No are 0)",
        io_running,
    );
    registry.register(
        "sql_thread_running",
        "1 when the channel's SQL thread is Yes",
        sql_running,
    );
    registry.register_with_unit(
        "source_lost",
        "Time since the channel's IO thread was last seen connected; 0 while connected",
        Unit::Seconds,
        source_lost,
    );
    registry.register(
        "gr_member_online",
        "1 when this Group Replication member is ONLINE (MEMBER_STATE), else 0",
        gr_online,
    );
    registry.register(
        "gr_primary",
        "1 when this Group Replication member is the PRIMARY (MEMBER_ROLE), else 0",
        gr_primary,
    );
    registry.register(
        "gr_members_online",
        "Group members this member sees ONLINE, itself included",
        gr_members_online,
    );
    registry.register(
        "gr_applier_queue",
        "Transactions waiting to be applied (COUNT_TRANSACTIONS_REMOTE_IN_APPLIER_QUEUE)",
        gr_applier,
    );
    registry.register(
        "gr_cert_queue",
        "Transactions waiting for certification (COUNT_TRANSACTIONS_IN_QUEUE)",
        gr_cert,
    );
    registry.register(
        "galera_local_state",
        "wsrep_local_state of a Galera node: 1 Joining, 2 Donor/Desynced, 3 Joined, 4 Synced",
        galera_state,
    );
    registry.register(
        "galera_primary_component",
        "1 when the Galera node is in the Primary component (wsrep_cluster_status), else 0",
        galera_primary,
    );
    registry.register(
        "galera_ready",
        "1 when the Galera node accepts queries (wsrep_ready)",
        galera_ready,
    );
    registry.register(
        "galera_cluster_size",
        "Nodes in the Galera node's component (wsrep_cluster_size)",
        galera_size,
    );
    registry.register(
        "galera_recv_queue",
        "Write-sets received but not applied (wsrep_local_recv_queue)",
        galera_recv,
    );
    registry.register(
        "semi_sync_status",
        "1 when semi-sync is really on at this server as a source (Rpl_semi_sync_master_status / _source_status); 0 when enabled but fallen back to asynchronous, or off",
        semi_status,
    );
    registry.register(
        "semi_sync_clients",
        "Acking semi-sync replicas connected to this server (Rpl_semi_sync_master_clients)",
        semi_clients,
    );
    registry.register(
        "semi_sync_wait_sessions",
        "Sessions waiting for a semi-sync ack now (Rpl_semi_sync_master_wait_sessions)",
        semi_waiting,
    );
    registry.register(
        "semi_sync_replica_status",
        "1 when this server is an acking semi-sync replica of its source (Rpl_semi_sync_slave_status)",
        semi_replica,
    );
    registry.register(
        "galera_flow_control_paused",
        "Fraction of time paused by flow control (wsrep_flow_control_paused)",
        galera_paused,
    );
    registry.register(
        "writer_lease_held",
        "1 while this instance holds its writer group's lease in etcd, confirmed within the TTL minus the fence margin",
        lease_held,
    );
    registry.register(
        "policy_healthy",
        "1 when the instance passes the policy now on its own (what a check would answer 200 to, unless its pool admits it as degraded)",
        healthy,
    );
    let pool_members = Family::<PoolLabels, Gauge>::default();
    let pool_healthy = Family::<PoolLabels, Gauge>::default();
    let pool_degraded = Family::<PoolLabels, Gauge>::default();
    let pool_min = Family::<PoolLabels, Gauge>::default();
    for h in hub.pools(now) {
        let l = PoolLabels {
            pool: h.config.name.clone(),
        };
        pool_members
            .get_or_create(&l)
            .set(h.standing.members as i64);
        pool_healthy
            .get_or_create(&l)
            .set(h.standing.healthy as i64);
        pool_degraded
            .get_or_create(&l)
            .set(h.standing.admitted.len() as i64);
        pool_min
            .get_or_create(&l)
            .set(h.standing.min_serving as i64);
    }
    registry.register(
        "pool_members",
        "Members of the read pool ([[pool]])",
        pool_members,
    );
    registry.register(
        "pool_healthy",
        "Members of the pool that pass their own policy",
        pool_healthy,
    );
    registry.register(
        "pool_degraded",
        "Members the pool admits as degraded (failing only on lag) to keep min_serving",
        pool_degraded,
    );
    registry.register("pool_min_serving", "The pool's min_serving", pool_min);
    hub.metrics().register(&mut registry);

    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InstanceConfig;
    use crate::hub::metrics::CheckEndpoint;
    use crate::snapshot::sample::fixtures::{primary, replica, snap};
    use crate::snapshot::sample::Sample;
    use crate::snapshot::sample::{ProbeError, ProbeErrorKind, ServerState};
    use crate::snapshot::Snapshot;
    use std::time::{Duration, SystemTime};

    fn watched(name: &str, s: Snapshot) -> (InstanceConfig, Snapshot) {
        (crate::config::fixtures::instance(name, 3306, "replica"), s)
    }

    fn hub(instances: Vec<(InstanceConfig, Snapshot)>) -> Hub {
        Hub::with_snapshots(instances)
    }

    /// The sample lines of `text` (no comments), as `name{labels} value`.
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    fn has(text: &str, line: &str) -> bool {
        samples(text).contains(&line)
    }

    #[test]
    fn instance_metrics_from_snapshots() {
        let now = Instant::now();
        let mut lost = replica();
        lost.channels[0].io_thread = ThreadState::Connecting;
        lost.channels[0].lag = None;
        // Seen connected 10s before `now`, then lost.
        let connected = snap(Ok(replica()), now, Duration::from_secs(10));
        let s = connected.next(Sample {
            taken_at: now - Duration::from_millis(500),
            taken_at_wall: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(3),
            outcome: Ok(lost),
            source: None,
            maintenance: Some("kernel".into()),
            maintenance_error: None,
            lease: None,
        });
        let mut lagging: ServerState = replica();
        lagging.channels[0].lag = Some(Duration::from_secs(4));
        lagging.heartbeat = Some(Ok(3_500_000));
        let h = hub(vec![
            watched("db1", snap(Ok(primary()), now, Duration::from_millis(100))),
            watched("db2", snap(Ok(lagging), now, Duration::from_secs(1))),
            watched("db3", s),
            watched("new", Snapshot::default()),
        ]);
        let text = render(&h, now).unwrap();
        #[rustfmt::skip]
        let want = [
            r#"replguard_build_info{version="0.1.0"} 1"#,
            r#"replguard_sample_age_seconds{instance="db2"} 1.0"#,
            r#"replguard_sample_fresh{instance="db2"} 1"#,
            r#"replguard_sample_fresh{instance="new"} 0"#,
            r#"replguard_polls_total{instance="new"} 0"#,
            r#"replguard_polls_total{instance="db3"} 2"#,
            r#"replguard_replication_lag_seconds{instance="db2",channel="",source="seconds_behind"} 4.0"#,
            r#"replguard_replication_lag_seconds{instance="db2",channel="",source="heartbeat"} 3.5"#,
            r#"replguard_io_thread_running{instance="db2",channel=""} 1"#,
            r#"replguard_io_thread_running{instance="db3",channel=""} 0"#,
            r#"replguard_sql_thread_running{instance="db3",channel=""} 1"#,
            r#"replguard_source_lost_seconds{instance="db2",channel=""} 0.0"#,
            r#"replguard_source_lost_seconds{instance="db3",channel=""} 10.0"#,
            r#"replguard_maintenance{instance="db3"} 1"#,
            r#"replguard_maintenance{instance="db2"} 0"#,
            r#"replguard_policy_healthy{instance="db1",policy="primary"} 1"#,
            r#"replguard_policy_healthy{instance="db1",policy="replica"} 0"#,
            r#"replguard_policy_healthy{instance="db2",policy="replica"} 1"#,
            r#"replguard_policy_healthy{instance="db3",policy="replica"} 0"#,
            r#"replguard_policy_healthy{instance="new",policy="replica"} 0"#,
        ];
        for line in want {
            assert!(has(&text, line), "missing {line:?} in\n{text}");
        }
        // NULL lag is absent, never 0; an instance without a sample has no age.
        assert!(
            !text.contains(r#"replguard_replication_lag_seconds{instance="db3""#),
            "{text}"
        );
        assert!(
            !text.contains(r#"replguard_sample_age_seconds{instance="new"}"#),
            "{text}"
        );
        // A primary has no channel series.
        assert!(!text.contains(r#"thread_running{instance="db1""#), "{text}");
    }

    #[test]
    fn counters_from_pollers_and_http() {
        let h = hub(vec![]);
        let failed = |kind| Sample {
            taken_at: Instant::now(),
            taken_at_wall: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(30),
            outcome: Err(ProbeError {
                kind,
                errno: None,
                message: "x".into(),
            }),
            source: None,
            maintenance: None,
            maintenance_error: None,
            lease: None,
        };
        h.metrics()
            .observe_poll("db1", &failed(ProbeErrorKind::AccessDenied));
        h.metrics()
            .observe_poll("db1", &failed(ProbeErrorKind::AccessDenied));
        h.metrics()
            .observe_poll("db1", &failed(ProbeErrorKind::Timeout));
        let replica = h.judge().policies().position("replica").unwrap();
        h.metrics()
            .count_check(CheckEndpoint::Policy(replica, "replica"), 503);
        h.metrics()
            .count_check(CheckEndpoint::Policy(replica, "replica"), 503);
        h.metrics().count_check(CheckEndpoint::Own, 200);
        h.metrics().count_check(CheckEndpoint::Other, 404);
        let text = render(&h, Instant::now()).unwrap();
        #[rustfmt::skip]
        let want = [
            r#"replguard_poll_errors_total{instance="db1",reason="access_denied"} 2"#,
            r#"replguard_poll_errors_total{instance="db1",reason="timeout"} 1"#,
            r#"replguard_check_requests_total{endpoint="/replica",code="503"} 2"#,
            r#"replguard_check_requests_total{endpoint="/mysqlchk/",code="200"} 1"#,
            r#"replguard_check_requests_total{endpoint="other",code="404"} 1"#,
            r#"replguard_poll_duration_seconds_count{instance="db1"} 3"#,
            r#"replguard_poll_duration_seconds_bucket{instance="db1",le="0.05"} 3"#,
            r#"replguard_poll_duration_seconds_bucket{instance="db1",le="0.025"} 0"#,
        ];
        for line in want {
            assert!(has(&text, line), "missing {line:?} in\n{text}");
        }
        assert!(text.contains("# TYPE replguard_poll_duration_seconds histogram"));
        assert!(text.contains("# TYPE replguard_check_requests_total counter"));
    }
}
