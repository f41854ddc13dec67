//! MariaDB/MySQL: restore into a new database, then move every table into the target with ONE
//! multi-table `RENAME TABLE` (there is no `RENAME DATABASE`).
//!
//! Protocol, for target `T`, a fresh `<hex>`, `N = T_offsite_new_<hex>`, `O = T_offsite_old_<hex>`:
//! 1. `GET_LOCK('offsite-refresh:T', 0)`: a second refresh of the same target fails at once. The
//!    lock goes with the connection, also when we are killed.
//! 2. Repair what a killed refresh left (below), and drop every stale `T_offsite_new_*`.
//! 3. `restore_db` creates `N` and streams the dump into it; post_sql runs there (`mariadb < FILE`).
//!    On failure `N` is dropped.
//! 4. `T` is created (empty) if missing. Capture: the names of the tables of `T` and `N`, the
//!    triggers of `T` (`SHOW CREATE TRIGGER`), and the triggers, views, routines and events of `N`
//!    (`SHOW CREATE ...`, with the `sql_mode`, collation and time zone they were defined under;
//!    view definitions name their database, so `` `N`. `` is rewritten to `` `T`. ``).
//! 5. Journal: `CREATE DATABASE O` holding the table `offsite_swap_journal` with all of it.
//! 6. Drop the triggers of `N`: MariaDB refuses to move a table that has triggers to another
//!    database ("Trigger in wrong schema"), for `N`'s tables and for `T`'s alike.
//! 7. Kill the sessions whose current database is `T` (an open transaction's metadata lock would
//!    block the rename), then send ONE batch: `DROP TRIGGER` for each trigger of `T`, then
//!    `RENAME TABLE T.a TO O.a, ..., N.a TO T.a, ...`. The old tables leave `T` first, so their
//!    foreign key names are free when the new tables arrive; a view of `T` named like a new table
//!    steps aside within `T` in the same statement (views cannot change database). If the batch
//!    fails, the triggers of `T` are created again from the capture: `T` is as it was.
//! 8. Finish: drop the (old) triggers, views, routines and events of `T`; create those of `N`
//!    from the capture, views retried until the views they select from exist.
//! 9. Drop `O` (the old tables) and `N` (by now only its views, routines and events).
//!
//! What is atomic: the table data swap. One `RENAME TABLE` moves every old table out and every new
//! table in; no session sees a mix of old and new tables (MariaDB 10.6+ also logs it, so even a
//! server crash mid-statement rolls it back).
//! What is not: triggers, views, routines and events. From the `RENAME` until step 8 is done
//! (milliseconds for a few dozen objects), `T` has the new tables without triggers, and the old
//! views and routines (which then read the new tables).
//!
//! Killed at a point (the next refresh of `T` repairs it in step 2, before it does anything else;
//! until then the state stays as described):
//! - during 1-6: `T` is untouched (or, if it did not exist, it exists empty). `O` holds only the
//!   journal and `N` a stale copy; the repair drops both.
//! - inside the batch of 7, after some `DROP TRIGGER`s but before the `RENAME` (one round trip, a
//!   window of milliseconds): `T` has its old tables and data but lacks some triggers. The repair
//!   finds the old tables not moved to `O` and recreates the missing triggers from the journal:
//!   `T` is exactly as it was.
//! - after the `RENAME`, during 8: `T` has the new data (post_sql applied) with incomplete
//!   triggers/views/routines. The repair finds the old tables in `O` and runs step 8 again from the
//!   journal: `T` is the complete new database.
//! - during 9: `T` is complete; the repair drops what is left.
//!
//! A repair that cannot restore the old triggers fails the refresh and keeps `O`, so their
//! definitions are not lost; dropping `O` by hand gives up on them.
//!
//! A session holding a lock on a table of `T` from another current database is not killed: the
//! rename waits `lock_wait_timeout` (60 s) for it, then fails and `T` stays as it was.
//! Tested on MariaDB 10.11. Not tested on MySQL, whose documented `RENAME TABLE` rules for
//! triggers and views are the same.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::my::Conn as Server;
use super::mysql_journal::{read_journal, write_journal, Journal, JOURNAL};
use super::mysql_objects::{self as objects, q, text, Object};
use super::{
    derived_hex, kill_point, new_name, old_name, random_hex, RestoreInto, Swapped, Target,
};
use crate::process::Child;

/// A developer's open transaction holds a metadata lock that blocks the rename; its session is
/// killed first, but a new one could take a lock again. Wait this long, then fail (and restore).
const LOCK_WAIT_SECONDS: u32 = 60;

