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

use std::collections::BTreeMap;
use std::fmt;
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

// ---------------------------------------------------------------------------------------------
// MySQL
// ---------------------------------------------------------------------------------------------

/// A server uuid as its 128-bit value: ordering by value is MySQL's (bytewise) ordering, and case
/// is normalised for free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Uuid(u128);

impl Uuid {
    fn parse(text: &str) -> Result<Uuid, GtidError> {
        let bad = || GtidError::BadUuid(quote(text));
        let bytes = text.as_bytes();
        if bytes.len() != 36 {
            return Err(bad());
        }
        let mut value: u128 = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if b != b'-' {
                    return Err(bad());
                }
                continue;
            }
            let digit = (b as char).to_digit(16).ok_or_else(bad)?;
            value = (value << 4) | u128::from(digit);
        }
        Ok(Uuid(value))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            v >> 96,
            (v >> 80) & 0xffff,
            (v >> 64) & 0xffff,
            (v >> 48) & 0xffff,
            v & 0xffff_ffff_ffff
        )
    }
}

/// A MySQL 8.4 GTID tag, lowercased (MySQL compares tags case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Tag(String);

impl Tag {
    fn parse(text: &str) -> Result<Tag, GtidError> {
        let lower = text.to_ascii_lowercase();
        let mut bytes = lower.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if first_ok && rest_ok && lower.len() <= MAX_TAG_LEN {
            Ok(Tag(lower))
        } else {
            Err(GtidError::BadTag(quote(text)))
        }
    }
}

/// Whom a transaction number belongs to: a source uuid and, from MySQL 8.4, an optional tag.
/// Derived ordering puts the untagged (`None`) intervals first, then tags alphabetically, as
/// MySQL prints them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Tsid {
    uuid: Uuid,
    tag: Option<Tag>,
}

/// An inclusive interval of transaction numbers, `1 <= start <= end <= MAX_GNO`.
type Interval = (u64, u64);

/// A MySQL GTID set: every transaction applied (or received), as intervals per uuid and tag.
///
/// Always canonical: intervals sorted, overlapping and adjacent ones merged, no empty entries.
/// That is what makes derived `==` mean "the same transactions", and `Display` print MySQL's
/// canonical form.
///
/// `Display` joins uuids with `,` so the value fits on one log line or HTTP reason phrase; the
/// alternate form `{:#}` joins with `,\n` exactly as `@@gtid_executed` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MysqlGtidSet {
    /// Canonical interval lists, never empty, keyed in MySQL's print order.
    sets: BTreeMap<Tsid, Vec<Interval>>,
}

impl MysqlGtidSet {
    /// The empty set (what a server with no transactions prints as `''`).
    pub fn new() -> MysqlGtidSet {
        MysqlGtidSet::default()
    }

    /// Parses a GTID set as MySQL prints it:
    /// `3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7-9,\n<uuid>:1-3`, tagged forms
    /// `<uuid>:tag:1-5` and `<uuid>:1-3:tag:5-6` (a tag applies to the intervals after it).
    ///
    /// Accepted, because servers print or tolerate it: whitespace (including the newline after
    /// each comma) around elements, separators and numbers; upper- or lowercase uuids and tags;
    /// unsorted or overlapping intervals; the same uuid repeated; empty or blank text (the empty
    /// set). Refused: empty elements (`a,,b`), a uuid or tag without intervals, transaction
    /// number 0, reversed intervals, numbers above [`MAX_GNO`], anything else.
    pub fn parse(text: &str) -> Result<MysqlGtidSet, GtidError> {
        let mut set = MysqlGtidSet::new();
        if trim_ws(text).is_empty() {
            return Ok(set);
        }
        for element in text.split(',') {
            set.parse_element(trim_ws(element))?;
        }
        Ok(set)
    }

    /// Parses one `uuid(:tag|:interval)+` element into `self`.
    fn parse_element(&mut self, element: &str) -> Result<(), GtidError> {
        if element.is_empty() {
            return Err(GtidError::EmptyElement);
        }
        let mut parts = element.split(':');
        // `split` always yields at least one item.
        let uuid = Uuid::parse(trim_ws(parts.next().unwrap_or_default()))?;
        let mut tsid = Tsid { uuid, tag: None };
        // Whether the current uuid/tag has had an interval yet: both must be followed by one.
        let mut has_interval = false;
        for part in parts {
            let part = trim_ws(part);
            // Intervals start with a digit; tags with a letter or underscore. Anything else
            // (empty, `-5`, `+5`) is reported as a bad interval, the likelier intent.
            let is_tag = part
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
            if is_tag {
                if let (false, Some(tag)) = (has_interval, &tsid.tag) {
                    return Err(GtidError::TagWithoutIntervals(tag.0.clone()));
                }
                tsid.tag = Some(Tag::parse(part)?);
                has_interval = false;
            } else {
                let interval = parse_interval(part)?;
                self.insert(tsid.clone(), interval);
                has_interval = true;
            }
        }
        if !has_interval {
            return Err(match tsid.tag {
                Some(tag) => GtidError::TagWithoutIntervals(tag.0),
                None => GtidError::NoIntervals(uuid.to_string()),
            });
        }
        Ok(())
    }

    /// Adds one interval, keeping the list canonical.
    fn insert(&mut self, tsid: Tsid, interval: Interval) {
        let list = self.sets.entry(tsid).or_default();
        list.push(interval);
        normalise(list);
    }

    /// True when the set holds no transaction.
    pub fn is_empty(&self) -> bool {
        // Entries are never empty, so no entries means no transactions.
        self.sets.is_empty()
    }

