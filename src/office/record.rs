//! What verify found, one JSON file per host and snapshot:
//! `<offsite_dir>/reports/verify/<host>/<snapshot>.json`. Written atomically (temp file + rename);
//! refresh and prune read `ok` from here and nowhere else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "offsite-verify";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyRecord {
    pub format: String,
    pub version: u32,
    pub host: String,
    pub snapshot: String,
    /// The snapshot's trusted time, RFC 3339: when the store received its manifest (see
    /// `snapshot::trust`). Records written before offsite had trusted time hold the id's time.
    pub snapshot_time: String,
    /// When this verification ran, RFC 3339.
    pub verified_at: String,
    /// `offsite` (the local copy) or `s3`.
    pub verified_from: String,
    /// Every database restored, every row count equal, every check passed, every tree file's hash
    /// right, the snapshot fresh enough, and its signature valid.
    pub ok: bool,
    pub seconds: f64,
    pub signer: String,
    pub stored_bytes: u64,
    pub plain_bytes: u64,
    pub freshness: Freshness,
    #[serde(default)]
    pub databases: Vec<DatabaseResult>,
    #[serde(default)]
    pub trees: Vec<TreeResult>,
    /// Failures that belong to no single database or tree (e.g. a bad signature).
    #[serde(default)]
    pub errors: Vec<String>,
    /// Worth a look, not a failure: the manifest's warnings, non-InnoDB tables...
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The snapshot's Object Lock in the store when it was verified (`store.s3.object_lock`),
    /// RFC 3339; prune may extend it later (see `office::prune::lock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Freshness {
    pub age_hours: f64,
    pub max_age_hours: f64,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseResult {
    /// `postgres/shop`
    pub source: String,
    pub engine: String,
    pub ok: bool,
    pub restore_seconds: f64,
    pub stored_bytes: u64,
    pub plain_bytes: u64,
    /// Per table: rows the manifest recorded and rows found after the restore.
    pub tables: BTreeMap<String, TableRows>,
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The role the dump was restored as, and what of the dump's ownership that took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_as: Option<RestoredAs>,
}

/// verify restores as its scratch role ([`crate::sql::ownership`]): the dump's owners, privileges
/// and DEFINERs become that role's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredAs {
    pub role: String,
    /// `ALTER ... OWNER TO` statements left out.
    pub owner_statements: u64,
    /// `GRANT`, `REVOKE`, `ALTER DEFAULT PRIVILEGES` statements left out.
    pub privilege_statements: u64,
    /// MariaDB/MySQL `DEFINER=` clauses made `CURRENT_USER`.
    pub definers: u64,
}

impl RestoredAs {
    pub fn describe(&self) -> String {
        let mut changed = Vec::new();
        if self.owner_statements > 0 {
            changed.push(format!("{} OWNER TO", self.owner_statements));
        }
        if self.privilege_statements > 0 {
            changed.push(format!("{} GRANT/REVOKE", self.privilege_statements));
        }
        let mut s = format!("restored as {}", self.role);
        if !changed.is_empty() {
            s.push_str(&format!(
                ", who owns everything: {} statements left out (like pg_restore --no-owner --no-privileges)",
                changed.join(" and ")
            ));
        }
        if self.definers > 0 {
            s.push_str(&format!(
                ", who defines every view, trigger and routine: {} DEFINER clauses made CURRENT_USER",
                self.definers
            ));
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRows {
    /// What the manifest says the dump holds: the pushing host's claim.
    pub expected: u64,
    pub restored: Option<u64>,
    /// What verify itself counted in the dump as the restore read it ([`crate::sql::tally`]).
    /// None in records from before it counted, and for a table the manifest lists but the dump
    /// has no rows section for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_dump: Option<u64>,
}

impl TableRows {
    /// The restore holds the rows the manifest claims, and the dump held them too (where counted).
    pub fn ok(&self) -> bool {
        self.restored == Some(self.expected) && self.in_dump.is_none_or(|d| d == self.expected)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    pub sql: String,
    pub expect: String,
    pub value: Option<String>,
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TreeResult {
    pub name: String,
    pub ok: bool,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
    #[serde(default)]
    pub error: Option<String>,
    /// Objects read and hashed to their end (the index and every volume of the view and of this
    /// snapshot's tree), and their stored bytes. 0 in records of older versions.
    #[serde(default)]
    pub objects_read: u64,
    #[serde(default)]
    pub stored_bytes_read: u64,
}

pub fn reports_dir(offsite_dir: &Path) -> PathBuf {
    offsite_dir.join("reports")
}

fn record_path(offsite_dir: &Path, host: &str, snapshot: &str) -> PathBuf {
    reports_dir(offsite_dir)
        .join("verify")
        .join(host)
        .join(format!("{snapshot}.json"))
}

impl VerifyRecord {
    /// `snapshot_time`, parsed (None when unreadable).
    pub fn trusted_time(&self) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::parse(
            &self.snapshot_time,
            &time::format_description::well_known::Rfc3339,
        )
        .ok()
    }

    /// Writes the record, replacing an earlier verification of the same snapshot.
    pub fn save(&self, offsite_dir: &Path) -> Result<PathBuf> {
        let path = record_path(offsite_dir, &self.host, &self.snapshot);
        write_atomic(&path, &serde_json::to_vec_pretty(self)?)?;
        Ok(path)
    }
}

/// Writes a file so that readers see the old or the new content, never a part.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().context("report path has no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Every record of a host (or all hosts), oldest snapshot first. Unreadable files are skipped with a
/// warning: one damaged report must not hide the others.
pub fn load_all(offsite_dir: &Path, host: Option<&str>) -> Result<Vec<VerifyRecord>> {
    let base = reports_dir(offsite_dir).join("verify");
    let mut out = Vec::new();
    let hosts: Vec<PathBuf> = match host {
        Some(h) => vec![base.join(h)],
        None => match std::fs::read_dir(&base) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("reading {}", base.display())),
        },
    };
    for dir in hosts {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&p)
                .map_err(anyhow::Error::from)
                .and_then(|d| Ok(serde_json::from_slice::<VerifyRecord>(&d)?))
            {
                Ok(r) if r.format == FORMAT => out.push(r),
                Ok(_) => tracing::warn!("{} is not a verify record; ignored", p.display()),
                Err(e) => tracing::warn!("cannot read verify record {}: {e}", p.display()),
            }
        }
    }
    out.sort_by(|a, b| a.snapshot.cmp(&b.snapshot).then(a.host.cmp(&b.host)));
    Ok(out)
}

