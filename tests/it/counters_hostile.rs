//! Database users write text that the dump tools copy verbatim (comments, names, function, trigger and
//! procedure bodies) and that looks like dump structure: a fake end marker, a fake COPY header, fake
//! INSERT lines and DELIMITER changes. Through the real pg_dump, mariadb-dump and `offsite push`,
//! such databases must push with exact row counts, and a cut dump must not pass for a complete one.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use crate::common::cli::Setup;
use crate::common::db::{MyDb, PgDb, MY_URL, PG_URL};

/// A stand-in for a dump tool that runs the real one (`$REAL`) and then does what `body` says;
/// `--version` goes to the real tool.
fn fake_tool(s: &Setup, real: &str, body: &str) -> String {
    let path = s.path(&format!("fake-{real}"));
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {real}")])
        .output()
        .expect("sh");
    let real_path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!real_path.is_empty(), "{real} is not on PATH");
    let script = format!(
        "#!/bin/bash\nREAL={real_path}\nif [ \"$1\" = --version ]; then exec $REAL --version; fi\n{body}\n"
    );
    std::fs::write(&path, script).expect("writing the fake tool");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

/// Cuts the real tool's output right after the first line that is exactly `line`, and exits 0.
fn cut_after_line(line: &str) -> String {
    format!("$REAL \"$@\" | awk '{{print}} $0 == \"{line}\" {{exit}}'\nexit 0")
}

/// The `databases` entry of the snapshot's manifest for `engine`, decrypted with stock gpg.
fn manifest_db(s: &Setup, engine: &str) -> serde_json::Value {
    let snaps = s.local_snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert!(snaps[0].1, "the snapshot is committed");
    let snap = format!("store/{}/{}", s.host, snaps[0].0);
    let out = s
        .sh(&format!(
            "gpg --batch --import keys/{}.cert.asc 2>/dev/null; gpg --batch --decrypt {snap}/manifest.json.pgp",
            s.host
        ))
        .expect(0);
    let m: serde_json::Value = serde_json::from_str(&out.stdout).expect("manifest is JSON");
    m["databases"]
        .as_array()
        .expect("databases")
        .iter()
        .find(|d| d["engine"] == engine)
        .cloned()
        .unwrap_or_else(|| panic!("no {engine} entry in {m}"))
}

fn tables(db: &serde_json::Value) -> BTreeMap<String, u64> {
    db["tables"]
        .as_object()
        .expect("tables")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().expect("a row count")))
        .collect()
}

fn push_ok(s: &Setup) {
    let run = s.offsite(&["push"]);
    assert!(
        run.code == 0 || run.code == 3,
        "push exit {}\n--- stderr\n{}",
        run.code,
        run.stderr
    );
}

const PG_HOSTILE: &str = r#"
CREATE TABLE public.t (id int PRIMARY KEY, note text);
INSERT INTO public.t SELECT g, 'row ' || g FROM generate_series(1, 1000) g;
INSERT INTO public.t VALUES (1001, E'\\.'), (1002, 'COPY public.t (id) FROM stdin;'),
  (1003, E'a\nb\\.\n\\.'), (1004, '-- PostgreSQL database dump complete'), (1005, E'tab\there'),
  (1006, 'it''s'), (1007, E'\n\\.\n-- PostgreSQL database dump complete\n');
CREATE TABLE public.u (id int);
INSERT INTO public.u SELECT generate_series(1, 37);
CREATE TABLE public.empty_table (x int);
CREATE TABLE public."nl
-- PostgreSQL database dump complete
COPY x" ("a
b" int);
INSERT INTO public."nl
-- PostgreSQL database dump complete
COPY x" VALUES (1), (2), (3);
COMMENT ON TABLE public.t IS E'x;\n-- PostgreSQL database dump complete\n';
COMMENT ON INDEX public.t_pkey IS E'x;\nCOPY public.t (id) FROM stdin;\n';
COMMENT ON COLUMN public.u.id IS E'it\'s;\nCOPY public.u (id) FROM stdin;\n1\n2\n\\.\n';
CREATE FUNCTION public.f() RETURNS text LANGUAGE plpgsql AS $body$
BEGIN
  -- $$ is not the end, nor is $_$
  RETURN 'x;
