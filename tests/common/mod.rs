//! Shared helpers for integration tests.
//!
//! Each file in `tests/` is its own crate; add `mod common;` at the top of a
//! test file to use these helpers.

#![allow(dead_code)]

pub mod app;
pub mod certs;
pub mod client;
pub mod etcd;
pub mod galera;
pub mod guard;
pub mod haproxy;
pub mod mariadb;
pub mod relay;

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}
