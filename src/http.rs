//! The HTTP check server HAProxy (and people) ask: `/mysqlchk/`, `/check/{policy}`, `/{policy}`,
//! `/status`, `/healthz`; and for dashboards and incidents `/metrics` (Prometheus, always 200),
//! `/ui` (the embedded status page) and `/events` (recent transitions).
//!
//! Handlers answer from the latest snapshots in the [`Hub`]; they never touch MySQL and never
//! wait on a poller. Status codes: 200 pass, 503 fail, 400 bad parameter, 404 unknown instance or
//! policy, 405 other methods. On 503 the reason phrase carries the first failing check.

use crate::answers::{Answer, AnswerCache, AnswerKey, Rendered};
use crate::hub::{Hub, LookupError, Selector};
use crate::metrics::CheckEndpoint;
pub use crate::paths::is_check_path;
use crate::paths::{check_path, CheckPath};
use crate::policy::Thresholds;
use crate::report;
use hyper::ext::ReasonPhrase;
use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use warp::http::{header, Method, StatusCode};
use warp::hyper::body::Bytes;
use warp::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// All endpoints, with errors rendered; never rejects.
pub fn routes(
    hub: Arc<Hub>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let checks = check_route(
        hub.clone(),
        AnswerCache::per_instance(hub.instances().len()),
    );
    let hub = warp::any().map(move || hub.clone());
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();

    let healthz = warp::path!("healthz").map(|| respond(StatusCode::OK, None, TEXT, "ok\n"));
    let status = warp::path!("status").and(hub.clone()).map(status_reply);
    // Metrics, status page and events (issue 9): read snapshots and in-memory logs only.
    let metrics = warp::path!("metrics").and(hub.clone()).map(metrics_reply);
    let ui = warp::path!("ui").map(ui_reply);
    let events = warp::path!("events").and(query).and(hub).map(events_reply);
    let observe = metrics.or(ui).unify().or(events).unify();

    // Checks are the hot path: tried right after the ceiling `/healthz`, before the other fixed
    // endpoints (whose names cannot be policy names: config refuses them).
    evaluating_method()
        .and(
            healthz
                .or(checks)
                .unify()
                .or(status)
                .unify()
                .or(observe)
                .unify(),
        )
        .recover(rejection)
        .unify()
}

/// Every check endpoint: `/`, `/mysqlchk/`, `/check/{policy}`, `/{policy}`. One filter that reads
/// the path itself, so a check allocates nothing for routing and clones no handle: the hub is
/// borrowed from the filter, and the answer is computed before the (ready) future is returned.
fn check_route(
    hub: Arc<Hub>,
    answers: Arc<[AnswerCache]>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let accept = warp::header::optional::<String>("accept");
    warp::path::full().and(query).and(accept).and_then(
        move |path: FullPath, query: String, accept: Option<String>| {
            std::future::ready(match check_path(path.as_str()) {
                Some(target) => Ok(check_reply(
                    &hub,
                    &answers,
                    target,
                    &query,
                    accept.as_deref(),
                )),
                None => Err(warp::reject::not_found()),
            })
        },
    )
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// GET, HEAD and OPTIONS all evaluate (HAProxy's default check is `OPTIONS /`); others are 405.
fn evaluating_method() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::method()
        .and_then(|m: Method| async move {
            if m == Method::GET || m == Method::HEAD || m == Method::OPTIONS {
                Ok(())
            } else {
                Err(warp::reject::custom(NotAllowed))
            }
        })
        .untuple_one()
}

#[derive(Debug)]
struct NotAllowed;
impl warp::reject::Reject for NotAllowed {}

async fn rejection(err: Rejection) -> Result<Response, Infallible> {
    if err.find::<NotAllowed>().is_some() {
        let mut r = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            TEXT,
            "only GET, HEAD and OPTIONS\n",
        );
        r.headers_mut().insert(
            header::ALLOW,
            header::HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        Ok(r)
    } else {
        Ok(respond(
            StatusCode::NOT_FOUND,
            None,
            TEXT,
            "no such endpoint; try /mysqlchk/?port=N, /check/{policy}, /status, /healthz, \
             /metrics, /ui, /events\n",
        ))
    }
}

/// A check request's parameters, parsed strictly.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Params {
    pub selector: Option<Selector>,
    pub thresholds: Thresholds,
    /// `format=json|text`; `None` lets the Accept header decide.
    pub json: Option<bool>,
}

/// Parses a raw query string. Unknown, repeated, empty or malformed parameters are errors: a
/// threshold that silently fell back to a default would pass a check it should fail.
pub fn parse_params(raw: &str) -> Result<Params, String> {
    if raw.contains(['%', '+']) {
        parse_pairs(form_urlencoded::parse(raw.as_bytes()))
    } else {
        // Nothing to decode (what HAProxy sends): the pairs are slices of the query itself,
        // split as form_urlencoded would split them.
        parse_pairs(plain_pairs(raw))
    }
}

/// The pairs of a query that has no `%` or `+`, as `form_urlencoded::parse` would yield them.
fn plain_pairs(raw: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .map(|(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v)))
}

