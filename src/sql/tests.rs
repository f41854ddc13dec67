use std::collections::BTreeMap;

use anyhow::Result;

use super::*;

fn pieces() -> [usize; 8] {
    [1, 2, 3, 5, 7, 11, 64, 1 << 20]
}

fn pg(dump: &[u8], piece: usize) -> (PgCounter, Result<()>) {
    let mut c = PgCounter::default();
    for ch in dump.chunks(piece) {
        c.feed(ch);
    }
    let r = c.finish();
    (c, r)
}

fn my(dump: &[u8], piece: usize) -> (MysqlCounter, Result<()>) {
    let mut c = MysqlCounter::new();
    for ch in dump.chunks(piece) {
        c.feed(ch);
    }
    let r = c.finish();
    (c, r)
}

/// Every chunking gives the same tables and marker; returns them.
fn pg_all(dump: &[u8]) -> (BTreeMap<String, u64>, bool, bool) {
    let (c, r) = pg(dump, 1 << 20);
    for piece in pieces() {
        let (c2, r2) = pg(dump, piece);
        assert_eq!(c2.tables, c.tables, "piece {piece}");
        assert_eq!(c2.end_marker, c.end_marker, "piece {piece}");
        assert_eq!(r2.is_ok(), r.is_ok(), "piece {piece}");
    }
    (c.tables, c.end_marker, r.is_ok())
}

fn my_all(dump: &[u8]) -> (BTreeMap<String, u64>, bool, bool) {
    let (c, r) = my(dump, 1 << 20);
    for piece in pieces() {
        let (c2, r2) = my(dump, piece);
        assert_eq!(c2.tables, c.tables, "piece {piece}");
        assert_eq!(c2.end_marker, c.end_marker, "piece {piece}");
        assert_eq!(r2.is_ok(), r.is_ok(), "piece {piece}");
    }
    (c.tables, c.end_marker, r.is_ok())
}

fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

const PG_HEAD: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\nSET statement_timeout = 0;\nSET standard_conforming_strings = on;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n";
const PG_FOOT: &str = "\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc123\n\n";

fn pg_dump(body: &str) -> Vec<u8> {
    format!("{PG_HEAD}{body}{PG_FOOT}").into_bytes()
}

#[test]
fn pg_counts_rows_whatever_the_chunking() {
    let dump = pg_dump("COPY public.orders (id, note) FROM stdin;\n1\ta\\tb\n2\t\\N\n\\.\n\nCOPY \"Odd Schema\".\"we ird\" (x) FROM stdin;\n\\.\nCOPY public.orders (id, note) FROM stdin;\n3\tc\n\\.\n");
    let (t, marker, ok) = pg_all(&dump);
    assert_eq!(
        t,
        map(&[("public.orders", 3), ("\"Odd Schema\".\"we ird\"", 0)])
    );
    assert!(marker && ok);
    let (c, _) = pg(&dump[..dump.len() - 40], 7);
    assert!(!c.end_marker, "a truncated dump has no marker");
}

#[test]
fn pg_marker_inside_a_comment_literal_is_not_the_end() {
    // Attack 1: the marker text in a table comment, and the dump cut right after it.
    let full = pg_dump("COMMENT ON TABLE public.t IS 'x\n-- PostgreSQL database dump complete\n';\n\nCOPY public.t (id) FROM stdin;\n1\n\\.\n");
    let cut = b"SET standard_conforming_strings = on;\nCOMMENT ON TABLE public.t IS 'x\n-- PostgreSQL database dump complete\n";
    let (_, marker, _) = pg_all(cut);
    assert!(!marker, "the marker inside a literal counts for nothing");
    let (t, marker, ok) = pg_all(&full);
    assert!(marker && ok);
    assert_eq!(t, map(&[("public.t", 1)]));
    // E'' with an escaped quote before the marker line.
    let cut = b"COMMENT ON TABLE t IS E'it\\'s;\n-- PostgreSQL database dump complete\n";
    assert!(!pg_all(cut).1);
    let d = pg_dump("COMMENT ON TABLE t IS E'a\\';\nCOPY public.t (id) FROM stdin;\n';\n");
    let (t, marker, ok) = pg_all(&d);
    assert!(marker && ok && t.is_empty(), "{t:?}");
    // Standard strings have no backslash escapes: 'a\' ends at the quote after the backslash.
    let d = pg_dump("COMMENT ON TABLE t IS 'a\\';\nCOPY public.t (id) FROM stdin;\n1\n\\.\n");
    assert_eq!(pg_all(&d).0, map(&[("public.t", 1)]));
}

