//! Masking on the stream, against real servers: refresh with `mask: true` into a dev server the
//! test starts (its own data directory), then every file that server wrote (data files, WAL,
//! binlog) is searched for the real values. `offsite mask` as a filter between pg_dump and psql, and
//! `restore --mask --stdout`, give the same masked values.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::cli::{Run, Setup};
use crate::common::db::{fixture, MyDb, PgDb, MY_RESTORE_URL, MY_URL, PG_RESTORE_URL, PG_URL};
use crate::common::servers::{files_containing, MariaServer, PgServer};

const SECRET: &str = "a masking secret the tests share, long enough";

/// Values of the fixtures' customers that must never reach a dev server.
const CANARIES: &[&str] = &[
    "zoe@example.test",
    "taro@example.test",
    "Zoë 🚀 Müller",
    "山田 太郎",
    "日本語のメモ",
];
/// A value of a table without rules, which must be there: the search does see the data.
const VISIBLE: &str = "T-shirt «small»";

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr))
}

fn config(s: &Setup, sources: &str, office: &str) {
    let host = &s.host;
    s.write("keys/masking.secret", SECRET);
    std::fs::write(
        s.config_path(),
        format!(
            "host: {host}\nstore: {{ local: store }}\nstate_dir: state\nencryption:\n  recipients: [keys/office.cert.asc]\n  signing_key: keys/{host}.secret.asc\n{sources}office:\n  decryption_key: keys/office.secret.asc\n  offsite_dir: store\n  hosts: {{ {host}: keys/{host}.cert.asc }}\n  masking:\n    secret: {{ file: keys/masking.secret }}\n{office}"
        ),
    )
    .expect("config");
}

fn assert_no_canary(dir: &Path) {
    for c in CANARIES {
        let found = files_containing(dir, c.as_bytes());
        assert!(found.is_empty(), "{c:?} reached the dev server: {found:?}");
    }
    assert!(
        !files_containing(dir, VISIBLE.as_bytes()).is_empty(),
        "the search finds unmasked data"
    );
}

#[test]
fn postgres_refresh_with_mask_writes_only_masked_values_to_the_dev_server() {
    let src = PgDb::new("maskpg");
    src.load(&fixture("postgres/shop.sql"));
    src.exec(
        "CREATE TABLE public.newsletter (email text); \
         INSERT INTO public.newsletter SELECT email FROM public.customers WHERE email IS NOT NULL",
    );
    let mut dev = PgServer::start();
    dev.sql("postgres", "CREATE ROLE offsite_restore LOGIN CREATEDB");
    let s = Setup::new("mask-pg");
    let tables = format!(
        "    tables:\n      \"postgres/{db}:public.customers\": {{ name: name, email: email, notes: \"null\", profile: {{ json: {{ lang: {{ const: xx }}, \"名前\": first_name }} }} }}\n      \"postgres/{db}:public.newsletter\": {{ email: email }}\n",
        db = src.name
    );
    config(
        &s,
        &format!("postgres: [{{ url: '{PG_URL}', databases: [{}] }}]\n", src.name),
        &format!(
            "{tables}  scratch: {{ postgres: '{PG_RESTORE_URL}' }}\n  refresh:\n    - {{ from: '{}:postgres/{}', server: '{}', database: shop_dev, mask: true }}\n",
            s.host,
            src.name,
            dev.url("offsite_restore")
        ),
    );
    s.offsite(&["push"]).expect(0);
    s.offsite(&["verify"]).expect(0);
    let refreshed = json(&s.offsite(&["--json", "refresh"]).expect(0));
    assert_eq!(refreshed["entries"][0]["masked"], true, "{refreshed:#}");

    let count = "SELECT count(*) FROM public.customers";
    assert_eq!(
        dev.sql("shop_dev", count),
        src.exec(count),
        "every row is there"
    );
    assert_eq!(
        dev.sql(
            "shop_dev",
            "SELECT count(*) FROM public.customers WHERE email IS NOT NULL AND email NOT LIKE 'u%@example.invalid'"
        ),
        "0\n"
    );
    assert_eq!(
        dev.sql(
            "shop_dev",
            "SELECT count(*) FROM public.customers WHERE notes IS NOT NULL"
        ),
        "0\n"
    );
    let join =
        "SELECT count(*) FROM public.customers c JOIN public.newsletter n ON n.email = c.email";
    assert_eq!(
        dev.sql("shop_dev", join),
        src.exec(join),
        "joins on masked columns hold"
    );
    assert_eq!(
        dev.sql(
            "shop_dev",
            "SELECT count(DISTINCT profile->>'lang') FROM public.customers WHERE profile ? 'lang'"
        ),
        "1\n"
    );

    // The same secret masks the same outside refresh: the filter between pg_dump and psql.
    let filtered = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; pg_dump -h 127.0.0.1 -U postgres --no-owner {} | {} -c {} mask --engine postgres --database {} | grep -c '@example.invalid'",
            src.name,
            crate::common::cli::bin().display(),
            s.config_path().display(),
            src.name
        ))
        .stdin(Stdio::null())
        .output()
        .expect("pipeline");
    assert!(
        filtered.status.success(),
        "{}",
        String::from_utf8_lossy(&filtered.stderr)
    );
    let one = dev.sql(
        "shop_dev",
        "SELECT email FROM public.customers WHERE email IS NOT NULL ORDER BY email LIMIT 1",
    );
    let stdout = s
        .offsite(&[
            "restore",
            "--db",
            &format!("postgres/{}", src.name),
            "--stdout",
            "--mask",
        ])
        .expect(0);
    assert!(
        stdout.stdout.contains(one.trim()),
        "restore --mask gives the same value"
    );
    assert!(!stdout.stdout.contains("zoe@example.test"));

    dev.stop();
    assert_no_canary(&dev.data_dir());
}

