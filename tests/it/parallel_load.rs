//! Loading a dump over several connections (`office.restore_jobs`, `restore --jobs`) gives the
//! database a single stream gives, and a failure on one connection fails the whole restore.

use crate::common::cli::Setup;
use crate::common::db::{fixture, MyDb, PgDb, MY_RESTORE_URL, MY_URL, PG_RESTORE_URL, PG_URL};

fn restore(
    s: &Setup,
    source: &str,
    into: &str,
    jobs: &str,
    tmp: &std::path::Path,
) -> (i32, String) {
    let run = s.offsite_env(
        &[
            "restore", "latest", "--db", source, "--into", into, "--jobs", jobs,
        ],
        &[("TMPDIR", tmp.to_str().expect("utf-8 path"))],
    );
    (run.code, run.stderr)
}

fn spool_leftovers(tmp: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("restore-spool-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn postgres_parallel_and_single_stream_restores_are_the_same_database() {
    let pg = PgDb::new("par");
    pg.load(&fixture("postgres/shop.sql"));
    pg.load(&fixture("postgres/parallel.sql"));
    // More than 32 MiB of COPY data: loaded in parts on several connections at once.
    pg.exec(
        "CREATE TABLE public.big_copy AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS v \
         FROM generate_series(1, 600000) g; ALTER TABLE public.big_copy ADD PRIMARY KEY (id)",
    );
    let s = Setup::new("par-host");
    s.config(&format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]\n",
        pg.name
    ));
    s.offsite(&["push"]).expect(0);
    let tmp = s.path("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let source = format!("postgres/{}", pg.name);
    let one = PgDb::named(&format!("{}_one", pg.name));
    let four = PgDb::named(&format!("{}_four", pg.name));
    let (code, err) = restore(&s, &source, &one.name, "1", &tmp);
    assert_eq!(code, 0, "{err}");
    let (code, err) = restore(&s, &source, &four.name, "4", &tmp);
    assert_eq!(code, 0, "{err}");
    let want = pg.dump();
    assert_eq!(one.dump(), want, "a single stream restores the source");
    // The parts of big_copy land in the heap in another order: the same rows, in other lines.
    let lines = |dump: String| {
        let mut l: Vec<String> = dump.lines().map(str::to_string).collect();
        l.sort_unstable();
        l
    };
    assert!(
        lines(four.dump()) == lines(want.clone()),
        "four connections restore the same schema, rows, sequences and large objects"
    );
    assert_eq!(
        four.exec("SELECT count(*), sum(id) FROM public.big_copy")
            .trim(),
        "600000|180000300000"
    );
    // The trigger was created after the data: it did not add audit rows during the load.
    assert_eq!(
        four.exec("SELECT count(*) FROM public.orders_audit").trim(),
        "3000"
    );
    assert_eq!(
        four.exec("SELECT count(*) FROM pg_largeobject_metadata")
            .trim(),
        "2"
    );
    assert_eq!(
        four.exec("SELECT nextval('public.shared_ids') > 1000")
            .trim(),
        "t",
        "sequences continue where the source's stood"
    );
    assert!(spool_leftovers(&tmp).is_empty(), "the spool is removed");
}

