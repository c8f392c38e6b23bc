//! A server's own writes: the transactions it originated (took from its clients) rather than
//! replicated. In master-master the handover between writers is judged on them: has the server
//! taking the writes applied every write the other one took, and has the other one stopped?

use super::{GtidError, MariadbBinlogState, MariadbGtidPos, MysqlGtidSet};
use std::fmt;

/// The writes one server originated, in its flavour's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// MariaDB: the last GTID per domain with the server's `server_id` in its binary log state.
    MariaDb(MariadbGtidPos),
    /// MySQL: every transaction of the server's `server_uuid` in its `gtid_executed`.
    MySql(MysqlGtidSet),
}

impl Origin {
    /// The own writes of a MariaDB server from its `@@gtid_binlog_state` and `@@server_id`.
    pub fn mariadb(binlog_state: &str, server_id: u32) -> Result<Origin, GtidError> {
        Ok(Origin::MariaDb(
            MariadbBinlogState::parse(binlog_state)?.originated_by(server_id),
        ))
    }

    /// The own writes of a MySQL server from its `@@gtid_executed` and `@@server_uuid`.
    pub fn mysql(gtid_executed: &str, server_uuid: &str) -> Result<Origin, GtidError> {
        Ok(Origin::MySql(
            MysqlGtidSet::parse(gtid_executed)?.originated_by(server_uuid)?,
        ))
    }

    /// True when the server never took a write of its own (that its binary log still shows).
    pub fn is_empty(&self) -> bool {
        match self {
            Origin::MariaDb(pos) => pos.is_empty(),
            Origin::MySql(set) => set.is_empty(),
        }
    }

    /// Whether a server whose executed positions are `executed` (MariaDB: any of
    /// `gtid_binlog_pos`, `gtid_slave_pos`, `gtid_current_pos`, joined; MySQL: `gtid_executed`)
    /// has applied every one of these writes. `None` entries are skipped; text that does not
    /// parse is an error, never "covered".
    pub fn covered_by(&self, executed: &[Option<&str>]) -> Result<bool, GtidError> {
        match self {
            Origin::MariaDb(own) => {
                let mut have = MariadbGtidPos::new();
                for text in executed.iter().flatten() {
                    have = have.union(&MariadbGtidPos::parse(text)?);
                }
                Ok(have.contains(own))
            }
            Origin::MySql(own) => {
                let mut have = MysqlGtidSet::new();
                for text in executed.iter().flatten() {
                    have = have.union(&MysqlGtidSet::parse(text)?);
                }
                Ok(have.contains(own))
            }
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Origin::MariaDb(pos) => pos.to_string(),
            Origin::MySql(set) => set.to_string(),
        };
        if text.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_own_writes_are_the_entries_with_its_server_id() {
        let own = Origin::mariadb("0-1-500,1-2-110,1-1-3", 2).unwrap();
        assert_eq!(own.to_string(), "1-2-110");
        assert!(own
            .covered_by(&[Some("0-1-500"), Some("1-2-110"), None])
            .unwrap());
        assert!(!own.covered_by(&[Some("0-1-500,1-2-109")]).unwrap());
        // A later write of another server in the same domain covers it (seqs are ordered).
        assert!(own.covered_by(&[Some("1-1-111")]).unwrap());
        let none = Origin::mariadb("0-1-500", 2).unwrap();
        assert!(none.is_empty() && none.covered_by(&[]).unwrap());
        assert_eq!(none.to_string(), "none");
        assert!(own.covered_by(&[Some("garbage")]).is_err());
    }

    #[test]
    fn mysql_own_writes_are_the_transactions_of_its_uuid() {
        let a = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let b = "4e11fa47-71ca-11e1-9e33-c80aa9429562";
        let own = Origin::mysql(&format!("{a}:1-500,{b}:1-7:9"), b).unwrap();
        assert_eq!(own.to_string(), format!("{b}:1-7:9"));
        assert!(own
            .covered_by(&[Some(&format!("{a}:1-3,{b}:1-9"))])
            .unwrap());
        assert!(!own.covered_by(&[Some(&format!("{b}:1-7"))]).unwrap());
        assert!(Origin::mysql("", b).unwrap().is_empty());
        assert!(Origin::mysql("", "not-a-uuid").is_err());
    }
}
