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
use crate::store::{read_capped, Store, Unfinished};

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
    /// The store's own time of the manifest (S3 `LastModified`, a local file's mtime): when the
    /// store received the commit. Production cannot choose it.
    #[serde(skip)]
    pub committed: Option<OffsetDateTime>,
    /// The store's time of the newest object: a push still writing keeps this young.
    #[serde(skip)]
    pub last_write: Option<OffsetDateTime>,
    /// What the office trusts as the snapshot's time, once [`super::trust::Judge`] has assessed
    /// it: never the time production claims.
    #[serde(skip)]
    pub trusted: Option<OffsetDateTime>,
    /// Why the snapshot is quarantined: what it claims does not fit what the store saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
    /// Complete, but the office's ledger has no record of it yet (pull has not checked its
    /// signature): retention does not count it.
    #[serde(skip)]
    pub unchecked: bool,
    /// Writes its push began and never finished (see [`Unfinished`]): only when listed with
    /// [`list_with_unfinished`].
    #[serde(skip_serializing_if = "is_zero")]
    pub unfinished_writes: usize,
    /// What those hold, as far as the store can tell.
    #[serde(skip_serializing_if = "is_zero")]
    pub unfinished_bytes: u64,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

impl SnapshotInfo {
    pub fn dir(&self) -> String {
        super::dir(&self.host, &self.id)
    }

    fn empty(host: &str, id: &str) -> Self {
        SnapshotInfo {
            host: host.to_string(),
            id: id.to_string(),
            complete: false,
            objects: 0,
            stored_bytes: 0,
            has_trees: false,
            needs: Vec::new(),
            committed: None,
            last_write: None,
            trusted: None,
            quarantine: None,
            unchecked: false,
            unfinished_writes: 0,
            unfinished_bytes: 0,
        }
    }
}

/// `(host, id)` of a key `<host>/<id>/...` whose id is a snapshot id.
fn snapshot_of(key: &str) -> Option<(&str, &str, &str)> {
    let mut parts = key.splitn(3, '/');
    let (h, id, rest) = (parts.next()?, parts.next()?, parts.next()?);
    id.parse::<SnapshotId>().ok()?;
    Some((h, id, rest))
}