COPY public.t (id) FROM stdin;
\.
-- PostgreSQL database dump complete';
END $body$;
CREATE FUNCTION public.h() RETURNS integer LANGUAGE sql
  BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END;
CREATE VIEW public.v AS SELECT 'a;
COPY public.t (id) FROM stdin;
b'::text AS s;
"#;

#[test]
fn postgres_text_that_looks_like_dump_structure_is_counted_as_data() {
    let pg = PgDb::new("hostile");
    let s = Setup::new("pg-hostile-host");
    pg.load(&s.write("hostile.sql", PG_HOSTILE));
    s.config(&format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]\n",
        pg.name
    ));
    push_ok(&s);
    let db = manifest_db(&s, "postgres");
    assert_eq!(db["end_marker_seen"], true);
    let got = tables(&db);
    // (PostgreSQL cuts names at 63 bytes: this one fits.)
    let odd = "public.\"nl\n-- PostgreSQL database dump complete\nCOPY x\"";
    let want: BTreeMap<String, u64> = [
        ("public.t", 1007),
        ("public.u", 37),
        ("public.empty_table", 0),
        (odd, 3),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, want);
    // The keys are valid SQL as they are, and the server agrees with every count.
    for (table, rows) in &got {
        let n: u64 = pg
            .exec(&format!("SELECT count(*) FROM {table}"))
            .trim()
            .parse()
            .expect("a count");
        assert_eq!(n, *rows, "rows of {table}");
    }
}

#[test]
fn a_cut_pg_dump_whose_last_line_is_a_marker_inside_a_comment_is_rejected() {
    let pg = PgDb::new("hostile_cut");
    let s = Setup::new("pg-cut-host");
    pg.load(&s.write("hostile.sql", PG_HOSTILE));
    // pg_dump "exits 0" with its output ending on the marker text inside the table's name or
    // comment: without a lexer, it looks complete.
    let fake = fake_tool(
        &s,
        "pg_dump",
        &cut_after_line("-- PostgreSQL database dump complete"),
    );
    s.config(&format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}], pg_dump: '{fake}' }}]\n",
        pg.name
    ));
    let cut = s
        .sh(&format!(
            "{fake} -h 127.0.0.1 -U postgres {} | tail -c 300",
            pg.name
        ))
        .expect(0);
    assert!(
        cut.stdout
            .ends_with("\n-- PostgreSQL database dump complete\n")
            && !cut.stdout.contains("\\unrestrict"),
        "the fake cuts after the first marker-looking line: {}",
        cut.stdout
    );
    let run = s.offsite(&["push"]).expect(1);
    assert!(run.stderr.contains("end-of-dump marker"), "{}", run.stderr);
    assert!(s.local_snapshots().iter().all(|(_, complete)| !complete));
}

const MY_HOSTILE: &str = r#"
CREATE TABLE audit (id int, at bigint) ENGINE=InnoDB;
CREATE TABLE t (id int PRIMARY KEY, note text, g int AS (id * 2) VIRTUAL) ENGINE=InnoDB;
INSERT INTO t (id, note) VALUES (1, 'a\'),(\nb;'), (2, 'INSERT INTO `audit` VALUES (1,2);'),
  (3, '-- Dump completed'), (4, 'x\n-- Dumping data for table `audit`\nINSERT INTO `audit` VALUES (1,2);\n'),
  (5, '"'), (6, '`'), (7, '\\'), (8, '\n\n-- Dump completed\n');
INSERT INTO t (id, note) SELECT seq, CONCAT('row (', seq, ')') FROM seq_100_to_599;
CREATE TABLE `we``ird` (x int) ENGINE=InnoDB;
INSERT INTO `we``ird` VALUES (1),(2);
CREATE TABLE empty_t (x int) ENGINE=InnoDB;
CREATE TABLE `nl
-- Dump completed
x` (c int) ENGINE=InnoDB;
INSERT INTO `nl
-- Dump completed
x` VALUES (1),(2),(3);
DELIMITER ;;
CREATE PROCEDURE p()
BEGIN
INSERT INTO `audit` VALUES (1, NOW()+0),(2,3);
INSERT INTO `audit` VALUES (7, "it's");
# don't
SELECT 'it''s';
SELECT ';;
DELIMITER ;