#[test]
fn pg_copy_line_inside_a_literal_does_not_start_copy_data() {
    // Attack 2: a fake COPY header in an index comment, before real data.
    let d = pg_dump("COMMENT ON INDEX public.t_pkey IS 'x\nCOPY public.t (id) FROM stdin;\n';\n\nCOPY public.t (id) FROM stdin;\n1\n2\n\\.\n\nCOPY public.u (id) FROM stdin;\n7\n\\.\n");
    let (t, marker, ok) = pg_all(&d);
    assert!(marker && ok, "the real marker is seen");
    // Attack 3: rows land under their own table.
    assert_eq!(t, map(&[("public.t", 2), ("public.u", 1)]));
}

#[test]
fn pg_fake_structure_in_every_kind_of_literal() {
    // What an attacker writes: end the statement, a COPY block, a fake end marker.
    let payload =
        ";\nCOPY public.t (id) FROM stdin;\n1\n\\.\n;\n-- PostgreSQL database dump complete\n";
    let wrappers = [
        ("COMMENT ON TABLE t IS '", "';"),
        ("COMMENT ON TABLE t IS 'it''s", "';"),
        ("COMMENT ON TABLE t IS E'\\'", "';"),
        ("COMMENT ON TABLE t IS E'\\\\'' ", "';"),
        ("SELECT E'a'\n'\\'", "';"),
        ("CREATE TABLE public.\"a\"\"", "\" (x int);"),
        ("CREATE FUNCTION f() RETURNS int AS $$", "$$ LANGUAGE sql;"),
        ("CREATE FUNCTION f() RETURNS int AS $_$ $$ $a$", "$_$ LANGUAGE sql;"),
        ("SELECT 1 /* outer /* nested */", "*/;"),
        (
            "CREATE FUNCTION h() RETURNS int LANGUAGE sql BEGIN ATOMIC\n SELECT CASE WHEN true THEN 1 END",
            ";\nEND;",
        ),
        (
            "SET standard_conforming_strings = off;\nCOMMENT ON TABLE t IS 'a\\'",
            "';\nSET standard_conforming_strings = on;",
        ),
    ];
    for (open, close) in wrappers {
        let d = pg_dump(&format!("{open}{payload}{close}\n"));
        let (t, marker, ok) = pg_all(&d);
        assert!(marker && ok, "{open}");
        assert!(t.is_empty(), "{open}: {t:?}");
        let cut = format!("{PG_HEAD}{open}{payload}");
        let (_, marker, _) = pg_all(cut.as_bytes());
        assert!(!marker, "{open}: cut after the fake marker");
    }
}

#[test]
fn pg_copy_header_must_start_a_line_between_statements() {
    // A COPY header that continues an unfinished statement is not one.
    let d = pg_dump("SELECT 1 +\nCOPY public.t (id) FROM stdin;\n");
    let (t, _, _) = pg_all(&d);
    assert!(t.is_empty());
    // Inside a BEGIN ATOMIC body, psql does not end the statement at `;`.
    let d = pg_dump("CREATE FUNCTION public.h() RETURNS integer\n    LANGUAGE sql\n    BEGIN ATOMIC\n SELECT 1;\n SELECT CASE WHEN true THEN 2 END;\nEND;\nCOPY public.t (id) FROM stdin;\n5\n\\.\n");
    let (t, marker, ok) = pg_all(&d);
    assert!(marker && ok);
    assert_eq!(t, map(&[("public.t", 1)]));
}

#[test]
fn pg_copy_data_is_not_sql() {
    // `\.` and a COPY line inside data values (escaped by pg_dump), quotes that open nothing.
    let d = pg_dump("COPY public.t (id, note) FROM stdin;\n1\t\\\\.\n2\tCOPY public.t (id) FROM stdin;\n3\t-- PostgreSQL database dump complete\n4\tit's a 'quote $$ /*\n\\.x\n\\\n\\.\nCOPY public.u (id) FROM stdin;\n1\n\\.\n");
    let (t, marker, ok) = pg_all(&d);
    assert!(marker && ok);
    assert_eq!(t, map(&[("public.t", 6), ("public.u", 1)]));
}

