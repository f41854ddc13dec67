use std::process::ExitCode;

use anyhow::Result;

use super::{runtime, Cli, EXIT_FAILED};
use offsite::config::human;
use offsite::office::context::Office;

#[derive(clap::Args)]
pub struct Args {
    /// Only this host (default: every host in office.hosts).
    #[arg(long)]
    pub host: Option<String>,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let office = Office::load(cli.load_config()?)?;
    // With --host, only that host is locked: pulls of other hosts may run meanwhile.
    let _lock = office.lock_for(a.host.as_deref())?;
    super::signals::install("pull")?;
    let rt = runtime()?;
    run_with(cli, &office, &rt, a)
}

/// The work of `pull`, for a caller that holds the office lock.
pub fn run_with(
    cli: &Cli,
    office: &Office,
    rt: &tokio::runtime::Runtime,
    a: &Args,
) -> Result<ExitCode> {
    let source = offsite::store::open(&office.cfg, rt.handle())?;
    let record =
        offsite::office::pull::pull(office, source.as_ref(), a.host.as_deref(), super::now()?)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        for h in &record.hosts {
            let status = if h.ok { "ok" } else { "FAILED" };
            eprintln!(
                "{}: {status}: {} snapshot(s) pulled, {} objects, {} ({} objects were already here)",
                h.host,
                h.pulled.len(),
                h.objects,
                human(h.bytes),
                h.skipped_objects
            );
            for i in &h.incomplete {
                let what = if i.abandoned {
                    "ABANDONED (its push died)"
                } else {
                    "incomplete (may be in progress)"
                };
                let unfinished = match i.unfinished_writes {
                    0 => String::new(),
                    n => format!(", {n} unfinished write(s)"),
                };
                eprintln!(
                    "  {}/{}: {what}, {:.0} h old, {}{unfinished}",
                    h.host,
                    i.snapshot,
                    i.age_hours,
                    human(i.bytes)
                );
            }
            if let Some(e) = &h.error {
                eprintln!("  error: {e}");
            }
        }
    }
    // A quarantine, a bad signature or a flood is an alarm for a person, every run until handled:
    // the pull itself may have worked, but this night's backups cannot be taken at face value.
    let mut alarm = false;
    for h in &record.hosts {
        for q in &h.quarantined {
            alarm = true;
            eprintln!("  {}/{}: QUARANTINED: {}", h.host, q.snapshot, q.reason);
        }
        for i in &h.invalid {
            alarm = true;
            eprintln!("  {}/{}: not pulled: {}", h.host, i.snapshot, i.reason);
        }
        for r in &h.recipients {
            // A warning, not an alarm: a new office key is a normal change, and a person decides.
            eprintln!("  {}/{}: warning: {}", h.host, r.snapshot, r.reason);
        }
        for f in &h.floods {
            alarm = true;
            eprintln!(
                "  {}: FLOOD: {} snapshots committed on {} (office.max_snapshots_per_day: {})",
                h.host, f.snapshots, f.day, f.max
            );
        }
    }
    Ok(if record.ok && !alarm {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}
