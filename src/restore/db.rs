//! Restoring a database dump into a new database, streamed: store -> checks -> decrypt -> decompress
//! -> `psql -v ON_ERROR_STOP=1` or `mariadb`. Nothing is staged on disk.
//!
//! The target is created by us and must not exist; with `replace`, PostgreSQL restores into a
//! temporary database and swaps it in only when the restore succeeded (the old database stays as it was
//! on any failure). A database we created is dropped again when the restore fails.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::config::Secret;
use crate::crypto::DecryptionKeys;
use crate::error::usage;
use crate::pipeline::read::open_object;
use crate::snapshot::manifest::{DatabaseEntry, Engine, Manifest};
use crate::source::mysql::Conn;
use crate::source::postgres::{connect, url_with_db};
use crate::source::process::Child;
use crate::store::Store;

/// Where to restore a database.
pub struct DbTarget {
    pub server_url: String,
    pub password: Option<Secret>,
    pub database: String,
    pub replace: bool,
}

/// Streams the verified plaintext of a database dump into `out` (for `--stdout`).
pub fn dump_to(
    store: &dyn Store,
    snapshot_dir: &str,
    manifest: &Manifest,
    source: &str,
    keys: &DecryptionKeys,
    out: &mut dyn Write,
) -> Result<u64> {
    let (_, mut reader) = open_dump(store, snapshot_dir, manifest, source, keys)?;
    let n = std::io::copy(&mut reader, out).with_context(|| format!("restoring {source}"))?;
    out.flush()?;
    Ok(n)
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
    let (db, reader) = open_dump(store, snapshot_dir, manifest, source, keys)?;
    match db.engine {
        Engine::Postgres => restore_postgres(rt, reader, target),
        Engine::Mysql => {
            if target.replace {
                // The old database is dropped before the load (MariaDB cannot rename one), so prove
                // the object intact first: a corrupt backup must not destroy the database it replaces.
                drop(reader);
                dump_to(
                    store,
                    snapshot_dir,
                    manifest,
                    source,
                    keys,
                    &mut std::io::sink(),
                )
                .with_context(|| {
                    format!("checking {source} before replacing {}", target.database)
                })?;
                let (_, reader) = open_dump(store, snapshot_dir, manifest, source, keys)?;
                return restore_mysql(rt, reader, target);
            }
            restore_mysql(rt, reader, target)
        }
    }
}

fn quote_pg(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_my(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

async fn pg_exists(client: &tokio_postgres::Client, name: &str) -> Result<bool> {
    Ok(client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some())
}

fn restore_postgres(
    rt: &tokio::runtime::Handle,
    reader: Box<dyn Read + Send>,
    t: &DbTarget,
) -> Result<u64> {
    let admin = rt.block_on(connect(&t.server_url, t.password.as_ref(), None))?;
    let exists = rt.block_on(pg_exists(&admin, &t.database))?;
    if exists && !t.replace {
        return Err(usage(format!(
            "database {} exists on {}; pass --replace to replace it (the old one is kept until the restore succeeded)",
            t.database, t.server_url
        )));
    }
    // Restore into a fresh name first; with --replace the swap happens only after success.
    let work = if exists {
        format!("{}_offsite_{:04x}", t.database, rand::random::<u16>())
    } else {
        t.database.clone()
    };
    rt.block_on(admin.batch_execute(&format!("CREATE DATABASE {}", quote_pg(&work))))
        .with_context(|| format!("creating database {work} on {}", t.server_url))?;
    let result = run_psql(reader, &t.server_url, t.password.as_ref(), &work);
    let bytes = match result {
        Ok(b) => b,
        Err(e) => {
            if let Err(drop_err) = rt.block_on(admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_pg(&work)
            ))) {
                tracing::warn!("could not drop the half-restored database {work}: {drop_err}");
            }
            return Err(e);
        }
    };
    if exists {
        // Rename the old database aside and the new one in within one transaction (PostgreSQL allows
        // ALTER DATABASE RENAME there), and drop the old one only after the commit: at no point is
        // there no database under the target name. Sessions on the old database would block the
        // rename, so they are ended first.
        let old = quote_pg(&t.database);
        let aside = format!("{}_offsite_old_{:04x}", t.database, rand::random::<u16>());
        let swapped = rt.block_on(async {
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&t.database],
                )
                .await?;
            admin
                .batch_execute(&format!(
                    "BEGIN; ALTER DATABASE {old} RENAME TO {}; ALTER DATABASE {} RENAME TO {old}; COMMIT;",
                    quote_pg(&aside),
                    quote_pg(&work)
                ))
                .await
        });
        if let Err(e) = swapped {
            // The old database is untouched (the transaction rolled back); the restored copy goes.
            let _ = rt.block_on(admin.batch_execute("ROLLBACK"));
            if let Err(drop_err) = rt.block_on(admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_pg(&work)
            ))) {
                tracing::warn!("could not drop the restored copy {work}: {drop_err}");
            }
            return Err(anyhow::Error::new(e).context(format!(
                "swapping the restored database in for {} (it is unchanged)",
                t.database
            )));
        }
        rt.block_on(
            admin.batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", quote_pg(&aside))),
        )
        .with_context(|| {
            format!(
                "the restore is in place as {}; dropping the old copy {aside} failed",
                t.database
            )
        })?;
    }
    Ok(bytes)
}

