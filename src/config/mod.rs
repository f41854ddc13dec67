//! Configuration: the YAML file ([`raw`]) is parsed strictly, then checked and resolved into [`Config`]:
//! relative paths resolved against the file's folder, secrets resolved, defaults filled in. Nothing
//! downstream sees the raw form.

pub mod duration;
pub mod key_paths;
pub mod raw;
pub mod secret;
pub mod size;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

pub use duration::{human_duration, parse_duration};
pub use key_paths::KeyPaths;
pub use secret::{Secret, SecretSpec};
pub use size::{human, parse_size};

use crate::error::usage;
use crate::pipeline::compress::{default_threads, Algorithm, Compression};
use raw::{RawConfig, RawDatabases};

/// Where the config is looked for when `-c` is not given.
pub const DEFAULT_PATH: &str = "/etc/offsite/config.yaml";
/// 64 MiB: a single-file restore decrypts at most one volume of this size, and a volume is the unit
/// of retry and of what an incremental rewrites; smaller means more objects for little gain.
pub const DEFAULT_VOLUME_SIZE: u64 = 64 << 20;
/// Where push keeps its per-tree state (the last committed index) when `state_dir` is not set.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/offsite";
/// A tree's full backup is repeated when the last one is older than this, unless `full_every` says.
pub const DEFAULT_FULL_EVERY: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub path: PathBuf,
    pub host: String,
    pub store: StoreConfig,
    pub encryption: Option<EncryptionConfig>,
    pub compression: Compression,
    pub parallel: usize,
    /// push's per-tree state: the last committed index of each tree (see `source::tree::state`).
    pub state_dir: PathBuf,
    pub postgres: Vec<DbServer>,
    pub mysql: Vec<DbServer>,
    pub trees: Vec<TreeConfig>,
    pub office: Option<OfficeConfig>,
    /// Prometheus text file that push and the office commands update (see `metrics`).
    pub metrics_file: Option<PathBuf>,
    /// push's pings.
    pub notify: PushNotify,
}

/// Top-level `notify:`, push's: a healthchecks.io-style ping URL.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushNotify {
    #[serde(serialize_with = "serialize_ping")]
    pub ping: Option<String>,
}

/// A ping URL may carry a token: `config check` shows only its scheme and host.
fn serialize_ping<S: serde::Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_some(&crate::ping::redacted(u)),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreConfig {
    Local(PathBuf),
    /// Boxed: the S3 settings are ten times the size of a path.
    S3(Box<S3Settings>),
}

#[derive(Debug, Clone, Serialize)]
pub struct S3Settings {
    pub bucket: String,
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    pub part_size: u64,
    pub parts_in_flight: usize,
    pub object_lock: Option<(String, u32)>,
    /// A request to S3 that sends and receives nothing for this long fails (see `store::s3::stall`).
    #[serde(serialize_with = "duration::serialize")]
    pub stall_timeout: std::time::Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct EncryptionConfig {
    pub recipients: Vec<PathBuf>,
    pub signing_key: Option<PathBuf>,
}

/// `all`, or an explicit list.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Databases {
    All,
    List(Vec<String>),
}

