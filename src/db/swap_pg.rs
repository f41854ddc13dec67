//! PostgreSQL: restore into a new database, then rename it over the target in one transaction.
//!
//! Protocol, for target `T` with a fresh `<hex>`, `N = T_offsite_new_<hex>`, `O = T_offsite_old_<hex>`:
//! 1. Connect to a database other than `T` and take the advisory lock `offsite-refresh:T` (a
//!    session lock: it goes away with the connection, also when we are killed). A second refresh of
//!    the same target fails at once instead of dropping the first one's work database.
//! 2. Repair: if `T` is missing and exactly one `T_offsite_old_*` exists, rename it back to `T`.
//!    Drop every other `T_offsite_new_*` and `T_offsite_old_*` (`WITH (FORCE)`: a psql of a killed
//!    run may still be connected).
//! 3. `restore_db` creates `N` and streams the dump into it (it drops `N` itself on failure).
//! 4. post_sql: `psql -v ON_ERROR_STOP=1 -f FILE` against `N`, in order. On failure `N` is dropped.
//! 5. `N` gets `T`'s owner, so whoever owned the dev database still owns it.
//! 6. One transaction: terminate the sessions on `T` and `N`, `ALTER DATABASE T RENAME TO O`,
//!    `ALTER DATABASE N RENAME TO T`, commit. (`ALTER DATABASE ... RENAME` is allowed in a
//!    transaction block; only CREATE/DROP DATABASE are not.) The renames lock the databases, so a
//!    connection attempt in between waits for the commit; one that slipped in before the lock makes
//!    the rename fail with `object_in_use`, and the transaction is retried a few times. Without an
//!    old `T` it is the single rename `N` -> `T`.
//! 7. `DROP DATABASE O WITH (FORCE)`.
//!
//! Killed at any point:
//! - during 1-5: `T` is untouched; `N` (if created) is left and step 2 of the next run drops it.
//! - during 6: the server rolls the transaction back when our connection goes; `T` is untouched.
//!   There is no moment without a `T`: both renames commit together.
//! - after 6: `T` is the new database, complete with post_sql applied; `O` is left and step 2 of the
//!   next run drops it.
//!
//! If the commit's outcome is unknown (the connection broke during COMMIT), dropping `N` by name is
//! still right: after a successful commit no database has that name any more.
//!
//! Not carried over from the old `T`: database-level grants (`GRANT CONNECT ...`) and settings
//! (`ALTER DATABASE ... SET`). The dump holds everything inside the database.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::pg::{client_command, connect};
use super::quote::pg as quote;
use super::{
    derived_hex, kill_point, new_name, old_name, random_hex, RestoreInto, Swapped, Target,
};
use crate::process::output;

const SWAP_ATTEMPTS: u32 = 5;

pub fn refresh(rt: &tokio::runtime::Handle, t: &Target, restore: &RestoreInto) -> Result<Swapped> {
    let target = t.database;
    let mut admin = rt.block_on(connect(
        t.url,
        t.password,
        Some(&admin_database(t.url, target)),
    ))?;
    rt.block_on(lock(&admin, target))?;
    rt.block_on(repair(&admin, target))?;
    let hex = loop {
        let hex = random_hex();
        if !rt.block_on(exists(&admin, &new_name(target, &hex)))?
            && !rt.block_on(exists(&admin, &old_name(target, &hex)))?
        {
            break hex;
        }
    };
    let new = new_name(target, &hex);
    let old = old_name(target, &hex);

    let started = Instant::now();
    let bytes = restore(&new)?;
    let restore_seconds = started.elapsed().as_secs_f64();
    kill_point("pg-after-restore");

    let started = Instant::now();
    let prepared = run_post_sql(t, &new).and_then(|()| {
        kill_point("pg-after-post-sql");
        rt.block_on(copy_owner(&admin, target, &new))
    });
    let post_sql_seconds = started.elapsed().as_secs_f64();
    let swapped = prepared.and_then(|()| rt.block_on(swap(&mut admin, target, &new, &old)));
    let replaced = match swapped {
        Ok(r) => r,
        Err(e) => {
            if let Err(d) = rt.block_on(drop_database(&admin, &new)) {
                tracing::warn!("could not drop {new} (the next refresh will): {d:#}");
            }
            return Err(e);
        }
    };
    kill_point("pg-after-swap");
    if replaced {
        if let Err(e) = rt.block_on(drop_database(&admin, &old)) {
            tracing::warn!(
                "could not drop the replaced database {old} (the next refresh will): {e:#}"
            );
        }
    }
    Ok(Swapped {
        bytes,
        restore_seconds,
        post_sql_seconds,
        replaced,
    })
}

/// The URL's database unless it is the target (a database cannot be renamed by a session on it).
fn admin_database(url: &str, target: &str) -> String {
    let named = url::Url::parse(url).ok().and_then(|u| {
        let db = percent_encoding::percent_decode_str(u.path().trim_start_matches('/'))
            .decode_utf8_lossy()
            .into_owned();
        (!db.is_empty()).then_some(db)
    });
    match named {
        Some(db) if db != target && !db.starts_with(&format!("{target}_offsite_")) => db,
        _ => "postgres".to_string(),
    }
}

