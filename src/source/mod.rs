//! Sources of backup data: database dumps run as child processes, and file trees.

pub mod counters;
pub mod dump;
pub mod mysql;
pub mod postgres;
pub mod process;
pub mod tree;