/// A host's verify records as the office should weigh them today: each record's snapshot time is
/// the ledger's trusted time when the ledger knows the snapshot (records written before the
/// ledger existed hold the id's claim), and a record of a snapshot the ledger has quarantined or
/// found badly signed no longer counts as passed.
pub fn trusted_records(offsite_dir: &Path, host: &str) -> Result<Vec<VerifyRecord>> {
    let ledger = super::ledger::Ledger::load(offsite_dir, host)?;
    let mut records = load_all(offsite_dir, Some(host))?;
    for r in &mut records {
        if let Some(e) = ledger.snapshots.get(&r.snapshot) {
            r.snapshot_time = e.trusted_time.clone();
            if r.ok && (e.quarantine.is_some() || !e.valid()) {
                r.ok = false;
                r.errors.push(format!(
                    "no longer counted as verified: the office's ledger has {} {}",
                    r.snapshot,
                    e.quarantine
                        .as_deref()
                        .map(|q| format!("quarantined ({q})"))
                        .unwrap_or_else(|| format!("as {}", e.signature))
                ));
            }
        }
    }
    Ok(records)
}

/// The newest snapshot of `host` that passed verify, by trusted time (a snapshot id claims a time;
/// the record holds the store's).
pub fn newest_verified(offsite_dir: &Path, host: &str) -> Result<Option<VerifyRecord>> {
    Ok(trusted_records(offsite_dir, host)?
        .into_iter()
        .filter(|r| r.ok)
        .max_by(|a, b| {
            a.trusted_time()
                .cmp(&b.trusted_time())
                .then_with(|| a.snapshot.cmp(&b.snapshot))
        }))
}

pub const PULL_FORMAT: &str = "offsite-pull";

