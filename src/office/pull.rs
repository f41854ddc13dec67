//! `pull`: copy new snapshots from the configured store (S3) into the offsite directory.
//!
//! Per snapshot: the manifest is fetched and its signature checked before any object is trusted; each
//! object is downloaded into a temporary file, hashed on a thread of its own (big ones in ranged
//! parts, see [`super::fetch`]), and renamed into place only when its size and sha256 match the
//! manifest; the manifest is written last, so the offsite copy
//! of a snapshot is complete exactly when it has its manifest. An object already present (committed by
//! an earlier, interrupted pull, hence checked then) is not downloaded again.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{anyhow, Result};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::context::Office;
use super::fetch;
use super::ledger::{Entry, Ledger};
use super::record::{Flood, Incomplete, PullHost, PullRecord, Suspect, PULL_FORMAT};
use crate::config::human;
use crate::snapshot::list::{
    list, list_with_unfinished, load_manifest_sealed, open_manifest, SnapshotInfo,
};
use crate::snapshot::manifest::ObjectEntry;
use crate::snapshot::trust::{self, Origin};
use crate::snapshot::{Manifest, MANIFEST_NAME};
use crate::store::{read_capped, Store};
use std::collections::HashMap;

pub fn pull(
    office: &Office,
    source: &dyn Store,
    only_host: Option<&str>,
    now: OffsetDateTime,
) -> Result<PullRecord> {
    let started = Instant::now();
    let mut hosts = Vec::new();
    for host in office.hosts(only_host)? {
        // After SIGINT/SIGTERM no record: the run did not finish, and what it copied is either
        // whole (each object committed on its own, the manifest last) or a hidden temporary file
        // that the writer removed. The next pull goes on from there.
        if let Some(sig) = crate::interrupt::received() {
            anyhow::bail!(
                "pull interrupted by {sig} before {host}: no pull record written; what was copied stays, the next pull goes on"
            );
        }
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
    if let Some(sig) = crate::interrupt::received() {
        anyhow::bail!(
            "pull interrupted by {sig}: no pull record written; what was copied stays, the next pull goes on"
        );
    }
    let record = PullRecord {
        format: PULL_FORMAT.into(),
        version: 1,
        ran_at: now.format(&Rfc3339)?,
        ok: hosts.iter().all(|h| h.ok),
        seconds: started.elapsed().as_secs_f64(),
        hosts,
    };
    if only_host.is_some() {
        record.save_merged(&office.offsite_dir)?;
    } else {
        record.save(&office.offsite_dir)?;
    }
    Ok(record)
}

fn pull_host(
    office: &Office,
    source: &dyn Store,
    host: &str,
    now: OffsetDateTime,
) -> Result<PullHost> {
    // With the writes that never finished: a push killed before its first object landed left
    // nothing else, and the report must still show it.
    let (mut remote, _) = list_with_unfinished(source, Some(host))?;
    let local: Vec<SnapshotInfo> = list(office.offsite.as_ref(), Some(host))?;
    let mut ledger = Ledger::load(&office.offsite_dir, host)?;
    let tolerance =
        time::Duration::try_from(office.office.clock_tolerance).unwrap_or(time::Duration::HOUR);
    let mut out = PullHost::new(host);
    let mut errors = Vec::new();
    let expected = expected_fingerprints(office)?;
    // The office's own keys read what they receive: a snapshot encrypted to a rotated-in office
    // key (listed in office.decryption_key) is no leak.
    let own: Vec<String> = office
        .decryption
        .fingerprints()
        .iter()
        .map(|f| f.to_ascii_uppercase())
        .collect();

    // Record what is new before anything is trusted: the store's time of each manifest, the
    // signature, and whether the claims fit. A manifest opened here is kept for the download.
    let mut opened: HashMap<String, (Manifest, Vec<u8>)> = HashMap::new();
    for snap in remote.iter().filter(|s| s.complete) {
        // A manifest the store received again, after the office first saw it: an overwrite (a
        // push credential without the If-None-Match deny), or a key freed by prune and written
        // anew. Either way it is not what was checked: quarantined, and never downloaded over the
        // copy the office already has.
        if let Some(e) = ledger.snapshots.get_mut(&snap.id) {
            let rewritten = e.time_from == "store"
                && e.quarantine.is_none()
                && snap.committed.is_some()
                && e.trusted() != snap.committed;
            if rewritten {
                let msg = format!(
                    "its manifest was written again at {} (the office first saw it at {}): an overwrite, or a re-creation after prune",
                    snap.committed
                        .and_then(|t| t.format(&Rfc3339).ok())
                        .unwrap_or_default(),
                    e.trusted_time
                );
                tracing::warn!("{host}/{}: QUARANTINED: {msg}", snap.id);
                e.quarantine = Some(msg);
            }
        }
        let known_good = ledger.snapshots.get(&snap.id).is_some_and(Entry::valid);
        let here = local.iter().any(|l| l.id == snap.id && l.complete);
        if known_good && here {
            continue;
        }
        // A store that does not answer says nothing about the signature: try again next run.
        let key = format!("{}{MANIFEST_NAME}", snap.dir());
        let sealed = match read_capped(source, &key, crate::snapshot::list::MAX_MANIFEST_BYTES) {
            Ok(b) => b,
            Err(e) => {
                errors.push(format!("{host}/{}: {e:#}", snap.id));
                continue;
            }
        };
        let result = open_manifest(&sealed, snap, &office.decryption, office.signers(host)?)
            .map(|m| (m, sealed));
        let entry = ledger_entry(
            ledger.snapshots.get(&snap.id),
            snap,
            result.as_ref().map(|(m, _)| m),
            now,
            tolerance,
        );
        if let Some(q) = entry.quarantine.as_ref().filter(|_| {
            ledger
                .snapshots
                .get(&snap.id)
                .is_none_or(|e| e.quarantine.is_none())
        }) {
            tracing::warn!("{host}/{}: QUARANTINED: {q}", snap.id);
        }
        if entry.valid() && !known_good {
            if let Some(w) = unexpected_recipients(&entry, &ledger, &expected, &own) {
                tracing::warn!("{host}/{}: {w}", snap.id);
                out.recipients.push(Suspect::new(snap, &w));
            }
        }
        ledger.snapshots.insert(snap.id.clone(), entry);
        if let (Ok(m), false) = (result, here) {
            opened.insert(snap.id.clone(), m);
        }
    }
    backfill_copy_only(office, host, &local, &remote, &mut ledger, tolerance, now);
    ledger.save(&office.offsite_dir)?;

    let mut judge = crate::snapshot::trust::Judge::bare(Origin::Source, tolerance);
    judge.known.extend(ledger.known());
    judge.assess(&mut remote);
    // The same setting prune waits for before it removes one: "abandoned" means one thing.
    let abandon_after = office.office.abandon_after.as_secs_f64() / 3600.0;
    for snap in &remote {
        if !snap.complete {
            let age = snap
                .trusted
                .map(|t| (now - t).as_seconds_f64() / 3600.0)
                .unwrap_or(0.0);
            out.incomplete.push(Incomplete {
                snapshot: snap.id.clone(),
                age_hours: age,
                abandoned: age > abandon_after,
                bytes: snap.stored_bytes + snap.unfinished_bytes,
                unfinished_writes: snap.unfinished_writes,
            });
            continue;
        }
        let entry = ledger.snapshots.get(&snap.id);
        if let Some(e) = entry.filter(|e| !e.valid()) {
            // Never downloaded: nothing of a snapshot the host did not sign is trusted.
            out.invalid.push(Suspect::new(snap, &e.signature));
            continue;
        }
        match &snap.quarantine {
            // Still copied: it is evidence, and the office keeps it until a person decides.
            Some(q) => out.quarantined.push(Suspect::new(snap, q)),
            None if snap.trusted.is_some() => {
                let newer = out
                    .newest_complete_trusted
                    .is_none_or(|t| Some(t) <= snap.trusted);
                if newer {
                    out.newest_complete = Some(snap.id.clone());
                    out.newest_complete_trusted = snap.trusted;
                    out.newest_complete_time = snap.trusted.and_then(|t| t.format(&Rfc3339).ok());
                }
            }
            None => {}
        }
        if local.iter().any(|l| l.id == snap.id && l.complete) {
            continue;
        }
        let opened = opened.remove(&snap.id);
        match pull_snapshot(office, source, snap, opened) {
            Ok((objects, bytes, skipped)) => {
                out.pulled.push(snap.id.clone());
                out.objects += objects;
                out.bytes += bytes;
                out.skipped_objects += skipped;
            }
            Err(e) => errors.push(format!("{host}/{}: {e:#}", snap.id)),
        }
    }
    out.floods = ledger
        .flood_days(now, office.office.max_snapshots_per_day)
        .into_iter()
        .map(|(day, n)| Flood {
            day: day.to_string(),
            snapshots: n,
            max: office.office.max_snapshots_per_day,
        })
        .collect();
    if !errors.is_empty() {
        out.ok = false;
        out.error = Some(errors.join("; "));
    }
    Ok(out)
}

/// The ledger entry for a snapshot pull lists: the first sighting's time is kept for ever; the
/// signature and the claims are judged from the manifest when it opened.
fn ledger_entry(
    previous: Option<&Entry>,
    snap: &SnapshotInfo,
    manifest: Result<&Manifest, &anyhow::Error>,
    now: OffsetDateTime,
    tolerance: time::Duration,
) -> Entry {
    let stamp = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    let (trusted, time_from, first_seen) = match previous {
        Some(p) => (
            p.trusted().unwrap_or(now),
            p.time_from.clone(),
            p.first_seen.clone(),
        ),
        None => match snap.committed {
            Some(t) => (t, "store".to_string(), stamp(now)),
            None => (now, "first_seen".to_string(), stamp(now)),
        },
    };
    let claimed = trust::claimed(&snap.id);
    let mut quarantine = claimed.and_then(|c| trust::misfit(c, trusted, tolerance));
    if claimed.is_none() {
        quarantine = Some("its id carries no readable time".into());
    }
    let (signature, started_at, finished_at) = match manifest {
        Ok(m) => {
            if quarantine.is_none() {
                quarantine = claims_misfit(m, claimed, trusted, tolerance);
            }
            (
                "valid".to_string(),
                Some(m.started_at.clone()),
                Some(m.finished_at.clone()),
            )
        }
        Err(e) => (format!("INVALID: {e:#}"), None, None),
    };
    let recipients = match manifest {
        Ok(m) => {
            let mut r: Vec<String> = m
                .recipients
                .iter()
                .chain(m.objects.iter().flat_map(|o| o.recipients.iter()))
                .map(|f| f.to_ascii_uppercase())
                .collect();
            r.sort();
            r.dedup();
            r
        }
        Err(_) => Vec::new(),
    };
    Entry {
        trusted_time: stamp(trusted),
        time_from,
        first_seen,
        signature,
        started_at,
        finished_at,
        // A quarantine stands until a person lifts it: checking again never clears one.
        quarantine: previous.and_then(|p| p.quarantine.clone()).or(quarantine),
        recipients,
    }
}

/// Recipients a snapshot names beyond what is expected: `office.expected_recipients` when set,
/// else the recipients of the host's previous good snapshot. An object encrypted to one more key
/// is readable by whoever holds it: a hacked host adding its own key, or a setup nobody told the
/// office about. The office's own decryption keys (`own`) are always allowed.
fn unexpected_recipients(
    entry: &Entry,
    ledger: &Ledger,
    expected: &[String],
    own: &[String],
) -> Option<String> {
    let (allowed, from): (Vec<String>, &str) = if expected.is_empty() {
        let prev = ledger.last_good_recipients(entry.trusted())?;
        (prev.to_vec(), "the host's previous good snapshot")
    } else {
        (expected.to_vec(), "office.expected_recipients")
    };
    let extra: Vec<&str> = entry
        .recipients
        .iter()
        .filter(|r| !allowed.contains(r) && !own.contains(r))
        .map(String::as_str)
        .collect();
    (!extra.is_empty()).then(|| {
        format!(
            "encrypted to {} beyond {from} ({})",
            extra.join(", "),
            allowed.join(", ")
        )
    })
}

/// The manifest's own times against its id and the store: the id is the start, and the store
/// received the manifest when the push finished.
fn claims_misfit(
    m: &Manifest,
    claimed: Option<OffsetDateTime>,
    trusted: OffsetDateTime,
    tolerance: time::Duration,
) -> Option<String> {
    let parse = |s: &str| OffsetDateTime::parse(s, &Rfc3339).ok();
    let Some(finished) = parse(&m.finished_at) else {
        return Some(format!(
            "its manifest's finished_at {:?} is not a time",
            m.finished_at
        ));
    };
    if (finished - trusted).abs() > tolerance {
        return Some(format!(
            "its manifest says it finished at {}, but the store received it at {} ({} apart): forged, or the host's clock was off",
            m.finished_at,
            trusted.format(&Rfc3339).unwrap_or_default(),
            trust::human(finished - trusted)
        ));
    }
    match (parse(&m.started_at), claimed) {
        (Some(started), Some(c)) if (started - c).abs() > time::Duration::seconds(1) => {
            Some(format!(
                "its manifest says it started at {}, but its id says {}",
                m.started_at,
                c.format(&Rfc3339).unwrap_or_default()
            ))
        }
        (None, _) => Some(format!(
            "its manifest's started_at {:?} is not a time",
            m.started_at
        )),
        _ => None,
    }
}

/// Snapshots only the offsite copy still holds, copied before the office kept a ledger: recorded
/// once, from the copy. Their time is the claim when it is not after the copy was made (the copy's
/// mtime bounds the commit from above), else they are quarantined.
fn backfill_copy_only(
    office: &Office,
    host: &str,
    local: &[SnapshotInfo],
    remote: &[SnapshotInfo],
    ledger: &mut Ledger,
    tolerance: time::Duration,
    now: OffsetDateTime,
) {
    let judge = crate::snapshot::trust::Judge::bare(Origin::Copy, tolerance);
    for snap in local.iter().filter(|s| s.complete) {
        if ledger.snapshots.contains_key(&snap.id) || remote.iter().any(|r| r.id == snap.id) {
            continue;
        }
        let Ok(signers) = office.signers(host) else {
            return;
        };
        let opened =
            load_manifest_sealed(office.offsite.as_ref(), snap, &office.decryption, signers);
        let mut assessed = [snap.clone()];
        judge.assess(&mut assessed);
        let [a] = assessed;
        let stamp = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        let (signature, started_at, finished_at) = match &opened {
            Ok((m, _)) => (
                "valid".to_string(),
                Some(m.started_at.clone()),
                Some(m.finished_at.clone()),
            ),
            Err(e) => (format!("INVALID: {e:#}"), None, None),
        };
        ledger.snapshots.insert(
            snap.id.clone(),
            Entry {
                trusted_time: stamp(a.trusted.unwrap_or(now)),
                time_from: "offsite_copy".into(),
                first_seen: stamp(now),
                signature,
                started_at,
                finished_at,
                quarantine: a.quarantine,
                recipients: Vec::new(),
            },
        );
    }
}

/// The fingerprints of `office.expected_recipients`, upper-case hex as manifests record them.
fn expected_fingerprints(office: &Office) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for path in &office.office.expected_recipients {
        for c in crate::crypto::keys::load_certs(path)? {
            out.push(c.fingerprint().to_hex().to_ascii_uppercase());
        }
    }
    out.sort();
    Ok(out)
}