pub fn refresh(rt: &tokio::runtime::Handle, t: &Target, restore: &RestoreInto) -> Result<Swapped> {
    let target = t.database;
    let server = Server::from_server(t.url, t.password)?;
    let mut c = rt.block_on(server.connect(None))?;
    rt.block_on(async {
        c.query_drop(format!(
            // Foreign keys: the old tables in O are dropped even if something still references
            // them. wait_timeout: this connection idles while the dump is restored, which may take
            // longer than the default 8 h.
            "SET SESSION foreign_key_checks = 0, lock_wait_timeout = {LOCK_WAIT_SECONDS}, \
             wait_timeout = 604800"
        ))
        .await?;
        lock(&mut c, target).await?;
        repair(&mut c, target).await
    })?;
    let hex = loop {
        let hex = random_hex();
        let taken = rt.block_on(schemata(&mut c))?;
        if !taken.contains(&new_name(target, &hex)) && !taken.contains(&old_name(target, &hex)) {
            break hex;
        }
    };
    let (new, old) = (new_name(target, &hex), old_name(target, &hex));

    let started = Instant::now();
    let bytes = restore(&new)?;
    let restore_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let post = run_post_sql(&server, t, &new);
    let post_sql_seconds = started.elapsed().as_secs_f64();
    let swapped = match post {
        Ok(()) => rt.block_on(swap(&mut c, target, &new, &old)),
        Err(e) => Err(e),
    };
    let result = swapped.map(|replaced| Swapped {
        bytes,
        restore_seconds,
        post_sql_seconds,
        replaced,
    });
    if let Err(e) = rt.block_on(drop_schema(&mut c, &new)) {
        tracing::warn!("could not drop {new} (the next refresh will): {e:#}");
    }
    rt.block_on(c.disconnect()).ok();
    result
}

async fn lock(c: &mut Conn, target: &str) -> Result<()> {
    let got: Option<Option<i64>> = c
        .exec_first(
            "SELECT GET_LOCK(?, 0)",
            (format!("offsite-refresh:{target}"),),
        )
        .await
        .context("taking the refresh lock")?;
    if got.flatten() != Some(1) {
        bail!("another refresh of {target} is running on this server (lock offsite-refresh:{target} is held); try again when it has finished");
    }
    Ok(())
}

async fn schemata(c: &mut Conn) -> Result<Vec<String>> {
    c.query("SHOW DATABASES").await.context("listing databases")
}

/// Base tables, system-versioned tables and sequences: what `RENAME TABLE` moves between databases.
async fn tables(c: &mut Conn, db: &str) -> Result<Vec<String>> {
    let rows: Vec<Row> = c
        .exec(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? \
             AND table_type IN ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE') ORDER BY table_name",
            (db,),
        )
        .await
        .with_context(|| format!("listing the tables of {db}"))?;
    Ok(rows.iter().filter_map(|r| text(r, 0)).collect())
}

async fn views(c: &mut Conn, db: &str) -> Result<Vec<String>> {
    let rows: Vec<Row> = c
        .exec(
            "SELECT table_name FROM information_schema.tables \
             WHERE table_schema = ? AND table_type = 'VIEW'",
            (db,),
        )
        .await?;
    Ok(rows.iter().filter_map(|r| text(r, 0)).collect())
}

/// Kills the sessions using `db`: an idle developer's open transaction would otherwise block the
/// rename (or a drop) on its metadata locks.
async fn kill_sessions(c: &mut Conn, db: &str) -> Result<()> {
    let ids: Vec<u64> = c
        .exec(
            "SELECT id FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()",
            (db,),
        )
        .await?;
    for id in ids {
        // It may have gone by itself in the meantime.
        if let Err(e) = c.query_drop(format!("KILL CONNECTION {id}")).await {
            tracing::debug!("KILL {id}: {e}");
        }
    }
    Ok(())
}

async fn drop_schema(c: &mut Conn, db: &str) -> Result<()> {
    kill_sessions(c, db).await?;
    c.query_drop(format!("DROP DATABASE IF EXISTS {}", q(db)))
        .await
        .with_context(|| format!("dropping {db}"))
}

