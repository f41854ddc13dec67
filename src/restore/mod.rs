//! Restoring snapshots: databases into new databases or stdout, file trees into a directory.

pub mod db;
pub mod parallel;
pub mod psql_guard;
pub mod tree;
