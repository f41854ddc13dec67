//! The rules a refresh target must pass before anything is touched. Every rule is checked for an
//! entry before its first write; a refusal names its rule.
//!
//! | rule | refuses |
//! |---|---|
//! | `production-source` | a target on the server of a push source (`postgres:` / `mysql:` in this config) whose `databases` list holds the name, or any name when it is `databases: all` |
//! | `production-server` | any target on a server listed in `office.production_servers` (no port there: every port of that host) |
//! | `allow-pattern` | a database name that does not match `office.allow_pattern` |
//! | `name-too-long` | a name whose `_offsite_new_xxxx` work names would not fit PostgreSQL's 63 bytes |
//! | `server-engine` | a `postgres/...` source refreshed into a non-PostgreSQL URL, or the other way round |
//! | `unknown-host` | a host missing from `office.hosts` (its signatures cannot be checked) |
//! | `post-sql-missing` | a post_sql file that does not exist: a refresh without its anonymization must not happen |
//! | `no-verified-snapshot` | a host none of whose snapshots passed verify |
//! | `verified-too-old` | a newest verified snapshot whose trusted time is older than `office.refresh_max_age`: the dev database would silently fall back to old data |
//! | `newer-failed` | snapshots newer than the newest verified one that failed verify: something is wrong with production's backups, and an older copy is no quiet substitute |
//! | `source-not-in-snapshot` | a newest verified snapshot without the source; there is no fallback to an older or unverified one |
//!
//! Servers are compared by host and port. Host names are resolved, and every loopback address (and a
//! Unix socket, and no host at all) counts as the same local server, so `localhost:5432`,
//! `127.0.0.1:5432` and `127.0.1.1:5432` are one server.

use std::collections::BTreeSet;
use std::net::{IpAddr, ToSocketAddrs};

use anyhow::Result;

use crate::config::{Config, Databases, DbServer, Refresh};
use crate::db::MAX_TARGET_LEN;
use crate::office::context::Office;
use crate::office::record::{newest_verified, trusted_records, VerifyRecord};
use crate::snapshot::list::{find, load_manifest, SnapshotInfo};
use crate::snapshot::manifest::{Engine, Manifest};

/// A refused entry: nothing was touched.
#[derive(Debug)]
pub struct Refusal {
    pub rule: &'static str,
    pub message: String,
    pub snapshot: Option<String>,
}

/// Everything a refresh needs, known to be allowed.
pub struct Plan {
    pub engine: Engine,
    pub record: VerifyRecord,
    pub snapshot: SnapshotInfo,
    pub manifest: Manifest,
}

pub enum Checked {
    Ok(Box<Plan>),
    Refused(Refusal),
    /// Not a rule: something could not be read (a damaged record, a missing snapshot directory).
    Failed(anyhow::Error),
}

fn refuse(rule: &'static str, message: String) -> Checked {
    Checked::Refused(Refusal {
        rule,
        message,
        snapshot: None,
    })
}

/// Checks every rule for `r`, in the order of the table above.
pub fn plan(office: &Office, r: &Refresh, now: time::OffsetDateTime) -> Checked {
    if let Err(refusal) = check_target(&office.cfg, r) {
        return Checked::Refused(refusal);
    }
    if office.signers(&r.host).is_err() {
        return refuse(
            "unknown-host",
            format!(
                "host {} is not in office.hosts: its snapshots' signatures cannot be checked",
                r.host
            ),
        );
    }
    for f in &r.post_sql {
        if !f.is_file() {
            return refuse(
                "post-sql-missing",
                format!(
                    "post_sql file {} does not exist; without it the dev database would hold un-anonymized data",
                    f.display()
                ),
            );
        }
    }
    match verified(office, r, now) {
        Ok(c) => c,
        Err(e) => Checked::Failed(e),
    }
}

fn engine_of(source: &str) -> Engine {
    if source.starts_with("postgres/") {
        Engine::Postgres
    } else {
        Engine::Mysql
    }
}

