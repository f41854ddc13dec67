//! The file-tree snapshot format that push writes ([`crate::source::tree`]) and restore and verify
//! read ([`crate::restore::tree`]): the index (one line per path, in walk order, naming the snapshot
//! and volume that hold each file's bytes), the walk order both sides merge by, and the owner names
//! recorded beside uid/gid.

pub mod index;
pub mod owners;
pub mod walk;
