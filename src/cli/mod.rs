//! Command-line definitions. Commands live one per file; they parse nothing themselves and call into
//! the library, which never sees clap.

mod accept;
mod audit;
mod config_cmd;
pub mod help;
mod keygen;
mod mask;
mod masking;
mod office;
mod progress;
mod prune;
mod pull;
mod push;
mod refresh;
mod report;
mod restore;
mod signals;
mod snapshots;
mod status;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::{Parser, Subcommand};

use offsite::config::Config;
use offsite::store::Store;

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_WARNINGS: u8 = 3;

const EXIT_HELP: &str = "\
Exit codes:
  0  success
  1  failed (for push: no snapshot was committed), or another push of this host / office command
     on this offsite_dir is running (push --wait waits for it instead)
  2  usage or config error (nothing was written)
  3  push committed the snapshot, with warnings (a file changed while read, a non-InnoDB table...)
  130, 143  interrupted by SIGINT / SIGTERM (push, restore and the office commands): dumps and
     restores stopped, uploads aborted, temporary files and scratch databases removed, nothing
     committed or recorded; within 30 s, or at once on a second signal (naming what was left)

Config: -c FILE, else $OFFSITE_CONFIG, else /etc/offsite/config.yaml. See config.example.yaml.";

/// Database and file-tree backups that a hacked production server cannot destroy.
///
/// push (on production) streams pg_dump / mariadb-dump output and file trees through zstd and OpenPGP
/// encryption into S3 or a directory, with a credential that cannot delete, and a key that cannot
/// decrypt. Every object is a standard format: `gpg -d | zstd -d | psql` restores without offsite.
#[derive(Parser)]
#[command(name = "offsite", version, after_help = EXIT_HELP)]
pub struct Cli {
    /// Config file.
    #[arg(
        short,
        long,
        global = true,
        env = "OFFSITE_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Read snapshots from this local store directory instead of the config's store.
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors and warnings on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Make an OpenPGP key pair: NAME.secret.asc (mode 0600) and NAME.cert.asc.
    ///
    /// Make one for the office (its secret stays at the office; production gets office.cert.asc) and
    /// one per production host (its secret signs that host's manifests; the office gets HOST.cert.asc).
    Keygen(keygen::Args),
    /// Check a config file and print it resolved (paths absolute, secrets redacted).
    Config {
        #[command(subcommand)]
        command: config_cmd::Command,
    },
    /// Prove what the push credential can do to the bucket: it must not delete, overwrite or
    /// reconfigure anything (run on the production host; exit 1 names what to fix).
    Audit(audit::Args),
    /// Write one snapshot of every configured source (run nightly from cron or a systemd timer).
    Push(push::Args),
    /// List the snapshots of a store: complete (committed by a manifest) or incomplete.
    Snapshots(snapshots::Args),
    /// Restore a database or a file tree from a snapshot, checking signature and hashes first.
    Restore(Box<restore::Args>),
    /// Office: copy new snapshots from S3 into the offsite directory, checking every hash.
    Pull(pull::Args),
    /// Office: prove a snapshot restorable: restore every database into a scratch database, compare
    /// row counts, run the checks, read every file of every tree.
    Verify(verify::Args),
    /// Office: write the restore-verification report (JSON, Markdown, HTML).
    Report(report::Args),
    /// Office: apply the retention policy to S3 and to the offsite copy.
    Prune(prune::Args),
    /// Office: restore the newest verified snapshot into each configured dev/test database.
    Refresh(refresh::Args),
    /// Office: pull, verify, scrub, report, prune, refresh, then notify. For the nightly office timer.
    Office(office::Args),
    /// Office: one screen for the person on call: per host, last push, last verify and its age,
    /// snapshots and size, lock-until, warnings (exit 1 when anything is stale or failing).
    Status(status::Args),
    /// Office: lift a snapshot's quarantine once a person has checked that it is genuine.
    Accept(accept::Args),
    /// Mask a plain dump on stdin with office.masking's rules, to stdout: `pg_dump | offsite mask | psql`.
    Mask(mask::Args),
    /// Office: which columns look like personal data, and which masking rule covers each.
    Masking {
        #[command(subcommand)]
        command: masking::Command,
    },
    /// Print a shell completion script to stdout (bash, zsh, fish, elvish, powershell).
    Completions(help::CompletionsArgs),
    /// Print the man page offsite(1) to stdout, or write every page into a folder with --dir.
    Man(help::ManArgs),
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Keygen(a) => keygen::run(&cli, a),
        Command::Config { command } => config_cmd::run(&cli, command),
        Command::Audit(a) => audit::run(&cli, a),
        Command::Push(a) => push::run(&cli, a),
        Command::Snapshots(a) => snapshots::run(&cli, a),
        Command::Restore(a) => restore::run(&cli, a),
        Command::Pull(a) => pull::run(&cli, a),
        Command::Verify(a) => verify::run(&cli, a),
        Command::Report(a) => report::run(&cli, a),
        Command::Prune(a) => prune::run(&cli, a),
        Command::Refresh(a) => refresh::run(&cli, a),
        Command::Office(a) => office::run(&cli, a),
        Command::Status(a) => status::run(&cli, a),
        Command::Accept(a) => accept::run(&cli, a),
        Command::Mask(a) => mask::run(&cli, a),
        Command::Masking { command } => masking::run(&cli, command),
        Command::Completions(a) => help::completions(a),
        Command::Man(a) => help::man(a),
    }
}

