//! Office-side fixtures: a config with an office section over a temp offsite directory, and verify /
//! pull records built in Rust and saved where the real commands would write them. No database, no
//! store: for the commands that only read records (report, and the record-reading parts of others).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use offsite::office::record::{
    CheckResult, DatabaseResult, Freshness, Incomplete, PullHost, PullRecord, TableRows,
    TreeResult, VerifyRecord, FORMAT, PULL_FORMAT, VERSION,
};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Duration, OffsetDateTime};

use super::cli::{bin, Run, Setup};

/// The fixed "now" every office test runs at (`OFFSITE_NOW`), so ages do not depend on the clock.
pub const NOW: &str = "2026-11-23T06:00:00Z";

pub fn now() -> OffsetDateTime {
    OffsetDateTime::parse(NOW, &Rfc3339).expect("NOW")
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format time")
}

/// `20261123T021500Z-00a1`: a snapshot id taken `hours_ago` before [`NOW`].
pub fn snapshot_at(hours_ago: f64, n: u16) -> (String, OffsetDateTime) {
    let t = now() - Duration::seconds_f64(hours_ago * 3600.0);
    let stamp = t
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .expect("format id");
    (format!("{stamp}-{n:04x}"), t)
}

/// A temp dir with keys for the office and every host, and `config.yaml` listing the hosts.
pub struct OfficeSetup {
    pub setup: Setup,
    pub hosts: Vec<String>,
}

impl OfficeSetup {
    pub fn new(hosts: &[&str]) -> Self {
        let setup = Setup::new(hosts[0]);
        for h in &hosts[1..] {
            let out = Command::new(bin())
                .args(["keygen", h, "--out"])
                .arg(setup.path("keys"))
                .output()
                .expect("keygen");
            assert!(out.status.success(), "keygen {h}");
        }
        let s = Self {
            setup,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        };
        s.config("");
        s
    }

    pub fn offsite_dir(&self) -> PathBuf {
        self.setup.path("offsite")
    }

    pub fn reports_dir(&self) -> PathBuf {
        self.offsite_dir().join("reports")
    }

    /// Writes config.yaml; `office_extra` is more YAML for the office section, indented two spaces.
    pub fn config(&self, office_extra: &str) {
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .map(|h| format!("{h}: keys/{h}.cert.asc"))
            .collect();
        let text = format!(
            "host: office\nstore: {{ local: store }}\noffice:\n  offsite_dir: offsite\n  decryption_key: keys/office.secret.asc\n  hosts: {{ {} }}\n{office_extra}\n",
            hosts.join(", ")
        );
        std::fs::write(self.setup.config_path(), text).expect("writing config");
    }

    /// Runs `offsite -c config.yaml ARGS` at [`NOW`].
    pub fn offsite(&self, args: &[&str]) -> Run {
        self.setup.offsite_env(args, &[("OFFSITE_NOW", NOW)])
    }

    pub fn save(&self, r: &VerifyRecord) {
        r.save(&self.offsite_dir()).expect("saving verify record");
    }

    pub fn save_pull(&self, p: &PullRecord) {
        p.save(&self.offsite_dir()).expect("saving pull record");
    }
}