#[test]
fn pg_literals_and_comments_of_every_kind() {
    let d = pg_dump(concat!(
        "COMMENT ON TABLE t IS 'it''s'; COMMENT ON TABLE t IS E'\\\\'; COMMENT ON TABLE t IS E'\\'';\n",
        "COMMENT ON TABLE t IS E'\\\\'''; COMMENT ON TABLE t IS '\\';\n",
        "SELECT E'a''b\\'c';\n",
        "SELECT E'first'\n  'continues \\' still';\n",
        "SELECT U&'d\\0061t'; SELECT B'01'; SELECT x'1F'; SELECT e'\\x41';\n",
        "SELECT \"we \"\"ird\"; SELECT $1, a$b$c, $$x$$, $a1$ $a $a1$;\n",
        "CREATE FUNCTION g() RETURNS text LANGUAGE sql AS $_$ SELECT 'a$b$c' || $q$\n$$\n$_ $__$\n$q$ $_$;\n",
        "SELECT 1 -- trailing ' comment\n; SELECT 2 /* ' */;\n",
        "SELECT 3 /* a /* b */ ' still comment */;\n",
        "COPY public.t (id) FROM stdin;\n1\n\\.\n",
    ));
    let (t, marker, ok) = pg_all(&d);
    assert!(ok);
    assert!(marker, "the lexer is back in step at the end");
    assert_eq!(t, map(&[("public.t", 1)]));
}

#[test]
fn pg_dollar_tags_of_any_length() {
    // pg_dump grows the tag until the body does not hold it: a tag longer than any buffer.
    let tag = "_".repeat(100_000);
    let body = format!(
        "COPY public.t (id) FROM stdin;\n$_{}$ $$ $_$",
        &tag[..50_000]
    );
    let d = pg_dump(&format!(
        "CREATE FUNCTION f() RETURNS text AS ${tag}$\n{body}\n${tag}$ LANGUAGE sql;\nCOPY public.t (id) FROM stdin;\n1\n\\.\n"
    ));
    let (t, marker, ok) = pg_all(&d);
    assert!(marker && ok);
    assert_eq!(t, map(&[("public.t", 1)]));
}

#[test]
fn pg_marker_must_be_the_last_meaningful_line() {
    let mut d = pg_dump("");
    assert!(pg_all(&d).1);
    d.extend_from_slice(b"-- another comment\n\n\\unrestrict other\n");
    assert!(pg_all(&d).1, "comments and \\unrestrict may follow");
    let mut e = d.clone();
    e.extend_from_slice(b"SELECT 1;\n");
    assert!(!pg_all(&e).1, "a statement after the marker");
    let mut e = d.clone();
    e.extend_from_slice(b"\\connect other\n");
    assert!(!pg_all(&e).1, "another meta-command after the marker");
    let mut e = d.clone();
    e.extend_from_slice(b"/* x */\n");
    assert!(!pg_all(&e).1);
    // The marker must be the whole comment line, at its start, between statements.
    assert!(!pg_all(b"  -- PostgreSQL database dump complete\n").1);
    assert!(!pg_all(b"-- PostgreSQL database dump completed\n").1);
    assert!(!pg_all(b"SELECT\n-- PostgreSQL database dump complete\n").1);
    assert!(
        !pg_all(b"-- PostgreSQL database dump complete").1,
        "no newline"
    );
}

#[test]
fn pg_dump_ending_in_copy_data_is_an_error() {
    let d = b"COPY public.t (id) FROM stdin;\n1\n2\n";
    let (_, marker, ok) = pg_all(d);
    assert!(!marker && !ok);
    // The hostile comment case: the fake header would swallow the real marker.
    let d = b"COPY public.t (id) FROM stdin;\n1\n-- PostgreSQL database dump complete\n";
    let (_, marker, ok) = pg_all(d);
    assert!(!marker && !ok);
}

#[test]
fn pg_names_with_newlines_and_quotes() {
    let d = pg_dump("COPY public.\"nl\n-- PostgreSQL database dump complete\nCOPY x\" (\"a\nb\") FROM stdin;\n1\n2\n\\.\nCOPY \"S\".\"t\"\"q\" (x) FROM stdin;\n\\.\n");
    let (t, marker, ok) = pg_all(&d);
    assert!(marker && ok);
    assert_eq!(
        t,
        map(&[
            (
                "public.\"nl\n-- PostgreSQL database dump complete\nCOPY x\"",
                2
            ),
            ("\"S\".\"t\"\"q\"", 0),
        ])
    );
}

