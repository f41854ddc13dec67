//! The office's ledger: what pull saw of each snapshot the first time it listed it, one JSON file
//! per host, `<offsite_dir>/reports/ledger/<host>.json`, written atomically.
//!
//! It is the office's memory of *trusted time* (see [`crate::snapshot::trust`]): the store's
//! time of the manifest, recorded once and never moved, so the offsite copy keeps it after the
//! store's copy is pruned, and a later listing cannot change it. It also records whether the
//! manifest's signature checked out and why a snapshot is quarantined, for the report and for
//! `snapshots`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::record::{reports_dir, write_atomic};
use crate::snapshot::trust::{Judge, Known, Origin};

pub const FORMAT: &str = "offsite-ledger";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ledger {
    pub format: String,
    pub version: u32,
    pub host: String,
    /// Per snapshot id.
    pub snapshots: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// The store's time of the manifest (RFC 3339): the snapshot's trusted time.
    pub trusted_time: String,
    /// Where it came from: `store` (the store's time of the manifest) or `first_seen` (the store
    /// gave none, so the office's clock when pull first listed it).
    pub time_from: String,
    /// The office's clock when pull first listed it.
    pub first_seen: String,
    /// `valid`, or `INVALID: why` (signature, decryption, or a manifest describing another
    /// snapshot). Checked again on each pull while invalid: a certificate may have been fixed.
    pub signature: String,
    /// What the manifest claims, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Why the snapshot is quarantined, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
    /// Every recipient fingerprint the manifest names (its own and its objects'), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
}

impl Entry {
    pub fn valid(&self) -> bool {
        self.signature == "valid"
    }

    pub fn trusted(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.trusted_time, &Rfc3339).ok()
    }
}

impl Ledger {
    /// Days (trusted time, UTC) of the last week on which the host committed more than `max`
    /// validly signed snapshots.
    pub fn flood_days(&self, now: OffsetDateTime, max: u32) -> Vec<(time::Date, u32)> {
        let mut per_day: BTreeMap<time::Date, u32> = BTreeMap::new();
        for e in self.snapshots.values().filter(|e| e.valid()) {
            if let Some(t) = e.trusted() {
                if now - t <= time::Duration::days(7) {
                    *per_day.entry(t.date()).or_default() += 1;
                }
            }
        }
        per_day.into_iter().filter(|(_, n)| *n > max).collect()
    }

    /// The recipients of the newest validly signed, unquarantined snapshot recorded before
    /// `before` (by trusted time): what the host encrypted to last time things were fine.
    pub fn last_good_recipients(&self, before: Option<OffsetDateTime>) -> Option<&[String]> {
        self.snapshots
            .values()
            .filter(|e| e.valid() && e.quarantine.is_none() && !e.recipients.is_empty())
            .filter(|e| before.is_none_or(|b| e.trusted().is_some_and(|t| t < b)))
            .max_by_key(|e| e.trusted())
            .map(|e| e.recipients.as_slice())
    }
}

fn path(offsite_dir: &Path, host: &str) -> PathBuf {
    reports_dir(offsite_dir)
        .join("ledger")
        .join(format!("{host}.json"))
}

impl Ledger {
    /// The host's ledger, empty when there is none yet.
    pub fn load(offsite_dir: &Path, host: &str) -> Result<Self> {
        let p = path(offsite_dir, host);
        match std::fs::read(&p) {
            Ok(d) => {
                let l: Ledger = serde_json::from_slice(&d).with_context(|| {
                    format!(
                        "reading the office ledger {}: it records when the store received each snapshot; restore it from a backup of the offsite directory, or move it aside to start a new one",
                        p.display()
                    )
                })?;
                if l.format != FORMAT || l.host != host {
                    anyhow::bail!("{} is not the office ledger of host {host}", p.display());
                }
                Ok(l)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                format: FORMAT.into(),
                version: VERSION,
                host: host.to_string(),
                snapshots: BTreeMap::new(),
            }),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    pub fn save(&self, offsite_dir: &Path) -> Result<()> {
        write_atomic(
            &path(offsite_dir, &self.host),
            &serde_json::to_vec_pretty(self)?,
        )
    }

    /// What a [`Judge`] needs: trusted times, quarantines and signature verdicts.
    pub fn known(&self) -> impl Iterator<Item = ((String, String), Known)> + '_ {
        self.snapshots.iter().filter_map(|(id, e)| {
            Some((
                (self.host.clone(), id.clone()),
                Known {
                    time: e.trusted()?,
                    quarantine: e.quarantine.clone(),
                    valid: e.valid(),
                },
            ))
        })
    }
}

/// A judge for listings of `origin`, knowing every ledger entry of `hosts`. An unreadable ledger
/// is an error (an office step must not decide on half its memory).
pub fn judge(
    offsite_dir: &Path,
    hosts: &[String],
    origin: Origin,
    tolerance: std::time::Duration,
) -> Result<Judge> {
    let mut j = Judge::bare(
        origin,
        time::Duration::try_from(tolerance).unwrap_or(time::Duration::HOUR),
    );
    for h in hosts {
        j.known.extend(Ledger::load(offsite_dir, h)?.known());
    }
    Ok(j)
}

/// [`judge`] for reading commands (`restore`, `snapshots`): a ledger that cannot be read is a
/// warning, and that host's snapshots are judged from the listing alone. A restore in a disaster
/// must not fail because the office's disk lost a report file.
pub fn judge_lenient(
    offsite_dir: &Path,
    hosts: &[String],
    origin: Origin,
    tolerance: std::time::Duration,
) -> Judge {
    let mut j = Judge::bare(
        origin,
        time::Duration::try_from(tolerance).unwrap_or(time::Duration::HOUR),
    );
    for h in hosts {
        match Ledger::load(offsite_dir, h) {
            Ok(l) => j.known.extend(l.known()),
            Err(e) => tracing::warn!("{e:#}; judging {h}'s snapshots from the listing alone"),
        }
    }
    j
}

/// The hosts that have a ledger under `offsite_dir`.
pub fn hosts_with_ledgers(offsite_dir: &Path) -> Vec<String> {
    let dir = reports_dir(offsite_dir).join("ledger");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    out.sort();
    out
}
