//! MariaDB GTID positions (the last GTID per domain) and binlog states (the last per domain
//! and server_id).

use super::*;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

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
    pub(super) by_domain: BTreeMap<u32, MariadbGtid>,
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

    /// The last GTID per domain of the transactions `server_id` originated: its own writes,
    /// as opposed to the ones it replicated.
    pub fn originated_by(&self, server_id: u32) -> MariadbGtidPos {
        let by_domain = self
            .iter()
            .filter(|g| g.server_id == server_id)
            .map(|g| (g.domain, g))
            .collect();
        MariadbGtidPos { by_domain }
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
