use std::process::ExitCode;

use anyhow::Result;

use super::{now, runtime, Cli, EXIT_FAILED};
use offsite::config::human;
use offsite::office::context::Office;
use offsite::office::prune::{self, Options, Report, Status};

const PRUNE_HELP: &str = "\
office.retention applies to the configured store (S3); office.offsite_retention, else
office.retention, to the offsite copy. Rules (restic's, in UTC): keep_last N newest;
keep_hourly/daily/weekly/monthly/yearly N: the newest snapshot of each of the N most recent
hours/days/ISO weeks/months/years that have one; keep_within D: everything younger than D.

Only complete snapshots meet the policy. Incomplete ones (no manifest) are removed once older
than 48h. The newest verified snapshot of a host, and its newest complete one, are never
deleted. Every store is listed before anything is deleted: if a listing fails, nothing is
deleted anywhere; if a store shows no snapshot of a host that the other store or a passed
verification knows, nothing of that host is deleted. Both exit 1.

Every time prune uses is trusted time: when the store received a snapshot's manifest (recorded
by pull in the office's ledger), never the time production claims in the id. A snapshot whose
claim does not fit (office.clock_tolerance) is QUARANTINED: never counted by any rule, never the
reason to delete anything, kept as evidence until you delete it with --quarantined --yes.
One run deletes at most office.max_prune_fraction of a host's complete snapshots, and never a
snapshot that was the newest verified one within keep_within (a week when unset); --force
lifts both (a flood of snapshots from a hacked host must not push history out in one night).

File-tree incrementals point into older snapshots' volumes: a snapshot a kept one needs is kept
too (shown as needed by ...), whatever the policy says. The kept snapshots' manifests are read
for this; one that cannot be read stops every deletion of its host (exit 1).

Exit codes: 0 done, 1 a listing or deletion failed (or the alarm above), 2 usage/config error.";

#[derive(clap::Args)]
#[command(after_help = PRUNE_HELP)]
pub struct Args {
    /// Show what would be deleted, and why each kept snapshot is kept; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only this host (one of office.hosts).
    #[arg(long)]
    pub host: Option<String>,
    /// Delete beyond office.max_prune_fraction, and snapshots that were recently the newest
    /// verified: for a policy you just made stricter, after reading a dry run.
    #[arg(long)]
    pub force: bool,
    /// Delete the quarantined snapshots (and nothing else), in both stores. Needs --yes: they are
    /// evidence of a forged or misdated push.
    #[arg(long)]
    pub quarantined: bool,
    /// Confirms --quarantined.
    #[arg(long, requires = "quarantined")]
    pub yes: bool,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let office = Office::load(cli.load_config()?)?;
    super::signals::install("prune")?;
    let rt = runtime()?;
    // A pull writing into the offsite copy, or reading a snapshot from S3, must not see it vanish.
    // A dry run deletes nothing and so may run beside them.
    let _lock = if a.dry_run {
        None
    } else {
        Some(office.lock_for(a.host.as_deref())?)
    };
    run_with(cli, &office, &rt, a)
}

/// The work of `prune`, for a caller that holds the office lock.
pub fn run_with(
    cli: &Cli,
    office: &Office,
    rt: &tokio::runtime::Runtime,
    a: &Args,
) -> Result<ExitCode> {
    let hosts = office.hosts(a.host.as_deref())?;
    if a.quarantined && !a.yes && !a.dry_run {
        return Err(offsite::error::usage(
            "--quarantined deletes evidence of a forged or misdated push: look at `offsite snapshots` and the report first, then add --yes (or --dry-run to see the plan)",
        ));
    }
    let now = now()?;
    let targets = prune::targets(office, rt.handle())?;
    let o = &office.office;
    let protect_window = [&o.retention, &o.offsite_retention]
        .into_iter()
        .flatten()
        .filter_map(|r| r.keep_within)
        .max()
        .unwrap_or(std::time::Duration::from_secs(7 * 86_400));
    let known = office.judge(offsite::snapshot::trust::Origin::Copy)?.known;
    // Rule 12: the days each host flooded on, from the ledger pull keeps.
    let mut flood_days = std::collections::BTreeMap::new();
    for h in &hosts {
        let l = offsite::office::ledger::Ledger::load(&office.offsite_dir, h)?;
        let days: Vec<time::Date> = l
            .flood_days(now, o.max_snapshots_per_day)
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        flood_days.insert(h.clone(), days);
    }
    let report = prune::prune(
        &targets,
        &hosts,
        &office.offsite_dir,
        &Options {
            dry_run: a.dry_run,
            now,
            dependencies: &prune::ManifestDependencies { office },
            known: &known,
            tolerance: time::Duration::try_from(o.clock_tolerance).unwrap_or(time::Duration::HOUR),
            max_fraction: o.max_prune_fraction,
            force: a.force,
            protect_window: time::Duration::try_from(protect_window)
                .unwrap_or(time::Duration::WEEK),
            quarantined: a.quarantined,
            flood_days: &flood_days,
            abandon_after: time::Duration::try_from(o.abandon_after)
                .unwrap_or(time::Duration::hours(48)),
        },
    );
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report, o.abandon_after);
    }
    print_errors(&report);
    if let Some(sig) = offsite::interrupt::received() {
        // Deleting stops between snapshots; a snapshot is deleted manifest first, so one cut short
        // is incomplete and the next prune removes the rest.
        return Err(anyhow::anyhow!(
            "prune interrupted by {sig}: the snapshots not yet deleted are kept; the next prune goes on"
        ));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

fn age(h: Option<f64>) -> String {
    match h {
        None => "?".into(),
        Some(h) if h < 48.0 => format!("{h:.0}h"),
        Some(h) => format!("{:.0}d", h / 24.0),
    }
}

fn objects(n: usize) -> String {
    if n == 1 {
        "1 object".into()
    } else {
        format!("{n} objects")
    }
}

fn print_human(r: &Report, abandon_after: std::time::Duration) {
    if r.dry_run {
        println!("prune at {} (dry run: nothing is deleted)", r.now);
    } else {
        println!("prune at {}", r.now);
    }
    for s in &r.stores {
        println!(
            "\n{} {}: {} ({})",
            s.name, s.location, s.retention, s.retention_key
        );
        if s.hosts.is_empty() {
            if let Some(e) = &s.error {
                println!("  listing failed: {e}");
            }
            continue;
        }
        let (mut gone, mut gone_objects, mut gone_bytes, mut kept) = (0, 0, 0, 0);
        for h in &s.hosts {
            let mut lines: Vec<(&str, String)> = Vec::new();
            for k in &h.keep {
                let mut why: Vec<String> = k
                    .reasons
                    .iter()
                    .map(|r| r.describe(abandon_after))
                    .collect();
                if !k.needed_by.is_empty() {
                    why.push(format!("needed by {}", k.needed_by.join(", ")));
                }
                let state = if k.complete { "" } else { " incomplete," };
                lines.push((
                    &k.snapshot,
                    format!(
                        "keep          {} old,{state} {}",
                        age(k.age_hours),
                        why.join(", ")
                    ),
                ));
            }
            kept += h.keep.len();
            for d in &h.delete {
                let verb = match d.status {
                    Status::Planned => "would delete",
                    Status::Deleted => "deleted",
                    Status::Failed => "FAILED",
                    Status::Skipped => "not deleted",
                };
                if d.status == Status::Deleted || d.status == Status::Planned {
                    gone += 1;
                    gone_objects += if d.status == Status::Deleted {
                        d.deleted_objects
                    } else {
                        d.objects
                    };
                    gone_bytes += d.bytes;
                }
                lines.push((
                    &d.snapshot,
                    format!(
                        "{verb:<13} {} old, {}, {}: {}",
                        age(d.age_hours),
                        objects(d.objects),
                        human(d.bytes),
                        d.reason.describe(abandon_after)
                    ),
                ));
            }
            lines.sort_by(|a, b| b.0.cmp(a.0));
            for (id, line) in lines {
                println!("  {}/{id}  {line}", h.host);
            }
            if let Some(e) = &h.error {
                println!("  {}: nothing deleted: {e}", h.host);
            }
            for n in &h.notes {
                println!("  {}: {n}", h.host);
            }
            for l in &h.locks {
                use offsite::office::prune::lock::LockStatus;
                let state = match l.status {
                    LockStatus::Planned => "would extend the lock".to_string(),
                    LockStatus::Extended => {
                        format!("lock extended ({} object(s))", l.extended_objects)
                    }
                    LockStatus::Held => "locked long enough already".to_string(),
                    LockStatus::Failed => format!(
                        "lock NOT extended: {}",
                        l.error.as_deref().unwrap_or("failed")
                    ),
                    LockStatus::Skipped => "lock not extended (skipped)".to_string(),
                };
                println!(
                    "  {}/{}  {state}: until {} ({})",
                    h.host, l.snapshot, l.until, l.rule
                );
            }
            if !h.audit_canaries_removed.is_empty() {
                println!(
                    "  {}: removed {} offsite audit canary object(s): this credential can delete",
                    h.host,
                    h.audit_canaries_removed.len()
                );
            }
        }
        let verb = if r.dry_run { "would delete" } else { "deleted" };
        println!(
            "  {}: {verb} {gone} snapshots ({}, {}), kept {kept}",
            s.name,
            objects(gone_objects),
            human(gone_bytes)
        );
    }
}

fn print_errors(r: &Report) {
    let mut seen = std::collections::BTreeSet::new();
    for s in &r.stores {
        if let Some(e) = &s.error {
            eprintln!("error: {} {}: {e}", s.name, s.location);
        }
        // The same alarm is on the host in every store: say it once.
        for e in s.hosts.iter().filter_map(|h| h.error.as_ref()) {
            if seen.insert(e) {
                eprintln!("error: {e}");
            }
        }
    }
    for e in &r.errors {
        eprintln!("error: {e}");
    }
}
