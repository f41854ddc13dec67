//! `verify --scrub`: re-read a rotating share of the offsite copy each night, so every object of
//! it is re-hashed at least once every `office.scrub_days`.
//!
//! verify proves the newest snapshot of each host; the older ones kept offsite are only ever read
//! again on the day they are needed, which is the worst day to find a flipped bit. The scrub reads
//! the objects never checked or checked longest ago, about `total / scrub_days` bytes a run and at
//! least every object whose last check (or, never checked, whose snapshot) is `scrub_days` old, and
//! compares each object's sha256 with its snapshot's signed manifest (checked on every run). An
//! object that fails is fetched again from the store, checked against the manifest while it
//! streams into a temporary file, and renamed over the bad copy; if the store's copy is bad or
//! gone too, the object is reported LOST.
//!
//! Two records under `<offsite_dir>/reports/scrub/`, both written atomically: `state.json`, per
//! object key, when it last matched its manifest; and `latest.json`, what the last run did and the
//! coverage it left (which `report` shows).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::context::Office;
use super::record::{reports_dir, write_atomic};
use crate::crypto::open_signed;
use crate::pipeline::digest::VerifyingReader;
use crate::snapshot::list::{list, load_manifest, SnapshotInfo};
use crate::snapshot::manifest::ObjectEntry;
use crate::snapshot::{Manifest, SnapshotId, MANIFEST_NAME};
use crate::store::{read_all, Store};

pub const STATE_FORMAT: &str = "offsite-scrub-state";
pub const RUN_FORMAT: &str = "offsite-scrub";
pub const VERSION: u32 = 1;

const DAY: f64 = 24.0 * 3600.0;
/// The state is saved after about this many bytes checked, and at the end.
const SAVE_EVERY: u64 = 4 << 30;

/// `reports/scrub/state.json`: when each object of the offsite copy last matched its manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScrubState {
    pub format: String,
    pub version: u32,
    /// Full key (`host/id/...`) -> RFC 3339 time of its last good check.
    pub checked: BTreeMap<String, String>,
}

/// `reports/scrub/latest.json`: what the last scrub did, and the coverage it left.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScrubRun {
    pub format: String,
    pub version: u32,
    /// RFC 3339.
    pub ran_at: String,
    /// Nothing lost and nothing failed.
    pub ok: bool,
    pub seconds: f64,
    pub scrub_days: u32,
    /// Objects of the complete snapshots in the offsite copy (of the hosts scrubbed), and their
    /// stored bytes.
    pub objects: u64,
    pub bytes: u64,
    /// Re-hashed by this run.
    pub checked_objects: u64,
    pub checked_bytes: u64,
    /// Objects whose last good check is at most `scrub_days` old, after this run.
    pub covered_objects: u64,
    /// `covered_objects / objects`, in percent (100 for an empty copy).
    pub coverage_percent: f64,
    /// Objects no scrub has checked yet (pull checked them when it copied them).
    pub never_checked: u64,
    /// Age of the oldest good check among the objects checked at least once.
    pub oldest_check_hours: Option<f64>,
    /// Bad in the offsite copy, fetched again from the store.
    pub repaired: Vec<ScrubProblem>,
    /// Bad in the offsite copy and bad or missing in the store.
    pub lost: Vec<ScrubProblem>,
    /// What stopped part of the scrub (a listing that failed...).
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScrubProblem {
    pub host: String,
    /// Full key in the offsite copy.
    pub key: String,
    pub problem: String,
}

fn scrub_dir(offsite_dir: &Path) -> PathBuf {
    reports_dir(offsite_dir).join("scrub")
}

impl ScrubState {
    fn empty() -> Self {
        Self {
            format: STATE_FORMAT.into(),
            version: VERSION,
            checked: BTreeMap::new(),
        }
    }

