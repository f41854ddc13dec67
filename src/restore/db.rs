//! Restoring a database dump into a new database, streamed: store -> checks -> decrypt -> decompress
//! -> `psql -v ON_ERROR_STOP=1` or `mariadb`. Nothing is staged on disk.
//!
//! Without `replace` the target is created by us and must not exist; a database we created is
//! dropped again when the restore fails. With `replace` the restore goes through the engines
//! refresh uses ([`crate::db::swap_pg`], [`crate::db::swap_mysql`]): into a new database next to
//! the target, swapped in only once complete, under the same per-target lock and with the same
//! repair of a killed earlier run. The old database stays as it was on any failure: a dump that
//! fails as SQL halfway (hostile, or from a newer server) never costs the database it was to
//! replace, on MariaDB either, which cannot rename a database.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::config::Secret;
use crate::crypto::DecryptionKeys;
use crate::db::my::Conn;
use crate::db::pg::client_command;
use crate::db::session::Session;
use crate::error::usage;
use crate::pipeline::read::open_object;
use crate::process::Child;
use crate::snapshot::manifest::{DatabaseEntry, Engine, Manifest};
use crate::sql::ownership::{mysql_no_definer, pg_no_owner, Mapped};
use crate::sql::tally::{tallied, Tally};
use crate::store::Store;

use super::parallel::{self, ClientSpec, LoadOptions};

/// Where to restore a database.
pub struct DbTarget {
    pub server_url: String,
    pub password: Option<Secret>,
    pub database: String,
    pub replace: bool,
    /// Restore as the connecting role (verify, refresh): owner and privilege statements are left
    /// out and MariaDB DEFINERs become CURRENT_USER ([`crate::sql::ownership`]), counted here.
    /// None (`offsite restore`): the dump's ownership is kept, as a disaster recovery needs.
    pub as_role: Option<Arc<Mapped>>,
    /// Mask the rows on the way ([`crate::mask`]): the server never sees the real values.
    pub mask: Option<Arc<crate::mask::DbMask>>,
    /// Load over several connections ([`super::parallel`]); None or one job: a single stream.
    pub load: Option<LoadOptions>,
    /// Count each table's rows as the client reads them ([`crate::sql::tally`]): verify's own
    /// count, which it holds the restore and the manifest to.
    pub tally: Option<Arc<Tally>>,
}

/// Streams the verified plaintext of a database dump into `out` (for `--stdout`).
pub fn dump_to(
    store: &dyn Store,
    snapshot_dir: &str,
    manifest: &Manifest,
    source: &str,
    keys: &DecryptionKeys,
    mask: Option<Arc<crate::mask::DbMask>>,
    out: &mut dyn Write,
) -> Result<u64> {
    let (db, reader) = open_dump(store, snapshot_dir, manifest, source, keys)?;
    mask_fits(mask.as_ref(), db)?;
    let mut reader = match mask {
        Some(m) => crate::mask::stream(db.engine, reader, m),
        None => reader,
    };
    let n = std::io::copy(&mut reader, out).with_context(|| format!("restoring {source}"))?;
    out.flush()?;
    Ok(n)
}

/// A mask whose rules name a table the snapshot's dump lacks is a config error, found before
/// anything is restored.
fn mask_fits(mask: Option<&Arc<crate::mask::DbMask>>, db: &DatabaseEntry) -> Result<()> {
    match mask {
        Some(m) => crate::mask::check_tables(m, &db.tables).map_err(|e| usage(format!("{e:#}"))),
        None => Ok(()),
    }
}

fn open_dump<'m>(
    store: &dyn Store,
    snapshot_dir: &str,
    manifest: &'m Manifest,
    source: &str,
    keys: &DecryptionKeys,
) -> Result<(&'m DatabaseEntry, Box<dyn Read + Send>)> {
    let db = manifest.database(source).ok_or_else(|| {
        let have: Vec<&str> = manifest
            .databases
            .iter()
            .map(|d| d.source.as_str())
            .collect();
        usage(format!(
            "snapshot {} has no database {source} (it has: {})",
            manifest.snapshot,
            have.join(", ")
        ))
    })?;
    let object = manifest.object(&db.object).with_context(|| {
        format!(
            "the manifest lists {source} but not its object {}",
            db.object
        )
    })?;
    Ok((db, open_object(store, snapshot_dir, object, keys)?))
}

/// Restores `source` (`postgres/NAME` or `mysql/NAME`) into a new database.
pub fn restore_db(
    rt: &tokio::runtime::Handle,
    store: &dyn Store,
    snapshot_dir: &str,
    manifest: &Manifest,
    source: &str,
    keys: &DecryptionKeys,
    target: &DbTarget,
) -> Result<u64> {
    crate::config::check_name("target database", &target.database)?;
    if target.replace {
        return replace_db(rt, store, snapshot_dir, manifest, source, keys, target);
    }
    let (db, reader) = open_dump(store, snapshot_dir, manifest, source, keys)?;
    mask_fits(target.mask.as_ref(), db)?;
    restore_into_new(rt, db.engine, reader, target)
}