fn parse_pairs<'a>(
    pairs: impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
) -> Result<Params, String> {
    const KNOWN: [&str; 7] = [
        "port",
        "instance",
        "max_lag",
        "recover_lag",
        "recover_for",
        "soft_lag",
        "format",
    ];
    let mut p = Params::default();
    // Which known parameters were given, by index in KNOWN: no allocation per request.
    let mut seen = [false; KNOWN.len()];
    for (key, value) in pairs {
        if let Some(i) = KNOWN.iter().position(|k| *k == key) {
            if std::mem::replace(&mut seen[i], true) {
                return Err(format!("{key} given more than once"));
            }
        }
        match key.as_ref() {
            "port" => {
                if p.selector.is_some() {
                    return Err("give port or instance, not both".into());
                }
                let port = value
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0 && !value.starts_with('+'))
                    .ok_or_else(|| format!("port {value:?} is not a port number"))?;
                p.selector = Some(Selector::Port(port));
            }
            "instance" => {
                if p.selector.is_some() {
                    return Err("give port or instance, not both".into());
                }
                if value.is_empty() {
                    return Err("instance is empty".into());
                }
                p.selector = Some(Selector::Name(value.into_owned()));
            }
            "max_lag" | "recover_lag" | "soft_lag" => {
                let d =
                    Some(crate::units::parse_duration(&value).map_err(|e| format!("{key}: {e}"))?);
                match key.as_ref() {
                    "max_lag" => p.thresholds.max_lag = d,
                    "recover_lag" => p.thresholds.recover_lag = d,
                    _ => p.thresholds.soft_lag = d,
                }
            }
            "recover_for" => {
                p.thresholds.recover_for = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|_| value.chars().all(|c| c.is_ascii_digit()))
                        .ok_or_else(|| format!("recover_for {value:?} is not a number of polls"))?,
                )
            }
            "format" => {
                p.json = match value.as_ref() {
                    "json" => Some(true),
                    "text" => Some(false),
                    other => return Err(format!("format {other:?}: use json or text")),
                }
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?} (known: port, instance, max_lag, recover_lag, \
                     recover_for, soft_lag, format)"
                ))
            }
        }
    }
    Ok(p)
}

/// Answers a check and counts it in `replguard_check_requests_total`.
fn check_reply(
    hub: &Hub,
    answers: &[AnswerCache],
    target: CheckPath<'_>,
    query: &str,
    accept: Option<&str>,
) -> Response {
    // The asked policy, looked up once for the counter label and the answer cache.
    let (policy, endpoint) = match target {
        CheckPath::Own => (None, CheckEndpoint::Own),
        CheckPath::Named(name) => match hub.policies().position(name) {
            Some(i) => (Some((i, name)), CheckEndpoint::Policy(i, name)),
            None => {
                let r = unknown_policy(hub, name);
                hub.metrics()
                    .count_check(CheckEndpoint::Other, r.status().as_u16());
                return r;
            }
        },
    };
    let r = check_answer(hub, answers, policy, query, accept);
    hub.metrics().count_check(endpoint, r.status().as_u16());
    r
}

/// The 404 for a policy nobody configured, naming those that exist.
fn unknown_policy(hub: &Hub, name: &str) -> Response {
    let known: Vec<&str> = hub.policies().names().collect();
    respond(
        StatusCode::NOT_FOUND,
        None,
        TEXT,
        format!("no policy named {name:?} (known: {})\n", known.join(", ")),
    )
}

/// Answers a check of a known policy (`None`: the instance's own) from the latest snapshot.
fn check_answer(
    hub: &Hub,
    answers: &[AnswerCache],
    policy: Option<(usize, &str)>,
    query: &str,
    accept: Option<&str>,
) -> Response {
    let params = match parse_params(query) {
        Ok(p) => p,
        Err(msg) => return respond(StatusCode::BAD_REQUEST, None, TEXT, format!("{msg}\n")),
    };
    // An explicit format wins over the Accept header.
    let json = params
        .json
        .unwrap_or_else(|| accept.is_some_and(|a| a.contains(JSON)));
    let content_type = if json { JSON } else { TEXT };
    let watched = match hub.find(params.selector.as_ref().unwrap_or(&Selector::Only)) {
        Ok(w) => w,
        Err(e @ LookupError::Ambiguous(_)) => {
            return respond(StatusCode::BAD_REQUEST, None, TEXT, format!("{e}\n"))
        }
        Err(e) => return respond(StatusCode::NOT_FOUND, None, TEXT, format!("{e}\n")),
    };
    let now = tokio::time::Instant::now().into_std();
    let key = AnswerKey {
        policy: policy.map(|(i, _)| i),
        json,
        thresholds: params.thresholds,
    };
    // A cached answer is looked up under the `watch` borrow: no snapshot handle is cloned.
    let answers = &answers[watched.index()];
    let cached = answers.get(&key, &watched.current(), now);
    if let Some(a) = cached {
        return respond_with(a.status, a.reason, content_type, a.body);
    }
    let snapshot = watched.latest();
    let Some(verdict) = hub.evaluate_snapshot(
        watched,
        &snapshot,
        policy.map(|(_, name)| name),
        &key.thresholds,
        now,
    ) else {
        // The policy was known to the set a moment ago; the instance's own policy is validated
        // at startup. Either way, say what was asked.
        return unknown_policy(hub, policy.map_or(&watched.config.policy, |(_, n)| n));
    };
    let (status, reason) = if verdict.healthy {
        (StatusCode::OK, None)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, report::reason(&verdict))
    };
    let body = if json {
        report::json(&watched.config.name, &verdict)
    } else {
        report::text(&verdict)
    };
    let rendered = Rendered {
        status,
        reason: phrase(reason),
        body: Bytes::from(body),
    };
    answers.put(
        key,
        Answer {
            snapshot,
            at: now,
            rendered: rendered.clone(),
        },
        hub.max_sample_age(),
    );
    respond_with(
        rendered.status,
        rendered.reason,
        content_type,
        rendered.body,
    )
}

