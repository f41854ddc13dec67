//! Monitoring: the metrics file (Prometheus text format, checked by promtool) and the pings
//! (healthchecks.io's /start, success, /fail), from real push and office runs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use offsite::metrics::Metrics;

use crate::common::cli::Setup;
use crate::common::db::{PgDb, PG_RESTORE_URL, PG_URL};

/// One request the ping server received.
#[derive(Debug, Clone)]
struct Hit {
    method: String,
    path: String,
    body: String,
}

/// A local HTTP server that answers 200 to everything and records what it got.
struct PingServer {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl PingServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/ping/secret-token-4711",
            listener.local_addr().unwrap()
        );
        let hits = Arc::new(Mutex::new(Vec::new()));
        let seen = hits.clone();
        // Lives until the test process ends; each test has its own port.
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if let Some(hit) = serve(conn) {
                    seen.lock().unwrap().push(hit);
                }
            }
        });
        Self { url, hits }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The paths requested, relative to the ping URL's path.
    fn suffixes(&self) -> Vec<String> {
        self.hits()
            .iter()
            .map(|h| {
                h.path
                    .trim_start_matches("/ping/secret-token-4711")
                    .to_string()
            })
            .collect()
    }
}

fn serve(conn: std::net::TcpStream) -> Option<Hit> {
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let (mut len, mut chunked) = (0usize, false);
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end().to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
        if h.starts_with("transfer-encoding:") && h.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(len, 0);
        reader.read_exact(&mut body).ok()?;
    }
    let mut conn = conn;
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
        .ok()?;
    Some(Hit {
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `promtool check metrics` on the file: format and naming lint.
fn promtool_check_metrics(file: &std::path::Path) {
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .expect("promtool (scripts/services installs it)");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n--- file\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(file).unwrap()
    );
}

fn metrics(file: &std::path::Path) -> Metrics {
    Metrics::parse(&std::fs::read_to_string(file).expect("the metrics file"))
}

fn value(m: &Metrics, family: &str, labels: &[(&str, &str)]) -> f64 {
    m.get(family)
        .and_then(|f| f.get(labels))
        .unwrap_or_else(|| panic!("{family}{labels:?} missing: {m:?}"))
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A pg_dump that fails the way a real one does on a lost server.
fn failing_pg_dump(s: &Setup) -> String {
    let path = s.path("failing-pg_dump");
    std::fs::write(
        &path,
        "#!/bin/sh\nif [ \"$1\" = --version ]; then exec pg_dump --version; fi\necho 'pg_dump: error: connection to server lost (boom-4711)' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn table_db(tag: &str, rows: u32) -> PgDb {
    let pg = PgDb::new(tag);
    pg.exec(&format!(
        "CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, {rows})"
    ));
    pg
}

#[test]
fn push_writes_metrics_and_pings_and_a_failed_push_keeps_the_last_success() {
    let pg = table_db("mon_push", 500);
    let ping = PingServer::start();
    let s = Setup::new("mon-push");
    let prom = s.path("textfile/offsite.prom");
    let config = |pg_dump: Option<&str>| {
        let tool = pg_dump
            .map(|p| format!(", pg_dump: '{p}'"))
            .unwrap_or_default();
        s.config(&format!(
            "metrics_file: textfile/offsite.prom\nnotify: {{ ping: '{}' }}\npostgres: [{{ url: '{PG_URL}', databases: [{}]{tool} }}]\n",
            ping.url, pg.name
        ));
    };
    config(None);
    let before = unix_now();
    let run = s.offsite(&["push"]).expect(0);
    assert!(!run.stderr.contains("secret-token-4711"), "{}", run.stderr);

    // Pings: /start, then the URL itself with the log's tail.
    assert_eq!(ping.suffixes(), ["/start", ""]);
    let hits = ping.hits();
    assert_eq!(hits[0].method, "POST");
    assert!(
        hits[1].body.contains("committed"),
        "success body: {}",
        hits[1].body
    );

    promtool_check_metrics(&prom);
    let text = std::fs::read_to_string(&prom).unwrap();
    for family in [
        "offsite_push_last_success_timestamp_seconds",
        "offsite_push_bytes",
        "offsite_push_duration_seconds",
        "offsite_push_last_run_success",
    ] {
        assert!(text.contains(&format!("# HELP {family} ")), "{text}");
        assert!(text.contains(&format!("# TYPE {family} gauge")), "{text}");
    }
    let source = format!("postgres/{}", pg.name);
    let labels = [("host", "mon-push"), ("source", source.as_str())];
    let m = metrics(&prom);
    let success = value(&m, "offsite_push_last_success_timestamp_seconds", &labels);
    assert!(
        success >= before - 1.0 && success <= unix_now() + 1.0,
        "{success}"
    );
    assert!(value(&m, "offsite_push_bytes", &labels) > 0.0);
    assert!(value(&m, "offsite_push_duration_seconds", &labels) > 0.0);
    assert_eq!(
        value(&m, "offsite_push_last_run_success", &[("host", "mon-push")]),
        1.0
    );
    let mode = std::fs::metadata(&prom).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644, "node_exporter must be able to read it");

    // The dump fails: /fail with the error, and the metrics keep the last success.
    let fake = failing_pg_dump(&s);
    config(Some(&fake));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let run = s.offsite(&["push"]).expect(1);
    assert!(!run.stderr.contains("secret-token-4711"), "{}", run.stderr);
    assert_eq!(ping.suffixes(), ["/start", "", "/start", "/fail"]);
    let fail = &ping.hits()[3];
    assert!(fail.body.contains("boom-4711"), "fail body: {}", fail.body);
    assert!(
        fail.body.contains("no snapshot was committed"),
        "{}",
        fail.body
    );

    promtool_check_metrics(&prom);
    let m = metrics(&prom);
    assert_eq!(
        value(&m, "offsite_push_last_success_timestamp_seconds", &labels),
        success,
        "a failed run keeps the last success"
    );
    assert_eq!(
        value(&m, "offsite_push_last_run_success", &[("host", "mon-push")]),
        0.0
    );
    assert!(
        value(
            &m,
            "offsite_push_last_run_timestamp_seconds",
            &[("host", "mon-push")]
        ) > success
    );
    // Nothing but the file itself is left in the collector's folder.
    let names: Vec<_> = std::fs::read_dir(s.path("textfile"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["offsite.prom"]);
}

#[test]
fn a_ping_server_that_is_down_never_fails_the_push() {
    let pg = table_db("mon_down", 10);
    // A port nobody listens on any more.
    let url = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/ping/secret-token-4711", l.local_addr().unwrap())
    };
    let s = Setup::new("mon-down");
    s.config(&format!(
        "notify: {{ ping: '{url}' }}\npostgres: [{{ url: '{PG_URL}', databases: [{}] }}]\n",
        pg.name
    ));
    let run = s.offsite(&["push"]).expect(0);
    assert!(run.stderr.contains("WARN"), "{}", run.stderr);
    assert!(
        run.stderr.contains("(notify.ping) failed"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("secret-token-4711"), "{}", run.stderr);
    assert_eq!(s.local_snapshots().len(), 1);
}

#[test]
fn an_office_run_writes_verify_metrics_and_pings() {
    let pg = table_db("mon_office", 1234);
    let ping = PingServer::start();
    let s = Setup::new("mon-off");
    // Setup::config puts these lines right after office.hosts: the first two belong to office:.
    s.config(&format!(
        "  offsite_dir: offsite\n  scratch: {{ postgres: '{PG_RESTORE_URL}' }}\n  notify: {{ ping: '{}' }}\nmetrics_file: textfile/offsite.prom\npostgres: [{{ url: '{PG_URL}', databases: [{}] }}]\n",
        ping.url, pg.name
    ));
    s.offsite(&["push"]).expect(0);
    assert_eq!(
        ping.suffixes(),
        Vec::<String>::new(),
        "push has no ping here"
    );
    let before = unix_now();
    let run = s.offsite(&["office"]).expect(0);
    assert!(!run.stderr.contains("secret-token-4711"), "{}", run.stderr);
    assert_eq!(ping.suffixes(), ["/start", ""]);
    let body = &ping.hits()[1].body;
    assert!(body.contains("== verify: ok"), "success body: {body}");
    assert!(body.contains("all steps ok"), "success body: {body}");

    let prom = s.path("textfile/offsite.prom");
    promtool_check_metrics(&prom);
    let m = metrics(&prom);
    let database = format!("postgres/{}", pg.name);
    let labels = [("host", "mon-off"), ("database", database.as_str())];
    assert_eq!(value(&m, "offsite_verify_rows", &labels), 1234.0);
    assert!(value(&m, "offsite_verify_restore_seconds", &labels) > 0.0);
    let verified = value(&m, "offsite_verify_last_success_timestamp_seconds", &labels);
    assert!(verified >= before - 1.0 && verified <= unix_now() + 1.0);
    let age = value(&m, "offsite_snapshot_age_seconds", &[("host", "mon-off")]);
    assert!((0.0..600.0).contains(&age), "{age}");
    assert_eq!(value(&m, "offsite_verify_ok", &[("host", "mon-off")]), 1.0);
    assert_eq!(value(&m, "offsite_office_last_run_success", &[]), 1.0);
    // push wrote its families into the same file, and the office kept them.
    assert_eq!(
        value(&m, "offsite_push_last_run_success", &[("host", "mon-off")]),
        1.0
    );

    // A failing office run (a check the restored database fails): /fail, verify_ok 0, and the
    // database's last success stays that of the run that had it.
    s.config(&format!(
        "  offsite_dir: offsite\n  scratch: {{ postgres: '{PG_RESTORE_URL}' }}\n  notify: {{ ping: '{}' }}\n  checks: [{{ host: mon-off, database: '{database}', sql: 'select count(*) from t', expect: '= 1' }}]\nmetrics_file: textfile/offsite.prom\npostgres: [{{ url: '{PG_URL}', databases: [{}] }}]\n",
        ping.url, pg.name
    ));
    let run = s.offsite(&["office"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert_eq!(ping.suffixes(), ["/start", "", "/start", "/fail"]);
    let body = &ping.hits()[3].body;
    assert!(body.contains("== verify: FAILED"), "fail body: {body}");
    promtool_check_metrics(&prom);
    let m = metrics(&prom);
    assert_eq!(value(&m, "offsite_office_last_run_success", &[]), 0.0);
    assert_eq!(value(&m, "offsite_verify_ok", &[("host", "mon-off")]), 0.0);
    assert_eq!(
        value(&m, "offsite_verify_last_success_timestamp_seconds", &labels),
        verified
    );
}

#[test]
fn the_readme_alert_rules_pass_promtool() {
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/prometheus/offsite-rules.yml"
    );
    let out = Command::new("promtool")
        .args(["check", "rules", rules])
        .stdin(Stdio::null())
        .output()
        .expect("promtool (scripts/services installs it)");
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The README shows the same rules, word for word.
    let readme = include_str!("../../README.md");
    let text = std::fs::read_to_string(rules).unwrap();
    assert!(
        readme.contains(&text),
        "README.md's Monitoring section must quote contrib/prometheus/offsite-rules.yml as it is"
    );
}