/// Brings `T` to a consistent state after a killed refresh (see the module doc), then drops the
/// work databases of earlier runs.
async fn repair(c: &mut Conn, target: &str) -> Result<()> {
    let all = schemata(c).await?;
    let target_exists = all.iter().any(|d| d == target);
    for old in all
        .iter()
        .filter(|d| derived_hex(d, target, "old").is_some())
    {
        if target_exists && tables(c, old).await?.iter().any(|t| t == JOURNAL) {
            let journal = read_journal(c, old).await?;
            let hex = derived_hex(old, target, "old").unwrap_or_default();
            if swap_happened(c, &journal, old, &new_name(target, hex)).await? {
                tracing::warn!("a refresh of {target} was killed after its table swap: recreating its triggers, views and routines");
                if let Err(e) = finish(c, target, &journal).await {
                    tracing::warn!("could not finish the interrupted swap of {target}: {e:#}");
                }
            } else {
                tracing::warn!("a refresh of {target} was killed before its table swap: restoring the triggers it had dropped");
                restore_triggers(c, target, &journal.old_triggers)
                    .await
                    .with_context(|| format!("{old} holds the journal of a refresh of {target} that was killed; restoring the triggers of {target} from it failed (drop {old} by hand to give up on them)"))?;
            }
        }
        tracing::info!("dropping {old}, left by an interrupted refresh");
        drop_schema(c, old).await?;
    }
    for new in all
        .iter()
        .filter(|d| derived_hex(d, target, "new").is_some())
    {
        tracing::info!("dropping {new}, left by an interrupted refresh");
        drop_schema(c, new).await?;
    }
    Ok(())
}

/// Whether the `RENAME TABLE` of a journaled swap ran: it moves all tables or none.
async fn swap_happened(c: &mut Conn, j: &Journal, old: &str, new: &str) -> Result<bool> {
    if let Some(first) = j.old_tables.first() {
        return Ok(tables(c, old).await?.contains(first));
    }
    if let Some(first) = j.new_tables.first() {
        return Ok(!tables(c, new).await?.contains(first));
    }
    Ok(true)
}

/// Creates each captured trigger of `T` that is missing, on a table that is still there.
async fn restore_triggers(c: &mut Conn, target: &str, triggers: &[Object]) -> Result<()> {
    let have = objects::triggers_of(c, target).await?;
    let tables = tables(c, target).await?;
    for t in triggers {
        let table_there = t.table.as_ref().is_some_and(|tb| tables.contains(tb));
        if !have.contains(&t.name) && table_there {
            objects::create(c, target, t).await?;
        }
    }
    Ok(())
}

async fn finish(c: &mut Conn, target: &str, j: &Journal) -> Result<()> {
    objects::drop_all(c, target).await?;
    objects::create_all(c, target, &j.new_objects).await
}

/// Steps 4-9 of the module doc. Returns whether `T` existed before.
async fn swap(c: &mut Conn, target: &str, new: &str, old: &str) -> Result<bool> {
    let replaced = schemata(c).await?.iter().any(|d| d == target);
    if !replaced {
        let cs: Option<(String, String)> = c
            .exec_first(
                "SELECT default_character_set_name, default_collation_name \
                 FROM information_schema.schemata WHERE schema_name = ?",
                (new,),
            )
            .await?;
        let (charset, collation) = cs.unwrap_or(("utf8mb4".into(), "utf8mb4_general_ci".into()));
        c.query_drop(format!(
            "CREATE DATABASE {} CHARACTER SET {} COLLATE {}",
            q(target),
            q(&charset),
            q(&collation)
        ))
        .await
        .with_context(|| format!("creating {target}"))?;
    }
    let mut j = Journal {
        old_tables: tables(c, target).await?,
        new_tables: tables(c, new).await?,
        old_triggers: objects::triggers(c, target).await?,
        new_objects: objects::others(c, new, target).await?,
    };
    if j.old_tables.iter().any(|t| t == JOURNAL) {
        bail!("{target} has a table named {JOURNAL}, which refresh uses for its own bookkeeping");
    }
    let new_triggers = objects::triggers(c, new).await?;
    j.new_objects.extend(new_triggers.iter().cloned());
    c.query_drop(format!("CREATE DATABASE {} CHARACTER SET utf8mb4", q(old)))
        .await
        .with_context(|| format!("creating {old}"))?;
    let result = match swap_journaled(c, target, new, old, &j, &new_triggers).await {
        Ok(()) => Ok(replaced),
        // Decided by what the server holds, not by which statement reported the error.
        Err(Failure::BeforeRename(e)) if !swap_happened(c, &j, old, new).await.unwrap_or(false) => {
            // T still has its tables; put back the triggers the batch may have dropped.
            restore_triggers(c, target, &j.old_triggers)
                .await
                .with_context(|| format!("{e:#}; then restoring the triggers of {target} failed too; their definitions are kept in {old}.{JOURNAL}"))?;
            Err(e)
        }
        Err(Failure::BeforeRename(e)) => {
            tracing::warn!("{e:#}; but the tables were swapped all the same: finishing");
            finish(c, target, &j)
                .await
                .map(|()| replaced)
                .context(incomplete(target))
        }
        Err(Failure::AfterRename(e)) => Err(e.context(incomplete(target))),
    };
    kill_point("mysql-after-finish");
    if let Err(e) = drop_schema(c, old).await {
        tracing::warn!("could not drop {old} (the next refresh will): {e:#}");
    }
    result
}

