//! Helpers shared by the integration tests (`crate::common::...` from any module of tests/it).

pub mod cli;
pub mod db;
pub mod keys;
pub mod office;
pub mod s3;
pub mod servers;
pub mod tls;
pub mod tree;
