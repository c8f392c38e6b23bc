//! A check request's query string, parsed strictly: unknown, repeated, empty or malformed
//! parameters are errors.

use crate::hub::Selector;
use crate::policy::Thresholds;
use std::borrow::Cow;

/// Why a check request's query was refused (a 400), in words for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

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
pub fn parse_params(raw: &str) -> Result<Params, ParamError> {
    if raw.contains(['%', '+']) {
        parse_pairs(form_urlencoded::parse(raw.as_bytes())).map_err(ParamError)
    } else {
        // Nothing to decode (what HAProxy sends): the pairs are slices of the query itself,
        // split as form_urlencoded would split them.
        parse_pairs(plain_pairs(raw)).map_err(ParamError)
    }
}

/// The pairs of a query that has no `%` or `+`, as `form_urlencoded::parse` would yield them.
pub(super) fn plain_pairs(raw: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
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
