use std::process::ExitCode;

use anyhow::Result;

use super::{now, runtime, Cli, EXIT_WARNINGS};
use offsite::config::human;

#[derive(clap::Args)]
pub struct Args {
    /// Back up every file tree in full, starting a new chain (databases are always dumped whole).
    #[arg(long)]
    pub full: bool,
    /// When another push of this host is running, wait for it to finish instead of exiting 1.
    ///
    /// Without --wait, a second push exits 1 at once with "another push of HOST is running (pid N,
    /// since T)". One lock per host: <state_dir>/<host>.push.lock.
    #[arg(long)]
    pub wait: bool,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let cfg = cli.load_config()?;
    super::signals::install(&format!("push of {}", cfg.host))?;
    let rt = runtime()?;
    let store = offsite::store::open(&cfg, rt.handle())?;
    let progress = super::progress::for_stderr(!cli.quiet && !cli.json);
    let opts = offsite::push::PushOptions {
        full: a.full,
        now: now()?,
        wait: a.wait,
    };
    let s = offsite::push::push(&cfg, store, rt.handle(), progress.as_ref(), &opts)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        let ratio = if s.stored_bytes > 0 {
            s.plain_bytes as f64 / s.stored_bytes as f64
        } else {
            0.0
        };
        eprintln!(
            "snapshot {}/{} committed to {}: {} sources, {} read, {} stored (ratio {:.1}), {:.1}s",
            s.host,
            s.snapshot,
            s.store,
            s.sources.len(),
            human(s.plain_bytes),
            human(s.stored_bytes),
            ratio,
            s.seconds
        );
        for w in &s.warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(if s.warnings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_WARNINGS)
    })
}
