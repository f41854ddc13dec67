//! From verify and pull records to a [`Report`]: pick each host's newest verification, compare it
//! with the one before, and collect what deserves a warning.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::changes::{delta, percent, shrinkage};
use super::fmt::human_secs;
use super::model::*;
use super::HISTORY;
use crate::office::record::{DatabaseResult, PullHost, PullRecord, VerifyRecord};
use crate::office::scrub::{ScrubProblem, ScrubRun};

pub struct Inputs<'a> {
    /// Configured hosts, in report order.
    pub hosts: &'a [String],
    /// Every verify record per host, oldest snapshot first (as `record::load_all` returns them).
    pub records: &'a BTreeMap<String, Vec<VerifyRecord>>,
    pub pull: Option<&'a PullRecord>,
    /// The last scrub run, when one was recorded.
    pub scrub: Option<&'a ScrubRun>,
    pub max_age: Duration,
    pub now: OffsetDateTime,
}

pub fn build(inp: &Inputs) -> Result<Report> {
    let max_age_hours = inp.max_age.as_secs_f64() / 3600.0;
    let mut hosts = Vec::new();
    let mut warnings = Vec::new();
    let none = Vec::new();
    for host in inp.hosts {
        let records = inp.records.get(host).unwrap_or(&none);
        let pull = inp
            .pull
            .and_then(|p| p.hosts.iter().find(|h| &h.host == host));
        let mut mine = Vec::new();
        hosts.push(host_report(
            host,
            records,
            pull,
            inp.now,
            max_age_hours,
            &mut mine,
        ));
        if let Some(run) = inp.scrub {
            scrub_warnings(host, run, &mut mine);
        }
        // Lost data first, passed-through notes last; the sort is stable within a kind.
        mine.sort_by_key(|w| w.kind);
        warnings.extend(mine);
    }
    let passing = hosts.iter().filter(|h| h.ok).count();
    Ok(Report {
        format: FORMAT.into(),
        version: VERSION,
        generated_at: inp.now.format(&Rfc3339)?,
        ok: !hosts.is_empty() && passing == hosts.len(),
        max_age_hours,
        summary: Summary {
            hosts: hosts.len(),
            passing,
            failing: hosts.len() - passing,
            warnings: warnings.len(),
        },
        pull: inp.pull.map(|p| PullSummary {
            ran_at: p.ran_at.clone(),
            ok: p.ok,
        }),
        hosts,
        warnings,
        scrub: inp.scrub.map(|run| scrub_summary(run, inp.now)),
    })
}

fn scrub_warnings(host: &str, run: &ScrubRun, out: &mut Vec<Warning>) {
    let mine = |list: &[ScrubProblem]| {
        list.iter()
            .filter(|p| p.host == host)
            .cloned()
            .collect::<Vec<_>>()
    };
    for p in mine(&run.lost) {
        out.push(Warning {
            kind: WarningKind::Lost,
            host: host.to_string(),
            database: None,
            table: None,
            message: format!(
                "{} is bad in the offsite copy and cannot be fetched good from the store: {}",
                p.key, p.problem
            ),
        });
    }
    for p in mine(&run.repaired) {
        out.push(Warning {
            kind: WarningKind::Repaired,
            host: host.to_string(),
            database: None,
            table: None,
            message: format!(
                "{} was bad in the offsite copy (check the disk) and was fetched again from the store: {}",
                p.key, p.problem
            ),
        });
    }
}

fn scrub_summary(run: &ScrubRun, now: OffsetDateTime) -> ScrubSummary {
    let object = |p: &ScrubProblem| ScrubObject {
        host: p.host.clone(),
        key: p.key.clone(),
        problem: p.problem.clone(),
    };
    ScrubSummary {
        ran_at: run.ran_at.clone(),
        age_hours: parse_time(&run.ran_at)
            .map(|t| (now - t).as_seconds_f64() / 3600.0)
            .unwrap_or(0.0),
        ok: run.ok,
        scrub_days: run.scrub_days,
        objects: run.objects,
        bytes: run.bytes,
        checked_objects: run.checked_objects,
        checked_bytes: run.checked_bytes,
        covered_objects: run.covered_objects,
        coverage_percent: run.coverage_percent,
        never_checked: run.never_checked,
        oldest_check_hours: run.oldest_check_hours,
        repaired: run.repaired.iter().map(object).collect(),
        lost: run.lost.iter().map(object).collect(),
        errors: run.errors.clone(),
    }
}

