//! The whole nightly cycle: two production hosts push to S3 (moto), then one `offsite office` run
//! pulls, verifies, reports, prunes, refreshes the dev databases and notifies a webhook.

use std::io::{Read, Write};
use std::net::TcpListener;

use crate::common::cli::Setup;
use crate::common::db::{fixture, MyDb, PgDb, MY_RESTORE_URL, MY_URL, PG_RESTORE_URL, PG_URL};
use crate::common::s3::{endpoint, TestBucket};

/// A one-request HTTP server: returns the body of the first POST it receives.
fn webhook() -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut data = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = conn.read(&mut buf).unwrap();
            data.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&data);
            if let Some(i) = text.find("\r\n\r\n") {
                let len: usize = text[..i]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if data.len() >= i + 4 + len {
                    conn.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                        .unwrap();
                    return String::from_utf8_lossy(&data[i + 4..i + 4 + len]).into_owned();
                }
            }
            if n == 0 {
                return String::new();
            }
        }
    });
    (url, handle)
}

#[test]
fn two_hosts_pushed_then_one_office_run_verifies_reports_and_refreshes() {
    let bucket = TestBucket::new("office-cycle");
    let s = Setup::new("web-a");
    s.add_host_key("db-b");
    let s3 = format!(
        "store:\n  s3: {{ bucket: {}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: test, secret_access_key: test }}\n",
        bucket.name,
        endpoint()
    );
    // Host web-a: PostgreSQL shop + the www tree. Host db-b: MariaDB shop.
    let pg = PgDb::new("cycle");
    pg.load(&fixture("postgres/shop.sql"));
    let my = MyDb::new("cycle");
    my.load(&fixture("mysql/shop.sql"));
    let a = s.write(
        "web-a.yaml",
        &format!(
            "host: web-a\n{s3}state_dir: state\nencryption: {{ recipients: [keys/office.cert.asc], signing_key: keys/web-a.secret.asc }}\npostgres: [{{ url: '{PG_URL}', databases: [{}] }}]\ntrees: [{{ name: www, path: '{}' }}]\n",
            pg.name,
            fixture("www").display()
        ),
    );
    let b = s.write(
        "db-b.yaml",
        &format!(
            "host: db-b\n{s3}encryption: {{ recipients: [keys/office.cert.asc], signing_key: keys/db-b.secret.asc }}\nmysql: [{{ url: '{MY_URL}', databases: [{}] }}]\n",
            my.name
        ),
    );
    s.offsite_with(&a, &["push"], &[]).expect(0);
    assert_eq!(s.offsite_with(&b, &["push"], &[]).code, 3, "MyISAM warning");

    let pg_dev = PgDb::named(&format!("{}_dev", pg.name));
    let my_dev = MyDb::named(&format!("{}_dev", my.name));
    s.write(
        "sql/anon-pg.sql",
        "UPDATE public.customers SET email = 'user' || id || '@example.invalid';\n",
    );
    s.write(
        "sql/anon-my.sql",
        "UPDATE customers SET email = CONCAT('user', id, '@example.invalid');\n",
    );
    let (hook, received) = webhook();
    let office = s.write(
        "office.yaml",
        &format!(
            "host: office\n{s3}office:\n  offsite_dir: offsite\n  decryption_key: keys/office.secret.asc\n  hosts: {{ web-a: keys/web-a.cert.asc, db-b: keys/db-b.cert.asc }}\n  scratch: {{ postgres: '{PG_RESTORE_URL}', mysql: '{MY_RESTORE_URL}' }}\n  checks:\n    - {{ host: web-a, database: postgres/{pg}, sql: 'select count(*) from sales.orders', expect: '= 300' }}\n  retention: {{ keep_last: 7 }}\n  refresh:\n    - {{ from: 'web-a:postgres/{pg}', server: '{PG_RESTORE_URL}', database: {pgdev}, post_sql: [sql/anon-pg.sql] }}\n    - {{ from: 'db-b:mysql/{my}', server: '{MY_RESTORE_URL}', database: {mydev}, post_sql: [sql/anon-my.sql] }}\n  notify: {{ webhook: '{hook}' }}\n",
            pg = pg.name,
            my = my.name,
            pgdev = pg_dev.name,
            mydev = my_dev.name,
        ),
    );
    let run = s.offsite_with(&office, &["office"], &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("report.html"),
        "says where the report is: {}",
        run.stderr
    );

    // The report: both hosts pass, with the row counts of what was restored.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path("offsite/reports/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let hosts = report["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2);
    let web = hosts.iter().find(|h| h["host"] == "web-a").unwrap();
    let orders = web["latest"]["databases"][0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "sales.orders")
        .unwrap();
    assert_eq!(orders["restored"], 300, "{orders}");
    assert_eq!(orders["expected"], 300);
    assert_eq!(web["latest"]["trees"][0]["ok"], true);
    let dbb = hosts.iter().find(|h| h["host"] == "db-b").unwrap();
    assert_eq!(dbb["status"], "pass", "{dbb}");

    // The dev databases hold the source data, after the anonymization ran.
    pg.exec("UPDATE public.customers SET email = 'user' || id || '@example.invalid'");
    assert_eq!(
        pg_dev.dump(),
        pg.dump(),
        "PostgreSQL dev equals the anonymized source"
    );
    my.exec("UPDATE customers SET email = CONCAT('user', id, '@example.invalid')");
    let q = "SELECT id, email, name FROM customers ORDER BY id";
    assert_eq!(
        my_dev.exec(q),
        my.exec(q),
        "MariaDB dev equals the anonymized source"
    );

    // The webhook got the summary.
    let body = received.join().unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["exit_code"], 0);
}
