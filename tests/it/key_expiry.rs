//! Keys that expire: `keygen --expires` makes the expiry stock gpg shows; config check, push and the
//! office report warn 30 days before; push refuses an expired recipient or signing key (exit 2,
//! nothing written). Expired keys are made in the past with the library's generate_with.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::common::cli::Setup;
use crate::common::db::{PgDb, PG_URL};

const DAY: Duration = Duration::from_secs(86_400);

/// A key pair in keys/ created `ago` in the past and valid for `valid`: its fingerprint.
fn key_in_the_past(s: &Setup, name: &str, ago: Duration, valid: Duration) -> String {
    offsite::crypto::keys::generate_with(
        name,
        &s.path("keys"),
        SystemTime::now() - ago,
        Some(valid),
    )
    .expect("generate_with")
    .fingerprint
}

/// Setup's config (one PostgreSQL database), encrypting to `recipient` and signing with `signer`.
fn config(s: &Setup, db: &str, recipient: &str, signer: &str) -> PathBuf {
    s.write(
        "push.yaml",
        &format!(
            "host: {}\nstore: {{ local: store }}\nstate_dir: state\nencryption: {{ recipients: [keys/{recipient}.cert.asc], signing_key: keys/{signer}.secret.asc }}\npostgres: [{{ url: '{PG_URL}', databases: [{db}] }}]\n",
            s.host
        ),
    )
}