    /// Number of transactions in the set; saturates at `u64::MAX` (several uuids near
    /// [`MAX_GNO`] could overflow, and a saturated count still compares as "huge").
    pub fn count(&self) -> u64 {
        self.sets
            .values()
            .flatten()
            .fold(0u64, |sum, (start, end)| {
                sum.saturating_add(end - start + 1)
            })
    }

    /// True when `self` holds every transaction in `other` (`self ⊇ other`): e.g. a replica's
    /// `Executed_Gtid_Set` contains the source's `@@gtid_executed` when it has caught up.
    pub fn contains(&self, other: &MysqlGtidSet) -> bool {
        other.sets.iter().all(|(tsid, theirs)| {
            self.sets
                .get(tsid)
                .is_some_and(|ours| contains_intervals(ours, theirs))
        })
    }

    /// Transactions in `self` or `other`.
    pub fn union(&self, other: &MysqlGtidSet) -> MysqlGtidSet {
        let mut out = self.clone();
        for (tsid, theirs) in &other.sets {
            let list = out.sets.entry(tsid.clone()).or_default();
            list.extend_from_slice(theirs);
            normalise(list);
        }
        out
    }

    /// Transactions in `self` but not in `other` (`self − other`, MySQL's `GTID_SUBTRACT`): e.g.
    /// source minus replica is what the replica still has to apply.
    pub fn subtract(&self, other: &MysqlGtidSet) -> MysqlGtidSet {
        let sets = self
            .sets
            .iter()
            .filter_map(|(tsid, ours)| {
                let left = match other.sets.get(tsid) {
                    Some(theirs) => subtract_intervals(ours, theirs),
                    None => ours.clone(),
                };
                (!left.is_empty()).then(|| (tsid.clone(), left))
            })
            .collect();
        MysqlGtidSet { sets }
    }

    /// Transactions in both `self` and `other`.
    pub fn intersection(&self, other: &MysqlGtidSet) -> MysqlGtidSet {
        let sets = self
            .sets
            .iter()
            .filter_map(|(tsid, ours)| {
                let theirs = other.sets.get(tsid)?;
                let both = intersect_intervals(ours, theirs);
                (!both.is_empty()).then(|| (tsid.clone(), both))
            })
            .collect();
        MysqlGtidSet { sets }
    }
}

impl FromStr for MysqlGtidSet {
    type Err = GtidError;

    fn from_str(text: &str) -> Result<MysqlGtidSet, GtidError> {
        MysqlGtidSet::parse(text)
    }
}

impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let separator = if f.alternate() { ",\n" } else { "," };
        let mut previous: Option<Uuid> = None;
        for (tsid, intervals) in &self.sets {
            // One element per uuid; its tags follow its untagged intervals (map order).
            if previous != Some(tsid.uuid) {
                if previous.is_some() {
                    f.write_str(separator)?;
                }
                write!(f, "{}", tsid.uuid)?;
                previous = Some(tsid.uuid);
            }
            if let Some(tag) = &tsid.tag {
                write!(f, ":{}", tag.0)?;
            }
            for &(start, end) in intervals {
                if start == end {
                    write!(f, ":{start}")?;
                } else {
                    write!(f, ":{start}-{end}")?;
                }
            }
        }
        Ok(())
    }
}

/// Parses `N` or `N-M` (whitespace around the dash tolerated, as MySQL does).
fn parse_interval(text: &str) -> Result<Interval, GtidError> {
    let (start, end) = match text.split_once('-') {
        Some((start, end)) => (trim_ws(start), trim_ws(end)),
        None => (text, text),
    };
    let number = |digits: &str| -> Result<u64, GtidError> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(GtidError::BadInterval(quote(text)));
        }
        match digits.parse::<u64>() {
            Ok(n) if n <= MAX_GNO => Ok(n),
            _ => Err(GtidError::GnoOutOfRange(quote(text))),
        }
    };
    let (start, end) = (number(start)?, number(end)?);
    if start == 0 {
        return Err(GtidError::ZeroGno(quote(text)));
    }
    if end < start {
        return Err(GtidError::ReversedInterval(quote(text)));
    }
    Ok((start, end))
}