fn host_report(
    host: &str,
    records: &[VerifyRecord],
    pull: Option<&PullHost>,
    now: OffsetDateTime,
    max_age_hours: f64,
    warnings: &mut Vec<Warning>,
) -> HostReport {
    let latest_rec = records.last();
    let prev_rec = records.len().checked_sub(2).and_then(|i| records.get(i));
    let warn =
        |w: &mut Vec<Warning>, kind, database: Option<&str>, table: Option<&str>, message| {
            w.push(Warning {
                kind,
                host: host.to_string(),
                database: database.map(str::to_string),
                table: table.map(str::to_string),
                message,
            })
        };

    if let Some(err) = pull.and_then(|p| p.error.as_deref()) {
        warn(
            warnings,
            WarningKind::Pull,
            None,
            None,
            format!("pull failed: {err}"),
        );
    }

    if let Some(p) = pull {
        for q in &p.quarantined {
            warn(
                warnings,
                WarningKind::Quarantined,
                None,
                None,
                format!(
                    "snapshot {} is QUARANTINED: {}; it is never verified as current nor counted by retention, and is kept as evidence until a person deletes it (offsite prune --quarantined --yes)",
                    q.snapshot, q.reason
                ),
            );
        }
        for i in &p.invalid {
            warn(
                warnings,
                WarningKind::InvalidSignature,
                None,
                None,
                format!(
                    "snapshot {} was not pulled: {}; it is never restored or verified (someone with put access to the store wrote it, or the host's certificate changed)",
                    i.snapshot, i.reason
                ),
            );
        }
        for r in &p.recipients {
            warn(
                warnings,
                WarningKind::Recipients,
                None,
                None,
                format!(
                    "snapshot {} is {}: whoever holds that key can read it; check the host's encryption.recipients",
                    r.snapshot, r.reason
                ),
            );
        }
        for f in &p.floods {
            warn(
                warnings,
                WarningKind::Flood,
                None,
                None,
                format!(
                    "{host} committed {} snapshots on {} (office.max_snapshots_per_day: {}): a misconfigured timer, or a hacked host trying to push history out of retention; prune deletes at most office.max_prune_fraction per run",
                    f.snapshots, f.day, f.max
                ),
            );
        }
    }

    let newest_complete = newest_complete(latest_rec, pull, now, max_age_hours);
    if let Some(n) = newest_complete.as_ref().filter(|n| !n.fresh) {
        let what = n
            .snapshot
            .as_deref()
            .unwrap_or("the newest complete snapshot");
        warn(
            warnings,
            WarningKind::Stale,
            None,
            None,
            format!(
                "newest complete snapshot {what} is {} old (max {}): check that push still runs on {host}",
                hours(n.age_hours),
                hours(max_age_hours)
            ),
        );
    }

    let incomplete: Vec<IncompleteSnapshot> = pull
        .map(|p| {
            p.incomplete
                .iter()
                .map(|i| IncompleteSnapshot {
                    snapshot: i.snapshot.clone(),
                    age_hours: i.age_hours,
                    abandoned: i.abandoned,
                })
                .collect()
        })
        .unwrap_or_default();
    for i in incomplete.iter().filter(|i| i.abandoned) {
        warn(
            warnings,
            WarningKind::Abandoned,
            None,
            None,
            format!(
                "snapshot {} was abandoned: objects but no manifest for {}; its push died (office retention removes it)",
                i.snapshot,
                hours(i.age_hours)
            ),
        );
    }

    let latest = latest_rec.map(|r| verification(r, prev_rec));
    if let Some(r) = latest_rec {
        for w in &r.warnings {
            warn(warnings, WarningKind::Record, None, None, w.clone());
        }
        for d in &r.databases {
            for w in &d.warnings {
                warn(
                    warnings,
                    WarningKind::Record,
                    Some(&d.source),
                    None,
                    w.clone(),
                );
            }
        }
    }
    if let (Some(cur), Some(prev)) = (latest_rec, prev_rec) {
        for (kind, db, table, msg) in shrinkage(cur, prev) {
            warn(warnings, kind, Some(&db), table.as_deref(), msg);
        }
    }

    let status = match &latest {
        None => Status::Unverified,
        Some(v) if passed(v) => Status::Pass,
        Some(_) => Status::Fail,
    };
    HostReport {
        host: host.to_string(),
        status,
        ok: status == Status::Pass,
        latest,
        previous: prev_rec.map(|p| SnapshotRef {
            snapshot: p.snapshot.clone(),
            snapshot_time: p.snapshot_time.clone(),
        }),
        newest_complete,
        incomplete,
        history: records
            .iter()
            .rev()
            .take(HISTORY)
            .map(|r| HistoryEntry {
                snapshot: r.snapshot.clone(),
                snapshot_time: r.snapshot_time.clone(),
                verified_at: r.verified_at.clone(),
                ok: r.ok,
                plain_bytes: r.plain_bytes,
                stored_bytes: r.stored_bytes,
                restore_seconds: restore_seconds(r),
                seconds: r.seconds,
            })
            .collect(),
    }
}

