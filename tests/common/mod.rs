//! Helpers shared by the integration tests: `mod common;` at the top of a test file.

pub mod cli;
pub mod db;
pub mod keys;
pub mod office;
pub mod s3;
pub mod tree;
