use std::process::ExitCode;

use anyhow::Result;

use super::{audit, prune, pull, refresh, report, runtime, verify, Cli};
use offsite::logtail::say;
use offsite::office::context::Office;

#[derive(clap::Args)]
#[command(after_help = "\
Runs, in order: pull, verify (the newest snapshot of every host), scrub (re-hashes a share of the
offsite copy), report, prune (when a retention policy is configured), audit (on an S3 store: the
office's credential can delete, which retention needs), refresh (when refresh entries are
configured), then notify (when configured).
A step's failure does not stop the steps after it, except that refresh only ever uses snapshots that
verify passed. The exit code is the worst of the steps': 0 all good, 1 something failed,
2 a usage/config error or a refresh refused by a guard. SIGINT/SIGTERM stops the step under way
cleanly (scratch databases dropped, nothing recorded half) and no later step runs: exit 130/143.

With --host NAME every step works on that host only (refresh: the entries from it), and the report,
still of every host, fails only for it: a scheduler can run one office per host, side by side. Each
such run locks its host; a run for every host and a second run for the same host are refused
(exit 1, naming the one running). An unknown NAME is a usage error (exit 2).")]
pub struct Args {
    /// Only this host (one of office.hosts): pull, verify, scrub, prune and refresh it alone,
    /// while runs for other hosts may go on at the same time.
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Do not apply retention, even if configured.
    #[arg(long)]
    pub no_prune: bool,
    /// Do not refresh dev/test databases, even if configured.
    #[arg(long)]
    pub no_refresh: bool,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let cfg = cli.load_config()?;
    let ping = offsite::ping::Ping::new(cfg.office()?.notify.ping.as_deref(), "office.notify.ping");
    let metrics_file = cfg.metrics_file.clone();
    ping.start();
    let result = run_steps(cli, cfg, a);
    let ok = matches!(&result, Ok(c) if *c == ExitCode::SUCCESS);
    if let Some(path) = &metrics_file {
        let finished = time::OffsetDateTime::now_utc();
        if let Err(e) = offsite::metrics::office::record_run(path, ok, finished) {
            tracing::warn!("{e:#}");
        }
    }
    let mut body = offsite::logtail::tail();
    match &result {
        Ok(_) => {}
        Err(e) => body.push_str(&format!("error: {e:#}\n")),
    }
    ping.finish(ok, &body);
    result
}

/// The steps, each reported on stderr (and in the log tail the pings carry).
fn run_steps(cli: &Cli, cfg: offsite::config::Config, a: &Args) -> Result<ExitCode> {
    let office = Office::load(cfg)?;
    // One lock for the whole run: no other office command may interleave with it. For one host,
    // only other runs over that host (or over every host) are kept out.
    let host = a.host.as_deref();
    let _lock = office.lock_for(host)?;
    super::signals::install("office")?;
    offsite::office::scratch::drop_on_interrupt(office.offsite_dir.clone());
    let rt = runtime()?;

    // After SIGINT/SIGTERM the step under way stops through its failure path, and no later step
    // (nor notify) starts.
    let interrupted = |during: &str| -> Result<()> {
        match offsite::interrupt::received() {
            Some(sig) => Err(anyhow::anyhow!(
                "office run interrupted by {sig} during {during}; the steps after it did not run"
            )),
            None => Ok(()),
        }
    };
    let mut steps: Vec<(&str, u8)> = Vec::new();
    let mut step = |name: &'static str, r: Result<ExitCode>| {
        let code = match r {
            Ok(c) if c == ExitCode::SUCCESS => 0,
            Ok(c) => code_of(c),
            Err(e) => {
                say(&format!("{name}: error: {e:#}"));
                if offsite::error::is_usage(&e) {
                    2
                } else {
                    1
                }
            }
        };
        say(&format!(
            "== {name}: {}",
            if code == 0 { "ok" } else { "FAILED" }
        ));
        steps.push((name, code));
    };

    say("== pull");
    step(
        "pull",
        pull::run_with(
            cli,
            &office,
            &rt,
            &pull::Args {
                host: a.host.clone(),
            },
        ),
    );
    interrupted("pull")?;
    say("== verify");
    let verify_args = verify::Args {
        snapshot: "latest".into(),
        host: a.host.clone(),
        from_s3: false,
        keep_scratch: false,
        scrub: false,
    };
    step("verify", verify::run_with(cli, &office, &rt, &verify_args));
    interrupted("verify")?;
    say("== scrub");
    let scrub_args = verify::Args {
        scrub: true,
        ..verify_args
    };
    step("scrub", verify::run_with(cli, &office, &rt, &scrub_args));
    interrupted("scrub")?;
    say("== report");
    step(
        "report",
        report::run_judging(
            cli,
            &office.cfg,
            &report::Args {
                out: None,
                host: None,
            },
            host,
        ),
    );
    interrupted("report")?;
    let o = &office.office;
    if !a.no_prune && (o.retention.is_some() || o.offsite_retention.is_some()) {
        say("== prune");
        step(
            "prune",
            prune::run_with(
                cli,
                &office,
                &rt,
                &prune::Args {
                    dry_run: false,
                    host: a.host.clone(),
                    force: false,
                    quarantined: false,
                    yes: false,
                },
            ),
        );
        interrupted("prune")?;
    }
    if matches!(office.cfg.store, offsite::config::StoreConfig::S3(_)) {
        // The office's half of `offsite audit`: retention needs a credential that can delete.
        say("== audit");
        let first = office.office.hosts.keys().next().cloned();
        let probe_host = host.map(str::to_string).or(first).unwrap_or_default();
        step("audit", audit::office_half(&office.cfg, &rt, &probe_host));
        interrupted("audit")?;
    }
    if !a.no_refresh && o.refresh.iter().any(|r| host.is_none_or(|h| r.host == h)) {
        say("== refresh");
        step(
            "refresh",
            refresh::run_with(cli, &office, &rt, &refresh::Args { only: None }, host),
        );
        interrupted("refresh")?;
    }
    let worst = steps.iter().map(|(_, c)| *c).max().unwrap_or(0);

    let report_json = offsite::office::record::reports_dir(&office.offsite_dir).join("report.json");
    if o.notify.webhook.is_some() || o.notify.command.is_some() {
        let report: serde_json::Value = std::fs::read(&report_json)
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or(serde_json::Value::Null);
        let summary = serde_json::json!({
            "event": "offsite-office",
            "host": host,
            "ok": worst == 0,
            "exit_code": worst,
            "steps": steps.iter().map(|(n, c)| serde_json::json!({ "step": n, "exit_code": c })).collect::<Vec<_>>(),
            "report": {
                "json": report_json,
                "html": report_json.with_file_name("report.html"),
                "summary": report.get("summary"),
                "warnings": report.get("warnings"),
            },
        });
        if let Err(e) = offsite::office::notify::notify(&o.notify, &summary, &report_json) {
            say(&format!("notify: error: {e:#}"));
            steps.push(("notify", 1));
        }
    }
    let worst = steps.iter().map(|(_, c)| *c).max().unwrap_or(0);
    say(&format!(
        "office: {} (report: {})",
        if worst == 0 {
            "all steps ok".to_string()
        } else {
            format!("exit code {worst}")
        },
        report_json.with_file_name("report.html").display()
    ));
    Ok(ExitCode::from(worst))
}

/// ExitCode has no accessor; the steps only ever return 0-3.
fn code_of(c: ExitCode) -> u8 {
    for n in 1..=3u8 {
        if c == ExitCode::from(n) {
            return n;
        }
    }
    1
}