#[test]
fn postgres_a_failure_on_one_connection_fails_the_restore_and_leaves_nothing() {
    let pg = PgDb::new("parfail");
    pg.load(&fixture("postgres/parallel.sql"));
    pg.exec("CREATE TABLE public.bad (id integer PRIMARY KEY, v text); INSERT INTO public.bad SELECT g, 'x' FROM generate_series(1, 100) g");
    let s = Setup::new("parfail-host");
    // A dump with row 1 of public.bad twice: its primary key cannot be built, while other
    // connections load other tables.
    let tool = s.path("dup-pg_dump");
    std::fs::write(
        &tool,
        "#!/bin/bash\nset -o pipefail\nif [ \"$1\" = --version ]; then exec pg_dump --version; fi\n\
         pg_dump \"$@\" | awk 'dup == 1 { print; dup = 2 } index($0, \"COPY public.bad \") == 1 { dup = 1 } { print }'\n",
    )
    .expect("writing the dump tool");
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    s.config(&format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}], pg_dump: '{}' }}]\n",
        pg.name,
        tool.display()
    ));
    s.offsite(&["push"]).expect(0);
    let tmp = s.path("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let into = PgDb::named(&format!("{}_into", pg.name));
    let (code, err) = restore(&s, &format!("postgres/{}", pg.name), &into.name, "3", &tmp);
    assert_ne!(code, 0, "the restore fails");
    assert!(
        err.contains("bad_pkey") && err.contains("could not create unique index"),
        "the error names the statement that failed: {err}"
    );
    assert!(!into.exists(), "the half-restored database is dropped");
    assert!(spool_leftovers(&tmp).is_empty(), "the spool is removed");
}

/// The MariaDB fixture's 50 MB row needs a server that takes it (the clients offsite runs ask for
/// 1 GB packets). A fresh server allows 16 MB; raised before each test's first load, since either
/// may run first.
fn allow_big_rows(my: &MyDb) {
    my.exec("SET GLOBAL max_allowed_packet = GREATEST(@@GLOBAL.max_allowed_packet, 67108864)");
}