/// A passing database result with these tables (rows restored as expected).
pub fn db(source: &str, plain_bytes: u64, tables: &[(&str, u64)]) -> DatabaseResult {
    DatabaseResult {
        source: source.into(),
        engine: if source.starts_with("mysql/") {
            "mariadb 10.11.6".into()
        } else {
            "postgres 15.8".into()
        },
        ok: true,
        restore_seconds: 2.5 + plain_bytes as f64 / 50e6,
        stored_bytes: plain_bytes / 6,
        plain_bytes,
        tables: tables
            .iter()
            .map(|(t, n)| {
                (
                    t.to_string(),
                    TableRows {
                        expected: *n,
                        restored: Some(*n),
                        in_dump: Some(*n),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
        checks: Vec::new(),
        error: None,
        warnings: Vec::new(),
        restored_as: Some(offsite::office::record::RestoredAs {
            role: "offsite_restore".into(),
            owner_statements: 4,
            privilege_statements: 1,
            definers: 0,
        }),
    }
}

pub fn check(sql: &str, expect: &str, value: &str, ok: bool) -> CheckResult {
    CheckResult {
        sql: sql.into(),
        expect: expect.into(),
        value: Some(value.into()),
        ok,
        error: None,
    }
}

pub fn tree(name: &str, files: u64, bytes: u64) -> TreeResult {
    TreeResult {
        name: name.into(),
        ok: true,
        files,
        bytes,
        seconds: 1.0 + bytes as f64 / 200e6,
        error: None,
        objects_read: 0,
        stored_bytes_read: 0,
    }
}

/// A verify record of `host` for a snapshot taken `hours_ago`, verified 3 h later; `ok` follows
/// the databases and trees.
pub fn record(
    host: &str,
    hours_ago: f64,
    n: u16,
    databases: Vec<DatabaseResult>,
    trees: Vec<TreeResult>,
) -> VerifyRecord {
    let (snapshot, taken) = snapshot_at(hours_ago, n);
    let ok = databases.iter().all(|d| d.ok) && trees.iter().all(|t| t.ok);
    let seconds = 4.0
        + databases.iter().map(|d| d.restore_seconds).sum::<f64>()
        + trees.iter().map(|t| t.seconds).sum::<f64>();
    VerifyRecord {
        locked_until: None,
        format: FORMAT.into(),
        version: VERSION,
        host: host.into(),
        snapshot,
        snapshot_time: rfc3339(taken),
        verified_at: rfc3339((taken + Duration::hours(3)).min(now())),
        verified_from: "offsite".into(),
        ok,
        seconds,
        signer: format!("offsite {host} <0123456789ABCDEF>"),
        stored_bytes: databases.iter().map(|d| d.stored_bytes).sum::<u64>()
            + trees.iter().map(|t| t.bytes / 2).sum::<u64>(),
        plain_bytes: databases.iter().map(|d| d.plain_bytes).sum::<u64>()
            + trees.iter().map(|t| t.bytes).sum::<u64>(),
        freshness: Freshness {
            age_hours: 3.0,
            max_age_hours: 26.0,
            ok: true,
        },
        databases,
        trees,
        errors: Vec::new(),
        warnings: Vec::new(),
    }
}

/// A pull record that saw `newest` (hours ago) as each host's newest complete snapshot.
pub fn pull(hosts: &[(&str, f64, Vec<Incomplete>)]) -> PullRecord {
    PullRecord {
        format: PULL_FORMAT.into(),
        version: 1,
        ran_at: rfc3339(now() - Duration::hours(1)),
        ok: true,
        seconds: 42.0,
        hosts: hosts
            .iter()
            .map(|(h, newest, incomplete)| {
                let (id, t) = snapshot_at(*newest, 0xbeef);
                PullHost {
                    pulled: vec![id.clone()],
                    objects: 12,
                    bytes: 123 << 20,
                    newest_complete: Some(id),
                    newest_complete_time: Some(rfc3339(t)),
                    incomplete: incomplete.clone(),
                    ..PullHost::new(h)
                }
            })
            .collect(),
    }
}

pub fn incomplete(hours_ago: f64, abandoned: bool) -> Incomplete {
    Incomplete {
        snapshot: snapshot_at(hours_ago, 0xdead).0,
        age_hours: hours_ago,
        abandoned,
        bytes: 0,
        unfinished_writes: 0,
    }
}

/// Validates `doc` against schemas/report.schema.json (draft 2020-12). Returns the error lines.
pub fn schema_errors(doc: &Path) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = root.join(".venv-moto/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run `make services` (it installs jsonschema)",
        py.display()
    );
    let script = r#"
import json, sys
try:
    import jsonschema
except ImportError:
    sys.exit(3)
schema = json.load(open(sys.argv[1]))
doc = json.load(open(sys.argv[2]))
V = jsonschema.Draft202012Validator
V.check_schema(schema)
def leaves(e):
    # Inside a oneOf, the useful messages are those of the branches.
    if e.context:
        for c in e.context:
            yield from leaves(c)
    else:
        yield e
for top in sorted(V(schema).iter_errors(doc), key=lambda e: list(e.absolute_path)):
    for e in leaves(top):
        print("/".join(map(str, e.absolute_path)) + ": " + e.message)
"#;
    let out = Command::new(&py)
        .args(["-c", script])
        .arg(root.join("schemas/report.schema.json"))
        .arg(doc)
        .output()
        .expect("running python");
    assert_ne!(
        out.status.code(),
        Some(3),
        "Python jsonschema is not installed in .venv-moto: run `make services` (it installs jsonschema)"
    );
    assert!(
        out.status.success(),
        "schema check crashed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
