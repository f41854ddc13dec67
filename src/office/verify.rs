//! `verify`: prove a snapshot restorable, and record what was found.
//!
//! For each database: restore it into a fresh scratch database (streamed through psql / mariadb, no
//! temporary files), count every table's rows and compare with what the dump contained (the manifest),
//! run the configured smoke queries, drop the scratch database. For each tree: read every volume and
//! check every file's sha256 against the index, writing nothing. Plus the manifest's signature and the
//! snapshot's age. The result is a [`VerifyRecord`], saved whether it passed or not.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::checks::Expectation;
use super::context::Office;
use super::record::{
    CheckResult, DatabaseResult, Freshness, RestoredAs, TableRows, TreeResult, VerifyRecord,
    FORMAT, VERSION,
};
use super::scratch::{drop_scratch, register, scratch_name};
use crate::config::{Check, Server};
use crate::db::session::Session;
use crate::restore::db::{restore_db, DbTarget};
use crate::snapshot::list::{find, list, load_manifest, pick, SnapshotInfo, Which};
use crate::snapshot::manifest::{DatabaseEntry, Engine};
use crate::snapshot::trust::Origin;
use crate::snapshot::{Manifest, SnapshotId};
use crate::sql::ownership::Mapped;
use crate::sql::tally::Tally;
use crate::store::Store;

pub struct VerifyOptions {
    /// `latest` or a snapshot id.
    pub which: String,
    pub keep_scratch: bool,
    /// `offsite` or `s3`, for the record.
    pub from: String,
    /// Whether `store` is the store production writes to or the offsite copy.
    pub origin: Origin,
    pub now: OffsetDateTime,
}

/// Verifies one snapshot of `host` in `store` and saves the record.
pub fn verify_host(
    office: &Office,
    store: &dyn Store,
    host: &str,
    rt: &tokio::runtime::Handle,
    opts: &VerifyOptions,
) -> Result<VerifyRecord> {
    let mut snaps = list(store, Some(host))?;
    office.judge(opts.origin)?.assess(&mut snaps);
    let signers = office.signers(host)?;
    let open = |s: &SnapshotInfo| load_manifest(store, s, &office.decryption, signers);
    let (snap, manifest, skipped) = match Which::parse(&opts.which)? {
        // A snapshot asked for by id is verified whatever it is, and a bad signature is recorded
        // as the failure it is.
        Which::Id(id) => {
            let snap = find(store, host, &id)?;
            let snap = snaps.into_iter().find(|s| s.id == snap.id).unwrap_or(snap);
            let manifest = open(&snap);
            (snap, manifest, Vec::new())
        }
        which => {
            let p = pick(&store.location(), host, snaps, &which, &open)?;
            (p.info, Ok(p.manifest), p.skipped)
        }
    };
    let started = Instant::now();
    let mut record = empty_record(&snap, opts)?;
    record.warnings.extend(skipped);
    if let Some(q) = &snap.quarantine {
        // Evidence, never "verified as current": a quarantined snapshot cannot pass.
        record.errors.push(format!(
            "snapshot {host}/{} is quarantined: {q}; it is kept as evidence until a person deletes it (offsite prune --quarantined --yes)",
            snap.id
        ));
    }
    match manifest {
        Err(e) => record.errors.push(format!("{e:#}")),
        Ok(manifest) => check_snapshot(office, store, &snap, &manifest, rt, opts, &mut record),
    }
    record.seconds = started.elapsed().as_secs_f64();
    // A run stopped by SIGINT/SIGTERM proved nothing either way: recording it as failed would
    // raise a false alarm in the report, so nothing is recorded.
    if let Some(sig) = crate::interrupt::received() {
        anyhow::bail!(
            "verify of {host}/{} interrupted by {sig}: no result recorded",
            snap.id
        );
    }
    record.locked_until = lock_in_store(office, rt, &snap, &mut record.warnings);
    record.ok = record.errors.is_empty()
        && record.freshness.ok
        && record.databases.iter().all(|d| d.ok)
        && record.trees.iter().all(|t| t.ok);
    record.save(&office.offsite_dir)?;
    Ok(record)
}

/// Pre-flight: connects once to the PostgreSQL scratch server, so that wrong TLS settings or a
/// certificate that fails verification stop verify as the config error they are (exit 2) instead
/// of failing every database.
pub fn check_scratch_config(office: &Office, rt: &tokio::runtime::Handle) -> Result<()> {
    if let Some(server) = &office.office.scratch.postgres {
        rt.block_on(crate::db::pg::check_config(
            &server.url,
            server.password.as_ref(),
        ))
        .context("office.scratch.postgres")?;
        crate::db::privilege::require(rt, Engine::Postgres, server, "office.scratch.postgres")?;
    }
    if let Some(server) = &office.office.scratch.mysql {
        let conn = crate::db::my::Conn::from_server(&server.url, server.password.as_ref())?;
        rt.block_on(conn.check_config())
            .context("office.scratch.mysql")?;
        crate::db::privilege::require(rt, Engine::Mysql, server, "office.scratch.mysql")?;
    }
    Ok(())
}