/// One database server to dump (PostgreSQL or MySQL/MariaDB).
#[derive(Debug, Clone, Serialize)]
pub struct DbServer {
    /// The URL without its password.
    pub url: String,
    pub password: Option<Secret>,
    pub databases: Databases,
    pub exclude: Vec<String>,
    /// pg_dump / mariadb-dump to run.
    pub dump_command: Option<String>,
    /// A dump that writes nothing for this long is killed, and its source fails.
    #[serde(serialize_with = "duration::serialize")]
    pub dump_stall_timeout: std::time::Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct TreeConfig {
    pub name: String,
    pub path: PathBuf,
    pub exclude: Vec<String>,
    pub volume_size: u64,
    /// A full run when the last full is older than this.
    #[serde(serialize_with = "duration::serialize")]
    pub full_every: std::time::Duration,
    /// At most this many incrementals after a full (`None`: no cap but `full_every`).
    pub max_chain: Option<u32>,
}

/// A parallel restore's read-ahead on disk, by default: a big database's data, compressed.
pub const DEFAULT_SPOOL_LIMIT: u64 = 20 << 30;

/// One connection per core, and at least two: on two cores one loads while the other's client
/// and the reader work.
pub fn default_restore_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

#[derive(Debug, Clone, Serialize)]
pub struct OfficeConfig {
    /// The local copy of every snapshot: a store with the same layout as S3.
    pub offsite_dir: Option<PathBuf>,
    /// The office's secret keys, newest first (empty: not set). Every one is tried on each snapshot,
    /// so a rotated office key still reads what was encrypted to the old one.
    pub decryption_key: KeyPaths,
    /// Hosts whose snapshots the office accepts, with their signing certificates (after a host key
    /// rotation, the new one and the old ones).
    pub hosts: BTreeMap<String, KeyPaths>,
    pub scratch: Scratch,
    pub checks: Vec<Check>,
    #[serde(serialize_with = "duration::serialize")]
    pub max_age: std::time::Duration,
    pub retention: Option<Retention>,
    pub offsite_retention: Option<Retention>,
    pub refresh: Vec<Refresh>,
    pub production_servers: Vec<String>,
    pub allow_pattern: String,
    pub notify: Notify,
    pub parallel_downloads: usize,
    /// Connections a database restore loads over (1: one stream, as `psql` would).
    pub restore_jobs: usize,
    /// What a parallel restore may spool to disk under offsite_dir (compressed bytes).
    pub spool_limit: u64,
    /// pull downloads an object larger than four of these in ranged parts of this size, on
    /// `parallel_downloads` connections at once.
    pub download_part_size: u64,
    #[serde(serialize_with = "duration::serialize")]
    pub clock_tolerance: std::time::Duration,
    pub max_snapshots_per_day: u32,
    pub max_prune_fraction: f64,
    #[serde(serialize_with = "duration::serialize")]
    pub refresh_max_age: std::time::Duration,
    /// An incomplete snapshot older than this (by the store's time) is a push that died: pull
    /// reports it abandoned and prune removes it. Younger, it may be a push still writing.
    #[serde(serialize_with = "duration::serialize")]
    pub abandon_after: std::time::Duration,
    /// Certificate files whose fingerprints are the only recipients pull accepts without a
    /// warning; empty: those of the host's previous good snapshot.
    pub expected_recipients: Vec<PathBuf>,
    /// `verify --scrub` re-hashes every object of the offsite copy at least once in this many days.
    pub scrub_days: u32,
    /// `office.masking`: rules that mask rows on their way to a dev server (refresh `mask: true`,
    /// `restore --mask`, `offsite mask`).
    #[serde(skip)]
    pub masking: Option<std::sync::Arc<crate::mask::Masking>>,
}

/// A database server reference: URL (without password) and password.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    pub url: String,
    pub password: Option<Secret>,
    /// Lets verify and refresh restore untrusted dumps with a role that can reach the server's
    /// files or programs (a PostgreSQL superuser, MariaDB FILE/SUPER). Off: such a role is refused.
    pub allow_privileged: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Scratch {
    pub postgres: Option<Server>,
    pub mysql: Option<Server>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub host: String,
    pub database: String,
    pub sql: String,
    pub expect: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Retention {
    pub keep_last: u32,
    pub keep_hourly: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_yearly: u32,
    #[serde(serialize_with = "duration::serialize_opt")]
    pub keep_within: Option<std::time::Duration>,
    /// S3 Object Lock that follows the policy (`office.retention.lock`): per rule, how long after
    /// its trusted time a snapshot that rule keeps stays locked. prune extends, never shortens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<RetentionLock>,
}

/// How long each rule's snapshots stay locked, from the snapshot's trusted time; `None`: that
/// rule locks nothing beyond what push set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionLock {
    #[serde(serialize_with = "duration::serialize_opt")]
    pub last: Option<std::time::Duration>,
    #[serde(serialize_with = "duration::serialize_opt")]
    pub hourly: Option<std::time::Duration>,
    #[serde(serialize_with = "duration::serialize_opt")]
    pub daily: Option<std::time::Duration>,
    #[serde(serialize_with = "duration::serialize_opt")]
    pub weekly: Option<std::time::Duration>,
    #[serde(serialize_with = "duration::serialize_opt")]
    pub monthly: Option<std::time::Duration>,
    #[serde(serialize_with = "duration::serialize_opt")]
    pub yearly: Option<std::time::Duration>,
    #[serde(serialize_with = "duration::serialize_opt")]
    pub within: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Refresh {
    pub host: String,
    /// `postgres/shop`
    pub source: String,
    pub server: Server,
    pub database: String,
    pub post_sql: Vec<PathBuf>,
    /// Rows are masked with `office.masking` on their way to the server.
    pub mask: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Notify {
    pub webhook: Option<String>,
    pub command: Option<String>,
    #[serde(serialize_with = "serialize_ping")]
    pub ping: Option<String>,
}

pub const DEFAULT_ALLOW_PATTERN: &str = "_(dev|test|staging)$";
pub const DEFAULT_SCRUB_DAYS: u32 = 30;
/// Ranged parts of 64 MiB, so objects above 256 MiB are split: a GET's fixed cost (tens of ms to
/// its first byte on S3, more on a cold object or a far region) stays a few percent of a part at
/// a connection's 100 MB/s, and a smaller object, at most a few seconds on one connection, gains
/// too little from parts to pay for several requests (test servers such as moto even copy the
/// whole object for every ranged GET).
pub const DEFAULT_DOWNLOAD_PART_SIZE: u64 = 64 << 20;
pub const DEFAULT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(26 * 3600);
pub const DEFAULT_CLOCK_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(3600);
pub const DEFAULT_REFRESH_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(48 * 3600);
pub const DEFAULT_ABANDON_AFTER: std::time::Duration = std::time::Duration::from_secs(48 * 3600);
/// A dump may think for a long time before its first byte (a huge table's snapshot, a lock it waits
/// for); half an hour of silence means it hangs.
pub const DEFAULT_DUMP_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// S3 answers a request in milliseconds and moves megabytes a second; a minute without a single byte
/// either way means it stopped, not that it is slow.
pub const DEFAULT_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read config file {}: {e}", path.display())))?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` is used for messages and to resolve relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            // serde_norway's message names the line, the column and the unknown key.
            serde_norway::from_str(text).map_err(|e| usage(format!("{}: {e}", path.display())))?
        };
        let base = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
        check(raw, path, &base).map_err(|e| {
            if crate::error::is_usage(&e) {
                e
            } else {
                usage(format!("{}: {e:#}", path.display()))
            }
        })
    }

