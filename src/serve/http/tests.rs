use super::params::plain_pairs;
use super::*;
use crate::config::InstanceConfig;
use crate::policy::Thresholds;
use crate::snapshot::sample::fixtures::{primary, replica, snap};
use crate::snapshot::sample::{ProbeError, ProbeErrorKind};
use crate::snapshot::Snapshot;
use std::time::{Duration, Instant};
use warp::http::Response;
use warp::hyper::body::Bytes;

use crate::config::fixtures::instance as inst;

fn hub(entries: Vec<(InstanceConfig, Snapshot)>) -> Arc<Hub> {
    Arc::new(Hub::with_snapshots(entries))
}

fn fresh(state: crate::snapshot::sample::ServerState) -> Snapshot {
    snap(Ok(state), Instant::now(), Duration::from_millis(100))
}

/// A primary on 3306 and a replica on 3307 lagging 4s.
fn pair() -> Arc<Hub> {
    let mut lagging = replica();
    lagging.channels[0].lag = Some(Duration::from_secs(4));
    hub(vec![
        (inst("db1", 3306, "auto"), fresh(primary())),
        (inst("db2", 3307, "auto"), fresh(lagging)),
    ])
}

async fn get(hub: &Arc<Hub>, method: &str, path: &str) -> Response<Bytes> {
    warp::test::request()
        .method(method)
        .path(path)
        .reply(&routes(hub.clone()))
        .await
}

fn body(r: &Response<Bytes>) -> String {
    String::from_utf8(r.body().to_vec()).unwrap()
}

fn reason(r: &Response<Bytes>) -> Option<String> {
    r.extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|p| String::from_utf8(p.as_bytes().to_vec()).unwrap())
}

#[tokio::test]
async fn status_codes_by_request() {
    let h = pair();
    #[rustfmt::skip]
    let cases: &[(&str, &str, u16)] = &[
        ("GET", "/mysqlchk/?port=3306", 200),
        ("GET", "/mysqlchk?port=3306", 200),
        ("HEAD", "/mysqlchk/?port=3306", 200),
        ("OPTIONS", "/?port=3306", 200),
        ("GET", "/mysqlchk/?instance=db2", 200),
        ("GET", "/check/replica?port=3307", 200),
        ("GET", "/replica?port=3307", 200),
        ("GET", "/replica?port=3307&max_lag=3s", 503),
        ("GET", "/replica?port=3306", 503),
        ("GET", "/primary?port=3306", 200),
        ("GET", "/primary?port=3307", 503),
        ("GET", "/", 400),
        ("GET", "/mysqlchk/", 400),
        ("GET", "/replica?port=3307&max_lag=3", 400),
        ("GET", "/replica?port=3307&max_lag=", 400),
        ("GET", "/replica?port=3307&max_lag=-1s", 400),
        ("GET", "/replica?port=3307&max_lag=1s&max_lag=9s", 400),
        ("GET", "/replica?port=x", 400),
        ("GET", "/replica?port=3307&colour=red", 400),
        ("GET", "/replica?port=9999", 404),
        ("GET", "/replica?instance=nope", 404),
        ("GET", "/check/nope?port=3307", 404),
        ("GET", "/nope?port=3307", 404),
        ("GET", "/a/b/c", 404),
        ("POST", "/replica?port=3307", 405),
        ("PUT", "/status", 405),
        ("GET", "/healthz", 200),
        ("GET", "/status", 200),
    ];
    for (method, path, want) in cases {
        let r = get(&h, method, path).await;
        assert_eq!(r.status().as_u16(), *want, "{method} {path}: {}", body(&r));
    }
}

proptest::proptest! {
    /// The undecoded fast path splits exactly as form_urlencoded does, for any query it is
    /// taken for (no `%`, no `+`).
    #[test]
    fn plain_queries_split_as_form_urlencoded_does(raw in "[a-z0-9=&_.]{0,24}") {
        let fast: Vec<_> = plain_pairs(&raw).collect();
        let slow: Vec<_> = form_urlencoded::parse(raw.as_bytes()).collect();
        proptest::prop_assert_eq!(fast, slow);
    }
}

#[test]
fn check_paths_match_as_warp_path_segments_would() {
    use CheckPath::{Named, Own};
    #[rustfmt::skip]
    let cases: &[(&str, Option<CheckPath>)] = &[
        ("/", Some(Own)),
        ("/mysqlchk", Some(Own)),
        ("/mysqlchk/", Some(Own)),
        ("/replica", Some(Named("replica"))),
        ("/replica/", Some(Named("replica"))),
        ("/check/replica", Some(Named("replica"))),
        ("/check/replica/", Some(Named("replica"))),
        // Unknown names are still check paths: they are answered "no policy named ...".
        ("/nope", Some(Named("nope"))),
        ("/check", Some(Named("check"))),
        ("/check/", Some(Named("check"))),
        // Fixed endpoints and other shapes are left to the other routes (or 404).
        ("/healthz", None),
        ("/status", None),
        ("/metrics/", None),
        ("/ui", None),
        ("/events", None),
        ("//", None),
        ("/check//replica", None),
        ("/check/replica/x", None),
        ("/a/b", None),
        ("/replica//", None),
        ("", None),
    ];
    for (path, want) in cases {
        assert_eq!(check_path(path), *want, "{path:?}");
    }
}

