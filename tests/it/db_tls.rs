//! TLS to PostgreSQL against a real server that refuses plaintext: a private cluster (initdb in a
//! temp dir, its own port, `ssl = on`, a CA and server certificate made here with openssl,
//! `pg_hba.conf` with `hostssl` lines only). push dumps from it over TLS, restore and verify write
//! into it over TLS, a wrong CA is a config error naming the server, and `sslmode=disable` is
//! refused by the server with a message that says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::cli::Setup;
use crate::common::tls::{free_port, make_ca, make_leaf, run};

/// A PostgreSQL binary: from PATH, else the newest of Debian's /usr/lib/postgresql/*/bin.
fn pg_bin(name: &str) -> PathBuf {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("no PostgreSQL server binaries: /usr/lib/postgresql is missing")
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    found.sort_by_key(|p| {
        p.components()
            .nth(3)
            .and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .unwrap_or_else(|| panic!("{name} not found on PATH or in /usr/lib/postgresql/*/bin"))
}

/// A PostgreSQL cluster of its own that accepts only TLS connections from 127.0.0.1, stopped (by
/// its postmaster's pid) and deleted on drop.
struct TlsCluster {
    /// Deleted after the server stopped (fields drop after `drop` ran).
    _dir: tempfile::TempDir,
    port: u16,
    pid: Option<i32>,
    /// The CA that signed the server's certificate, and one that did not.
    ca: PathBuf,
    wrong_ca: PathBuf,
}

impl TlsCluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = unsafe { libc::geteuid() } == 0;
        // initdb and postgres refuse to run as root: then the cluster belongs to `postgres`.
        let owner = root.then(|| {
            let name = std::ffi::CString::new("postgres").unwrap();
            // SAFETY: getpwnam returns null or a pointer to a static passwd entry, read at once.
            let pw = unsafe { libc::getpwnam(name.as_ptr()) };
            assert!(!pw.is_null(), "running as root needs the postgres user");
            unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
        });
        let as_owner = |program: PathBuf| -> Command {
            match owner {
                Some(_) => {
                    let mut c = Command::new("runuser");
                    c.args(["-u", "postgres", "--"]).arg(program);
                    c
                }
                None => Command::new(program),
            }
        };
        let chown = |p: &Path| {
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown");
            }
        };
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        let ca = make_ca(&certs, "ca");
        let wrong_ca = make_ca(&certs, "wrong-ca");
        let (crt, key) = make_leaf(
            &certs,
            "ca",
            "server",
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        );
        // The client certificate of `certuser`, whose only way in is a certificate.
        make_leaf(
            &certs,
            "ca",
            "certuser",
            "certuser",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        );
        std::fs::set_permissions(&certs, std::fs::Permissions::from_mode(0o755)).unwrap();
        for p in [&crt, &key] {
            chown(p);
        }

        let data = dir.path().join("data");
        let sockets = dir.path().join("sockets");
        std::fs::create_dir(&sockets).unwrap();
        chown(&sockets);
        chown(dir.path());
        run(
            as_owner(pg_bin("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
                .args(["--locale=C", "--no-instructions"]),
            "initdb",
        );
        let port = free_port();
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\nfsync = off\n",
            sockets.display(),
            crt.display(),
            key.display(),
            ca.display()
        );
        let mut text = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        text.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), text).unwrap();
        // Encrypted connections only: plaintext finds no line and is refused. certuser must
        // present a client certificate signed by the CA, with its name as CN; pwuser a password.
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all certuser 127.0.0.1/32 cert\nhostssl all pwuser 127.0.0.1/32 scram-sha-256\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        let log = dir.path().join("server.log");
        let started = as_owner(pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "30", "start"])
            .stdin(Stdio::null())
            .output()
            .expect("pg_ctl start");
        let pid = std::fs::read_to_string(data.join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok());
        let cluster = Self {
            _dir: dir,
            port,
            pid,
            ca,
            wrong_ca,
        };
        assert!(
            started.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&started.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        cluster
    }

    /// A URL for this server with `query` (without the leading `?`).
    fn url(&self, db: &str, query: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}?{query}", self.port)
    }

    fn verify_full(&self, ca: &Path) -> String {
        format!("sslmode=verify-full&sslrootcert={}", ca.display())
    }

    /// psql over TLS (verified), as a person would connect.
    fn psql(&self, db: &str, sql: &str) -> String {
        run(
            Command::new("psql")
                .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d"])
                .arg(self.url(db, &self.verify_full(&self.ca)))
                .args(["-c", sql]),
            &format!("psql {sql}"),
        )
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let Some(pid) = self.pid else { return };
        // Fast shutdown of the postmaster this test started; then wait for it to be gone, so the
        // temp dir can go.
        // SAFETY: kill(2) with a pid we read from our own cluster's postmaster.pid.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if unsafe { libc::kill(pid, 0) } == 0 {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A config whose PostgreSQL source, scratch server and refresh target server are these URLs. The
/// store is also the office's offsite_dir, so verify and refresh read what push wrote. The role is
/// the test cluster's superuser, accepted with `allow_privileged` (tests/office_privilege.rs
/// covers the refusal; this file covers TLS).
fn write_config(s: &Setup, source_url: &str, scratch_url: &str, refresh_url: &str) {
    let host = &s.host;
    s.write(
        "config.yaml",
        &format!(
            "host: {host}\nstore: {{ local: store }}\nstate_dir: state\nencryption:\n  recipients: [keys/office.cert.asc]\n  signing_key: keys/{host}.secret.asc\npostgres:\n  - url: '{source_url}'\n    databases: [shop]\noffice:\n  offsite_dir: store\n  decryption_key: keys/office.secret.asc\n  hosts: {{ {host}: keys/{host}.cert.asc }}\n  scratch: {{ postgres: {{ url: '{scratch_url}', allow_privileged: true }} }}\n  refresh:\n    - {{ from: '{host}:postgres/shop', server: {{ url: '{refresh_url}', allow_privileged: true }}, database: shop_dev }}\n"
        ),
    );
}

const ROWS: &str = "SELECT id, name FROM items ORDER BY id";

#[test]
fn push_restore_and_verify_over_verified_tls() {
    let pg = TlsCluster::start();
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql(
        "shop",
        "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'tea'), (2, 'ümlaut'), (3, NULL)",
    );
    let source_rows = pg.psql("shop", ROWS);
    let good = pg.url("", &pg.verify_full(&pg.ca));
    let s = Setup::new("tls-host");
    write_config(&s, &good, &good, &good);

    // pg_dump over TLS, pre-flight (tokio-postgres over rustls) too.
    s.offsite(&["push"]).expect(0);
    assert!(s.local_snapshots()[0].1, "snapshot committed");

    // restore into the same TLS-only server.
    s.offsite(&[
        "restore",
        "latest",
        "--db",
        "postgres/shop",
        "--into",
        "shop_back",
    ])
    .expect(0);
    assert_eq!(pg.psql("shop_back", ROWS), source_rows);

    // verify into a scratch database on it, reading the configured (local) store.
    let run = s.offsite(&["--json", "verify", "--from-s3"]).expect(0);
    let records: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr));
    assert_eq!(records[0]["Ok"]["ok"], true, "{records:#}");
    let db = &records[0]["Ok"]["databases"][0];
    assert_eq!(db["ok"], true, "{records:#}");
    assert_eq!(db["tables"]["public.items"]["restored"], 3, "{records:#}");
    // The scratch database is gone again.
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'offsite_verify_%'"
        )
        .trim(),
        "0"
    );

    // refresh a dev database on it from the verified snapshot.
    s.offsite(&["refresh"]).expect(0);
    assert_eq!(pg.psql("shop_dev", ROWS), source_rows);
}

