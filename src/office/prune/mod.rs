//! `prune`: retention on the configured store (S3) and on the offsite copy.
//!
//! `office.retention` applies to the configured store, `office.offsite_retention` (or, when it is
//! not set, `office.retention`) to the offsite directory. The policy itself is [`policy::apply`];
//! this module decides what is safe to hand it and what may really be deleted. The rules, and why:
//!
//! 1. **Plan everything, then delete.** Every store is listed for every host, and the verify
//!    records are read, before the first delete. If any of that fails, nothing is deleted in *any*
//!    store and the run fails: a store we cannot see may be the only one still holding a snapshot
//!    the other store is about to lose, so no decision is trusted on half the picture.
//! 2. **An empty side is an alarm, not a plan.** An empty listing deletes nothing by construction
//!    (nothing listed, nothing planned), but it can mean a wrong bucket or prefix, or a bucket that
//!    was emptied. So when one store lists no complete snapshot of a host while the other store, or
//!    a passed verification, says the host has some, nothing of that host is deleted in either store
//!    and the run fails: the surviving copy is then the only one, and it is not pruned further.
//! 3. **Only complete snapshots meet the policy.** An incomplete one (objects without a manifest)
//!    younger than `office.abandon_after` may be a push in progress and is left alone; an older
//!    one is a push that died (pull calls it abandoned, by the same setting) and is removed whole.
//!    Its age is the store's time of its newest object. Writes that never finished (a local
//!    store's temporary files, S3 multipart uploads: [`crate::store::Unfinished`]) are removed by
//!    the same setting, each by its own last progress, wherever they are under the host's prefix:
//!    a push killed mid-upload, or one whose credential may not abort, leaves parts that are
//!    billed and belong to no object.
//! 4. **Never the newest verified snapshot** of a host (`record::newest_verified`), in either store,
//!    complete or not, whatever the policy says: it is what refresh restores from.
//! 5. **Never "delete everything".** The newest complete snapshot of a host is always kept. Every
//!    count rule keeps it anyway; this matters for a `keep_within`-only policy after pushes stopped,
//!    which would otherwise keep nothing.
//! 6. **The manifest goes first.** Deleting a snapshot removes its manifest, then its other objects,
//!    so an interrupted prune leaves an incomplete snapshot (never restored, removed by a later
//!    prune), never a "complete" one with objects missing. The objects are listed again at delete
//!    time, so whatever the snapshot holds then is removed.
//! 7. **A failed delete stops that store.** The rest of its plan is reported as not deleted; the
//!    other store still runs, since its plan stands on its own listing. The run fails.
//!
//! 8. **Chains stay whole.** A kept snapshot whose file trees are incremental points into older
//!    snapshots' volumes (`depends_on` in its signed manifest); those are kept too, whatever the
//!    policy says, with the reason `needed_by` and which kept snapshots need them. The manifests of
//!    the kept snapshots are read (signature checked) for this; if one cannot be read, nothing of
//!    that host is deleted and the run fails, since what it needs is unknown. A push in progress
//!    (an incomplete snapshot within the grace period) has no manifest yet: it names what it builds
//!    on in `needs/<id>` markers, written before it dumps, and those are kept too. push also checks
//!    again, just before it commits, that everything it points into still exists.
//!
//! 9. **Trusted time only, checked snapshots only.** Every listing is assessed by a [`Judge`]
//!    (`snapshot::trust`) before it is planned: ages and the policy's order come from the time
//!    pull recorded in the office's ledger (the store's time of each manifest), never from the id
//!    a possibly hacked host chose. Only snapshots the ledger knows as validly signed and not
//!    quarantined are counted: a quarantined or badly signed one is kept, counted by no rule, and
//!    never makes another one deletable (only `--quarantined --yes` removes it), and one pull has
//!    not checked yet is kept for a later run.
//! 10. **One night cannot erase history.** A run deletes at most `office.max_prune_fraction` of a
//!     host's complete snapshots, oldest first (`--force` lifts it): a flood of validly signed
//!     snapshots only wins a night's worth of slots.
//! 12. **A flood costs only itself.** While a host is flagged for more than
//!     `office.max_snapshots_per_day` commits in a day (the last week, from the ledger), the
//!     policy may delete only snapshots of the flood days (`--force` lifts it).
//! 11. **What was recently the newest verified stays.** Every snapshot that was the newest verified
//!     one at some moment of the last `keep_within` (a week when unset) is kept, unless `--force`.
//!
//! Not done here on purpose: verify records of deleted snapshots stay (they are the report's
//! history); hosts not in `office.hosts` are never touched.

pub mod lock;
pub mod policy;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use self::policy::Rule;
use super::context::Office;
use super::record;
use crate::config::{human_duration, Retention, StoreConfig};
use crate::error::usage;
use crate::snapshot::list::{list_with_unfinished, load_manifest, SnapshotInfo};
use crate::snapshot::trust::{countable, Judge, Known, Origin};
use crate::snapshot::MANIFEST_NAME;
use crate::store::{AdminStore, Store, Unfinished};
use std::collections::BTreeMap;

/// One store to prune, with its policy.
pub struct Target {
    /// `s3`, `local` (the configured store) or `offsite`.
    pub name: String,
    pub store: Arc<dyn AdminStore>,
    pub retention: Retention,
    /// Where the policy comes from: `office.retention` or `office.offsite_retention`.
    pub retention_key: &'static str,
    /// The store production writes to, or the offsite copy: how its times are judged.
    pub origin: Origin,
}