fn incomplete(target: &str) -> String {
    format!("{target} has the new tables, but its triggers, views or routines could not all be recreated")
}

enum Failure {
    BeforeRename(anyhow::Error),
    AfterRename(anyhow::Error),
}

async fn swap_journaled(
    c: &mut Conn,
    target: &str,
    new: &str,
    old: &str,
    j: &Journal,
    new_triggers: &[Object],
) -> std::result::Result<(), Failure> {
    let before = Failure::BeforeRename;
    write_journal(c, old, j).await.map_err(before)?;
    for t in new_triggers {
        c.query_drop(format!("DROP TRIGGER {}.{}", q(new), q(&t.name)))
            .await
            .with_context(|| format!("dropping trigger {} in {new}", t.name))
            .map_err(before)?;
    }
    kill_point("mysql-before-rename");
    let old_views = views(c, target).await.map_err(before)?;
    tracing::info!("swapping the tables of {new} into {target}");
    kill_sessions(c, target).await.map_err(before)?;
    let batch = rename_batch(target, new, old, j, &old_views);
    if !batch.is_empty() {
        c.query_drop(&batch)
            .await
            .with_context(|| format!("swapping the tables of {new} into {target}"))
            .map_err(before)?;
    }
    kill_point("mysql-after-rename");
    finish(c, target, j).await.map_err(Failure::AfterRename)
}

/// `DROP TRIGGER`s of `T` and the one `RENAME TABLE`, as one batch (one round trip).
fn rename_batch(target: &str, new: &str, old: &str, j: &Journal, old_views: &[String]) -> String {
    let mut pairs: Vec<String> = Vec::new();
    for t in &j.old_tables {
        pairs.push(format!("{}.{} TO {}.{}", q(target), q(t), q(old), q(t)));
    }
    // A view cannot leave its database, but it can step aside within it.
    for (i, v) in old_views
        .iter()
        .filter(|v| j.new_tables.contains(v))
        .enumerate()
    {
        let aside = format!("offsite_old_view_{}_{i}", &old[old.len() - 4..]);
        pairs.push(format!(
            "{}.{} TO {}.{}",
            q(target),
            q(v),
            q(target),
            q(&aside)
        ));
    }
    for t in &j.new_tables {
        pairs.push(format!("{}.{} TO {}.{}", q(new), q(t), q(target), q(t)));
    }
    if pairs.is_empty() && j.old_triggers.is_empty() {
        return String::new();
    }
    let mut batch: Vec<String> = j
        .old_triggers
        .iter()
        .map(|t| format!("DROP TRIGGER {}.{}", q(target), q(&t.name)))
        .collect();
    if !pairs.is_empty() {
        batch.push(format!("RENAME TABLE {}", pairs.join(", ")));
    }
    batch.join(";\n")
}

fn run_post_sql(server: &Server, t: &Target, db: &str) -> Result<()> {
    for file in t.post_sql {
        tracing::info!("running post_sql {} in {db}", file.display());
        mariadb_file(server, db, file)?;
    }
    Ok(())
}

fn mariadb_file(server: &Server, db: &str, file: &Path) -> Result<()> {
    let name = format!("post_sql {} (mariadb)", file.display());
    let input = std::fs::File::open(file)
        .with_context(|| format!("opening post_sql {}", file.display()))?;
    // The guard keeps the password file alive until the client has finished.
    let (args, _defaults) = server.client_args()?;
    let mut cmd = Command::new("mariadb");
    cmd.args(&args)
        .args(["--default-character-set=utf8mb4", "--batch"])
        .arg(format!("--database={db}"));
    let mut child = Child::spawn(name.clone(), cmd, Stdio::from(input))?;
    let mut out = child.stdout()?;
    let drain = std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let finished = child.finish().with_context(|| format!("{name} failed"));
    let _ = drain.join();
    finished.map(|_| ())
}