#[test]
fn a_wrong_ca_is_a_config_error_and_plaintext_is_refused() {
    let pg = TlsCluster::start();
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql(
        "shop",
        "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'a')",
    );
    let server = format!("127.0.0.1:{}", pg.port);
    let good = pg.url("", &pg.verify_full(&pg.ca));
    let wrong = pg.url("", &pg.verify_full(&pg.wrong_ca));
    let s = Setup::new("tls-bad");

    // push's pre-flight: exit 2, naming the server and the mode; nothing written.
    write_config(&s, &wrong, &good, &good);
    let push = s.offsite(&["push"]).expect(2);
    for needle in [server.as_str(), "sslmode=verify-full", "certificate"] {
        assert!(push.stderr.contains(needle), "{needle}: {}", push.stderr);
    }
    assert!(s.local_snapshots().is_empty());

    // A snapshot to restore and verify from.
    write_config(&s, &good, &good, &good);
    s.offsite(&["push"]).expect(0);
    let restore = s
        .offsite(&[
            "restore",
            "latest",
            "--db",
            "postgres/shop",
            "--into",
            "shop_back",
            "--server",
            &wrong,
        ])
        .expect(2);
    assert!(restore.stderr.contains(&server), "{}", restore.stderr);
    assert!(
        restore.stderr.contains("failed verification"),
        "{}",
        restore.stderr
    );

    write_config(&s, &good, &wrong, &good);
    let verify = s.offsite(&["verify", "--from-s3"]).expect(2);
    assert!(verify.stderr.contains(&server), "{}", verify.stderr);
    assert!(
        verify.stderr.contains("failed verification"),
        "{}",
        verify.stderr
    );
    assert!(
        verify.stderr.contains("office.scratch.postgres"),
        "{}",
        verify.stderr
    );

    // verify-ca checks the chain too (against the wrong CA: refused); require does not.
    let ca_only = pg.url(
        "",
        &format!("sslmode=verify-ca&sslrootcert={}", pg.wrong_ca.display()),
    );
    write_config(&s, &ca_only, &good, &good);
    let push = s.offsite(&["push"]).expect(2);
    assert!(push.stderr.contains("sslmode=verify-ca"), "{}", push.stderr);
    write_config(&s, &pg.url("", "sslmode=require"), &good, &good);
    s.offsite(&["push"]).expect(0);

    // Plaintext: the server refuses it, and the message says what to change.
    write_config(&s, &pg.url("", "sslmode=disable"), &good, &good);
    let push = s.offsite(&["push"]).expect(2);
    assert!(
        push.stderr.contains("refuses unencrypted connections"),
        "{}",
        push.stderr
    );
    assert!(push.stderr.contains(&server), "{}", push.stderr);
}

