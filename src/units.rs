//! Durations as people write and read them: strict humantime parsing for config, policy files and
//! query parameters, and a short rendering (`12.4s`, `500ms`) for verdict lines.
//!
//! Pure functions; no I/O.

use std::time::Duration;

/// Why a duration was refused. The text is quoted back: durations are never secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("duration {0:?} has surrounding spaces")]
    Padded(String),
    #[error("duration {0:?} is negative")]
    Negative(String),
    #[error("duration {0:?} has no unit (write e.g. \"{0}s\" or \"{0}ms\")")]
    NoUnit(String),
    #[error("invalid duration {text:?}: {why}")]
    Invalid { text: String, why: String },
    #[error("duration {0:?} is longer than the largest accepted ({days} days)", days = MAX_DURATION.as_secs() / 86400)]
    TooLong(String),
}

/// Parses a humantime duration (`500ms`, `2s`, `1m 30s`, `4.2s`), strictly.
///
/// Stricter than `humantime::parse_duration` on purpose: a unitless number (even `0`) is refused,
/// because `max_lag=5` could mean seconds or milliseconds and a guess would be a silent default.
/// Empty, padded, negative and garbage values are refused too.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let owned = || text.to_string();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text.trim() != text {
        return Err(DurationError::Padded(owned()));
    }
    if text.starts_with('-') {
        return Err(DurationError::Negative(owned()));
    }
    if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(DurationError::NoUnit(owned()));
    }
    let d = humantime::parse_duration(text).map_err(|e| DurationError::Invalid {
        text: owned(),
        why: e.to_string(),
    })?;
    if d > MAX_DURATION {
        return Err(DurationError::TooLong(owned()));
    }
    Ok(d)
}

/// The longest duration accepted from outside (config, policy files, query strings): longer
/// than any sensible threshold, short enough that adding it to a clock reading or multiplying
/// it by a small factor can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Renders a duration compactly: `0s`, `750ms`, `3s`, `12.4s`, `3600s`.
///
/// Whole seconds print without a fraction so that `Seconds_Behind_Master` readings (whole seconds)
/// and thresholds such as `10s` read exactly as configured.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if d.is_zero() {
        "0s".to_string()
    } else if ms == 0 {
        format!("{}us", d.as_micros())
    } else if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        let tenths = (ms + 50) / 100;
        if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        }
    }
}

/// A wall-clock time as Unix milliseconds (0 before 1970), as state files and etcd values
/// keep it.
pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The wall-clock time of Unix milliseconds `ms`.
pub fn from_unix_ms(ms: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_millis(ms)
}

/// `14:03:07 UTC` for a wall-clock time: the time of day is what an operator looks for in a
/// verdict line.
pub fn clock_time(t: std::time::SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(t).to_string();
    // RFC 3339 is `YYYY-MM-DDTHH:MM:SSZ`.
    text.get(11..19)
        .map(|hms| format!("{hms} UTC"))
        .unwrap_or(text)
}

/// Serde helpers: duration fields written as humantime strings.
pub mod serde_humantime {
    /// An optional field (absent means `None`; present must parse).
    pub mod option {
        use serde::{Deserialize, Deserializer};
        use std::time::Duration;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            let text = String::deserialize(d)?;
            super::super::parse_duration(&text)
                .map(Some)
                .map_err(serde::de::Error::custom)
        }
    }
}

/// Serde helper: an optional duration rendered as fractional seconds in JSON.
pub fn ser_opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_and_refuses() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("5s", Some(Duration::from_secs(5))),
            ("500ms", Some(Duration::from_millis(500))),
            ("4.2s", Some(Duration::from_millis(4200))),
            ("1m 30s", Some(Duration::from_secs(90))),
            ("0s", Some(Duration::ZERO)),
            ("", None),
            ("5", None),
            ("0", None),
            ("-5s", None),
            (" 5s", None),
            ("5s ", None),
            ("five", None),
            ("5parsecs", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).ok(), *want, "input {text:?}");
        }
    }

    #[test]
    fn formats_compactly() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_millis(12_400), "12.4s"),
            (Duration::from_millis(12_960), "13s"),
            (Duration::from_secs(3600), "3600s"),
        ];
        for (d, want) in cases {
            assert_eq!(fmt_duration(d), want);
        }
    }
}
