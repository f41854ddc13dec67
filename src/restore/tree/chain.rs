//! The snapshots one view of a tree reads from: the snapshot restored, and the older snapshots its
//! index points into (`depends_on` in its signed manifest). Each is found complete in the store and
//! its manifest checked (signature, host, id) before any of its volumes is read.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use sequoia_openpgp::Cert;

use crate::crypto::DecryptionKeys;
use crate::error::usage;
use crate::snapshot::list::{list, load_manifest};
use crate::snapshot::manifest::{ObjectEntry, TreeEntry};
use crate::snapshot::Manifest;
use crate::store::Store;

/// Where a tree view comes from.
pub struct TreeSource<'a> {
    pub store: &'a dyn Store,
    /// The restored snapshot's directory (`host/id/`) and its checked manifest.
    pub snapshot_dir: &'a str,
    pub manifest: &'a Manifest,
    pub keys: &'a DecryptionKeys,
    /// The host's signing certificates, to check the manifests of older snapshots of the chain.
    pub signers: &'a [Cert],
}

pub struct Chain<'a> {
    pub tree: &'a TreeEntry,
    top: String,
    /// Snapshot id -> (its directory, its manifest); the restored snapshot included.
    snaps: HashMap<String, (String, Manifest)>,
}

impl<'a> Chain<'a> {
    pub fn load(src: &TreeSource<'a>, name: &str) -> Result<Self> {
        let m = src.manifest;
        let Some(tree) = m.tree(name) else {
            let names: Vec<&str> = m.trees.iter().map(|t| t.name.as_str()).collect();
            return Err(usage(if names.is_empty() {
                format!("snapshot {} has no file trees", m.snapshot)
            } else {
                format!(
                    "snapshot {} has no tree {name:?}; it has: {}",
                    m.snapshot,
                    names.join(", ")
                )
            }));
        };
        let mut snaps = HashMap::new();
        snaps.insert(
            m.snapshot.clone(),
            (src.snapshot_dir.to_string(), m.clone()),
        );
        if !tree.depends_on.is_empty() {
            let listed = list(src.store, Some(&m.host))?;
            for id in &tree.depends_on {
                let info = listed
                    .iter()
                    .find(|s| s.id == *id && s.complete)
                    .with_context(|| {
                        format!(
                            "tree {name} of {}/{} is an incremental that needs snapshot {id}, which is not complete in {} (pruned without regard to the chain, or not pulled yet?)",
                            m.host,
                            m.snapshot,
                            src.store.location()
                        )
                    })?;
                let older = load_manifest(src.store, info, src.keys, src.signers)?;
                if older.tree(name).is_none() {
                    bail!(
                        "snapshot {id}, which tree {name} of {} points into, has no tree {name}",
                        m.snapshot
                    );
                }
                snaps.insert(id.clone(), (info.dir(), older));
            }
        }
        Ok(Self {
            tree,
            top: m.snapshot.clone(),
            snaps,
        })
    }

    /// The snapshot an index entry's `snapshot` field names (absent: the restored one).
    pub fn snapshot_of<'s>(&'s self, field: Option<&'s str>) -> &'s str {
        field.unwrap_or(&self.top)
    }

    /// A volume of the chain: its snapshot's directory and its manifest entry. Refuses a volume
    /// that snapshot's manifest does not list for this tree.
    pub fn volume(&self, snapshot: &str, volume: &str) -> Result<(&str, &ObjectEntry)> {
        let name = &self.tree.name;
        let (dir, m) = self.snaps.get(snapshot).with_context(|| {
            format!(
                "the index of tree {name} points into snapshot {snapshot}, which the manifest of {} does not list among its dependencies",
                self.top
            )
        })?;
        let listed = m
            .tree(name)
            .is_some_and(|t| t.volumes.iter().any(|v| v == volume));
        let object = m.object(volume).filter(|_| listed).with_context(|| {
            format!("the index puts a file in {dir}{volume}, which is not a volume of tree {name}")
        })?;
        Ok((dir.as_str(), object))
    }

    /// How many volumes the snapshots of the view hold for this tree, read or not.
    pub fn volume_count(&self) -> usize {
        self.snaps
            .values()
            .filter_map(|(_, m)| m.tree(&self.tree.name))
            .map(|t| t.volumes.len())
            .sum()
    }

    /// The index of the restored snapshot.
    pub fn index(&self) -> Result<(&str, &ObjectEntry)> {
        let (dir, m) = self
            .snaps
            .get(&self.top)
            .context("internal error: the restored snapshot is not in its chain")?;
        let object = m.object(&self.tree.index).with_context(|| {
            format!(
                "the manifest does not list the index {dir}{} of tree {}",
                self.tree.index, self.tree.name
            )
        })?;
        Ok((dir.as_str(), object))
    }
}
