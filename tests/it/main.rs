//! offsite's integration tests, one test binary: every module runs the `offsite` binary, or the
//! library, against real servers (PostgreSQL, MariaDB, the S3 test server, and the servers some
//! tests start themselves) and the stock tools (gpg, zstd, tar, psql, mariadb). One binary links
//! once instead of once per file, and shares `common`.
//!
//! `cargo test --test it <module>::` runs one file's tests (`cargo test --test it faults::`).

mod common;

mod audit;
mod contrib;
mod counters_hostile;
mod db_tls;
mod db_tls_mysql;
mod faults;
mod help;
mod key_expiry;
mod key_rotation;
mod mask;
mod monitoring;
mod office_e2e;
mod office_hosts;
mod office_privilege;
mod office_prune;
mod office_pull_verify;
mod office_refresh;
mod office_report;
mod office_scrub;
mod office_trust;
mod parallel_load;
mod push_clock;
mod push_failures;
mod push_restore;
mod push_s3;
mod s3_store;
mod status;
mod store_contract;
mod tree_incremental;
mod tree_parallel;
mod tree_roundtrip;
