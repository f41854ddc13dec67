//! What must never happen: a dump that dies becoming a complete-looking snapshot, a bad setup writing
//! anything, a corrupted object being restored.

use std::os::unix::fs::PermissionsExt;

use crate::common::cli::Setup;
use crate::common::db::{fixture, PgDb, PG_URL};

/// A `pg_dump` stand-in that runs the real one and then misbehaves as `script` says ($REAL is the
/// real pg_dump, "$@" its arguments).
fn fake_pg_dump(s: &Setup, body: &str) -> String {
    let path = s.path("fake-pg_dump");
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v pg_dump"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let script = format!(
        "#!/bin/bash\nREAL={real}\nif [ \"$1\" = --version ]; then exec $REAL --version; fi\n{body}\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn pg_config(s: &Setup, db: &str, pg_dump: Option<&str>) {
    let tool = pg_dump
        .map(|p| format!(", pg_dump: '{p}'"))
        .unwrap_or_default();
    s.config(&format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{db}]{tool} }}]\n"
    ));
}

#[test]
fn a_dump_killed_midway_commits_nothing_and_keeps_older_snapshots() {
    let pg = PgDb::new("killed");
    pg.load(&fixture("postgres/shop.sql"));
    let s = Setup::new("killed-host");
    pg_config(&s, &pg.name, None);
    s.offsite(&["push"]).expect(0);
    // Snapshot ids sort by the millisecond; a second apart, the order is unmistakable here too.
    std::thread::sleep(std::time::Duration::from_millis(1100));

    // The dump streams 200 kB, then its process is killed by SIGKILL; another source succeeds, so
    // the failed snapshot has objects but no manifest.
    let small = PgDb::new("killed_small");
    small.exec("CREATE TABLE t (x int)");
    let fake = fake_pg_dump(&s, "sleep 0.5; $REAL \"$@\" | head -c 200000\nkill -9 $$");
    s.config(&format!(
        "parallel: 2\npostgres:\n  - {{ url: '{PG_URL}', databases: [{}], pg_dump: '{fake}' }}\n  - {{ url: '{PG_URL}', databases: [{}] }}\n",
        pg.name, small.name
    ));
    let run = s.offsite(&["push"]).expect(1);
    assert!(run.stderr.contains("killed by signal 9"), "{}", run.stderr);
    assert!(
        run.stderr.contains("no snapshot was committed"),
        "{}",
        run.stderr
    );

    let snaps = s.local_snapshots();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    assert!(snaps[0].1, "the older snapshot is still complete");
    assert!(!snaps[1].1, "the failed one has no manifest");
    let listed = s.offsite(&["snapshots", "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(v[0]["complete"], true);
    assert_eq!(v[1]["complete"], false);
    // `latest` is the last complete one, never the broken one.
    let restored = PgDb::named(&format!("{}_latest", pg.name));
    s.offsite(&[
        "restore",
        "latest",
        "--db",
        &format!("postgres/{}", pg.name),
        "--into",
        &restored.name,
    ])
    .expect(0);
    assert_eq!(restored.dump(), pg.dump());
    let broken = &snaps[1].0;
    let refused = s
        .offsite(&[
            "restore",
            broken,
            "--db",
            &format!("postgres/{}", pg.name),
            "--stdout",
        ])
        .expect(2);
    assert!(refused.stderr.contains("incomplete"), "{}", refused.stderr);
}

#[test]
fn a_dump_without_its_end_marker_is_a_failure_even_with_exit_0() {
    let pg = PgDb::new("truncated");
    pg.load(&fixture("postgres/shop.sql"));
    let s = Setup::new("trunc-host");
    let fake = fake_pg_dump(&s, "$REAL \"$@\" | head -c 100000\nexit 0");
    pg_config(&s, &pg.name, Some(&fake));
    let run = s.offsite(&["push"]).expect(1);
    assert!(run.stderr.contains("end-of-dump marker"), "{}", run.stderr);
    assert!(s.local_snapshots().iter().all(|(_, complete)| !complete));
}

#[test]
fn bad_setups_exit_2_and_write_nothing() {
    let pg = PgDb::new("badsetup");
    let s = Setup::new("bad-host");
    let db = format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]",
        pg.name
    );
    // Each case: (config text, what the message must mention).
    let office_secret = s.path("keys/office.secret.asc").display().to_string();
    let cases: Vec<(String, &str)> = vec![
        (format!("host: bad-host\nstore: {{ local: store }}\nencryption: {{ recipients: [keys/office.cert.asc], signing_key: keys/bad-host.secret.asc }}\n{db}\nretention: 3\n"), "retention"),
        (format!("host: bad-host\nstore: {{ local: store }}\nencryption: {{ recipients: [keys/missing.cert.asc], signing_key: keys/bad-host.secret.asc }}\n{db}\n"), "missing.cert.asc"),
        (format!("host: bad-host\nstore: {{ local: store }}\nencryption: {{ recipients: [config.yaml], signing_key: keys/bad-host.secret.asc }}\n{db}\n"), "not an OpenPGP"),
        (format!("host: bad-host\nstore: {{ local: store }}\nencryption: {{ recipients: ['{office_secret}'], signing_key: keys/bad-host.secret.asc }}\n{db}\n"), "SECRET key"),
        (format!("host: bad-host\nstore: {{ local: store }}\nencryption: {{ recipients: [keys/office.cert.asc], signing_key: keys/bad-host.cert.asc }}\n{db}\n"), "no usable secret signing key"),
        // Past the keys, push takes its lock in state_dir: keep it in the temp dir.
        (format!("host: bad-host\nstore: {{ local: store }}\nstate_dir: state\nencryption: {{ recipients: [keys/office.cert.asc], signing_key: keys/bad-host.secret.asc }}\npostgres: [{{ url: '{PG_URL}', databases: [no_such_db_here] }}]\n"), "does not exist"),
    ];
    for (text, needle) in cases {
        std::fs::write(s.config_path(), &text).unwrap();
        let run = s.offsite(&["push"]);
        assert_eq!(run.code, 2, "config:\n{text}\nstderr: {}", run.stderr);
        assert!(
            run.stderr.contains(needle),
            "expected {needle:?} in: {}",
            run.stderr
        );
        assert!(
            s.store_files().is_empty(),
            "nothing may be written: {:?}",
            s.store_files()
        );
    }

    // The signing key file also holding the office's secret key: push could decrypt its own output.
    let both = s.path("keys/both.secret.asc");
    let mut combined = std::fs::read(s.path("keys/bad-host.secret.asc")).unwrap();
    combined.extend(std::fs::read(s.path("keys/office.secret.asc")).unwrap());
    std::fs::write(&both, combined).unwrap();
    std::fs::write(
        s.config_path(),
        format!("host: bad-host\nstore: {{ local: store }}\nencryption: {{ recipients: [keys/office.cert.asc], signing_key: keys/both.secret.asc }}\n{db}\n"),
    )
    .unwrap();
    let run = s.offsite(&["push"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("could decrypt its own backups"),
        "{}",
        run.stderr
    );
    assert!(s.store_files().is_empty());
}

#[test]
fn unknown_config_keys_name_file_line_and_key() {
    let s = Setup::new("cfg-host");
    std::fs::write(
        s.config_path(),
        "host: cfg-host\nstore:\n  local: store\n  bukket: x\n",
    )
    .unwrap();
    let run = s.offsite(&["config", "check"]).expect(2);
    assert!(run.stderr.contains("config.yaml"), "{}", run.stderr);
    assert!(run.stderr.contains("bukket"), "{}", run.stderr);
    assert!(run.stderr.contains("line 4"), "{}", run.stderr);
}

#[test]
fn secrets_never_reach_output() {
    let s = Setup::new("secret-host");
    s.config("postgres: [{ url: 'postgres://postgres:TopSecret123@127.0.0.1:5432/', databases: [no_such_db_xyz] }]\n");
    let check = s.offsite(&["config", "check"]).expect(0);
    assert!(!check.stdout.contains("TopSecret123"), "{}", check.stdout);
    assert!(check.stdout.contains("***"), "{}", check.stdout);
    let push = s.offsite(&["push"]);
    assert_ne!(push.code, 0);
    assert!(
        !push.stderr.contains("TopSecret123") && !push.stdout.contains("TopSecret123"),
        "{}",
        push.stderr
    );
}

#[test]
fn a_flipped_byte_aborts_restore_naming_the_object() {
    let pg = PgDb::new("flip");
    pg.load(&fixture("postgres/shop.sql"));
    let s = Setup::new("flip-host");
    pg_config(&s, &pg.name, None);
    s.offsite(&["push"]).expect(0);
    let (id, _) = s.local_snapshots().remove(0);
    let obj = s.path(&format!(
        "store/{}/{id}/db/postgres/{}.sql.zst.pgp",
        s.host, pg.name
    ));
    let mut bytes = std::fs::read(&obj).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&obj, bytes).unwrap();

    let target = PgDb::named(&format!("{}_flipped", pg.name));
    let run = s
        .offsite(&[
            "restore",
            "latest",
            "--db",
            &format!("postgres/{}", pg.name),
            "--into",
            &target.name,
        ])
        .expect(1);
    assert!(
        run.stderr
            .contains(&format!("db/postgres/{}.sql.zst.pgp", pg.name)),
        "{}",
        run.stderr
    );
    assert!(!target.exists(), "the half-restored database is dropped");
    let out = s.offsite(&[
        "restore",
        "latest",
        "--db",
        &format!("postgres/{}", pg.name),
        "--stdout",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
}

/// A hacked production host still signs its snapshots. A dump carrying client meta-commands must not
/// run them on the office machine that restores it.
#[test]
fn a_hostile_dump_cannot_run_commands_where_it_is_restored() {
    let s = Setup::new("hostile-host");
    let pwned_pg = s.path("pwned-by-psql");
    let pwned_my = s.path("pwned-by-mariadb");
    let pg = PgDb::new("hostile");
    pg.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let my = crate::common::db::MyDb::new("hostile");
    my.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    // Stand-ins for the dump tools that slip a shell escape in before the real dump.
    let fake_pg = fake_pg_dump(
        &s,
        &format!("echo '\\! touch {}'\nexec $REAL \"$@\"", pwned_pg.display()),
    );
    let fake_my = s.path("fake-mariadb-dump");
    std::fs::write(
        &fake_my,
        format!(
            "#!/bin/bash\nif [ \"$1\" = --version ]; then exec mariadb-dump --version; fi\necho 'system touch {}'\nexec mariadb-dump \"$@\"\n",
            pwned_my.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake_my, std::fs::Permissions::from_mode(0o755)).unwrap();
    s.config(&format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}], pg_dump: '{fake_pg}' }}]\nmysql: [{{ url: '{}', databases: [{}], dump_command: '{}' }}]\n",
        pg.name,
        crate::common::db::MY_URL,
        my.name,
        fake_my.display()
    ));
    s.offsite(&["push"]).expect(0);

    let pg_target = PgDb::named(&format!("{}_r", pg.name));
    let run = s
        .offsite(&[
            "restore",
            "latest",
            "--db",
            &format!("postgres/{}", pg.name),
            "--into",
            &pg_target.name,
        ])
        .expect(1);
    assert!(run.stderr.contains("restricted"), "{}", run.stderr);
    assert!(!pwned_pg.exists(), "psql ran a meta-command from the dump");
    assert!(!pg_target.exists(), "the half-restored database is dropped");

    let my_target = crate::common::db::MyDb::named(&format!("{}_r", my.name));
    let run = s
        .offsite(&[
            "restore",
            "latest",
            "--db",
            &format!("mysql/{}", my.name),
            "--into",
            &my_target.name,
        ])
        .expect(1);
    assert!(run.stderr.contains("sandbox"), "{}", run.stderr);
    assert!(
        !pwned_my.exists(),
        "mariadb ran a shell command from the dump"
    );
}

#[test]
fn push_refuses_a_config_that_holds_the_office_key() {
    let s = Setup::new("officekey-host");
    let pg = PgDb::new("officekey");
    s.config(&format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]\n",
        pg.name
    ));
    // Setup's config has an office section naming keys/office.secret.asc; run push on it as it is.
    let run = s
        .offsite_with(&s.config_path(), &["--quiet", "config", "check"], &[])
        .expect(0);
    assert!(run.stdout.contains("decryption_key"));
    let out = std::process::Command::new(crate::common::cli::bin())
        .arg("-c")
        .arg(s.config_path())
        .arg("push")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must never be on a production host"), "{err}");
    assert!(s.store_files().is_empty());
}

#[test]
fn a_pg_dump_older_than_the_server_is_refused_before_anything_is_written() {
    let pg = PgDb::new("olddump");
    let s = Setup::new("olddump-host");
    let path = s.path("old-pg_dump");
    std::fs::write(&path, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    pg_config(&s, &pg.name, Some(&path.display().to_string()));
    let run = s.offsite(&["push"]).expect(2);
    assert!(
        run.stderr.contains("must be at least as new as the server"),
        "{}",
        run.stderr
    );
    assert!(s.store_files().is_empty());
}
