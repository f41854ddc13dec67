//! `pull`: copy new snapshots from the configured store (S3) into the offsite directory.
//!
//! Per snapshot: the manifest is fetched and its signature checked before any object is trusted; each
//! object streams through a check of its sha256 against the manifest into a temporary file that is
//! renamed into place only when the hash matched; the manifest is written last, so the offsite copy
//! of a snapshot is complete exactly when it has its manifest. An object already present (committed by
//! an earlier, interrupted pull, hence checked then) is not downloaded again.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::context::Office;
use super::record::{Incomplete, PullHost, PullRecord, PULL_FORMAT};
use crate::config::human;
use crate::pipeline::digest::VerifyingReader;
use crate::snapshot::list::{list, load_manifest, SnapshotInfo};
use crate::snapshot::{Manifest, SnapshotId, MANIFEST_NAME};
use crate::store::{read_all, Store};

/// An incomplete snapshot older than this is a push that died, not one in progress.
pub const ABANDONED_AFTER_HOURS: f64 = 24.0;

pub fn pull(
    office: &Office,
    source: &dyn Store,
    only_host: Option<&str>,
    now: OffsetDateTime,
) -> Result<PullRecord> {
    let started = Instant::now();
    let mut hosts = Vec::new();
    for host in office.hosts(only_host)? {
        let h = pull_host(office, source, &host, now).unwrap_or_else(|e| PullHost {
            ok: false,
            error: Some(format!("{e:#}")),
            ..PullHost::new(&host)
        });
        if let Some(e) = &h.error {
            tracing::error!("pull {host}: {e}");
        }
        hosts.push(h);
    }
    let record = PullRecord {
        format: PULL_FORMAT.into(),
        version: 1,
        ran_at: now.format(&Rfc3339)?,
        ok: hosts.iter().all(|h| h.ok),
        seconds: started.elapsed().as_secs_f64(),
        hosts,
    };
    record.save(&office.offsite_dir)?;
    Ok(record)
}

fn pull_host(
    office: &Office,
    source: &dyn Store,
    host: &str,
    now: OffsetDateTime,
) -> Result<PullHost> {
    let remote = list(source, Some(host))?;
    let local: Vec<SnapshotInfo> = list(office.offsite.as_ref(), Some(host))?;
    let mut out = PullHost::new(host);
    let mut errors = Vec::new();
    for snap in &remote {
        if !snap.complete {
            let age = snapshot_age_hours(&snap.id, now);
            out.incomplete.push(Incomplete {
                snapshot: snap.id.clone(),
                age_hours: age,
                abandoned: age > ABANDONED_AFTER_HOURS,
            });
            continue;
        }
        out.newest_complete = Some(snap.id.clone());
        out.newest_complete_time = snap
            .id
            .parse::<SnapshotId>()
            .ok()
            .and_then(|i| i.time().ok())
            .and_then(|t| t.format(&Rfc3339).ok());
        if local.iter().any(|l| l.id == snap.id && l.complete) {
            continue;
        }
        match pull_snapshot(office, source, snap) {
            Ok((objects, bytes, skipped)) => {
                out.pulled.push(snap.id.clone());
                out.objects += objects;
                out.bytes += bytes;
                out.skipped_objects += skipped;
            }
            Err(e) => errors.push(format!("{host}/{}: {e:#}", snap.id)),
        }
    }
    if !errors.is_empty() {
        out.ok = false;
        out.error = Some(errors.join("; "));
    }
    Ok(out)
}

fn snapshot_age_hours(id: &str, now: OffsetDateTime) -> f64 {
    id.parse::<SnapshotId>()
        .ok()
        .and_then(|i| i.time().ok())
        .map(|t| (now - t).as_seconds_f64() / 3600.0)
        .unwrap_or(0.0)
}

/// Copies one complete snapshot. Returns (objects downloaded, bytes downloaded, objects skipped).
fn pull_snapshot(
    office: &Office,
    source: &dyn Store,
    snap: &SnapshotInfo,
) -> Result<(u64, u64, u64)> {
    let dir = snap.dir();
    // The signature first: nothing of a snapshot signed by an unknown key is downloaded.
    let manifest = load_manifest(
        source,
        snap,
        &office.decryption,
        office.signers(&snap.host)?,
    )?;
    let sealed = read_all(source, &format!("{dir}{MANIFEST_NAME}"))?;
    remove_stale_partials(&office.offsite_dir.join(&snap.host).join(&snap.id));
    let present: std::collections::HashMap<String, u64> = office
        .offsite
        .list(&dir)?
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    let todo: Vec<_> = manifest
        .objects
        .iter()
        .filter(|o| present.get(&format!("{dir}{}", o.key)) != Some(&o.stored_size))
        .collect();
    let skipped = (manifest.objects.len() - todo.len()) as u64;
    let total: u64 = todo.iter().map(|o| o.stored_size).sum();
    tracing::info!(
        "pull {}/{}: {} objects, {} ({} already here)",
        snap.host,
        snap.id,
        todo.len(),
        human(total),
        skipped
    );
    download_all(office, source, &dir, &manifest, &todo)?;
    let mut w = office.offsite.create(&format!("{dir}{MANIFEST_NAME}"))?;
    w.write_all(&sealed)?;
    w.commit()?;
    Ok((todo.len() as u64, total, skipped))
}

/// Downloads objects on `parallel_downloads` threads; the first failure stops new downloads.
fn download_all(
    office: &Office,
    source: &dyn Store,
    dir: &str,
    manifest: &Manifest,
    todo: &[&crate::snapshot::manifest::ObjectEntry],
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let done_bytes = AtomicU64::new(0);
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let threads = office.office.parallel_downloads.min(todo.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                if errors.lock().map(|e| !e.is_empty()).unwrap_or(true) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(entry) = todo.get(i) else { return };
                let key = format!("{dir}{}", entry.key);
                match download(office, source, &key, entry) {
                    Ok(n) => {
                        done_bytes.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if let Ok(mut errs) = errors.lock() {
                            errs.push(format!("{e:#}"));
                        }
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(first) = errors.first() {
        return Err(anyhow!(
            "{first}{}; the snapshot {}/{} is not complete in the offsite copy",
            if errors.len() > 1 {
                format!(" (and {} more)", errors.len() - 1)
            } else {
                String::new()
            },
            manifest.host,
            manifest.snapshot
        ));
    }
    Ok(())
}

fn download(
    office: &Office,
    source: &dyn Store,
    key: &str,
    entry: &crate::snapshot::manifest::ObjectEntry,
) -> Result<u64> {
    let reader = source
        .open(key)
        .with_context(|| format!("downloading {key}"))?;
    // A mismatch surfaces as a read error at the end, before the object is committed.
    let mut checked = VerifyingReader::new(
        reader,
        entry.stored(),
        format!("object {key} in {}", source.location()),
    );
    let mut w = office.offsite.create(key)?;
    let n = std::io::copy(&mut checked, &mut w).with_context(|| format!("downloading {key}"))?;
    w.commit()
        .with_context(|| format!("storing {key} in the offsite copy"))?;
    Ok(n)
}

/// Temporary files left by a killed pull: the local store names them `.<name>.partial-<hex>`.
fn remove_stale_partials(dir: &std::path::Path) {
    fn walk(dir: &std::path::Path) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                walk(&p);
            } else if name.starts_with('.') && name.contains(".partial-") {
                if let Err(err) = std::fs::remove_file(&p) {
                    tracing::warn!(
                        "cannot remove the stale partial download {}: {err}",
                        p.display()
                    );
                }
            }
        }
    }
    walk(dir);
}
