//! The office's metrics, from what verify recorded (the same records and report model that
//! `offsite report` renders), and the office run's outcome.
//!
//! Every value comes from the records on disk, not from this run alone: a database that failed
//! tonight keeps, as its last success, the newest record in which it passed.

use std::path::Path;

use anyhow::Result;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{label, timestamp, Family, Labels, Metrics};
use crate::office::record::{trusted_records, VerifyRecord};
use crate::office::report::Report;

pub const VERIFY_LAST_SUCCESS: &str = "offsite_verify_last_success_timestamp_seconds";
pub const VERIFY_OK: &str = "offsite_verify_ok";
pub const VERIFY_RESTORE_SECONDS: &str = "offsite_verify_restore_seconds";
pub const VERIFY_ROWS: &str = "offsite_verify_rows";
pub const SNAPSHOT_AGE: &str = "offsite_snapshot_age_seconds";
pub const SNAPSHOT_TIMESTAMP: &str = "offsite_snapshot_newest_timestamp_seconds";
pub const RUN_SUCCESS: &str = "offsite_office_last_run_success";
pub const RUN_TIMESTAMP: &str = "offsite_office_last_run_timestamp_seconds";

/// Writes the verify and snapshot families of the report's hosts (other hosts' samples stay).
pub fn record_report(path: &Path, offsite_dir: &Path, report: &Report) -> Result<()> {
    let mut last_success = Family::gauge(
        VERIFY_LAST_SUCCESS,
        "When verify last proved this database or tree restorable (Unix time).",
    );
    for h in &report.hosts {
        for r in trusted_records(offsite_dir, &h.host)? {
            for (source, at) in successes(&r) {
                let labels = [("host", h.host.as_str()), ("database", source.as_str())];
                if last_success.get(&labels).is_none_or(|t| t < at) {
                    last_success.set(&labels, at);
                }
            }
        }
    }
    let mut ok = Family::gauge(
        VERIFY_OK,
        "1 when the newest verification of this host passed, 0 when it failed or there is none.",
    );
    let mut restore = Family::gauge(
        VERIFY_RESTORE_SECONDS,
        "Seconds the newest verification took to restore this database (or read this tree).",
    );
    let mut rows = Family::gauge(
        VERIFY_ROWS,
        "Rows found in this database after the newest verification's restore.",
    );
    let mut age = Family::gauge(
        SNAPSHOT_AGE,
        "Age of the host's newest complete snapshot by the store's time, when the report was made.",
    );
    let mut newest = Family::gauge(
        SNAPSHOT_TIMESTAMP,
        "When the store received the host's newest complete snapshot (Unix time).",
    );
    for h in &report.hosts {
        let host = h.host.as_str();
        ok.set(&[("host", host)], f64::from(u8::from(h.ok)));
        if let Some(v) = &h.latest {
            for d in &v.databases {
                let labels = [("host", host), ("database", d.source.as_str())];
                restore.set(&labels, d.restore_seconds);
                let found: u64 = d.tables.iter().filter_map(|t| t.restored).sum();
                rows.set(&labels, found as f64);
            }
            for t in &v.trees {
                let source = format!("tree/{}", t.name);
                restore.set(&[("host", host), ("database", &source)], t.seconds);
            }
        }
        if let Some(n) = &h.newest_complete {
            age.set(&[("host", host)], n.age_hours * 3600.0);
            if let Ok(t) = OffsetDateTime::parse(&n.snapshot_time, &Rfc3339) {
                newest.set(&[("host", host)], timestamp(t));
            }
        }
    }
    let hosts: Vec<&str> = report.hosts.iter().map(|h| h.host.as_str()).collect();
    let ours = |l: &Labels| label(l, "host").is_some_and(|h| hosts.contains(&h));
    // What the host's newest verification covers: its earlier successes are carried forward.
    let current = |host: &str, database: &str| {
        report
            .hosts
            .iter()
            .find(|h| h.host == host)
            .and_then(|h| h.latest.as_ref())
            .is_none_or(|v| {
                v.databases.iter().any(|d| d.source == database)
                    || v.trees
                        .iter()
                        .any(|t| database.strip_prefix("tree/") == Some(t.name.as_str()))
            })
    };
    super::update(path, |m: &mut Metrics| {
        // A verification replaces the record of the same snapshot, so a database that passed
        // yesterday and fails today on the same snapshot has no passing record left: its last
        // success is the previous file's. A database no longer backed up loses its line.
        if let Some(old) = m.get(VERIFY_LAST_SUCCESS) {
            for (labels, v) in &old.samples {
                let (Some(host), Some(db)) = (label(labels, "host"), label(labels, "database"))
                else {
                    continue;
                };
                if ours(labels)
                    && current(host, db)
                    && last_success.samples.get(labels).is_none_or(|n| n < v)
                {
                    last_success.samples.insert(labels.clone(), *v);
                }
            }
        }
        for f in [last_success, ok, restore, rows, age, newest] {
            m.replace(f, ours);
        }
    })
}

/// Each database and tree of `r` that passed, with when (`verified_at`); none when the record
/// has errors of its own (a bad signature, a quarantine the ledger found later).
fn successes(r: &VerifyRecord) -> Vec<(String, f64)> {
    let Ok(at) = OffsetDateTime::parse(&r.verified_at, &Rfc3339) else {
        return Vec::new();
    };
    if !r.errors.is_empty() {
        return Vec::new();
    }
    let at = timestamp(at);
    r.databases
        .iter()
        .filter(|d| d.ok)
        .map(|d| (d.source.clone(), at))
        .chain(
            r.trees
                .iter()
                .filter(|t| t.ok)
                .map(|t| (format!("tree/{}", t.name), at)),
        )
        .collect()
}

/// Records how the `offsite office` run that ends now went.
pub fn record_run(path: &Path, ok: bool, finished: OffsetDateTime) -> Result<()> {
    super::update(path, |m: &mut Metrics| {
        m.replace(
            Family::gauge(
                RUN_SUCCESS,
                "1 when the last offsite office run had every step succeed, 0 when one failed.",
            )
            .sample(&[], f64::from(u8::from(ok))),
            |_| true,
        );
        m.replace(
            Family::gauge(
                RUN_TIMESTAMP,
                "When the last offsite office run ended (Unix time).",
            )
            .sample(&[], timestamp(finished)),
            |_| true,
        );
    })
}
