use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::{now, runtime, Cli, EXIT_FAILED};
use offsite::config::human;
use offsite::office::context::Office;
use offsite::office::report::{self, model::Status};
use offsite::snapshot::list::list;

const STATUS_HELP: &str = "\
One screen for the person on call, from what the office recorded (verify records, pull's ledger)
and the offsite copy, plus each newest snapshot's Object Lock when store.s3.object_lock is set. It
runs nothing and needs no key, so it is safe to run at any time, also while office runs.

Exit 0 when every host's newest verification passed and is younger than office.max_age, and its
newest snapshot too; 1 when anything is stale or failing (the lines under the host say what).";

#[derive(clap::Args)]
#[command(after_help = STATUS_HELP)]
pub struct Args {
    /// Only this host (one of office.hosts).
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Serialize)]
struct HostStatus {
    host: String,
    ok: bool,
    /// The newest complete snapshot the office knows of, and its age.
    last_push: Option<String>,
    last_push_age_hours: Option<f64>,
    /// `pass`, `fail`, or `unverified`.
    verify: &'static str,
    verified_snapshot: Option<String>,
    verified_at: Option<String>,
    verify_age_hours: Option<f64>,
    /// In the offsite copy.
    snapshots: usize,
    bytes: u64,
    /// The newest snapshot's Object Lock in the store, when the store has one.
    locked_until: Option<String>,
    problems: Vec<String>,
    warnings: Vec<String>,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let office = Office::load(cli.load_config()?)?;
    let hosts = office.hosts(a.host.as_deref())?;
    let now = now()?;
    let o = &office.office;
    let r = report::load(&office.offsite_dir, &hosts, o.max_age, now)?;
    let max_age_hours = o.max_age.as_secs_f64() / 3600.0;
    // The lock is the store's: read it only where the config says the bucket has one.
    let locking =
        matches!(&office.cfg.store, offsite::config::StoreConfig::S3(s) if s.object_lock.is_some());
    let rt = runtime()?;
    let store = if locking {
        Some(offsite::store::open(&office.cfg, rt.handle())?)
    } else {
        None
    };

    let mut rows = Vec::new();
    for h in &r.hosts {
        let mut problems = Vec::new();
        let copy = list(office.offsite.as_ref(), Some(&h.host)).unwrap_or_else(|e| {
            problems.push(format!("listing the offsite copy: {e:#}"));
            Vec::new()
        });
        let complete: Vec<_> = copy.iter().filter(|s| s.complete).collect();
        let (last_push, last_push_age_hours) = match &h.newest_complete {
            Some(n) => {
                if !n.fresh {
                    problems.push(format!(
                        "newest snapshot is {} old (office.max_age {})",
                        hours(n.age_hours),
                        hours(max_age_hours)
                    ));
                }
                (n.snapshot.clone(), Some(n.age_hours))
            }
            None => {
                problems.push("no complete snapshot known".to_string());
                (None, None)
            }
        };
        let verify = match h.status {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Unverified => "unverified",
        };
        let latest = h.latest.as_ref();
        match (h.status, latest) {
            (Status::Pass, Some(v)) if !v.freshness.ok => problems.push(format!(
                "the newest verified snapshot is {} old (office.max_age {})",
                hours(v.freshness.age_hours),
                hours(max_age_hours)
            )),
            (Status::Fail, Some(v)) => problems.push(format!(
                "verify of {} failed{}",
                v.snapshot,
                v.errors
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )),
            (Status::Fail, None) => problems.push("verify failed".to_string()),
            (Status::Unverified, _) => problems.push("never verified".to_string()),
            _ => {}
        }
        let verify_age_hours = latest.and_then(|v| {
            time::OffsetDateTime::parse(
                &v.verified_at,
                &time::format_description::well_known::Rfc3339,
            )
            .ok()
            .map(|t| (now - t).as_seconds_f64() / 3600.0)
        });
        // A verify that is interrupted every night records nothing: the last pass only ages.
        if let Some(age) = verify_age_hours.filter(|a| *a > max_age_hours) {
            problems.push(format!(
                "the last verification ran {} ago (office.max_age {})",
                hours(age),
                hours(max_age_hours)
            ));
        }
        let locked_until = match (&store, last_push.as_deref()) {
            (Some(store), Some(id)) => {
                let key = format!(
                    "{}{}",
                    offsite::snapshot::dir(&h.host, id),
                    offsite::snapshot::MANIFEST_NAME
                );
                match store.lock_until(&key) {
                    Ok(Some(t)) if t > now => t
                        .format(&time::format_description::well_known::Rfc3339)
                        .ok(),
                    Ok(t) => {
                        // store.s3.object_lock says every object is locked when written.
                        problems.push(match t {
                            Some(t) => format!(
                                "the newest snapshot {id} is no longer locked (its lock ended {})",
                                t.format(&time::format_description::well_known::Rfc3339)
                                    .unwrap_or_default()
                            ),
                            None => format!("the newest snapshot {id} has no Object Lock"),
                        });
                        None
                    }
                    Err(e) => {
                        problems.push(format!("reading the lock of {id}: {e:#}"));
                        None
                    }
                }
            }
            _ => None,
        };
        rows.push(HostStatus {
            host: h.host.clone(),
            ok: problems.is_empty(),
            last_push,
            last_push_age_hours,
            verify,
            verified_snapshot: latest.map(|v| v.snapshot.clone()),
            verified_at: latest.map(|v| v.verified_at.clone()),
            verify_age_hours,
            snapshots: complete.len(),
            bytes: complete.iter().map(|s| s.stored_bytes).sum(),
            locked_until,
            problems,
            warnings: r
                .warnings
                .iter()
                .filter(|w| w.host == h.host)
                .map(|w| w.message.clone())
                .collect(),
        });
    }
    let ok = rows.iter().all(|r| r.ok);
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "ok": ok, "hosts": rows }))?
        );
    } else {
        print!("{}", table(&rows));
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

fn hours(h: f64) -> String {
    offsite::config::human_duration(std::time::Duration::from_secs_f64(h.max(0.0) * 3600.0))
}

fn age(h: Option<f64>) -> String {
    h.map_or_else(|| "-".to_string(), hours)
}

fn table(rows: &[HostStatus]) -> String {
    let w = rows.iter().map(|r| r.host.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<4} {:<w$}  {:>9}  {:<10} {:>9}  {:>9} {:>10}  {}\n",
        "", "HOST", "LAST PUSH", "VERIFY", "VERIFIED", "SNAPSHOTS", "SIZE", "LOCKED UNTIL"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<4} {:<w$}  {:>9}  {:<10} {:>9}  {:>9} {:>10}  {}\n",
            if r.ok { "ok" } else { "FAIL" },
            r.host,
            age(r.last_push_age_hours),
            r.verify.to_uppercase(),
            age(r.verify_age_hours),
            r.snapshots,
            human(r.bytes),
            r.locked_until.as_deref().unwrap_or("-"),
        ));
        for p in &r.problems {
            out.push_str(&format!("       {}: {p}\n", r.host));
        }
        for wn in &r.warnings {
            out.push_str(&format!("       {}: warning: {wn}\n", r.host));
        }
    }
    out
}