    /// sha256 of the resolved config with secrets redacted: tells when a host's setup changed.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(json)))
    }

    pub fn office(&self) -> Result<&OfficeConfig> {
        self.office.as_ref().ok_or_else(|| {
            usage(format!(
                "{} has no office: section (decryption_key, hosts)",
                self.path.display()
            ))
        })
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    base.join(p)
}

fn check(raw: RawConfig, path: &Path, base: &Path) -> Result<Config> {
    let host = match raw.host {
        Some(h) => h,
        None => hostname().context("host is not set and the machine's hostname cannot be read")?,
    };
    check_name("host", &host)?;

    let store = match raw.store {
        None => {
            return Err(usage(format!(
                "{}: store: is required (local: DIR or s3: ...)",
                path.display()
            )))
        }
        Some(s) => match (s.local, s.s3) {
            (Some(dir), None) => StoreConfig::Local(resolve(base, &dir)),
            (None, Some(s3)) => StoreConfig::S3(Box::new(check_s3(s3, base)?)),
            _ => {
                return Err(usage(format!(
                    "{}: store: needs exactly one of local: or s3:",
                    path.display()
                )))
            }
        },
    };

    let encryption = raw.encryption.map(|e| EncryptionConfig {
        recipients: e.recipients.iter().map(|r| resolve(base, r)).collect(),
        signing_key: e.signing_key.map(|k| resolve(base, &k)),
    });

    let compression = match raw.compression {
        None => Compression::default(),
        Some(c) => {
            let algorithm = match c.algorithm.as_deref().unwrap_or("zstd") {
                "zstd" => Algorithm::Zstd,
                "gzip" => Algorithm::Gzip,
                other => {
                    return Err(usage(format!(
                        "compression.algorithm {other:?}: use zstd or gzip"
                    )))
                }
            };
            let level = c.level.unwrap_or(match algorithm {
                Algorithm::Zstd => 3,
                Algorithm::Gzip => 6,
            });
            let ok = match algorithm {
                Algorithm::Zstd => (1..=19).contains(&level),
                Algorithm::Gzip => (1..=9).contains(&level),
            };
            if !ok {
                return Err(usage(format!(
                    "compression.level {level} is out of range (zstd 1-19, gzip 1-9)"
                )));
            }
            Compression {
                algorithm,
                level,
                threads: c.threads.unwrap_or_else(default_threads),
            }
        }
    };

    let parallel = raw.parallel.unwrap_or(2);
    if parallel == 0 {
        return Err(usage("parallel must be at least 1"));
    }

    let mut postgres = Vec::new();
    for (i, p) in raw.postgres.into_iter().enumerate() {
        let what = format!("postgres[{i}]");
        postgres.push(
            db_server(
                &what,
                &p.url,
                p.password,
                p.databases,
                p.exclude,
                p.pg_dump,
                base,
            )?
            .with_dump_stall_timeout(&what, p.dump_stall_timeout)?,
        );
    }
    let mut mysql = Vec::new();
    for (i, m) in raw.mysql.into_iter().enumerate() {
        let what = format!("mysql[{i}]");
        mysql.push(
            db_server(
                &what,
                &m.url,
                m.password,
                m.databases,
                m.exclude,
                m.dump_command,
                base,
            )?
            .with_dump_stall_timeout(&what, m.dump_stall_timeout)?,
        );
        // MariaDB TLS parameters of the URL: a typo is a config error now, not at the first connection.
        crate::db::my::check_url(&what, &mysql[i].url)?;
    }

    let mut trees: Vec<TreeConfig> = Vec::new();
    for t in raw.trees {
        check_name("trees[].name", &t.name)?;
        if trees.iter().any(|o| o.name == t.name) {
            return Err(usage(format!("trees: the name {:?} is used twice", t.name)));
        }
        let volume_size = match t.volume_size {
            Some(s) => {
                parse_size(&s).map_err(|e| usage(format!("trees[{}].volume_size: {e}", t.name)))?
            }
            None => DEFAULT_VOLUME_SIZE,
        };
        if volume_size < 1 << 20 {
            return Err(usage(format!(
                "trees[{}].volume_size must be at least 1MiB",
                t.name
            )));
        }
        for g in &t.exclude {
            globset::Glob::new(g)
                .map_err(|e| usage(format!("trees[{}].exclude {g:?}: {e}", t.name)))?;
        }
        let full_every = match t.full_every {
            Some(s) => parse_duration(&s)
                .map_err(|e| usage(format!("trees[{}].full_every: {e}", t.name)))?,
            None => DEFAULT_FULL_EVERY,
        };
        trees.push(TreeConfig {
            name: t.name,
            path: resolve(base, &t.path),
            exclude: t.exclude,
            volume_size,
            full_every,
            max_chain: t.max_chain,
        });
    }

    let office = raw.office.map(|o| check_office(o, base)).transpose()?;
    if let Some(o) = &office {
        if o.offsite_retention
            .as_ref()
            .is_some_and(|r| r.lock.is_some())
        {
            return Err(usage(
                "office.offsite_retention.lock: the offsite copy is a directory, which has no Object Lock; put lock: under office.retention (the S3 store's policy)",
            ));
        }
        let locked_store = matches!(&store, StoreConfig::S3(s) if s.object_lock.is_some());
        if o.retention.as_ref().is_some_and(|r| r.lock.is_some()) && !locked_store {
            return Err(usage(
                "office.retention.lock needs an S3 store whose bucket has Object Lock: set store.s3.object_lock: { mode: compliance, days: N } (the mode prune extends locks in)",
            ));
        }
    }

    Ok(Config {
        path: path.to_path_buf(),
        host,
        store,
        encryption,
        compression,
        parallel,
        state_dir: raw
            .state_dir
            .map(|d| resolve(base, &d))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        postgres,
        mysql,
        trees,
        office,
        metrics_file: raw.metrics_file.map(|f| resolve(base, &f)),
        notify: PushNotify {
            ping: match raw.notify.and_then(|n| n.ping) {
                Some(u) => {
                    crate::ping::check_url("notify.ping", &u)?;
                    Some(u)
                }
                None => None,
            },
        },
    })
}

