//! Round trips through the real binary: push fixtures with awkward content, restore them, compare the
//! data; and read every object back with stock gpg, zstd, gunzip, psql and mariadb.

use crate::common::cli::Setup;
use crate::common::db::{fixture, MyDb, PgDb, MY_URL, PG_URL};

fn sources(pg: &str, my: &str) -> String {
    format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{pg}] }}]\nmysql: [{{ url: '{MY_URL}', databases: [{my}] }}]\n"
    )
}

#[test]
fn postgres_and_mysql_round_trip_equal_the_source() {
    let pg = PgDb::new("rt");
    pg.load(&fixture("postgres/shop.sql"));
    let my = MyDb::new("rt");
    my.load(&fixture("mysql/shop.sql"));
    let s = Setup::new("rt-host");
    s.config(&sources(&pg.name, &my.name));
    // The fixture's MyISAM table makes push warn: committed, exit code 3.
    let push = s.offsite(&["push"]).expect(3);
    assert!(push.stderr.contains("is not InnoDB"), "{}", push.stderr);
    assert_eq!(s.local_snapshots().len(), 1);
    assert!(s.local_snapshots()[0].1, "snapshot committed");

    let pg_back = PgDb::named(&format!("{}_back", pg.name));
    s.offsite(&[
        "restore",
        "latest",
        "--db",
        &format!("postgres/{}", pg.name),
        "--into",
        &pg_back.name,
    ])
    .expect(0);
    assert_eq!(
        pg_back.dump(),
        pg.dump(),
        "restored PostgreSQL database differs from the source"
    );

    let my_back = MyDb::named(&format!("{}_back", my.name));
    s.offsite(&[
        "restore",
        "latest",
        "--db",
        &format!("mysql/{}", my.name),
        "--into",
        &my_back.name,
    ])
    .expect(0);
    assert_eq!(
        my_back.dump(),
        my.dump(),
        "restored MariaDB database differs from the source"
    );

    // An existing target is refused without --replace, and left alone.
    let again = s.offsite(&[
        "restore",
        "latest",
        "--db",
        &format!("postgres/{}", pg.name),
        "--into",
        &pg_back.name,
    ]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(again.stderr.contains("--replace"), "{}", again.stderr);
    pg_back.exec("CREATE TABLE public.marker (x int)");
    s.offsite(&[
        "restore",
        "latest",
        "--db",
        &format!("postgres/{}", pg.name),
        "--into",
        &pg_back.name,
        "--replace",
    ])
    .expect(0);
    assert_eq!(
        pg_back.dump(),
        pg.dump(),
        "--replace swaps in an exact copy"
    );
    let leftovers = pg.exec(&format!(
        "SELECT count(*) FROM pg_database WHERE datname LIKE '{}_offsite_%'",
        pg_back.name
    ));
    assert_eq!(leftovers.trim(), "0", "no work or old copy is left behind");
}

#[test]
fn stock_tools_restore_every_object_without_offsite() {
    let pg = PgDb::new("interop");
    pg.load(&fixture("postgres/shop.sql"));
    let my = MyDb::new("interop");
    my.load(&fixture("mysql/shop.sql"));
    let s = Setup::new("interop-host");
    s.config(&sources(&pg.name, &my.name));
    s.offsite(&["push"]).expect(3);
    let (id, _) = s.local_snapshots().remove(0);
    let snap = format!("store/{}/{id}", s.host);

    // The manifest: stock gpg decrypts it and checks the host's signature.
    let manifest = s
        .sh(&format!("gpg --batch --import keys/{}.cert.asc 2>/dev/null; gpg --batch --decrypt {snap}/manifest.json.pgp", s.host))
        .expect(0);
    assert!(
        manifest.stderr.contains("Good signature"),
        "{}",
        manifest.stderr
    );
    let m: serde_json::Value = serde_json::from_str(&manifest.stdout).expect("manifest is JSON");
    assert_eq!(m["host"], s.host.as_str());

    // Row counts in the manifest equal the source's.
    let dbs = m["databases"].as_array().expect("databases");
    let pgm = dbs
        .iter()
        .find(|d| d["engine"] == "postgres")
        .expect("postgres entry");
    assert_eq!(pgm["tables"]["sales.orders"], 300);
    assert_eq!(pgm["tables"]["\"Odd Schema\".empty_table"], 0);
    assert_eq!(pgm["end_marker_seen"], true);
    let count: u64 = pg
        .exec("SELECT count(*) FROM public.customers")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pgm["tables"]["public.customers"], count);
    let mym = dbs
        .iter()
        .find(|d| d["engine"] == "mysql")
        .expect("mysql entry");
    for (table, rows) in mym["tables"].as_object().expect("mysql tables") {
        let n: u64 = my
            .exec(&format!(
                "SELECT count(*) FROM `{}`",
                table.replace('`', "``")
            ))
            .trim()
            .parse()
            .unwrap();
        assert_eq!(rows.as_u64(), Some(n), "rows of {table}");
    }
    // Every base table is listed, the empty ones too: verify compares each of them after a restore.
    let base_tables = my.exec("SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'");
    assert_eq!(
        mym["tables"].as_object().unwrap().len().to_string(),
        base_tables.trim(),
        "{mym}"
    );
    assert!(mym["warnings"].to_string().contains("not InnoDB"));

    // gpg -d | zstd -d | psql, and | mariadb.
    let pg2 = PgDb::new("interop_psql");
    s.sh(&format!(
        "gpg --batch -q -d {snap}/db/postgres/{}.sql.zst.pgp | zstd -dc | psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d {} >/dev/null",
        pg.name, pg2.name
    ))
    .expect(0);
    assert_eq!(pg2.dump(), pg.dump());
    let my2 = MyDb::new("interop_mariadb");
    s.sh(&format!(
        "gpg --batch -q -d {snap}/db/mysql/{}.sql.zst.pgp | zstd -dc | mariadb -h 127.0.0.1 -uroot --default-character-set=utf8mb4 {}",
        my.name, my2.name
    ))
    .expect(0);
    assert_eq!(my2.dump(), my.dump());

    // `restore --stdout` gives exactly what the stock pipeline gives.
    let ours = s
        .offsite(&[
            "restore",
            "latest",
            "--db",
            &format!("postgres/{}", pg.name),
            "--stdout",
        ])
        .expect(0);
    let theirs = s
        .sh(&format!(
            "gpg --batch -q -d {snap}/db/postgres/{}.sql.zst.pgp | zstd -dc",
            pg.name
        ))
        .expect(0);
    assert!(
        ours.stdout == theirs.stdout,
        "restore --stdout differs from gpg | zstd"
    );
}

