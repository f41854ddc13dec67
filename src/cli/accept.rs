use std::process::ExitCode;

use anyhow::Result;

use super::Cli;
use offsite::error::usage;
use offsite::office::context::Office;
use offsite::office::ledger::Ledger;

const ACCEPT_HELP: &str = "\
A snapshot is quarantined when what it claims does not fit what the store saw: its id or manifest
claims a time far from when the store received it, or its manifest was written again after the
office first saw it. That is what a forgery by a hacked host looks like, and also what one night of
a wrong clock on an honest host looks like. Look first (offsite snapshots, the report, the host's
clock and logs). If it is genuine, accept it: it then counts like any other snapshot, at the time
the store received it. If it is not, delete it with offsite prune --quarantined --yes.

A snapshot whose signature is invalid cannot be accepted.

Example:
  offsite accept 20261203T020000Z-1a2b --host web1 --yes";

#[derive(clap::Args)]
#[command(after_help = ACCEPT_HELP)]
pub struct Args {
    /// The quarantined snapshot's id.
    pub snapshot: String,
    /// Its host (one of office.hosts).
    #[arg(long)]
    pub host: String,
    /// Confirms that a person checked it.
    #[arg(long)]
    pub yes: bool,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let office = Office::load(cli.load_config()?)?;
    let _lock = office.lock()?;
    office.hosts(Some(&a.host))?;
    let mut ledger = Ledger::load(&office.offsite_dir, &a.host)?;
    let now = super::now()?;
    let entry = ledger.snapshots.get_mut(&a.snapshot).ok_or_else(|| {
        usage(format!(
            "the office's ledger has no snapshot {} of {}: pull records every snapshot it sees; run offsite pull first",
            a.snapshot, a.host
        ))
    })?;
    if !entry.valid() {
        return Err(usage(format!(
            "{}/{} is not validly signed by the host ({}): it cannot be accepted; delete it with offsite prune --quarantined --yes",
            a.host, a.snapshot, entry.signature
        )));
    }
    let Some(reason) = entry.quarantine.clone() else {
        eprintln!(
            "{}/{} is not quarantined: nothing to do",
            a.host, a.snapshot
        );
        return Ok(ExitCode::SUCCESS);
    };
    if !a.yes {
        return Err(usage(format!(
            "{}/{} is quarantined: {reason}\nadd --yes once you have checked that it is genuine",
            a.host, a.snapshot
        )));
    }
    entry.quarantine = None;
    // A person vouched for it as it is now: the rewrite check has nothing to compare against.
    entry.time_from = format!(
        "accepted at {} (was quarantined: {reason})",
        now.format(&time::format_description::well_known::Rfc3339)?
    );
    ledger.save(&office.offsite_dir)?;
    eprintln!(
        "{}/{} accepted: it counts from now on, at {} (the store's time)",
        a.host,
        a.snapshot,
        entry_time(&ledger, &a.snapshot)
    );
    Ok(ExitCode::SUCCESS)
}

fn entry_time(ledger: &Ledger, id: &str) -> String {
    ledger
        .snapshots
        .get(id)
        .map(|e| e.trusted_time.clone())
        .unwrap_or_default()
}