fn check_office(o: raw::RawOffice, base: &Path) -> Result<OfficeConfig> {
    for host in o.hosts.keys() {
        check_name("office.hosts", host)?;
    }
    let server = |r: raw::RawServerRef, what: &str| -> Result<Server> {
        let (url, password, allow_privileged) = match r {
            raw::RawServerRef::Url(u) => (u, None, false),
            raw::RawServerRef::Full(f) => (f.url, f.password, f.allow_privileged),
        };
        let s = db_server(what, &url, password, None, Vec::new(), None, base)?;
        Ok(Server {
            url: s.url,
            password: s.password,
            allow_privileged,
        })
    };
    let scratch = match o.scratch {
        None => Scratch::default(),
        Some(s) => Scratch {
            postgres: s
                .postgres
                .map(|r| server(r, "office.scratch.postgres"))
                .transpose()?,
            mysql: s
                .mysql
                .map(|r| server(r, "office.scratch.mysql"))
                .transpose()?
                .map(|s| crate::db::my::check_url("office.scratch.mysql", &s.url).map(|()| s))
                .transpose()?,
        },
    };
    let mut checks = Vec::new();
    for (i, c) in o.checks.into_iter().enumerate() {
        check_source(&format!("office.checks[{i}].database"), &c.database)?;
        crate::office::checks::Expectation::parse(&c.expect)
            .map_err(|e| usage(format!("office.checks[{i}].expect: {e}")))?;
        checks.push(Check {
            host: c.host,
            database: c.database,
            sql: c.sql,
            expect: c.expect,
        });
    }
    let max_age = match o.max_age {
        Some(s) => parse_duration(&s).map_err(|e| usage(format!("office.max_age: {e}")))?,
        None => DEFAULT_MAX_AGE,
    };
    let allow_pattern = o
        .allow_pattern
        .unwrap_or_else(|| DEFAULT_ALLOW_PATTERN.to_string());
    regex::Regex::new(&allow_pattern).map_err(|e| usage(format!("office.allow_pattern: {e}")))?;
    let masking = match &o.masking {
        None => None,
        Some(m) => {
            let (spec, base) = (m.secret.clone(), base.to_path_buf());
            let secret: crate::mask::SecretLoader = Box::new(move || {
                Ok(spec
                    .resolve("office.masking.secret", &base)?
                    .expose()
                    .as_bytes()
                    .to_vec())
            });
            Some(std::sync::Arc::new(
                crate::mask::Masking::new(secret, m.strict, &m.tables)
                    .map_err(|e| usage(format!("{e:#}")))?,
            ))
        }
    };
    let scrub_days = o.scrub_days.unwrap_or(DEFAULT_SCRUB_DAYS);
    if scrub_days == 0 {
        return Err(usage(
            "office.scrub_days must be at least 1: the scrub re-hashes every object of the offsite copy once in that many days",
        ));
    }
    let download_part_size = match &o.download_part_size {
        Some(s) => {
            let n = parse_size(s).map_err(|e| usage(format!("office.download_part_size: {e}")))?;
            // Below 1 MiB a part costs more in request latency than it moves; above 5 GiB no
            // object of offsite's is big enough to be split.
            if !(1 << 20..=5 << 30).contains(&n) {
                return Err(usage(format!(
                    "office.download_part_size: {s} is outside 1MiB to 5GiB (default 64MiB)"
                )));
            }
            n
        }
        None => DEFAULT_DOWNLOAD_PART_SIZE,
    };
    let mut refresh = Vec::new();
    for (i, r) in o.refresh.into_iter().enumerate() {
        let what = format!("office.refresh[{i}]");
        let (host, source) = r.from.split_once(':').ok_or_else(|| {
            usage(format!(
                "{what}.from {:?}: expected HOST:postgres/NAME or HOST:mysql/NAME",
                r.from
            ))
        })?;
        check_source(&format!("{what}.from"), source)?;
        check_name(&format!("{what}.database"), &r.database)?;
        refresh.push(Refresh {
            host: host.to_string(),
            source: source.to_string(),
            server: server(r.server, &format!("{what}.server"))?,
            database: r.database,
            post_sql: r.post_sql.iter().map(|p| resolve(base, p)).collect(),
            mask: r.mask,
        });
    }
    for r in &refresh {
        if !r.mask {
            continue;
        }
        let Some(m) = &masking else {
            return Err(usage(format!(
                "office.refresh {}: mask: true, but there is no office.masking (its secret and rules)",
                r.database
            )));
        };
        if !m.has_rules(&r.source) {
            return Err(usage(format!(
                "office.refresh {}: mask: true, but office.masking.tables has no rules for {} (keys like \"{}:public.customers\")",
                r.database, r.source, r.source
            )));
        }
    }
    let key_paths = |r: Option<key_paths::RawKeyPaths>, what: &str| -> Result<KeyPaths> {
        let Some(r) = r else {
            return Ok(KeyPaths::default());
        };
        let v = r.into_vec();
        if v.is_empty() {
            return Err(usage(format!(
                "{what}: an empty list names no key; give a file, or a list of files (newest first)"
            )));
        }
        Ok(KeyPaths(v.iter().map(|p| resolve(base, p)).collect()))
    };
    let decryption_key = key_paths(o.decryption_key, "office.decryption_key")?;
    let mut hosts = BTreeMap::new();
    for (h, c) in o.hosts {
        let paths = key_paths(Some(c), &format!("office.hosts.{h}"))?;
        hosts.insert(h, paths);
    }
    Ok(OfficeConfig {
        offsite_dir: o.offsite_dir.map(|d| resolve(base, &d)),
        decryption_key,
        hosts,
        scratch,
        checks,
        max_age,
        retention: o
            .retention
            .map(|r| retention(r, "office.retention"))
            .transpose()?,
        offsite_retention: o
            .offsite_retention
            .map(|r| retention(r, "office.offsite_retention"))
            .transpose()?,
        refresh,
        production_servers: o.production_servers,
        allow_pattern,
        notify: match o.notify {
            Some(n) => {
                if let Some(u) = &n.ping {
                    crate::ping::check_url("office.notify.ping", u)?;
                }
                Notify {
                    webhook: n.webhook,
                    command: n.command,
                    ping: n.ping,
                }
            }
            None => Notify::default(),
        },
        parallel_downloads: o.parallel_downloads.unwrap_or(4).max(1),
        restore_jobs: match o.restore_jobs {
            Some(0) => {
                return Err(usage(
                    "office.restore_jobs: 0 connections cannot restore; give 1 (one stream) or more",
                ))
            }
            Some(n) => n,
            None => default_restore_jobs(),
        },
        spool_limit: match o.spool_limit {
            Some(s) => parse_size(&s).map_err(|e| usage(format!("office.spool_limit: {e}")))?,
            None => DEFAULT_SPOOL_LIMIT,
        },
        download_part_size,
        clock_tolerance: match o.clock_tolerance {
            Some(s) => {
                let d = parse_duration(&s)
                    .map_err(|e| usage(format!("office.clock_tolerance: {e}")))?;
                // Wider than a day, a forged date passes for a late push; refuse it as a typo.
                if d > std::time::Duration::from_secs(86_400) {
                    return Err(usage(format!(
                        "office.clock_tolerance: {s} is more than a day: a snapshot's claimed time may differ from the store's by that much unnoticed; give minutes or hours (default 1h)"
                    )));
                }
                d
            }
            None => DEFAULT_CLOCK_TOLERANCE,
        },
        max_snapshots_per_day: match o.max_snapshots_per_day {
            Some(0) => {
                return Err(usage(
                    "office.max_snapshots_per_day: 0 would flag every snapshot; give 1 or more",
                ))
            }
            Some(n) => n,
            None => 4,
        },
        max_prune_fraction: match o.max_prune_fraction {
            Some(f) if (0.0..=1.0).contains(&f) && f > 0.0 => f,
            Some(f) => {
                return Err(usage(format!(
                    "office.max_prune_fraction: {f} is not a share in (0, 1] (0.5: at most half of a host's snapshots per run)"
                )))
            }
            None => 0.5,
        },
        refresh_max_age: match o.refresh_max_age {
            Some(s) => parse_duration(&s)
                .map_err(|e| usage(format!("office.refresh_max_age: {e}")))?,
            None => DEFAULT_REFRESH_MAX_AGE,
        },
        abandon_after: match o.abandon_after {
            Some(s) => {
                let d = parse_duration(&s)
                    .map_err(|e| usage(format!("office.abandon_after: {e}")))?;
                // prune deletes what is older: a push still writing its dumps would lose them.
                if d < std::time::Duration::from_secs(3600) {
                    return Err(usage(format!(
                        "office.abandon_after: {s} is less than an hour: prune would delete the objects of a push that is still running; give more than your longest push takes (default 48h)"
                    )));
                }
                d
            }
            None => DEFAULT_ABANDON_AFTER,
        },
        expected_recipients: o
            .expected_recipients
            .iter()
            .map(|p| resolve(base, p))
            .collect(),
        scrub_days,
        masking,
    })
}