/// Sorts and merges overlapping or adjacent intervals (`1-3` and `4-5` are `1-5`).
fn normalise(list: &mut Vec<Interval>) {
    list.sort_unstable();
    let mut merged: Vec<Interval> = Vec::with_capacity(list.len());
    for &(start, end) in list.iter() {
        match merged.last_mut() {
            // `last.1 + 1` cannot overflow: every end is at most MAX_GNO.
            Some(last) if start <= last.1 + 1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    *list = merged;
}

/// Whether canonical `ours` covers every interval of canonical `theirs`. Because `ours` is
/// merged, each of `theirs` must lie inside a single one of ours.
fn contains_intervals(ours: &[Interval], theirs: &[Interval]) -> bool {
    theirs.iter().all(|&(start, end)| {
        // The last of our intervals starting at or before `start` is the only candidate.
        let after = ours.partition_point(|&(s, _)| s <= start);
        after > 0 && ours[after - 1].1 >= end
    })
}

/// `ours − theirs` for canonical lists; the result is canonical (pieces are separated by
/// removed, non-empty gaps).
fn subtract_intervals(ours: &[Interval], theirs: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::new();
    let mut j = 0;
    for &(start, end) in ours {
        // Skip their intervals wholly before this one; they cannot touch later ones either.
        while j < theirs.len() && theirs[j].1 < start {
            j += 1;
        }
        let mut from = start;
        let mut covered = false;
        let mut k = j;
        while k < theirs.len() && theirs[k].0 <= end {
            let (cut_start, cut_end) = theirs[k];
            if cut_start > from {
                // cut_start > from >= 1, so no underflow.
                out.push((from, cut_start - 1));
            }
            if cut_end >= end {
                covered = true;
                break;
            }
            // cut_end < end <= MAX_GNO, so no overflow.
            from = from.max(cut_end + 1);
            k += 1;
        }
        if !covered {
            out.push((from, end));
        }
    }
    out
}

/// `ours ∩ theirs` for canonical lists; the result is canonical.
fn intersect_intervals(ours: &[Interval], theirs: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < ours.len() && j < theirs.len() {
        let start = ours[i].0.max(theirs[j].0);
        let end = ours[i].1.min(theirs[j].1);
        if start <= end {
            out.push((start, end));
        }
        // Advance whichever ends first; the other may still overlap the next one.
        if ours[i].1 < theirs[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// MariaDB
// ---------------------------------------------------------------------------------------------

/// One MariaDB GTID, `domain-server_id-seq`.
///
/// `seq` counts per *domain*, not per server: `server_id` only says which server wrote the
/// transaction. Two GTIDs with the same domain and seq but different server_ids are two
/// different transactions, i.e. the servers have diverged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MariadbGtid {
    /// Replication domain (`gtid_domain_id`), the unit of ordering.
    pub domain: u32,
    /// The server that wrote the transaction (`server_id`); informational.
    pub server_id: u32,
    /// Sequence number within the domain.
    pub seq: u64,
}

impl MariadbGtid {
    /// Parses `domain-server_id-seq` (decimal digits only).
    pub fn parse(text: &str) -> Result<MariadbGtid, GtidError> {
        let bad = || GtidError::BadMariadbGtid(quote(text));
        let mut fields = text.split('-');
        let (Some(domain), Some(server_id), Some(seq), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad());
        };
        Ok(MariadbGtid {
            domain: parse_digits(domain).ok_or_else(bad)?,
            server_id: parse_digits(server_id).ok_or_else(bad)?,
            seq: parse_digits(seq).ok_or_else(bad)?,
        })
    }
}

impl FromStr for MariadbGtid {
    type Err = GtidError;

    fn from_str(text: &str) -> Result<MariadbGtid, GtidError> {
        MariadbGtid::parse(text)
    }
}

impl fmt::Display for MariadbGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

/// A MariaDB GTID position: the last GTID per replication domain, e.g. `0-1-100,1-2-50`.
///
/// A position says how far each domain has got, not which transactions were applied: it can
/// tell that a replica is 3 behind in domain 0, not which 3 (for dense sequences, those are the
/// next 3). `Display` sorts by domain and joins with `,`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MariadbGtidPos {
    /// The GTID of each domain present, keyed by its domain.
    by_domain: BTreeMap<u32, MariadbGtid>,
}

impl MariadbGtidPos {
    /// The empty position (a server that has replicated nothing prints `''`).
    pub fn new() -> MariadbGtidPos {
        MariadbGtidPos::default()
    }

    /// Parses `domain-server_id-seq[,...]`. Whitespace around elements and blank text (the empty
    /// position) are accepted; an empty element or a domain appearing twice is refused (MariaDB
    /// refuses both in `gtid_slave_pos` too).
    pub fn parse(text: &str) -> Result<MariadbGtidPos, GtidError> {
        let mut pos = MariadbGtidPos::new();
        if trim_ws(text).is_empty() {
            return Ok(pos);
        }
        for element in text.split(',') {
            let element = trim_ws(element);
            if element.is_empty() {
                return Err(GtidError::EmptyElement);
            }
            let gtid = MariadbGtid::parse(element)?;
            if pos.by_domain.insert(gtid.domain, gtid).is_some() {
                return Err(GtidError::DuplicateDomain(gtid.domain));
            }
        }
        Ok(pos)
    }

    /// True when no domain is present.
    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// Number of domains present.
    pub fn len(&self) -> usize {
        self.by_domain.len()
    }

    /// The GTID for `domain`, if the position has one.
    pub fn get(&self, domain: u32) -> Option<MariadbGtid> {
        self.by_domain.get(&domain).copied()
    }

    /// The GTIDs, sorted by domain.
    pub fn iter(&self) -> impl Iterator<Item = MariadbGtid> + '_ {
        self.by_domain.values().copied()
    }

    /// True when `self` has reached `other` in every domain `other` has: the domain is present
    /// in `self` with a seq at least `other`'s. Domains only `self` has do not matter.
    ///
    /// Compares seqs only; see [`MariadbGtidPos::diverged`] for server_id mismatches.
    pub fn contains(&self, other: &MariadbGtidPos) -> bool {
        other.iter().all(|theirs| {
            self.get(theirs.domain)
                .is_some_and(|ours| ours.seq >= theirs.seq)
        })
    }

    /// What `self` lacks compared to `other`: `other`'s GTIDs for the domains where `other` is
    /// ahead of `self` (or that `self` does not have). Empty exactly when `self.contains(other)`.
    pub fn missing(&self, other: &MariadbGtidPos) -> MariadbGtidPos {
        let by_domain = other
            .by_domain
            .iter()
            .filter(|(domain, theirs)| self.get(**domain).is_none_or(|ours| ours.seq < theirs.seq))
            .map(|(domain, theirs)| (*domain, *theirs))
            .collect();
        MariadbGtidPos { by_domain }
    }

    /// How far `self` is behind `other`: the sum over domains of `other.seq − self.seq` where
    /// `other` is ahead (a domain `self` lacks counts from 0). When seqs are dense within each
    /// domain (the usual case) this is the number of transactions still to apply. Saturates at
    /// `u64::MAX`.
    ///
    /// Zero whenever `self.contains(other)`, but not only then: a domain that `self` lacks and
    /// `other` has at seq 0 is [`missing`](MariadbGtidPos::missing) yet 0 behind.
    pub fn behind_by(&self, other: &MariadbGtidPos) -> u64 {
        other.iter().fold(0u64, |sum, theirs| {
            let ours = self.get(theirs.domain).map_or(0, |g| g.seq);
            sum.saturating_add(theirs.seq.saturating_sub(ours))
        })
    }

    /// Per-domain maximum of `self` and `other`. When both have the same seq with different
    /// server_ids (divergence) the larger server_id is kept, only so the result does not depend
    /// on argument order.
    pub fn union(&self, other: &MariadbGtidPos) -> MariadbGtidPos {
        let mut out = self.clone();
        for theirs in other.iter() {
            out.by_domain
                .entry(theirs.domain)
                .and_modify(|ours| {
                    if (theirs.seq, theirs.server_id) > (ours.seq, ours.server_id) {
                        *ours = theirs;
                    }
                })
                .or_insert(theirs);
        }
        out
    }

    /// Domains where `self` and `other` are at the same seq but written by different servers:
    /// two different transactions claim the same place in the domain, so the servers have
    /// diverged (e.g. both were written to during a failover).
    ///
    /// A necessary sign, not a sufficient check: positions only keep the last GTID, so
    /// divergence at an earlier seq is invisible here once either side moves on.
    pub fn diverged(&self, other: &MariadbGtidPos) -> Vec<u32> {
        self.iter()
            .filter(|ours| {
                other.get(ours.domain).is_some_and(|theirs| {
                    theirs.seq == ours.seq && theirs.server_id != ours.server_id
                })
            })
            .map(|ours| ours.domain)
            .collect()
    }
}

impl FromStr for MariadbGtidPos {
    type Err = GtidError;

    fn from_str(text: &str) -> Result<MariadbGtidPos, GtidError> {
        MariadbGtidPos::parse(text)
    }
}

impl fmt::Display for MariadbGtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, gtid) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{gtid}")?;
        }
        Ok(())
    }
}