#[test]
fn gzip_objects_open_with_gunzip() {
    let pg = PgDb::new("gzip");
    pg.load(&fixture("postgres/shop.sql"));
    let s = Setup::new("gzip-host");
    s.config(&format!("compression: {{ algorithm: gzip, level: 6 }}\npostgres: [{{ url: '{PG_URL}', databases: [{}] }}]\n", pg.name));
    s.offsite(&["push"]).expect(0);
    let (id, _) = s.local_snapshots().remove(0);
    let pg2 = PgDb::new("gzip_back");
    s.sh(&format!(
        "gpg --batch -q -d store/{}/{id}/db/postgres/{}.sql.gz.pgp | gunzip | psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d {} >/dev/null",
        s.host, pg.name, pg2.name
    ))
    .expect(0);
    assert_eq!(pg2.dump(), pg.dump());
}

#[test]
fn snapshots_lists_sources_and_signature() {
    let pg = PgDb::new("list");
    pg.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)");
    let s = Setup::new("list-host");
    s.config(&format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]\n",
        pg.name
    ));
    s.offsite(&["push"]).expect(0);
    let out = s.offsite(&["snapshots", "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let row = &v[0];
    assert_eq!(row["complete"], true);
    assert_eq!(row["signature"], "valid");
    assert_eq!(row["sources"][0], format!("postgres/{}", pg.name));

    // Another host's certificate as signer: the signature check fails, visibly.
    let other = Setup::new("someone-else");
    let bad = s
        .offsite(&[
            "snapshots",
            "--json",
            "--signer",
            other.path("keys/someone-else.cert.asc").to_str().unwrap(),
        ])
        .expect(1);
    assert!(bad.stdout.contains("INVALID"), "{}", bad.stdout);
}

/// A dump tool that runs the real one and puts `bad` before the first line starting with
/// `before`: a dump that is signed, hashed and complete, and fails as SQL halfway, as a hacked
/// host or a dump from a newer server would.
fn failing_dump_tool(s: &Setup, real: &str, before: &str, bad: &str) -> String {
    let path = s.path(&format!("bad-{real}"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/bash\nset -o pipefail\nif [ \"$1\" = --version ]; then exec {real} --version; fi\n\
             {real} \"$@\" | awk -v bad='{bad}' '!done && index($0, \"{before}\") == 1 {{ print bad; done = 1 }} {{ print }}'\n"
        ),
    )
    .expect("writing the dump tool");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    path.display().to_string()
}

#[test]
fn restore_replace_keeps_the_old_database_when_the_dump_fails_as_sql_halfway() {
    let pg = PgDb::new("rpfail");
    pg.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)");
    let my = MyDb::new("rpfail");
    my.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)");
    let s = Setup::new("rpfail-host");
    let bad_pg = failing_dump_tool(&s, "pg_dump", "COPY ", "SELECT 1/0;");
    let bad_my = failing_dump_tool(
        &s,
        "mariadb-dump",
        "INSERT INTO",
        "SELECT * FROM no_such_table;",
    );
    s.config(&format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}], pg_dump: '{bad_pg}' }}]\nmysql: [{{ url: '{MY_URL}', databases: [{}], dump_command: '{bad_my}' }}]\n",
        pg.name, my.name
    ));
    s.offsite(&["push"]).expect(0);

    // The databases a developer works in, with data of their own.
    let pg_dev = PgDb::named(&format!("{}_dev", pg.name));
    pg.exec(&format!("CREATE DATABASE {}", pg_dev.name));
    pg_dev.exec("CREATE TABLE mine (v text); INSERT INTO mine VALUES ('keep me')");
    let my_dev = MyDb::named(&format!("{}_dev", my.name));
    my.exec(&format!("CREATE DATABASE {}", my_dev.name));
    my_dev.exec("CREATE TABLE mine (v text); INSERT INTO mine VALUES ('keep me')");
    let (pg_before, my_before) = (pg_dev.dump(), my_dev.dump());

    // No verify verdict in this config: --replace needs --force.
    let replace = |source: &str, dev: &str, env: &[(&str, &str)]| {
        let args = [
            "restore",
            "latest",
            "--db",
            source,
            "--into",
            dev,
            "--replace",
            "--force",
        ];
        s.offsite_env(&args, env)
    };
    for (source, dev) in [
        (format!("postgres/{}", pg.name), &pg_dev.name),
        (format!("mysql/{}", my.name), &my_dev.name),
    ] {
        let run = replace(&source, dev, &[]).expect(1);
        assert!(
            run.stderr.contains("the old database is unchanged"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(pg_dev.dump(), pg_before, "PostgreSQL target changed");
    assert_eq!(my_dev.dump(), my_before, "MariaDB target changed");
    let left = pg.exec(&format!(
        "SELECT count(*) FROM pg_database WHERE datname LIKE '{}_offsite_%'",
        pg_dev.name
    ));
    assert_eq!(left.trim(), "0", "no work database is left on PostgreSQL");
    let left = my.exec(&format!(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE '{}\\_offsite\\_%'",
        my_dev.name
    ));
    assert_eq!(left.trim(), "0", "no work database is left on MariaDB");

    // A good night; a restore --replace killed before its swap leaves the target as it was, and
    // the next one repairs what the killed one left and swaps in an exact copy.
    s.config(&sources(&pg.name, &my.name));
    s.offsite(&["push"]).expect(0);
    for (source, point) in [
        (format!("postgres/{}", pg.name), "pg-after-restore"),
        (format!("mysql/{}", my.name), "mysql-before-rename"),
    ] {
        let dev = format!("{}_dev", source.split('/').nth(1).unwrap_or_default());
        let run = replace(&source, &dev, &[("OFFSITE_TEST_KILL_AT", point)]);
        assert_eq!(run.code, -1, "not killed at {point}: {}", run.stderr);
    }
    assert_eq!(
        pg_dev.dump(),
        pg_before,
        "a killed restore changed the PostgreSQL target"
    );
    assert_eq!(
        my_dev.dump(),
        my_before,
        "a killed restore changed the MariaDB target"
    );
    for (source, dev) in [
        (format!("postgres/{}", pg.name), &pg_dev.name),
        (format!("mysql/{}", my.name), &my_dev.name),
    ] {
        replace(&source, dev, &[]).expect(0);
    }
    assert_eq!(pg_dev.dump(), pg.dump(), "--replace swaps in an exact copy");
    assert_eq!(my_dev.dump(), my.dump(), "--replace swaps in an exact copy");
    let left = pg.exec(&format!(
        "SELECT count(*) FROM pg_database WHERE datname LIKE '{}_offsite_%'",
        pg_dev.name
    ));
    assert_eq!(
        left.trim(),
        "0",
        "the killed run's work database was dropped"
    );
    let left = my.exec(&format!(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE '{}\\_offsite\\_%'",
        my_dev.name
    ));
    assert_eq!(
        left.trim(),
        "0",
        "the killed run's work databases were dropped"
    );
}

#[test]
fn restore_stdout_into_a_reader_that_stops_early_exits_0() {
    let pg = PgDb::new("headpipe");
    // Megabytes of SQL: far more than a pipe holds, so `head` closes it while restore still writes.
    pg.exec(
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 100000) g",
    );
    let s = Setup::new("headpipe-host");
    s.config(&format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]",
        pg.name
    ));
    s.offsite(&["push"]).expect(0);
    let run = s.sh(&format!(
        "set -o pipefail; {} -c config.yaml restore latest --db postgres/{} --stdout | head -c 1000 >/dev/null",
        crate::common::cli::bin().display(),
        pg.name
    ));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.stderr.to_lowercase().contains("error"),
        "nothing to complain about: {}",
        run.stderr
    );
}