fn run_psql(
    reader: Box<dyn Read + Send>,
    url: &str,
    password: Option<&Secret>,
    db: &str,
) -> Result<u64> {
    let mut version = Command::new("psql");
    version.arg("--version");
    super::psql_guard::check_psql_version(&crate::source::process::output("psql", version)?)?;
    // psql reads offsite's own \restrict first: no meta-command in the dump can run.
    let mut reader = super::psql_guard::PsqlGuard::new(reader, super::psql_guard::restrict_line());
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password"])
        .arg(format!("--dbname={}", url_with_db(url, db)?));
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p.expose());
    }
    let child = Child::spawn(format!("psql into {db}"), cmd, Stdio::piped())?;
    feed_child(child, &mut reader, &format!("psql into {db}"))
}

fn restore_mysql(
    rt: &tokio::runtime::Handle,
    reader: Box<dyn Read + Send>,
    t: &DbTarget,
) -> Result<u64> {
    let conn = Conn::from_server(&t.server_url, t.password.as_ref())?;
    let mut c = rt.block_on(conn.connect(None))?;
    use mysql_async::prelude::Queryable;
    let exists: Option<String> = rt.block_on(c.exec_first(
        "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?",
        (t.database.clone(),),
    ))?;
    if exists.is_some() && !t.replace {
        return Err(usage(format!(
            "database {} exists on {}; pass --replace to replace it",
            t.database, t.server_url
        )));
    }
    let q = quote_my(&t.database);
    if exists.is_some() {
        // MariaDB cannot rename a database; `refresh` does the atomic table swap. Here the object was
        // read through once and all its hashes checked (restore_db) before the old database goes.
        rt.block_on(c.query_drop(format!("DROP DATABASE {q}")))?;
    }
    rt.block_on(c.query_drop(format!("CREATE DATABASE {q} CHARACTER SET utf8mb4")))
        .with_context(|| format!("creating database {} on {}", t.database, t.server_url))?;
    let (args, _defaults) = conn.client_args()?;
    let mut cmd = Command::new("mariadb");
    cmd.args(&args)
        .args([
            "--default-character-set=utf8mb4",
            "--binary-mode",
            "--batch",
            // A hostile dump cannot reach the file system or run commands (`\\!`, `source`).
            "--sandbox",
        ])
        .arg(&t.database);
    let mut reader = reader;
    let result = Child::spawn(format!("mariadb into {}", t.database), cmd, Stdio::piped())
        .and_then(|child| feed_child(child, &mut reader, &format!("mariadb into {}", t.database)));
    if result.is_err() {
        if let Err(e) = rt.block_on(c.query_drop(format!("DROP DATABASE IF EXISTS {q}"))) {
            tracing::warn!(
                "could not drop the half-restored database {}: {e}",
                t.database
            );
        }
    }
    rt.block_on(c.disconnect()).ok();
    result
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
            if stderr.is_empty() {
                bail!("{name}: {e}");
            }
            bail!("{name}: {e} ({stderr})")
        }
    }
}
