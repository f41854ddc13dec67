use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::Arc;

use rand::Rng;

use super::*;

const SECRET: &[u8] = b"a masking secret for the unit tests";

fn masking(yaml: &str, secret: &[u8]) -> Masking {
    let tables: BTreeMap<String, BTreeMap<String, serde_norway::Value>> =
        serde_norway::from_str(yaml).unwrap();
    let secret = secret.to_vec();
    Masking::new(Box::new(move || Ok(secret.clone())), false, &tables).unwrap()
}

struct Pieces<'a>(&'a [u8], usize);
impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.len().min(self.1).min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn run(engine: Engine, m: &Masking, source: &str, input: &str, piece: usize) -> io::Result<String> {
    let mask = m.for_source(source).unwrap().unwrap();
    let owned: &'static [u8] = Box::leak(input.as_bytes().to_vec().into_boxed_slice());
    let mut out = Vec::new();
    stream(engine, Box::new(Pieces(owned, piece)), mask).read_to_end(&mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

const PG: &str = "SET standard_conforming_strings = on;\n\nCREATE FUNCTION public.f() RETURNS text\n    LANGUAGE sql\n    AS $$\nCOPY public.customers (id, email) FROM stdin;\n$$;\n\nCOPY public.customers (id, email, full_name, \"Phone No\", notes) FROM stdin;\n1\tjane.doe@example.com\tJane Doe\t+1 555 010 7788\tline1\\nline2\\twith tab \\\\ back\n2\t\\N\tZoë Ünal\t\\N\tplain\n3\tjane.doe@example.com\tJäne \\\\N\t555-0000\t\\N\n\\.\n\nCOPY public.orders (id, customer_email, total) FROM stdin;\n10\tjane.doe@example.com\t12.50\n\\.\n\nCOPY public.other (x) FROM stdin;\njane.doe@example.com\n\\.\n\n-- PostgreSQL database dump complete\n\n";

const PG_RULES: &str = "\"postgres/shop:public.customers\": { email: email, full_name: name, \"Phone No\": digits, notes: \"null\" }\n\"postgres/shop:public.orders\": { customer_email: email }\n";

fn pg_rows(out: &str, table: &str) -> Vec<Vec<String>> {
    // The last: a function body above holds a look-alike.
    let start = out.rfind(&format!("COPY {table} ")).unwrap();
    let body = &out[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("\\.\n").unwrap()]
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[test]
fn postgres_copy_rows_are_masked_and_everything_else_passes() {
    let m = masking(PG_RULES, SECRET);
    let first = run(Engine::Postgres, &m, "postgres/shop", PG, 1 << 20).unwrap();
    for piece in [1, 2, 3, 7, 100] {
        assert_eq!(
            run(Engine::Postgres, &m, "postgres/shop", PG, piece).unwrap(),
            first,
            "piece {piece}"
        );
    }
    assert!(!first.contains("jane.doe@example.com\t"), "{first}");
    assert!(!first.contains("Jane Doe") && !first.contains("Zoë") && !first.contains("010 7788"));
    // The function body's look-alike COPY line and the unmasked table are untouched.
    assert!(first.contains("AS $$\nCOPY public.customers (id, email) FROM stdin;\n$$;"));
    assert_eq!(
        pg_rows(&first, "public.other"),
        vec![vec!["jane.doe@example.com"]]
    );
    let c = pg_rows(&first, "public.customers");
    assert_eq!(c.len(), 3);
    assert!(c.iter().all(|r| r.len() == 5));
    assert_eq!(c[1][1], "\\N", "NULL stays NULL");
    assert_eq!(c[0][4], "\\N", "the null rule");
    assert_eq!(c[0][1], c[2][1], "the same email masks the same");
    assert!(c[0][1].ends_with("@example.invalid"));
    let o = pg_rows(&first, "public.orders");
    assert_eq!(o[0][1], c[0][1], "joins on masked columns still hold");
    assert_eq!(o[0][2], "12.50");
    assert_eq!(c[0][3].len(), "+1 555 010 7788".len());
    // Another secret, other values.
    let other = run(
        Engine::Postgres,
        &masking(PG_RULES, b"another secret, also long enough"),
        "postgres/shop",
        PG,
        64,
    )
    .unwrap();
    assert_ne!(pg_rows(&other, "public.customers")[0][1], c[0][1]);
}

#[test]
fn postgres_rules_that_do_not_fit_the_dump_fail_the_stream() {
    let m = masking(
        "\"postgres/shop:public.customers\": { phone2: digits }\n",
        SECRET,
    );
    let e = run(Engine::Postgres, &m, "postgres/shop", PG, 64).unwrap_err();
    assert!(e.to_string().contains("no column \"phone2\""), "{e}");
    let m = masking("\"postgres/shop:public.missing\": { x: digits }\n", SECRET);
    let e = run(Engine::Postgres, &m, "postgres/shop", PG, 64).unwrap_err();
    assert!(e.to_string().contains("public.missing"), "{e}");
    let bad = PG.replace("\t+1 555 010 7788", "");
    let m = masking(PG_RULES, SECRET);
    let e = run(Engine::Postgres, &m, "postgres/shop", &bad, 64).unwrap_err();
    assert!(
        e.to_string().contains("4 fields where its header names 5"),
        "{e}"
    );
}

const MY: &str = "/*!40101 SET NAMES utf8mb4 */;\nDROP TABLE IF EXISTS `contacts`;\nCREATE TABLE `contacts` (\n  `id` int(11) NOT NULL,\n  `email` varchar(255) DEFAULT NULL,\n  `mobile` varchar(32) DEFAULT NULL,\n  `address` text DEFAULT NULL,\n  `photo` blob DEFAULT NULL,\n  `odd``name` int DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n\nLOCK TABLES `contacts` WRITE;\nINSERT INTO `contacts` VALUES\n(1,'jane.doe@example.com','+1 555 010 7788','It\\'s \\\"here\\\"\\n2nd line,\twith (parens), and \\\\',0x89504E47,7),\n(2,NULL,_binary '555','Zoë',NULL,-1.5e3),\n(3,'jane.doe@example.com','x','y',0x,NULL);\nUNLOCK TABLES;\nCREATE TABLE `plain` (\n  `email` text\n);\nINSERT INTO `plain` VALUES ('jane.doe@example.com');\n-- Dump completed\n";

const MY_RULES: &str =
    "\"mysql/crm:contacts\": { email: email, mobile: digits, address: { const: \"1 Main St\" } }\n";

#[test]
fn mysql_insert_tuples_are_masked_and_everything_else_passes() {
    let m = masking(MY_RULES, SECRET);
    let first = run(Engine::Mysql, &m, "mysql/crm", MY, 1 << 20).unwrap();
    for piece in [1, 2, 5, 13, 100] {
        assert_eq!(
            run(Engine::Mysql, &m, "mysql/crm", MY, piece).unwrap(),
            first,
            "piece {piece}"
        );
    }
    let at = first.find("INSERT INTO `contacts`").unwrap();
    let insert = &first[at..at + first[at..].find(";\n").unwrap()];
    assert!(
        !insert.contains("jane.doe@example.com") && !insert.contains("555"),
        "{insert}"
    );
    assert!(!insert.contains("It\\'s"), "{insert}");
    assert_eq!(insert.matches("'1 Main St'").count(), 3, "{insert}");
    assert!(
        insert.contains(",0x89504E47,7),\n(2,NULL,"),
        "other values as they were: {insert}"
    );
    assert!(insert.contains(",NULL,-1.5e3),\n(3,"), "{insert}");
    // The same email masks the same as in PostgreSQL (same secret).
    let pg = run(
        Engine::Postgres,
        &masking(PG_RULES, SECRET),
        "postgres/shop",
        PG,
        64,
    )
    .unwrap();
    let masked = &pg_rows(&pg, "public.customers")[0][1];
    assert_eq!(insert.matches(masked.as_str()).count(), 2, "{insert}");
    assert!(first.contains("INSERT INTO `plain` VALUES ('jane.doe@example.com');"));
    assert_eq!(first.lines().count(), MY.lines().count());
}

#[test]
fn mysql_rules_that_do_not_fit_the_dump_fail_the_stream() {
    let m = masking("\"mysql/crm:contacts\": { phone2: digits }\n", SECRET);
    let e = run(Engine::Mysql, &m, "mysql/crm", MY, 64).unwrap_err();
    assert!(e.to_string().contains("phone2"), "{e}");
    let bad = MY.replace(",0x89504E47,7)", ",0x89504E47)");
    let e = run(
        Engine::Mysql,
        &masking(MY_RULES, SECRET),
        "mysql/crm",
        &bad,
        64,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("5 values where the table has 6"),
        "{e}"
    );
}

#[test]
fn a_database_without_rules_has_no_mask() {
    let m = masking(MY_RULES, SECRET);
    assert!(m.for_source("mysql/other").unwrap().is_none());
}

/// A random value with COPY's awkward bytes: tabs, newlines, backslashes, `\N` look-alikes,
/// multi-byte characters.
fn awkward(rng: &mut impl rand::Rng) -> String {
    const PARTS: &[&str] = &[
        "a", "Zoë", "\t", "\n", "\\", "\\N", "\r", "@", "東京", "🚀", " ", ".", "'", "\"",
    ];
    let n = rng.random_range(0..8);
    (0..n)
        .map(|_| PARTS[rng.random_range(0..PARTS.len())])
        .collect()
}

fn copy_encode(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

#[test]
fn masking_random_rows_keeps_every_row_and_field_and_touches_only_masked_columns() {
    let mut rng = rand::rng();
    let m = masking(
        "\"postgres/p:public.t\": { b: email, d: { redact: { keep_first: 1 } } }\n",
        SECRET,
    );
    let mask = m.for_source("postgres/p").unwrap().unwrap();
    for round in 0..20 {
        let rows: Vec<Vec<Option<String>>> = (0..rng.random_range(0..40))
            .map(|_| {
                (0..4)
                    .map(|_| (!rng.random_bool(0.2)).then(|| awkward(&mut rng)))
                    .collect()
            })
            .collect();
        let mut dump = String::from("COPY public.t (a, b, c, d) FROM stdin;\n");
        for r in &rows {
            let f: Vec<String> = r
                .iter()
                .map(|v| {
                    v.as_deref()
                        .map(copy_encode)
                        .unwrap_or_else(|| "\\N".into())
                })
                .collect();
            dump.push_str(&f.join("\t"));
            dump.push('\n');
        }
        dump.push_str("\\.\n\n-- PostgreSQL database dump complete\n\n");
        let out = run(Engine::Postgres, &m, "postgres/p", &dump, 1 + round * 7).unwrap();
        let body = &out[out.find('\n').unwrap() + 1..out.find("\\.\n").unwrap()];
        let got: Vec<&str> = body.lines().collect();
        assert_eq!(got.len(), rows.len(), "round {round}: every row");
        for (line, want) in got.iter().zip(&rows) {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 4, "round {round}: every field of {line:?}");
            for (i, (f, v)) in fields.iter().zip(want).enumerate() {
                let expected = match (i, v) {
                    (_, None) => "\\N".to_string(),
                    (1, Some(v)) => copy_encode(
                        &transform::Transform::Email { keep_domain: false }
                            .apply(&mask.key, Some(v))
                            .unwrap()
                            .unwrap(),
                    ),
                    (3, Some(v)) => copy_encode(
                        &transform::Transform::Redact {
                            keep_first: 1,
                            keep_last: 0,
                        }
                        .apply(&mask.key, Some(v))
                        .unwrap()
                        .unwrap(),
                    ),
                    (_, Some(v)) => copy_encode(v),
                };
                assert_eq!(*f, expected, "round {round}, field {i}");
            }
        }
    }
}

#[test]
fn postgres_coverage_sees_column_types_from_create_table() {
    let dump = "CREATE TABLE public.t (\n    id integer NOT NULL,\n    origin inet,\n    \"Contact\" public.email,\n    note text\n);\n\n\nCOPY public.t (id, origin, \"Contact\", note) FROM stdin;\n1\t10.0.0.1\ta@b.c\tx\n\\.\n\n";
    let mask = Arc::new(DbMask::observer("postgres/p"));
    let mut out = Vec::new();
    stream(
        Engine::Postgres,
        Box::new(Pieces(dump.as_bytes(), 5)),
        mask.clone(),
    )
    .read_to_end(&mut out)
    .unwrap();
    assert_eq!(out, dump.as_bytes(), "an observer changes nothing");
    let seen = mask.coverage.seen.lock().unwrap().clone();
    let looks = |c: &str| {
        seen.iter()
            .find(|s| s.column == c)
            .and_then(|s| s.looks_like)
    };
    assert_eq!(looks("origin"), Some("ip address"));
    assert_eq!(looks("Contact"), Some("email"));
    assert_eq!(looks("note"), None);
    assert_eq!(seen.len(), 4);
}

#[test]
fn postgres_a_rule_for_a_missing_column_fails_before_the_first_row() {
    let dump = "CREATE TABLE public.a (\n    x text\n);\n\n\nCREATE TABLE public.b (\n    y text\n);\n\n\nCOPY public.a (x) FROM stdin;\nsecret row of a\n\\.\n\n\nCOPY public.b (y) FROM stdin;\nz\n\\.\n\n";
    let m = masking("\"postgres/p:public.b\": { missing: email }\n", SECRET);
    let mask = m.for_source("postgres/p").unwrap().unwrap();
    let mut reader = stream(Engine::Postgres, Box::new(Pieces(dump.as_bytes(), 7)), mask);
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    let err = loop {
        match reader.read(&mut buf) {
            Ok(0) => panic!("the stream ended without an error"),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert!(
        err.to_string()
            .contains("CREATE TABLE public.b has no column \"missing\""),
        "{err}"
    );
    assert!(
        !String::from_utf8_lossy(&out).contains("secret row"),
        "no row went on"
    );
}

/// Reads until the stream fails; returns what went on before, and the error.
fn read_until_error(mut r: Box<dyn Read + Send>) -> (String, io::Error) {
    let mut out = Vec::new();
    let mut buf = [0u8; 16];
    loop {
        match r.read(&mut buf) {
            Ok(0) => panic!(
                "the stream ended without an error: {}",
                String::from_utf8_lossy(&out)
            ),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (String::from_utf8_lossy(&out).into_owned(), e),
        }
    }
}

#[test]
fn postgres_rows_as_insert_statements_of_a_masked_table_fail_before_they_go_on() {
    let dump = "SET x = 1;\nINSERT INTO public.other VALUES (1);\nINSERT INTO public.customers (id, email) VALUES (1, 'jane.doe@example.com');\n";
    let m = masking(PG_RULES, SECRET);
    for piece in [3, 64] {
        let mask = m.for_source("postgres/shop").unwrap().unwrap();
        let (out, err) = read_until_error(stream(
            Engine::Postgres,
            Box::new(Pieces(dump.as_bytes(), piece)),
            mask,
        ));
        assert!(err.to_string().contains("pg_dump --inserts"), "{err}");
        assert!(!out.contains("jane.doe"), "piece {piece}: {out}");
        assert!(
            out.contains("INSERT INTO public.other VALUES (1);"),
            "{out}"
        );
    }
}

#[test]
fn mysql_replace_and_insert_ignore_are_masked_and_a_second_statement_on_the_line_fails() {
    let m = masking(MY_RULES, SECRET);
    for kind in ["REPLACE INTO", "INSERT IGNORE INTO"] {
        let dump = MY.replace("INSERT INTO `contacts`", &format!("{kind} `contacts`"));
        let out = run(Engine::Mysql, &m, "mysql/crm", &dump, 7).unwrap();
        assert!(out.contains(&format!("{kind} `contacts` VALUES")), "{out}");
        assert!(!out.contains("jane.doe@example.com','+1"), "{kind}: {out}");
    }
    let dump = MY.replace(
        ",0x,NULL);",
        ",0x,NULL);INSERT INTO `contacts` VALUES (4,'jane.doe@example.com','1','a',0x,NULL);",
    );
    let mask = m.for_source("mysql/crm").unwrap().unwrap();
    let dump: &'static str = Box::leak(dump.into_boxed_str());
    let (out, err) = read_until_error(stream(
        Engine::Mysql,
        Box::new(Pieces(dump.as_bytes(), 7)),
        mask,
    ));
    assert!(err.to_string().contains("more text follows"), "{err}");
    assert!(!out.contains("(4,'jane.doe"), "{out}");
}
