use super::read::*;
use super::*;

/// Replica status rows as servers print them (only the columns the probe reads, plus noise).
fn row(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
}

fn mariadb_row(lag: Option<&str>) -> Vec<(String, Option<String>)> {
    row(&[
        ("Connection_name", Some("")),
        ("Slave_IO_State", Some("Waiting for master to send event")),
        ("Master_Host", Some("10.0.0.1")),
        ("Master_Port", Some("3306")),
        ("Master_Log_File", Some("mysql-bin.000002")),
        ("Read_Master_Log_Pos", Some("1234")),
        ("Relay_Master_Log_File", Some("mysql-bin.000002")),
        ("Slave_IO_Running", Some("Yes")),
        ("Slave_SQL_Running", Some("Yes")),
        ("Exec_Master_Log_Pos", Some("1200")),
        ("Relay_Log_Space", Some("4096")),
        ("Seconds_Behind_Master", lag),
        ("Last_IO_Errno", Some("0")),
        ("Last_IO_Error", Some("")),
        ("Last_SQL_Errno", Some("0")),
        ("Last_SQL_Error", Some("")),
        ("Using_Gtid", Some("Slave_Pos")),
        ("Gtid_IO_Pos", Some("0-1-42")),
        ("SQL_Delay", Some("0")),
    ])
}

fn mysql84_row() -> Vec<(String, Option<String>)> {
    row(&[
        ("Replica_IO_State", Some("Waiting for source to send event")),
        ("Source_Host", Some("db1")),
        ("Source_Port", Some("3307")),
        ("Source_Log_File", Some("binlog.000009")),
        ("Read_Source_Log_Pos", Some("777")),
        ("Relay_Source_Log_File", Some("binlog.000009")),
        ("Replica_IO_Running", Some("Connecting")),
        ("Replica_SQL_Running", Some("Yes")),
        ("Exec_Source_Log_Pos", Some("777")),
        ("Relay_Log_Space", Some("1")),
        ("Seconds_Behind_Source", None),
        ("Last_IO_Errno", Some("2003")),
        ("Last_IO_Error", Some("error connecting to source")),
        ("Last_SQL_Errno", Some("0")),
        ("Last_SQL_Error", Some("")),
        ("SQL_Delay", Some("3600")),
        (
            "Retrieved_Gtid_Set",
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"),
        ),
        (
            "Executed_Gtid_Set",
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"),
        ),
        ("Channel_Name", Some("east")),
    ])
}

#[test]
fn both_column_spellings_map_to_one_channel() {
    let m = channel_from_columns(&mariadb_row(Some("3"))).unwrap();
    assert_eq!(
        (
            m.name.as_str(),
            &m.io_thread,
            m.lag,
            m.read_log_pos,
            m.exec_log_pos
        ),
        (
            "",
            &ThreadState::Yes,
            Some(Duration::from_secs(3)),
            1234,
            1200
        )
    );
    assert_eq!((m.source_host.as_str(), m.source_port), ("10.0.0.1", 3306));
    assert_eq!(m.gtid_io_pos.as_deref(), Some("0-1-42"));

    let y = channel_from_columns(&mysql84_row()).unwrap();
    assert_eq!(
        (y.name.as_str(), &y.io_thread, y.lag, y.last_io_errno),
        ("east", &ThreadState::Connecting, None, 2003)
    );
    assert_eq!(y.sql_delay, Some(Duration::from_secs(3600)));
    assert!(y.executed_gtid_set.is_some() && y.using_gtid.is_none());
}

#[test]
fn null_lag_stays_unknown_and_missing_columns_are_errors() {
    assert_eq!(channel_from_columns(&mariadb_row(None)).unwrap().lag, None);
    assert_eq!(
        channel_from_columns(&mariadb_row(Some("0"))).unwrap().lag,
        Some(Duration::ZERO)
    );
    let mut r = mariadb_row(Some("0"));
    r.retain(|(k, _)| k != "Slave_SQL_Running");
    let e = channel_from_columns(&r).unwrap_err();
    assert_eq!(e.kind, ProbeErrorKind::Protocol);
    assert_eq!(
        e.message,
        "replica status has no column Replica_SQL_Running or Slave_SQL_Running"
    );
    let r = mariadb_row(Some("soon"));
    assert!(
        channel_from_columns(&r).is_err(),
        "a non-numeric lag is not guessed"
    );
}

#[test]
fn flavour_and_statement_by_version() {
    let cases = [
        (
            "10.11.19-MariaDB-0+deb12u1",
            Flavor::MariaDb,
            "SHOW ALL SLAVES STATUS",
        ),
        ("11.4.2-MariaDB", Flavor::MariaDb, "SHOW ALL SLAVES STATUS"),
        ("5.7.44-log", Flavor::MySql, "SHOW SLAVE STATUS"),
        ("8.0.21", Flavor::MySql, "SHOW SLAVE STATUS"),
        ("8.0.22", Flavor::MySql, "SHOW REPLICA STATUS"),
        ("8.4.3", Flavor::MySql, "SHOW REPLICA STATUS"),
        ("9.1.0", Flavor::MySql, "SHOW REPLICA STATUS"),
    ];
    for (v, flavor, sql) in cases {
        let k = ServerKind::detect(v.to_string());
        assert_eq!((k.flavor, k.replica_status_sql), (flavor, sql), "{v}");
    }
}