/// The rules that need only the config.
pub fn check_target(cfg: &Config, r: &Refresh) -> Result<(), Refusal> {
    let no = |rule: &'static str, message: String| {
        Err(Refusal {
            rule,
            message,
            snapshot: None,
        })
    };
    let db = &r.database;
    let engine = engine_of(&r.source);
    let scheme_ok = match url::Url::parse(&r.server.url) {
        Ok(u) => match engine {
            Engine::Postgres => matches!(u.scheme(), "postgres" | "postgresql"),
            Engine::Mysql => matches!(u.scheme(), "mysql" | "mariadb"),
        },
        Err(_) => false,
    };
    if !scheme_ok {
        return no(
            "server-engine",
            format!(
                "{} is refreshed from {} but its server {} is not a {} URL",
                db,
                r.source,
                r.server.url,
                engine.as_str()
            ),
        );
    }
    let target = Endpoint::parse(&r.server.url);
    let sources = cfg.postgres.iter().chain(cfg.mysql.iter());
    for s in sources {
        if is_production_db(s, &target, db) {
            let which = match &s.databases {
                Databases::All => {
                    "`databases: all`: every database on it is production".to_string()
                }
                Databases::List(_) => format!("{db} is one of its databases"),
            };
            return no(
                "production-source",
                format!(
                    "{db} on {} is a production database: {} is a push source in this config ({which})",
                    r.server.url, s.url
                ),
            );
        }
    }
    let office = cfg.office.as_ref();
    for p in office
        .map(|o| o.production_servers.as_slice())
        .unwrap_or(&[])
    {
        if Endpoint::parse(p).same_server(&target) {
            return no(
                "production-server",
                format!(
                    "{} is the production server {p} (office.production_servers): refresh never writes there",
                    r.server.url
                ),
            );
        }
    }
    let pattern = office
        .map(|o| o.allow_pattern.as_str())
        .unwrap_or(crate::config::DEFAULT_ALLOW_PATTERN);
    let allowed = regex::Regex::new(pattern)
        .map(|re| re.is_match(db))
        .unwrap_or(false);
    if !allowed {
        return no(
            "allow-pattern",
            format!(
                "{db} does not match office.allow_pattern {pattern:?}: only dev/test databases are refreshed"
            ),
        );
    }
    if db.len() > MAX_TARGET_LEN {
        return no(
            "name-too-long",
            format!(
                "{db} is longer than {MAX_TARGET_LEN} characters: the work databases (`{db}_offsite_new_xxxx`) would exceed the 63-byte identifier limit"
            ),
        );
    }
    Ok(())
}

fn is_production_db(s: &DbServer, target: &Endpoint, db: &str) -> bool {
    if !Endpoint::parse(&s.url).same_server(target) {
        return false;
    }
    match &s.databases {
        Databases::All => true,
        Databases::List(list) => list.iter().any(|d| d == db),
    }
}

/// The snapshot rules: a verified snapshot exists and holds the source.
fn verified(office: &Office, r: &Refresh, now: time::OffsetDateTime) -> Result<Checked> {
    let records = trusted_records(&office.offsite_dir, &r.host)?;
    let Some(record) = newest_verified(&office.offsite_dir, &r.host)? else {
        return Ok(refuse(
            "no-verified-snapshot",
            format!(
                "no snapshot of host {} has passed verify (records under {}); refresh never restores an unverified snapshot",
                r.host,
                crate::office::record::reports_dir(&office.offsite_dir).display()
            ),
        ));
    };
    let taken = record.trusted_time();
    let max_age = time::Duration::try_from(office.office.refresh_max_age)
        .unwrap_or(time::Duration::hours(48));
    if taken.is_none_or(|t| now - t > max_age) {
        return Ok(Checked::Refused(Refusal {
            rule: "verified-too-old",
            message: format!(
                "the newest verified snapshot {}/{} was taken {} ago (its store time, {}); office.refresh_max_age allows {}: refresh does not quietly fall back to old data (check push and verify of {})",
                r.host,
                record.snapshot,
                taken
                    .map(|t| crate::snapshot::trust::human(now - t))
                    .unwrap_or_else(|| "an unknown time".into()),
                record.snapshot_time,
                crate::config::human_duration(office.office.refresh_max_age),
                r.host
            ),
            snapshot: Some(record.snapshot.clone()),
        }));
    }
    let failed_newer: Vec<&str> = records
        .iter()
        .filter(|x| !x.ok && x.trusted_time() > taken)
        .map(|x| x.snapshot.as_str())
        .collect();
    if !failed_newer.is_empty() {
        return Ok(Checked::Refused(Refusal {
            rule: "newer-failed",
            message: format!(
                "snapshot(s) of {} newer than the newest verified one ({}) failed verify: {}; refresh does not fall back to an older snapshot while the newer ones fail (see the report)",
                r.host,
                record.snapshot,
                failed_newer.join(", ")
            ),
            snapshot: Some(record.snapshot.clone()),
        }));
    }
    let snapshot = find(office.offsite.as_ref(), &r.host, &record.snapshot)?;
    // The record says verify passed; the manifest's signature is still checked again here, because
    // the offsite copy may have changed since.
    let manifest = load_manifest(
        office.offsite.as_ref(),
        &snapshot,
        &office.decryption,
        office.signers(&r.host)?,
    )?;
    let failed_in_record = record
        .databases
        .iter()
        .any(|d| d.source == r.source && !d.ok);
    if manifest.database(&r.source).is_none() || failed_in_record {
        let have: Vec<&str> = manifest
            .databases
            .iter()
            .map(|d| d.source.as_str())
            .collect();
        return Ok(Checked::Refused(Refusal {
            rule: "source-not-in-snapshot",
            message: format!(
                "the newest verified snapshot {}/{} has no verified {} (it has: {}); refresh does not fall back to an older or unverified snapshot",
                r.host,
                record.snapshot,
                r.source,
                have.join(", ")
            ),
            snapshot: Some(record.snapshot.clone()),
        }));
    }
    Ok(Checked::Ok(Box::new(Plan {
        engine: engine_of(&r.source),
        record,
        snapshot,
        manifest,
    })))
}

