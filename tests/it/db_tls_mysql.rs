//! TLS to MariaDB, against a real server that refuses plain connections: a second mariadbd of the
//! test's own (datadir, socket and port in a temp dir; certificates made with openssl) started
//! with `--require-secure-transport=ON`. Through it with `ssl-mode=VERIFY_IDENTITY`: push
//! (mariadb-dump over TLS), `restore --db --into` (mariadb over TLS) and an office `verify` whose
//! scratch server it is, and `refresh` into a dev database on it. A CA that did not sign the
//! server's certificate, and `ssl-mode=DISABLED`, are config errors (exit 2) naming the server and
//! the mode. Then the server's certificate is swapped (`FLUSH SSL`) for one of another name:
//! VERIFY_CA takes it, VERIFY_IDENTITY does not; and a user that requires a client certificate is
//! reached with `ssl-cert`/`ssl-key`. One server for all of it keeps the test at ~15s.
//!
//! The server: `mariadb-install-db --auth-root-authentication-method=normal` creates
//! `root@127.0.0.1` without a password, reachable over TCP; `mariadbd --no-defaults` reads no
//! system config, so it never touches the system server on 3306.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::cli::{Run, Setup};
use crate::common::tls::{free_port, make_ca, make_leaf, run};

/// A CA and a certificate it signed for 127.0.0.1/localhost, plus an unrelated CA.
struct Certs {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_certs(dir: &Path) -> Certs {
    let ca = make_ca(dir, "ca");
    let other_ca = make_ca(dir, "other-ca");
    let (cert, key) = make_leaf(
        dir,
        "ca",
        "server",
        "localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    );
    Certs {
        ca,
        other_ca,
        cert,
        key,
    }
}

/// A mariadbd that requires TLS; stopped (SIGTERM, then SIGKILL) when dropped.
struct TlsServer {
    _dir: tempfile::TempDir,
    child: Child,
    port: u16,
    certs: Certs,
}

impl TlsServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let certs = make_certs(dir.path());
        let data = dir.path().join("data");
        let root = unsafe { libc::geteuid() } == 0;
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if root {
            install.arg("--user=root");
        }
        run(&mut install, "mariadb-install-db");
        let port = free_port();
        let mut d = Command::new("mariadbd");
        d.arg("--no-defaults");
        if root {
            // mariadbd refuses to run as root unless told so.
            d.arg("--user=root");
        }
        d.arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!(
                "--log-error={}",
                dir.path().join("err.log").display()
            ))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                "--require-secure-transport=ON",
            ])
            .arg(format!("--ssl-ca={}", certs.ca.display()))
            .arg(format!("--ssl-cert={}", certs.cert.display()))
            .arg(format!("--ssl-key={}", certs.key.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = d.spawn().expect("starting mariadbd");
        let s = Self {
            _dir: dir,
            child,
            port,
            certs,
        };
        let started = Instant::now();
        loop {
            let out = s.client().args(["-e", "SELECT 1"]).output().unwrap();
            if out.status.success() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "mariadbd did not come up: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(s._dir.path().join("err.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    /// The stock client, over TLS checked against the test's CA (not the name: the test swaps
    /// in a certificate for another name).
    fn client(&self) -> Command {
        let mut c = Command::new("mariadb");
        c.args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-uroot",
            "--protocol=TCP",
        ])
        .arg(format!("--port={}", self.port))
        .arg(format!("--ssl-ca={}", self.certs.ca.display()))
        .stdin(Stdio::null());
        c
    }

    /// Makes the server present a certificate from the same CA for `db.offsite.test` only.
    fn certificate_for_another_name(&self) {
        let dir = self._dir.path();
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=DNS:db.offsite.test\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        run(
            Command::new("openssl")
                .args([
                    "x509",
                    "-req",
                    "-in",
                    "server.csr",
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    "ext.cnf",
                    "-out",
                    "server.crt",
                ])
                .current_dir(dir),
            "openssl x509",
        );
        self.sql(None, "FLUSH SSL");
    }

    /// A client certificate from the test's CA, and its key.
    fn client_certificate(&self) -> (PathBuf, PathBuf) {
        let dir = self._dir.path();
        std::fs::write(
            dir.join("client.cnf"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        let openssl = |args: &[&str]| {
            run(
                Command::new("openssl").args(args).current_dir(dir),
                &format!("openssl {}", args[0]),
            );
        };
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=certuser",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "client.cnf",
            "-out",
            "client.pem",
        ]);
        (dir.join("client.pem"), dir.join("client.key"))
    }

    fn sql(&self, db: Option<&str>, sql: &str) -> String {
        let mut c = self.client();
        c.args(["-N", "-B", "-e", sql]);
        if let Some(db) = db {
            c.arg(db);
        }
        run(&mut c, &format!("mariadb {sql}"))
    }

    fn url(&self, query: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/?{query}", self.port)
    }

    fn verified(&self) -> String {
        self.url(&format!(
            "ssl-mode=VERIFY_IDENTITY&ssl-ca={}",
            self.certs.ca.display()
        ))
    }

    fn databases(&self) -> Vec<String> {
        self.sql(None, "SHOW DATABASES")
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const DATA: &str =
    "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(50), photo BLOB) ENGINE=InnoDB;
INSERT INTO customers VALUES (1, 'Zoë', 0x00ff10), (2, 'O''Brien', NULL), (3, '東京', 0x7f);
CREATE TABLE orders (id INT PRIMARY KEY, customer INT, total DECIMAL(10,2)) ENGINE=InnoDB;
INSERT INTO orders VALUES (10, 1, 9.99), (11, 3, 100.00);";

fn contents(server: &TlsServer, db: &str) -> String {
    server.sql(
        Some(db),
        "SELECT id, name, HEX(photo) FROM customers ORDER BY id; SELECT * FROM orders ORDER BY id",
    )
}

fn assert_config_error(r: &Run, server: &TlsServer, needles: &[&str]) {
    assert_eq!(r.code, 2, "exit code\n{}\n{}", r.stdout, r.stderr);
    let at = format!("127.0.0.1:{}", server.port);
    assert!(r.stderr.contains(&at), "names the server: {}", r.stderr);
    for n in needles {
        assert!(r.stderr.contains(n), "says {n:?}: {}", r.stderr);
    }
}

#[test]
fn push_restore_and_verify_over_verified_tls() {
    let server = TlsServer::start();
    let db = "shop";
    server.sql(None, &format!("CREATE DATABASE {db} CHARACTER SET utf8mb4"));
    server.sql(Some(db), DATA);
    let before = contents(&server, db);

    let s = Setup::new("tls-a");
    let url = server.verified();
    // Setup::config puts these lines under `office:` (offsite_dir, scratch), then the sources.
    let config = |url: &str, scratch: &str| {
        s.config(&format!(
            "  offsite_dir: offsite\n  scratch: {{ mysql: {{ url: '{scratch}', allow_privileged: true }} }}\nmysql: [{{ url: '{url}', databases: [{db}] }}]"
        ));
    };
    config(&url, &url);
    s.offsite(&["push"]).expect(0);

    s.offsite(&[
        "restore",
        "latest",
        "--db",
        "mysql/shop",
        "--into",
        "shop_back",
    ])
    .expect(0);
    assert_eq!(contents(&server, "shop_back"), before);

    s.offsite(&["pull"]).expect(0);
    let verify = s.offsite(&["verify"]).expect(0);
    assert!(
        !server.databases().iter().any(|d| d.contains("offsite")),
        "scratch databases are dropped: {:?}\n{}",
        server.databases(),
        verify.stderr
    );

    // refresh into a dev database on the same server (no push source in this config: the guards
    // refuse a production server as a target).
    let refresh_config = |url: &str| {
        s.config(&format!(
            "  offsite_dir: offsite\n  refresh:\n    - {{ from: 'tls-a:mysql/shop', server: {{ url: '{url}', allow_privileged: true }}, database: shop_dev }}"
        ));
    };
    refresh_config(&url);
    s.offsite(&["refresh"]).expect(0);
    assert_eq!(contents(&server, "shop_dev"), before);

    // A CA that did not sign the server's certificate: exit 2 from push's pre-flight, restore,
    // verify and refresh, naming the server and the mode.
    let wrong = server.url(&format!(
        "ssl-mode=VERIFY_IDENTITY&ssl-ca={}",
        server.certs.other_ca.display()
    ));
    refresh_config(&wrong);
    let refresh = s.offsite(&["refresh"]);
    assert_config_error(&refresh, &server, &["ssl-mode=VERIFY_IDENTITY"]);
    assert_eq!(contents(&server, "shop_dev"), before);
    server.sql(None, "DROP DATABASE shop_dev");

    config(&wrong, &wrong);
    let push = s.offsite(&["push"]);
    assert_config_error(
        &push,
        &server,
        &["ssl-mode=VERIFY_IDENTITY", "other-ca.crt"],
    );
    let restore = s.offsite(&[
        "restore",
        "latest",
        "--db",
        "mysql/shop",
        "--into",
        "shop_again",
    ]);
    assert_config_error(&restore, &server, &["ssl-mode=VERIFY_IDENTITY"]);
    assert!(!server.databases().contains(&"shop_again".to_string()));
    let verify = s.offsite(&["verify"]);
    assert_config_error(&verify, &server, &["ssl-mode=VERIFY_IDENTITY"]);

    // A certificate from the right CA for another name: VERIFY_CA takes it, VERIFY_IDENTITY
    // refuses it.
    server.certificate_for_another_name();
    let verify_ca = server.url(&format!(
        "ssl-mode=VERIFY_CA&ssl-ca={}",
        server.certs.ca.display()
    ));
    config(&verify_ca, &verify_ca);
    s.offsite(&["push"]).expect(0);
    s.offsite(&[
        "restore",
        "latest",
        "--db",
        "mysql/shop",
        "--into",
        "shop_ca",
    ])
    .expect(0);
    assert_eq!(contents(&server, "shop_ca"), before);
    server.sql(None, "DROP DATABASE shop_ca");
    config(&url, &url);
    let push = s.offsite(&["push"]);
    assert_config_error(
        &push,
        &server,
        &["ssl-mode=VERIFY_IDENTITY", "issued for 127.0.0.1"],
    );

    // PREFERRED (no parameters) and REQUIRED take TLS without checking the certificate: this
    // server takes nothing else.
    for plain_url in [
        format!("mysql://root@127.0.0.1:{}", server.port),
        server.url("ssl-mode=REQUIRED"),
    ] {
        config(&plain_url, &plain_url);
        s.offsite(&["push"]).expect(0);
    }

    // Plain TCP: the server refuses it (MariaDB says "access denied"); the message says why.
    let disabled = server.url("ssl-mode=DISABLED");
    config(&disabled, &url);
    let push = s.offsite(&["push"]);
    assert_config_error(&push, &server, &["ssl-mode=DISABLED"]);
    server.sql(None, "DROP DATABASE shop_back");

    // A user that must show a client certificate signed by the CA: ssl-cert and ssl-key reach
    // offsite's own connection and mariadb-dump.
    let (client_cert, client_key) = server.client_certificate();
    server.sql(
        None,
        "CREATE USER certuser@'%' REQUIRE X509; GRANT ALL ON *.* TO certuser@'%'",
    );
    let ca = format!("ssl-mode=VERIFY_CA&ssl-ca={}", server.certs.ca.display());
    let with_cert = format!(
        "mysql://certuser@127.0.0.1:{}/?{ca}&ssl-cert={}&ssl-key={}",
        server.port,
        client_cert.display(),
        client_key.display()
    );
    config(&with_cert, &url);
    s.offsite(&["push"]).expect(0);
    let without = format!("mysql://certuser@127.0.0.1:{}/?{ca}", server.port);
    config(&without, &url);
    let push = s.offsite(&["push"]);
    assert_ne!(push.code, 0, "{}", push.stderr);
    assert!(push.stderr.contains("certuser"), "{}", push.stderr);
}
