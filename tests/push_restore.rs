//! Round trips through the real binary: push fixtures with awkward content, restore them, compare the
//! data; and read every object back with stock gpg, zstd, gunzip, psql and mariadb.

mod common;

use common::cli::Setup;
use common::db::{fixture, MyDb, PgDb, MY_URL, PG_URL};

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