/// Parses the command line against [`help::command`], the definition with the examples.
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    let matches = help::command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

impl Cli {
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(offsite::config::DEFAULT_PATH))
    }

    pub fn load_config(&self) -> Result<Config> {
        Config::load(&self.config_path())
    }

    /// The config if one is given or exists at the default place; reading commands can do without.
    pub fn maybe_config(&self) -> Result<Option<Config>> {
        let path = self.config_path();
        if self.config.is_none() && !Path::new(&path).exists() {
            return Ok(None);
        }
        Config::load(&path).map(Some)
    }
}

/// The store to read from: `--store DIR`, else the config's.
pub fn reading_store(
    cli: &Cli,
    cfg: Option<&Config>,
    rt: &tokio::runtime::Handle,
) -> Result<Arc<dyn Store>> {
    if let Some(dir) = &cli.store {
        if !dir.is_dir() {
            return Err(offsite::error::usage(format!(
                "--store {} is not a directory",
                dir.display()
            )));
        }
        return Ok(Arc::new(offsite::store::local::LocalStore::new(dir)?));
    }
    match cfg {
        Some(c) => offsite::store::open(c, rt),
        None => Err(offsite::error::usage(format!(
            "no store: pass --store DIR or -c CONFIG (no config at {})",
            cli.config_path().display()
        ))),
    }
}

/// How reading commands judge the store `reading_store` opened: the configured store by its own
/// times; a directory given with `--store` as a copy (its files' times may be when it was copied,
/// so they only bound a snapshot's time from above). With an office section, what the office's
/// ledger recorded wins.
pub fn reading_judge(cli: &Cli, cfg: Option<&Config>) -> Result<offsite::snapshot::trust::Judge> {
    use offsite::snapshot::trust::{Judge, Origin};
    let origin = if cli.store.is_some() {
        Origin::Copy
    } else {
        Origin::Source
    };
    let office = cfg.and_then(|c| c.office.as_ref());
    let tolerance = office
        .map(|o| o.clock_tolerance)
        .unwrap_or(offsite::config::DEFAULT_CLOCK_TOLERANCE);
    // The office's memory: the configured offsite_dir's ledger, or one found in a `--store`
    // directory that is (a copy of) an offsite directory.
    let ledger_dir = match (&cli.store, office.and_then(|o| o.offsite_dir.as_ref())) {
        (Some(dir), _) if dir.join("reports").join("ledger").is_dir() => Some(dir.clone()),
        (None, Some(dir)) => Some(dir.clone()),
        (Some(dir), Some(off)) if dir == off => Some(dir.clone()),
        _ => None,
    };
    Ok(match ledger_dir {
        Some(dir) => {
            let mut hosts = offsite::office::ledger::hosts_with_ledgers(&dir);
            hosts.extend(
                office
                    .map(|o| o.hosts.keys().cloned())
                    .into_iter()
                    .flatten(),
            );
            hosts.sort();
            hosts.dedup();
            offsite::office::ledger::judge_lenient(&dir, &hosts, origin, tolerance)
        }
        None => Judge::bare(
            origin,
            time::Duration::try_from(tolerance).unwrap_or(time::Duration::HOUR),
        ),
    })
}

/// The current time; `OFFSITE_NOW` (RFC 3339) overrides it so tests of age-dependent behaviour
/// (freshness, abandoned snapshots, retention) do not depend on the wall clock.
pub fn now() -> Result<time::OffsetDateTime> {
    match std::env::var("OFFSITE_NOW") {
        Ok(s) => time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                offsite::error::usage(format!("OFFSITE_NOW={s:?} is not an RFC 3339 time: {e}"))
            }),
        Err(_) => Ok(time::OffsetDateTime::now_utc()),
    }
}

/// A runtime for the drivers and the S3 client; the pipelines themselves run on plain threads.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
