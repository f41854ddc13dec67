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
    /// Where push keeps the last index of each tree, for incrementals.
    pub state_dir: Option<String>,
    #[serde(default)]
    pub postgres: Vec<RawPostgres>,
    #[serde(default)]
    pub mysql: Vec<RawMysql>,
    #[serde(default)]
    pub trees: Vec<RawTree>,
    pub office: Option<RawOffice>,
    /// Prometheus text file (node_exporter's textfile collector) that push and the office update.
    pub metrics_file: Option<String>,
    /// push's pings.
    pub notify: Option<RawPushNotify>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPushNotify {
    /// healthchecks.io-style URL: `/start`, success, `/fail`.
    pub ping: Option<String>,
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
    /// A request that moves no byte either way for this long fails the push (`60s`).
    pub stall_timeout: Option<String>,
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
    /// A dump that writes nothing for this long is killed and its source fails (`30m`).
    pub dump_stall_timeout: Option<String>,
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
    /// A dump that writes nothing for this long is killed and its source fails (`30m`).
    pub dump_stall_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTree {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub exclude: Vec<String>,
    pub volume_size: Option<String>,
    /// A full backup when the last full is older than this (`30d`).
    pub full_every: Option<String>,
    /// At most this many incrementals between fulls.
    pub max_chain: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOffice {
    pub offsite_dir: Option<String>,
    /// One secret key file, or a list: after a rotation, the new office key and the old ones.
    pub decryption_key: Option<super::key_paths::RawKeyPaths>,
    /// Each host's certificate file, or a list: after a host key rotation, the new and the old.
    #[serde(default)]
    pub hosts: BTreeMap<String, super::key_paths::RawKeyPaths>,
    pub scratch: Option<RawScratch>,
    pub masking: Option<RawMasking>,
    #[serde(default)]
    pub checks: Vec<RawCheck>,
    /// A snapshot older than this fails verify's freshness check (`26h`).
    pub max_age: Option<String>,
    pub retention: Option<RawRetention>,
    /// Retention for the offsite copy, when it differs from S3's.
    pub offsite_retention: Option<RawRetention>,
    #[serde(default)]
    pub refresh: Vec<RawRefresh>,
    /// Servers refresh must never write to, besides every push source in this config.
    #[serde(default)]
    pub production_servers: Vec<String>,
    /// Regex a refresh target's database name must match.
    pub allow_pattern: Option<String>,
    pub notify: Option<RawNotify>,
    /// Objects downloaded at once by pull.
    pub parallel_downloads: Option<usize>,
    /// Connections per database restore (verify, refresh, restore --into).
    pub restore_jobs: Option<usize>,
    /// Disk a restore's read-ahead may use (`20GiB`), compressed.
    pub spool_limit: Option<String>,
    /// Ranged part size for pull's big objects (`16MiB`).
    pub download_part_size: Option<String>,
    /// How far a snapshot's claimed time may be from the store's time of its commit (`1h`).
    pub clock_tolerance: Option<String>,
    /// More commits than this by one host in one (trusted) day are flagged as a flood.
    pub max_snapshots_per_day: Option<u32>,
    /// The largest share of a host's complete snapshots one prune run may delete (0.5).
    pub max_prune_fraction: Option<f64>,
    /// refresh refuses a newest verified snapshot older than this (`48h`).
    pub refresh_max_age: Option<String>,
    /// An incomplete snapshot with no new object for this long is a push that died (`48h`).
    pub abandon_after: Option<String>,
    /// Certificates (.cert.asc) every object must be encrypted to, and no others.
    #[serde(default)]
    pub expected_recipients: Vec<String>,
    /// The scrub re-hashes every object of the offsite copy at least this often (days).
    pub scrub_days: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub url: String,
    pub password: Option<SecretSpec>,
    #[serde(default)]
    pub allow_privileged: bool,
}

/// `postgres: URL` or `postgres: { url: URL, password: ... }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawServerRef {
    Url(String),
    Full(RawServer),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScratch {
    pub postgres: Option<RawServerRef>,
    pub mysql: Option<RawServerRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub host: String,
    /// `postgres/shop`
    pub database: String,
    pub sql: String,
    /// `> 0`, `= 42`, `>= 1000`, `!= 0`, `< 5`, `<= 5`, or a plain value to compare as text.
    pub expect: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    /// Keep everything younger than this (`14d`).
    pub keep_within: Option<String>,
    /// S3 Object Lock per rule: how long after its time a snapshot a rule keeps stays locked.
    pub lock: Option<RawRetentionLock>,
}

/// `lock: { daily: 14d, weekly: 8w, monthly: 13M, yearly: 7y }`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetentionLock {
    pub last: Option<String>,
    pub hourly: Option<String>,
    pub daily: Option<String>,
    pub weekly: Option<String>,
    pub monthly: Option<String>,
    pub yearly: Option<String>,
    pub within: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRefresh {
    /// `web1:postgres/shop`
    pub from: String,
    pub server: RawServerRef,
    pub database: String,
    #[serde(default)]
    pub post_sql: Vec<String>,
    /// Mask the rows with `office.masking` on their way to the server.
    #[serde(default)]
    pub mask: bool,
}

/// `office.masking`: the HMAC secret and the rules, `engine/db:table` -> column -> rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMasking {
    pub secret: SecretSpec,
    /// A refresh with `mask: true` refuses a dump with a personal-looking column no rule covers.
    #[serde(default)]
    pub strict: bool,
    #[serde(default)]
    pub tables: BTreeMap<String, BTreeMap<String, serde_norway::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    pub webhook: Option<String>,
    /// Run with the report's JSON path as its only argument.
    pub command: Option<String>,
    /// healthchecks.io-style URL: `/start`, success, `/fail`.
    pub ping: Option<String>,
}