/// What the last pull found: `<offsite_dir>/reports/pull/latest.json` (and one file per run beside it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullRecord {
    pub format: String,
    pub version: u32,
    /// RFC 3339.
    pub ran_at: String,
    pub ok: bool,
    pub seconds: f64,
    pub hosts: Vec<PullHost>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullHost {
    pub host: String,
    pub ok: bool,
    /// Snapshots copied (completed) by this run.
    pub pulled: Vec<String>,
    pub objects: u64,
    pub bytes: u64,
    /// Objects already present from an earlier (interrupted) pull, not downloaded again.
    pub skipped_objects: u64,
    /// Newest complete snapshot in the source store, and when it was taken (RFC 3339).
    pub newest_complete: Option<String>,
    pub newest_complete_time: Option<String>,
    /// Snapshots with objects but no manifest in the source store.
    pub incomplete: Vec<Incomplete>,
    /// Complete snapshots whose claimed time does not fit the store's time: never latest, never
    /// counted by retention, kept until a person deletes them (`prune --quarantined --yes`).
    #[serde(default)]
    pub quarantined: Vec<Suspect>,
    /// Complete snapshots whose manifest is not validly signed by the host: never downloaded.
    #[serde(default)]
    pub invalid: Vec<Suspect>,
    /// Days on which the host committed more than `office.max_snapshots_per_day`.
    #[serde(default)]
    pub floods: Vec<Flood>,
    /// Snapshots first seen by this pull that name recipients beyond the expected ones.
    #[serde(default)]
    pub recipients: Vec<Suspect>,
    /// The trusted time of `newest_complete`, for choosing it.
    #[serde(skip)]
    pub newest_complete_trusted: Option<time::OffsetDateTime>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Suspect {
    pub snapshot: String,
    pub reason: String,
    /// The store's time of its manifest (RFC 3339).
    #[serde(default)]
    pub trusted_time: Option<String>,
}

impl Suspect {
    pub fn new(snap: &crate::snapshot::list::SnapshotInfo, reason: &str) -> Self {
        Self {
            snapshot: snap.id.clone(),
            reason: reason.to_string(),
            trusted_time: snap.trusted.and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flood {
    /// `2026-12-04` (UTC, by trusted time).
    pub day: String,
    pub snapshots: u32,
    pub max: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Incomplete {
    pub snapshot: String,
    pub age_hours: f64,
    /// Older than `office.abandon_after`: its push died; office-side retention removes it.
    pub abandoned: bool,
    /// What it holds: its objects and its unfinished writes, as far as the store can tell.
    #[serde(default)]
    pub bytes: u64,
    /// Writes its push began and never finished (temporary files, multipart uploads).
    #[serde(default)]
    pub unfinished_writes: usize,
}

impl PullHost {
    /// A host with nothing pulled yet, and no error.
    pub fn new(host: &str) -> Self {
        Self {
            host: host.to_string(),
            ok: true,
            pulled: Vec::new(),
            objects: 0,
            bytes: 0,
            skipped_objects: 0,
            newest_complete: None,
            newest_complete_time: None,
            incomplete: Vec::new(),
            quarantined: Vec::new(),
            invalid: Vec::new(),
            floods: Vec::new(),
            recipients: Vec::new(),
            newest_complete_trusted: None,
            error: None,
        }
    }
}

impl PullRecord {
    pub fn save(&self, offsite_dir: &Path) -> Result<PathBuf> {
        self.save_run(offsite_dir)?;
        self.save_latest(offsite_dir)
    }

    /// This run's own file, named by its time.
    fn save_run(&self, offsite_dir: &Path) -> Result<()> {
        let stamp: String = self
            .ran_at
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        write_atomic(
            &reports_dir(offsite_dir)
                .join("pull")
                .join(format!("{stamp}.json")),
            &serde_json::to_vec_pretty(self)?,
        )
    }

    fn save_latest(&self, offsite_dir: &Path) -> Result<PathBuf> {
        let latest = reports_dir(offsite_dir).join("pull").join("latest.json");
        write_atomic(&latest, &serde_json::to_vec_pretty(self)?)?;
        Ok(latest)
    }

    /// Saves the record of a pull of some hosts only (`--host`): `latest.json` keeps the other
    /// hosts' entries from the pulls that last saw them, so the report still has every host's,
    /// and pulls of different hosts running side by side do not drop each other's. The read and
    /// the write happen under a lock of their own.
    pub fn save_merged(&self, offsite_dir: &Path) -> Result<PathBuf> {
        let dir = reports_dir(offsite_dir).join("pull");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.save_run(offsite_dir)?;
        let _merging = crate::lock::lock_waiting(&dir.join(".latest.lock"))?;
        let mut merged = self.clone();
        if let Some(before) = Self::load_latest(offsite_dir)? {
            let ours: std::collections::HashSet<&str> =
                self.hosts.iter().map(|h| h.host.as_str()).collect();
            merged.hosts.extend(
                before
                    .hosts
                    .into_iter()
                    .filter(|h| !ours.contains(h.host.as_str())),
            );
            merged.hosts.sort_by(|a, b| a.host.cmp(&b.host));
            merged.ok = merged.hosts.iter().all(|h| h.ok);
        }
        merged.save_latest(offsite_dir)
    }

    pub fn load_latest(offsite_dir: &Path) -> Result<Option<Self>> {
        let path = reports_dir(offsite_dir).join("pull").join("latest.json");
        match std::fs::read(&path) {
            Ok(d) => Ok(Some(
                serde_json::from_slice(&d)
                    .with_context(|| format!("reading {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}
