//! Office mode: the offsite location, with the office secret key and the full S3 credential.
//!
//! `pull` copies snapshots into the offsite directory, `verify` proves them restorable and writes a
//! [`record::VerifyRecord`] per snapshot under `<offsite_dir>/reports/`, `report` renders those records,
//! `prune` applies retention, `refresh` restores the newest verified snapshot into dev databases,
//! and `scrub` re-hashes a share of the offsite copy each night.
//! The records are the contract between the steps: refresh and prune trust only what verify recorded.

pub mod checks;
pub mod context;
pub mod fetch;
pub mod ledger;
pub mod notify;
pub mod prune;
pub mod pull;
pub mod record;
pub mod refresh;
pub mod report;
pub mod scratch;
pub mod scrub;
pub mod verify;
