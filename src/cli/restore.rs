use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::{reading_store, runtime, Cli};
use offsite::config::{human, Config};
use offsite::error::usage;
use offsite::keyring::read_keys;
use offsite::restore::db::{dump_to, restore_db, DbTarget};
use offsite::snapshot::list::{find, load_manifest};

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["db", "tree"]))]
pub struct Args {
    /// Snapshot id, or `latest` (the newest complete snapshot of the host).
    pub snapshot: String,
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
    /// File tree to restore.
    #[arg(long, value_name = "NAME", requires = "to")]
    pub tree: Option<String>,
    /// Directory to restore the tree into (must be empty or absent).
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// Office secret key (default: office.decryption_key).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Certificate of the host that signed the snapshot (default: office.hosts[host]).
    #[arg(long, value_name = "FILE")]
    pub signer: Option<PathBuf>,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let cfg = cli.maybe_config()?;
    let rt = runtime()?;
    let store = reading_store(cli, cfg.as_ref(), rt.handle())?;
    let host = match (&a.host, &cfg) {
        (Some(h), _) => h.clone(),
        (None, Some(c)) => c.host.clone(),
        (None, None) => return Err(usage("pass --host HOST (no config to take it from)")),
    };
    let keys = read_keys(cfg.as_ref(), &host, a.key.as_deref(), a.signer.as_deref())?;
    let snap = find(store.as_ref(), &host, &a.snapshot)?;
    // Nothing is restored before the manifest's signature has been checked.
    let manifest = load_manifest(store.as_ref(), &snap, &keys.decryption, &keys.signers)?;
    let dir = snap.dir();
    if let Some(source) = &a.db {
        if a.stdout {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            dump_to(
                store.as_ref(),
                &dir,
                &manifest,
                source,
                &keys.decryption,
                &mut lock,
            )?;
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
        let stats = offsite::restore::tree::restore_tree(
            store.as_ref(),
            &dir,
            &manifest,
            tree,
            to,
            &keys.decryption,
        )?;
        eprintln!(
            "restored tree {tree} of {host}/{} into {}: {} files ({}), {} directories, {} links",
            snap.id,
            to.display(),
            stats.files,
            human(stats.bytes),
            stats.dirs,
            stats.links
        );
    }
    Ok(ExitCode::SUCCESS)
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