fn retention(r: raw::RawRetention, what: &str) -> Result<Retention> {
    let keep_within = r
        .keep_within
        .map(|s| parse_duration(&s))
        .transpose()
        .map_err(|e| usage(format!("{what}.keep_within: {e}")))?;
    let ret = Retention {
        keep_last: r.keep_last.unwrap_or(0),
        keep_hourly: r.keep_hourly.unwrap_or(0),
        keep_daily: r.keep_daily.unwrap_or(0),
        keep_weekly: r.keep_weekly.unwrap_or(0),
        keep_monthly: r.keep_monthly.unwrap_or(0),
        keep_yearly: r.keep_yearly.unwrap_or(0),
        keep_within,
        lock: r.lock.map(|l| retention_lock(l, what)).transpose()?,
    };
    let rules_only = Retention {
        lock: None,
        ..ret.clone()
    };
    if rules_only == Retention::default() {
        return Err(usage(format!(
            "{what} keeps nothing: set at least one of keep_last, keep_daily, keep_weekly, keep_monthly, keep_within"
        )));
    }
    Ok(ret)
}

fn retention_lock(l: raw::RawRetentionLock, what: &str) -> Result<RetentionLock> {
    let d = |v: Option<String>, key: &str| {
        v.map(|s| parse_duration(&s))
            .transpose()
            .map_err(|e| usage(format!("{what}.lock.{key}: {e}")))
    };
    Ok(RetentionLock {
        last: d(l.last, "last")?,
        hourly: d(l.hourly, "hourly")?,
        daily: d(l.daily, "daily")?,
        weekly: d(l.weekly, "weekly")?,
        monthly: d(l.monthly, "monthly")?,
        yearly: d(l.yearly, "yearly")?,
        within: d(l.within, "within")?,
    })
}

