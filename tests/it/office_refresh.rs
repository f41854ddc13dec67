//! `offsite refresh` on real PostgreSQL and MariaDB: a pushed snapshot, marked verified, restored into
//! dev databases; the guards; and refreshes killed at each point of the swap.
//!
//! The store is a local directory that is also the office's offsite_dir, so a push lands where refresh
//! reads. The verify command is not used: a `VerifyRecord` is written directly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::cli::{bin, Run, Setup};
use crate::common::db::{
    fixture, mariadb, psql, psql_as, MyDb, PgDb, MY_RESTORE_URL, MY_URL, PG_RESTORE_URL, PG_URL,
    RESTORE_ROLE,
};
use offsite::office::record::{Freshness, VerifyRecord, FORMAT, VERSION};

const PG_ANON: &str =
    "UPDATE public.customers SET email = 'x' || id || '@example.invalid' WHERE email IS NOT NULL;\n";
const MY_ANON: &str =
    "UPDATE customers SET email = CONCAT('x', id, '@example.invalid') WHERE email IS NOT NULL;\n";

/// One refresh entry of the config.
struct Entry<'a> {
    source: &'a str,
    server: &'a str,
    database: &'a str,
    post_sql: &'a [&'a str],
}

/// Writes config.yaml: push sources `pushes` (YAML), the office section with offsite_dir = the
/// store, `office_extra` (indented YAML), and the refresh entries.
fn write_config(s: &Setup, pushes: &str, office_extra: &str, entries: &[Entry]) {
    let host = &s.host;
    let mut refresh = String::new();
    for e in entries {
        let post: Vec<String> = e.post_sql.iter().map(|p| format!("'{p}'")).collect();
        refresh.push_str(&format!(
            "    - from: '{host}:{}'\n      server: '{}'\n      database: '{}'\n      post_sql: [{}]\n",
            e.source,
            e.server,
            e.database,
            post.join(", ")
        ));
    }
    let text = format!(
        "host: {host}\nstore: {{ local: store }}\nstate_dir: state\nencryption:\n  recipients: [keys/office.cert.asc]\n  signing_key: keys/{host}.secret.asc\n{pushes}\noffice:\n  decryption_key: keys/office.secret.asc\n  offsite_dir: store\n  hosts: {{ {host}: keys/{host}.cert.asc }}\n{office_extra}  refresh:\n{refresh}"
    );
    std::fs::write(s.config_path(), text).expect("writing config");
}

fn pg_push(db: &str) -> String {
    format!("postgres: [{{ url: '{PG_URL}', databases: [{db}] }}]\n")
}

fn my_push(db: &str) -> String {
    format!("mysql: [{{ url: '{MY_URL}', databases: [{db}] }}]\n")
}

fn write_file(s: &Setup, name: &str, text: &str) -> String {
    let p = s.path(name);
    std::fs::write(&p, text).expect("writing a file");
    p.display().to_string()
}

/// Writes a verify record for the newest snapshot in the store, as a verify that ran just now would
/// (the snapshot's trusted time: now); returns its id.
fn mark_verified(s: &Setup, ok: bool) -> String {
    let (id, complete) = s.local_snapshots().pop().expect("a snapshot");
    assert!(complete);
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formatting now");
    VerifyRecord {
        locked_until: None,
        format: FORMAT.into(),
        version: VERSION,
        host: s.host.clone(),
        snapshot: id.clone(),
        snapshot_time: now.clone(),
        verified_at: now,
        verified_from: "offsite".into(),
        ok,
        seconds: 1.0,
        signer: String::new(),
        stored_bytes: 0,
        plain_bytes: 0,
        freshness: Freshness {
            age_hours: 1.0,
            max_age_hours: 26.0,
            ok: true,
        },
        databases: Vec::new(),
        trees: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    }
    .save(&s.path("store"))
    .expect("saving the verify record");
    id
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr))
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// Databases whose name starts with `<db>_offsite_` (work databases of a refresh).
fn pg_leftovers(db: &str) -> Vec<String> {
    let mut c = psql("postgres");
    c.args(["-At", "-c", "SELECT datname FROM pg_database"]);
    let out = c.output().expect("psql");
    let prefix = format!("{db}_offsite_");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

fn my_leftovers(db: &str) -> Vec<String> {
    let mut c = mariadb(None);
    c.args(["-N", "-B", "-e", "SHOW DATABASES"]);
    let out = c.output().expect("mariadb");
    let prefix = format!("{db}_offsite_");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// Drops the work databases a test may leave behind on failure.
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for d in pg_leftovers(&self.0) {
            drop(PgDb::named(&d));
        }
        for d in my_leftovers(&self.0) {
            let _ = mariadb(None)
                .args([
                    "-e",
                    &format!("SET foreign_key_checks = 0; DROP DATABASE IF EXISTS `{d}`"),
                ])
                .output();
        }
    }
}

