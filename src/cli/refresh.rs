use std::process::ExitCode;

use anyhow::Result;

use super::{runtime, Cli};
use offsite::config::human;
use offsite::office::context::Office;
use offsite::office::refresh::{refresh_hosts, EntryReport, Status};

#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  every entry was refreshed
  1  an entry failed
  2  usage or config error, or an entry was refused by a guard (nothing of it was touched)

Guards: the target must not be a push source of this config or on a server in
office.production_servers, its name must match office.allow_pattern, and the snapshot must be the
newest one that passed `offsite verify` and hold the source.")]
pub struct Args {
    /// Only the entries whose target database is DATABASE.
    #[arg(long, value_name = "DATABASE")]
    pub only: Option<String>,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let office = Office::load(cli.load_config()?)?;
    // A prune running meanwhile could delete the snapshot being restored.
    let _lock = office.lock()?;
    super::signals::install("refresh")?;
    let rt = runtime()?;
    run_with(cli, &office, &rt, a, None)
}

/// The work of `refresh` (of the entries from `host` only, when given), for a caller that holds
/// the office lock.
pub fn run_with(
    cli: &Cli,
    office: &Office,
    rt: &tokio::runtime::Runtime,
    a: &Args,
    host: Option<&str>,
) -> Result<ExitCode> {
    let report = refresh_hosts(office, rt.handle(), a.only.as_deref(), host, super::now()?)?;
    if let Some(sig) = offsite::interrupt::received() {
        for e in &report.entries {
            eprintln!("{}", describe(e));
        }
        // Each entry's restore goes into a new database, swapped in by one transaction (or one
        // RENAME TABLE): a target is the old database or the new one, never half.
        return Err(anyhow::anyhow!(
            "refresh interrupted by {sig}: the entries not refreshed keep their old database"
        ));
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for e in &report.entries {
            eprintln!("{}", describe(e));
        }
    }
    Ok(ExitCode::from(report.exit_code))
}

fn describe(e: &EntryReport) -> String {
    let what = format!(
        "{} on {} from {}:{}",
        e.database, e.server, e.host, e.source
    );
    match e.status {
        Status::Refreshed => {
            let post = if e.post_sql.is_empty() {
                "no post_sql configured".to_string()
            } else {
                let files: Vec<String> =
                    e.post_sql.iter().map(|p| p.display().to_string()).collect();
                format!(
                    "post_sql ran ({:.1}s): {}",
                    e.post_sql_seconds,
                    files.join(", ")
                )
            };
            format!(
                "{what}: refreshed from snapshot {} (verified {}): {} of SQL restored{} in {:.1}s, {post}; {} ({:.1}s in all)",
                e.snapshot.as_deref().unwrap_or("?"),
                e.verified_at.as_deref().unwrap_or("?"),
                human(e.bytes),
                if e.masked { ", rows masked on the way" } else { "" },
                e.restore_seconds,
                if e.replaced { "replaced the old database" } else { "created it" },
                e.seconds
            )
        }
        Status::Refused => format!(
            "{what}: REFUSED by rule {}: {} (nothing was touched)",
            e.rule.as_deref().unwrap_or("?"),
            e.error.as_deref().unwrap_or("")
        ),
        Status::Failed => format!("{what}: FAILED: {}", e.error.as_deref().unwrap_or("")),
    }
}