/// `postgres/NAME` or `mysql/NAME`.
fn check_source(what: &str, source: &str) -> Result<()> {
    match source.split_once('/') {
        Some(("postgres" | "mysql", name)) => check_name(what, name),
        _ => Err(usage(format!(
            "{what} {source:?}: expected postgres/NAME or mysql/NAME"
        ))),
    }
}

fn check_s3(s3: raw::RawS3, base: &Path) -> Result<S3Settings> {
    let secret = |spec: Option<SecretSpec>, what: &str| -> Result<Option<Secret>> {
        spec.map(|s| s.resolve(what, base)).transpose()
    };
    let mut access_key_id = secret(s3.access_key_id, "store.s3.access_key_id")?;
    let mut secret_access_key = secret(s3.secret_access_key, "store.s3.secret_access_key")?;
    // OFFSITE_* variables win over the file, so a cron job can inject the credential.
    if let Ok(v) = std::env::var("OFFSITE_S3_ACCESS_KEY_ID") {
        access_key_id = Some(Secret::new(v));
    }
    if let Ok(v) = std::env::var("OFFSITE_S3_SECRET_ACCESS_KEY") {
        secret_access_key = Some(Secret::new(v));
    }
    if access_key_id.is_some() != secret_access_key.is_some() {
        return Err(usage("store.s3: give both access_key_id and secret_access_key, or neither (then the standard AWS chain is used)"));
    }
    let part_size = match s3.part_size {
        Some(s) => parse_size(&s).map_err(|e| usage(format!("store.s3.part_size: {e}")))?,
        None => 8 << 20,
    };
    if part_size < 5 << 20 {
        return Err(usage(
            "store.s3.part_size must be at least 5MiB (the S3 minimum)",
        ));
    }
    let object_lock = match s3.object_lock {
        None => None,
        Some(l) => {
            let mode = l.mode.to_ascii_lowercase();
            if mode != "compliance" && mode != "governance" {
                return Err(usage(
                    "store.s3.object_lock.mode: use compliance or governance",
                ));
            }
            Some((mode, l.days))
        }
    };
    let stall_timeout = match s3.stall_timeout {
        Some(s) => parse_duration(&s).map_err(|e| usage(format!("store.s3.stall_timeout: {e}")))?,
        None => DEFAULT_STALL_TIMEOUT,
    };
    if stall_timeout.is_zero() {
        return Err(usage(
            "store.s3.stall_timeout must be at least 1s (default 60s): a request that moves no byte for that long fails the push",
        ));
    }
    Ok(S3Settings {
        bucket: s3.bucket,
        prefix: s3.prefix.trim_matches('/').to_string(),
        region: s3.region,
        endpoint: s3.endpoint,
        path_style: s3.path_style,
        access_key_id,
        secret_access_key,
        session_token: secret(s3.session_token, "store.s3.session_token")?,
        part_size,
        parts_in_flight: s3.parts_in_flight.unwrap_or(8).max(1),
        object_lock,
        stall_timeout,
    })
}