/// Creates a PostgreSQL database of that exact name (PgDb::new adds no `_dev` suffix).
fn pg_create(name: &str) -> PgDb {
    let db = PgDb::named(name);
    let out = psql("postgres")
        .args([
            "-c",
            &format!("CREATE DATABASE {name} OWNER {RESTORE_ROLE}"),
        ])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    db
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn postgres_refresh_creates_then_replaces_the_dev_database() {
    let src = PgDb::new("rfpg");
    src.load(&fixture("postgres/shop.sql"));
    let dev = PgDb::named(&format!("{}_dev", src.name));
    let _left = Leftovers(dev.name.clone());
    let s = Setup::new("rfpg-host");
    let anon = write_file(&s, "anon.sql", PG_ANON);
    let source = format!("postgres/{}", src.name);
    let entries = [Entry {
        source: &source,
        server: PG_RESTORE_URL,
        database: &dev.name,
        post_sql: &[&anon],
    }];
    write_config(&s, &pg_push(&src.name), "", &entries);
    s.offsite(&["push"]).expect(0);
    let id = mark_verified(&s, true);

    let run = s.offsite(&["--json", "refresh"]).expect(0);
    let j = json(&run);
    let e = &j["entries"][0];
    assert_eq!(e["status"], "refreshed", "{j}");
    assert_eq!(e["snapshot"], id.as_str());
    assert_eq!(e["replaced"], false);
    assert_eq!(e["post_sql"][0], anon.as_str());
    assert!(e["bytes"].as_u64().unwrap_or(0) > 0, "{j}");

    // The dev database is the source with post_sql applied.
    src.exec(PG_ANON);
    assert_eq!(
        sorted_lines(&dev.dump()),
        sorted_lines(&src.dump()),
        "dev differs from the anonymized source"
    );
    assert_eq!(
        dev.exec("SELECT count(*) FROM public.customers WHERE email NOT LIKE '%@example.invalid'"),
        "0\n"
    );

    // A developer works in the dev database, inside a transaction, when the next refresh comes.
    dev.exec("CREATE TABLE public.marker (x int); INSERT INTO public.marker VALUES (1)");
    // As the refresh role: a non-superuser may end only sessions of non-superusers.
    let mut developer = psql_as(&dev.name, RESTORE_ROLE)
        .args([
            "-c",
            "BEGIN; SELECT count(*) FROM public.customers; SELECT pg_sleep(120);",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("developer psql");
    std::thread::sleep(Duration::from_millis(500));
    let run = s.offsite(&["refresh"]).expect(0);
    assert!(
        run.stderr.contains("replaced the old database"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("snapshot {id}")) && run.stderr.contains("post_sql ran"),
        "{}",
        run.stderr
    );
    let st = wait_exit(&mut developer, Duration::from_secs(10));
    assert!(
        st.is_some_and(|s| !s.success()),
        "the developer's session was not ended by the swap"
    );
    assert_eq!(
        dev.exec("SELECT count(*) FROM pg_tables WHERE tablename = 'marker'"),
        "0\n",
        "the old dev database was not replaced"
    );
    assert_eq!(sorted_lines(&dev.dump()), sorted_lines(&src.dump()));
    assert!(
        pg_leftovers(&dev.name).is_empty(),
        "{:?}",
        pg_leftovers(&dev.name)
    );
}

#[test]
fn mariadb_refresh_keeps_triggers_views_and_routines_working() {
    let src = MyDb::new("rfmy");
    src.load(&fixture("mysql/shop.sql"));
    let dev = MyDb::named(&format!("{}_dev", src.name));
    let _left = Leftovers(dev.name.clone());
    let s = Setup::new("rfmy-host");
    let anon = write_file(&s, "anon.sql", MY_ANON);
    let source = format!("mysql/{}", src.name);
    let entries = [Entry {
        source: &source,
        server: MY_RESTORE_URL,
        database: &dev.name,
        post_sql: &[&anon],
    }];
    write_config(&s, &my_push(&src.name), "", &entries);
    // The fixture's MyISAM table makes push warn: committed, exit code 3.
    s.offsite(&["push"]).expect(3);
    mark_verified(&s, true);

    // First refresh: the dev database does not exist yet.
    let j = json(&s.offsite(&["--json", "refresh"]).expect(0));
    assert_eq!(j["entries"][0]["replaced"], false, "{j}");
    src.exec(MY_ANON);
    assert_eq!(
        sorted_lines(&dev.dump()),
        sorted_lines(&src.dump()),
        "dev differs from the anonymized source"
    );

    // Second refresh over an existing dev database, whose tables have triggers, while a developer
    // holds a metadata lock in an open transaction.
    dev.exec("CREATE TABLE marker (x INT); INSERT INTO marker VALUES (1)");
    let mut developer = mariadb(Some(&dev.name))
        .args([
            "-e",
            "START TRANSACTION; SELECT COUNT(*) FROM customers; SELECT SLEEP(120);",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("developer mariadb");
    std::thread::sleep(Duration::from_millis(500));
    let j = json(&s.offsite(&["--json", "refresh"]).expect(0));
    assert_eq!(j["entries"][0]["replaced"], true, "{j}");
    assert!(
        wait_exit(&mut developer, Duration::from_secs(10)).is_some(),
        "the developer's session was not ended by the swap"
    );
    assert_eq!(
        dev.exec("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'marker'"),
        "0\n"
    );
    assert_eq!(sorted_lines(&dev.dump()), sorted_lines(&src.dump()));
    assert!(
        my_leftovers(&dev.name).is_empty(),
        "{:?}",
        my_leftovers(&dev.name)
    );

    // The objects RENAME TABLE does not move work in the dev database.
    for sql in [
        "CALL customer_orders(2, @n); SELECT @n",
        "SELECT customer_total(3)",
        "SELECT COUNT(*), SUM(revenue) FROM daily_revenue",
        "SELECT COUNT(*) FROM `we``ird` WHERE `col``tick` = 0",
    ] {
        let (d, s) = (dev.exec(sql), src.exec(sql));
        assert_eq!(d.lines().last(), s.lines().last(), "{sql}");
    }
    let total = dev.exec(
        "INSERT INTO orders (customer_id, sku, qty, created_at) VALUES (1, 'MUG-01', 2, NOW(6)); \
         SELECT total FROM orders WHERE id = LAST_INSERT_ID()",
    );
    assert_eq!(total.trim(), "19.00", "the trigger did not fire");
    assert_eq!(
        dev.exec("SELECT COUNT(*) FROM information_schema.events WHERE event_schema = DATABASE()"),
        "1\n"
    );
}

#[test]
fn refresh_and_restore_honour_what_verify_found() {
    let src = PgDb::new("rfvv");
    src.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let dev = pg_create(&format!("{}_dev", src.name));
    let _left = Leftovers(dev.name.clone());
    dev.exec("CREATE TABLE marker (x int); INSERT INTO marker VALUES (42)");
    let before = dev.dump();
    let s = Setup::new("rfvv-host");
    let source = format!("postgres/{}", src.name);
    let entry = Entry {
        source: &source,
        server: PG_RESTORE_URL,
        database: &dev.name,
        post_sql: &[],
    };
    write_config(&s, &pg_push(&src.name), "", std::slice::from_ref(&entry));
    s.offsite(&["push"]).expect(0);
    let good = mark_verified(&s, true);
    let refused = |env: &[(&str, &str)], rule: &str| {
        let run = s.offsite_env(&["--json", "refresh"], env).expect(2);
        let j = json(&run);
        assert_eq!(j["entries"][0]["rule"], rule, "{j}");
        assert_eq!(dev.dump(), before, "{rule}: the dev database changed");
        assert!(pg_leftovers(&dev.name).is_empty());
        j
    };

    // Three days later the newest verified snapshot is too old to pass for today's data.
    let later = (time::OffsetDateTime::now_utc() + time::Duration::days(3))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    refused(&[("OFFSITE_NOW", &later)], "verified-too-old");

    // A newer snapshot failed verify: no quiet fallback to the older one.
    std::thread::sleep(Duration::from_millis(1100));
    s.offsite(&["push"]).expect(0);
    let bad = mark_verified(&s, false);
    let j = refused(&[], "newer-failed");
    let msg = j["entries"][0]["message"].to_string() + &j.to_string();
    assert!(msg.contains(&bad) && msg.contains(&good), "{j}");

    // restore --replace from the failed snapshot needs --force; without it the target is untouched.
    let run = s
        .offsite(&[
            "restore",
            &bad,
            "--db",
            &source,
            "--into",
            &dev.name,
            "--replace",
        ])
        .expect(2);
    assert!(run.stderr.contains("FAILED verify"), "{}", run.stderr);
    assert_eq!(dev.dump(), before, "restore --replace changed the target");
    let run = s
        .offsite(&[
            "restore",
            &good,
            "--db",
            &source,
            "--into",
            &dev.name,
            "--replace",
        ])
        .expect(0);
    assert!(run.stderr.contains("verify PASSED"), "{}", run.stderr);
    assert_eq!(dev.exec("SELECT count(*) FROM t"), "1\n");
    let run = s
        .offsite(&[
            "restore",
            &bad,
            "--db",
            &source,
            "--into",
            &dev.name,
            "--replace",
            "--force",
        ])
        .expect(0);
    assert!(run.stderr.contains("verify FAILED"), "{}", run.stderr);
}

#[test]
fn guards_refuse_and_touch_nothing() {
    let src = PgDb::new("rfgd");
    src.load(&fixture("postgres/shop.sql"));
    let dev = pg_create(&format!("{}_dev", src.name));
    let _left = Leftovers(dev.name.clone());
    dev.exec("CREATE TABLE marker (x int); INSERT INTO marker VALUES (42)");
    let before = dev.dump();
    let s = Setup::new("rfgd-host");
    let anon = write_file(&s, "anon.sql", PG_ANON);
    let source = format!("postgres/{}", src.name);
    let ok_entry = Entry {
        source: &source,
        server: PG_RESTORE_URL,
        database: &dev.name,
        post_sql: &[&anon],
    };
    write_config(&s, &pg_push(&src.name), "", std::slice::from_ref(&ok_entry));
    s.offsite(&["push"]).expect(0);

    let untouched = |what: &str| {
        assert_eq!(dev.dump(), before, "{what}: the dev database changed");
        assert!(
            pg_leftovers(&dev.name).is_empty(),
            "{what}: work databases were made"
        );
    };
    let refused = |rule: &str| {
        let run = s.offsite(&["--json", "refresh"]).expect(2);
        let j = json(&run);
        assert_eq!(j["entries"][0]["status"], "refused", "{j}");
        assert_eq!(j["entries"][0]["rule"], rule, "{j}");
        let run = s.offsite(&["refresh"]).expect(2);
        assert!(
            run.stderr.contains(&format!("REFUSED by rule {rule}: ")),
            "{}",
            run.stderr
        );
        untouched(rule);
    };

    // No verify record at all, then a failed one.
    refused("no-verified-snapshot");
    mark_verified(&s, false);
    refused("no-verified-snapshot");
    mark_verified(&s, true);

    // The target is a push source of this config.
    let pushes = format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}, {}] }}]\n",
        src.name, dev.name
    );
    write_config(&s, &pushes, "", std::slice::from_ref(&ok_entry));
    refused("production-source");
    // `databases: all` makes every database of that server production, however it is spelled.
    let pushes = "postgres: [{ url: 'postgres://postgres@localhost/' }]\n";
    write_config(&s, pushes, "", std::slice::from_ref(&ok_entry));
    refused("production-source");
    // A server listed in office.production_servers.
    let extra = "  production_servers: ['postgres://127.0.0.1:5432']\n";
    write_config(
        &s,
        &pg_push(&src.name),
        extra,
        std::slice::from_ref(&ok_entry),
    );
    refused("production-server");

    // A name outside allow_pattern: nothing is created either.
    let prod = PgDb::named(&format!("{}_prod", src.name));
    let entry = Entry {
        database: &prod.name,
        ..ok_entry
    };
    write_config(&s, &pg_push(&src.name), "", std::slice::from_ref(&entry));
    refused("allow-pattern");
    assert!(!prod.exists());

    // A source the verified snapshot does not hold; a missing post_sql file.
    let entry = Entry {
        source: "postgres/not_in_the_snapshot",
        ..ok_entry
    };
    write_config(&s, &pg_push(&src.name), "", std::slice::from_ref(&entry));
    refused("source-not-in-snapshot");
    let missing = s.path("missing.sql").display().to_string();
    let entry = Entry {
        post_sql: &[&missing],
        ..ok_entry
    };
    write_config(&s, &pg_push(&src.name), "", std::slice::from_ref(&entry));
    refused("post-sql-missing");

    // --only names no entry: a usage error.
    write_config(&s, &pg_push(&src.name), "", std::slice::from_ref(&ok_entry));
    s.offsite(&["refresh", "--only", "nothing_dev"]).expect(2);
    untouched("--only");

    // One refused entry does not stop the others; the exit code is the worst.
    let bad = Entry {
        database: &prod.name,
        ..ok_entry
    };
    write_config(&s, &pg_push(&src.name), "", &[bad, ok_entry]);
    let j = json(&s.offsite(&["--json", "refresh"]).expect(2));
    assert_eq!(j["entries"][0]["status"], "refused", "{j}");
    assert_eq!(j["entries"][1]["status"], "refreshed", "{j}");
    assert_eq!(
        dev.exec("SELECT count(*) FROM pg_tables WHERE tablename = 'marker'"),
        "0\n"
    );
    assert!(!prod.exists());
}