#[tokio::test]
async fn unknown_policies_are_counted_as_other() {
    let h = pair();
    assert_eq!(get(&h, "GET", "/nope?port=3307").await.status(), 404);
    assert_eq!(get(&h, "GET", "/replica?port=3307").await.status(), 200);
    let text = crate::serve::http::scrape::render(&h, Instant::now()).unwrap();
    for line in [
        r#"replguard_check_requests_total{endpoint="other",code="404"} 1"#,
        r#"replguard_check_requests_total{endpoint="/replica",code="200"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[tokio::test]
async fn one_instance_needs_no_selector() {
    let h = hub(vec![(inst("only", 3306, "replica"), fresh(replica()))]);
    for path in ["/", "/mysqlchk/", "/replica", "/check/replica"] {
        assert_eq!(get(&h, "GET", path).await.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn failing_check_names_its_reason_in_body_and_status_line() {
    let h = pair();
    let r = get(&h, "GET", "/replica?port=3307&max_lag=2s").await;
    assert_eq!(r.status(), 503);
    assert_eq!(reason(&r).as_deref(), Some("lag 4s > 2s"));
    let text = body(&r);
    assert!(text.lines().any(|l| l == "FAIL lag 4s > 2s"), "{text}");
    assert!(
        text.lines()
            .all(|l| l.starts_with("ok ") || l.starts_with("FAIL ") || l.starts_with("-- ")),
        "{text}"
    );
    assert_eq!(r.headers()["content-type"], TEXT);
    // A passing answer carries no custom reason.
    let r = get(&h, "GET", "/replica?port=3307").await;
    assert_eq!((r.status().as_u16(), reason(&r)), (200, None));
    assert!(body(&r).contains("ok lag 4s <= 10s"), "{}", body(&r));
}

#[tokio::test]
async fn fails_closed_without_a_sample_or_with_a_stale_or_failed_one() {
    let denied = ProbeError {
        kind: ProbeErrorKind::AccessDenied,
        errno: Some(1045),
        message: "Access denied for user 'replguard'@'localhost' (using password: YES)".into(),
    };
    let h = hub(vec![
        (inst("new", 1, "replica"), Snapshot::default()),
        (
            inst("stale", 2, "replica"),
            snap(Ok(replica()), Instant::now(), Duration::from_secs(9)),
        ),
        (
            inst("denied", 3, "replica"),
            snap(Err(denied), Instant::now(), Duration::ZERO),
        ),
    ]);
    let cases = [
        ("/?port=1", "sample none yet: no poll has finished"),
        ("/?port=2", "sample stale: age 9s > 3s"),
        ("/?port=3", "reachable check user refused: 1045 Access denied for user 'replguard'@'localhost' (using password: YES)"),
    ];
    for (path, why) in cases {
        let r = get(&h, "GET", path).await;
        assert_eq!(
            (r.status().as_u16(), reason(&r).as_deref()),
            (503, Some(why)),
            "{path}"
        );
    }
}

#[tokio::test]
async fn json_on_request() {
    let h = pair();
    for (path, accept) in [
        ("/replica?port=3307&format=json&max_lag=1s", None),
        ("/replica?port=3307&max_lag=1s", Some("application/json")),
    ] {
        let mut req = warp::test::request().path(path);
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let r = req.reply(&routes(h.clone())).await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["content-type"], JSON);
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["instance"], "db2");
        assert_eq!(v["policy"], "replica");
        assert_eq!(v["healthy"], false);
        assert!(v["sample_age_ms"].as_u64().is_some());
        let lag = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "lag")
            .unwrap();
        assert_eq!(
            (lag["ok"].as_bool(), lag["detail"].as_str()),
            (Some(false), Some("4s > 1s"))
        );
    }
}

#[tokio::test]
async fn explicit_format_wins_over_accept() {
    let r = warp::test::request()
        .path("/replica?port=3307&format=text")
        .header("accept", "application/json")
        .reply(&routes(pair()))
        .await;
    assert_eq!(r.headers()["content-type"], TEXT);
    assert!(body(&r).starts_with("ok sample"), "{}", body(&r));
}

#[tokio::test]
async fn status_lists_every_instance_and_policy() {
    let r = get(&pair(), "GET", "/status").await;
    let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    let list = v["instances"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["name"], "db2");
    assert_eq!(list[1]["state"]["channels"][0]["lag_s"], 4.0);
    let verdicts = list[1]["verdicts"].as_array().unwrap();
    let names: Vec<&str> = verdicts
        .iter()
        .map(|v| v["policy"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "any-lag",
            "auto",
            "backup",
            "galera",
            "galera-writer",
            "gr-primary",
            "gr-secondary",
            "primary",
            "promotion",
            "replica"
        ]
    );
    let primary = &verdicts[names.iter().position(|n| *n == "primary").unwrap()];
    assert_eq!(primary["healthy"], false);
    assert_eq!(primary["reason"], "read_only ON, want OFF");
}

#[tokio::test]
async fn metrics_ui_and_events() {
    let h = pair();
    #[rustfmt::skip]
    let cases: &[(&str, u16, &str)] = &[
        ("/metrics", 200, crate::serve::http::scrape::CONTENT_TYPE),
        ("/ui", 200, "text/html; charset=utf-8"),
        ("/events", 200, JSON),
        ("/events?instance=db2", 200, JSON),
        ("/events?instance=nope", 404, TEXT),
        ("/events?instance=", 400, TEXT),
        ("/events?port=3306", 400, TEXT),
    ];
    for (path, want, ctype) in cases {
        let r = get(&h, "GET", path).await;
        assert_eq!(r.status().as_u16(), *want, "{path}: {}", body(&r));
        assert_eq!(r.headers()["content-type"], *ctype, "{path}");
    }
    // Checks are counted by endpoint and code, with unknown policies folded into one label.
    get(&h, "GET", "/replica?port=3307&max_lag=1s").await;
    get(&h, "GET", "/check/replica?port=3307&max_lag=1s").await;
    get(&h, "GET", "/no-such-policy?port=3307").await;
    let text = body(&get(&h, "GET", "/metrics").await);
    for line in [
        r#"replguard_check_requests_total{endpoint="/replica",code="503"} 2"#,
        r#"replguard_check_requests_total{endpoint="other",code="404"} 1"#,
        r#"replguard_policy_healthy{instance="db2",policy="primary"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    let ui = get(&h, "GET", "/ui").await;
    assert!(ui.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'none'"));
}

#[test]
fn params_are_strict() {
    let ok: &[(&str, Params)] = &[
        ("", Params::default()),
        (
            "port=3306",
            Params {
                selector: Some(Selector::Port(3306)),
                ..Default::default()
            },
        ),
        (
            "instance=db1&format=json",
            Params {
                selector: Some(Selector::Name("db1".into())),
                json: Some(true),
                ..Default::default()
            },
        ),
        (
            "max_lag=2s",
            Params {
                thresholds: Thresholds {
                    max_lag: Some(Duration::from_secs(2)),
                    ..Default::default()
                },
                ..Default::default()
            },
        ),
        (
            "max_lag=1500ms&port=1",
            Params {
                selector: Some(Selector::Port(1)),
                thresholds: Thresholds {
                    max_lag: Some(Duration::from_millis(1500)),
                    ..Default::default()
                },
                ..Default::default()
            },
        ),
    ];
    for (q, want) in ok {
        assert_eq!(&parse_params(q).expect(q), want, "{q}");
    }
    let bad = [
        "max_lag=",
        "max_lag=5",
        "max_lag=-1s",
        "max_lag=soon",
        "max_lag=1s&max_lag=2s",
        "port=",
        "port=abc",
        "port=70000",
        "port=0",
        "port=+1",
        "port=1&port=1",
        "port=1&instance=a",
        "instance=",
        "format=xml",
        "maxlag=1s",
        "port",
    ];
    for q in bad {
        assert!(parse_params(q).is_err(), "{q} should be refused");
    }
}

/// `/status` at fleet size: filtered by failure and name, the failing first, capped; the summary
/// still counts the whole fleet; a parameter it does not know is a 400.
#[tokio::test]
async fn status_filters_and_orders_the_failing_first() {
    let mut broken = replica();
    broken.channels[0].sql_thread = crate::snapshot::sample::ThreadState::No;
    let h = hub(vec![
        (inst("ok1", 3301, "replica"), fresh(replica())),
        (inst("bad1", 3302, "replica"), fresh(broken.clone())),
        (inst("ok2", 3303, "replica"), fresh(replica())),
        (inst("bad2", 3304, "replica"), fresh(broken)),
    ]);
    let names = |path: &'static str| {
        let h = h.clone();
        async move {
            let r = get(&h, "GET", path).await;
            assert_eq!(r.status(), 200, "{path}: {}", body(&r));
            let v: serde_json::Value = serde_json::from_str(&body(&r)).unwrap();
            let names: Vec<String> = v["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_string())
                .collect();
            (names, v["summary"].clone())
        }
    };
    let (all, summary) = names("/status").await;
    assert_eq!(all, ["ok1", "bad1", "ok2", "bad2"]);
    assert_eq!(summary["instances"], 4);
    assert_eq!(summary["failing"], 2);
    assert_eq!(names("/status?failing=1").await.0, ["bad1", "bad2"]);
    assert_eq!(
        names("/status?order=failing").await.0,
        ["bad1", "bad2", "ok1", "ok2"]
    );
    let (capped, summary) = names("/status?order=failing&limit=3&name=1").await;
    assert_eq!(capped, ["bad1", "ok1"]);
    assert_eq!(
        (summary["shown"].clone(), summary["instances"].clone()),
        (2.into(), 4.into())
    );
    for bad in [
        "/status?limit=x",
        "/status?failing=maybe",
        "/status?sort=name",
        "/status?order=up",
    ] {
        assert_eq!(get(&h, "GET", bad).await.status(), 400, "{bad}");
    }
}