#[test]
fn mariadb_refresh_with_mask_writes_only_masked_values_to_the_dev_server() {
    let src = MyDb::new("maskmy");
    src.load(&fixture("mysql/shop.sql"));
    let mut dev = MariaServer::start();
    dev.sql(
        None,
        "CREATE USER 'offsite_restore'@'127.0.0.1'; \
         GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES, CREATE TEMPORARY TABLES, \
         LOCK TABLES, CREATE VIEW, SHOW VIEW, TRIGGER, CREATE ROUTINE, ALTER ROUTINE, EXECUTE, EVENT \
         ON `shop\\_dev%`.* TO 'offsite_restore'@'127.0.0.1'; \
         GRANT PROCESS, CONNECTION ADMIN ON *.* TO 'offsite_restore'@'127.0.0.1'",
    );
    let s = Setup::new("mask-my");
    let tables = format!(
        "    tables:\n      \"mysql/{db}:customers\": {{ name: name, email: email, notes: \"null\", profile: {{ json: {{ lang: {{ const: xx }}, \"名前\": first_name }} }} }}\n",
        db = src.name
    );
    config(
        &s,
        &format!("mysql: [{{ url: '{MY_URL}', databases: [{}] }}]\n", src.name),
        &format!(
            "{tables}  scratch: {{ mysql: '{MY_RESTORE_URL}' }}\n  refresh:\n    - {{ from: '{}:mysql/{}', server: '{}', database: shop_dev, mask: true }}\n",
            s.host,
            src.name,
            dev.url("offsite_restore")
        ),
    );
    s.offsite(&["push"]).expect(3); // the fixture's MyISAM table is a warning
    s.offsite(&["verify"]).expect(0);
    let refreshed = json(&s.offsite(&["--json", "refresh"]).expect(0));
    assert_eq!(refreshed["entries"][0]["masked"], true, "{refreshed:#}");
    let count = "SELECT COUNT(*) FROM customers";
    assert_eq!(dev.sql(Some("shop_dev"), count), src.exec(count));
    assert_eq!(
        dev.sql(
            Some("shop_dev"),
            "SELECT COUNT(*) FROM customers WHERE email IS NOT NULL AND email NOT LIKE 'u%@example.invalid'"
        ),
        "0\n"
    );
    // A database without rules cannot be "masked" by mistake: nothing would be.
    let none = s.offsite(&["mask", "--engine", "postgres", "--database", "x"]);
    assert_eq!(none.code, 2, "no rules for postgres/x: {}", none.stderr);
    dev.stop();
    assert_no_canary(&dev.data_dir());
}