fn db_server(
    what: &str,
    url: &str,
    password: Option<SecretSpec>,
    databases: Option<RawDatabases>,
    exclude: Vec<String>,
    dump_command: Option<String>,
    base: &Path,
) -> Result<DbServer> {
    let (clean, mut secret) = clean_url(url).map_err(|e| usage(format!("{what}.url: {e}")))?;
    if let Some(spec) = password {
        secret = Some(spec.resolve(&format!("{what}.password"), base)?);
    }
    let databases = match databases {
        None => Databases::All,
        Some(RawDatabases::Keyword(k)) if k == "all" => Databases::All,
        Some(RawDatabases::Keyword(k)) => {
            return Err(usage(format!(
                "{what}.databases: {k:?} is neither `all` nor a list"
            )))
        }
        Some(RawDatabases::List(l)) if l.is_empty() => {
            return Err(usage(format!("{what}.databases: the list is empty")))
        }
        Some(RawDatabases::List(l)) => Databases::List(l),
    };
    Ok(DbServer {
        dump_stall_timeout: DEFAULT_DUMP_STALL_TIMEOUT,
        url: clean,
        password: secret,
        databases,
        exclude,
        dump_command: dump_command.map(|c| {
            if c.contains('/') {
                resolve(base, &c).display().to_string()
            } else {
                c
            }
        }),
    })
}

