//! A check request's query string, parsed strictly: unknown, repeated, empty or malformed
//! parameters are errors.

use crate::hub::Selector;
use crate::policy::Thresholds;
use std::borrow::Cow;

/// Why a check request's query was refused (a 400), in words for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("{0} given more than once")]
    Repeated(String),
    #[error("give port or instance, not both")]
    PortAndInstance,
    #[error("port {0:?} is not a port number")]
    NotAPort(String),
    #[error("instance is empty")]
    EmptyInstance,
    #[error("{key}: {error}")]
    Duration {
        key: String,
        error: crate::units::DurationError,
    },
    #[error("recover_for {0:?} is not a number of polls")]
    NotAPollCount(String),
    #[error("format {0:?}: use json or text")]
    Format(String),
    #[error(
        "unknown parameter {0:?} (known: port, instance, max_lag, recover_lag, recover_for, \
         soft_lag, format)"
    )]
    Unknown(String),
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
pub fn parse_params(raw: &str) -> Result<Params, ParamError> {
    if raw.contains(['%', '+']) {
        parse_pairs(form_urlencoded::parse(raw.as_bytes()))
    } else {
        // Nothing to decode (what HAProxy sends): the pairs are slices of the query itself,
        // split as form_urlencoded would split them.
        parse_pairs(plain_pairs(raw))
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
) -> Result<Params, ParamError> {
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
                return Err(ParamError::Repeated(key.into_owned()));
            }
        }
        match key.as_ref() {
            "port" => {
                if p.selector.is_some() {
                    return Err(ParamError::PortAndInstance);
                }
                let port = value
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0 && !value.starts_with('+'))
                    .ok_or_else(|| ParamError::NotAPort(value.to_string()))?;
                p.selector = Some(Selector::Port(port));
            }
            "instance" => {
                if p.selector.is_some() {
                    return Err(ParamError::PortAndInstance);
                }
                if value.is_empty() {
                    return Err(ParamError::EmptyInstance);
                }
                p.selector = Some(Selector::Name(value.into_owned()));
            }
            "max_lag" | "recover_lag" | "soft_lag" => {
                let d = Some(crate::units::parse_duration(&value).map_err(|error| {
                    ParamError::Duration {
                        key: key.to_string(),
                        error,
                    }
                })?);
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
                        .ok_or_else(|| ParamError::NotAPollCount(value.to_string()))?,
                )
            }
            "format" => {
                p.json = match value.as_ref() {
                    "json" => Some(true),
                    "text" => Some(false),
                    other => return Err(ParamError::Format(other.to_string())),
                }
            }
            other => return Err(ParamError::Unknown(other.to_string())),
        }
    }
    Ok(p)
}
