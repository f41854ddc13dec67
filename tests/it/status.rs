//! `offsite status`: the on-call screen, after a real push and office run, and again when the
//! same state has gone stale.

use crate::common::cli::Setup;
use crate::common::db::{fixture, PgDb, PG_RESTORE_URL, PG_URL};

#[test]
fn status_shows_the_verified_host_and_fails_once_it_is_stale() {
    let pg = PgDb::new("status");
    pg.load(&fixture("postgres/shop.sql"));
    let s = Setup::new("web1");
    s.config(&format!(
        "  offsite_dir: offsite\n  scratch: {{ postgres: '{PG_RESTORE_URL}' }}\npostgres: [{{ url: '{PG_URL}', databases: [{}] }}]",
        pg.name
    ));
    s.offsite(&["push"]).expect(0);
    s.offsite(&["office", "--no-prune", "--no-refresh"])
        .expect(0);

    let run = s.offsite(&["status", "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["ok"], true, "{}", run.stdout);
    let h = &v["hosts"][0];
    assert_eq!(h["host"], "web1");
    assert_eq!(h["verify"], "pass", "{h}");
    assert_eq!(h["snapshots"], 1, "{h}");
    assert!(h["bytes"].as_u64().unwrap() > 0, "{h}");
    assert_eq!(h["last_push"], h["verified_snapshot"], "{h}");
    assert!(h["last_push_age_hours"].as_f64().unwrap() < 1.0, "{h}");
    let table = s.offsite(&["status"]).expect(0);
    println!("{}", table.stdout);
    assert!(table.stdout.contains("PASS"), "{}", table.stdout);

    // Three days without a push or a verify: stale, exit 1, and it says why.
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(3);
    let later = later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let run = s
        .offsite_env(&["status"], &[("OFFSITE_NOW", &later)])
        .expect(1);
    assert!(run.stdout.contains("FAIL"), "{}", run.stdout);
    assert!(
        run.stdout.contains("newest snapshot is 3d"),
        "{}",
        run.stdout
    );
}

/// On a bucket with Object Lock, the report and status show the newest snapshot's lock.
#[test]
fn the_report_and_status_show_the_object_lock() {
    let bucket = crate::common::s3::TestBucket::with_object_lock("status-lock");
    let pg = PgDb::new("statuslock");
    pg.load(&fixture("postgres/shop.sql"));
    let s = Setup::new("web1");
    s.config_with_store(
        &format!(
            "store:\n  s3: {{ bucket: {}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: test, secret_access_key: test, object_lock: {{ mode: governance, days: 2 }} }}",
            bucket.name,
            crate::common::s3::endpoint()
        ),
        &format!(
            "  offsite_dir: offsite\n  scratch: {{ postgres: '{PG_RESTORE_URL}' }}\npostgres: [{{ url: '{PG_URL}', databases: [{}] }}]",
            pg.name
        ),
    );
    let before = time::OffsetDateTime::now_utc();
    s.offsite(&["push"]).expect(0);
    s.offsite(&["office", "--no-prune", "--no-refresh"])
        .expect(0);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path("offsite/reports/report.json")).unwrap())
            .unwrap();
    let until = report["hosts"][0]["latest"]["locked_until"]
        .as_str()
        .unwrap_or_else(|| panic!("no lock in the report: {}", report["hosts"][0]["latest"]));
    let until =
        time::OffsetDateTime::parse(until, &time::format_description::well_known::Rfc3339).unwrap();
    let two_days = before + time::Duration::days(2);
    assert!(
        until >= two_days - time::Duration::seconds(2)
            && until <= two_days + time::Duration::minutes(5),
        "{until} vs {two_days}"
    );
    let html = std::fs::read_to_string(s.path("offsite/reports/report.html")).unwrap();
    assert!(html.contains("Object Lock until"));
    let run = s.offsite(&["status", "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(v["hosts"][0]["locked_until"].is_string(), "{}", run.stdout);
}