/// `--replace`: the swap engines restore into `<target>_offsite_new_<hex>` and swap it in.
fn replace_db(
    rt: &tokio::runtime::Handle,
    store: &dyn Store,
    snapshot_dir: &str,
    manifest: &Manifest,
    source: &str,
    keys: &DecryptionKeys,
    target: &DbTarget,
) -> Result<u64> {
    if target.database.len() > crate::db::MAX_TARGET_LEN {
        return Err(usage(format!(
            "{} is longer than {} characters: the work databases (`{}_offsite_new_xxxx`) would exceed the 63-byte identifier limit",
            target.database,
            crate::db::MAX_TARGET_LEN,
            target.database
        )));
    }
    let (db, _) = open_dump(store, snapshot_dir, manifest, source, keys)?;
    let engine = db.engine;
    mask_fits(target.mask.as_ref(), db)?;
    let into = |name: &str| -> Result<u64> {
        let (_, reader) = open_dump(store, snapshot_dir, manifest, source, keys)?;
        let fresh = DbTarget {
            server_url: target.server_url.clone(),
            password: target.password.clone(),
            database: name.to_string(),
            replace: false,
            as_role: target.as_role.clone(),
            mask: target.mask.clone(),
            load: target.load.clone(),
            tally: target.tally.clone(),
        };
        restore_into_new(rt, engine, reader, &fresh)
    };
    let t = crate::db::Target {
        url: &target.server_url,
        password: target.password.as_ref(),
        database: &target.database,
        post_sql: &[],
    };
    let swapped = match engine {
        Engine::Postgres => crate::db::swap_pg::refresh(rt, &t, &into),
        Engine::Mysql => crate::db::swap_mysql::refresh(rt, &t, &into),
    }
    .with_context(|| {
        format!(
            "replacing {} on {} with {source} of {}: the old database is unchanged",
            target.database, target.server_url, manifest.snapshot
        )
    })?;
    Ok(swapped.bytes)
}

/// Creates `t.database` (it must not exist), streams the dump into it with psql or mariadb, and
/// drops it again when that fails.
fn restore_into_new(
    rt: &tokio::runtime::Handle,
    engine: Engine,
    reader: Box<dyn Read + Send>,
    t: &DbTarget,
) -> Result<u64> {
    let mut admin = rt.block_on(Session::open(
        engine,
        &t.server_url,
        t.password.as_ref(),
        None,
    ))?;
    if rt.block_on(admin.database_exists(&t.database))? {
        return Err(usage(format!(
            "database {} exists on {}; pass --replace to replace it (the old one is kept until the restore succeeded)",
            t.database, t.server_url
        )));
    }
    rt.block_on(admin.create_database(&t.database))
        .with_context(|| format!("creating database {} on {}", t.database, t.server_url))?;
    // Counted as the dump holds it, before anything rewrites it.
    let reader: Box<dyn Read + Send> = match &t.tally {
        Some(tally) => Box::new(tallied(engine, reader, tally.clone())),
        None => reader,
    };
    // Masked first: the ownership filters and the client see only masked rows.
    let reader = match &t.mask {
        Some(m) => crate::mask::stream(engine, reader, m.clone()),
        None => reader,
    };
    let reader: Box<dyn Read + Send> = match (engine, &t.as_role) {
        (Engine::Postgres, Some(m)) => Box::new(pg_no_owner(reader, m.clone())),
        (Engine::Mysql, Some(m)) => Box::new(mysql_no_definer(reader, m.clone())),
        (_, None) => reader,
    };
    let result = match (engine, parallel_jobs(engine, t)) {
        (_, Some((split, opts))) => load_parallel(engine, reader, split, opts, t),
        (Engine::Postgres, None) => run_psql(reader, t),
        (Engine::Mysql, None) => run_mariadb(reader, t),
    };
    if result.is_err() {
        if let Err(e) = rt.block_on(admin.drop_database(&t.database)) {
            tracing::warn!(
                "could not drop the half-restored database {}: {e:#}",
                t.database
            );
        }
    }
    rt.block_on(admin.close());
    result
}

/// The parallel loader and its options, when this restore uses more than one connection.
fn parallel_jobs(
    engine: Engine,
    t: &DbTarget,
) -> Option<(Box<dyn parallel::Splitter>, &LoadOptions)> {
    let opts = t.load.as_ref().filter(|o| o.jobs > 1)?;
    Some((parallel::splitter(engine)?, opts))
}

