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
pub fn plan_locks(plan: &HostPlan, snaps: &[SnapshotInfo], lock: &RetentionLock) -> Vec<LockPlan> {
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
                KeepReason::Rule(rule) => tier(lock, *rule).map(|d| (d, rule.name().to_string())),
                _ => None,
            })
            .max_by_key(|(d, _)| *d);
        let Some((d, rule)) = best else { continue };
        let Ok(d) = time::Duration::try_from(d) else {
            continue;
        };
        let until = t.saturating_add(d);
        out.push(LockPlan {
            snapshot: k.snapshot.clone(),
            rule,
            until: rfc(until),
            until_time: until,
            before: None,
            status: LockStatus::Planned,
            extended_objects: 0,
            error: None,
        });
    }
    // Parents last-longest: a kept snapshot needed by locked ones is locked as long as they are.
    for k in &plan.keep {
        let needing = out
            .iter()
            .filter(|l| k.needed_by.contains(&l.snapshot))
            .max_by_key(|l| l.until_time)
            .map(|l| (l.until_time, l.snapshot.clone()));
        let Some((until, by)) = needing else { continue };
        match out.iter_mut().find(|l| l.snapshot == k.snapshot) {
            Some(own) if own.until_time >= until => {}
            Some(own) => {
                own.until_time = until;
                own.until = rfc(until);
                own.rule = format!("needed by {by}");
            }
            None => out.push(LockPlan {
                snapshot: k.snapshot.clone(),
                rule: format!("needed by {by}"),
                until: rfc(until),
                until_time: until,
                before: None,
                status: LockStatus::Planned,
                extended_objects: 0,
                error: None,
            }),
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
    for o in data.iter().chain(&manifests) {
        let current = if o.key == manifest {
            before
        } else {
            match store.lock_until(&o.key) {
                Ok(c) => c,
                Err(e) => {
                    l.status = LockStatus::Failed;
                    l.error = Some(format!("{e:#}"));
                    return;
                }
            }
        };
        if current.is_some_and(|c| c >= l.until_time) {
            continue;
        }
        if let Err(e) = store.extend_lock(&o.key, l.until_time) {
            l.status = LockStatus::Failed;
            l.error = Some(format!("{e:#}"));
            return;
        }
        l.extended_objects += 1;
    }
    l.status = LockStatus::Extended;
}
