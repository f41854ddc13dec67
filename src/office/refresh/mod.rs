//! `offsite refresh`: restore the newest verified snapshot into each configured dev/test database,
//! run the post-refresh SQL (anonymization) there, then swap it in.
//!
//! Per `office.refresh` entry:
//! 1. [`guards::plan`] checks every rule before anything is touched: the target is no production
//!    database, its name matches `allow_pattern`, the post_sql files exist, and the newest snapshot
//!    that passed `verify` holds the source. A refusal touches nothing and counts as exit code 2.
//! 2. The engine module takes a per-target lock on the server, repairs what a killed earlier refresh
//!    left behind, restores into `<target>_offsite_new_<hex>` with [`restore_db`], runs post_sql
//!    there (developers never see the un-anonymized data), and swaps it in: [`swap_pg`] renames the
//!    two databases in one transaction, [`swap_mysql`] moves every table in one `RENAME TABLE`.
//!    Each module's doc says what a kill at each point leaves behind.
//!
//! One entry's failure does not stop the others; the exit code is the worst of them.
//! The caller holds the office lock ([`Office::lock`]): a prune meanwhile could delete the snapshot
//! being restored.

pub mod guards;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::Refresh;
use crate::db::{swap_mysql, swap_pg, Swapped, Target};
use crate::error::usage;
use crate::office::context::Office;
use crate::office::record::RestoredAs;
use crate::restore::db::{restore_db, DbTarget};
use crate::snapshot::manifest::Engine;
use crate::sql::ownership::Mapped;
use guards::{Checked, Plan};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Refreshed,
    Failed,
    Refused,
}