/// `ok` as recorded, and nothing inside contradicting it: a record that says ok next to a failed
/// database must not turn the report green.
fn passed(v: &Verification) -> bool {
    v.ok && v.errors.is_empty() && v.databases.iter().all(|d| d.ok) && v.trees.iter().all(|t| t.ok)
}

fn restore_seconds(r: &VerifyRecord) -> f64 {
    r.databases.iter().map(|d| d.restore_seconds).sum::<f64>()
        + r.trees.iter().map(|t| t.seconds).sum::<f64>()
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn hours(h: f64) -> String {
    human_secs(h * 3600.0)
}

/// The later of what pull saw in the source store and what verify last checked: either may be
/// behind the other (a failed pull, a verify run straight from S3).
fn newest_complete(
    latest: Option<&VerifyRecord>,
    pull: Option<&PullHost>,
    now: OffsetDateTime,
    max_age_hours: f64,
) -> Option<NewestComplete> {
    let from_pull = pull.and_then(|p| {
        let t = p.newest_complete_time.as_deref()?;
        Some((
            parse_time(t)?,
            t,
            p.newest_complete.clone(),
            TimeSource::Pull,
        ))
    });
    let from_verify = latest.and_then(|r| {
        Some((
            parse_time(&r.snapshot_time)?,
            r.snapshot_time.as_str(),
            Some(r.snapshot.clone()),
            TimeSource::Verify,
        ))
    });
    let (at, text, snapshot, source) = match (from_pull, from_verify) {
        (Some(p), Some(v)) if v.0 > p.0 => v,
        (Some(p), _) => p,
        (None, v) => v?,
    };
    let age_hours = (now - at).as_seconds_f64() / 3600.0;
    Some(NewestComplete {
        snapshot,
        snapshot_time: text.to_string(),
        age_hours,
        fresh: age_hours <= max_age_hours,
        source,
    })
}

fn verification(r: &VerifyRecord, prev: Option<&VerifyRecord>) -> Verification {
    let prev_db = |source: &str| prev.and_then(|p| p.databases.iter().find(|d| d.source == source));
    Verification {
        snapshot: r.snapshot.clone(),
        snapshot_time: r.snapshot_time.clone(),
        verified_at: r.verified_at.clone(),
        verified_from: r.verified_from.clone(),
        ok: r.ok,
        seconds: r.seconds,
        restore_seconds: restore_seconds(r),
        signer: r.signer.clone(),
        stored_bytes: r.stored_bytes,
        plain_bytes: r.plain_bytes,
        freshness: Freshness {
            age_hours: r.freshness.age_hours,
            max_age_hours: r.freshness.max_age_hours,
            ok: r.freshness.ok,
        },
        databases: r
            .databases
            .iter()
            .map(|d| database(d, prev_db(&d.source)))
            .collect(),
        trees: r
            .trees
            .iter()
            .map(|t| TreeReport {
                name: t.name.clone(),
                ok: t.ok,
                files: t.files,
                bytes: t.bytes,
                seconds: t.seconds,
                error: t.error.clone(),
            })
            .collect(),
        errors: r.errors.clone(),
        warnings: r.warnings.clone(),
        locked_until: r.locked_until.clone(),
    }
}

fn database(d: &DatabaseResult, prev: Option<&DatabaseResult>) -> DatabaseReport {
    DatabaseReport {
        source: d.source.clone(),
        engine: d.engine.clone(),
        ok: d.ok,
        restore_seconds: d.restore_seconds,
        stored_bytes: d.stored_bytes,
        plain_bytes: d.plain_bytes,
        change: prev.map(|p| SizeChange {
            previous_plain_bytes: p.plain_bytes,
            delta_bytes: delta(p.plain_bytes, d.plain_bytes),
            delta_percent: percent(p.plain_bytes, d.plain_bytes),
        }),
        tables: d
            .tables
            .iter()
            .map(|(name, rows)| {
                let previous = prev.and_then(|p| p.tables.get(name)).map(|t| t.expected);
                TableReport {
                    name: name.clone(),
                    expected: rows.expected,
                    restored: rows.restored,
                    in_dump: rows.in_dump,
                    ok: rows.ok(),
                    previous,
                    delta_rows: previous.map(|p| delta(p, rows.expected)),
                }
            })
            .collect(),
        checks: d
            .checks
            .iter()
            .map(|c| CheckReport {
                sql: c.sql.clone(),
                expect: c.expect.clone(),
                value: c.value.clone(),
                ok: c.ok,
                error: c.error.clone(),
            })
            .collect(),
        error: d.error.clone(),
        warnings: d.warnings.clone(),
        restored_as: d.restored_as.clone(),
    }
}
