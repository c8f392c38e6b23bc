//! The HTTP check server HAProxy (and people) ask: `/mysqlchk/`, `/check/{policy}`, `/{policy}`,
//! `/status`, `/healthz`; and for dashboards and incidents `/metrics` (Prometheus, always 200),
//! `/ui` (the embedded status page) and `/events` (recent transitions).
//!
//! Handlers answer from the latest snapshots in the [`Hub`]; they never touch MySQL and never
//! wait on a poller. Status codes: 200 pass, 503 fail, 400 bad parameter, 404 unknown instance or
//! policy, 405 other methods. On 503 the reason phrase carries the first failing check.

pub(crate) mod paths;
pub mod scrape;
mod status;
mod ui;

mod answers;
mod params;

use answers::{Answer, AnswerCache, AnswerKey, Rendered};
pub use params::{parse_params, Params};

use crate::hub::metrics::CheckEndpoint;
use crate::hub::{Hub, LookupError, Selector};
use crate::policy::render;
pub use crate::serve::http::paths::is_check_path;
use crate::serve::http::paths::{check_path, CheckPath};
use hyper::ext::ReasonPhrase;
use std::convert::Infallible;
use std::sync::Arc;
use warp::http::{header, Method, StatusCode};
use warp::hyper::body::Bytes;
use warp::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// What a connection is served: the warp filter of every endpoint, and the answers that need
/// none of warp (the checks, HAProxy's hot path), asked first by the listener.
#[derive(Clone)]
pub struct Served<F> {
    pub filter: F,
    pub direct: Arc<dyn Direct>,
}

/// Requests answered without warp, exactly as its filter would answer them; `None`: left to
/// the filter. The listener asks only for requests its gate lets through without credentials.
pub trait Direct: Send + Sync {
    fn answer(&self, req: &hyper::Request<hyper::body::Incoming>) -> Option<Response>;
}

/// The checks of one hub, answered without warp: the path read once, the answer cache shared
/// with the warp route of the same generation.
struct Checks {
    hub: Arc<Hub>,
    answers: Arc<[AnswerCache]>,
}

impl Direct for Checks {
    fn answer(&self, req: &hyper::Request<hyper::body::Incoming>) -> Option<Response> {
        let m = req.method();
        if !(m == Method::GET || m == Method::HEAD || m == Method::OPTIONS) {
            return None; // warp answers 405
        }
        let target = check_path(req.uri().path())?;
        // An Accept header that is not text is warp's to refuse, as before.
        let accept = match req.headers().get(header::ACCEPT) {
            Some(v) => Some(v.to_str().ok()?),
            None => None,
        };
        let query = req.uri().query().unwrap_or("");
        Some(check_reply(&self.hub, &self.answers, target, query, accept))
    }
}

/// Every endpoint of `hub` as the listener serves them: [`routes`], and the checks directly.
pub fn served(
    hub: Arc<Hub>,
) -> Served<impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static>
{
    let answers = AnswerCache::per_instance(hub.instances().len());
    Served {
        filter: routes_with(hub.clone(), answers.clone()),
        direct: Arc::new(Checks { hub, answers }),
    }
}

/// All endpoints, with errors rendered; never rejects (the warp half of [`served`], for tests).
#[cfg(test)]
pub fn routes(
    hub: Arc<Hub>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let answers = AnswerCache::per_instance(hub.instances().len());
    routes_with(hub, answers)
}

fn routes_with(
    hub: Arc<Hub>,
    answers: Arc<[AnswerCache]>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let checks = check_route(hub.clone(), answers);
    let hub = warp::any().map(move || hub.clone());
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();

    let healthz = warp::path!("healthz").map(|| respond(StatusCode::OK, None, TEXT, "ok\n"));
    let status = warp::path!("status")
        .and(query)
        .and(hub.clone())
        .map(status_reply);
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
        CheckPath::Named(name) => match hub.judge().policies().position(name) {
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
    let known: Vec<&str> = hub.judge().policies().names().collect();
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
    let Some(judged) = hub.evaluate(
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
    let verdict = judged.verdict;
    let (status, reason) = if verdict.healthy {
        (StatusCode::OK, None)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, render::reason(&verdict))
    };
    let body = if json {
        render::json(&watched.config.name, &verdict)
    } else {
        render::text(&verdict)
    };
    let rendered = Rendered {
        status,
        reason: phrase(reason),
        body: Bytes::from(body),
    };
    let freshness = hub.judge().freshness(&snapshot, now);
    // A verdict that read other instances' snapshots (a pool's, siblings') is not cached with
    // this one's: theirs may change first.
    if !judged.alone {
        return respond_with(
            rendered.status,
            rendered.reason,
            content_type,
            rendered.body,
        );
    }
    answers.put(
        key,
        Answer {
            snapshot,
            at: now,
            rendered: rendered.clone(),
        },
        freshness,
    );
    respond_with(
        rendered.status,
        rendered.reason,
        content_type,
        rendered.body,
    )
}

/// `/status`, all instances or (with parameters) those a reader asks for: `failing=1` only those
/// whose own policy fails, `name=TEXT` those whose name contains it, `order=failing` the failing
/// first, `limit=N` at most N. Strict: anything else is a 400.
fn status_reply(query: String, hub: Arc<Hub>) -> Response {
    let filter = match status::Filter::parse(&query) {
        Ok(f) => f,
        Err(msg) => return respond(StatusCode::BAD_REQUEST, None, TEXT, format!("{msg}\n")),
    };
    let now = tokio::time::Instant::now().into_std();
    let body = status::status_filtered(&hub, now, &filter);
    respond(StatusCode::OK, None, JSON, body)
}

/// `/metrics`: always 200 while replguard serves, whatever the verdicts.
fn metrics_reply(hub: Arc<Hub>) -> Response {
    let now = tokio::time::Instant::now().into_std();
    match crate::serve::http::scrape::render(&hub, now) {
        Ok(body) => respond(
            StatusCode::OK,
            None,
            crate::serve::http::scrape::CONTENT_TYPE,
            body,
        ),
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
        crate::serve::http::ui::PAGE.to_string(),
    );
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(crate::serve::http::ui::CSP),
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
    respond(StatusCode::OK, None, JSON, crate::hub::events::json(&list))
}

fn respond(
    status: StatusCode,
    reason: Option<String>,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response {
    respond_with(status, phrase(reason), content_type, body.into())
}

/// A status line reason from render::reason, which yields printable ASCII only (what
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
mod tests;
