//! MySQL GTID sets: every transaction applied, as intervals per source uuid (and tag).

use super::*;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A server uuid as its 128-bit value: ordering by value is MySQL's (bytewise) ordering, and case
/// is normalised for free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Uuid(u128);

impl Uuid {
    pub(super) fn parse(text: &str) -> Result<Uuid, GtidError> {
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
pub(super) struct Tag(pub(super) String);

impl Tag {
    pub(super) fn parse(text: &str) -> Result<Tag, GtidError> {
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
pub(super) struct Tsid {
    pub(super) uuid: Uuid,
    pub(super) tag: Option<Tag>,
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
    pub(super) sets: BTreeMap<Tsid, Vec<Interval>>,
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
    pub(super) fn insert(&mut self, tsid: Tsid, interval: Interval) {
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

    /// The transactions `uuid` originated (tagged or not): a server's own writes when `uuid` is
    /// its `@@server_uuid`.
    pub fn originated_by(&self, uuid: &str) -> Result<MysqlGtidSet, GtidError> {
        let uuid = Uuid::parse(trim_ws(uuid))?;
        let sets = self
            .sets
            .iter()
            .filter(|(tsid, _)| tsid.uuid == uuid)
            .map(|(tsid, list)| (tsid.clone(), list.clone()))
            .collect();
        Ok(MysqlGtidSet { sets })
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
pub(super) fn parse_interval(text: &str) -> Result<Interval, GtidError> {
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
pub(super) fn normalise(list: &mut Vec<Interval>) {
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
pub(super) fn contains_intervals(ours: &[Interval], theirs: &[Interval]) -> bool {
    theirs.iter().all(|&(start, end)| {
        // The last of our intervals starting at or before `start` is the only candidate.
        let after = ours.partition_point(|&(s, _)| s <= start);
        after > 0 && ours[after - 1].1 >= end
    })
}

/// `ours − theirs` for canonical lists; the result is canonical (pieces are separated by
/// removed, non-empty gaps).
pub(super) fn subtract_intervals(ours: &[Interval], theirs: &[Interval]) -> Vec<Interval> {
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
pub(super) fn intersect_intervals(ours: &[Interval], theirs: &[Interval]) -> Vec<Interval> {
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