pub struct Options<'a> {
    pub dry_run: bool,
    pub now: OffsetDateTime,
    /// Which older snapshots a snapshot needs (rule 8).
    pub dependencies: &'a dyn Dependencies,
    /// What the office's ledger recorded (trusted times, quarantines), and the clock tolerance.
    pub known: &'a BTreeMap<(String, String), Known>,
    pub tolerance: time::Duration,
    /// `office.max_prune_fraction` (rule 10).
    pub max_fraction: f64,
    /// Lifts rules 10 and 11.
    pub force: bool,
    /// Rule 11's window: `keep_within`, else a week.
    pub protect_window: time::Duration,
    /// Per host: the days of a recent flood (rule 12).
    pub flood_days: &'a BTreeMap<String, Vec<time::Date>>,
    /// Delete the quarantined snapshots, and nothing else.
    pub quarantined: bool,
    /// `office.abandon_after`: an incomplete snapshot younger than this may still be written by
    /// its push (rule 3).
    pub abandon_after: time::Duration,
}

/// Tells which older snapshots a complete snapshot's trees point into.
pub trait Dependencies {
    fn of(&self, store: &dyn Store, snap: &SnapshotInfo) -> Result<Vec<String>>;
}

/// Reads them from the snapshot's manifest, checking its signature with the office's keys.
pub struct ManifestDependencies<'a> {
    pub office: &'a Office,
}

impl Dependencies for ManifestDependencies<'_> {
    fn of(&self, store: &dyn Store, snap: &SnapshotInfo) -> Result<Vec<String>> {
        let signers = self.office.signers(&snap.host)?;
        let m = load_manifest(store, snap, &self.office.decryption, signers)?;
        Ok(m.depends_on())
    }
}

/// The stores to prune, with their policies, from the config. A usage error when no retention is
/// configured.
pub fn targets(office: &Office, handle: &tokio::runtime::Handle) -> Result<Vec<Target>> {
    let o = &office.office;
    if o.retention.is_none() && o.offsite_retention.is_none() {
        return Err(usage(format!(
            "{}: no retention policy: add one under office:, e.g.\n  office:\n    retention: {{ keep_last: 3, keep_daily: 14, keep_weekly: 8, keep_monthly: 12 }}\n(office.offsite_retention, when set, applies to the offsite copy instead)",
            office.cfg.path.display()
        )));
    }
    // A local store that is the offsite directory itself would be pruned twice, by two policies.
    let same_dir = match &office.cfg.store {
        StoreConfig::Local(dir) => same_path(dir, &office.offsite_dir),
        StoreConfig::S3(_) => false,
    };
    let mut out = Vec::new();
    if let (Some(r), false) = (&o.retention, same_dir) {
        out.push(Target {
            name: match office.cfg.store {
                StoreConfig::S3(_) => "s3".into(),
                StoreConfig::Local(_) => "local".into(),
            },
            store: crate::store::open_admin(&office.cfg, handle)?,
            retention: r.clone(),
            retention_key: "office.retention",
            origin: Origin::Source,
        });
    }
    let offsite_policy = if same_dir {
        o.retention.as_ref().map(|r| (r, "office.retention")).or(o
            .offsite_retention
            .as_ref()
            .map(|r| (r, "office.offsite_retention")))
    } else {
        o.offsite_retention
            .as_ref()
            .map(|r| (r, "office.offsite_retention"))
            .or(o.retention.as_ref().map(|r| (r, "office.retention")))
    };
    if let Some((r, key)) = offsite_policy {
        out.push(Target {
            name: "offsite".into(),
            store: office.offsite.clone(),
            // A directory has no Object Lock: the lock tiers are the S3 store's.
            retention: Retention {
                lock: None,
                ..r.clone()
            },
            retention_key: key,
            origin: Origin::Copy,
        });
    }
    Ok(out)
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Why a snapshot is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeepReason {
    Rule(Rule),
    /// The newest snapshot of the host that passed verify.
    NewestVerified,
    /// The newest complete snapshot, which no rule kept (rule 5).
    NewestComplete,
    /// Incomplete, but young enough to be a push still running.
    InProgress,
    /// Its id carries no readable time; nothing is decided about it.
    Undated,
    /// A kept incremental's index points into its volumes (rule 8).
    NeededBy,
    /// Its claimed time does not fit the store's (rule 9): evidence, kept until a person decides.
    Quarantined,
    /// Was the newest verified snapshot within the protection window (rule 11).
    RecentlyVerified,
    /// Complete, but pull has not checked it yet: no rule counts it (rule 9).
    Unchecked,
    /// `--quarantined` deletes only quarantined snapshots.
    NotQuarantined,
    /// The host flooded recently: only snapshots of the flood days may go (rule 12).
    Flood,
    /// The policy would delete it, but this run reached `office.max_prune_fraction` (rule 10).
    PruneLimit,
}

impl KeepReason {
    pub fn code(self) -> &'static str {
        match self {
            KeepReason::Rule(r) => r.name(),
            KeepReason::NewestVerified => "newest_verified",
            KeepReason::NewestComplete => "newest_complete",
            KeepReason::InProgress => "in_progress",
            KeepReason::Undated => "undated",
            KeepReason::NeededBy => "needed_by",
            KeepReason::Quarantined => "quarantined",
            KeepReason::RecentlyVerified => "recently_verified",
            KeepReason::Unchecked => "unchecked",
            KeepReason::NotQuarantined => "not_quarantined",
            KeepReason::Flood => "flood_hold",
            KeepReason::PruneLimit => "prune_limit",
        }
    }

    /// `abandon_after`: `office.abandon_after`, which the in-progress reason names.
    pub fn describe(self, abandon_after: std::time::Duration) -> String {
        match self {
            KeepReason::Rule(r) => r.name().to_string(),
            KeepReason::NewestVerified => "newest verified snapshot (never deleted)".into(),
            KeepReason::NewestComplete => "newest complete snapshot (always kept)".into(),
            KeepReason::InProgress => {
                format!(
                    "younger than {} (office.abandon_after): its push may still be running",
                    human_duration(abandon_after)
                )
            }
            KeepReason::Undated => "its id has no readable time".into(),
            KeepReason::NeededBy => "holds files of a kept incremental".into(),
            KeepReason::Quarantined => {
                "QUARANTINED: misdated, forged or not signed by the host (kept as evidence; offsite snapshots says why; offsite prune --quarantined --yes deletes it)".into()
            }
            KeepReason::RecentlyVerified => {
                "was the newest verified snapshot within the protection window".into()
            }
            KeepReason::Unchecked => {
                "not checked by pull yet (its signature is unknown): no rule counts it".into()
            }
            KeepReason::NotQuarantined => "not quarantined".into(),
            KeepReason::Flood => {
                "older than a recent flood of snapshots: history is not pruned while the host is flagged (a week; --force lifts it)".into()
            }
            KeepReason::PruneLimit => {
                "over office.max_prune_fraction for one run (a later run deletes it, or --force)"
                    .into()
            }
        }
    }
}

