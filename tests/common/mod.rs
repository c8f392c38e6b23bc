//! Shared helpers for integration tests.
//!
//! Each file in `tests/` is its own crate; add `mod common;` at the top of a
//! test file to use these helpers.

#![allow(dead_code)]

pub mod certs;
pub mod client;
pub mod guard;
pub mod haproxy;
pub mod mariadb;
pub mod relay;