/// The `pub` and `sub` records of `gpg --show-keys --with-colons FILE`: (created, expires) each.
fn gpg_validity(s: &Setup, file: &str) -> Vec<(u64, Option<u64>)> {
    let run = s.sh(&format!("gpg --show-keys --with-colons {file}"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f[0] == "pub" || f[0] == "sub")
        .map(|f| (f[5].parse().expect("created"), f[6].parse().ok()))
        .collect()
}

#[test]
fn keygen_expires_makes_the_expiry_gpg_shows() {
    let s = Setup::new("kx-gpg");
    let k = s.keygen("office-2y", &["--expires", "2y"]);
    let expires = time::OffsetDateTime::parse(
        k["expires"].as_str().expect("expires"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339")
    .unix_timestamp() as u64;
    let keys = gpg_validity(&s, "keys/office-2y.cert.asc");
    assert_eq!(
        keys.len(),
        3,
        "primary, signing and encryption subkeys: {keys:?}"
    );
    for (created, exp) in &keys {
        assert_eq!(*exp, Some(created + 2 * 365 * 86_400), "{keys:?}");
        assert_eq!(*exp, Some(expires), "keygen's answer is gpg's: {keys:?}");
    }
    // The default stays a key that never expires.
    assert!(gpg_validity(&s, &format!("keys/{}.cert.asc", s.host))
        .iter()
        .all(|(_, e)| e.is_none()));
}

#[test]
fn a_key_expiring_in_ten_days_makes_config_check_and_push_warn() {
    let s = Setup::new("kx-soon");
    let pg = PgDb::new("kxsoon");
    pg.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let k = s.keygen("office-soon", &["--expires", "10d"]);
    let fpr = k["fingerprint"].as_str().expect("fingerprint").to_string();
    let date = k["expires"].as_str().expect("expires").to_string();
    let cfg = config(&s, &pg.name, "office-soon", &s.host);

    let check = s.offsite_with(&cfg, &["config", "check"], &[]).expect(0);
    for needle in [
        "warning:",
        "keys/office-soon.cert.asc",
        &fpr,
        &date,
        "in 10 days",
    ] {
        assert!(check.stderr.contains(needle), "{needle}: {}", check.stderr);
    }
    let push = s.offsite_with(&cfg, &["push"], &[]).expect(0);
    for needle in ["warning:", "keys/office-soon.cert.asc", &fpr, &date] {
        assert!(push.stderr.contains(needle), "{needle}: {}", push.stderr);
    }
    assert_eq!(s.local_snapshots().len(), 1);
    assert!(s.local_snapshots()[0].1, "committed");

    // With a metrics file, push exports the expiry for alerting, in a file promtool accepts.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}metrics_file: metrics/offsite.prom\n")).unwrap();
    std::fs::create_dir_all(s.path("metrics")).unwrap();
    s.offsite_with(&cfg, &["push"], &[]).expect(0);
    let prom = s.path("metrics/offsite.prom");
    let metrics = std::fs::read_to_string(&prom).unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("offsite_key_expiry_timestamp_seconds{") && l.contains(&fpr))
        .unwrap_or_else(|| panic!("no expiry sample for {fpr}:\n{metrics}"));
    assert!(line.contains("role=\"encryption.recipients\""), "{line}");
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let want = time::OffsetDateTime::parse(&date, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp() as f64;
    assert!((value - want).abs() < 2.0, "{line} vs {date}");
    let check = s.sh(&format!("promtool check metrics < {}", prom.display()));
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);

    // A key good for 60 days is no news.
    s.keygen("office-later", &["--expires", "60d"]);
    let later = config(&s, &pg.name, "office-later", &s.host);
    let check = s.offsite_with(&later, &["config", "check"], &[]).expect(0);
    assert!(!check.stderr.contains("warning"), "{}", check.stderr);
}

#[test]
fn an_expired_recipient_or_signing_key_makes_push_exit_2_with_nothing_written() {
    let s = Setup::new("kx-old");
    let pg = PgDb::new("kxold");
    pg.exec("CREATE TABLE t (x int)");
    // Made 40 days ago, valid for 30: expired 10 days ago.
    let office_fpr = key_in_the_past(&s, "office-old", 40 * DAY, 30 * DAY);
    let host_fpr = key_in_the_past(&s, "kx-old-old", 40 * DAY, 30 * DAY);

    let cfg = config(&s, &pg.name, "office-old", &s.host);
    let check = s.offsite_with(&cfg, &["config", "check"], &[]).expect(0);
    assert!(check.stderr.contains("expired on"), "{}", check.stderr);
    let run = s.offsite_with(&cfg, &["push"], &[]).expect(2);
    for needle in [
        "encryption.recipients",
        "keys/office-old.cert.asc",
        office_fpr.as_str(),
        "expired on",
        "10 days ago",
        "nothing was written",
        "offsite keygen",
        "Rotating keys",
    ] {
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
    }
    assert!(s.store_files().is_empty(), "{:?}", s.store_files());

    let cfg = config(&s, &pg.name, "office", "kx-old-old");
    let run = s.offsite_with(&cfg, &["push"], &[]).expect(2);
    for needle in [
        "encryption.signing_key",
        "keys/kx-old-old.secret.asc",
        host_fpr.as_str(),
        "expired on",
    ] {
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
    }
    assert!(s.store_files().is_empty(), "{:?}", s.store_files());
}

#[test]
fn the_office_report_warns_of_an_expiring_host_certificate_and_office_key() {
    let s = Setup::new("kx-rep");
    let k = s.keygen("kx-rep-soon", &["--expires", "20d"]);
    let host_fpr = k["fingerprint"].as_str().expect("fingerprint").to_string();
    let o = s.keygen("office-soon", &["--expires", "5d"]);
    let office_fpr = o["fingerprint"].as_str().expect("fingerprint").to_string();
    let cfg = s.write(
        "office.yaml",
        "host: office\nstore: { local: store }\noffice:\n  offsite_dir: offsite\n  decryption_key: keys/office-soon.secret.asc\n  hosts: { kx-rep: keys/kx-rep-soon.cert.asc }\n",
    );
    // No verification recorded: the report fails (exit 1), and still carries the key warnings.
    let run = s.offsite_with(&cfg, &["report"], &[]).expect(1);
    assert!(run.stderr.contains(&host_fpr), "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.path("offsite/reports/report.json")).expect("report.json"),
    )
    .expect("JSON");
    let warnings = report["warnings"].as_array().expect("warnings");
    let keyw: Vec<&serde_json::Value> = warnings
        .iter()
        .filter(|w| w["kind"] == "key_expiry")
        .collect();
    assert_eq!(keyw.len(), 2, "{warnings:?}");
    let host = keyw.iter().find(|w| w["host"] == "kx-rep").expect("host's");
    let msg = host["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("keys/kx-rep-soon.cert.asc") && msg.contains(&host_fpr),
        "{msg}"
    );
    let office = keyw
        .iter()
        .find(|w| w["host"] == "office")
        .expect("office's");
    let msg = office["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("office-soon.secret.asc") && msg.contains(&office_fpr),
        "{msg}"
    );
    assert_eq!(
        report["summary"]["warnings"].as_u64(),
        Some(warnings.len() as u64)
    );
    let md = std::fs::read_to_string(s.path("offsite/reports/report.md")).expect("report.md");
    assert!(md.contains("key expiry"), "{md}");
    assert!(
        crate::common::office::schema_errors(&s.path("offsite/reports/report.json")).is_empty()
    );

    // With a longer-lived office key listed beside it, the office key is rotated: no office warning.
    let cfg = s.write(
        "office.yaml",
        "host: office\nstore: { local: store }\noffice:\n  offsite_dir: offsite\n  decryption_key: [keys/office.secret.asc, keys/office-soon.secret.asc]\n  hosts: { kx-rep: [keys/kx-rep.cert.asc, keys/kx-rep-soon.cert.asc] }\n",
    );
    let run = s.offsite_with(&cfg, &["report"], &[]).expect(1);
    assert!(!run.stderr.contains("expire"), "{}", run.stderr);
}