#[test]
fn pg_standard_conforming_strings_off() {
    // Then psql reads '...' with backslash escapes.
    let d = b"SET standard_conforming_strings = off;\nCOMMENT ON TABLE t IS 'a\\'\nCOPY public.t (id) FROM stdin;\n';\nCOPY public.t (id) FROM stdin;\n1\n\\.\n\n-- PostgreSQL database dump complete\n";
    let (t, marker, ok) = pg_all(d);
    assert!(marker && ok);
    assert_eq!(t, map(&[("public.t", 1)]));
}

#[test]
fn pg_unknown_copy_header_shapes_are_errors() {
    let (_, _, ok) = pg_all(b"COPY public.\"\" (x) FROM stdin;\n\\.\n");
    assert!(!ok, "empty quoted name");
    let (_, _, ok) = pg_all(b"SELECT 1; COPY public.t (x) FROM stdin;\n\\.\n");
    assert!(!ok, "not at a line start");
    // The longest name pg_dump can write (two 63-byte identifiers, every byte a doubled quote)
    // is counted; one byte more is not a name PostgreSQL has.
    let part = |n: usize| format!("\"{}\"", "\"\"".repeat(n));
    let longest = format!("COPY {}.{} (x) FROM stdin;\n\\.\n", part(63), part(63));
    let (tables, _, ok) = pg_all(longest.as_bytes());
    assert!(ok && tables.len() == 1, "{tables:?}");
    let longer = format!("COPY {}.{} (x) FROM stdin;\n\\.\n", part(63), part(64));
    let (_, _, ok) = pg_all(longer.as_bytes());
    assert!(!ok, "a name longer than PostgreSQL allows");
}

// ---- MySQL ----------------------------------------------------------------------------------

const MY_HEAD: &str = "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n--\n-- Host: 127.0.0.1    Database: shop\n-- ------------------------------------------------------\n-- Server version\t10.11.19-MariaDB\n\n/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n/*!40101 SET NAMES utf8mb4 */;\n/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\n\n";
const MY_FOOT: &str =
    "/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;\n/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;\n\n-- Dump completed\n";

fn my_dump(body: &str) -> Vec<u8> {
    format!("{MY_HEAD}{body}{MY_FOOT}").into_bytes()
}

fn section(table: &str, inserts: &str) -> String {
    format!("--\n-- Table structure for table `{table}`\n--\n\nDROP TABLE IF EXISTS `{table}`;\nCREATE TABLE `{table}` (\n  `id` int(11) DEFAULT NULL\n) ENGINE=InnoDB;\n\n--\n-- Dumping data for table `{table}`\n--\n\nLOCK TABLES `{table}` WRITE;\n/*!40000 ALTER TABLE `{table}` DISABLE KEYS */;\n{inserts}/*!40000 ALTER TABLE `{table}` ENABLE KEYS */;\nUNLOCK TABLES;\n\n")
}

#[test]
fn mysql_counts_tuples_not_parens_in_strings() {
    let body = [
        section("t", "INSERT INTO `t` VALUES (1,'a(b'),(2,'it\\'s (x'),(3,NULL);\nINSERT INTO `t` VALUES (4,'');\n"),
        section("m", "INSERT INTO `m` VALUES\n(1,'x;y'),\n(2,'(');\n"),
        section("we``ird name", "INSERT INTO `we``ird name` (`a`, `b)`) VALUES (1,0x00FF),(2,'\\\\');\n"),
        section("quotes", "INSERT INTO `quotes` VALUES (1,'\\'),(\\''),(2,';'),(3,'\\\\'),(4,'\"'),(5,'`'),(6,'-- x'),(7,'/* y');\n"),
    ]
    .concat();
    let (t, marker, ok) = my_all(&my_dump(&body));
    assert!(marker && ok);
    assert_eq!(
        t,
        map(&[("t", 4), ("m", 2), ("we`ird name", 2), ("quotes", 7)])
    );
}

