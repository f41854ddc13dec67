//! Listing snapshots of a store and loading their manifests.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use sequoia_openpgp::Cert;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::manifest::Manifest;
use super::{SnapshotId, MANIFEST_NAME};
use crate::crypto::{open_signed, DecryptionKeys};
use crate::error::usage;
use crate::store::{read_all, Store};

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    pub host: String,
    pub id: String,
    /// The manifest exists: every object was written and the snapshot was committed.
    pub complete: bool,
    pub objects: usize,
    pub stored_bytes: u64,
    /// It holds file-tree objects (`files/...`): only then can it depend on older snapshots.
    #[serde(skip)]
    pub has_trees: bool,
    /// The older snapshots a push in progress builds on (its `needs/<id>` markers).
    #[serde(skip)]
    pub needs: Vec<String>,
}

impl SnapshotInfo {
    pub fn dir(&self) -> String {
        super::dir(&self.host, &self.id)
    }
}

/// Every snapshot in the store (of one host, if given), oldest first.
pub fn list(store: &dyn Store, host: Option<&str>) -> Result<Vec<SnapshotInfo>> {
    let prefix = host.map(|h| format!("{h}/")).unwrap_or_default();
    let objects = store
        .list(&prefix)
        .with_context(|| format!("listing snapshots in {}", store.location()))?;
    let mut snaps: BTreeMap<(String, String), SnapshotInfo> = BTreeMap::new();
    for o in objects {
        let mut parts = o.key.splitn(3, '/');
        let (Some(h), Some(id), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id.parse::<SnapshotId>().is_err() {
            continue;
        }
        let s = snaps
            .entry((h.to_string(), id.to_string()))
            .or_insert_with(|| SnapshotInfo {
                host: h.to_string(),
                id: id.to_string(),
                complete: false,
                objects: 0,
                stored_bytes: 0,
                has_trees: false,
                needs: Vec::new(),
            });
        s.objects += 1;
        s.stored_bytes += o.size;
        if rest == MANIFEST_NAME {
            s.complete = true;
        }
        if rest.starts_with("files/") {
            s.has_trees = true;
        }
        if let Some(id) = rest.strip_prefix("needs/") {
            s.needs.push(id.to_string());
        }
    }
    let mut out: Vec<SnapshotInfo> = snaps.into_values().collect();
    out.sort_by(|a, b| a.id.cmp(&b.id).then(a.host.cmp(&b.host)));
    Ok(out)
}

/// Resolves `latest` or an id to a complete snapshot of `host`.
pub fn find(store: &dyn Store, host: &str, which: &str) -> Result<SnapshotInfo> {
    let snaps = list(store, Some(host))?;
    if which == "latest" {
        return snaps.into_iter().rev().find(|s| s.complete).ok_or_else(|| {
            usage(format!(
                "no complete snapshot of host {host} in {}",
                store.location()
            ))
        });
    }
    which
        .parse::<SnapshotId>()
        .map_err(|e| usage(e.to_string()))?;
    match snaps.into_iter().find(|s| s.id == which) {
        Some(s) if s.complete => Ok(s),
        Some(s) => Err(usage(format!(
            "snapshot {host}/{} is incomplete (no manifest: its push did not finish); it cannot be restored",
            s.id
        ))),
        None => Err(usage(format!("no snapshot {which} of host {host} in {}", store.location()))),
    }
}

/// The newest complete snapshot of `host` taken at or before `at` (by the time in its id).
pub fn find_at(store: &dyn Store, host: &str, at: OffsetDateTime) -> Result<SnapshotInfo> {
    let snaps = list(store, Some(host))?;
    let complete: Vec<SnapshotInfo> = snaps.into_iter().filter(|s| s.complete).collect();
    let time = |s: &SnapshotInfo| s.id.parse::<SnapshotId>().and_then(|i| i.time()).ok();
    let at_text = at.format(&Rfc3339).unwrap_or_default();
    match complete
        .iter()
        .rev()
        .find(|s| time(s).is_some_and(|t| t <= at))
    {
        Some(s) => Ok(s.clone()),
        None => Err(usage(match complete.first() {
            Some(oldest) => format!(
                "no complete snapshot of host {host} was taken at or before {at_text}; the oldest is {}",
                oldest.id
            ),
            None => format!("no complete snapshot of host {host} in {}", store.location()),
        })),
    }
}

/// A point in time as `--at` takes it: an age like duplicity's (`3D`, `2W`, `1M`, `12h`: that long
/// before `now`), an RFC 3339 time (`2026-11-20T14:00:00Z`, or without the zone for UTC), or a date
/// (`2026-11-20`: its start, UTC, as duplicity reads it).
pub fn parse_point_in_time(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime> {
    use time::macros::format_description;
    let t = s.trim();
    if let Ok(d) = crate::config::parse_duration(t) {
        return now
            .checked_sub(time::Duration::try_from(d).unwrap_or(time::Duration::MAX))
            .ok_or_else(|| usage(format!("--at {s}: too far back")));
    }
    if let Ok(at) = OffsetDateTime::parse(t, &Rfc3339) {
        return Ok(at);
    }
    let t2 = t.replace(' ', "T");
    if let Ok(at) = time::PrimitiveDateTime::parse(
        &t2,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    ) {
        return Ok(at.assume_utc());
    }
    if let Ok(at) = time::PrimitiveDateTime::parse(
        &t2,
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    ) {
        return Ok(at.assume_utc());
    }
    if let Ok(d) = time::Date::parse(t, format_description!("[year]-[month]-[day]")) {
        return Ok(d.midnight().assume_utc());
    }
    Err(usage(format!(
        "--at {s:?}: give an age (3D, 2W, 1M, 12h) or a time (2026-11-20T14:00:00Z, 2026-11-20)"
    )))
}

/// Decrypts a snapshot's manifest, checks its signature against the host's certificate and that it
/// describes the snapshot it was found in.
pub fn load_manifest(
    store: &dyn Store,
    snap: &SnapshotInfo,
    keys: &DecryptionKeys,
    signers: &[Cert],
) -> Result<Manifest> {
    let key = format!("{}{MANIFEST_NAME}", snap.dir());
    let sealed = read_all(store, &key)?;
    let (json, _signer) = open_signed(&sealed, keys, signers)
        .with_context(|| format!("checking the manifest {key} (signature and decryption)"))?;
    let manifest =
        Manifest::from_json(&json).with_context(|| format!("reading the manifest {key}"))?;
    if manifest.host != snap.host || manifest.snapshot != snap.id {
        bail!(
            "manifest {key} describes {}/{}, not the snapshot it was found in: refusing it",
            manifest.host,
            manifest.snapshot
        );
    }
    Ok(manifest)
}