#[test]
fn verify_ca_ignores_the_name_and_verify_full_checks_it() {
    let pg = TlsCluster::start();
    let rt = crate::common::s3::runtime();
    // The certificate names 127.0.0.1 and localhost; reached as "127.0.0.1" it is right, and a
    // name it does not carry is only accepted by verify-ca. hostaddr keeps the address while the
    // name checked is host's.
    let connect = |query: &str| {
        rt.block_on(offsite::db::pg::connect(
            &format!(
                "postgres://postgres@other.invalid:{}/?hostaddr=127.0.0.1&{query}",
                pg.port
            ),
            None,
            None,
        ))
    };
    let ca = pg.ca.display();
    connect(&format!("sslmode=verify-ca&sslrootcert={ca}")).expect("verify-ca ignores the name");
    let Err(err) = connect(&format!("sslmode=verify-full&sslrootcert={ca}")) else {
        panic!("verify-full checks the name");
    };
    assert!(offsite::error::is_usage(&err), "{err:#}");
    assert!(
        format!("{err:#}").contains("does not name the host"),
        "{err:#}"
    );
    let c = rt
        .block_on(offsite::db::pg::connect(
            &pg.url("", &pg.verify_full(&pg.ca)),
            None,
            None,
        ))
        .expect("verify-full with the right name");
    let ssl: bool = rt
        .block_on(c.query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        ))
        .unwrap()
        .get(0);
    assert!(ssl, "the connection is encrypted");
}