#[test]
fn mysql_empty_tables_are_listed_with_zero_rows() {
    let body = [
        section("empty", ""),
        section("one", "INSERT INTO `one` VALUES (1);\n"),
    ]
    .concat();
    let (t, marker, ok) = my_all(&my_dump(&body));
    assert!(marker && ok);
    assert_eq!(t, map(&[("empty", 0), ("one", 1)]));
}

#[test]
fn mysql_inserts_in_routines_and_triggers_are_not_rows() {
    // Attack 4: INSERT lines in a trigger and a procedure body, DELIMITER ;; blocks, a stray
    // quote in a body, and the marker text inside a body.
    let trigger = "/*!50003 SET @saved_sql_mode       = @@sql_mode */ ;\n/*!50003 SET sql_mode              = 'STRICT_TRANS_TABLES' */ ;\nDELIMITER ;;\n/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`127.0.0.1`*/ /*!50003 TRIGGER tr AFTER INSERT ON t FOR EACH ROW\nBEGIN\nINSERT INTO `audit` VALUES (NEW.id, 0),(3,4);\nEND */;;\nDELIMITER ;\n/*!50003 SET sql_mode              = @saved_sql_mode */ ;\n";
    let routines = "--\n-- Dumping routines for database 'shop'\n--\nDELIMITER ;;\nCREATE DEFINER=`root`@`127.0.0.1` PROCEDURE `p`()\nBEGIN\nINSERT INTO `audit` VALUES (1, NOW()+0),(2,3);\nSELECT 'it''s';\nSELECT '\n-- Dump completed\nUNLOCK TABLES;\nDELIMITER ;\n-- Dumping data for table `audit`\nINSERT INTO `audit` VALUES (5,5);\n';\nSELECT \"a ' b\";\n-- a comment with ' in it\n# and another '\nEND ;;\nDELIMITER ;\n";
    let body = [
        section("t", "INSERT INTO `t` VALUES (1);\n"),
        trigger.to_string(),
        section("audit", ""),
        routines.to_string(),
    ]
    .concat();
    let (t, marker, ok) = my_all(&my_dump(&body));
    assert!(marker && ok);
    assert_eq!(t, map(&[("t", 1), ("audit", 0)]));
    // Cut inside the procedure body, right after its fake marker: no marker.
    let full = my_dump(&body);
    let text = String::from_utf8(full.clone()).unwrap();
    let at = text.find("-- Dump completed\nUNLOCK").unwrap() + "-- Dump completed\n".len();
    let (_, marker, _) = my_all(&full[..at]);
    assert!(!marker);
}

#[test]
fn mysql_only_inserts_into_the_sections_table_count() {
    let body = section(
        "t",
        "INSERT INTO `t` VALUES (1),(2);\nINSERT INTO `other` VALUES (1),(2),(3);\nINSERT INTO `t` (`a`, `g``x`) VALUES (3);\n",
    );
    let (t, _, _) = my_all(&my_dump(&body));
    assert_eq!(t, map(&[("t", 3)]));
    // Outside any section, nothing counts.
    let (t, _, _) = my_all(&my_dump("INSERT INTO `t` VALUES (1),(2);\n"));
    assert!(t.is_empty());
}

#[test]
fn mysql_no_backslash_escapes_routines_are_read_as_the_client_reads_them() {
    // Under NO_BACKSLASH_ESCAPES, 'a\' is a whole string: a backslash-aware reader would think
    // the string goes on, and see the `;;`, DELIMITER and marker lines that are in fact inside
    // the next string.
    let routine = "/*!50003 SET @saved_sql_mode       = @@sql_mode */ ;\n/*!50003 SET sql_mode              = 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES' */ ;\nDELIMITER ;;\nCREATE DEFINER=\"root\"@\"%\" PROCEDURE \"p2\"()\nBEGIN SELECT 'a\\'; SELECT \"b\\\" FROM dual; SELECT ';;\nDELIMITER ;\n--\n-- Dumping data for table `t`\n--\nINSERT INTO `t` VALUES (9),(9);\n\n-- Dump completed\n'; END\n;;\nDELIMITER ;\n/*!50003 SET sql_mode              = @saved_sql_mode */ ;\n";
    let body = [
        section("t", "INSERT INTO `t` VALUES (1);\n"),
        routine.to_string(),
    ]
    .concat();
    let full = my_dump(&body);
    let (t, marker, ok) = my_all(&full);
    assert!(marker && ok);
    assert_eq!(t, map(&[("t", 1)]));
    let text = String::from_utf8(full.clone()).unwrap();
    let at = text.find("-- Dump completed\n'").unwrap() + "-- Dump completed\n".len();
    assert!(!my_all(&full[..at]).1);
    // Back in the default mode, a backslash escapes again.
    let after = section("u", "INSERT INTO `u` VALUES (1,'x\\'),('),(2,'y');\n");
    let (t, _, _) = my_all(&my_dump(&[body, after].concat()));
    assert_eq!(t, map(&[("t", 1), ("u", 2)]));
}

