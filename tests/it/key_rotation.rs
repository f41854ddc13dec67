//! Rotating keys end to end with real parts: a host pushes to the old office key with its old
//! signing key, both are rotated (new key pairs, the push config names the new ones, the office
//! reads with `[new, old]`), the host pushes again; pull, verify and restore read both snapshots.
//! With only the new office key the old snapshot fails, naming itself and the key it needs.

use std::path::{Path, PathBuf};

use crate::common::cli::{Run, Setup};
use crate::common::db::{PgDb, PG_RESTORE_URL, PG_URL};

const HOST: &str = "rot-host";

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr))
}

/// The production config: encrypt to `recipient`, sign with `signer` (key names in keys/).
fn push_config(s: &Setup, recipient: &str, signer: &str, db: &str) -> PathBuf {
    s.write(
        "push.yaml",
        &format!(
            "host: {HOST}\nstore: {{ local: store }}\nstate_dir: state\nencryption: {{ recipients: [keys/{recipient}.cert.asc], signing_key: keys/{signer}.secret.asc }}\npostgres: [{{ url: '{PG_URL}', databases: [{db}] }}]\n"
        ),
    )
}

/// The office config over the local store: decryption keys and host certificates as YAML lists.
fn office_config(s: &Setup, keys: &str, certs: &str) -> PathBuf {
    s.write(
        "office.yaml",
        &format!(
            "host: office\nstore: {{ local: store }}\noffice:\n  offsite_dir: offsite\n  decryption_key: {keys}\n  hosts: {{ {HOST}: {certs} }}\n  scratch: {{ postgres: '{PG_RESTORE_URL}' }}\n"
        ),
    )
}

fn push(s: &Setup, config: &Path) -> String {
    let run = s.offsite_with(config, &["--json", "push"], &[]).expect(0);
    json(&run)["snapshot"]
        .as_str()
        .expect("snapshot id")
        .to_string()
}

/// `restore ID --db postgres/DB --into NEW` from the offsite copy; the restored row count.
fn restore_rows(s: &Setup, office: &Path, id: &str, db: &str, tag: &str) -> String {
    let back = PgDb::named(&format!("{db}_{tag}"));
    let offsite = s.path("offsite");
    s.offsite_with(
        office,
        &[
            "--store",
            offsite.to_str().expect("utf-8 path"),
            "restore",
            id,
            "--host",
            HOST,
            "--db",
            &format!("postgres/{db}"),
            "--into",
            &back.name,
            "--server",
            PG_URL,
        ],
        &[],
    )
    .expect(0);
    back.exec("SELECT count(*) FROM items").trim().to_string()
}

#[test]
fn a_rotated_office_key_and_host_key_read_old_and_new_snapshots() {
    let s = Setup::new(HOST);
    let pg = PgDb::new("rot");
    pg.exec("CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1)");

    // Before: the office key and the host key that Setup made.
    let old_push = push_config(&s, "office", HOST, &pg.name);
    let old_id = push(&s, &old_push);

    // Rotation: a new office key pair at the office and a new signing key for the host, both
    // expiring. The host gets office-2.cert.asc and its new secret key.
    let office2 = s.keygen("office-2", &["--expires", "2y"]);
    let host2 = s.keygen(&format!("{HOST}-2"), &["--expires", "13M"]);
    assert!(host2["expires"].is_string(), "{host2}");
    assert!(office2["expires"].is_string(), "{office2}");
    let new_push = push_config(&s, "office-2", &format!("{HOST}-2"), &pg.name);
    pg.exec("INSERT INTO items VALUES (2)");
    let new_id = push(&s, &new_push);

    // The office reads with both keys and accepts both host certificates.
    let office = office_config(
        &s,
        "[keys/office-2.secret.asc, keys/office.secret.asc]",
        &format!("[keys/{HOST}-2.cert.asc, keys/{HOST}.cert.asc]"),
    );
    let check = s.offsite_with(&office, &["config", "check"], &[]).expect(0);
    assert!(
        check.stdout.contains("office-2.secret.asc") && check.stdout.contains("office.secret.asc"),
        "{}",
        check.stdout
    );
    let pulled = s.offsite_with(&office, &["--json", "pull"], &[]).expect(0);
    let p = json(&pulled);
    assert_eq!(
        p["hosts"][0]["pulled"].as_array().map(Vec::len),
        Some(2),
        "{p}"
    );
    // The new office key is one of the office's own: no "recipients" warning for the new snapshot.
    assert!(!pulled.stderr.contains("beyond"), "{}", pulled.stderr);
    for id in [&old_id, &new_id] {
        let v = s
            .offsite_with(&office, &["--json", "verify", id], &[])
            .expect(0);
        let v = json(&v);
        assert_eq!(v[0]["Ok"]["ok"], true, "{id}: {v}");
    }
    assert_eq!(restore_rows(&s, &office, &old_id, &pg.name, "old"), "1");
    assert_eq!(restore_rows(&s, &office, &new_id, &pg.name, "new"), "2");
    let report = s.offsite_with(&office, &["report"], &[]);
    assert!(!report.stderr.contains("expire"), "{}", report.stderr);

    // Once the old secret key is gone, the old snapshot cannot be read, and says why.
    let new_only = office_config(
        &s,
        "keys/office-2.secret.asc",
        &format!("[keys/{HOST}-2.cert.asc, keys/{HOST}.cert.asc]"),
    );
    let fail = s.offsite_with(&new_only, &["verify", &old_id], &[]);
    assert_ne!(fail.code, 0, "{}", fail.stderr);
    let old_key_id = {
        let fpr = s.sh(
            "gpg --show-keys --with-colons keys/office.cert.asc | awk -F: '$1 == \"sub\" && $12 ~ /e/ { print $5 }'",
        );
        fpr.stdout.trim().to_string()
    };
    assert_eq!(old_key_id.len(), 16, "{old_key_id:?}");
    let all = format!("{}{}", fail.stdout, fail.stderr);
    assert!(all.contains(&old_id), "names the snapshot: {all}");
    assert!(
        all.contains(&old_key_id),
        "names the key id it needs: {all}"
    );
    assert!(all.contains("office.decryption_key"), "{all}");
    // The new snapshot still verifies with the new key alone.
    s.offsite_with(&new_only, &["verify", &new_id], &[])
        .expect(0);
}
