use std::process::ExitCode;

use anyhow::Result;

use super::{runtime, Cli, EXIT_FAILED};
use offsite::config::StoreConfig;
use offsite::store::s3::audit::{Audit, Verdict};

const AUDIT_HELP: &str = "\
Run it on the production host, with push's config: it proves against the real bucket what push's
credential can do, by trying. It writes one small canary object under <prefix>/<host>/.audit/ (never
taken for a snapshot; the office's prune removes old ones), then tries to read it, list, write it
again create-only (the store must answer 412), overwrite it plainly, shorten its retention, delete
it, and change the bucket's policy, versioning, lifecycle and Object Lock configuration. The
configuration probes send bodies S3 rejects as malformed after authorization, so nothing changes
even when a request is allowed.

Exit 0: push can write, read and list, and cannot delete, overwrite or reconfigure anything (an
overwrite that only adds a version on a versioned bucket is a warning). Exit 1: something failed;
each failing row names the statement that fixes it. See README.md, \"S3 permissions for the push
user\".

With the office's config (an office: section) it checks the other side instead: that the office's
credential can delete (it writes a canary and deletes it), which retention needs; `offsite office`
runs that half after prune.";

#[derive(clap::Args)]
#[command(after_help = AUDIT_HELP)]
pub struct Args {}

pub fn run(cli: &Cli, _a: &Args) -> Result<ExitCode> {
    let cfg = cli.load_config()?;
    let rt = runtime()?;
    let _guard = rt.enter();
    let Some(store) = offsite::store::open_s3(&cfg, rt.handle())? else {
        eprintln!(
            "offsite audit: the store is a local directory ({}): no server stands between push and its files, so whoever runs push can delete and overwrite every snapshot in it. Protection from a hacked host needs an S3 store with the README's push policy (README.md, \"S3 permissions for the push user\").",
            local_dir(&cfg)
        );
        return Ok(ExitCode::from(EXIT_FAILED));
    };
    // With an office config, the office's half: its credential must delete (never the push
    // probes: with a full credential their write-backs would be real writes).
    let audit = match &cfg.office {
        Some(o) => {
            let host = o
                .hosts
                .keys()
                .next()
                .cloned()
                .unwrap_or_else(|| cfg.host.clone());
            store.audit_office(&host)
        }
        None => store.audit(&cfg.host),
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&audit)?);
    } else {
        print!("{}", table(&audit));
    }
    Ok(if audit.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

fn local_dir(cfg: &offsite::config::Config) -> String {
    match &cfg.store {
        StoreConfig::Local(dir) => dir.display().to_string(),
        StoreConfig::S3(_) => String::new(),
    }
}

/// `offsite office`'s step: the office credential's half of the audit (S3 stores only).
pub fn office_half(
    cfg: &offsite::config::Config,
    rt: &tokio::runtime::Runtime,
    host: &str,
) -> Result<ExitCode> {
    let _guard = rt.enter();
    let Some(store) = offsite::store::open_s3(cfg, rt.handle())? else {
        offsite::logtail::say("audit: the store is a local directory: nothing to prove");
        return Ok(ExitCode::SUCCESS);
    };
    let audit = store.audit_office(host);
    for line in table(&audit).lines() {
        offsite::logtail::say(line);
    }
    Ok(if audit.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

fn table(a: &Audit) -> String {
    let mut out = format!(
        "Audit of {} (canary {})\n  versioning: {}\n  object lock: {}, default retention: {}\n\n",
        a.location, a.canary, a.bucket.versioning, a.bucket.object_lock, a.bucket.default_retention
    );
    let w_check = a.probes.iter().map(|p| p.check.len()).max().unwrap_or(0);
    let w_action = a.probes.iter().map(|p| p.action.len()).max().unwrap_or(0);
    out.push_str(&format!(
        "{:<5} {:<w_check$}  {:<w_action$}  {:<8} RESULT\n",
        "", "CHECK", "ACTION", "EXPECTED"
    ));
    for p in &a.probes {
        let mark = match p.verdict {
            Verdict::Ok => "ok",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Skipped => "-",
        };
        out.push_str(&format!(
            "{mark:<5} {:<w_check$}  {:<w_action$}  {:<8} {}\n",
            p.check, p.action, p.expected, p.result
        ));
    }
    let fixes: Vec<_> = a
        .probes
        .iter()
        .filter_map(|p| p.fix.as_ref().map(|f| (p, f)))
        .collect();
    if !fixes.is_empty() {
        out.push_str("\nTo fix:\n");
        for (p, fix) in fixes {
            out.push_str(&format!("  {} ({}): {fix}\n", p.check, p.action));
        }
    }
    let warned = a.probes.iter().any(|p| p.verdict == Verdict::Warn);
    let office = a
        .probes
        .iter()
        .any(|p| p.check.starts_with("delete an object (retention"));
    out.push_str(if office && a.passed() {
        "\nThe office's credential can delete: retention works.\n"
    } else if office {
        "\nThe office's credential cannot delete: prune cannot apply retention. See the FAIL rows.\n"
    } else if a.passed() && !warned {
        "\nThis credential cannot delete, overwrite or reconfigure anything it was tried on.\n"
    } else if a.passed() {
        "\nThis credential cannot delete or reconfigure anything it was tried on, and what it overwrites stays as an older version: see the WARN rows.\n"
    } else {
        "\nThis credential can harm existing backups or cannot push: see the FAIL rows.\n"
    });
    out
}