/// Every snapshot in the store (of one host, if given), oldest first.
pub fn list(store: &dyn Store, host: Option<&str>) -> Result<Vec<SnapshotInfo>> {
    let prefix = host.map(|h| format!("{h}/")).unwrap_or_default();
    let objects = store
        .list(&prefix)
        .with_context(|| format!("listing snapshots in {}", store.location()))?;
    let mut snaps: BTreeMap<(String, String), SnapshotInfo> = BTreeMap::new();
    for o in objects {
        let Some((h, id, rest)) = snapshot_of(&o.key) else {
            continue;
        };
        let s = snaps
            .entry((h.to_string(), id.to_string()))
            .or_insert_with(|| SnapshotInfo::empty(h, id));
        s.objects += 1;
        s.stored_bytes += o.size;
        if o.modified > s.last_write {
            s.last_write = o.modified;
        }
        if rest == MANIFEST_NAME {
            s.complete = true;
            s.committed = o.modified;
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

/// [`list`], and the writes under the same prefix that began and never finished, counted into
/// their snapshots: a push killed before its first object landed leaves a snapshot that holds
/// nothing else, which is listed (incomplete) only this way. Its age is then the store's time of
/// its newest write, finished or not, so a write still in progress keeps it young.
pub fn list_with_unfinished(
    store: &dyn Store,
    host: Option<&str>,
) -> Result<(Vec<SnapshotInfo>, Vec<Unfinished>)> {
    let mut snaps = list(store, host)?;
    let prefix = host.map(|h| format!("{h}/")).unwrap_or_default();
    let writes = store.unfinished(&prefix)?;
    for w in &writes {
        let Some((h, id, _)) = snapshot_of(&w.key) else {
            continue;
        };
        let pos = match snaps.iter().position(|s| s.host == h && s.id == id) {
            Some(p) => p,
            None => {
                snaps.push(SnapshotInfo::empty(h, id));
                snaps.len() - 1
            }
        };
        let s = &mut snaps[pos];
        s.unfinished_writes += 1;
        s.unfinished_bytes += w.size.unwrap_or(0);
        if w.modified > s.last_write {
            s.last_write = w.modified;
        }
    }
    snaps.sort_by(|a, b| a.id.cmp(&b.id).then(a.host.cmp(&b.host)));
    Ok((snaps, writes))
}

/// The unfinished writes of one snapshot, from [`list_with_unfinished`]'s second list.
pub fn writes_of<'a>(
    writes: &'a [Unfinished],
    host: &'a str,
    id: &'a str,
) -> impl Iterator<Item = &'a Unfinished> + 'a {
    writes
        .iter()
        .filter(move |w| snapshot_of(&w.key).is_some_and(|(h, i, _)| h == host && i == id))
}

/// Which snapshot a command works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// The newest trustworthy one: complete, not quarantined, validly signed, by trusted time.
    Latest,
    /// Exactly this id, whatever its state (the caller reports a quarantine).
    Id(String),
    /// The newest trustworthy one the store received at or before this time.
    At(OffsetDateTime),
}

impl Which {
    /// `latest` or a snapshot id.
    pub fn parse(s: &str) -> Result<Self> {
        if s == "latest" {
            return Ok(Which::Latest);
        }
        s.parse::<SnapshotId>().map_err(|e| usage(e.to_string()))?;
        Ok(Which::Id(s.to_string()))
    }
}

/// A chosen snapshot, its manifest (signature checked), and the newer ones passed over, with why.
pub struct Picked {
    pub info: SnapshotInfo,
    pub manifest: Manifest,
    pub skipped: Vec<String>,
}

/// Resolves `which` among `snaps` (one host's, assessed by a [`super::trust::Judge`]). `open`
/// loads a manifest and checks its signature: for `latest` and `--at`, a snapshot whose manifest
/// does not open is skipped, never chosen and never blocking, so anyone with put access to the
/// store cannot stop restores by writing a newer snapshot.
pub fn pick(
    location: &str,
    host: &str,
    mut snaps: Vec<SnapshotInfo>,
    which: &Which,
    open: &dyn Fn(&SnapshotInfo) -> Result<Manifest>,
) -> Result<Picked> {
    if let Which::Id(id) = which {
        return match snaps.into_iter().find(|s| &s.id == id) {
            Some(s) if s.complete => {
                let manifest = open(&s)?;
                Ok(Picked {
                    info: s,
                    manifest,
                    skipped: Vec::new(),
                })
            }
            Some(s) => Err(usage(format!(
                "snapshot {host}/{} is incomplete (no manifest: its push did not finish); it cannot be restored",
                s.id
            ))),
            None => Err(usage(format!("no snapshot {id} of host {host} in {location}"))),
        };
    }
    let quarantined = snaps
        .iter()
        .filter(|s| s.complete && s.quarantine.is_some())
        .count();
    snaps.retain(super::trust::countable);
    snaps.sort_by(|a, b| a.trusted.cmp(&b.trusted).then_with(|| a.id.cmp(&b.id)));
    let oldest = snaps.first().map(|s| s.id.clone());
    if let Which::At(at) = which {
        snaps.retain(|s| s.trusted.is_some_and(|t| t <= *at));
    }
    let mut skipped = Vec::new();
    for s in snaps.into_iter().rev() {
        match open(&s) {
            Ok(manifest) => {
                return Ok(Picked {
                    info: s,
                    manifest,
                    skipped,
                })
            }
            Err(e) => {
                let msg = format!("skipped {host}/{}: {e:#}", s.id);
                tracing::warn!("{msg}");
                skipped.push(msg);
            }
        }
    }
    let mut why = Vec::new();
    if quarantined > 0 {
        why.push(format!("{quarantined} quarantined"));
    }
    if !skipped.is_empty() {
        why.push(format!(
            "{} whose manifest does not open ({})",
            skipped.len(),
            skipped.join("; ")
        ));
    }
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(" ({}; see `offsite snapshots`)", why.join(", "))
    };
    Err(usage(match (which, oldest) {
        (Which::At(at), Some(oldest)) => format!(
            "no complete snapshot of host {host} was taken at or before {}; the oldest is {oldest}{why}",
            at.format(&Rfc3339).unwrap_or_default()
        ),
        _ => format!("no complete snapshot of host {host} in {location}{why}"),
    }))
}