fn load_parallel(
    engine: Engine,
    reader: Box<dyn Read + Send>,
    split: Box<dyn parallel::Splitter>,
    opts: &LoadOptions,
    t: &DbTarget,
) -> Result<u64> {
    let mut clients = Vec::with_capacity(opts.jobs);
    for i in 0..opts.jobs {
        let name = format!("connection {} of {} into {}", i + 1, opts.jobs, t.database);
        clients.push(match engine {
            Engine::Postgres => ClientSpec {
                name: format!("psql ({name})"),
                cmd: psql_command(t, true)?,
                preamble: super::psql_guard::restrict_line(),
                defaults: None,
            },
            Engine::Mysql => {
                let (cmd, defaults) = mariadb_command(t)?;
                ClientSpec {
                    name: format!("mariadb ({name})"),
                    cmd,
                    preamble: Vec::new(),
                    defaults,
                }
            }
        });
    }
    let mut reader: Box<dyn Read + Send> = match engine {
        // Each connection starts with its own \restrict; pg_dump's own lines are left out.
        Engine::Postgres => Box::new(super::psql_guard::PsqlGuard::new(reader, Vec::new())),
        Engine::Mysql => reader,
    };
    parallel::load(&mut reader, split, clients, opts)
}

/// psql as every restore runs it. `tuples`: print query results bare, one per line (the parallel
/// loader reads its sync markers there).
fn psql_command(t: &DbTarget, tuples: bool) -> Result<Command> {
    let mut version = Command::new("psql");
    version.arg("--version");
    super::psql_guard::check_psql_version(&crate::process::output("psql", version)?)?;
    let mut cmd = client_command("psql", &t.server_url, t.password.as_ref(), &t.database)?;
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password"]);
    if tuples {
        cmd.args(["-A", "-t"]);
    }
    Ok(cmd)
}

fn run_psql(reader: Box<dyn Read + Send>, t: &DbTarget) -> Result<u64> {
    // psql reads offsite's own \restrict first: no meta-command in the dump can run.
    let mut reader = super::psql_guard::PsqlGuard::new(reader, super::psql_guard::restrict_line());
    let cmd = psql_command(t, false)?;
    let name = format!("psql into {}", t.database);
    let child = Child::spawn(name.clone(), cmd, Stdio::piped())?;
    feed_child(child, &mut reader, &name)
}

/// mariadb as every restore runs it, with the defaults file holding the password (it must live
/// until the client has read it).
fn mariadb_command(t: &DbTarget) -> Result<(Command, Option<tempfile::NamedTempFile>)> {
    let conn = Conn::from_server(&t.server_url, t.password.as_ref())?;
    let (args, defaults) = conn.client_args()?;
    let mut cmd = Command::new("mariadb");
    cmd.args(&args)
        .args([
            "--default-character-set=utf8mb4",
            "--binary-mode",
            "--batch",
            "--skip-column-names",
            // Each result is flushed: the parallel loader waits for its sync marker there.
            "--unbuffered",
            // A dump's row can be bigger than the client's 16 MiB default; the server's own
            // max_allowed_packet is the limit that counts.
            "--max-allowed-packet=1G",
            // A hostile dump cannot reach the file system or run commands (`\\!`, `source`).
            "--sandbox",
            // Nor can it read the office machine's files with LOAD DATA LOCAL INFILE.
            "--local-infile=0",
        ])
        .arg(&t.database);
    Ok((cmd, defaults))
}

fn run_mariadb(mut reader: Box<dyn Read + Send>, t: &DbTarget) -> Result<u64> {
    let (cmd, _defaults) = mariadb_command(t)?;
    let name = format!("mariadb into {}", t.database);
    let child = Child::spawn(name.clone(), cmd, Stdio::piped())?;
    feed_child(child, &mut reader, &name)
}

/// Copies `reader` into the child's stdin, then waits for it. A read error (corruption) kills the
/// child so it never sees a clean end of input.
fn feed_child(mut child: Child, reader: &mut dyn Read, name: &str) -> Result<u64> {
    let mut stdin = child.stdin()?;
    let mut out = child.stdout()?;
    // The client's stdout (command tags) is drained so it can never block.
    let drain = std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let copied = std::io::copy(reader, &mut stdin);
    drop(stdin);
    match copied {
        Ok(n) => {
            child.finish().with_context(|| format!("{name} failed"))?;
            let _ = drain.join();
            Ok(n)
        }
        Err(e) => {
            let stderr = child.kill();
            let _ = drain.join();
            // The read error stays the source: a strict masking refusal is recognised by its type.
            let what = if stderr.is_empty() {
                name.to_string()
            } else {
                format!("{name} (it said: {stderr})")
            };
            Err(anyhow::Error::new(e).context(what))
        }
    }
}