#[test]
fn killed_postgres_refresh_leaves_the_old_dev_database() {
    let src = PgDb::new("rfkp");
    src.load(&fixture("postgres/shop.sql"));
    let dev = pg_create(&format!("{}_dev", src.name));
    let _left = Leftovers(dev.name.clone());
    dev.exec("CREATE TABLE marker (x int); INSERT INTO marker VALUES (42)");
    let before = dev.dump();
    let s = Setup::new("rfkp-host");
    let anon = write_file(&s, "anon.sql", PG_ANON);
    let slow = write_file(&s, "slow.sql", "SELECT pg_sleep(30);\n");
    let failing = write_file(&s, "failing.sql", "SELECT 1/0;\n");
    let source = format!("postgres/{}", src.name);
    let config = |post_sql: &[&str]| {
        let e = Entry {
            source: &source,
            server: PG_RESTORE_URL,
            database: &dev.name,
            post_sql,
        };
        write_config(&s, &pg_push(&src.name), "", &[e]);
    };
    config(&[&anon, &slow]);
    s.offsite(&["push"]).expect(0);
    mark_verified(&s, true);

    // Killed while post_sql runs in the new database.
    let mut child = Command::new(bin())
        .arg("-c")
        .arg(s.config_path())
        .arg("refresh")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("offsite refresh");
    let start = Instant::now();
    let sleeping = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND datname LIKE '{}_offsite_new_%'",
        dev.name
    );
    while PgDb::named("postgres").exec(&sleeping).trim() == "0" {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "post_sql never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert_eq!(
        dev.dump(),
        before,
        "a killed refresh changed the dev database"
    );
    assert_eq!(pg_leftovers(&dev.name).len(), 1, "the new database is left");

    // The next run drops it (while the killed run's psql still sleeps in it) and fails cleanly on
    // its own broken post_sql: the old dev database stays.
    config(&[&failing]);
    let run = s.offsite(&["refresh"]).expect(1);
    assert!(run.stderr.contains("division by zero"), "{}", run.stderr);
    assert_eq!(dev.dump(), before);
    assert!(
        pg_leftovers(&dev.name).is_empty(),
        "{:?}",
        pg_leftovers(&dev.name)
    );

    // Killed right after the swap committed: dev is new and complete, the old copy is left over.
    config(&[&anon]);
    let run = s.offsite_env(&["refresh"], &[("OFFSITE_TEST_KILL_AT", "pg-after-swap")]);
    assert_eq!(run.code, -1, "not killed: {}", run.stderr);
    assert_eq!(
        dev.exec("SELECT count(*) FROM pg_tables WHERE tablename = 'marker'"),
        "0\n"
    );
    assert_eq!(pg_leftovers(&dev.name).len(), 1);

    // The target missing with an old copy present: the next run renames it back first.
    let old = format!("{}_offsite_old_abcd", dev.name);
    for sql in [
        format!("DROP DATABASE {}", pg_leftovers(&dev.name)[0]),
        format!("ALTER DATABASE {} RENAME TO {old}", dev.name),
    ] {
        psql("postgres").args(["-c", &sql]).output().expect("psql");
    }
    config(&[&failing]);
    s.offsite(&["refresh"]).expect(1);
    assert!(dev.exists(), "the old copy was not renamed back");
    assert!(pg_leftovers(&dev.name).is_empty());

    // And a normal run after all that.
    config(&[&anon]);
    s.offsite(&["refresh"]).expect(0);
    src.exec(PG_ANON);
    assert_eq!(sorted_lines(&dev.dump()), sorted_lines(&src.dump()));
    assert!(pg_leftovers(&dev.name).is_empty());
}