/// Looks up one snapshot by id: it must exist and be complete.
pub fn find(store: &dyn Store, host: &str, id: &str) -> Result<SnapshotInfo> {
    id.parse::<SnapshotId>().map_err(|e| usage(e.to_string()))?;
    match list(store, Some(host))?.into_iter().find(|s| s.id == id) {
        Some(s) if s.complete => Ok(s),
        Some(s) => Err(usage(format!(
            "snapshot {host}/{} is incomplete (no manifest: its push did not finish); it cannot be restored",
            s.id
        ))),
        None => Err(usage(format!("no snapshot {id} of host {host} in {}", store.location()))),
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

/// A manifest lists every object of a snapshot: a few hundred bytes each. Anything bigger than this
/// is not one offsite wrote, and is not read into memory.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// Decrypts a snapshot's manifest, checks its signature against the host's certificate and that it
/// describes the snapshot it was found in.
pub fn load_manifest(
    store: &dyn Store,
    snap: &SnapshotInfo,
    keys: &DecryptionKeys,
    signers: &[Cert],
) -> Result<Manifest> {
    Ok(load_manifest_sealed(store, snap, keys, signers)?.0)
}

/// [`load_manifest`], also returning the sealed bytes as stored (pull copies them as they are).
pub fn load_manifest_sealed(
    store: &dyn Store,
    snap: &SnapshotInfo,
    keys: &DecryptionKeys,
    signers: &[Cert],
) -> Result<(Manifest, Vec<u8>)> {
    let key = format!("{}{MANIFEST_NAME}", snap.dir());
    let sealed = read_capped(store, &key, MAX_MANIFEST_BYTES)?;
    let manifest = open_manifest(&sealed, snap, keys, signers)?;
    Ok((manifest, sealed))
}

/// Opens a manifest already read: decrypts it, checks the signature against the host's
/// certificate, and that it describes `snap`. An error here is about the manifest itself, never
/// about reaching the store.
pub fn open_manifest(
    sealed: &[u8],
    snap: &SnapshotInfo,
    keys: &DecryptionKeys,
    signers: &[Cert],
) -> Result<Manifest> {
    let key = format!("{}{MANIFEST_NAME}", snap.dir());
    let (json, signer) = open_signed(sealed, keys, signers)
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
    signed_while_alive(&manifest, &key, &signer, signers)?;
    Ok(manifest)
}

/// The signer's key was checked at the signature's creation time, which the signer chooses: a thief
/// with an expired host key could date a new signature back into the key's lifetime. The manifest's
/// `finished_at`, which the office holds to the store's time of the commit (or quarantines), must
/// also fall before the key expired.
fn signed_while_alive(m: &Manifest, key: &str, signer: &str, signers: &[Cert]) -> Result<()> {
    let Some(cert) = signers.iter().find(|c| c.fingerprint().to_hex() == signer) else {
        return Ok(());
    };
    let Some(expired) = crate::crypto::expiry::cert_expiry(cert, true) else {
        return Ok(());
    };
    let finished = time::OffsetDateTime::parse(
        &m.finished_at,
        &time::format_description::well_known::Rfc3339,
    )
    .with_context(|| format!("manifest {key}: finished_at {:?}", m.finished_at))?;
    if std::time::SystemTime::from(finished) >= expired {
        bail!(
            "manifest {key} says it was finished at {}, after its signing key {signer} expired on {}: \
             a signature dated earlier is only the signer's claim; refusing it",
            m.finished_at,
            crate::crypto::expiry::date(expired)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::crypto::keys::{generate_with, load_one};

    fn manifest_finished(at: SystemTime) -> Manifest {
        let at = OffsetDateTime::from(at)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let json = format!(
            r#"{{"format":"offsite-manifest","version":3,"tool_version":"0.1.0","host":"web1",
            "snapshot":"20261204T020000Z-0001","started_at":"{at}","finished_at":"{at}",
            "config_digest":"x","signer":"S","recipients":["R"],"objects":[]}}"#
        );
        Manifest::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn a_manifest_finished_after_its_signing_key_expired_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(86_400);
        // Made 40 days ago, valid for 30: expired 10 days ago.
        let files = generate_with(
            "h",
            dir.path(),
            SystemTime::now() - 40 * day,
            Some(30 * day),
        )
        .unwrap();
        let cert = load_one(&files.cert).unwrap();
        let fpr = cert.fingerprint().to_hex();
        let signers = [cert];
        let before = manifest_finished(SystemTime::now() - 20 * day);
        signed_while_alive(&before, "m", &fpr, &signers).unwrap();
        let after = manifest_finished(SystemTime::now() - day);
        let e = format!(
            "{:#}",
            signed_while_alive(&after, "m", &fpr, &signers).unwrap_err()
        );
        assert!(
            e.contains("after its signing key") && e.contains(&fpr),
            "{e}"
        );
        // A key that never expires has nothing to check.
        let files = generate_with("n", dir.path(), SystemTime::now(), None).unwrap();
        let never = load_one(&files.cert).unwrap();
        let fpr = never.fingerprint().to_hex();
        signed_while_alive(&after, "m", &fpr, &[never]).unwrap();
    }
}
