//! offsite: database and file-tree backups that a hacked production server cannot destroy, proven
//! restorable every night.
//!
//! Data flow of `push`: a [`source`] (pg_dump, mariadb-dump, a tar walker) yields a byte stream that
//! passes row counters, then the [`pipeline`] (compress, encrypt, hash) into a [`store`] object. When
//! every source has finished cleanly, the [`snapshot::Manifest`] (signed, encrypted) is written last
//! and commits the snapshot. [`restore`] runs the same path backwards and checks every hash on the way.

pub mod config;
pub mod crypto;
pub mod db;
pub mod error;
pub mod interrupt;
pub mod keyring;
pub mod lock;
pub mod logtail;
pub mod mask;
pub mod metrics;
pub mod office;
pub mod ping;
pub mod pipeline;
pub mod process;
pub mod progress;
pub mod push;
pub mod restore;
pub mod shared_writer;
pub mod snapshot;
pub mod source;
pub mod sql;
pub mod store;
pub mod tree;
