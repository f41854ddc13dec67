//! The manifest: the signed, encrypted JSON document that commits a snapshot.
//!
//! It is versioned (`format`, `version`); a reader refuses a version it does not know rather than
//! guess. Object keys in it are relative to the snapshot's directory.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// What each stored object is: defined with the pipeline that produces them.
pub use crate::pipeline::object::{ObjectEntry, ObjectKind};

pub const FORMAT: &str = "offsite-manifest";
/// 2: trees may be incremental (`depends_on`: older snapshots a restore needs, which an older
/// office would not keep), and tree volumes carry no plaintext sha256. A version-1 reader refuses
/// these manifests with "upgrade offsite" rather than misreading them.
/// 3: `store_clock`, the store's clock as push saw it. A version-2 reader refuses these manifests
/// with "upgrade offsite" (its manifest type denies unknown fields); version 2 still reads here.
pub const VERSION: u32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub tool_version: String,
    pub host: String,
    pub snapshot: String,
    pub started_at: String,
    pub finished_at: String,
    /// sha256 of the resolved config (secrets redacted), to tell when the setup changed.
    pub config_digest: String,
    pub signer: String,
    pub recipients: Vec<String>,
    pub objects: Vec<ObjectEntry>,
    #[serde(default)]
    pub databases: Vec<DatabaseEntry>,
    #[serde(default)]
    pub trees: Vec<TreeEntry>,
    /// Everything that went wrong but did not stop the snapshot (exit code 3).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The store's clock when push finished (version 3); absent for a local directory store, which
    /// has no clock of its own, and in older manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_clock: Option<StoreClock>,
}

/// The store's clock against this host's, as push saw it in the store's last response (S3's `Date`
/// header). Snapshot ids and times come from the host's clock, which a hacked or broken host can
/// get wrong; this is the store's own account of when the snapshot was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreClock {
    /// The store's time, RFC 3339, to the second (the `Date` header has no more).
    pub server_date: String,
    /// This host's clock minus the store's, in seconds: positive when the host is ahead. Within a
    /// second or so of 0 on a host whose clock is right (the header's resolution, the network).
    pub offset_seconds: i64,
}

impl Manifest {
    pub fn from_json(data: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct Head {
            format: String,
            version: u32,
        }
        let head: Head = serde_json::from_slice(data)
            .map_err(|e| anyhow::anyhow!("the manifest is not valid JSON: {e}"))?;
        if head.format != FORMAT {
            bail!("not an offsite manifest (format {:?})", head.format);
        }
        if head.version > VERSION {
            bail!(
                "manifest version {} is newer than this offsite understands ({VERSION}); upgrade offsite",
                head.version
            );
        }
        Ok(serde_json::from_slice(data)?)
    }

    pub fn object(&self, key: &str) -> Option<&ObjectEntry> {
        self.objects.iter().find(|o| o.key == key)
    }

    pub fn database(&self, source: &str) -> Option<&DatabaseEntry> {
        self.databases.iter().find(|d| d.source == source)
    }

    pub fn tree(&self, name: &str) -> Option<&TreeEntry> {
        self.trees.iter().find(|t| t.name == name)
    }

    /// Every older snapshot this one needs for a restore (its trees' `depends_on`), sorted.
    pub fn depends_on(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .trees
            .iter()
            .flat_map(|t| t.depends_on.iter().cloned())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    pub fn stored_bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.stored_size).sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    Mysql,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseEntry {
    pub engine: Engine,
    pub name: String,
    pub source: String,
    /// Key of the dump object, relative to the snapshot.
    pub object: String,
    pub server_version: String,
    pub dump_tool: String,
    pub dump_options: Vec<String>,
    /// Rows per table as counted in the dump stream, `schema.table` (PostgreSQL) or `table` (MySQL).
    pub tables: BTreeMap<String, u64>,
    pub end_marker_seen: bool,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TreeRun {
    Full,
    Incremental,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeEntry {
    pub name: String,
    pub path: String,
    pub run: TreeRun,
    /// The snapshot this incremental builds on (the previous run of the tree).
    #[serde(default)]
    pub parent: Option<String>,
    /// The older snapshots (same host) whose volumes this tree's index points into: the full and
    /// every incremental that still holds a current file. Restore needs them all; prune keeps them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Why this run was full rather than incremental (`first run`, `--full`, `full_every 30d`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_reason: Option<String>,
    /// Files and bytes of the tree as this snapshot sees it (what a restore yields).
    pub files: u64,
    pub bytes: u64,
    /// Files and bytes read and stored by this run (all of them for a full run).
    #[serde(default)]
    pub new_files: u64,
    #[serde(default)]
    pub new_bytes: u64,
    /// Keys of this snapshot's volumes, in order.
    pub volumes: Vec<String>,
    /// Key of the index object.
    pub index: String,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(version: u32, extra: &str) -> String {
        format!(
            r#"{{"format":"offsite-manifest","version":{version},"tool_version":"0.1.0","host":"web1",
            "snapshot":"20261204T020000Z-0001","started_at":"2026-12-04T02:00:00Z",
            "finished_at":"2026-12-04T02:01:00Z","config_digest":"x","signer":"S",
            "recipients":["R"],"objects":[]{extra}}}"#
        )
    }

    #[test]
    fn version_2_manifests_still_read() {
        let m = Manifest::from_json(json(2, "").as_bytes()).unwrap();
        assert_eq!(m.version, 2);
        assert_eq!(m.store_clock, None);
    }

    #[test]
    fn the_store_clock_round_trips() {
        let extra =
            r#","store_clock":{"server_date":"2026-12-04T02:01:00Z","offset_seconds":-600}"#;
        let m = Manifest::from_json(json(VERSION, extra).as_bytes()).unwrap();
        let clock = m.store_clock.clone().unwrap();
        assert_eq!(clock.offset_seconds, -600);
        let again = Manifest::from_json(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(again.store_clock, Some(clock));
        // A manifest without one (a local store) does not write the key at all.
        let m = Manifest::from_json(json(VERSION, "").as_bytes()).unwrap();
        let text = serde_json::to_string(&m).unwrap();
        assert!(!text.contains("store_clock"), "{text}");
    }

    #[test]
    fn a_newer_version_asks_for_an_upgrade() {
        let e = Manifest::from_json(json(VERSION + 1, "").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("upgrade offsite"), "{e}");
    }
}
