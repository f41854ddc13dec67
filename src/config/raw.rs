//! The YAML file as written: every key optional where a default makes sense, unknown keys rejected.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::secret::SecretSpec;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub host: Option<String>,
    pub store: Option<RawStore>,
    pub encryption: Option<RawEncryption>,
    pub compression: Option<RawCompression>,
    pub parallel: Option<usize>,
    #[serde(default)]
    pub postgres: Vec<RawPostgres>,
    #[serde(default)]
    pub mysql: Vec<RawMysql>,
    #[serde(default)]
    pub trees: Vec<RawTree>,
    pub office: Option<RawOffice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub local: Option<String>,
    pub s3: Option<RawS3>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawS3 {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    #[serde(default)]
    pub path_style: bool,
    pub access_key_id: Option<SecretSpec>,
    pub secret_access_key: Option<SecretSpec>,
    pub session_token: Option<SecretSpec>,
    /// Starting part size of multipart uploads, e.g. `8MiB`.
    pub part_size: Option<String>,
    pub parts_in_flight: Option<usize>,
    pub object_lock: Option<RawObjectLock>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObjectLock {
    #[serde(default = "default_lock_mode")]
    pub mode: String,
    pub days: u32,
}

fn default_lock_mode() -> String {
    "compliance".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEncryption {
    pub recipients: Vec<String>,
    pub signing_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompression {
    pub algorithm: Option<String>,
    pub level: Option<i32>,
    pub threads: Option<u32>,
}

/// `databases: all` or `databases: [a, b]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawDatabases {
    Keyword(String),
    List(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    pub url: String,
    pub password: Option<SecretSpec>,
    pub databases: Option<RawDatabases>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Path of pg_dump, when the one on PATH is not the right major version.
    pub pg_dump: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMysql {
    pub url: String,
    pub password: Option<SecretSpec>,
    pub databases: Option<RawDatabases>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `mariadb-dump` or `mysqldump` (or a path); default: whichever is on PATH.
    pub dump_command: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTree {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub exclude: Vec<String>,
    pub volume_size: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOffice {
    pub decryption_key: Option<String>,
    #[serde(default)]
    pub hosts: BTreeMap<String, String>,
}