/// The snapshot's Object Lock in the store production writes to, when the config says the bucket
/// has one: what the report shows beside the verdict. Unreadable is a warning, not a failure.
fn lock_in_store(
    office: &Office,
    rt: &tokio::runtime::Handle,
    snap: &SnapshotInfo,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let locked =
        matches!(&office.cfg.store, crate::config::StoreConfig::S3(s) if s.object_lock.is_some());
    if !locked {
        return None;
    }
    let key = format!("{}{}", snap.dir(), crate::snapshot::MANIFEST_NAME);
    match crate::store::open(&office.cfg, rt).and_then(|s| s.lock_until(&key)) {
        Ok(until) => until.and_then(|t| t.format(&Rfc3339).ok()),
        Err(e) => {
            warnings.push(format!(
                "the snapshot's Object Lock could not be read: {e:#}"
            ));
            None
        }
    }
}

fn empty_record(snap: &SnapshotInfo, opts: &VerifyOptions) -> Result<VerifyRecord> {
    // Its age is the store's time, never what production claims.
    let taken = match snap.trusted {
        Some(t) => t,
        None => snap.id.parse::<SnapshotId>()?.time()?,
    };
    Ok(VerifyRecord {
        locked_until: None,
        format: FORMAT.into(),
        version: VERSION,
        host: snap.host.clone(),
        snapshot: snap.id.clone(),
        snapshot_time: taken.format(&Rfc3339)?,
        verified_at: opts.now.format(&Rfc3339)?,
        verified_from: opts.from.clone(),
        ok: false,
        seconds: 0.0,
        signer: String::new(),
        stored_bytes: snap.stored_bytes,
        plain_bytes: 0,
        freshness: Freshness {
            age_hours: (opts.now - taken).as_seconds_f64() / 3600.0,
            max_age_hours: 0.0,
            ok: false,
        },
        databases: Vec::new(),
        trees: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    })
}

fn check_snapshot(
    office: &Office,
    store: &dyn Store,
    snap: &SnapshotInfo,
    manifest: &Manifest,
    rt: &tokio::runtime::Handle,
    opts: &VerifyOptions,
    record: &mut VerifyRecord,
) {
    record.signer = manifest.signer.clone();
    record.plain_bytes = manifest.objects.iter().map(|o| o.plain_size).sum();
    // A database's warnings travel with its result; keep the rest (trees, the snapshot) here.
    let db_prefixes: Vec<String> = manifest
        .databases
        .iter()
        .map(|d| format!("{}: ", d.source))
        .collect();
    record.warnings.extend(
        manifest
            .warnings
            .iter()
            .filter(|w| !db_prefixes.iter().any(|p| w.starts_with(p.as_str())))
            .cloned(),
    );
    let max_age = office.office.max_age.as_secs_f64() / 3600.0;
    record.freshness.max_age_hours = max_age;
    record.freshness.ok = record.freshness.age_hours <= max_age;
    if !record.freshness.ok {
        record.errors.push(format!(
            "snapshot {} is {:.1} h old; office.max_age allows {:.0} h: production has not pushed a newer one",
            snap.id, record.freshness.age_hours, max_age
        ));
    }
    let dir = snap.dir();
    for db in &manifest.databases {
        // After SIGINT/SIGTERM nothing more is started; verify_host records nothing.
        if crate::interrupt::received().is_some() {
            return;
        }
        let result = verify_database(office, store, &dir, manifest, db, rt, opts);
        let status = match (result.ok, crate::interrupt::received()) {
            (_, Some(sig)) => format!("stopped ({sig})"),
            (true, None) => "ok".into(),
            (false, None) => "FAILED".into(),
        };
        tracing::info!(
            "verify {}/{} {}: {status} in {:.1}s",
            snap.host,
            snap.id,
            db.source,
            result.restore_seconds
        );
        record.databases.push(result);
    }
    for tree in &manifest.trees {
        if crate::interrupt::received().is_some() {
            return;
        }
        let started = Instant::now();
        // An incremental's view spans older snapshots: each of their manifests is checked too.
        let r = office.signers(&snap.host).and_then(|signers| {
            let src = crate::restore::tree::TreeSource {
                store,
                snapshot_dir: &dir,
                manifest,
                keys: &office.decryption,
                signers,
            };
            crate::restore::tree::verify_tree(&src, &tree.name)
        });
        let seconds = started.elapsed().as_secs_f64();
        record.trees.push(match r {
            Ok(stats) => TreeResult {
                name: tree.name.clone(),
                ok: true,
                files: stats.files,
                bytes: stats.bytes,
                seconds,
                error: None,
                objects_read: stats.objects_read.len() as u64,
                stored_bytes_read: stats.stored_bytes_read,
            },
            Err(e) => TreeResult {
                name: tree.name.clone(),
                ok: false,
                files: 0,
                bytes: 0,
                seconds,
                error: Some(format!("{e:#}")),
                objects_read: 0,
                stored_bytes_read: 0,
            },
        });
    }
}

