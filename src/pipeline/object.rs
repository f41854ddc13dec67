//! What the pipeline says about an object it stored: the manifest lists these, one per object.

use serde::{Deserialize, Serialize};

use super::compress::Algorithm;
use super::digest::Measured;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectKind {
    PostgresDump,
    MysqlDump,
    TreeVolume,
    TreeIndex,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectEntry {
    pub key: String,
    pub kind: ObjectKind,
    /// `postgres/shop`, `mysql/shop`, `tree/www`.
    pub source: String,
    pub stored_size: u64,
    pub stored_sha256: String,
    pub plain_size: u64,
    /// Empty for tree volumes, whose files each have their sha256 in the index.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub plain_sha256: String,
    pub compression: Algorithm,
    pub recipients: Vec<String>,
}

impl ObjectEntry {
    pub fn stored(&self) -> Measured {
        Measured {
            size: self.stored_size,
            sha256: self.stored_sha256.clone(),
        }
    }
    pub fn plain(&self) -> Measured {
        Measured {
            size: self.plain_size,
            sha256: self.plain_sha256.clone(),
        }
    }
}