/// What happened to one `office.refresh` entry.
#[derive(Debug, Clone, Serialize)]
pub struct EntryReport {
    pub database: String,
    pub server: String,
    pub host: String,
    pub source: String,
    pub status: Status,
    /// For a refusal: the rule that refused (`production-source`, `allow-pattern`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The verified snapshot restored (or that would have been).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    /// Plain SQL bytes restored.
    pub bytes: u64,
    pub seconds: f64,
    pub restore_seconds: f64,
    pub post_sql_seconds: f64,
    /// post_sql files that ran, in order.
    pub post_sql: Vec<PathBuf>,
    /// An existing database was replaced (false: the target was created).
    pub replaced: bool,
    /// The role the dump was restored as; its owners, privileges and DEFINERs became that role's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_as: Option<RestoredAs>,
    /// The rows were masked with `office.masking` on their way to the server.
    pub masked: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefreshReport {
    pub ok: bool,
    pub exit_code: u8,
    pub entries: Vec<EntryReport>,
}

impl EntryReport {
    /// A failed entry that has done nothing yet.
    fn new(r: &Refresh) -> Self {
        Self {
            database: r.database.clone(),
            server: r.server.url.clone(),
            host: r.host.clone(),
            source: r.source.clone(),
            status: Status::Failed,
            rule: None,
            error: None,
            snapshot: None,
            verified_at: None,
            bytes: 0,
            seconds: 0.0,
            restore_seconds: 0.0,
            post_sql_seconds: 0.0,
            post_sql: Vec::new(),
            replaced: false,
            restored_as: None,
            masked: false,
        }
    }
}

impl Status {
    fn exit_code(self) -> u8 {
        match self {
            Status::Refreshed => 0,
            Status::Failed => 1,
            Status::Refused => 2,
        }
    }
}

/// Refreshes every configured entry (or those whose target database is `only`).
pub fn refresh(
    office: &Office,
    rt: &tokio::runtime::Handle,
    only: Option<&str>,
    now: time::OffsetDateTime,
) -> Result<RefreshReport> {
    refresh_hosts(office, rt, only, None, now)
}

/// [`refresh`], of the entries whose snapshots come from `host` only, when given (`office
/// --host`, which skips the step for a host without entries).
pub fn refresh_hosts(
    office: &Office,
    rt: &tokio::runtime::Handle,
    only: Option<&str>,
    host: Option<&str>,
    now: time::OffsetDateTime,
) -> Result<RefreshReport> {
    let all = &office.office.refresh;
    if all.is_empty() {
        return Err(usage(format!(
            "{}: office.refresh is empty: nothing to refresh",
            office.cfg.path.display()
        )));
    }
    let selected: Vec<&Refresh> = all
        .iter()
        .filter(|r| only.is_none_or(|o| r.database == o))
        .collect();
    let from_host = |r: &&Refresh| host.is_none_or(|h| r.host == h);
    let selected: Vec<&Refresh> = selected.into_iter().filter(from_host).collect();
    if selected.is_empty() {
        let names: Vec<&str> = all.iter().map(|r| r.database.as_str()).collect();
        return Err(usage(format!(
            "--only {}: no office.refresh entry has that database (configured: {})",
            only.unwrap_or_default(),
            names.join(", ")
        )));
    }
    // A server whose TLS settings or certificate are wrong is a config error (exit 2), found
    // before anything is restored.
    for r in &selected {
        if r.source.starts_with("postgres/") && r.server.url.starts_with("postgres") {
            rt.block_on(crate::db::pg::check_config(
                &r.server.url,
                r.server.password.as_ref(),
            ))
            .with_context(|| format!("office.refresh entry {}", r.database))?;
        }
    }
    let entries: Vec<EntryReport> = selected
        .into_iter()
        .map(|r| match crate::interrupt::received() {
            // After SIGINT/SIGTERM no further entry starts.
            Some(sig) => EntryReport {
                status: Status::Failed,
                error: Some(format!("not started: interrupted by {sig}")),
                ..EntryReport::new(r)
            },
            None => refresh_one(office, rt, r, now),
        })
        .collect();
    let exit_code = entries
        .iter()
        .map(|e| e.status.exit_code())
        .max()
        .unwrap_or(0);
    Ok(RefreshReport {
        ok: exit_code == 0,
        exit_code,
        entries,
    })
}

fn refresh_one(
    office: &Office,
    rt: &tokio::runtime::Handle,
    r: &Refresh,
    now: time::OffsetDateTime,
) -> EntryReport {
    let start = Instant::now();
    let mut report = EntryReport::new(r);
    match guards::plan(office, r, now) {
        Checked::Refused(refusal) => {
            report.status = Status::Refused;
            report.rule = Some(refusal.rule.to_string());
            report.error = Some(refusal.message);
            report.snapshot = refusal.snapshot;
        }
        Checked::Failed(e) => {
            report.error = Some(format!("{e:#}"));
        }
        Checked::Ok(plan) => {
            report.snapshot = Some(plan.snapshot.id.clone());
            report.verified_at = Some(plan.record.verified_at.clone());
            let what = format!("office.refresh {}:{} -> {}", r.host, r.source, r.database);
            let refused = match crate::db::privilege::refusal(rt, plan.engine, &r.server, &what) {
                Ok(None) => None,
                Ok(Some(why)) => Some((Status::Refused, Some("privileged-role"), why)),
                Err(e) if crate::error::is_usage(&e) => {
                    Some((Status::Refused, Some("config"), format!("{e:#}")))
                }
                Err(e) => Some((Status::Failed, None, format!("{e:#}"))),
            };
            if let Some((status, rule, why)) = refused {
                report.status = status;
                report.rule = rule.map(str::to_string);
                report.error = Some(why);
                report.seconds = start.elapsed().as_secs_f64();
                return report;
            }
            let mapped = Arc::new(Mapped::default());
            let outcome = run(office, rt, r, &plan, &mapped);
            let (owner_statements, privilege_statements, definers) = mapped.counts();
            report.restored_as = Some(RestoredAs {
                role: crate::db::role_in_url(plan.engine, &r.server.url),
                owner_statements,
                privilege_statements,
                definers,
            });
            match outcome {
                Ok(s) => {
                    report.status = Status::Refreshed;
                    report.bytes = s.bytes;
                    report.restore_seconds = s.restore_seconds;
                    report.post_sql_seconds = s.post_sql_seconds;
                    report.post_sql = r.post_sql.clone();
                    report.replaced = s.replaced;
                    report.masked = r.mask;
                }
                Err(e) => {
                    // A config error (TLS to the server failing its check, found at the first
                    // connection) counts as exit code 2, like a guard's refusal: the swap engines
                    // leave the target as it was on any failure.
                    if crate::mask::coverage::is_uncovered(&e) {
                        // strict masking: the new database is dropped, the target untouched.
                        report.status = Status::Refused;
                        report.rule = Some("masking-strict".into());
                    } else if crate::error::is_usage(&e) {
                        report.status = Status::Refused;
                        report.rule = Some("config".into());
                    }
                    report.error = Some(format!("{e:#}"));
                }
            }
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    report
}

fn run(
    office: &Office,
    rt: &tokio::runtime::Handle,
    r: &Refresh,
    plan: &Plan,
    mapped: &Arc<Mapped>,
) -> Result<Swapped> {
    let dir = plan.snapshot.dir();
    // The config check made sure that `mask: true` has rules for this source.
    let mask = match (&office.office.masking, r.mask) {
        (Some(m), true) => Some(
            m.for_source(&r.source)?
                .ok_or_else(|| usage(format!("office.masking has no rules for {}", r.source)))?,
        ),
        _ => None,
    };
    let restore = |database: &str| -> Result<u64> {
        tracing::info!(
            "restoring {} of {}/{} (verified {}) into {database}",
            r.source,
            r.host,
            plan.snapshot.id,
            plan.record.verified_at
        );
        let target = DbTarget {
            server_url: r.server.url.clone(),
            password: r.server.password.clone(),
            database: database.to_string(),
            replace: false,
            as_role: Some(mapped.clone()),
            mask: mask.clone(),
            load: Some(office.load_options()),
            tally: None,
        };
        restore_db(
            rt,
            office.offsite.as_ref(),
            &dir,
            &plan.manifest,
            &r.source,
            &office.decryption,
            &target,
        )
    };
    let target = Target {
        url: &r.server.url,
        password: r.server.password.as_ref(),
        database: &r.database,
        post_sql: &r.post_sql,
    };
    match plan.engine {
        Engine::Postgres => swap_pg::refresh(rt, &target, &restore),
        Engine::Mysql => swap_mysql::refresh(rt, &target, &restore),
    }
}

/// What `offsite masking check` found for one refresh entry: every column of the snapshot's dump
/// that refresh would restore, what it looks like and the rule that covers it.
#[derive(Debug, Serialize)]
pub struct CoverageReport {
    pub database: String,
    pub host: String,
    pub source: String,
    pub snapshot: Option<String>,
    pub columns: Vec<crate::mask::coverage::ColumnSeen>,
    /// Why the entry could not be checked (a guard refused, the snapshot could not be read).
    pub error: Option<String>,
}

impl CoverageReport {
    pub fn uncovered(&self) -> impl Iterator<Item = &crate::mask::coverage::ColumnSeen> {
        self.columns
            .iter()
            .filter(|c| c.looks_like.is_some() && c.rule.is_none())
    }
}

/// Reads the dump each refresh entry would restore (the newest verified snapshot) and lists its
/// columns against `office.masking`'s rules. Nothing is restored.
pub fn coverage(
    office: &Office,
    only: Option<&str>,
    now: time::OffsetDateTime,
) -> Vec<CoverageReport> {
    office
        .office
        .refresh
        .iter()
        .filter(|r| only.is_none_or(|d| d == r.database))
        .map(|r| {
            let mut report = CoverageReport {
                database: r.database.clone(),
                host: r.host.clone(),
                source: r.source.clone(),
                snapshot: None,
                columns: Vec::new(),
                error: None,
            };
            let plan = match guards::plan(office, r, now) {
                Checked::Ok(plan) => plan,
                Checked::Refused(refusal) => {
                    report.error = Some(format!(
                        "refused by rule {}: {}",
                        refusal.rule, refusal.message
                    ));
                    return report;
                }
                Checked::Failed(e) => {
                    report.error = Some(format!("{e:#}"));
                    return report;
                }
            };
            report.snapshot = Some(plan.snapshot.id.clone());
            let mask = match office
                .office
                .masking
                .as_ref()
                .map(|m| m.for_source(&r.source))
            {
                // Not strict here: the check lists every column, past the first uncovered one.
                Some(Ok(Some(m))) => Arc::new(m.listing()),
                Some(Err(e)) => {
                    report.error = Some(format!("{e:#}"));
                    return report;
                }
                _ => Arc::new(crate::mask::DbMask::observer(&r.source)),
            };
            let read = crate::restore::db::dump_to(
                office.offsite.as_ref(),
                &plan.snapshot.dir(),
                &plan.manifest,
                &r.source,
                &office.decryption,
                Some(mask.clone()),
                &mut std::io::sink(),
            );
            if let Err(e) = read {
                report.error = Some(format!("{e:#}"));
            }
            report.columns = mask
                .coverage
                .seen
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default();
            report
        })
        .collect()
}
