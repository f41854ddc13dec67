use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::{now, reading_judge, reading_store, runtime, Cli};
use offsite::config::{human, Config};
use offsite::error::usage;
use offsite::keyring::read_keys;
use offsite::restore::db::{dump_to, restore_db, DbTarget};
use offsite::restore::tree::{restore_tree, Selection, TreeSource};
use offsite::snapshot::list::{list, load_manifest, parse_point_in_time, pick, Which};

const RESTORE_HELP: &str = "\
Which snapshot: SNAPSHOT or --snapshot ID (an id, or `latest`, the default), or --at TIME for
the newest snapshot taken at or before TIME: an age like duplicity's (3D, 2W, 1M, 12h) or a time
(2026-11-20T14:00:00Z, 2026-11-20 14:00 in UTC, or 2026-11-20 for the start of that day).

A file tree is restored as that snapshot saw it, however long its chain of incrementals. With
--path, only those files or directories (and the directories above them) are restored, and only
the volumes that hold them are fetched and decrypted. Names, modes, mtimes, symlinks, hardlinks
and empty directories come back as they were; ownership too when run as root.

Examples:
  offsite restore --tree www --to /tmp/www                      # newest snapshot, whole tree
  offsite restore --tree www --to /tmp/w --at 3D --path html/index.php
  offsite restore --snapshot 20261120T020000Z-1a2b --tree etc --to /tmp/etc --path nginx
  offsite restore --db postgres/shop --into shop_copy           # a database, into a new one
  offsite restore --db mysql/shop --stdout | less               # the plain SQL dump
  offsite restore --db postgres/shop --into shop_laptop --mask  # rows masked (office.masking)";

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["db", "tree"]))]
#[command(after_help = RESTORE_HELP)]
pub struct Args {
    /// Snapshot id, or `latest` (default: latest).
    #[arg(conflicts_with_all = ["snapshot_id", "at"])]
    pub snapshot: Option<String>,
    /// Snapshot id, or `latest` (the same as the positional SNAPSHOT).
    #[arg(
        long = "snapshot",
        id = "snapshot_id",
        value_name = "ID",
        conflicts_with = "at"
    )]
    pub snapshot_id: Option<String>,
    /// The newest snapshot taken at or before TIME: an age (3D, 2W, 1M, 12h) or an ISO-8601 time.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Host whose snapshot to restore (default: the config's host).
    #[arg(long)]
    pub host: Option<String>,
    /// Database to restore: postgres/NAME or mysql/NAME.
    #[arg(long, value_name = "SOURCE", requires = "db_target")]
    pub db: Option<String>,
    /// Create this database and restore into it.
    #[arg(long, value_name = "NEWDB", group = "db_target")]
    pub into: Option<String>,
    /// Write the plain SQL dump to stdout (verified as it streams; exit code non-zero on corruption).
    #[arg(long, group = "db_target")]
    pub stdout: bool,
    /// Server for --into (default: the config's first server of that kind).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Replace --into if it exists (PostgreSQL: swapped in only after a successful restore).
    #[arg(long)]
    pub replace: bool,
    /// Mask the rows with office.masking's rules for this database on the way (--into or --stdout),
    /// as refresh's `mask: true` does: the target never sees the real values.
    #[arg(long, requires = "db")]
    pub mask: bool,
    /// Connections to load the database over (default: office.restore_jobs, or one per core and
    /// at least 2; 1 restores as one stream, as `psql` or `mariadb` would).
    #[arg(long, value_name = "N", requires = "into", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// With --replace: replace even from a snapshot that failed verify.
    #[arg(long, requires = "replace")]
    pub force: bool,
    /// File tree to restore.
    #[arg(long, value_name = "NAME", requires = "to")]
    pub tree: Option<String>,
    /// Directory to restore the tree into (must be empty or absent).
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// Only this file or directory of the tree (repeatable): relative to the tree's root, or
    /// absolute under the root as it was backed up.
    #[arg(long, value_name = "PATH", requires = "tree")]
    pub path: Vec<PathBuf>,
    /// Office secret key (default: office.decryption_key).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Certificate of the host that signed the snapshot (default: office.hosts[host]).
    #[arg(long, value_name = "FILE")]
    pub signer: Option<PathBuf>,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let cfg = cli.maybe_config()?;
    super::signals::install("restore")?;
    let rt = runtime()?;
    let store = reading_store(cli, cfg.as_ref(), rt.handle())?;
    let host = match (&a.host, &cfg) {
        (Some(h), _) => h.clone(),
        (None, Some(c)) => c.host.clone(),
        (None, None) => return Err(usage("pass --host HOST (no config to take it from)")),
    };
    let keys = read_keys(cfg.as_ref(), &host, a.key.as_deref(), a.signer.as_deref())?;
    let which = match (&a.at, a.snapshot.as_ref().or(a.snapshot_id.as_ref())) {
        (Some(at), _) => Which::At(parse_point_in_time(at, now()?)?),
        (None, Some(id)) => Which::parse(id)?,
        (None, None) => Which::Latest,
    };
    let mut snaps = list(store.as_ref(), Some(&host))?;
    reading_judge(cli, cfg.as_ref())?.assess(&mut snaps);
    // Nothing is restored before the manifest's signature has been checked; `latest` and `--at`
    // pass over snapshots that are quarantined or whose signature does not check out.
    let picked = pick(&store.location(), &host, snaps, &which, &|s| {
        load_manifest(store.as_ref(), s, &keys.decryption, &keys.signers)
    })?;
    for s in &picked.skipped {
        eprintln!("warning: {s}");
    }
    let (snap, manifest) = (picked.info, picked.manifest);
    if let Some(q) = &snap.quarantine {
        eprintln!("warning: {host}/{} is QUARANTINED: {q}", snap.id);
    }
    tracing::info!("restoring from snapshot {host}/{}", snap.id);
    let verdict = verify_verdict(cfg.as_ref(), &host, &snap.id);
    if let Some(v) = &verdict {
        eprintln!("{host}/{}: verify {}", snap.id, v.describe());
    }
    if a.replace && !a.force && verdict.as_ref().is_some_and(|v| !v.ok) {
        return Err(usage(format!(
            "{host}/{} FAILED verify: --replace would swap a database for one restored from it; pick a snapshot that passed (offsite snapshots, the report), or add --force",
            snap.id
        )));
    }
    let dir = snap.dir();
    if let Some(source) = &a.db {
        let mask = if a.mask {
            let masking = cfg
                .as_ref()
                .and_then(|c| c.office.as_ref())
                .and_then(|o| o.masking.clone())
                .ok_or_else(|| {
                    usage("--mask needs office.masking in the config (its secret and rules)")
                })?;
            Some(masking.for_source(source)?.ok_or_else(|| {
                usage(format!(
                    "--mask: office.masking.tables has no rules for {source}"
                ))
            })?)
        } else {
            None
        };
        if a.stdout {
            let mut out = ClosedPipeIsTheEnd {
                inner: std::io::stdout().lock(),
                closed: false,
            };
            let dumped = dump_to(
                store.as_ref(),
                &dir,
                &manifest,
                source,
                &keys.decryption,
                mask,
                &mut out,
            );
            // `| head` has read what it wanted: that is the reader's choice, not a failure.
            if let (Err(_), true) = (&dumped, out.closed) {
                return Ok(ExitCode::SUCCESS);
            }
            dumped?;
            return Ok(ExitCode::SUCCESS);
        }
        let into = a
            .into
            .clone()
            .ok_or_else(|| usage("--db needs --into NEWDB or --stdout"))?;
        let (server_url, password) = server_for(cfg.as_ref(), source, a.server.as_deref())?;
        let target = DbTarget {
            server_url,
            password,
            database: into.clone(),
            replace: a.replace,
            // A person restoring (a disaster recovery) gets the dump's owners and privileges.
            as_role: None,
            mask,
            load: Some(load_options(cfg.as_ref(), a.jobs)),
            tally: None,
        };
        let n = restore_db(
            rt.handle(),
            store.as_ref(),
            &dir,
            &manifest,
            source,
            &keys.decryption,
            &target,
        )?;
        eprintln!(
            "restored {source} of {host}/{} into {into} ({} of SQL)",
            snap.id,
            human(n)
        );
    } else if let (Some(tree), Some(to)) = (&a.tree, &a.to) {
        let root = manifest
            .tree(tree)
            .map(|t| t.path.clone())
            .unwrap_or_default();
        let selection = Selection::new(&a.path, &root)?;
        let src = TreeSource {
            store: store.as_ref(),
            snapshot_dir: &dir,
            manifest: &manifest,
            keys: &keys.decryption,
            signers: &keys.signers,
        };
        let stats = restore_tree(&src, tree, to, selection)?;
        if cli.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "host": host,
                    "snapshot": snap.id,
                    "tree": tree,
                    "to": to,
                    "stats": stats,
                }))?
            );
        }
        eprintln!(
            "restored tree {tree} of {host}/{} into {}: {} files ({}), {} directories, {} links; read {} of {} volumes",
            snap.id,
            to.display(),
            stats.files,
            human(stats.bytes),
            stats.dirs,
            stats.links,
            stats.objects_read.len().saturating_sub(1),
            stats.volumes_in_view
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What the office's verify recorded for a snapshot, when this config has an office section.
struct Verdict {
    ok: bool,
    verified_at: String,
    why: Vec<String>,
}

impl Verdict {
    fn describe(&self) -> String {
        if self.ok {
            format!("PASSED at {}", self.verified_at)
        } else {
            format!(
                "FAILED at {}{}",
                self.verified_at,
                if self.why.is_empty() {
                    String::new()
                } else {
                    format!(": {}", self.why.join("; "))
                }
            )
        }
    }
}

fn verify_verdict(cfg: Option<&Config>, host: &str, id: &str) -> Option<Verdict> {
    let dir = cfg?.office.as_ref()?.offsite_dir.as_ref()?;
    let records = match offsite::office::record::trusted_records(dir, host) {
        Ok(r) => r,
        Err(e) => {
            // Unknown is not "passed": --replace then needs --force like a failed one.
            return Some(Verdict {
                ok: false,
                verified_at: "?".into(),
                why: vec![format!("the verify records cannot be read: {e:#}")],
            });
        }
    };
    let r = records.into_iter().find(|r| r.snapshot == id)?;
    let why = r
        .errors
        .iter()
        .cloned()
        .chain(
            r.databases
                .iter()
                .filter(|d| !d.ok)
                .map(|d| format!("{}: {}", d.source, d.error.as_deref().unwrap_or("failed"))),
        )
        .chain(r.trees.iter().filter(|t| !t.ok).map(|t| {
            format!(
                "tree/{}: {}",
                t.name,
                t.error.as_deref().unwrap_or("failed")
            )
        }))
        .collect();
    Some(Verdict {
        ok: r.ok,
        verified_at: r.verified_at,
        why,
    })
}

fn server_for(
    cfg: Option<&Config>,
    source: &str,
    flag: Option<&str>,
) -> Result<(String, Option<offsite::config::Secret>)> {
    if let Some(url) = flag {
        // The same cleaning as the config: a password in --server never reaches argv or a message.
        let (url, password) =
            offsite::config::clean_url(url).map_err(|e| usage(format!("--server: {e:#}")))?;
        return Ok((url, password));
    }
    let servers = match (source.split('/').next(), cfg) {
        (Some("postgres"), Some(c)) => &c.postgres,
        (Some("mysql"), Some(c)) => &c.mysql,
        _ => {
            return Err(usage(format!(
                "pass --server URL to say where to restore {source}"
            )))
        }
    };
    let s = servers.first().ok_or_else(|| {
        usage(format!(
            "pass --server URL to say where to restore {source}"
        ))
    })?;
    Ok((s.url.clone(), s.password.clone()))
}

/// stdout for `--stdout`: remembers that the reader closed the pipe (EPIPE: Rust ignores SIGPIPE),
/// so that `restore --stdout | head` ends quietly with exit 0. Every other write error, and every
/// read or check error, still fails the restore.
struct ClosedPipeIsTheEnd<W: std::io::Write> {
    inner: W,
    closed: bool,
}

impl<W: std::io::Write> std::io::Write for ClosedPipeIsTheEnd<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| {
            self.closed |= e.kind() == std::io::ErrorKind::BrokenPipe;
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|e| {
            self.closed |= e.kind() == std::io::ErrorKind::BrokenPipe;
        })
    }
}

/// `--jobs`, else the office's settings, else one connection per core; the spool goes under the
/// offsite directory when there is one, else the temporary directory.
fn load_options(
    cfg: Option<&offsite::config::Config>,
    jobs: Option<u16>,
) -> offsite::restore::parallel::LoadOptions {
    let office = cfg.and_then(|c| c.office.as_ref());
    offsite::restore::parallel::LoadOptions {
        jobs: jobs
            .map(usize::from)
            .or(office.map(|o| o.restore_jobs))
            .unwrap_or_else(offsite::config::default_restore_jobs),
        spool_dir: office
            .and_then(|o| o.offsite_dir.as_deref())
            .map(|d| offsite::office::record::reports_dir(d).join("spool"))
            .unwrap_or_else(std::env::temp_dir),
        spool_limit: office
            .map(|o| o.spool_limit)
            .unwrap_or(offsite::config::DEFAULT_SPOOL_LIMIT),
    }
}