#[test]
fn a_rule_for_a_column_the_dump_lacks_fails_the_refresh_and_the_dev_database_is_untouched() {
    let src = PgDb::new("maskbad");
    src.exec("CREATE TABLE public.customers (id int, phone text); INSERT INTO public.customers VALUES (1, '555-0101')");
    let dev = PgDb::named(&format!("{}_dev", src.name));
    let s = Setup::new("mask-bad");
    config(
        &s,
        &format!("postgres: [{{ url: '{PG_URL}', databases: [{}] }}]\n", src.name),
        &format!(
            "    tables:\n      \"postgres/{db}:public.customers\": {{ phone: digits, phone2: digits }}\n  scratch: {{ postgres: '{PG_RESTORE_URL}' }}\n  refresh:\n    - {{ from: '{}:postgres/{db}', server: '{PG_RESTORE_URL}', database: {}, mask: true }}\n",
            s.host,
            dev.name,
            db = src.name
        ),
    );
    s.offsite(&["push"]).expect(0);
    s.offsite(&["verify"]).expect(0);
    let failed = s.offsite(&["refresh"]).expect(1);
    assert!(failed.stderr.contains("phone2"), "{}", failed.stderr);
    assert!(!dev.exists(), "nothing of the refresh is left");
}

#[test]
fn strict_masking_refuses_an_uncovered_personal_column_and_the_check_names_it() {
    let src = PgDb::new("maskstrict");
    src.exec(
        "CREATE TABLE public.customers (id int, email text, phone2 text, sku text); \
         INSERT INTO public.customers VALUES (1, 'real@example.test', '555-0101', 'A1')",
    );
    let dev = PgDb::named(&format!("{}_dev", src.name));
    let s = Setup::new("mask-strict");
    let write = |rules: &str| {
        config(
            &s,
            &format!("postgres: [{{ url: '{PG_URL}', databases: [{}] }}]\n", src.name),
            &format!(
                "    strict: true\n    tables:\n      \"postgres/{db}:public.customers\": {{ {rules} }}\n  scratch: {{ postgres: '{PG_RESTORE_URL}' }}\n  refresh:\n    - {{ from: '{}:postgres/{db}', server: '{PG_RESTORE_URL}', database: {}, mask: true }}\n",
                s.host,
                dev.name,
                db = src.name
            ),
        )
    };
    write("email: email");
    s.offsite(&["push"]).expect(0);
    s.offsite(&["verify"]).expect(0);

    // Production added phone2; nobody told the office.
    let check = s.offsite(&["masking", "check"]).expect(1);
    assert!(
        check.stdout.contains("public.customers.phone2"),
        "{}",
        check.stdout
    );
    assert!(check.stdout.contains("UNCOVERED"), "{}", check.stdout);
    assert!(check.stdout.contains("covered: email"), "{}", check.stdout);
    assert!(
        !check.stdout.contains("public.customers.sku"),
        "{}",
        check.stdout
    );
    let refused = json(&s.offsite(&["--json", "refresh"]).expect(2));
    assert_eq!(
        refused["entries"][0]["rule"], "masking-strict",
        "{refused:#}"
    );
    assert!(refused["entries"][0]["error"]
        .as_str()
        .unwrap_or("")
        .contains("phone2"));
    assert!(!dev.exists(), "the dev database was not touched");

    // A rule for it, and the refresh goes through with phone2 masked.
    write("email: email, phone2: digits");
    s.offsite(&["masking", "check"]).expect(0);
    s.offsite(&["refresh"]).expect(0);
    let row = dev.exec("SELECT email, phone2, sku FROM public.customers");
    assert!(
        !row.contains("real@example.test") && !row.contains("555-0101"),
        "{row}"
    );
    assert!(row.trim_end().ends_with("|A1"), "{row}");
}