impl Serialize for KeepReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// Why a snapshot is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteReason {
    /// Complete, and no rule of the policy keeps it.
    Policy,
    /// Incomplete and older than the grace period: its push died.
    Abandoned,
    /// Quarantined, deleted on a person's request (`prune --quarantined --yes`).
    Quarantined,
}

impl DeleteReason {
    /// `abandon_after`: `office.abandon_after`, which the abandoned reason names.
    pub fn describe(self, abandon_after: std::time::Duration) -> String {
        match self {
            DeleteReason::Policy => "no rule keeps it".into(),
            DeleteReason::Abandoned => {
                format!(
                    "incomplete and older than {} (office.abandon_after): its push died",
                    human_duration(abandon_after)
                )
            }
            DeleteReason::Quarantined => "quarantined, deleted on request".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Dry run: would be deleted.
    Planned,
    Deleted,
    Failed,
    /// Not attempted: a listing failed, the host is in alarm, or an earlier delete in this store
    /// failed.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub snapshot: String,
    pub complete: bool,
    pub age_hours: Option<f64>,
    pub reasons: Vec<KeepReason>,
    /// The kept snapshots whose trees point into this one (rule 8).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needed_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Doomed {
    pub snapshot: String,
    pub complete: bool,
    pub age_hours: Option<f64>,
    /// As listed when the plan was made.
    pub objects: usize,
    pub bytes: u64,
    pub reason: DeleteReason,
    pub status: Status,
    pub deleted_objects: usize,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    pub host: String,
    /// Set when nothing of this host may be deleted (rule 2); the run then fails.
    pub error: Option<String>,
    /// Newest first.
    pub keep: Vec<Kept>,
    /// Newest first.
    pub delete: Vec<Doomed>,
    /// Worth knowing, not a failure: where a safety rule held the policy back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Unfinished writes older than `office.abandon_after` (rule 3), removed after the deletions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unfinished: Vec<Leftover>,
    /// `offsite audit` canaries (`<host>/.audit/...`) older than `office.abandon_after` that this
    /// run removed: push cannot delete its own, so the office does, and so shows it can.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audit_canaries_removed: Vec<String>,
    /// Keys whose newest version is a delete marker prune did not leave (it deletes versions by
    /// id): someone else deleted them; the bytes are still there as older versions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delete_markers: Vec<String>,
    /// `office.retention.lock`: the kept snapshots whose Object Lock the policy extends.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<lock::LockPlan>,
}

/// An unfinished write prune removes: a temporary file, an S3 multipart upload.
#[derive(Debug, Clone, Serialize)]
pub struct Leftover {
    /// The object it was to become.
    pub key: String,
    /// `temporary file` or `multipart upload`.
    pub kind: String,
    /// The file name or upload id.
    pub handle: String,
    pub age_hours: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    write: Unfinished,
}

/// Rule 3 for unfinished writes: those whose last progress is older than `grace`, in a snapshot
/// (when they belong to one) that has seen no progress for as long either. The snapshot's time
/// counts too because a write's own time can be wrong: some S3 implementations report a fixed
/// `Initiated` for every multipart upload, and an upload that has no part yet has no other time.
pub fn stale_writes(
    writes: &[Unfinished],
    snaps: &[SnapshotInfo],
    kind: &str,
    now: OffsetDateTime,
    grace: time::Duration,
) -> Vec<Leftover> {
    writes
        .iter()
        .filter_map(|w| {
            let snapshot = snaps
                .iter()
                .find(|s| w.key.starts_with(&s.dir()))
                .map(|s| s.last_write);
            let last = match snapshot {
                Some(t) => Some(t?).max(w.modified)?,
                None => w.modified?,
            };
            let age = now - last;
            (age > grace).then(|| Leftover {
                key: w.key.clone(),
                kind: kind.to_string(),
                handle: w.handle.clone(),
                age_hours: age.as_seconds_f64() / 3600.0,
                bytes: w.size,
                status: Status::Planned,
                error: None,
                write: w.clone(),
            })
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    pub name: String,
    pub location: String,
    pub retention_key: String,
    pub retention: String,
    pub ok: bool,
    /// A listing or delete failure in this store.
    pub error: Option<String>,
    pub hosts: Vec<HostPlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// RFC 3339.
    pub now: String,
    pub dry_run: bool,
    pub ok: bool,
    /// Failures that stopped every deletion.
    pub errors: Vec<String>,
    pub stores: Vec<StoreReport>,
}

/// `keep_last 2, keep_daily 7, keep_within 14d`
pub fn describe_retention(r: &Retention) -> String {
    let mut parts = Vec::new();
    for (name, n) in [
        ("keep_last", r.keep_last),
        ("keep_hourly", r.keep_hourly),
        ("keep_daily", r.keep_daily),
        ("keep_weekly", r.keep_weekly),
        ("keep_monthly", r.keep_monthly),
        ("keep_yearly", r.keep_yearly),
    ] {
        if n > 0 {
            parts.push(format!("{name} {n}"));
        }
    }
    if let Some(d) = r.keep_within {
        parts.push(format!("keep_within {}", human_duration(d)));
    }
    parts.join(", ")
}

/// What to keep and delete of one host in one store: a pure function of the listing (assessed by
/// a [`Judge`]: every time here is trusted time), the policy, the newest verified snapshot, `now`
/// and `grace` (`office.abandon_after`: how long an incomplete snapshot may be a push in progress).
pub fn plan_host(
    host: &str,
    snaps: &[SnapshotInfo],
    ret: &Retention,
    newest_verified: Option<&str>,
    now: OffsetDateTime,
    grace: time::Duration,
) -> HostPlan {
    let mut keep = Vec::new();
    let mut delete = Vec::new();
    // (index into snaps, trusted time) of the complete snapshots the policy may count.
    let mut complete: Vec<(usize, OffsetDateTime)> = Vec::new();
    for (i, s) in snaps.iter().enumerate() {
        if s.host != host {
            continue;
        }
        let t = s.trusted;
        let age_hours = t.map(|t| (now - t).as_seconds_f64() / 3600.0);
        let mut reasons = Vec::new();
        if newest_verified == Some(s.id.as_str()) && s.quarantine.is_none() {
            reasons.push(KeepReason::NewestVerified);
        }
        match t {
            _ if s.complete && s.quarantine.is_some() => reasons.push(KeepReason::Quarantined),
            _ if s.complete && s.unchecked => reasons.push(KeepReason::Unchecked),
            None => reasons.push(KeepReason::Undated),
            Some(t) if countable(s) => {
                complete.push((i, t));
                continue;
            }
            Some(t) if now - t < grace => reasons.push(KeepReason::InProgress),
            Some(_) if reasons.is_empty() => {
                delete.push(doomed(s, age_hours, DeleteReason::Abandoned));
                continue;
            }
            Some(_) => {}
        }
        keep.push(Kept {
            snapshot: s.id.clone(),
            complete: s.complete,
            age_hours,
            reasons,
            needed_by: Vec::new(),
        });
    }

    let input: Vec<(String, OffsetDateTime)> = complete
        .iter()
        .map(|&(i, t)| (snaps[i].id.clone(), t))
        .collect();
    let verdicts = policy::apply(ret, &input, now);
    let newest = complete
        .iter()
        .max_by(|a, b| {
            a.1.cmp(&b.1)
                .then_with(|| snaps[a.0].id.cmp(&snaps[b.0].id))
        })
        .map(|&(i, _)| i);
    for (&(i, t), rules) in complete.iter().zip(verdicts) {
        let s = &snaps[i];
        let age_hours = Some((now - t).as_seconds_f64() / 3600.0);
        let mut reasons: Vec<KeepReason> = rules.into_iter().map(KeepReason::Rule).collect();
        if newest_verified == Some(s.id.as_str()) {
            reasons.push(KeepReason::NewestVerified);
        }
        if reasons.is_empty() && newest == Some(i) {
            reasons.push(KeepReason::NewestComplete);
        }
        if reasons.is_empty() {
            delete.push(doomed(s, age_hours, DeleteReason::Policy));
        } else {
            keep.push(Kept {
                snapshot: s.id.clone(),
                complete: true,
                age_hours,
                reasons,
                needed_by: Vec::new(),
            });
        }
    }
    keep.sort_by(|a, b| b.snapshot.cmp(&a.snapshot));
    delete.sort_by(|a, b| b.snapshot.cmp(&a.snapshot));
    HostPlan {
        host: host.to_string(),
        error: None,
        keep,
        delete,
        notes: Vec::new(),
        unfinished: Vec::new(),
        audit_canaries_removed: Vec::new(),
        locks: Vec::new(),
        delete_markers: Vec::new(),
    }
}

/// `prune --quarantined --yes`: the quarantined complete snapshots, and nothing else. Everything
/// else is listed as kept, so that rule 8 (run by the caller) still keeps a quarantined snapshot
/// that a real incremental points into: a host whose clock was off for one night must not lose the
/// chain built on that night's full.
pub fn plan_quarantined(host: &str, snaps: &[SnapshotInfo], now: OffsetDateTime) -> HostPlan {
    let mut keep = Vec::new();
    let mut delete = Vec::new();
    for s in snaps.iter().filter(|s| s.host == host) {
        let age = s.trusted.map(|t| (now - t).as_seconds_f64() / 3600.0);
        if s.complete && s.quarantine.is_some() {
            delete.push(doomed(s, age, DeleteReason::Quarantined));
        } else {
            keep.push(Kept {
                snapshot: s.id.clone(),
                complete: s.complete,
                age_hours: age,
                reasons: vec![KeepReason::NotQuarantined],
                needed_by: Vec::new(),
            });
        }
    }
    HostPlan {
        host: host.to_string(),
        error: None,
        keep,
        delete,
        notes: Vec::new(),
        unfinished: Vec::new(),
        audit_canaries_removed: Vec::new(),
        locks: Vec::new(),
        delete_markers: Vec::new(),
    }
}

/// Moves the planned deletions that `hold` picks to the kept list, for `reason`; returns how many.
fn hold_back(plan: &mut HostPlan, reason: KeepReason, hold: impl Fn(&Doomed) -> bool) -> usize {
    let (held, rest): (Vec<Doomed>, Vec<Doomed>) =
        std::mem::take(&mut plan.delete).into_iter().partition(hold);
    plan.delete = rest;
    let n = held.len();
    plan.keep.extend(held.into_iter().map(|d| Kept {
        snapshot: d.snapshot,
        complete: d.complete,
        age_hours: d.age_hours,
        reasons: vec![reason],
        needed_by: Vec::new(),
    }));
    plan.keep.sort_by(|a, b| b.snapshot.cmp(&a.snapshot));
    n
}

/// Rule 11: keeps every snapshot `protected` names, whatever the policy says.
pub fn keep_protected(plan: &mut HostPlan, protected: &[String]) {
    hold_back(plan, KeepReason::RecentlyVerified, |d| {
        protected.contains(&d.snapshot)
    });
}

/// Rule 12: while a host is flagged for a flood, the policy may delete only snapshots of the flood
/// days: a flood can cost nothing but itself, whatever the policy (a keep_last-only policy would
/// otherwise let 20 forged-but-signed snapshots push out 20 real ones, a night at a time).
pub fn hold_for_flood(plan: &mut HostPlan, snaps: &[SnapshotInfo], days: &[time::Date]) {
    let day_of = |id: &str| {
        snaps
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| s.trusted)
            .map(|t| t.date())
    };
    let held = hold_back(plan, KeepReason::Flood, |d| {
        d.reason == DeleteReason::Policy && !day_of(&d.snapshot).is_some_and(|d| days.contains(&d))
    });
    if held > 0 {
        let list: Vec<String> = days.iter().map(|d| d.to_string()).collect();
        plan.notes.push(format!(
            "{} flooded on {}: {held} older snapshot(s) the policy would delete are kept while the flag stands (a week); prune --force deletes them",
            plan.host,
            list.join(", "),
        ));
    }
}

/// Rule 10: at most `fraction` of the host's complete snapshots go in one run, the oldest first;
/// the rest of the policy's deletions wait for a later run.
pub fn limit_deletions(plan: &mut HostPlan, complete: usize, fraction: f64) {
    let allowed = (complete as f64 * fraction).floor() as usize;
    let mut policy: Vec<usize> = (0..plan.delete.len())
        .filter(|&i| plan.delete[i].reason == DeleteReason::Policy)
        .collect();
    // Youngest first, by trusted age (ids are claims): those are held, the oldest go.
    policy.sort_by(|&a, &b| {
        let age = |i: usize| plan.delete[i].age_hours.unwrap_or(f64::MAX);
        age(a).total_cmp(&age(b))
    });
    if policy.len() <= allowed {
        return;
    }
    let held = policy.len() - allowed;
    let held_ids: Vec<String> = policy
        .iter()
        .take(held)
        .map(|&i| plan.delete[i].snapshot.clone())
        .collect();
    plan.notes.push(format!(
        "the policy would delete {} of {complete} complete snapshots of {}; office.max_prune_fraction {fraction} allows {allowed} per run: {held} kept for now (a flood of snapshots, or a policy just made stricter? prune --force deletes them all)",
        policy.len(),
        plan.host,
    ));
    hold_back(plan, KeepReason::PruneLimit, |d| {
        d.reason == DeleteReason::Policy && held_ids.contains(&d.snapshot)
    });
}

/// Rule 11: the snapshots that were the newest verified one at some moment of the window that
/// ends now (the one in effect at its start included), from verify records in any order.
pub fn recently_verified(
    records: &[record::VerifyRecord],
    window_start: OffsetDateTime,
) -> Vec<String> {
    let parse = |s: &str| OffsetDateTime::parse(s, &Rfc3339).ok();
    let mut passed: Vec<(OffsetDateTime, &record::VerifyRecord)> = records
        .iter()
        .filter(|r| r.ok)
        .filter_map(|r| Some((parse(&r.verified_at)?, r)))
        .collect();
    passed.sort_by_key(|(at, _)| *at);
    let mut newest: Option<&record::VerifyRecord> = None;
    let mut out: Vec<String> = Vec::new();
    for (at, r) in passed {
        if at > window_start {
            if let Some(n) = newest {
                // In effect when the window opened (or until this verification).
                if !out.contains(&n.snapshot) {
                    out.push(n.snapshot.clone());
                }
            }
        }
        let newer = newest
            .is_none_or(|n| (r.trusted_time(), &r.snapshot) > (n.trusted_time(), &n.snapshot));
        if newer {
            newest = Some(r);
        }
    }
    if let Some(n) = newest {
        if !out.contains(&n.snapshot) {
            out.push(n.snapshot.clone());
        }
    }
    out
}

fn doomed(s: &SnapshotInfo, age_hours: Option<f64>, reason: DeleteReason) -> Doomed {
    Doomed {
        snapshot: s.id.clone(),
        complete: s.complete,
        age_hours,
        objects: s.objects,
        bytes: s.stored_bytes,
        reason,
        status: Status::Planned,
        deleted_objects: 0,
        error: None,
    }
}

/// Rule 8: moves every snapshot a kept one depends on from `delete` to `keep`. An error (a manifest
/// that cannot be read) means nothing of the host may be deleted.
pub fn keep_dependencies(
    plan: &mut HostPlan,
    snaps: &[SnapshotInfo],
    store: &dyn Store,
    deps: &dyn Dependencies,
) -> Result<(), String> {
    let kept: Vec<String> = plan.keep.iter().map(|k| k.snapshot.clone()).collect();
    for id in kept {
        let Some(info) = snaps.iter().find(|s| s.id == id) else {
            continue;
        };
        let needs = if !info.complete {
            // A push in progress: its `needs/` markers say what its incrementals build on.
            info.needs.clone()
        } else if info.has_trees && !countable(info) {
            // Quarantined or unchecked: kept as it is, and what it points into too when its
            // manifest says so; but a manifest that does not open (someone else's) must not stop
            // retention for the host's real snapshots.
            match deps.of(store, info) {
                Ok(d) => d,
                Err(_) => continue,
            }
        } else if info.has_trees {
            deps.of(store, info).map_err(|e| {
                format!(
                    "cannot read the manifest of {}/{id} to learn which snapshots its file trees need ({e:#}): deleting nothing of {} in any store",
                    plan.host, plan.host
                )
            })?
        } else {
            // Only a snapshot with file trees can point into another: no manifest to read.
            continue;
        };
        for dep in needs {
            if let Some(pos) = plan.delete.iter().position(|d| d.snapshot == dep) {
                let d = plan.delete.remove(pos);
                plan.keep.push(Kept {
                    snapshot: d.snapshot,
                    complete: d.complete,
                    age_hours: d.age_hours,
                    reasons: vec![KeepReason::NeededBy],
                    needed_by: vec![id.clone()],
                });
            } else if let Some(k) = plan.keep.iter_mut().find(|k| k.snapshot == dep) {
                if !k.needed_by.contains(&id) {
                    if !k.reasons.contains(&KeepReason::NeededBy) {
                        k.reasons.push(KeepReason::NeededBy);
                    }
                    k.needed_by.push(id.clone());
                }
            }
        }
    }
    plan.keep.sort_by(|a, b| b.snapshot.cmp(&a.snapshot));
    Ok(())
}

/// Rule 2: the reason nothing of `host` may be deleted, if there is one. `listings` holds, per
/// store, its name and its snapshots of `host`.
pub fn emptiness_alarm(
    host: &str,
    listings: &[(&str, &[SnapshotInfo])],
    newest_verified: Option<&str>,
) -> Option<String> {
    let complete = |snaps: &[SnapshotInfo]| snaps.iter().filter(|s| s.complete).count();
    for (name, snaps) in listings {
        if complete(snaps) > 0 {
            continue;
        }
        let mut evidence: Vec<String> = listings
            .iter()
            .filter(|(other, s)| other != name && complete(s) > 0)
            .map(|(other, s)| format!("{other} has {} complete", complete(s)))
            .collect();
        if let Some(v) = newest_verified {
            evidence.push(format!("verify passed for {host}/{v}"));
        }
        if !evidence.is_empty() {
            return Some(format!(
                "{name} lists no complete snapshot of {host}, but {}: deleting nothing of {host} in any store (a wrong bucket, prefix or directory? an emptied store? a host not pulled yet?)",
                evidence.join(" and ")
            ));
        }
    }
    None
}

/// Plans every target for every host and, unless it is a dry run or something failed, deletes.
/// Never returns an error: every failure is in the report, and `ok` is false.
pub fn prune(targets: &[Target], hosts: &[String], offsite_dir: &Path, opts: &Options) -> Report {
    let now = opts.now;
    let mut report = Report {
        now: now
            .format(&Rfc3339)
            .unwrap_or_else(|_| now.unix_timestamp().to_string()),
        dry_run: opts.dry_run,
        ok: true,
        errors: Vec::new(),
        stores: Vec::new(),
    };

    let mut verified: Vec<Option<String>> = Vec::new();
    let mut protected: Vec<Vec<String>> = Vec::new();
    for host in hosts {
        match record::trusted_records(offsite_dir, host) {
            Ok(records) => {
                let newest = records
                    .iter()
                    .filter(|r| r.ok)
                    .max_by(|a, b| {
                        (a.trusted_time(), &a.snapshot).cmp(&(b.trusted_time(), &b.snapshot))
                    })
                    .map(|r| r.snapshot.clone());
                verified.push(newest);
                protected.push(if opts.force {
                    Vec::new()
                } else {
                    recently_verified(
                        &records,
                        now.checked_sub(opts.protect_window)
                            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    )
                });
            }
            Err(e) => {
                report.errors.push(format!(
                    "reading the verify records of {host}: {e:#}; without them the newest verified snapshot is unknown"
                ));
                verified.push(None);
                protected.push(Vec::new());
            }
        }
    }

    // Listings: per target, per host (None when that target's listing failed).
    let mut listings: Vec<Option<Vec<Vec<SnapshotInfo>>>> = Vec::new();
    // Per target, per host: its unfinished writes (complete only where the listing is).
    let mut writes: Vec<Vec<Vec<Unfinished>>> = Vec::new();
    for t in targets {
        let mut store = StoreReport {
            name: t.name.clone(),
            location: t.store.location(),
            retention_key: t.retention_key.to_string(),
            retention: describe_retention(&t.retention),
            ok: true,
            error: None,
            hosts: Vec::new(),
        };
        let mut per_host = Vec::new();
        let mut host_writes = Vec::new();
        let judge = Judge {
            origin: t.origin,
            tolerance: opts.tolerance,
            known: opts.known.clone(),
            require_known: true,
        };
        for host in hosts {
            match list_with_unfinished(t.store.as_store(), Some(host)) {
                Ok((mut s, w)) => {
                    // Every time the plan uses is trusted time; quarantined ones never count.
                    judge.assess(&mut s);
                    per_host.push(s);
                    host_writes.push(w);
                }
                Err(e) => {
                    store.ok = false;
                    store.error = Some(format!("listing {host}: {e:#}"));
                    break;
                }
            }
        }
        listings.push(store.ok.then_some(per_host));
        writes.push(host_writes);
        report.stores.push(store);
    }
    let failed: Vec<String> = report
        .stores
        .iter()
        .filter(|s| !s.ok)
        .map(|s| format!("{} ({})", s.name, s.location))
        .collect();
    if !failed.is_empty() {
        report.errors.push(format!(
            "listing failed in {}: nothing was deleted in any store",
            failed.join(" and ")
        ));
    } else if !report.errors.is_empty() {
        report
            .errors
            .push("nothing was deleted in any store".to_string());
    }
    let abort = !report.errors.is_empty();

    for (hi, host) in hosts.iter().enumerate() {
        let seen: Vec<(&str, &[SnapshotInfo])> = targets
            .iter()
            .zip(&listings)
            .filter_map(|(t, l)| l.as_ref().map(|l| (t.name.as_str(), l[hi].as_slice())))
            .collect();
        let alarm = emptiness_alarm(host, &seen, verified[hi].as_deref());
        for (ti, t) in targets.iter().enumerate() {
            let Some(l) = &listings[ti] else { continue };
            if opts.quarantined {
                let mut plan = plan_quarantined(host, &l[hi], now);
                if let Err(e) =
                    keep_dependencies(&mut plan, &l[hi], t.store.as_store(), opts.dependencies)
                {
                    plan.error = Some(e);
                }
                report.stores[ti].hosts.push(plan);
                continue;
            }
            let mut plan = plan_host(
                host,
                &l[hi],
                &t.retention,
                verified[hi].as_deref(),
                now,
                opts.abandon_after,
            );
            plan.error = alarm.clone();
            keep_protected(&mut plan, &protected[hi]);
            if let Err(e) =
                keep_dependencies(&mut plan, &l[hi], t.store.as_store(), opts.dependencies)
            {
                plan.error.get_or_insert(e);
            }
            if !opts.force {
                if let Some(days) = opts.flood_days.get(host).filter(|d| !d.is_empty()) {
                    hold_for_flood(&mut plan, &l[hi], days);
                }
                let complete = l[hi].iter().filter(|s| countable(s)).count();
                limit_deletions(&mut plan, complete, opts.max_fraction);
            }
            if let Some(lk) = &t.retention.lock {
                plan.locks = lock::plan_locks(&plan, &l[hi], lk, now);
            }
            match t.store.delete_markers(&format!("{host}/")) {
                Ok(m) if !m.is_empty() => {
                    plan.notes.push(format!(
                        "{} object(s) hidden by delete markers that prune did not write (a credential that can delete was used; the bytes are still there as older versions): {}",
                        m.len(),
                        m.iter().map(|o| o.key.as_str()).take(5).collect::<Vec<_>>().join(", ")
                    ));
                    plan.delete_markers = m.into_iter().map(|o| o.key).collect();
                }
                Ok(_) => {}
                Err(e) => plan
                    .notes
                    .push(format!("delete markers not checked: {e:#}")),
            }
            plan.unfinished = stale_writes(
                &writes[ti][hi],
                &l[hi],
                t.store.unfinished_kind(),
                now,
                opts.abandon_after,
            );
            report.stores[ti].hosts.push(plan);
        }
    }

    for (ti, t) in targets.iter().enumerate() {
        let store = &mut report.stores[ti];
        let mut stopped = false;
        for plan in &mut store.hosts {
            for d in &mut plan.delete {
                let halted = abort
                    || stopped
                    || plan.error.is_some()
                    || crate::interrupt::received().is_some();
                // A snapshot still under Object Lock cannot be deleted yet: a later run will (and
                // a dry run says so, rather than promise a delete the store will refuse).
                if opts.dry_run || !halted {
                    let manifest = format!(
                        "{}{MANIFEST_NAME}",
                        crate::snapshot::dir(&plan.host, &d.snapshot)
                    );
                    if let Ok(Some(until)) = t.store.lock_until(&manifest) {
                        if until > now {
                            d.status = Status::Skipped;
                            plan.notes.push(format!(
                                "{} is locked until {} (Object Lock): a run after that deletes it",
                                d.snapshot,
                                until.format(&Rfc3339).unwrap_or_default()
                            ));
                            continue;
                        }
                    }
                }
                if opts.dry_run {
                    d.status = Status::Planned;
                    continue;
                }
                // After SIGINT/SIGTERM no further snapshot is touched; the one being deleted is
                // finished (its manifest went first: it is incomplete already).
                if halted {
                    d.status = Status::Skipped;
                    continue;
                }
                let (n, res) = delete_snapshot(t.store.as_ref(), &plan.host, d);
                d.deleted_objects = n;
                match res {
                    Ok(()) => {
                        d.status = Status::Deleted;
                        tracing::info!(
                            "deleted {}/{} from {}: {n} object(s), {}",
                            plan.host,
                            d.snapshot,
                            store.location,
                            crate::config::human(d.bytes)
                        );
                    }
                    Err(e) => {
                        let msg = format!("{e:#}");
                        tracing::error!("{msg}");
                        d.status = Status::Failed;
                        d.error = Some(msg.clone());
                        store.ok = false;
                        store.error.get_or_insert(msg);
                        stopped = true;
                    }
                }
            }
            for w in &mut plan.unfinished {
                if opts.dry_run {
                    continue;
                }
                if abort
                    || stopped
                    || plan.error.is_some()
                    || crate::interrupt::received().is_some()
                {
                    w.status = Status::Skipped;
                    continue;
                }
                match t.store.discard(&w.write) {
                    Ok(()) => {
                        w.status = Status::Deleted;
                        tracing::info!(
                            "removed the {} {} of {} from {} ({:.0} h without progress)",
                            w.kind,
                            w.handle,
                            w.key,
                            store.location,
                            w.age_hours
                        );
                    }
                    Err(e) => {
                        let msg = format!("{e:#}");
                        tracing::error!("{msg}");
                        w.status = Status::Failed;
                        w.error = Some(msg.clone());
                        store.ok = false;
                        store.error.get_or_insert(msg);
                        stopped = true;
                    }
                }
            }
            for l in &mut plan.locks {
                if opts.dry_run {
                    continue;
                }
                // Extending a lock only protects: it goes on while a host's deletions are held.
                if abort || crate::interrupt::received().is_some() {
                    l.status = lock::LockStatus::Skipped;
                    continue;
                }
                lock::apply(t.store.as_ref(), &plan.host, l);
                match l.status {
                    lock::LockStatus::Extended => tracing::info!(
                        "locked {}/{} in {} until {} ({}): {} object(s) extended",
                        plan.host,
                        l.snapshot,
                        store.location,
                        l.until,
                        l.rule,
                        l.extended_objects
                    ),
                    lock::LockStatus::Failed => {
                        let msg = format!(
                            "extending the lock of {}/{}: {}",
                            plan.host,
                            l.snapshot,
                            l.error.as_deref().unwrap_or("failed")
                        );
                        tracing::error!("{msg}");
                        store.ok = false;
                        store.error.get_or_insert(msg);
                    }
                    _ => {}
                }
            }
            if !opts.dry_run && !abort && !stopped && crate::interrupt::received().is_none() {
                remove_audit_canaries(t.store.as_ref(), plan, now, opts.abandon_after);
            }
        }
    }

    report.ok = report.errors.is_empty()
        && report
            .stores
            .iter()
            .all(|s| s.ok && s.hosts.iter().all(|h| h.error.is_none()));
    report
}

/// At most this many audit canaries are looked at per host and run.
const MAX_CANARIES_PER_RUN: usize = 100;

/// Removes the host's `offsite audit` canaries older than `grace` (an audit may be running). A
/// canary that cannot be removed yet (its Object Lock holds) is a note, not a failure.
fn remove_audit_canaries(
    store: &dyn AdminStore,
    plan: &mut HostPlan,
    now: OffsetDateTime,
    grace: time::Duration,
) {
    let prefix = format!("{}/.audit/", plan.host);
    let canaries = match store.as_store().list(&prefix) {
        Ok(c) => c,
        Err(e) => {
            plan.notes
                .push(format!("listing the audit canaries: {e:#}"));
            return;
        }
    };
    // Only what `offsite audit` writes (`<stamp>-<hex>`), and a bounded number per run: a hacked
    // host may fill the folder with locked junk to make every prune slow.
    let named_like_a_canary = |key: &str| {
        key.strip_prefix(&prefix).is_some_and(|n| {
            n.len() <= 40 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
    };
    for c in canaries.into_iter().take(MAX_CANARIES_PER_RUN) {
        if crate::interrupt::received().is_some() {
            return;
        }
        if c.modified.is_none_or(|m| now - m < grace) || !named_like_a_canary(&c.key) {
            continue;
        }
        match store.delete(&c.key) {
            Ok(()) => plan.audit_canaries_removed.push(c.key),
            Err(e) => plan
                .notes
                .push(format!("the audit canary {} stays for now: {e:#}", c.key)),
        }
    }
}

/// Deletes one snapshot, manifest first. Returns how many objects went, and the first failure.
fn delete_snapshot(store: &dyn AdminStore, host: &str, d: &Doomed) -> (usize, Result<()>) {
    let dir = crate::snapshot::dir(host, &d.snapshot);
    let manifest = format!("{dir}{MANIFEST_NAME}");
    let objects = match store
        .list(&dir)
        .with_context(|| format!("listing {dir} in {} before deleting it", store.location()))
    {
        Ok(o) => o,
        Err(e) => return (0, Err(e)),
    };
    let has_manifest = objects.iter().any(|o| o.key == manifest);
    if has_manifest && !d.complete {
        // Planned as abandoned, committed since: the plan no longer describes it.
        return (
            0,
            Err(anyhow::anyhow!(
                "{host}/{} in {} got its manifest after the plan was made: not deleted",
                d.snapshot,
                store.location()
            )),
        );
    }
    // A key no store may hold (`a//b`, `x/../y`: S3 takes any name) was planted by production;
    // it stays, named in the log, and does not stop the snapshot's real objects from going.
    let (planted, objects): (Vec<_>, Vec<_>) = objects
        .into_iter()
        .partition(|o| crate::store::check_key(&o.key).is_err());
    for o in &planted {
        tracing::warn!(
            "{host}/{}: leaving {:?} in {}: not a key offsite writes (remove it by hand)",
            d.snapshot,
            o.key,
            store.location()
        );
    }
    let keys = objects
        .iter()
        .filter(|o| o.key == manifest)
        .chain(objects.iter().filter(|o| o.key != manifest));
    let mut n = 0;
    for o in keys {
        if let Err(e) = store.delete(&o.key) {
            let left = if n > 0 {
                "; the snapshot is now incomplete and a later prune removes the rest"
            } else {
                ""
            };
            return (
                n,
                Err(e.context(format!(
                    "deleting {host}/{} from {} ({n} of {} objects deleted{left})",
                    d.snapshot,
                    store.location(),
                    objects.len()
                ))),
            );
        }
        n += 1;
    }
    (n, Ok(()))
}

#[cfg(test)]
mod tests;