#[test]
fn mysql_names_with_newlines() {
    // mariadb-dump writes a newline in a name as newline + "-- " in comments, raw in SQL.
    let name = "nl\n-- Dump completed\nx";
    let comment_name = "nl\n-- -- Dump completed\n-- x";
    let body = format!("--\n-- Table structure for table `{comment_name}`\n--\n\nCREATE TABLE `{name}` (\n  `c\nol` int\n);\n\n--\n-- Dumping data for table `{comment_name}`\n--\n\nLOCK TABLES `{name}` WRITE;\nINSERT INTO `{name}` VALUES\n(1),\n(2);\nUNLOCK TABLES;\n\n");
    let full = my_dump(&body);
    let (t, marker, ok) = my_all(&full);
    assert!(marker && ok);
    assert_eq!(t, map(&[(name, 2)]));
    // Cut right after a line that reads "-- Dump completed" inside a quoted name.
    let text = String::from_utf8(full.clone()).unwrap();
    for (at, _) in text.match_indices("-- Dump completed\n") {
        let end = at + "-- Dump completed\n".len();
        if end < full.len() {
            assert!(!my_all(&full[..end]).1, "cut at {end}");
        }
    }
    // A name continuation that reads like the end marker in a comment.
    let sneaky = "--\n-- Table structure for table `x\n-- Dump completed\n-- y`\n--\n";
    let d = format!("{MY_HEAD}{sneaky}");
    let cut = d.find("-- Dump completed\n").unwrap() + "-- Dump completed\n".len();
    assert!(!my_all(&d.as_bytes()[..cut]).1);
}

#[test]
fn mysql_marker_must_be_the_last_meaningful_line() {
    let d = my_dump("");
    assert!(my_all(&d).1);
    let mut e = d.clone();
    e.extend_from_slice(b"\n-- trailing comment\n\n");
    assert!(my_all(&e).1);
    let mut e = d.clone();
    e.extend_from_slice(b"SELECT 1;\n");
    assert!(!my_all(&e).1);
    let mut e = d.clone();
    e.extend_from_slice(b"DELIMITER ;;\n");
    assert!(!my_all(&e).1);
    // With a date, as without --skip-dump-date.
    let e = String::from_utf8(d).unwrap().replace(
        "-- Dump completed\n",
        "-- Dump completed on 2026-11-23 10:00:00\n",
    );
    assert!(my_all(e.as_bytes()).1);
    // Inside a DELIMITER ;; block: not the end.
    let e = format!("{MY_HEAD}DELIMITER ;;\n\n-- Dump completed\n");
    assert!(!my_all(e.as_bytes()).1);
}

#[test]
fn mysql_comments_and_versioned_comments() {
    let body = [
        section("t", "INSERT INTO `t` VALUES (1);\n"),
        "/* plain ' comment */ /*!40000 SELECT ';' */;\n/*!50003 x /* c */ ' */ */ SELECT 1;\n# hash ' comment\n-- dash ' comment\nSELECT 1 --'still a string';\nSELECT 2;-- x '\n".to_string(),
        section("u", "INSERT INTO `u` VALUES (1),(2);\n"),
    ]
    .concat();
    let (t, marker, ok) = my_all(&my_dump(&body));
    assert!(ok);
    assert_eq!(t, map(&[("t", 1), ("u", 2)]));
    assert!(marker);
}

#[test]
fn mysql_unknown_client_commands_and_delimiters_are_errors() {
    let (_, _, ok) = my_all(&my_dump("SELECT 1 \\g\n"));
    assert!(!ok);
    let (_, _, ok) = my_all(&my_dump("DELIMITER //\nSELECT 1//\nDELIMITER ;\n"));
    assert!(!ok);
}

