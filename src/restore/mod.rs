//! Restoring snapshots: databases into new databases or stdout, file trees into a directory.

pub mod db;
pub mod tree;