#[test]
fn mariadb_parallel_and_single_stream_restores_are_the_same_database() {
    let my = MyDb::new("par");
    allow_big_rows(&my);
    my.load(&fixture("mysql/shop.sql"));
    my.load(&fixture("mysql/parallel.sql"));
    // More than 32 MiB of INSERTs, with a trigger: loaded in parts on several connections at
    // once, the trigger after all of them.
    my.exec(
        "CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(100)) ENGINE = InnoDB; \
         INSERT INTO big SELECT seq, concat(md5(seq), md5(seq + 1)) FROM seq_1_to_500000; \
         CREATE TABLE big_audit (id INT); \
         CREATE TRIGGER big_ins AFTER INSERT ON big FOR EACH ROW INSERT INTO big_audit VALUES (NEW.id)",
    );
    let s = Setup::new("mypar-host");
    s.config(&format!(
        "mysql: [{{ url: '{MY_URL}', databases: [{}] }}]\n",
        my.name
    ));
    // The fixture's MyISAM table makes push warn: committed, exit code 3.
    s.offsite(&["push"]).expect(3);
    let tmp = s.path("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let source = format!("mysql/{}", my.name);
    let one = MyDb::named(&format!("{}_one", my.name));
    let four = MyDb::named(&format!("{}_four", my.name));
    let (code, err) = restore(&s, &source, &one.name, "1", &tmp);
    assert_eq!(code, 0, "{err}");
    let (code, err) = restore(&s, &source, &four.name, "4", &tmp);
    assert_eq!(code, 0, "{err}");
    let want = my.dump();
    assert_eq!(one.dump(), want, "a single stream restores the source");
    assert_eq!(
        four.dump(),
        want,
        "four connections restore the same tables, rows, triggers, views, routines and events"
    );
    assert_eq!(
        four.exec("SELECT count(*) FROM sales_audit").trim(),
        "3000",
        "the trigger was created after the data"
    );
    assert_eq!(
        four.exec("SELECT length(body) FROM huge_row").trim(),
        "52428800"
    );
    assert_eq!(
        four.exec("SELECT count(*), sum(id) FROM big").trim(),
        "500000\t125000250000"
    );
    assert_eq!(
        four.exec("SELECT count(*) FROM big_audit").trim(),
        "0",
        "big's trigger was created after all of its parts"
    );
    assert!(spool_leftovers(&tmp).is_empty(), "the spool is removed");
}

#[test]
fn mariadb_a_failure_on_one_connection_fails_the_restore_and_leaves_nothing() {
    let my = MyDb::new("parfail");
    allow_big_rows(&my);
    my.load(&fixture("mysql/parallel.sql"));
    // More than 32 MiB: bad's data loads in parts, on several connections at once.
    my.exec("CREATE TABLE bad (id INT PRIMARY KEY, v TEXT) ENGINE = InnoDB; INSERT INTO bad SELECT seq, repeat('x', 80) FROM seq_1_to_400000");
    let s = Setup::new("myparfail-host");
    // A dump whose data for `bad` has row 1 again near its end, in another part than the first
    // row 1: the primary key refuses it while other connections load other parts and tables.
    let tool = s.path("dup-mariadb-dump");
    std::fs::write(
        &tool,
        "#!/bin/bash\nset -o pipefail\nif [ \"$1\" = --version ]; then exec mariadb-dump --version; fi\n\
         mariadb-dump \"$@\" | sed \"s/^(399999,'x/(1,'x/\"\n",
    )
    .expect("writing the dump tool");
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    s.config(&format!(
        "mysql: [{{ url: '{MY_URL}', databases: [{}], dump_command: '{}' }}]\n",
        my.name,
        tool.display()
    ));
    s.offsite(&["push"]).expect(0);
    let tmp = s.path("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let into = MyDb::named(&format!("{}_into", my.name));
    let (code, err) = restore(&s, &format!("mysql/{}", my.name), &into.name, "3", &tmp);
    assert_ne!(code, 0, "the restore fails");
    assert!(
        err.contains("while loading the data of bad (part ") && err.contains("Duplicate entry '1'"),
        "the error names the part and what the server said: {err}"
    );
    assert!(!into.exists(), "the half-restored database is dropped");
    assert!(spool_leftovers(&tmp).is_empty(), "the spool is removed");
}

/// verify holds every table to the rows its dump holds, counted by the office itself, on the
/// awkward fixtures too: an inheritance parent's rows are its own (its COPY block leaves its
/// children's out), partitions count as pg_dump copies them, and nothing an honest dump loads
/// makes verify fail.
#[test]
fn the_awkward_fixtures_verify_with_every_table_counted_as_its_dump_holds_it() {
    let pg = PgDb::new("awkverify");
    pg.load(&fixture("postgres/parallel.sql"));
    let my = MyDb::new("awkverify");
    allow_big_rows(&my);
    my.load(&fixture("mysql/parallel.sql"));
    let s = Setup::new("awk");
    s.config(&format!(
        "  offsite_dir: offsite\n  scratch: {{ postgres: '{PG_RESTORE_URL}', mysql: '{MY_RESTORE_URL}' }}\n  restore_jobs: 3\npostgres: [{{ url: '{PG_URL}', databases: [{pg}] }}]\nmysql: [{{ url: '{MY_URL}', databases: [{my}] }}]",
        pg = pg.name,
        my = my.name,
    ));
    let pushed = s.offsite(&["push"]);
    assert!(matches!(pushed.code, 0 | 3), "push: {}", pushed.stderr);
    s.offsite(&["pull"]).expect(0);
    let run = s.offsite(&["--json", "verify"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("verify --json");
    let databases = v[0]["Ok"]["databases"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(databases.len(), 2, "{v}");
    for db in &databases {
        let tables = db["tables"].as_object().cloned().unwrap_or_default();
        assert!(tables.len() > 10, "{db}");
        for (name, t) in &tables {
            assert!(
                t["in_dump"].is_u64()
                    && t["in_dump"] == t["restored"]
                    && t["in_dump"] == t["expected"],
                "{name}: {t}"
            );
        }
    }
    // The parent's own two rows; its child holds the other two.
    let pg_tables = &databases
        .iter()
        .find(|d| d["engine"] == "postgres")
        .unwrap_or_else(|| panic!("no postgres result: {v}"))["tables"];
    assert_eq!(pg_tables["public.animals"]["restored"], 2, "{pg_tables}");
    assert_eq!(pg_tables["public.dogs"]["restored"], 2, "{pg_tables}");
}
