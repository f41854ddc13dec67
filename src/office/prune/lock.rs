//! Object Lock that follows retention (`office.retention.lock`).
//!
//! push locks every object for `store.s3.object_lock.days` when it writes it: long enough that a
//! stolen credential cannot delete last night's backup, short enough not to pin every nightly
//! snapshot for years. What deserves a longer lock is decided later, by the policy: a snapshot
//! kept as a monthly should be as undeletable as it is kept. So prune, for every snapshot a rule
//! keeps, extends its objects' retain-until to the snapshot's trusted time (the store's, never
//! production's claim) plus that rule's lock, taking the longest rule that keeps it. A lock is
//! never shortened: an object already locked longer is left alone.
//!
//! Order matters for the next run's cost: the data objects are extended first and the manifest
//! last, so a manifest locked long enough means the whole snapshot is, and the next run reads one
//! retention per kept snapshot instead of one per object.

use std::time::Duration;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::policy::Rule;
use super::{HostPlan, KeepReason};
use crate::config::RetentionLock;
use crate::snapshot::list::SnapshotInfo;
use crate::snapshot::MANIFEST_NAME;
use crate::store::AdminStore;

/// A snapshot claiming more parents than this passes its lock to none of them.
pub const MAX_PARENTS: usize = 64;

/// One kept snapshot whose lock the policy asks to reach `until`.
#[derive(Debug, Clone, Serialize)]
pub struct LockPlan {
    pub snapshot: String,
    /// The rule whose lock is the longest (`keep_monthly`), or `needed by ID` for a snapshot a
    /// locked incremental builds on.
    pub rule: String,
    pub until: String,
    #[serde(skip)]
    pub until_time: OffsetDateTime,
    /// The manifest's retain-until before this run, when the store said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    pub status: LockStatus,
    /// Objects whose lock this run extended.
    pub extended_objects: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl LockPlan {
    fn new(snapshot: &str, rule: String, until: OffsetDateTime) -> Self {
        Self {
            snapshot: snapshot.to_string(),
            rule,
            until: rfc(until),
            until_time: until,
            before: None,
            status: LockStatus::Planned,
            extended_objects: 0,
            error: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockStatus {
    /// Dry run: would be extended.
    Planned,
    Extended,
    /// Locked at least that long already.
    Held,
    Failed,
    Skipped,
}

fn tier(lock: &RetentionLock, rule: Rule) -> Option<Duration> {
    match rule {
        Rule::KeepLast => lock.last,
        Rule::KeepHourly => lock.hourly,
        Rule::KeepDaily => lock.daily,
        Rule::KeepWeekly => lock.weekly,
        Rule::KeepMonthly => lock.monthly,
        Rule::KeepYearly => lock.yearly,
        Rule::KeepWithin => lock.within,
    }
}

fn rfc(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// The locks `plan`'s kept snapshots should have. A snapshot that a locked one depends on (an
/// incremental's parent) gets at least its dependant's lock: a locked incremental is no use without
/// the volumes it points into.
pub fn plan_locks(
    plan: &HostPlan,
    snaps: &[SnapshotInfo],
    lock: &RetentionLock,
    now: OffsetDateTime,
) -> Vec<LockPlan> {
    let mut out: Vec<LockPlan> = Vec::new();
    for k in &plan.keep {
        let Some(t) = snaps
            .iter()
            .find(|s| s.id == k.snapshot && s.complete)
            .and_then(|s| s.trusted)
        else {
            continue;
        };
        let best = k
            .reasons
            .iter()
            .filter_map(|r| match r {
                // The newest snapshot opens a new hour, day, week, month and year, so every
                // calendar rule keeps it tonight; only once its period has closed is it that
                // period's snapshot for good. Locking it earlier would lock every nightly
                // snapshot for the longest tier, irrevocably in compliance mode.
                KeepReason::Rule(rule) if !super::policy::period_open(*rule, t, now) => {
                    tier(lock, *rule).map(|d| (d, rule.name().to_string()))
                }
                _ => None,
            })
            .max_by_key(|(d, _)| *d);
        let Some((d, rule)) = best else { continue };
        let Ok(d) = time::Duration::try_from(d) else {
            continue;
        };
        out.push(LockPlan::new(&k.snapshot, rule, t.saturating_add(d)));
    }
    // Parents last-longest: a kept snapshot needed by locked ones is locked as long as they are.
    // Which snapshots a snapshot needs is its manifest's claim, signed by a host that may be
    // hacked: one forged snapshot "needing" every older one would pin the whole history for its
    // lock. A real chain needs a handful (a full and the incrementals since, per tree); a
    // snapshot claiming more than MAX_PARENTS passes its lock to none of them.
    let parents_of = |child: &str| {
        plan.keep
            .iter()
            .filter(|k| k.needed_by.iter().any(|c| c == child))
            .count()
    };
    let locked: Vec<(OffsetDateTime, String)> = out
        .iter()
        .filter(|l| parents_of(&l.snapshot) <= MAX_PARENTS)
        .map(|l| (l.until_time, l.snapshot.clone()))
        .collect();
    for k in &plan.keep {
        let needing = locked
            .iter()
            .filter(|(_, child)| k.needed_by.contains(child))
            .max_by_key(|(until, _)| *until)
            .cloned();
        let Some((until, by)) = needing else { continue };
        match out.iter_mut().find(|l| l.snapshot == k.snapshot) {
            Some(own) if own.until_time >= until => {}
            Some(own) => {
                own.until_time = until;
                own.until = rfc(until);
                own.rule = format!("needed by {by}");
            }
            None => out.push(LockPlan::new(&k.snapshot, format!("needed by {by}"), until)),
        }
    }
    out
}

/// Extends one snapshot's objects' locks to `l.until_time`, data objects first, manifest last.
pub fn apply(store: &dyn AdminStore, host: &str, l: &mut LockPlan) {
    let dir = crate::snapshot::dir(host, &l.snapshot);
    let manifest = format!("{dir}{MANIFEST_NAME}");
    let before = match store.lock_until(&manifest) {
        Ok(b) => b,
        Err(e) => {
            l.status = LockStatus::Failed;
            l.error = Some(format!("{e:#}"));
            return;
        }
    };
    l.before = before.map(rfc);
    if before.is_some_and(|b| b >= l.until_time) {
        l.status = LockStatus::Held;
        return;
    }
    let objects = match store.as_store().list(&dir) {
        Ok(o) => o,
        Err(e) => {
            l.status = LockStatus::Failed;
            l.error = Some(format!("{e:#}"));
            return;
        }
    };
    let (manifests, data): (Vec<_>, Vec<_>) = objects.into_iter().partition(|o| o.key == manifest);
    // An object that fails (a key production planted that the store will not take a retention
    // for) does not stop the others; the manifest, extended last, then stays as it was so that
    // the next run tries again, and the failure is reported.
    let mut errors = Vec::new();
    for o in &data {
        let current = match store.lock_until(&o.key) {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("{e:#}"));
                continue;
            }
        };
        if current.is_some_and(|c| c >= l.until_time) {
            continue;
        }
        match store.extend_lock(&o.key, l.until_time) {
            Ok(()) => l.extended_objects += 1,
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        l.status = LockStatus::Failed;
        l.error = Some(format!(
            "{} object(s) not extended (the manifest keeps its lock until they are): {}",
            errors.len(),
            errors.join("; ")
        ));
        return;
    }
    if !manifests.is_empty() {
        if let Err(e) = store.extend_lock(&manifest, l.until_time) {
            l.status = LockStatus::Failed;
            l.error = Some(format!("{e:#}"));
            return;
        }
        l.extended_objects += 1;
    }
    l.status = LockStatus::Extended;
}