/// A server as host and port; `port: None` stands for every port of the host.
#[derive(Debug, Clone)]
struct Endpoint {
    host: String,
    port: Option<u16>,
}

impl Endpoint {
    fn parse(url: &str) -> Self {
        let parsed = url::Url::parse(url)
            .ok()
            .filter(|u| {
                u.has_host()
                    || matches!(u.scheme(), "postgres" | "postgresql" | "mysql" | "mariadb")
            })
            .or_else(|| url::Url::parse(&format!("tcp://{url}")).ok());
        let Some(u) = parsed else {
            return Self {
                host: url.to_ascii_lowercase(),
                port: None,
            };
        };
        let port = u.port().or(match u.scheme() {
            "postgres" | "postgresql" => Some(5432),
            "mysql" | "mariadb" => Some(3306),
            _ => None,
        });
        // libpq also takes the host (or a socket folder) from `?host=`.
        let query_host = || {
            u.query_pairs()
                .find(|(k, _)| k == "host")
                .map(|(_, v)| v.into_owned())
        };
        let host = match u.host_str() {
            Some(h) if !h.is_empty() => h.to_string(),
            _ => query_host().unwrap_or_default(),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        Self { host, port }
    }

    fn same_server(&self, other: &Endpoint) -> bool {
        let ports = match (self.port, other.port) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        ports && same_host(&self.host, &other.host)
    }
}

/// The addresses a host stands for; every loopback address and a local socket become `local`.
fn addresses(host: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let local = host.is_empty()
        || host == "localhost"
        || host.starts_with('/')
        || host.starts_with("%2f")
        || host.ends_with(".localhost");
    if local {
        out.insert("local".to_string());
        return out;
    }
    let ips: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        // A name that does not resolve is compared by name only.
        Err(_) => (host, 0)
            .to_socket_addrs()
            .map(|a| a.map(|s| s.ip()).collect())
            .unwrap_or_default(),
    };
    for ip in ips {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        if ip.is_loopback() {
            out.insert("local".to_string());
        } else {
            out.insert(ip.to_string());
        }
    }
    out.insert(format!("name:{host}"));
    out
}

fn same_host(a: &str, b: &str) -> bool {
    a == b || !addresses(a).is_disjoint(&addresses(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        Endpoint::parse(s)
    }

    #[test]
    fn servers_compare_by_host_and_port() {
        let pg = ep("postgres://postgres@127.0.0.1:5432/");
        assert!(pg.same_server(&ep("postgres://localhost/")));
        assert!(pg.same_server(&ep("postgres://u@[::1]:5432/x")));
        assert!(!pg.same_server(&ep("postgres://127.0.0.1:5433/")));
        assert!(pg.same_server(&ep("127.0.0.1")), "no port: the whole host");
        assert!(pg.same_server(&ep("localhost:5432")));
        assert!(!pg.same_server(&ep("mysql://127.0.0.1")));
        assert!(
            ep("mysql://db1.example.invalid").same_server(&ep("mysql://DB1.example.invalid:3306"))
        );
        assert!(!ep("mysql://db1.example.invalid").same_server(&ep("mysql://db2.example.invalid")));
        assert!(ep("postgres:///shop?host=/run/postgresql").same_server(&pg));
    }
}