/// A 64-bit advisory lock key for the target, stable across runs and machines.
fn lock_key(target: &str) -> i64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("offsite-refresh:{target}"));
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b)
}

async fn lock(admin: &Client, target: &str) -> Result<()> {
    let got: bool = admin
        .query_one("SELECT pg_try_advisory_lock($1)", &[&lock_key(target)])
        .await
        .context("taking the refresh lock")?
        .get(0);
    if !got {
        bail!("another refresh of {target} is running on this server (advisory lock held); try again when it has finished");
    }
    Ok(())
}

async fn exists(admin: &Client, name: &str) -> Result<bool> {
    Ok(admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some())
}

async fn drop_database(admin: &Client, name: &str) -> Result<()> {
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote(name)
        ))
        .await
        .with_context(|| format!("dropping {name}"))
}

/// Puts right what a killed refresh left: the target back if only its old copy exists, then drops
/// every work database of earlier runs.
async fn repair(admin: &Client, target: &str) -> Result<()> {
    let names: Vec<String> = admin
        .query("SELECT datname FROM pg_database", &[])
        .await
        .context("listing databases")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut olds: Vec<&String> = names
        .iter()
        .filter(|n| derived_hex(n, target, "old").is_some())
        .collect();
    let news = names
        .iter()
        .filter(|n| derived_hex(n, target, "new").is_some());
    if !names.iter().any(|n| n == target) && !olds.is_empty() {
        if olds.len() > 1 {
            let list: Vec<&str> = olds.iter().map(|s| s.as_str()).collect();
            bail!(
                "{target} is missing and there are several old copies ({}): rename the right one to {target} by hand",
                list.join(", ")
            );
        }
        let old = olds.remove(0);
        tracing::warn!("{target} is missing: renaming {old}, the copy a killed refresh left, back");
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {} RENAME TO {}",
                quote(old),
                quote(target)
            ))
            .await
            .with_context(|| format!("renaming {old} back to {target}"))?;
    }
    for stale in news.chain(olds) {
        tracing::info!("dropping {stale}, left by an interrupted refresh");
        drop_database(admin, stale).await?;
    }
    Ok(())
}

fn run_post_sql(t: &Target, db: &str) -> Result<()> {
    for file in t.post_sql {
        tracing::info!("running post_sql {} in {db}", file.display());
        psql_file(t, db, file)?;
    }
    Ok(())
}

fn psql_file(t: &Target, db: &str, file: &Path) -> Result<()> {
    let mut cmd = client_command("psql", t.url, t.password, db)?;
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password", "-f"])
        .arg(file);
    output(&format!("post_sql {} (psql)", file.display()), cmd)?;
    Ok(())
}

/// Gives `new` the owner of `target`. A failure is only a warning: the data is right either way.
async fn copy_owner(admin: &Client, target: &str, new: &str) -> Result<()> {
    let rows = admin
        .query(
            "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = ANY($1)",
            &[&vec![target, new]],
        )
        .await?;
    let owner_of = |db: &str| {
        rows.iter()
            .find(|r| r.get::<_, String>(0) == db)
            .map(|r| r.get::<_, String>(1))
    };
    if let (Some(old_owner), Some(new_owner)) = (owner_of(target), owner_of(new)) {
        if old_owner != new_owner {
            if let Err(e) = admin
                .batch_execute(&format!(
                    "ALTER DATABASE {} OWNER TO {}",
                    quote(new),
                    quote(&old_owner)
                ))
                .await
            {
                tracing::warn!("{target} was owned by {old_owner}; the refreshed one is owned by {new_owner}: {e}");
            }
        }
    }
    Ok(())
}

/// The atomic swap. Returns whether an old target was replaced.
async fn swap(admin: &mut Client, target: &str, new: &str, old: &str) -> Result<bool> {
    tracing::info!("swapping {new} in for {target}");
    let mut attempt = 0;
    loop {
        attempt += 1;
        match swap_once(admin, target, new, old).await {
            Ok(replaced) => return Ok(replaced),
            Err(e) if attempt < SWAP_ATTEMPTS && e.code() == Some(&SqlState::OBJECT_IN_USE) => {
                tracing::info!("a session connected to {target} during the swap; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(anyhow!(e)).with_context(|| format!("swapping {new} in for {target}"))
            }
        }
    }
}

async fn swap_once(
    admin: &mut Client,
    target: &str,
    new: &str,
    old: &str,
) -> std::result::Result<bool, tokio_postgres::Error> {
    let tx = admin.transaction().await?;
    let replaced = tx
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&target])
        .await?
        .is_some();
    tx.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = ANY($1) AND pid <> pg_backend_pid()",
        &[&vec![target, new]],
    )
    .await?;
    if replaced {
        tx.batch_execute(&format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote(target),
            quote(old)
        ))
        .await?;
    }
    tx.batch_execute(&format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote(new),
        quote(target)
    ))
    .await?;
    tx.commit().await?;
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_database_is_never_the_target() {
        assert_eq!(admin_database("postgres://u@h/", "shop_dev"), "postgres");
        assert_eq!(
            admin_database("postgres://u@h/shop_dev", "shop_dev"),
            "postgres"
        );
        assert_eq!(admin_database("postgres://u@h/tools", "shop_dev"), "tools");
        assert_ne!(lock_key("a_dev"), lock_key("b_dev"));
    }
}