// ---- throughput --------------------------------------------------------------------------

fn pg_synth(mb: usize) -> Vec<u8> {
    let mut d = PG_HEAD.as_bytes().to_vec();
    d.extend_from_slice(b"COPY public.orders (id, note, at, price) FROM stdin;\n");
    let mut i = 0u64;
    while d.len() < mb << 20 {
        d.extend_from_slice(
            format!(
                "{i}\tsome text value here, with a \\t tab\t2024-01-01 00:00:00+00\t{}.25\n",
                i % 1000
            )
            .as_bytes(),
        );
        i += 1;
    }
    d.extend_from_slice(b"\\.\n");
    d.extend_from_slice(PG_FOOT.as_bytes());
    d
}

fn my_synth(mb: usize) -> Vec<u8> {
    let mut d = MY_HEAD.as_bytes().to_vec();
    d.extend_from_slice(
        b"--\n-- Dumping data for table `orders`\n--\n\nLOCK TABLES `orders` WRITE;\n",
    );
    let mut i = 0u64;
    while d.len() < mb << 20 {
        d.extend_from_slice(b"INSERT INTO `orders` VALUES\n");
        for k in 0..5000 {
            if k > 0 {
                d.extend_from_slice(b",\n");
            }
            d.extend_from_slice(
                format!(
                    "({i},'some text value here, it\\'s (x)','2024-01-01 00:00:00',{}.25,NULL)",
                    i % 1000
                )
                .as_bytes(),
            );
            i += 1;
        }
        d.extend_from_slice(b";\n");
    }
    d.extend_from_slice(b"UNLOCK TABLES;\n");
    d.extend_from_slice(MY_FOOT.as_bytes());
    d
}

/// Schema only: the byte-by-byte lexer, no COPY or INSERT fast path.
fn ddl_synth(mb: usize, pg: bool) -> Vec<u8> {
    let mut d = Vec::new();
    let mut i = 0u64;
    while d.len() < mb << 20 {
        let s = if pg {
            format!("CREATE TABLE public.t{i} (\n    id integer NOT NULL,\n    note text DEFAULT 'it''s'::text,\n    \"Odd\" numeric(10,2)\n);\nCOMMENT ON TABLE public.t{i} IS 'a comment, with ; and -- inside';\nCREATE FUNCTION public.f{i}() RETURNS text\n    LANGUAGE sql\n    AS $_$ SELECT 'x' $_$;\n\n")
        } else {
            format!("DROP TABLE IF EXISTS `t{i}`;\nCREATE TABLE `t{i}` (\n  `id` int(11) NOT NULL,\n  `note` text DEFAULT 'it\\'s',\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='a comment, with ; and -- inside';\n/*!40101 SET character_set_client = @saved_cs_client */;\n\n")
        };
        d.extend_from_slice(s.as_bytes());
        i += 1;
    }
    d
}

/// Best of five runs, MB/s.
fn best_of<F: FnMut()>(bytes: usize, mut f: F) -> f64 {
    (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            bytes as f64 / t.elapsed().as_secs_f64() / 1e6
        })
        .fold(0.0, f64::max)
}

/// `cargo test --release --lib sql::tests::throughput -- --ignored --nocapture`
#[test]
#[ignore]
fn throughput() {
    let d = ddl_synth(50, true);
    let r = best_of(d.len(), || PgCounter::default().feed(&d));
    println!("pg    DDL            {r:.0} MB/s");
    let d = ddl_synth(50, false);
    let r = best_of(d.len(), || MysqlCounter::new().feed(&d));
    println!("mysql DDL            {r:.0} MB/s");
    let d = pg_synth(200);
    let r = best_of(d.len(), || {
        let mut c = PgCounter::default();
        for ch in d.chunks(256 * 1024) {
            c.feed(ch);
        }
        assert!(c.finish().is_ok() && c.end_marker);
        assert_eq!(c.tables.len(), 1);
    });
    println!("pg    COPY data      {r:.0} MB/s");
    let d = my_synth(200);
    let r = best_of(d.len(), || {
        let mut c = MysqlCounter::new();
        for ch in d.chunks(256 * 1024) {
            c.feed(ch);
        }
        assert!(c.finish().is_ok() && c.end_marker);
        assert_eq!(c.tables.len(), 1);
    });
    println!("mysql INSERT values  {r:.0} MB/s");
}