fn verify_database(
    office: &Office,
    store: &dyn Store,
    dir: &str,
    manifest: &Manifest,
    db: &DatabaseEntry,
    rt: &tokio::runtime::Handle,
    opts: &VerifyOptions,
) -> DatabaseResult {
    let object = manifest.object(&db.object);
    let mut result = DatabaseResult {
        source: db.source.clone(),
        engine: db.engine.as_str().to_string(),
        ok: false,
        restore_seconds: 0.0,
        stored_bytes: object.map(|o| o.stored_size).unwrap_or(0),
        plain_bytes: object.map(|o| o.plain_size).unwrap_or(0),
        tables: db
            .tables
            .iter()
            .map(|(t, n)| {
                (
                    t.clone(),
                    TableRows {
                        expected: *n,
                        restored: None,
                        in_dump: None,
                    },
                )
            })
            .collect(),
        checks: Vec::new(),
        error: None,
        warnings: db.warnings.clone(),
        restored_as: None,
    };
    let server = match db.engine {
        Engine::Postgres => office.office.scratch.postgres.clone(),
        Engine::Mysql => office.office.scratch.mysql.clone(),
    };
    let Some(server) = server else {
        result.error = Some(format!(
            "no scratch server for {}: set office.scratch.{} to a server verify may create databases on",
            db.source,
            db.engine.as_str()
        ));
        return result;
    };
    let name = scratch_name(&manifest.host, &db.name);
    let checks: Vec<&Check> = office
        .office
        .checks
        .iter()
        .filter(|c| c.host == manifest.host && c.database == db.source)
        .collect();
    let outcome = (|| -> Result<()> {
        let scratch = register(&office.offsite_dir, db.engine, &server, &name)?;
        let started = Instant::now();
        let mapped = Arc::new(Mapped::default());
        let tally = Arc::new(Tally::default());
        let target = DbTarget {
            server_url: server.url.clone(),
            password: server.password.clone(),
            database: name.clone(),
            replace: false,
            as_role: Some(mapped.clone()),
            mask: None,
            load: Some(office.load_options()),
            tally: Some(tally.clone()),
        };
        let restored = restore_db(
            rt,
            store,
            dir,
            manifest,
            &db.source,
            &office.decryption,
            &target,
        );
        result.restore_seconds = started.elapsed().as_secs_f64();
        let (owner_statements, privilege_statements, definers) = mapped.counts();
        result.restored_as = Some(RestoredAs {
            role: crate::db::role_in_url(db.engine, &server.url),
            owner_statements,
            privilege_statements,
            definers,
        });
        let jobs = office.office.restore_jobs;
        let checked = restored.and_then(|_| {
            add_dump_rows(&tally, &mut result.tables)?;
            inspect(rt, db, &server, &name, &checks, jobs, &mut result)
        });
        if !opts.keep_scratch {
            let dropped = drop_scratch(rt, &office.offsite_dir, &scratch, server.password.as_ref());
            // The restore's own failure is the news; a failed drop must not hide it (the next run
            // drops the leftover through its registration).
            return match (checked, dropped) {
                (Err(e), Err(d)) => Err(e.context(format!("also: {d:#}"))),
                (Err(e), Ok(())) => Err(e),
                (Ok(()), dropped) => dropped,
            };
        } else {
            tracing::info!(
                "keeping scratch database {name} on {} (--keep-scratch)",
                server.url
            );
        }
        checked
    })();
    if let Err(e) = outcome {
        result.error = Some(format!("{e:#}"));
    }
    if result.error.is_none() {
        // A table the dump lacks was never counted (restored None), so it fails here too.
        let bad: Vec<String> = result
            .tables
            .iter()
            .filter(|(_, t)| !t.ok())
            .map(|(n, t)| rows_mismatch(n, t, db.tables.contains_key(n)))
            .collect();
        if !bad.is_empty() {
            result.error = Some(format!("row counts differ: {}", bad.join("; ")));
        }
    }
    result.ok = result.error.is_none() && result.checks.iter().all(|c| c.ok);
    result
}

