//! What an application connected through HAProxy sees.

#![allow(dead_code)]

use super::mariadb::MariaDb;
use mysql_async::prelude::Queryable;
use std::time::Duration;

/// Connects as admin through `port` (HAProxy's front) and reads (server_id, rows in app.t);
/// `via` only lends its credentials. A connection HAProxy refuses is an `Err`.
pub async fn reads(via: &MariaDb, port: u16) -> Result<(u32, u64), String> {
    let opts = mysql_async::OptsBuilder::from_opts(via.admin_opts()).tcp_port(port);
    let mut conn = tokio::time::timeout(Duration::from_secs(5), mysql_async::Conn::new(opts))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let id: Option<u32> = conn
        .query_first("SELECT @@server_id")
        .await
        .map_err(|e| e.to_string())?;
    let rows: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM app.t")
        .await
        .map_err(|e| e.to_string())?;
    let _ = conn.disconnect().await;
    Ok((id.unwrap_or(0), rows.unwrap_or(0)))
}
