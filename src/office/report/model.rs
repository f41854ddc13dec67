//! The report as data: what `report.json` contains, and what the Markdown and HTML pages render.
//! The JSON shape is a contract (`schemas/report.schema.json`): optional values serialize as `null`
//! rather than disappearing, so a consumer sees the same keys every night.

use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "offsite-report";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub format: String,
    pub version: u32,
    /// RFC 3339.
    pub generated_at: String,
    /// The newest verification of every host passed.
    pub ok: bool,
    pub max_age_hours: f64,
    pub summary: Summary,
    /// The latest pull run, when one was recorded.
    pub pull: Option<PullSummary>,
    pub hosts: Vec<HostReport>,
    pub warnings: Vec<Warning>,
    /// The last scrub of the offsite copy (`verify --scrub`), when one was recorded.
    #[serde(default)]
    pub scrub: Option<ScrubSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScrubSummary {
    pub ran_at: String,
    /// Hours between the last scrub and this report.
    pub age_hours: f64,
    /// Nothing lost, nothing failed.
    pub ok: bool,
    pub scrub_days: u32,
    /// Objects (and stored bytes) of the offsite copy's complete snapshots.
    pub objects: u64,
    pub bytes: u64,
    /// Re-hashed by the last run.
    pub checked_objects: u64,
    pub checked_bytes: u64,
    /// Objects whose last good check is at most `scrub_days` old.
    pub covered_objects: u64,
    pub coverage_percent: f64,
    pub never_checked: u64,
    /// Age of the oldest good check at the time of the last run; `null` when none was checked.
    pub oldest_check_hours: Option<f64>,
    pub repaired: Vec<ScrubObject>,
    pub lost: Vec<ScrubObject>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScrubObject {
    pub host: String,
    pub key: String,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub hosts: usize,
    pub passing: usize,
    pub failing: usize,
    pub warnings: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullSummary {
    pub ran_at: String,
    pub ok: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// A configured host that verify has never recorded: a failure too.
    Unverified,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Unverified => "NO VERIFICATION",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostReport {
    pub host: String,
    pub status: Status,
    pub ok: bool,
    /// The verification of the host's newest verified snapshot.
    pub latest: Option<Verification>,
    /// The snapshot the changes are measured against: the one verified before `latest`.
    pub previous: Option<SnapshotRef>,
    /// The newest complete snapshot known (from pull, else from verify) and whether it is recent.
    pub newest_complete: Option<NewestComplete>,
    /// Snapshots without a manifest in the source store, from the latest pull.
    pub incomplete: Vec<IncompleteSnapshot>,
    /// Newest first, at most [`super::HISTORY`] runs.
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRef {
    pub snapshot: String,
    pub snapshot_time: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    Pull,
    Verify,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewestComplete {
    pub snapshot: Option<String>,
    pub snapshot_time: String,
    pub age_hours: f64,
    pub fresh: bool,
    pub source: TimeSource,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncompleteSnapshot {
    pub snapshot: String,
    pub age_hours: f64,
    pub abandoned: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verification {
    pub snapshot: String,
    pub snapshot_time: String,
    pub verified_at: String,
    pub verified_from: String,
    pub ok: bool,
    /// The whole verification, wall clock.
    pub seconds: f64,
    /// Databases restored plus trees read.
    pub restore_seconds: f64,
    pub signer: String,
    pub stored_bytes: u64,
    pub plain_bytes: u64,
    pub freshness: Freshness,
    pub databases: Vec<DatabaseReport>,
    pub trees: Vec<TreeReport>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// The snapshot's Object Lock in the store when verified; `null` without one.
    #[serde(default)]
    pub locked_until: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Freshness {
    pub age_hours: f64,
    pub max_age_hours: f64,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseReport {
    pub source: String,
    pub engine: String,
    pub ok: bool,
    pub restore_seconds: f64,
    pub stored_bytes: u64,
    pub plain_bytes: u64,
    /// Against the previous snapshot; `null` when it had no such database (or there is none).
    pub change: Option<SizeChange>,
    pub tables: Vec<TableReport>,
    pub checks: Vec<CheckReport>,
    pub error: Option<String>,
    pub warnings: Vec<String>,
    /// The role verify restored as; the dump's owners, privileges and DEFINERs became its.
    #[serde(default)]
    pub restored_as: Option<crate::office::record::RestoredAs>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SizeChange {
    pub previous_plain_bytes: u64,
    pub delta_bytes: i64,
    /// `null` when the previous size was zero.
    pub delta_percent: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableReport {
    pub name: String,
    /// Rows the manifest recorded.
    pub expected: u64,
    /// Rows found after the restore; `null` when the restore did not get that far.
    pub restored: Option<u64>,
    /// Rows verify counted in the dump as it restored it; `null` when it did not read the whole
    /// dump, or the dump has no rows for the table.
    #[serde(default)]
    pub in_dump: Option<u64>,
    pub ok: bool,
    /// Rows the previous snapshot's manifest recorded for this table.
    pub previous: Option<u64>,
    pub delta_rows: Option<i64>,
}

impl TableReport {
    /// What verify counted in the dump, where that is not what the manifest claims.
    pub fn dump_differs(&self) -> Option<u64> {
        self.in_dump.filter(|&d| d != self.expected)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReport {
    pub sql: String,
    pub expect: String,
    pub value: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TreeReport {
    pub name: String,
    pub ok: bool,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub snapshot: String,
    pub snapshot_time: String,
    pub verified_at: String,
    pub ok: bool,
    pub plain_bytes: u64,
    pub stored_bytes: u64,
    pub restore_seconds: f64,
    pub seconds: f64,
}

/// In order of urgency: reports list a host's warnings in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// The scrub found an object bad in the offsite copy and bad or missing in the store.
    Lost,
    /// A snapshot whose claimed time does not fit the store's: forged, or a host's clock is off.
    Quarantined,
    /// A snapshot whose manifest is not validly signed by the host's certificate.
    InvalidSignature,
    /// More snapshots in one day than `office.max_snapshots_per_day`.
    Flood,
    /// A snapshot encrypted to a key beyond the expected recipients.
    Recipients,
    /// A database's plain size fell by more than the threshold, or it vanished.
    DatabaseShrank,
    /// A table's row count fell by more than the threshold, or it vanished.
    TableShrank,
    /// The newest complete snapshot is older than `office.max_age`.
    Stale,
    /// The latest pull failed for this host.
    Pull,
    /// A snapshot whose push died: objects without a manifest, older than `office.abandon_after`.
    Abandoned,
    /// The scrub found an object bad in the offsite copy and replaced it from the store.
    Repaired,
    /// Passed through from the verify record (non-InnoDB tables, dump-tool warnings...).
    Record,
    /// An office decryption key or a host's signing certificate expired or expires within 30 days.
    KeyExpiry,
}

impl WarningKind {
    pub fn label(self) -> &'static str {
        match self {
            WarningKind::DatabaseShrank => "shrank",
            WarningKind::TableShrank => "rows dropped",
            WarningKind::Stale => "stale",
            WarningKind::Abandoned => "abandoned",
            WarningKind::Pull => "pull failed",
            WarningKind::Quarantined => "QUARANTINED",
            WarningKind::InvalidSignature => "bad signature",
            WarningKind::Flood => "flood",
            WarningKind::Recipients => "recipients",
            WarningKind::Lost => "LOST",
            WarningKind::Repaired => "repaired",
            WarningKind::Record => "recorded",
            WarningKind::KeyExpiry => "key expiry",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Warning {
    pub kind: WarningKind,
    pub host: String,
    /// `postgres/shop`, when the warning is about one database.
    pub database: Option<String>,
    pub table: Option<String>,
    pub message: String,
}
