use std::process::ExitCode;

use anyhow::Result;

use super::{now, runtime, Cli, EXIT_WARNINGS};
use offsite::config::human;
use offsite::logtail::say;

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
    let ping = offsite::ping::Ping::new(cfg.notify.ping.as_deref(), "notify.ping");
    ping.start();
    let started = time::OffsetDateTime::now_utc();
    let result = run_push(cli, &cfg, a);
    let finished = time::OffsetDateTime::now_utc();
    if let Some(path) = &cfg.metrics_file {
        let committed = result.as_ref().ok().map(|(s, _)| s);
        // Every object is locked from when it was written; the first was written after `started`.
        let locked_until = match &cfg.store {
            offsite::config::StoreConfig::S3(s) => s
                .object_lock
                .as_ref()
                .map(|(_, days)| started + time::Duration::days(i64::from(*days))),
            offsite::config::StoreConfig::Local(_) => None,
        };
        let run = offsite::metrics::push::Run {
            committed,
            finished,
            locked_until,
        };
        if let Err(e) = offsite::metrics::push::record(path, &cfg.host, &run) {
            // The snapshot is what counts; the monitoring sees a stale file and alerts.
            tracing::warn!("{e:#}");
        }
        let push_keys = |role: &str| role.starts_with("encryption.");
        let keys: Vec<_> = offsite::keyring::key_expiries(&cfg)
            .into_iter()
            .filter(|k| push_keys(&k.role.entry()))
            .collect();
        if let Err(e) = offsite::metrics::keys::record(path, &keys, push_keys) {
            tracing::warn!("{e:#}");
        }
    }
    match result {
        Ok((_, code)) => {
            ping.finish(true, &offsite::logtail::tail());
            Ok(code)
        }
        Err(e) => {
            ping.finish(
                false,
                &format!(
                    "{}error: {e:#}\npush of {} failed: no snapshot was committed\n",
                    offsite::logtail::tail(),
                    cfg.host
                ),
            );
            Err(e)
        }
    }
}

/// The push itself, and what it prints; the summary of the committed snapshot.
fn run_push(
    cli: &Cli,
    cfg: &offsite::config::Config,
    a: &Args,
) -> Result<(offsite::push::PushSummary, ExitCode)> {
    super::signals::install(&format!("push of {}", cfg.host))?;
    let rt = runtime()?;
    let store = offsite::store::open(cfg, rt.handle())?;
    let progress = super::progress::for_stderr(!cli.quiet && !cli.json);
    let opts = offsite::push::PushOptions {
        full: a.full,
        now: now()?,
        wait: a.wait,
    };
    // A key that expires soon still works: said first, so a failure further on does not hide it.
    // An expired one makes push fail (exit 2) before anything is written.
    for w in offsite::keyring::push_expiry_warnings(cfg) {
        say(&format!("warning: {w}"));
    }
    let s = offsite::push::push(cfg, store, rt.handle(), progress.as_ref(), &opts)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        let ratio = if s.stored_bytes > 0 {
            s.plain_bytes as f64 / s.stored_bytes as f64
        } else {
            0.0
        };
        say(&format!(
            "snapshot {}/{} committed to {}: {} sources, {} read, {} stored (ratio {:.1}), {:.1}s",
            s.host,
            s.snapshot,
            s.store,
            s.sources.len(),
            human(s.plain_bytes),
            human(s.stored_bytes),
            ratio,
            s.seconds
        ));
        for w in &s.warnings {
            say(&format!("warning: {w}"));
        }
    }
    let code = if s.warnings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_WARNINGS)
    };
    Ok((s, code))
}
