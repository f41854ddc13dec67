use std::process::ExitCode;

use anyhow::Result;

use super::{runtime, Cli, EXIT_FAILED};
use offsite::config::human;
use offsite::office::context::Office;
use offsite::office::verify::{verify_host, VerifyOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id, or `latest` (the newest complete snapshot of each host).
    #[arg(default_value = "latest")]
    pub snapshot: String,
    /// Only this host (default: every host in office.hosts).
    #[arg(long)]
    pub host: Option<String>,
    /// Read the snapshot straight from the configured store (S3) instead of the offsite copy.
    #[arg(long)]
    pub from_s3: bool,
    /// Keep the scratch databases for inspection (their names are printed).
    #[arg(long)]
    pub keep_scratch: bool,
    /// Instead: re-hash a share of the offsite copy against the signed manifests, so every object
    /// is checked once per office.scrub_days; a bad object is fetched again from the store.
    #[arg(long, conflicts_with_all = ["from_s3", "keep_scratch"])]
    pub scrub: bool,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let office = Office::load(cli.load_config()?)?;
    // With --host, only that host is locked: other hosts may be verified meanwhile.
    let _lock = office.lock_for(a.host.as_deref())?;
    super::signals::install("verify")?;
    offsite::office::scratch::drop_on_interrupt(office.offsite_dir.clone());
    let rt = runtime()?;
    run_with(cli, &office, &rt, a)
}

/// The work of `verify`, for a caller that holds the office lock.
pub fn run_with(
    cli: &Cli,
    office: &Office,
    rt: &tokio::runtime::Runtime,
    a: &Args,
) -> Result<ExitCode> {
    if a.scrub {
        return scrub(cli, office, rt, a);
    }
    let records = verify_all(office, rt, a, cli)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    }
    Ok(if records.iter().all(|r| r.as_ref().is_ok_and(|r| r.ok)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

/// Verifies every requested host, going on past a host's failure. `Err` for a host that could not be
/// verified at all (no snapshot, unreadable store), as text for the JSON output.
pub fn verify_all(
    office: &Office,
    rt: &tokio::runtime::Runtime,
    a: &Args,
    cli: &Cli,
) -> Result<Vec<Result<offsite::office::record::VerifyRecord, String>>> {
    let cleaned =
        offsite::office::scratch::cleanup_stale(rt.handle(), &office.offsite_dir, &|url| {
            scratch_password(office, url)
        })?;
    for name in cleaned {
        eprintln!("dropped stale scratch database {name} (left by a killed verify)");
    }
    // A scratch server whose TLS settings or certificate are wrong is a config error (exit 2),
    // found before any snapshot is read, rather than recorded as every database failing.
    offsite::office::verify::check_scratch_config(office, rt.handle())?;
    let s3;
    let store: &dyn offsite::store::Store = if a.from_s3 {
        s3 = offsite::store::open(&office.cfg, rt.handle())?;
        s3.as_ref()
    } else {
        office.offsite.as_ref()
    };
    let opts = VerifyOptions {
        which: a.snapshot.clone(),
        keep_scratch: a.keep_scratch,
        from: if a.from_s3 {
            "s3".into()
        } else {
            "offsite".into()
        },
        origin: if a.from_s3 {
            offsite::snapshot::trust::Origin::Source
        } else {
            offsite::snapshot::trust::Origin::Copy
        },
        now: super::now()?,
    };
    let mut out = Vec::new();
    for host in office.hosts(a.host.as_deref())? {
        if let Some(sig) = offsite::interrupt::received() {
            anyhow::bail!("verify interrupted by {sig} before {host}: no result recorded");
        }
        match verify_host(office, store, &host, rt.handle(), &opts) {
            Ok(r) => {
                if !cli.json {
                    print_record(&r);
                }
                out.push(Ok(r));
            }
            // Interrupted: the hosts after it are not verified either, and nothing more is said.
            Err(e) if offsite::interrupt::received().is_some() => return Err(e),
            Err(e) => {
                eprintln!("{host}: FAILED: {e:#}");
                out.push(Err(format!("{host}: {e:#}")));
            }
        }
    }
    Ok(out)
}

fn scratch_password(office: &Office, url: &str) -> Option<offsite::config::Secret> {
    let s = &office.office.scratch;
    [&s.postgres, &s.mysql]
        .into_iter()
        .flatten()
        .find(|srv| srv.url == url)
        .and_then(|srv| srv.password.clone())
}

fn print_record(r: &offsite::office::record::VerifyRecord) {
    let status = if r.ok { "PASS" } else { "FAIL" };
    eprintln!(
        "{}/{}: {status} ({:.1} h old, {} stored, verified in {:.1}s)",
        r.host,
        r.snapshot,
        r.freshness.age_hours,
        human(r.stored_bytes),
        r.seconds
    );
    for d in &r.databases {
        let rows: u64 = d.tables.values().filter_map(|t| t.restored).sum();
        eprintln!(
            "  {:<32} {} restored in {:.1}s, {} tables, {rows} rows{}",
            d.source,
            if d.ok { "PASS" } else { "FAIL" },
            d.restore_seconds,
            d.tables.len(),
            d.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        for c in &d.checks {
            eprintln!(
                "    check {:?} expect {:?}: {} {}",
                c.sql,
                c.expect,
                c.value.as_deref().unwrap_or("-"),
                if c.ok {
                    "ok"
                } else {
                    c.error.as_deref().unwrap_or("FAILED")
                }
            );
        }
    }
    for t in &r.trees {
        eprintln!(
            "  tree/{:<27} {} {} files, {}{}",
            t.name,
            if t.ok { "PASS" } else { "FAIL" },
            t.files,
            human(t.bytes),
            t.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    for e in &r.errors {
        eprintln!("  error: {e}");
    }
}

/// `verify --scrub`: exit 1 when an object is lost (bad here and in the store) or part of the
/// copy could not be scrubbed.
fn scrub(cli: &Cli, office: &Office, rt: &tokio::runtime::Runtime, a: &Args) -> Result<ExitCode> {
    let run = offsite::office::scrub::scrub(office, a.host.as_deref(), super::now()?, rt.handle())?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    }
    eprintln!(
        "scrub: checked {} objects ({}) of {} ({}); {} repaired, {} lost",
        run.checked_objects,
        human(run.checked_bytes),
        run.objects,
        human(run.bytes),
        run.repaired.len(),
        run.lost.len()
    );
    eprintln!(
        "  coverage: {:.0}% of objects checked within {} days{}{}",
        run.coverage_percent,
        run.scrub_days,
        match run.oldest_check_hours {
            Some(h) => format!(", oldest check {:.1} days ago", h / 24.0),
            None => String::new(),
        },
        match run.never_checked {
            0 => String::new(),
            n => format!(", {n} not checked yet"),
        }
    );
    for p in &run.repaired {
        eprintln!("  repaired {}: {}", p.key, p.problem);
    }
    for p in &run.lost {
        eprintln!("  LOST {}: {}", p.key, p.problem);
    }
    for e in &run.errors {
        eprintln!("  error: {e}");
    }
    Ok(if run.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}
