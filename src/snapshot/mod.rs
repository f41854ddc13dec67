//! Snapshots: their ids, their manifest, and listing them in a store.

pub mod id;
pub mod list;
pub mod manifest;
pub mod trust;

pub use id::SnapshotId;
pub use manifest::Manifest;

/// The object that commits a snapshot; written last.
pub const MANIFEST_NAME: &str = "manifest.json.pgp";

/// `<host>/<snapshot-id>/`
pub fn dir(host: &str, id: &str) -> String {
    format!("{host}/{id}/")
}
