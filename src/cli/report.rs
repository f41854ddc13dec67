use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::{now, Cli, EXIT_FAILED};
use offsite::crypto::expiry::KeyRole;
use offsite::error::usage;
use offsite::office::record::reports_dir;
use offsite::office::report::{self, model::Status};

#[derive(clap::Args)]
#[command(after_help = "\
Writes report.json (shaped by schemas/report.schema.json), report.md and report.html.

Exit codes: 0 when the newest verification of every host passed (warnings allowed);
1 when a host's newest verification failed or a configured host has none; 2 on a config error.")]
pub struct Args {
    /// Folder for report.json, report.md and report.html (default: <offsite_dir>/reports).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Only this host (one of office.hosts).
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Serialize)]
struct Summary<'a> {
    ok: bool,
    status: &'static str,
    headline: String,
    hosts: usize,
    failing: usize,
    warnings: usize,
    json: &'a PathBuf,
    markdown: &'a PathBuf,
    html: &'a PathBuf,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    run_with(cli, &cli.load_config()?, a)
}

/// The work of `report` on a loaded config.
pub fn run_with(cli: &Cli, cfg: &offsite::config::Config, a: &Args) -> Result<ExitCode> {
    run_judging(cli, cfg, a, None)
}

/// The work of `report`; with `judged`, the report still covers the hosts `a` asks for, but the
/// exit code and the FAIL lines are only about `judged` (`office --host`: a run for one host
/// writes the whole report, and fails only for its own host).
pub fn run_judging(
    cli: &Cli,
    cfg: &offsite::config::Config,
    a: &Args,
    judged: Option<&str>,
) -> Result<ExitCode> {
    let office = cfg.office()?;
    // No key is loaded: the report reads only what verify and pull recorded.
    let offsite_dir = office.offsite_dir.clone().ok_or_else(|| {
        usage(format!(
            "{}: office.offsite_dir is required (verify writes its records under it)",
            cfg.path.display()
        ))
    })?;
    let configured: Vec<String> = office.hosts.keys().cloned().collect();
    let hosts = match &a.host {
        Some(h) if configured.contains(h) => vec![h.clone()],
        Some(h) => {
            return Err(usage(format!(
                "host {h} is not in office.hosts (configured: {})",
                configured.join(", ")
            )))
        }
        None if configured.is_empty() => {
            return Err(usage(format!(
                "{}: office.hosts is empty: list each host whose snapshots you accept",
                cfg.path.display()
            )))
        }
        None => configured,
    };
    let out = a.out.clone().unwrap_or_else(|| reports_dir(&offsite_dir));
    let mut r = report::load(&offsite_dir, &hosts, office.max_age, now()?)?;
    // The office's keys and the reported hosts' certificates (push's own keys are push's to warn of).
    let keys: Vec<_> = offsite::keyring::key_expiries(cfg)
        .into_iter()
        .filter(|k| match &k.role {
            KeyRole::DecryptionKey => true,
            KeyRole::HostCert(h) => hosts.contains(h),
            _ => false,
        })
        .collect();
    report::add_key_warnings(&mut r, &keys, std::time::SystemTime::now());
    let written = report::write(&r, &out)?;
    if let Some(path) = &cfg.metrics_file {
        // Monitoring reads the same records; a file it cannot have goes stale, and that alerts.
        if let Err(e) = offsite::metrics::office::record_report(path, &offsite_dir, &r) {
            tracing::warn!("{e:#}");
        }
        let ours = |role: &str| {
            role == "office.decryption_key"
                || role
                    .strip_prefix("office.hosts.")
                    .is_some_and(|h| hosts.iter().any(|x| x == h))
        };
        if let Err(e) = offsite::metrics::keys::record(path, &keys, ours) {
            tracing::warn!("{e:#}");
        }
    }
    let headline = report::headline(&r);

    if cli.json {
        let s = Summary {
            ok: r.ok,
            status: if r.ok { "pass" } else { "fail" },
            headline,
            hosts: r.summary.hosts,
            failing: r.summary.failing,
            warnings: r.summary.warnings,
            json: &written.json,
            markdown: &written.markdown,
            html: &written.html,
        };
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        for p in [&written.json, &written.markdown, &written.html] {
            println!("{}", p.display());
        }
        for h in r
            .hosts
            .iter()
            .filter(|h| !h.ok && judged.is_none_or(|j| h.host == j))
        {
            let why = match (&h.status, &h.latest) {
                (Status::Unverified, _) | (_, None) => "no verification recorded".to_string(),
                (_, Some(v)) => format!("snapshot {} failed verification", v.snapshot),
            };
            eprintln!("FAIL {}: {why}", h.host);
        }
        for w in &r.warnings {
            eprintln!("warning: {}: {}", w.host, w.message);
        }
        if !cli.quiet {
            eprintln!("report: {headline}");
        }
    }
    let ok = match judged {
        Some(j) => r.hosts.iter().filter(|h| h.host == j).all(|h| h.ok),
        None => r.ok,
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}