    /// The saved state; a missing one is empty. An unreadable one is set aside with a warning and
    /// the scrub starts over: it costs a round of re-reading, never a skipped object.
    pub fn load(offsite_dir: &Path) -> Self {
        let path = scrub_dir(offsite_dir).join("state.json");
        match std::fs::read(&path) {
            Ok(data) => match serde_json::from_slice::<ScrubState>(&data) {
                Ok(s) if s.format == STATE_FORMAT => s,
                Ok(_) | Err(_) => {
                    tracing::warn!(
                        "{} is not a scrub state; starting the scrub over",
                        path.display()
                    );
                    Self::empty()
                }
            },
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(
                        "cannot read {}: {e}; starting the scrub over",
                        path.display()
                    );
                }
                Self::empty()
            }
        }
    }

    /// Saves what this run knows of `hosts`, and what the file says of every other host: a scrub
    /// of other hosts may be running beside this one (`office --host`) and saving too. The read
    /// and the write happen under a lock of their own.
    fn save(&self, offsite_dir: &Path, hosts: &[String]) -> Result<()> {
        let dir = scrub_dir(offsite_dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let _merging = crate::lock::lock_waiting(&dir.join(".state.lock"))?;
        let ours = |key: &str| hosts.iter().any(|h| key.starts_with(&format!("{h}/")));
        let mut merged = Self::load(offsite_dir);
        merged.checked.retain(|k, _| !ours(k));
        merged.checked.extend(
            self.checked
                .iter()
                .filter(|(k, _)| ours(k))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        write_atomic(
            &dir.join("state.json"),
            &serde_json::to_vec_pretty(&merged)?,
        )
    }
}

impl ScrubRun {
    pub fn load_latest(offsite_dir: &Path) -> Result<Option<Self>> {
        let path = scrub_dir(offsite_dir).join("latest.json");
        match std::fs::read(&path) {
            Ok(d) => Ok(Some(
                serde_json::from_slice(&d)
                    .with_context(|| format!("reading {}", path.display()))?,
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn save(&self, offsite_dir: &Path) -> Result<PathBuf> {
        let path = scrub_dir(offsite_dir).join("latest.json");
        write_atomic(&path, &serde_json::to_vec_pretty(self)?)?;
        Ok(path)
    }
}

/// One object of the offsite copy, as its signed manifest describes it.
struct Candidate {
    host: String,
    key: String,
    entry: ObjectEntry,
    snapshot_time: Option<OffsetDateTime>,
    last: Option<OffsetDateTime>,
}

/// Scrubs the offsite copy of every host (or one) and saves both records.
pub fn scrub(
    office: &Office,
    only_host: Option<&str>,
    now: OffsetDateTime,
    rt: &tokio::runtime::Handle,
) -> Result<ScrubRun> {
    let started = Instant::now();
    let days = office.office.scrub_days.max(1);
    let mut state = ScrubState::load(&office.offsite_dir);
    let hosts = office.hosts(only_host)?;
    let mut run = ScrubRun {
        format: RUN_FORMAT.into(),
        version: VERSION,
        ran_at: now.format(&Rfc3339)?,
        ok: false,
        seconds: 0.0,
        scrub_days: days,
        objects: 0,
        bytes: 0,
        checked_objects: 0,
        checked_bytes: 0,
        covered_objects: 0,
        coverage_percent: 100.0,
        never_checked: 0,
        oldest_check_hours: None,
        repaired: Vec::new(),
        lost: Vec::new(),
        errors: Vec::new(),
    };
    let mut source = LazyStore::new(office, rt);

    let mut candidates = Vec::new();
    let mut failed_hosts = Vec::new();
    for host in &hosts {
        if let Err(e) = collect(office, host, &state, &mut source, &mut candidates, &mut run) {
            run.errors.push(format!("{host}: {e:#}"));
            failed_hosts.push(format!("{host}/"));
        }
    }
    // The state keeps what this run cannot see (other hosts with --host; a host whose listing
    // failed) and forgets objects that are gone (pruned).
    let seen: std::collections::HashSet<&str> = candidates.iter().map(|c| c.key.as_str()).collect();
    state.checked.retain(|k, _| {
        seen.contains(k.as_str())
            || !hosts.iter().any(|h| k.starts_with(&format!("{h}/")))
            || failed_hosts.iter().any(|h| k.starts_with(h.as_str()))
    });

    let chosen = choose(&candidates, days, now);
    let now_text = run.ran_at.clone();
    let mut unsaved = 0u64;
    for i in chosen {
        // After SIGINT/SIGTERM no further object: the state below keeps what was checked.
        if crate::interrupt::received().is_some() {
            break;
        }
        let c = &candidates[i];
        run.checked_objects += 1;
        run.checked_bytes += c.entry.stored_size;
        // A long run that is killed keeps most of what it checked.
        unsaved += c.entry.stored_size;
        if unsaved >= SAVE_EVERY {
            state.save(&office.offsite_dir, &hosts)?;
            unsaved = 0;
        }
        let local = check_local(office, c);
        let outcome = match local {
            Ok(()) => Ok(None),
            Err(bad) => {
                let bad = format!("{bad:#}");
                tracing::warn!("scrub: {}: {bad}; fetching it again from the store", c.key);
                match source
                    .get()
                    .and_then(|s| refetch(office, s, &c.key, &c.entry))
                {
                    Ok(()) => Ok(Some(bad)),
                    Err(e) => Err(format!(
                        "{bad}; the store's copy cannot replace it: {e:#}. No good copy is left: restores that need this object will fail"
                    )),
                }
            }
        };
        match outcome {
            Ok(repaired) => {
                state.checked.insert(c.key.clone(), now_text.clone());
                if let Some(problem) = repaired {
                    run.repaired.push(ScrubProblem {
                        host: c.host.clone(),
                        key: c.key.clone(),
                        problem,
                    });
                }
            }
            Err(problem) => run.lost.push(ScrubProblem {
                host: c.host.clone(),
                key: c.key.clone(),
                problem,
            }),
        }
    }
    state.save(&office.offsite_dir, &hosts)?;
    if let Some(sig) = crate::interrupt::received() {
        anyhow::bail!(
            "scrub interrupted by {sig}: the objects checked so far are recorded, no scrub result written"
        );
    }

    run.objects = candidates.len() as u64;
    run.bytes = candidates.iter().map(|c| c.entry.stored_size).sum();
    let window = days as f64 * DAY;
    for c in &candidates {
        let last = state
            .checked
            .get(&c.key)
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
        match last {
            None => run.never_checked += 1,
            Some(t) => {
                let age = (now - t).as_seconds_f64().max(0.0);
                if age <= window {
                    run.covered_objects += 1;
                }
                let hours = age / 3600.0;
                run.oldest_check_hours =
                    Some(run.oldest_check_hours.map_or(hours, |o: f64| o.max(hours)));
            }
        }
    }
    if run.objects > 0 {
        run.coverage_percent = 100.0 * run.covered_objects as f64 / run.objects as f64;
    }
    run.ok = run.lost.is_empty() && run.errors.is_empty();
    run.seconds = started.elapsed().as_secs_f64();
    run.save(&office.offsite_dir)?;
    Ok(run)
}

/// Lists the complete snapshots of `host` in the offsite copy and adds their objects. A manifest
/// that no longer opens is itself scrubbed: fetched again from the store when the store's copy is
/// good (its objects are then scrubbed like the others), else reported lost.
fn collect(
    office: &Office,
    host: &str,
    state: &ScrubState,
    source: &mut LazyStore<'_>,
    out: &mut Vec<Candidate>,
    run: &mut ScrubRun,
) -> Result<()> {
    let signers = office.signers(host)?;
    for snap in list(office.offsite.as_ref(), Some(host))? {
        if !snap.complete {
            continue;
        }
        let manifest_key = format!("{}{MANIFEST_NAME}", snap.dir());
        let manifest = match load_manifest(
            office.offsite.as_ref(),
            &snap,
            &office.decryption,
            signers,
        ) {
            Ok(m) => m,
            Err(bad) => {
                let bad = format!("{bad:#}");
                tracing::warn!("scrub: {bad}; fetching it again from the store");
                match source
                    .get()
                    .and_then(|s| refetch_manifest(office, s, &snap, signers))
                {
                    Ok(m) => {
                        run.repaired.push(ScrubProblem {
                            host: host.to_string(),
                            key: manifest_key,
                            problem: bad,
                        });
                        m
                    }
                    Err(e) => {
                        run.lost.push(ScrubProblem {
                            host: host.to_string(),
                            key: manifest_key,
                            problem: format!(
                                "{bad}; the store's copy cannot replace it: {e:#} (none of the snapshot's objects can be checked without it)"
                            ),
                        });
                        continue;
                    }
                }
            }
        };
        let snapshot_time = snap.id.parse::<SnapshotId>().and_then(|i| i.time()).ok();
        let dir = snap.dir();
        for entry in manifest.objects {
            let key = format!("{dir}{}", entry.key);
            let last = state
                .checked
                .get(&key)
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
            out.push(Candidate {
                host: host.to_string(),
                key,
                entry,
                snapshot_time,
                last,
            });
        }
    }
    Ok(())
}

/// Which candidates this run checks (indexes): the never-checked ones first (oldest snapshot
/// first), then the longest unchecked, until about `total / days` bytes; plus every object whose
/// last check (or, never checked, whose snapshot) is `days` old or more, whatever the budget, so
/// that nothing goes unchecked longer than `days`.
fn choose(candidates: &[Candidate], days: u32, now: OffsetDateTime) -> Vec<usize> {
    let total: u64 = candidates.iter().map(|c| c.entry.stored_size).sum();
    let budget = total.div_ceil(days.max(1) as u64);
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    // None sorts before Some: never checked first; the key (host/id/...) puts older snapshots first.
    order.sort_by(|&a, &b| {
        let (a, b) = (&candidates[a], &candidates[b]);
        a.last.cmp(&b.last).then_with(|| a.key.cmp(&b.key))
    });
    let window = days as f64 * DAY;
    let overdue = |c: &Candidate| {
        c.last
            .or(c.snapshot_time)
            .is_some_and(|t| (now - t).as_seconds_f64() >= window)
    };
    let mut taken = 0u64;
    let mut out = Vec::new();
    for i in order {
        let c = &candidates[i];
        if taken < budget || overdue(c) {
            taken += c.entry.stored_size;
            out.push(i);
        }
    }
    out
}

/// Re-hashes the local copy of one object against its manifest entry, streaming. The error says
/// what is wrong without repeating the key, which every message around it names.
fn check_local(office: &Office, c: &Candidate) -> Result<()> {
    let reader = office.offsite.open(&c.key)?;
    let mut checked = VerifyingReader::new(reader, c.entry.stored(), "the offsite copy");
    io::copy(&mut checked, &mut io::sink())?;
    Ok(())
}

/// Fetches `key` from the store, checking it against the manifest entry while it streams into a
/// temporary file beside the local copy, then renames it over the local copy. The bad copy stays
/// in place until the good one is whole.
fn refetch(office: &Office, source: &dyn Store, key: &str, entry: &ObjectEntry) -> Result<()> {
    let reader = source
        .open(key)
        .with_context(|| format!("fetching {key} from {}", source.location()))?;
    let mut checked = VerifyingReader::new(
        reader,
        entry.stored(),
        format!("the copy in {}", source.location()),
    );
    replace_local(office, key, &mut checked)
}

/// Fetches a snapshot's manifest from the store, checks its signature and that it describes this
/// snapshot, and puts it in place of the local copy.
fn refetch_manifest(
    office: &Office,
    source: &dyn Store,
    snap: &SnapshotInfo,
    signers: &[sequoia_openpgp::Cert],
) -> Result<Manifest> {
    let key = format!("{}{MANIFEST_NAME}", snap.dir());
    let sealed = read_all(source, &key)?;
    let (json, _) = open_signed(&sealed, &office.decryption, signers).with_context(|| {
        format!(
            "checking the manifest {key} in {} (signature and decryption)",
            source.location()
        )
    })?;
    let manifest = Manifest::from_json(&json).with_context(|| format!("reading {key}"))?;
    if manifest.host != snap.host || manifest.snapshot != snap.id {
        bail!(
            "the store's {key} describes {}/{}, not this snapshot",
            manifest.host,
            manifest.snapshot
        );
    }
    replace_local(office, &key, &mut &sealed[..])?;
    Ok(manifest)
}

/// Writes `data` to a temporary file beside the local copy of `key` and renames it over that copy:
/// readers see the old bytes or the new, never a mix. The temporary name is one pull clears away
/// if this is killed (`.<name>.partial-...`).
fn replace_local(office: &Office, key: &str, data: &mut dyn Read) -> Result<()> {
    crate::store::check_key(key)?;
    let path = office.offsite.root().join(key);
    let dir = path
        .parent()
        .with_context(|| format!("object key {key} has no folder"))?;
    let name = path
        .file_name()
        .with_context(|| format!("object key {key} has no file name"))?
        .to_string_lossy()
        .into_owned();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    {
        let mut w = io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        // A mismatch surfaces as a read error at the end: the temporary file is then dropped.
        io::copy(data, &mut w)?;
        w.flush()
            .with_context(|| format!("writing {}", dir.display()))?;
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("fsync of the new copy of {key}"))?;
    tmp.persist(&path)
        .with_context(|| format!("replacing {}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync of {}", dir.display()))?;
    Ok(())
}

/// The configured store, opened only when something needs fetching: a scrub that finds nothing
/// wrong never touches it.
struct LazyStore<'a> {
    office: &'a Office,
    rt: &'a tokio::runtime::Handle,
    store: Option<Result<Arc<dyn Store>, String>>,
}

impl<'a> LazyStore<'a> {
    fn new(office: &'a Office, rt: &'a tokio::runtime::Handle) -> Self {
        Self {
            office,
            rt,
            store: None,
        }
    }

    fn get(&mut self) -> Result<&dyn Store> {
        let opened = self.store.get_or_insert_with(|| {
            crate::store::open(&self.office.cfg, self.rt).map_err(|e| format!("{e:#}"))
        });
        match &*opened {
            Ok(s) => Ok(s.as_ref()),
            Err(e) => bail!("opening the configured store: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::compress::Algorithm;
    use crate::snapshot::manifest::ObjectKind;

    fn candidate(
        key: &str,
        size: u64,
        last_days_ago: Option<i64>,
        now: OffsetDateTime,
    ) -> Candidate {
        Candidate {
            host: "h".into(),
            key: key.into(),
            entry: ObjectEntry {
                key: key.into(),
                kind: ObjectKind::TreeVolume,
                source: "tree/www".into(),
                stored_size: size,
                stored_sha256: String::new(),
                plain_size: 0,
                plain_sha256: String::new(),
                compression: Algorithm::Zstd,
                recipients: Vec::new(),
            },
            snapshot_time: Some(now - time::Duration::days(1)),
            last: last_days_ago.map(|d| now - time::Duration::days(d)),
        }
    }

    #[test]
    fn never_checked_first_then_oldest_within_the_budget_plus_everything_overdue() {
        let now = OffsetDateTime::now_utc();
        let c = vec![
            candidate("h/1/a", 100, Some(1), now),
            candidate("h/1/b", 100, None, now),
            candidate("h/1/c", 100, Some(2), now),
            candidate("h/1/d", 100, Some(10), now),
            candidate("h/1/e", 100, Some(3), now),
        ];
        // Budget 500/10 = 50 bytes: one object, the never-checked one; and d, checked 10 days ago,
        // is overdue.
        assert_eq!(choose(&c, 10, now), [1, 3]);
        // Budget 500/20 = 25 bytes: the never-checked one only.
        assert_eq!(choose(&c, 20, now), [1]);
        // Budget 500/2 = 250: b, d (10 days), e (3 days); every check 2 days old or more is due.
        assert_eq!(choose(&c, 2, now), [1, 3, 4, 2]);
        // Covered within `days` runs: each run takes at least total/days bytes.
        assert_eq!(choose(&c, 1, now).len(), 5);
    }
}