-- Dump completed
UNLOCK TABLES;
--
-- Dumping data for table `audit`
--
INSERT INTO `audit` VALUES (5,5);
';
END;;
CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW
BEGIN
INSERT INTO `audit` VALUES (NEW.id, 0),(3,4);
SET @x = 'stray '' quote';
END;;
DELIMITER ;
SET sql_mode = 'NO_BACKSLASH_ESCAPES,ANSI_QUOTES';
DELIMITER ;;
CREATE PROCEDURE p2() BEGIN SELECT 'a\'; SELECT ';;
DELIMITER ;
--
-- Dumping data for table `audit`
--
INSERT INTO `audit` VALUES (9,9);

-- Dump completed
'; END;;
DELIMITER ;
SET sql_mode = DEFAULT;
"#;

#[test]
fn mariadb_routine_bodies_and_names_that_look_like_dump_structure() {
    let my = MyDb::new("hostile");
    let s = Setup::new("my-hostile-host");
    my.load(&s.write("hostile.sql", MY_HOSTILE));
    s.config(&format!(
        "mysql: [{{ url: '{MY_URL}', databases: [{}] }}]\n",
        my.name
    ));
    push_ok(&s);
    let db = manifest_db(&s, "mysql");
    assert_eq!(db["end_marker_seen"], true);
    let got = tables(&db);
    let want: BTreeMap<String, u64> = [
        ("audit", 0),
        ("t", 508),
        ("we`ird", 2),
        ("empty_t", 0),
        ("nl\n-- Dump completed\nx", 3),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, want);
    // Every base table is listed, and the server agrees with every count.
    let listed = my.exec(&format!(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{}' AND table_type = 'BASE TABLE'",
        my.name
    ));
    assert_eq!(listed.trim(), got.len().to_string());
    for (table, rows) in &got {
        let n: u64 = my
            .exec(&format!(
                "SELECT count(*) FROM `{}`",
                table.replace('`', "``")
            ))
            .trim()
            .parse()
            .expect("a count");
        assert_eq!(n, *rows, "rows of {table:?}");
    }
}

#[test]
fn a_cut_mariadb_dump_whose_last_line_is_a_marker_inside_a_name_or_body_is_rejected() {
    // The first line that reads "-- Dump completed" is inside a table name in one database and
    // inside a NO_BACKSLASH_ESCAPES procedure body, after a blank line and DELIMITER ;, in another.
    let named = MyDb::new("hostile_cut_name");
    named.exec("CREATE TABLE `nl\n-- Dump completed\nx` (c int); INSERT INTO `nl\n-- Dump completed\nx` VALUES (1)");
    let body = MyDb::new("hostile_cut_body");
    let s = Setup::new("my-cut-host");
    body.load(&s.write(
        "body.sql",
        "CREATE TABLE a (x int);\nSET sql_mode = 'NO_BACKSLASH_ESCAPES';\nDELIMITER ;;\nCREATE PROCEDURE p2() BEGIN SELECT 'a\\'; SELECT ';;\nDELIMITER ;\n\n-- Dump completed\n'; END;;\nDELIMITER ;\n",
    ));
    let fake = fake_tool(&s, "mariadb-dump", &cut_after_line("-- Dump completed"));
    for db in [&named, &body] {
        s.config(&format!(
            "mysql: [{{ url: '{MY_URL}', databases: [{}], dump_command: '{fake}' }}]\n",
            db.name
        ));
        let cut = s
            .sh(&format!(
                "{fake} -h 127.0.0.1 -uroot --routines {} | tail -c 200",
                db.name
            ))
            .expect(0);
        assert!(
            cut.stdout.ends_with("\n-- Dump completed\n"),
            "{}",
            cut.stdout
        );
        let run = s.offsite(&["push"]).expect(1);
        assert!(run.stderr.contains("end-of-dump marker"), "{}", run.stderr);
        assert!(s.local_snapshots().iter().all(|(_, complete)| !complete));
    }
}
