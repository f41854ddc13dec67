//! Listing snapshots of a store and loading their manifests.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use sequoia_openpgp::Cert;
use serde::Serialize;

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
            });
        s.objects += 1;
        s.stored_bytes += o.size;
        if rest == MANIFEST_NAME {
            s.complete = true;
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
