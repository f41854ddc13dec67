//! Scratch databases for verify: created per database under test, always dropped afterwards.
//!
//! Every scratch database is registered in `<offsite_dir>/reports/scratch/<name>.json` (with our pid)
//! before it is created and unregistered after it is dropped. A verify that was killed (SIGKILL, power
//! loss) leaves its registration behind; the next run drops exactly those databases whose registering
//! process is gone, and nothing it does not own. After SIGINT or SIGTERM the interrupted restore drops
//! its database on its failure path, and [`drop_on_interrupt`] drops whatever is still registered
//! before the process exits (130 or 143).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Server;
use crate::db::session::Session;
use crate::snapshot::manifest::Engine;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScratchDb {
    pub engine: Engine,
    pub server_url: String,
    pub name: String,
    pub pid: u32,
    pub created_at: String,
}

/// Scratch databases of this process, for [`drop_on_interrupt`].
static ACTIVE: Mutex<Vec<(ScratchDb, Option<crate::config::Secret>)>> = Mutex::new(Vec::new());

fn registry(offsite_dir: &Path) -> PathBuf {
    super::record::reports_dir(offsite_dir).join("scratch")
}

/// `offsite_verify_<host>_<db>_<4 hex>`, lower-case, at most 63 bytes (PostgreSQL's limit; MySQL's is 64).
pub fn scratch_name(host: &str, db: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut base = format!("offsite_verify_{}_{}", clean(host), clean(db));
    base.truncate(63 - 5);
    format!("{base}_{:04x}", rand::random::<u16>())
}

/// Records that we are about to create `name`, so a killed run can be cleaned up after.
pub fn register(
    offsite_dir: &Path,
    engine: Engine,
    server: &Server,
    name: &str,
) -> Result<ScratchDb> {
    // Checked under the lock the last-resort drop reads: a database registered after that drop
    // ran would be left behind.
    let mut active = ACTIVE.lock().unwrap_or_else(|p| p.into_inner());
    crate::interrupt::check()
        .with_context(|| format!("not creating the scratch database {name}"))?;
    let s = ScratchDb {
        engine,
        server_url: server.url.clone(),
        name: name.to_string(),
        pid: std::process::id(),
        created_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    };
    super::record::write_atomic(
        &registry(offsite_dir).join(format!("{name}.json")),
        &serde_json::to_vec_pretty(&s)?,
    )?;
    active.push((s.clone(), server.password.clone()));
    Ok(s)
}

/// Drops a scratch database and forgets it.
pub fn drop_scratch(
    rt: &tokio::runtime::Handle,
    offsite_dir: &Path,
    s: &ScratchDb,
    password: Option<&crate::config::Secret>,
) -> Result<()> {
    drop_db(rt, s, password)
        .with_context(|| format!("dropping scratch database {} on {}", s.name, s.server_url))?;
    let file = registry(offsite_dir).join(format!("{}.json", s.name));
    match std::fs::remove_file(&file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", file.display())),
    }
    if let Ok(mut a) = ACTIVE.lock() {
        a.retain(|(x, _)| x.name != s.name);
    }
    Ok(())
}

fn drop_db(
    rt: &tokio::runtime::Handle,
    s: &ScratchDb,
    password: Option<&crate::config::Secret>,
) -> Result<()> {
    rt.block_on(async {
        let mut c = Session::open(s.engine, &s.server_url, password, None).await?;
        c.drop_database(&s.name).await?;
        c.close().await;
        Ok(())
    })
}

fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Drops the scratch databases that killed earlier runs left behind. Returns their names.
pub fn cleanup_stale(
    rt: &tokio::runtime::Handle,
    offsite_dir: &Path,
    password_for: &dyn Fn(&str) -> Option<crate::config::Secret>,
) -> Result<Vec<String>> {
    let dir = registry(offsite_dir);
    let mut cleaned = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(cleaned);
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let s: ScratchDb = match std::fs::read(&p)
            .map_err(anyhow::Error::from)
            .and_then(|d| Ok(serde_json::from_slice(&d)?))
        {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(
                    "ignoring unreadable scratch registration {}: {err}",
                    p.display()
                );
                continue;
            }
        };
        if s.pid == std::process::id() || alive(s.pid) {
            continue;
        }
        let password = password_for(&s.server_url);
        drop_scratch(rt, offsite_dir, &s, password.as_ref())?;
        tracing::info!(
            "dropped the stale scratch database {} on {} (left by a killed verify, pid {})",
            s.name,
            s.server_url,
            s.pid
        );
        cleaned.push(s.name);
    }
    Ok(cleaned)
}

/// When a run ends after SIGINT or SIGTERM (cleanly or by the watchdog of
/// [`crate::interrupt`]): drops this process's scratch databases that are still registered. The
/// registrations stay if a drop fails, so the next verify retries. On a second signal there is no
/// time: the databases are only named.
pub fn drop_on_interrupt(offsite_dir: PathBuf) {
    crate::interrupt::on_exit(move |clean| {
        let active: Vec<_> = ACTIVE
            .lock()
            .map(|a| a.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let left_name = |s: &ScratchDb, why: &str| {
            format!(
                "scratch database {} on {} ({why}the next verify drops it)",
                s.name, s.server_url
            )
        };
        if active.is_empty() {
            return Vec::new();
        }
        if !clean {
            return active.iter().map(|(s, _)| left_name(s, "")).collect();
        }
        // A runtime of its own: the command's may be gone, or busy with what was interrupted.
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let why = format!("no runtime to drop it: {e}; ");
                return active.iter().map(|(s, _)| left_name(s, &why)).collect();
            }
        };
        let mut left = Vec::new();
        for (s, pw) in &active {
            match drop_scratch(rt.handle(), &offsite_dir, s, pw.as_ref()) {
                Ok(()) => eprintln!("interrupted: dropped scratch database {}", s.name),
                Err(e) => left.push(left_name(s, &format!("{e:#}; "))),
            }
        }
        left
    });
}