/// Copies one complete snapshot. Returns (objects downloaded, bytes downloaded, objects skipped).
fn pull_snapshot(
    office: &Office,
    source: &dyn Store,
    snap: &SnapshotInfo,
    opened: Option<(Manifest, Vec<u8>)>,
) -> Result<(u64, u64, u64)> {
    let dir = snap.dir();
    // The signature first: nothing of a snapshot signed by an unknown key is downloaded.
    let (manifest, sealed) = match opened {
        Some(o) => o,
        None => load_manifest_sealed(
            source,
            snap,
            &office.decryption,
            office.signers(&snap.host)?,
        )?,
    };
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

/// Downloads the objects: each big one (see [`fetch`]) in ranged parts on `parallel_downloads`
/// connections, one after the other, then the others `parallel_downloads` at once. The first
/// failure stops new downloads.
fn download_all(
    office: &Office,
    source: &dyn Store,
    dir: &str,
    manifest: &Manifest,
    todo: &[&ObjectEntry],
) -> Result<()> {
    let plan = fetch::Plan::of(office);
    let (big, small): (Vec<&ObjectEntry>, Vec<&ObjectEntry>) = todo
        .iter()
        .copied()
        .partition(|o| plan.ranged(o.stored_size));
    let fail = |e: String, more: usize| {
        anyhow!(
            "{e}{}; the snapshot {}/{} is not complete in the offsite copy",
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            },
            manifest.host,
            manifest.snapshot
        )
    };
    for entry in big {
        let key = format!("{dir}{}", entry.key);
        fetch::download(office, source, &key, &entry.stored(), plan)
            .map_err(|e| fail(format!("{e:#}"), 0))?;
    }
    let next = AtomicUsize::new(0);
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let threads = plan.connections.min(small.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                if errors.lock().map(|e| !e.is_empty()).unwrap_or(true) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(entry) = small.get(i) else { return };
                let key = format!("{dir}{}", entry.key);
                if let Err(e) = fetch::download(office, source, &key, &entry.stored(), plan) {
                    if let Ok(mut errs) = errors.lock() {
                        errs.push(format!("{e:#}"));
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(first) = errors.first() {
        return Err(fail(first.clone(), errors.len() - 1));
    }
    Ok(())
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