fn status_reply(hub: Arc<Hub>) -> Response {
    let now = tokio::time::Instant::now().into_std();
    let body = report::status(&hub, now);
    respond(StatusCode::OK, None, JSON, body)
}

/// `/metrics`: always 200 while replguard serves, whatever the verdicts.
fn metrics_reply(hub: Arc<Hub>) -> Response {
    let now = tokio::time::Instant::now().into_std();
    match crate::scrape::render(&hub, now) {
        Ok(body) => respond(StatusCode::OK, None, crate::scrape::CONTENT_TYPE, body),
        // Encoding into a String cannot fail; should it ever, say so rather than half a page.
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            TEXT,
            format!("cannot encode metrics: {e}\n"),
        ),
    }
}

/// `/ui`: the embedded status page, with a policy that forbids loading anything from elsewhere.
fn ui_reply() -> Response {
    let mut r = respond(
        StatusCode::OK,
        None,
        "text/html; charset=utf-8",
        crate::ui::PAGE.to_string(),
    );
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(crate::ui::CSP),
    );
    r
}

/// `/events?instance=NAME`: the recorded transitions, oldest first; all instances without
/// `instance`. Only `instance` is accepted, strictly, like the check parameters.
fn events_reply(query: String, hub: Arc<Hub>) -> Response {
    let mut instance: Option<String> = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let msg = match key.as_ref() {
            "instance" if instance.is_some() => "instance given more than once".to_string(),
            "instance" if value.is_empty() => "instance is empty".to_string(),
            "instance" => {
                instance = Some(value.into_owned());
                continue;
            }
            other => format!("unknown parameter {other:?} (known: instance)"),
        };
        return respond(StatusCode::BAD_REQUEST, None, TEXT, format!("{msg}\n"));
    }
    if let Some(name) = &instance {
        if let Err(e) = hub.find(&Selector::Name(name.clone())) {
            return respond(StatusCode::NOT_FOUND, None, TEXT, format!("{e}\n"));
        }
    }
    let list = hub.events().recent(instance.as_deref());
    respond(StatusCode::OK, None, JSON, crate::events::json(&list))
}

fn respond(
    status: StatusCode,
    reason: Option<String>,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response {
    respond_with(status, phrase(reason), content_type, body.into())
}

/// A status line reason from report::reason, which yields printable ASCII only (what
/// ReasonPhrase accepts).
fn phrase(reason: Option<String>) -> Option<ReasonPhrase> {
    reason.and_then(|r| ReasonPhrase::try_from(r.into_bytes()).ok())
}

/// Builds a response without copying the body (a cached answer's body is shared).
fn respond_with(
    status: StatusCode,
    reason: Option<ReasonPhrase>,
    content_type: &'static str,
    body: Bytes,
) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    // Checks must never be cached by anything between HAProxy and us.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    if let Some(phrase) = reason {
        r.extensions_mut().insert(phrase);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InstanceConfig;
    use crate::sample::fixtures::{primary, replica, snap};
    use crate::sample::{ProbeError, ProbeErrorKind};
    use crate::snapshot::Snapshot;
    use std::time::{Duration, Instant};
    use warp::http::Response;
    use warp::hyper::body::Bytes;

    use crate::config::fixtures::instance as inst;

    fn hub(entries: Vec<(InstanceConfig, Snapshot)>) -> Arc<Hub> {
        Arc::new(Hub::with_snapshots(entries))
    }

    fn fresh(state: crate::sample::ServerState) -> Snapshot {
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
        let text = crate::scrape::render(&h, Instant::now()).unwrap();
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
                "primary",
                "promotion",
                "replica"
            ]
        );
        assert_eq!(verdicts[3]["healthy"], false);
        assert_eq!(verdicts[3]["reason"], "read_only ON, want OFF");
    }

    #[tokio::test]
    async fn metrics_ui_and_events() {
        let h = pair();
        #[rustfmt::skip]
        let cases: &[(&str, u16, &str)] = &[
            ("/metrics", 200, crate::scrape::CONTENT_TYPE),
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
}
