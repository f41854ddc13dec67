//! Throwaway databases on the local PostgreSQL and MariaDB, each with a unique name, dropped on drop.
//! Talks through the real clients (psql, mariadb, pg_dump, mariadb-dump).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/";
pub const MY_URL: &str = "mysql://root@127.0.0.1:3306";
/// The least-privilege role scripts/services makes with the README's statements: verify and
/// refresh refuse a superuser (or FILE/SUPER) role, so the tests restore as this one.
pub const RESTORE_ROLE: &str = "offsite_restore";
pub const PG_RESTORE_URL: &str = "postgres://offsite_restore@127.0.0.1:5432/";
pub const MY_RESTORE_URL: &str = "mysql://offsite_restore@127.0.0.1:3306";

/// `t_<tag>_<pid>_<hex>`: unique across parallel tests and test binaries.
pub fn unique(tag: &str) -> String {
    format!(
        "t_{tag}_{}_{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_stdin(mut cmd: Command, input: &Path, what: &str) {
    let f = std::fs::File::open(input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
    let out = cmd
        .stdin(f)
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn psql(db: &str) -> Command {
    psql_as(db, "postgres")
}

/// psql as another role (a developer's session the refresh must end).
pub fn psql_as(db: &str, role: &str) -> Command {
    let mut c = Command::new("psql");
    c.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-U",
        role,
        "-d",
        db,
    ]);
    c
}

pub fn mariadb(db: Option<&str>) -> Command {
    let mut c = Command::new("mariadb");
    c.args([
        "-h",
        "127.0.0.1",
        "-uroot",
        "--default-character-set=utf8mb4",
        "--max-allowed-packet=1G",
    ]);
    if let Some(d) = db {
        c.arg(d);
    }
    c
}

pub struct PgDb {
    pub name: String,
}

impl PgDb {
    pub fn new(tag: &str) -> Self {
        let name = unique(tag);
        let mut c = psql("postgres");
        c.args(["-c", &format!("CREATE DATABASE {name}")]);
        run(c, "creating a PostgreSQL test database");
        Self { name }
    }

    /// A handle for a database some command will create; dropped (if it exists) at the end.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
        }
    }

    pub fn load(&self, sql: &Path) -> &Self {
        run_stdin(psql(&self.name), sql, "loading a PostgreSQL fixture");
        self
    }

    pub fn exec(&self, sql: &str) -> String {
        let mut c = psql(&self.name);
        c.args(["-At", "-c", sql]);
        run(c, &format!("psql {sql}"))
    }

    pub fn exists(&self) -> bool {
        let mut c = psql("postgres");
        c.args([
            "-At",
            "-c",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{}'", self.name),
        ]);
        run(c, "checking a database").trim() == "1"
    }

    /// Schema and data as pg_dump sees them, without the lines that differ between two dumps of the
    /// same content (comments, the per-dump \restrict key).
    pub fn dump(&self) -> String {
        let mut c = Command::new("pg_dump");
        c.args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "--no-owner",
            &self.name,
        ]);
        normalize(&run(c, "pg_dump for comparison"))
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = psql("postgres")
            .args([
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .stdin(Stdio::null())
            .output();
    }
}

pub struct MyDb {
    pub name: String,
}

impl MyDb {
    pub fn new(tag: &str) -> Self {
        let name = unique(tag);
        let mut c = mariadb(None);
        c.args([
            "-e",
            &format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"),
        ]);
        run(c, "creating a MariaDB test database");
        Self { name }
    }

    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
        }
    }

    pub fn load(&self, sql: &Path) -> &Self {
        run_stdin(mariadb(Some(&self.name)), sql, "loading a MariaDB fixture");
        self
    }

    pub fn exec(&self, sql: &str) -> String {
        let mut c = mariadb(Some(&self.name));
        c.args(["-N", "-B", "-e", sql]);
        run(c, &format!("mariadb {sql}"))
    }

    pub fn exists(&self) -> bool {
        let mut c = mariadb(None);
        c.args([
            "-N",
            "-B",
            "-e",
            &format!(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{}'",
                self.name
            ),
        ]);
        run(c, "checking a database").trim() == "1"
    }

    /// Schema, routines and data as mariadb-dump sees them.
    pub fn dump(&self) -> String {
        let mut c = Command::new("mariadb-dump");
        c.args([
            "-h",
            "127.0.0.1",
            "-uroot",
            "--skip-comments",
            "--skip-dump-date",
            "--max-allowed-packet=1G",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            &self.name,
        ]);
        without_definers(&run(c, "mariadb-dump for comparison"))
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        let _ = mariadb(None)
            .args(["-e", &format!("DROP DATABASE IF EXISTS `{}`", self.name)])
            .stdin(Stdio::null())
            .output();
    }
}

fn normalize(dump: &str) -> String {
    dump.lines()
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn fixture(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// A dump with every `DEFINER=`user`@`host`` as `DEFINER=?`: verify and refresh restore as their
/// own role, so views, triggers and routines are defined by it, not by the source's user.
pub fn without_definers(dump: &str) -> String {
    let mut out = String::with_capacity(dump.len());
    let mut rest = dump;
    while let Some(i) = rest.find("DEFINER=`") {
        out.push_str(&rest[..i]);
        out.push_str("DEFINER=?");
        let after = &rest[i + "DEFINER=".len()..];
        // `user`@`host`: two backquoted names (pg-free test fixtures double no backquotes here).
        let mut parts = after.splitn(5, '`');
        let (_, user, at, host) = (parts.next(), parts.next(), parts.next(), parts.next());
        match (user, at, host) {
            (Some(u), Some("@"), Some(h)) => {
                rest = &after[u.len() + h.len() + 5..];
            }
            _ => rest = after,
        }
    }
    out.push_str(rest);
    out
}
