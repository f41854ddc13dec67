//! Database servers of a test's own (a dev server, say): PostgreSQL from initdb and MariaDB from
//! mariadb-install-db, each on a free port with its data directory in a temp dir, so a test can
//! look at every file the server wrote (data files, WAL, binlog). Stopped and deleted on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tls::{free_port, run};

/// A PostgreSQL binary: from PATH, else the newest of Debian's /usr/lib/postgresql/*/bin.
pub fn pg_bin(name: &str) -> PathBuf {
    if let Ok(out) = Command::new("which").arg(name).output() {
        if out.status.success() {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("{name} not found on PATH or in /usr/lib/postgresql/*/bin"))
}

/// A PostgreSQL cluster with trust auth on 127.0.0.1, as user `postgres`.
pub struct PgServer {
    dir: tempfile::TempDir,
    pub port: u16,
    pid: Option<i32>,
}

impl PgServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // initdb and postgres refuse to run as root: then the cluster belongs to `postgres`.
        let root = unsafe { libc::geteuid() } == 0;
        let as_owner = |program: PathBuf| -> Command {
            if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            }
        };
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = dir.path().join("data");
        run(
            as_owner(pg_bin("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
                .args(["--locale=C", "--no-instructions"]),
            "initdb",
        );
        let port = free_port();
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str(&format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\n",
            dir.path().display()
        ));
        std::fs::write(data.join("postgresql.conf"), conf).unwrap();
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
        let s = Self { dir, port, pid };
        assert!(
            started.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&started.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        s
    }

    pub fn url(&self, user: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn sql(&self, db: &str, sql: &str) -> String {
        run(
            Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-At",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                ])
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    db,
                    "-c",
                    sql,
                ]),
            &format!("psql {sql}"),
        )
    }

    /// A fast shutdown (a checkpoint first): every file is written when this returns.
    pub fn stop(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        // SAFETY: kill(2) with the pid of the postmaster this test started.
        unsafe { libc::kill(pid, libc::SIGINT) };
        wait_gone(pid);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    // SAFETY: signal 0 only checks that the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if unsafe { libc::kill(pid, 0) } == 0 {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// A MariaDB server with its binary log on, root with no password on 127.0.0.1.
pub struct MariaServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
}

impl MariaServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
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
            d.arg("--user=root");
        }
        d.arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!(
                "--log-error={}",
                dir.path().join("err.log").display()
            ))
            .arg(format!("--log-bin={}", data.join("binlog").display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--innodb-buffer-pool-size=16M",
                "--log-bin-trust-function-creators=1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = d.spawn().expect("starting mariadbd");
        let s = Self {
            dir,
            child: Some(child),
            port,
        };
        let started = Instant::now();
        while !s
            .client(None)
            .args(["-e", "SELECT 1"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "mariadbd did not come up: {}",
                std::fs::read_to_string(s.dir.path().join("err.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        s
    }

    pub fn url(&self, user: &str) -> String {
        format!("mysql://{user}@127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn client(&self, db: Option<&str>) -> Command {
        let mut c = Command::new("mariadb");
        c.args(["--no-defaults", "-h", "127.0.0.1", "-uroot", "-N", "-B"])
            .arg(format!("--port={}", self.port));
        if let Some(db) = db {
            c.arg(db);
        }
        c
    }

    pub fn sql(&self, db: Option<&str>, sql: &str) -> String {
        run(self.client(db).args(["-e", sql]), &format!("mariadb {sql}"))
    }

    /// A clean shutdown: every file is written when this returns.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: SIGTERM to the mariadbd this test started, a clean shutdown.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for MariaServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The files under `dir` that contain `needle`, read raw.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                if let Ok(data) = std::fs::read(&p) {
                    if memchr::memmem::find(&data, needle).is_some() {
                        found.push(p);
                    }
                }
            }
        }
    }
    found
}