/// Adds verify's own count of the dump's rows to the manifest's claims; a table the manifest does
/// not list is expected to hold nothing, so that leaving it out of the manifest fails the check.
fn add_dump_rows(tally: &Tally, tables: &mut BTreeMap<String, TableRows>) -> Result<()> {
    let read = tally.rows().context(
        "the restore ended before the whole dump was read, so its rows were not counted",
    )?;
    for (table, n) in read {
        tables
            .entry(table)
            .or_insert(TableRows {
                expected: 0,
                restored: None,
                in_dump: None,
            })
            .in_dump = Some(n);
    }
    Ok(())
}

/// `sales.orders: the manifest says 3010, the dump holds 301, the restore has 301`.
fn rows_mismatch(table: &str, t: &TableRows, listed: bool) -> String {
    let claim = if listed {
        format!("the manifest says {}", t.expected)
    } else {
        "the manifest does not list it".into()
    };
    let dump = match t.in_dump {
        Some(n) => format!("the dump holds {n}"),
        None => "the dump has no rows for it".into(),
    };
    let restored = t
        .restored
        .map_or_else(|| "not counted".into(), |n| format!("the restore has {n}"));
    format!("{table}: {claim}, {dump}, {restored}")
}

/// Counts rows and runs the checks in the restored scratch database.
fn inspect(
    rt: &tokio::runtime::Handle,
    db: &DatabaseEntry,
    server: &Server,
    name: &str,
    checks: &[&Check],
    jobs: usize,
    result: &mut DatabaseResult,
) -> Result<()> {
    // The checks are the user's SQL and may take long: a signal ends the wait (the scratch
    // database is dropped with FORCE, which ends the query on the server).
    rt.block_on(crate::interrupt::interruptible(async {
        // Popped from the end: the biggest tables first, so that no big count starts last.
        // A table the dump has no rows for is not counted: it fails as that, not as a failed query.
        let mut tables: Vec<(u64, String)> = result
            .tables
            .iter()
            .filter_map(|(t, r)| Some((r.in_dump?, t.clone())))
            .collect();
        tables.sort();
        let tables = tables.into_iter().map(|(_, t)| t).collect();
        let counted = count_rows(db.engine, server, name, tables, jobs).await?;
        for (table, n) in counted {
            if let Some(rows) = result.tables.get_mut(&table) {
                rows.restored = Some(n);
            }
        }
        let mut c =
            Session::open(db.engine, &server.url, server.password.as_ref(), Some(name)).await?;
        for check in checks {
            let value = c.first_value(&check.sql).await;
            result.checks.push(judge(check, value));
        }
        c.close().await;
        Ok::<(), anyhow::Error>(())
    }))?
}

/// Each table's rows, counted on up to `jobs` connections at once, as the restore loaded them: a
/// count reads the whole table, and the biggest tables of a big dump take seconds each.
async fn count_rows(
    engine: Engine,
    server: &Server,
    name: &str,
    tables: Vec<String>,
    jobs: usize,
) -> Result<Vec<(String, u64)>> {
    let workers = jobs.clamp(1, tables.len().max(1));
    let queue = Arc::new(std::sync::Mutex::new(tables));
    // Dropped on the first error, which aborts the other counts.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (queue, url, password, name) = (
            queue.clone(),
            server.url.clone(),
            server.password.clone(),
            name.to_string(),
        );
        set.spawn(async move {
            let mut c = Session::open(engine, &url, password.as_ref(), Some(&name)).await?;
            let mut counted = Vec::new();
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(table) = next else { break };
                // Names come from the dump, which a hacked host writes: the session re-quotes them.
                let n = c.count_rows(&table).await?;
                counted.push((table, n));
            }
            c.close().await;
            Ok::<_, anyhow::Error>(counted)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = set.join_next().await {
        all.extend(done.context("a row-counting task failed")??);
    }
    Ok(all)
}

fn judge(check: &Check, value: Result<Option<String>>) -> CheckResult {
    let mut r = CheckResult {
        sql: check.sql.clone(),
        expect: check.expect.clone(),
        value: None,
        ok: false,
        error: None,
    };
    match (value, Expectation::parse(&check.expect)) {
        (Err(e), _) => r.error = Some(format!("{e:#}")),
        (_, Err(e)) => r.error = Some(format!("{e:#}")),
        (Ok(None), _) => r.error = Some("the query returned no value".into()),
        (Ok(Some(v)), Ok(exp)) => {
            r.ok = exp.holds(&v);
            r.value = Some(v);
        }
    }
    r
}

/// Rows per table, for messages: `public.orders 4211908`.
pub fn table_summary(tables: &BTreeMap<String, TableRows>) -> String {
    tables
        .iter()
        .map(|(t, r)| format!("{t} {}", r.restored.unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ")
}
