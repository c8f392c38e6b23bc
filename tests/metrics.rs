//! `/metrics` and `/events` against real MariaDB replication, and `--log-format json`.
//!
//! The exposition is checked by `promtool check metrics` (Debian's `prometheus` package), the
//! linter Prometheus itself ships. Without promtool the test fails under CI and says so
//! elsewhere, after checking everything else.

mod common;

use common::guard::{instance_block, Guard, FAST};
use common::mariadb::MariaDb;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

async fn pair() -> (MariaDb, MariaDb) {
    let (primary, replica) =
        tokio::join!(MariaDb::start("mprimary", 1), MariaDb::start("mreplica", 2));
    replica.replicate_from(&primary).await;
    replica.exec("SET GLOBAL read_only = ON").await;
    (primary, replica)
}

/// The value of the sample line `series` (name and labels exactly as written), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    })
}

/// Runs `promtool check metrics` on `text`: `Err` with its complaint, or `Ok(false)` when
/// promtool is not installed.
fn promtool(text: &str) -> Result<bool, String> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("cannot run promtool: {e}")),
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool finishes");
    if out.status.success() {
        Ok(true)
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_events_follow_replication() {
    let (primary, replica) = pair().await;
    let g = Guard::start(FAST, |dir| {
        instance_block(dir, "db1", &primary, "auto", "")
            + &instance_block(dir, "db2", &replica, "backup", "")
    })
    .await;
    g.wait_for("/mysqlchk/?instance=db2", Duration::from_secs(20), |r| {
        r.status == 200
    })
    .await;
    g.get("/replica?instance=db2").await;
    g.get("/replica?instance=db2&max_lag=nonsense").await;

    let m = g.get("/metrics").await;
    assert_eq!(m.status, 200);
    let text = m.body;
    #[rustfmt::skip]
    let want = [
        (r#"replguard_policy_healthy{instance="db2",policy="backup"}"#, 1.0),
        (r#"replguard_policy_healthy{instance="db2",policy="replica"}"#, 1.0),
        (r#"replguard_policy_healthy{instance="db1",policy="primary"}"#, 1.0),
        (r#"replguard_policy_healthy{instance="db1",policy="replica"}"#, 0.0),
        (r#"replguard_io_thread_running{instance="db2",channel=""}"#, 1.0),
        (r#"replguard_sql_thread_running{instance="db2",channel=""}"#, 1.0),
        (r#"replguard_source_lost_seconds{instance="db2",channel=""}"#, 0.0),
        (r#"replguard_sample_fresh{instance="db1"}"#, 1.0),
        (r#"replguard_maintenance{instance="db1"}"#, 0.0),
        (r#"replguard_check_requests_total{endpoint="/replica",code="200"}"#, 1.0),
        (r#"replguard_check_requests_total{endpoint="/replica",code="400"}"#, 1.0),
        (r#"replguard_build_info{version="0.1.0"}"#, 1.0),
    ];
    for (series, v) in want {
        assert_eq!(value(&text, series), Some(v), "{series} in\n{text}");
    }
    let lag = value(
        &text,
        r#"replguard_replication_lag_seconds{instance="db2",channel="",source="seconds_behind"}"#,
    );
    assert!(lag.is_some_and(|l| l < 5.0), "{text}");
    assert!(
        value(&text, r#"replguard_sample_age_seconds{instance="db2"}"#).is_some_and(|a| a < 1.0),
        "{text}"
    );
    assert!(
        value(
            &text,
            r#"replguard_poll_duration_seconds_count{instance="db2"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    // A primary has no channels, so no lag series: absent, not 0.
    assert!(!text.contains(r#"replguard_replication_lag_seconds{instance="db1""#));

    match promtool(&text) {
        Ok(true) => {}
        Ok(false) if std::env::var_os("CI").is_some() => {
            panic!("promtool not found: deploy/sandbox/install-deps.sh installs it (prometheus)")
        }
        Ok(false) => eprintln!(
            "WARNING: promtool not found, exposition not linted; \
             run deploy/sandbox/install-deps.sh"
        ),
        Err(complaint) => panic!("promtool check metrics refused /metrics:\n{complaint}\n{text}"),
    }

    // The replica's SQL thread stops: the metrics say so, and /events records when and why.
    replica.exec("STOP SLAVE SQL_THREAD").await;
    let m = g
        .wait_for("/metrics", Duration::from_secs(10), |r| {
            value(
                &r.body,
                r#"replguard_policy_healthy{instance="db2",policy="backup"}"#,
            ) == Some(0.0)
        })
        .await;
    assert_eq!(m.status, 200, "/metrics is 200 whatever the verdicts");
    assert_eq!(
        value(
            &m.body,
            r#"replguard_sql_thread_running{instance="db2",channel=""}"#
        ),
        Some(0.0)
    );

    let ev = g
        .wait_for("/events?instance=db2", Duration::from_secs(5), |r| {
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
            v["events"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|e| e["policy"] == "backup" && e["kind"] == "unhealthy")
                    && l.iter()
                        .any(|e| e["policy"] == "replica" && e["kind"] == "unhealthy")
            })
        })
        .await;
    let v: serde_json::Value = serde_json::from_str(&ev.body).expect("events are JSON");
    let list = v["events"].as_array().expect("events list");
    // Every policy's changes are kept; the instance's own policy (backup) is the one to follow.
    let backup: Vec<&serde_json::Value> = list.iter().filter(|e| e["policy"] == "backup").collect();
    let kinds: Vec<&str> = backup.iter().filter_map(|e| e["kind"].as_str()).collect();
    // The first verdict may have come before replication settled; the last two are these.
    assert!(kinds.ends_with(&["healthy", "unhealthy"]), "{}", ev.body);
    let bad = backup[backup.len() - 1];
    assert_eq!(bad["instance"], "db2");
    assert_eq!(bad["policy"], "backup");
    assert_eq!(bad["check"], "sql_thread");
    assert_eq!(bad["reason"], "No, want Yes");
    let at = bad["at"].as_str().expect("timestamp");
    humantime::parse_rfc3339(at).unwrap_or_else(|e| panic!("{at} is not RFC 3339: {e}"));

    // All instances without ?instance=; an unknown one is a 404.
    // The other policies' changes are there too: the replica policy failed at the same poll.
    assert!(
        list.iter()
            .any(|e| e["policy"] == "replica" && e["kind"] == "unhealthy"),
        "{}",
        ev.body
    );
    let all = g.get("/events").await;
    assert!(all.body.contains("\"db1\"") && all.body.contains("\"db2\""));
    assert_eq!(g.get("/events?instance=nope").await.status, 404);
    g.stop().await;
}

/// `--log-format json`: every log line on stderr is one JSON object with the event's fields at
/// the top level.
#[test]
fn log_format_json() {
    let dir = tempfile::tempdir().unwrap();
    let pw = common::mariadb::write_password_file(dir.path(), "pw", "x");
    // Nothing listens on port 1: the poll fails and the transition is logged.
    let config = dir.path().join("replguard.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ninterval = \"300ms\"\ntimeout = \"200ms\"\n\
             [[instance]]\nname = \"gone\"\nhost = \"127.0.0.1\"\nport = 1\nuser = \"u\"\n\
             password_file = \"{}\"\npolicy = \"replica\"\n",
            pw.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_replguard"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("run replguard");
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let out = child.wait_with_output().expect("replguard output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let unhealthy = lines
        .iter()
        .find(|l| l["message"] == "unhealthy")
        .unwrap_or_else(|| panic!("no unhealthy line in\n{stderr}"));
    assert_eq!(unhealthy["level"], "WARN");
    assert_eq!(unhealthy["instance"], "gone");
    assert_eq!(unhealthy["policy"], "replica");
    assert!(unhealthy["reason"].is_string(), "{unhealthy}");
}