/// A MariaDB binary log state (`@@gtid_binlog_state`): the last GTID of every (domain,
/// server_id) pair in the binary log, e.g. `0-1-22,0-2-8`.
///
/// Unlike a [`MariadbGtidPos`], it keeps one entry per *server* within a domain, so a
/// transaction written on a replica directly (`0-2-8`) stays visible after later writes from
/// the source (`0-1-22`) overtook its seq: per-domain positions would then look equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MariadbBinlogState {
    /// The last seq of each (domain, server_id).
    by_origin: BTreeMap<(u32, u32), u64>,
}

impl MariadbBinlogState {
    /// Parses `domain-server_id-seq[,...]`; blank text is the empty state. A (domain,
    /// server_id) pair appearing twice is refused: the server prints each once.
    pub fn parse(text: &str) -> Result<MariadbBinlogState, GtidError> {
        let mut state = MariadbBinlogState::default();
        if trim_ws(text).is_empty() {
            return Ok(state);
        }
        for element in text.split(',') {
            let element = trim_ws(element);
            if element.is_empty() {
                return Err(GtidError::EmptyElement);
            }
            let g = MariadbGtid::parse(element)?;
            if state
                .by_origin
                .insert((g.domain, g.server_id), g.seq)
                .is_some()
            {
                return Err(GtidError::DuplicateOrigin(g.domain, g.server_id));
            }
        }
        Ok(state)
    }