#[test]
fn killed_mariadb_refresh_is_repaired_by_the_next_run() {
    let src = MyDb::new("rfkm");
    src.load(&fixture("mysql/shop.sql"));
    let dev = MyDb::named(&format!("{}_dev", src.name));
    let _left = Leftovers(dev.name.clone());
    let s = Setup::new("rfkm-host");
    let anon = write_file(&s, "anon.sql", MY_ANON);
    let failing = write_file(&s, "failing.sql", "SELECT * FROM no_such_table;\n");
    let source = format!("mysql/{}", src.name);
    let config = |post_sql: &[&str]| {
        let e = Entry {
            source: &source,
            server: MY_RESTORE_URL,
            database: &dev.name,
            post_sql,
        };
        write_config(&s, &my_push(&src.name), "", &[e]);
    };
    config(&[&anon]);
    s.offsite(&["push"]).expect(3);
    mark_verified(&s, true);
    s.offsite(&["refresh"]).expect(0);
    dev.exec("CREATE TABLE marker (x INT); INSERT INTO marker VALUES (42)");
    let before = dev.dump();
    let triggers =
        "SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = DATABASE()";
    assert_eq!(dev.exec(triggers), "1\n");

    // Killed after the journal was written and the new database's triggers dropped, just before
    // the batch that drops the target's triggers and renames: the target is untouched.
    let run = s.offsite_env(
        &["refresh"],
        &[("OFFSITE_TEST_KILL_AT", "mysql-before-rename")],
    );
    assert_eq!(run.code, -1, "not killed: {}", run.stderr);
    assert_eq!(dev.dump(), before);
    assert_eq!(
        my_leftovers(&dev.name).len(),
        2,
        "journal and new database left"
    );
    // Simulate a kill inside that batch, after its DROP TRIGGER: the next run puts the trigger back
    // from the journal (and then fails on its own broken post_sql, before any swap).
    dev.exec("DROP TRIGGER orders_set_total");
    config(&[&failing]);
    let run = s.offsite(&["refresh"]).expect(1);
    assert!(run.stderr.contains("no_such_table"), "{}", run.stderr);
    assert_eq!(
        dev.dump(),
        before,
        "the old dev database was not restored exactly"
    );
    assert!(
        my_leftovers(&dev.name).is_empty(),
        "{:?}",
        my_leftovers(&dev.name)
    );

    // Killed right after the table swap: the new tables are in, their triggers are not yet.
    config(&[&anon]);
    let run = s.offsite_env(
        &["refresh"],
        &[("OFFSITE_TEST_KILL_AT", "mysql-after-rename")],
    );
    assert_eq!(run.code, -1, "not killed: {}", run.stderr);
    assert_eq!(
        dev.exec("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'marker'"),
        "0\n"
    );
    assert_eq!(dev.exec(triggers), "0\n");
    // The next run finishes that swap from the journal before it fails on its own post_sql.
    config(&[&failing]);
    s.offsite(&["refresh"]).expect(1);
    src.exec(MY_ANON);
    assert_eq!(sorted_lines(&dev.dump()), sorted_lines(&src.dump()));
    assert_eq!(dev.exec(triggers), "1\n");
    assert!(
        my_leftovers(&dev.name).is_empty(),
        "{:?}",
        my_leftovers(&dev.name)
    );

    config(&[&anon]);
    s.offsite(&["refresh"]).expect(0);
    assert_eq!(sorted_lines(&dev.dump()), sorted_lines(&src.dump()));
    assert!(my_leftovers(&dev.name).is_empty());
}
