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