    /// The entries, sorted by (domain, server_id).
    pub fn iter(&self) -> impl Iterator<Item = MariadbGtid> + '_ {
        self.by_origin
            .iter()
            .map(|(&(domain, server_id), &seq)| MariadbGtid {
                domain,
                server_id,
                seq,
            })
    }

    /// The entries of `self` that `other` has not reached: `other` has no entry for that
    /// (domain, server_id), or a lower seq. On a replica compared with its source, these are
    /// transactions the source never had (errant), each named by its origin's latest GTID.
    pub fn ahead_of(&self, other: &MariadbBinlogState) -> Vec<MariadbGtid> {
        self.iter()
            .filter(|g| {
                other
                    .by_origin
                    .get(&(g.domain, g.server_id))
                    .is_none_or(|&seq| seq < g.seq)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "4f22fb58-82db-22f2-af44-d91bb95306a3";

    fn set(text: &str) -> MysqlGtidSet {
        MysqlGtidSet::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn pos(text: &str) -> MariadbGtidPos {
        MariadbGtidPos::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    /// Input → canonical `Display`: round trips, canonicalisation, whitespace, case, tags.
    #[test]
    fn mysql_parse_and_canonical_form() {
        let a = A;
        let upper = A.to_uppercase();
        #[rustfmt::skip]
        let cases: Vec<(String, String)> = vec![
            ("".into(), "".into()),
            (" \n ".into(), "".into()),
            (format!("{a}:1-5"), format!("{a}:1-5")),
            (format!("{a}:7"), format!("{a}:7")),
            (format!("{a}:1-1"), format!("{a}:1")),
            (format!("{upper}:1-5"), format!("{a}:1-5")),
            (format!("{a}:1-5:7-9"), format!("{a}:1-5:7-9")),
            (format!("{a}:7-9:1-5"), format!("{a}:1-5:7-9")),
            (format!("{a}:1-5:6-9"), format!("{a}:1-9")),
            (format!("{a}:1-5:3-7"), format!("{a}:1-7")),
            (format!("{a}:1-5:2"), format!("{a}:1-5")),
            (format!("{a}:1:2:3:5"), format!("{a}:1-3:5")),
            (format!("{a}:1-3,{a}:4-6"), format!("{a}:1-6")),
            (format!("{B}:1-3,{a}:1-5"), format!("{a}:1-5,{B}:1-3")),
            (format!("{a}:1-5,\n{B}:1-3"), format!("{a}:1-5,{B}:1-3")),
            (format!("  {a}:1-5 ,\r\n\t{B}:1-3\n"), format!("{a}:1-5,{B}:1-3")),
            (format!("{a} : 1 - 5 : 7"), format!("{a}:1-5:7")),
            (format!("{a}:0001-05"), format!("{a}:1-5")),
            (format!("{a}:{MAX_GNO}"), format!("{a}:{MAX_GNO}")),
            // MySQL 8.4 tags: untagged first, then tags sorted, all lowercase.
            (format!("{a}:tag:1-5"), format!("{a}:tag:1-5")),
            (format!("{a}:TAG_1:1-5"), format!("{a}:tag_1:1-5")),
            (format!("{a}:1-3:tag:5-6"), format!("{a}:1-3:tag:5-6")),
            (format!("{a}:tag:5-6:_x:1,{a}:1-3"), format!("{a}:1-3:_x:1:tag:5-6")),
            (format!("{a}:b:1:a:2:b:2"), format!("{a}:a:2:b:1-2")),
            (format!("{a}:t:1,{a}:T:2"), format!("{a}:t:1-2")),
            (format!("{a}:{}:1", "x".repeat(32)), format!("{a}:{}:1", "x".repeat(32))),
        ];
        for (input, want) in cases {
            let parsed = set(&input);
            assert_eq!(parsed.to_string(), want, "input {input:?}");
            assert_eq!(set(&want), parsed, "canonical form of {input:?} re-parses");
        }
    }

    #[test]
    fn mysql_alternate_display_is_what_the_server_prints() {
        let s = set(&format!("{B}:1-3,{A}:1-5"));
        assert_eq!(format!("{s:#}"), format!("{A}:1-5,\n{B}:1-3"));
        assert_eq!(format!("{:#}", set(&format!("{A}:1"))), format!("{A}:1"));
    }

    #[test]
    fn mysql_refuses_garbage() {
        let a = A;
        #[rustfmt::skip]
        let cases: Vec<(String, GtidError)> = vec![
            (",".into(), GtidError::EmptyElement),
            (format!("{a}:1,"), GtidError::EmptyElement),
            (format!("{a}:1,,{B}:1"), GtidError::EmptyElement),
            (a.to_string(), GtidError::NoIntervals(a.into())),
            (format!("{a}:"), GtidError::BadInterval("".into())),
            (format!("{a}::1"), GtidError::BadInterval("".into())),
            (format!("{a}:0"), GtidError::ZeroGno("0".into())),
            (format!("{a}:0-5"), GtidError::ZeroGno("0-5".into())),
            (format!("{a}:5-3"), GtidError::ReversedInterval("5-3".into())),
            (format!("{a}:1-"), GtidError::BadInterval("1-".into())),
            (format!("{a}:-5"), GtidError::BadInterval("-5".into())),
            (format!("{a}:+5"), GtidError::BadInterval("+5".into())),
            (format!("{a}:1-2-3"), GtidError::BadInterval("1-2-3".into())),
            (format!("{a}:0x10"), GtidError::BadInterval("0x10".into())),
            (format!("{a}:1.5"), GtidError::BadInterval("1.5".into())),
            (format!("{a}:{}", MAX_GNO + 1), GtidError::GnoOutOfRange((MAX_GNO + 1).to_string())),
            (format!("{a}:1-99999999999999999999"), GtidError::GnoOutOfRange("1-99999999999999999999".into())),
            (format!("{a}:tag"), GtidError::TagWithoutIntervals("tag".into())),
            (format!("{a}:t1:t2:1"), GtidError::TagWithoutIntervals("t1".into())),
            (format!("{a}:1:t1"), GtidError::TagWithoutIntervals("t1".into())),
            (format!("{a}:ta-g:1"), GtidError::BadTag("ta-g".into())),
            (format!("{a}:tag!:1"), GtidError::BadTag("tag!".into())),
            (format!("{a}:{}:1", "x".repeat(33)), GtidError::BadTag("x".repeat(33))),
            (format!("{a}:täg:1"), GtidError::BadTag("täg".into())),
            ("3e11fa47-71ca-11e1-9e33-c80aa942956:1".into(), GtidError::BadUuid("3e11fa47-71ca-11e1-9e33-c80aa942956".into())),
            ("3e11fa4771ca11e19e33c80aa9429562:1".into(), GtidError::BadUuid("3e11fa4771ca11e19e33c80aa9429562".into())),
            ("3e11fa47_71ca-11e1-9e33-c80aa9429562:1".into(), GtidError::BadUuid("3e11fa47_71ca-11e1-9e33-c80aa9429562".into())),
            ("3e11fa47-71ca-11e1-9e33-c80aa942956g:1".into(), GtidError::BadUuid("3e11fa47-71ca-11e1-9e33-c80aa942956g".into())),
            ("{3e11fa47-71ca-11e1-9e33-c80aa9429562}:1".into(), GtidError::BadUuid("{3e11fa47-71ca-11e1-9e33-c80aa9429562}".into())),
            ("0-1-100".into(), GtidError::BadUuid("0-1-100".into())),
            ("garbage".into(), GtidError::BadUuid("garbage".into())),
        ];
        for (input, want) in cases {
            assert_eq!(MysqlGtidSet::parse(&input), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn errors_quote_a_short_excerpt() {
        let long = format!("{}:1", "z".repeat(500));
        let msg = MysqlGtidSet::parse(&long).unwrap_err().to_string();
        assert!(msg.len() < 120, "{msg}");
        assert!(msg.starts_with("invalid server uuid \"zzz"), "{msg}");
        // Cutting must respect char boundaries.
        let wide = format!("{}-1-1", "é".repeat(100));
        assert!(MariadbGtidPos::parse(&wide).is_err());
    }

    /// (a, b, a ∪ b, a − b, a ∩ b, a ⊇ b, count(a)) with `A`/`B` substituted for `a:`/`b:`.
    #[test]
    fn mysql_algebra() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, &str, &str, bool, u64)] = &[
            ("",              "",             "",                 "",              "",          true,  0),
            ("a:1-5",         "",             "a:1-5",            "a:1-5",         "",          true,  5),
            ("",              "a:1-5",        "a:1-5",            "",              "",          false, 0),
            ("a:1-5",         "a:1-5",        "a:1-5",            "",              "a:1-5",     true,  5),
            ("a:1-10",        "a:3-4",        "a:1-10",           "a:1-2:5-10",    "a:3-4",     true,  10),
            ("a:1-10",        "a:1",          "a:1-10",           "a:2-10",        "a:1",       true,  10),
            ("a:1-10",        "a:10",         "a:1-10",           "a:1-9",         "a:10",      true,  10),
            ("a:1-5",         "a:6-9",        "a:1-9",            "a:1-5",         "",          false, 5),
            ("a:1-5",         "a:3-9",        "a:1-9",            "a:1-2",         "a:3-5",     false, 5),
            ("a:1-5:8-10",    "a:4-8",        "a:1-10",           "a:1-3:9-10",    "a:4-5:8",   false, 8),
            ("a:1-20",        "a:2:4:6-7",    "a:1-20",           "a:1:3:5:8-20",  "a:2:4:6-7", true,  20),
            ("a:1-5",         "b:1-5",        "a:1-5,b:1-5",      "a:1-5",         "",          false, 5),
            ("a:1-5,b:1-3",   "b:1-3",        "a:1-5,b:1-3",      "a:1-5",         "b:1-3",     true,  8),
            ("a:1-5",         "a:t:1-5",      "a:1-5:t:1-5",      "a:1-5",         "",          false, 5),
            ("a:1-5:t:1-9",   "a:t:2-3",      "a:1-5:t:1-9",      "a:1-5:t:1:4-9", "a:t:2-3",   true,  14),
            ("a:t:1-5",       "a:u:1-5",      "a:t:1-5:u:1-5",    "a:t:1-5",       "",          false, 5),
        ];
        let expand = |s: &str| {
            set(&s
                .replace("a:", &format!("{A}:"))
                .replace("b:", &format!("{B}:")))
        };
        for &(a, b, union, minus, both, contains, count) in cases {
            let (sa, sb) = (expand(a), expand(b));
            let case = format!("a={a:?} b={b:?}");
            assert_eq!(sa.union(&sb), expand(union), "union {case}");
            assert_eq!(sb.union(&sa), expand(union), "union commutes {case}");
            assert_eq!(sa.subtract(&sb), expand(minus), "subtract {case}");
            assert_eq!(sa.intersection(&sb), expand(both), "intersection {case}");
            assert_eq!(sa.contains(&sb), contains, "contains {case}");
            assert_eq!(sa.count(), count, "count {case}");
            assert_eq!(sa.is_empty(), count == 0, "is_empty {case}");
        }
    }

    #[test]
    fn mysql_count_saturates() {
        let s = set(&format!(
            "{A}:1-{MAX_GNO},{B}:1-{MAX_GNO},{B}:t:1-{MAX_GNO}"
        ));
        assert_eq!(s.count(), u64::MAX);
        assert_eq!(set(&format!("{A}:1-{MAX_GNO}")).count(), MAX_GNO);
    }

    #[test]
    fn mysql_from_str_matches_parse() {
        let s: MysqlGtidSet = format!("{A}:1-3").parse().unwrap();
        assert_eq!(s, set(&format!("{A}:1-3")));
        assert!(MysqlGtidSet::new().is_empty());
    }

    /// Input → canonical `Display` for MariaDB positions.
    #[test]
    fn mariadb_parse_and_canonical_form() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("  ", ""),
            ("0-1-100", "0-1-100"),
            ("0-1-100,1-2-50", "0-1-100,1-2-50"),
            ("1-2-50,0-1-100", "0-1-100,1-2-50"),
            ("0-1-100, 1-2-50", "0-1-100,1-2-50"),
            ("0-1-100,\n1-2-50\n", "0-1-100,1-2-50"),
            ("0-1-0", "0-1-0"),
            ("007-01-0100", "7-1-100"),
            ("4294967295-4294967295-18446744073709551615", "4294967295-4294967295-18446744073709551615"),
        ];
        for &(input, want) in cases {
            assert_eq!(pos(input).to_string(), want, "input {input:?}");
            assert_eq!(
                pos(want),
                pos(input),
                "canonical form of {input:?} re-parses"
            );
        }
    }

    #[test]
    fn mariadb_refuses_garbage() {
        #[rustfmt::skip]
        let cases: &[(&str, GtidError)] = &[
            (",", GtidError::EmptyElement),
            ("0-1-1,", GtidError::EmptyElement),
            ("0-1-1,,1-1-1", GtidError::EmptyElement),
            ("0-1", GtidError::BadMariadbGtid("0-1".into())),
            ("0-1-2-3", GtidError::BadMariadbGtid("0-1-2-3".into())),
            ("0--1-2", GtidError::BadMariadbGtid("0--1-2".into())),
            ("-0-1-2", GtidError::BadMariadbGtid("-0-1-2".into())),
            ("0-1-+2", GtidError::BadMariadbGtid("0-1-+2".into())),
            ("0-1-x", GtidError::BadMariadbGtid("0-1-x".into())),
            ("0 - 1 - 2", GtidError::BadMariadbGtid("0 - 1 - 2".into())),
            ("4294967296-1-1", GtidError::BadMariadbGtid("4294967296-1-1".into())),
            ("0-4294967296-1", GtidError::BadMariadbGtid("0-4294967296-1".into())),
            ("0-1-18446744073709551616", GtidError::BadMariadbGtid("0-1-18446744073709551616".into())),
            ("0-1-5,0-2-6", GtidError::DuplicateDomain(0)),
            ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5", GtidError::BadMariadbGtid("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5".into())),
        ];
        for (input, want) in cases {
            assert_eq!(
                &MariadbGtidPos::parse(input).unwrap_err(),
                want,
                "input {input:?}"
            );
        }
    }

    /// (a, b, a ⊇ b, missing(a, b), behind_by(a, b), a ∪ b, diverged(a, b)).
    type PosCase = (
        &'static str,
        &'static str,
        bool,
        &'static str,
        u64,
        &'static str,
        &'static [u32],
    );

    #[test]
    fn mariadb_comparisons() {
        #[rustfmt::skip]
        let cases: &[PosCase] = &[
            ("",                "",                 true,  "",               0,  "",                 &[]),
            ("0-1-100",         "",                 true,  "",               0,  "0-1-100",          &[]),
            ("",                "0-1-100",          false, "0-1-100",        100, "0-1-100",         &[]),
            ("0-1-100",         "0-1-100",          true,  "",               0,  "0-1-100",          &[]),
            ("0-1-100",         "0-1-90",           true,  "",               0,  "0-1-100",          &[]),
            ("0-1-90",          "0-1-100",          false, "0-1-100",        10, "0-1-100",          &[]),
            ("0-1-90",          "0-2-100",          false, "0-2-100",        10, "0-2-100",          &[]),
            ("0-1-100",         "0-2-100",          true,  "",               0,  "0-2-100",          &[0]),
            ("0-2-100",         "0-1-100",          true,  "",               0,  "0-2-100",          &[0]),
            ("0-1-100,1-2-50",  "0-1-100,1-2-60",   false, "1-2-60",         10, "0-1-100,1-2-60",   &[]),
            ("0-1-100,1-2-70",  "0-1-110,1-2-60",   false, "0-1-110",        10, "0-1-110,1-2-70",   &[]),
            ("0-1-100",         "0-1-110,1-2-60",   false, "0-1-110,1-2-60", 70, "0-1-110,1-2-60",   &[]),
            ("",                "0-1-0",            false, "0-1-0",          0,  "0-1-0",            &[]),
            ("0-1-100,1-2-60",  "1-2-60",           true,  "",               0,  "0-1-100,1-2-60",   &[]),
            ("0-1-5,1-1-7,2-1-9", "0-2-5,1-1-7,2-3-9", true, "",             0,  "0-2-5,1-1-7,2-3-9", &[0, 2]),
            ("",                "0-1-18446744073709551615,1-1-18446744073709551615", false, "0-1-18446744073709551615,1-1-18446744073709551615", u64::MAX, "0-1-18446744073709551615,1-1-18446744073709551615", &[]),
        ];
        for &(a, b, contains, missing, behind, union, diverged) in cases {
            let (pa, pb) = (pos(a), pos(b));
            let case = format!("a={a:?} b={b:?}");
            assert_eq!(pa.contains(&pb), contains, "contains {case}");
            assert_eq!(pa.missing(&pb), pos(missing), "missing {case}");
            assert_eq!(pa.behind_by(&pb), behind, "behind_by {case}");
            assert_eq!(pa.union(&pb), pos(union), "union {case}");
            assert_eq!(pb.union(&pa), pos(union), "union commutes {case}");
            assert_eq!(pa.diverged(&pb), diverged, "diverged {case}");
        }
    }

    #[test]
    fn mariadb_accessors() {
        let p: MariadbGtidPos = "1-2-50,0-1-100".parse().unwrap();
        assert_eq!(p.len(), 2);
        assert!(!p.is_empty());
        assert_eq!(
            p.get(1),
            Some(MariadbGtid {
                domain: 1,
                server_id: 2,
                seq: 50
            })
        );
        assert_eq!(p.get(2), None);
        let domains: Vec<u32> = p.iter().map(|g| g.domain).collect();
        assert_eq!(domains, [0, 1]);
        assert_eq!(
            "0-1-100".parse::<MariadbGtid>().unwrap().to_string(),
            "0-1-100"
        );
        assert!(MariadbGtidPos::new().is_empty());
    }

    // --- property tests ------------------------------------------------------------------------

    const UUIDS: [&str; 3] = [A, B, "00000000-0000-0000-0000-000000000001"];
    const TAGS: [Option<&str>; 3] = [None, Some("a"), Some("tag_2")];

    /// Small sets over three uuids and three tags, so that overlaps, adjacency and shared keys
    /// are common; some intervals sit at the top of the range to exercise `MAX_GNO` edges.
    fn arb_set() -> impl Strategy<Value = MysqlGtidSet> {
        let start = prop_oneof![4 => 1u64..60, 1 => (MAX_GNO - 12)..=MAX_GNO];
        prop::collection::vec((0..UUIDS.len(), 0..TAGS.len(), start, 0u64..8), 0..10).prop_map(
            |items| {
                let mut s = MysqlGtidSet::new();
                for (u, t, start, len) in items {
                    let tsid = Tsid {
                        uuid: Uuid::parse(UUIDS[u]).unwrap(),
                        tag: TAGS[t].map(|t| Tag(t.to_string())),
                    };
                    s.insert(tsid, (start, start.saturating_add(len).min(MAX_GNO)));
                }
                s
            },
        )
    }

    /// The set as individual transactions: a model to check the interval arithmetic against.
    fn model(s: &MysqlGtidSet) -> std::collections::BTreeSet<(Tsid, u64)> {
        s.sets
            .iter()
            .flat_map(|(tsid, list)| {
                list.iter()
                    .flat_map(move |&(a, b)| (a..=b).map(move |n| (tsid.clone(), n)))
            })
            .collect()
    }

    fn is_canonical(s: &MysqlGtidSet) -> bool {
        s.sets.values().all(|list| {
            !list.is_empty()
                && list.iter().all(|&(a, b)| 1 <= a && a <= b && b <= MAX_GNO)
                && list.windows(2).all(|w| w[0].1 + 1 < w[1].0)
        })
    }

    fn arb_pos() -> impl Strategy<Value = MariadbGtidPos> {
        prop::collection::btree_map(0u32..5, (1u32..4, 0u64..20), 0..5).prop_map(|m| {
            let by_domain = m
                .into_iter()
                .map(|(domain, (server_id, seq))| {
                    (
                        domain,
                        MariadbGtid {
                            domain,
                            server_id,
                            seq,
                        },
                    )
                })
                .collect();
            MariadbGtidPos { by_domain }
        })
    }

    #[test]
    fn binlog_state_keeps_errant_writes_visible_after_later_source_writes() {
        // The replica wrote 0-2-8 itself; the source's later 0-1-22 overtook its seq.
        let replica = MariadbBinlogState::parse("0-1-22,0-2-8").unwrap();
        let source = MariadbBinlogState::parse("0-1-22").unwrap();
        // Per-domain positions see nothing: both are at 0-1-22.
        assert!(MariadbGtidPos::parse("0-1-22")
            .unwrap()
            .contains(&MariadbGtidPos::parse("0-1-22").unwrap()));
        let errant: Vec<String> = replica
            .ahead_of(&source)
            .iter()
            .map(|g| g.to_string())
            .collect();
        assert_eq!(errant, ["0-2-8"]);
        // The source having the replica's writes (master-master) makes them not errant.
        let both = MariadbBinlogState::parse("0-1-22,0-2-8").unwrap();
        assert!(replica.ahead_of(&both).is_empty());
        // A later write from the same origin on the replica is errant again.
        let more = MariadbBinlogState::parse("0-1-22,0-2-9").unwrap();
        assert_eq!(more.ahead_of(&both).len(), 1);
        assert!(MariadbBinlogState::parse("")
            .unwrap()
            .ahead_of(&source)
            .is_empty());
        assert!(matches!(
            MariadbBinlogState::parse("0-1-2,0-1-3"),
            Err(GtidError::DuplicateOrigin(0, 1))
        ));
        assert!(MariadbBinlogState::parse("0-1-2,,0-2-3").is_err());
    }

    proptest! {
        #[test]
        fn mysql_display_round_trips(a in arb_set()) {
            prop_assert_eq!(MysqlGtidSet::parse(&a.to_string()).unwrap(), a.clone());
            prop_assert_eq!(MysqlGtidSet::parse(&format!("{a:#}")).unwrap(), a.clone());
            prop_assert_eq!(MysqlGtidSet::parse(&a.to_string().to_uppercase()).unwrap(), a);
        }

        #[test]
        fn mysql_algebra_matches_the_model(a in arb_set(), b in arb_set()) {
            let (ma, mb) = (model(&a), model(&b));
            let (u, d, i) = (a.union(&b), a.subtract(&b), a.intersection(&b));
            prop_assert!(is_canonical(&u) && is_canonical(&d) && is_canonical(&i));
            prop_assert_eq!(model(&u), ma.union(&mb).cloned().collect());
            prop_assert_eq!(model(&d), ma.difference(&mb).cloned().collect());
            prop_assert_eq!(model(&i), ma.intersection(&mb).cloned().collect());
            prop_assert_eq!(a.contains(&b), mb.is_subset(&ma));
            prop_assert_eq!(a.count(), ma.len() as u64);
        }

        #[test]
        fn mysql_algebra_laws(a in arb_set(), b in arb_set()) {
            let u = a.union(&b);
            prop_assert_eq!(a.subtract(&b).union(&b), u.clone());
            prop_assert_eq!(a.subtract(&b).union(&a.intersection(&b)), a.clone());
            prop_assert!(a.subtract(&b).intersection(&b).is_empty());
            prop_assert!(u.contains(&a) && u.contains(&b));
            prop_assert_eq!(u.clone(), b.union(&a));
            prop_assert_eq!(a.intersection(&b), b.intersection(&a));
            prop_assert!(u.count() <= a.count() + b.count());
            prop_assert_eq!(u.count() + a.intersection(&b).count(), a.count() + b.count());
            prop_assert_eq!(a.contains(&b), b.subtract(&a).is_empty());
            prop_assert!(a.contains(&a) && a.subtract(&a).is_empty());
        }

        #[test]
        fn mariadb_display_round_trips(a in arb_pos()) {
            prop_assert_eq!(MariadbGtidPos::parse(&a.to_string()).unwrap(), a);
        }

        #[test]
        fn mariadb_laws(a in arb_pos(), b in arb_pos()) {
            let u = a.union(&b);
            prop_assert_eq!(u.clone(), b.union(&a));
            prop_assert!(u.contains(&a) && u.contains(&b));
            prop_assert_eq!(a.contains(&b), a.missing(&b).is_empty());
            // Not `==`: a domain `a` lacks where `b` is at seq 0 is missing but 0 behind.
            prop_assert!(!a.contains(&b) || a.behind_by(&b) == 0);
            prop_assert!(a.union(&a.missing(&b)).contains(&b));
            prop_assert_eq!(a.behind_by(&b), a.missing(&b).iter()
                .map(|g| g.seq - a.get(g.domain).map_or(0, |o| o.seq)).sum::<u64>());
            prop_assert!(b.missing(&a).iter().all(|g| a.get(g.domain) == Some(g)));
            let mut d = b.diverged(&a);
            d.sort_unstable();
            prop_assert_eq!(a.diverged(&b), d);
            prop_assert!(a.contains(&a) && a.diverged(&a).is_empty());
        }
    }
}