#[test]
fn a_client_certificate_from_sslcert_and_sslkey_logs_in() {
    let pg = TlsCluster::start();
    pg.psql("postgres", "CREATE ROLE certuser LOGIN SUPERUSER");
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql(
        "shop",
        "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'cert')",
    );
    let certs = pg.ca.parent().unwrap().to_path_buf();
    let url = |query: &str| {
        format!(
            "postgres://certuser@127.0.0.1:{}/?{}{query}",
            pg.port,
            pg.verify_full(&pg.ca)
        )
    };
    let s = Setup::new("tls-cert");
    // Both offsite's pre-flight and pg_dump log in with the certificate.
    let with_cert = url(&format!(
        "&sslcert={}&sslkey={}",
        certs.join("certuser.crt").display(),
        certs.join("certuser.key").display()
    ));
    write_config(&s, &with_cert, &with_cert, &with_cert);
    s.offsite(&["push"]).expect(0);
    s.offsite(&[
        "restore",
        "latest",
        "--db",
        "postgres/shop",
        "--into",
        "shop_back",
    ])
    .expect(0);
    assert_eq!(pg.psql("shop_back", ROWS), "1|cert\n");
    // Without it the server turns the login away.
    write_config(&s, &url(""), &with_cert, &with_cert);
    let push = s.offsite(&["push"]).expect(1);
    assert!(push.stderr.contains("certificate"), "{}", push.stderr);
}

#[test]
fn a_password_login_with_channel_binding_over_verified_tls() {
    let pg = TlsCluster::start();
    pg.psql(
        "postgres",
        "CREATE ROLE pwuser LOGIN SUPERUSER PASSWORD 'Pw-s3cret-9'",
    );
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql(
        "shop",
        "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (7, 'scram')",
    );
    let url = |password: &str| {
        format!(
            "postgres://pwuser:{password}@127.0.0.1:{}/?{}&channel_binding=require",
            pg.port,
            pg.verify_full(&pg.ca)
        )
    };
    let s = Setup::new("tls-pw");
    // SCRAM over TLS for offsite's own connections, PGPASSWORD for pg_dump and psql; with
    // channel binding required, which both can only do over TLS.
    write_config(
        &s,
        &url("Pw-s3cret-9"),
        &url("Pw-s3cret-9"),
        &url("Pw-s3cret-9"),
    );
    let push = s.offsite(&["push"]).expect(0);
    assert!(!push.stderr.contains("Pw-s3cret-9"));
    s.offsite(&[
        "restore",
        "latest",
        "--db",
        "postgres/shop",
        "--into",
        "shop_back",
    ])
    .expect(0);
    assert_eq!(pg.psql("shop_back", ROWS), "7|scram\n");
    write_config(&s, &url("wrong"), &url("wrong"), &url("wrong"));
    let push = s.offsite(&["push"]).expect(1);
    assert!(push.stderr.contains("password"), "{}", push.stderr);
    assert!(!push.stderr.contains("wrong@"), "{}", push.stderr);
}

#[test]
fn sslmode_is_ignored_on_a_unix_socket_as_libpq_ignores_it() {
    let dir = Path::new("/var/run/postgresql");
    if !dir.join(".s.PGSQL.5432").exists() {
        eprintln!("skipped: no PostgreSQL socket in {}", dir.display());
        return;
    }
    let rt = crate::common::s3::runtime();
    let c = rt
        .block_on(offsite::db::pg::connect(
            "postgres://postgres@%2Fvar%2Frun%2Fpostgresql/?sslmode=require",
            None,
            None,
        ))
        .expect("sslmode=require over a Unix socket connects, as with psql");
    let one: i32 = rt.block_on(c.query_one("SELECT 1", &[])).unwrap().get(0);
    assert_eq!(one, 1);
}