impl DbServer {
    fn with_dump_stall_timeout(mut self, what: &str, raw: Option<String>) -> Result<Self> {
        if let Some(s) = raw {
            let d =
                parse_duration(&s).map_err(|e| usage(format!("{what}.dump_stall_timeout: {e}")))?;
            if d.is_zero() {
                return Err(usage(format!(
                    "{what}.dump_stall_timeout must be at least 1s (default 30m)"
                )));
            }
            self.dump_stall_timeout = d;
        }
        Ok(self)
    }
}

/// Splits a database URL into one that is safe to print, log and pass in argv, and its password:
/// from the user part (`postgres://u:pw@host/`) or a `password=` query parameter.
pub fn clean_url(url: &str) -> Result<(String, Option<Secret>)> {
    let mut parsed = url::Url::parse(url).map_err(|e| {
        anyhow::anyhow!(
            "not a URL ({e}); e.g. postgres://backup@127.0.0.1:5432/ (the password is not shown)"
        )
    })?;
    let mut secret = parsed.password().map(|p| Secret::new(percent_decode(p)));
    // Fails only for URLs that cannot have a password at all, which then have none to remove.
    let _ = parsed.set_password(None);
    let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    if pairs.iter().any(|(k, _)| k == "password") {
        let mut kept = Vec::new();
        for (k, v) in pairs {
            if k == "password" {
                secret = Some(Secret::new(v));
            } else {
                kept.push((k, v));
            }
        }
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    Ok((parsed.to_string(), secret))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Names that become path components and S3 key parts.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(usage(format!("{what} {name:?} must be letters, digits, '-', '_' or '.' (it becomes part of object keys)")))
    }
}

fn hostname() -> Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]);
    // Keep only what is valid in a key: the short host name.
    Ok(name.split('.').next().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests;
