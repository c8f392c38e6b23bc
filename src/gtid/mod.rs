//! GTIDs as servers print them: MySQL GTID sets (`@@gtid_executed`, `Retrieved_Gtid_Set`,
//! `Executed_Gtid_Set`) and MariaDB GTID positions (`@@gtid_current_pos`, `@@gtid_slave_pos`,
//! `@@gtid_binlog_pos`, `Gtid_IO_Pos`): strict parsing, canonical rendering, and the comparisons a
//! health check needs ("has the replica applied everything the source has?").
//!
//! Pure values and functions: this module does no I/O, reads no clock and imports nothing from
//! tokio, mysql_async or warp. It never guesses: text a server would not print is an error, not a
//! best-effort value, because a wrong "replica has caught up" answer sends traffic to stale data.
//!
//! The two flavours are different things, not two spellings of one thing:
//! - a MySQL set lists *every* transaction applied, as intervals per source uuid (and, from MySQL
//!   8.4, per tag), so subtraction says exactly which transactions are missing;
//! - a MariaDB position holds only the *last* GTID applied per replication domain, so it can say
//!   which domains are behind and by how many sequence numbers, not which transactions.

mod mariadb;
mod mysql;
mod origin;

pub use mariadb::{MariadbBinlogState, MariadbGtid, MariadbGtidPos};
pub use mysql::MysqlGtidSet;
pub use origin::Origin;

use std::str::FromStr;

/// The largest transaction number MySQL accepts (`GNO_END - 1`, with `GNO_END = INT64_MAX`).
///
/// Keeping every number at or below it also means `end + 1` never overflows a `u64`.
pub const MAX_GNO: u64 = i64::MAX as u64 - 1;

/// Longest MySQL 8.4 GTID tag.
const MAX_TAG_LEN: usize = 32;

/// Longest piece of input quoted in an error: errors end up in logs and HTTP reason phrases,
/// and a whole `gtid_executed` can be kilobytes long.
const MAX_QUOTE: usize = 48;

/// Why a GTID text was refused. Each names the offending piece (shortened) so a log line points
/// at the problem without dumping the whole set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GtidError {
    /// `a,,b` or a trailing comma: servers never print an empty element.
    #[error("empty element in GTID set (stray comma)")]
    EmptyElement,
    /// Not `8-4-4-4-12` hex digits.
    #[error("invalid server uuid {0:?} (expected 8-4-4-4-12 hex digits)")]
    BadUuid(String),
    /// A uuid with nothing after it; MySQL accepts it as input but never prints it.
    #[error("uuid {0} has no transaction intervals")]
    NoIntervals(String),
    /// A tag not followed by any interval (`uuid:tag` or `uuid:tag1:tag2:1`).
    #[error("tag {0:?} has no transaction intervals")]
    TagWithoutIntervals(String),
    /// Not a valid MySQL 8.4 tag.
    #[error(
        "invalid tag {0:?} (a letter or underscore, then letters, digits, underscores; at most 32)"
    )]
    BadTag(String),
    /// An interval that is not `N` or `N-M` in decimal digits.
    #[error("invalid interval {0:?} (expected N or N-M)")]
    BadInterval(String),
    /// Transaction numbers start at 1.
    #[error("transaction number 0 in interval {0:?} (numbers start at 1)")]
    ZeroGno(String),
    /// `N-M` with `M < N`; MySQL silently ignores these, which would hide a broken input.
    #[error("reversed interval {0:?}")]
    ReversedInterval(String),
    /// A transaction number above [`MAX_GNO`].
    #[error("transaction number out of range in interval {0:?} (largest is {max})", max = MAX_GNO)]
    GnoOutOfRange(String),
    /// Not `domain-server_id-seq` in decimal digits, or a number too large for its field
    /// (domain and server_id are 32-bit, seq is 64-bit).
    #[error("invalid MariaDB GTID {0:?} (expected domain-server_id-seq)")]
    BadMariadbGtid(String),
    /// A position holds one GTID per domain; two means this is not a position (perhaps
    /// `@@gtid_binlog_state`, which keeps one GTID per domain *and server*).
    #[error("domain {0} appears twice in MariaDB GTID position")]
    DuplicateDomain(u32),
    /// A binary log state holds one GTID per (domain, server_id).
    #[error("domain {0} server_id {1} appears twice in MariaDB binlog state")]
    DuplicateOrigin(u32, u32),
}

/// `text` shortened for an error message (on a char boundary, so never panics).
fn quote(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTE) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// Trims the whitespace MySQL's parser skips (`isspace`: space, \t, \n, \v, \f, \r). Unicode
/// whitespace is not skipped by servers, so it is garbage here too.
fn trim_ws(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b')
}

/// Parses decimal digits only: `u64::from_str` also takes a leading `+`, which no server prints.
fn parse_digits<T: FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests;
