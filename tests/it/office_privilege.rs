//! Least privilege where untrusted SQL runs. A hacked production host signs whatever dump it likes:
//! here its pg_dump and mariadb-dump are wrappers that add `COPY ... TO PROGRAM` and `SELECT ...
//! INTO OUTFILE` to real dumps, signed and pushed as usual. verify refuses a scratch role that could
//! run them (exit 2, before anything is restored); with the least-privilege role the server refuses
//! them, verify reports FAIL, and no file appears. refresh refuses such a role too, unless the
//! config accepts it (`allow_privileged: true`).

use std::path::PathBuf;

use crate::common::cli::{Run, Setup};
use crate::common::db::{
    psql, MyDb, PgDb, MY_RESTORE_URL, MY_URL, PG_RESTORE_URL, PG_URL, RESTORE_ROLE,
};

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr))
}

/// A file the hostile SQL would create, removed again at the end (the server's OS user owns it).
struct Marker(PathBuf);

impl Marker {
    fn new(tag: &str) -> Self {
        Self(PathBuf::from(format!(
            "/tmp/offsite-pwned-{tag}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        )))
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A dump command that runs the real one and puts `evil` just before the dump's last line.
fn hostile_dump(s: &Setup, real: &str, last_line: &str, evil: &str) -> PathBuf {
    let path = s.write(
        &format!("bin/hostile-{real}"),
        &format!(
            "#!/bin/bash\nset -o pipefail\n{real} \"$@\" | awk -v evil=\"$EVIL\" 'index($0, \"{last_line}\") == 1 {{ print evil; print \"\" }} {{ print }}'\n"
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(s.path("evil.sql"), evil).expect("evil");
    path
}

fn config(s: &Setup, sources: &str, office: &str) {
    let host = &s.host;
    std::fs::write(
        s.config_path(),
        format!(
            "host: {host}\nstore: {{ local: store }}\nstate_dir: state\nencryption:\n  recipients: [keys/office.cert.asc]\n  signing_key: keys/{host}.secret.asc\n{sources}office:\n  decryption_key: keys/office.secret.asc\n  offsite_dir: store\n  hosts: {{ {host}: keys/{host}.cert.asc }}\n{office}"
        ),
    )
    .expect("config");
}

/// verify's scratch databases of a host that are still there.
fn scratch_dbs_pg(host: &str) -> String {
    let out = psql("postgres")
        .args([
            "-At",
            "-c",
            &format!(
                "SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'offsite_verify_{host}%'"
            ),
        ])
        .output()
        .expect("psql");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_hostile_postgres_dump_cannot_run_programs_on_the_scratch_server() {
    let src = PgDb::new("hostpg");
    src.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2); GRANT SELECT ON t TO PUBLIC");
    let s = Setup::new("priv-pg");
    let marker = Marker::new("pg");
    let evil = format!("COPY (SELECT 1) TO PROGRAM 'cat > {}';", marker.0.display());
    let dump = hostile_dump(&s, "pg_dump", "-- PostgreSQL database dump complete", &evil);
    let sources = format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}], pg_dump: '{}' }}]\n",
        src.name,
        dump.display()
    );
    config(
        &s,
        &sources,
        &format!("  scratch: {{ postgres: '{PG_URL}' }}\n"),
    );
    s.offsite_env(&["push"], &[("EVIL", &evil)]).expect(0);

    // A superuser scratch role: refused before any database is created or any byte restored.
    let refused = s.offsite(&["verify"]).expect(2);
    for want in [
        "office.scratch.postgres",
        "SUPERUSER",
        "COPY ... TO PROGRAM",
        "CREATE ROLE offsite_restore LOGIN CREATEDB",
        "allow_privileged: true",
    ] {
        assert!(refused.stderr.contains(want), "{want}: {}", refused.stderr);
    }
    assert_eq!(scratch_dbs_pg("priv_pg"), "");
    assert!(!marker.0.exists(), "the hostile COPY ran");

    // The least-privilege role: the server refuses the statement, verify fails, nothing ran.
    config(
        &s,
        &sources,
        &format!("  scratch: {{ postgres: '{PG_RESTORE_URL}' }}\n"),
    );
    let failed = s.offsite(&["--json", "verify"]).expect(1);
    let v = json(&failed);
    let db = &v[0]["Ok"]["databases"][0];
    assert_eq!(db["ok"], false, "{v:#}");
    let error = db["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("pg_execute_server_program") || error.contains("permission denied"),
        "{error}"
    );
    assert_eq!(db["restored_as"]["role"], RESTORE_ROLE, "{v:#}");
    assert!(!marker.0.exists(), "the hostile COPY ran");
    assert_eq!(
        scratch_dbs_pg("priv_pg"),
        "",
        "scratch databases are dropped"
    );
    // The snapshot is still there, as a failed verification, for a person to look at.
    let snaps = s.offsite(&["--json", "snapshots"]).expect(0);
    assert_eq!(
        json(&snaps).as_array().map(Vec::len),
        Some(1),
        "{}",
        snaps.stdout
    );

    // What the refusal prevents: a superuser the config accepts restores it, and the program runs.
    config(
        &s,
        &sources,
        &format!("  scratch: {{ postgres: {{ url: '{PG_URL}', allow_privileged: true }} }}\n"),
    );
    s.offsite(&["verify"]).expect(0);
    assert!(
        marker.0.exists(),
        "the attack is real: as a superuser it ran"
    );
}

#[test]
fn a_hostile_mariadb_dump_cannot_write_files_on_the_scratch_server() {
    let src = MyDb::new("hostmy");
    src.exec("CREATE TABLE t (x INT); INSERT INTO t VALUES (1)");
    let s = Setup::new("priv-my");
    let marker = Marker::new("my");
    let evil = format!("SELECT 'pwned' INTO OUTFILE '{}';", marker.0.display());
    let dump = hostile_dump(&s, "mariadb-dump", "-- Dump completed", &evil);
    let sources = format!(
        "mysql: [{{ url: '{MY_URL}', databases: [{}], dump_command: '{}' }}]\n",
        src.name,
        dump.display()
    );
    config(
        &s,
        &sources,
        &format!("  scratch: {{ mysql: '{MY_URL}' }}\n"),
    );
    s.offsite_env(&["push"], &[("EVIL", &evil)]).expect(0);

    let refused = s.offsite(&["verify"]).expect(2);
    for want in [
        "office.scratch.mysql",
        "ALL PRIVILEGES",
        "INTO OUTFILE",
        "CREATE USER 'offsite_restore'",
        "allow_privileged: true",
    ] {
        assert!(refused.stderr.contains(want), "{want}: {}", refused.stderr);
    }
    assert!(!marker.0.exists(), "the hostile SELECT ran");

    config(
        &s,
        &sources,
        &format!("  scratch: {{ mysql: '{MY_RESTORE_URL}' }}\n"),
    );
    let failed = s.offsite(&["--json", "verify"]).expect(1);
    let v = json(&failed);
    let db = &v[0]["Ok"]["databases"][0];
    assert_eq!(db["ok"], false, "{v:#}");
    let error = db["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("FILE") || error.contains("Access denied"),
        "{error}"
    );
    assert!(!marker.0.exists(), "the hostile SELECT ran");

    // What the refusal prevents: as root (accepted in the config) the file is written.
    config(
        &s,
        &sources,
        &format!("  scratch: {{ mysql: {{ url: '{MY_URL}', allow_privileged: true }} }}\n"),
    );
    s.offsite(&["verify"]).expect(0);
    assert!(
        marker.0.exists(),
        "the attack is real: as root it wrote the file"
    );
}

/// `mariadb --sandbox` does not stop `LOAD DATA LOCAL INFILE`, which needs no server privilege:
/// the client itself reads the file, here the office's secret key, into a table a refresh would
/// hand to developers. offsite runs the client with --local-infile=0.
#[test]
fn a_hostile_mariadb_dump_cannot_read_the_office_machine_s_files() {
    let src = MyDb::new("hostli");
    src.exec("CREATE TABLE t (x INT); INSERT INTO t VALUES (1)");
    let s = Setup::new("priv-li");
    let key = s.path("keys/office.secret.asc");
    let evil = format!(
        "CREATE TABLE leak (l LONGTEXT); LOAD DATA LOCAL INFILE '{}' INTO TABLE leak;",
        key.display()
    );
    let dump = hostile_dump(&s, "mariadb-dump", "-- Dump completed", &evil);
    let sources = format!(
        "mysql: [{{ url: '{MY_URL}', databases: [{}], dump_command: '{}' }}]\n",
        src.name,
        dump.display()
    );
    config(
        &s,
        &sources,
        &format!("  scratch: {{ mysql: '{MY_RESTORE_URL}' }}\n"),
    );
    s.offsite_env(&["push"], &[("EVIL", &evil)]).expect(0);
    // Without the option the LOAD succeeds and, the leak table not being in the manifest's row
    // counts, verify would pass.
    let failed = s.offsite(&["--json", "verify"]).expect(1);
    let v = json(&failed);
    let error = v[0]["Ok"]["databases"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("local infile"), "{v:#}");
}

#[test]
fn refresh_refuses_a_superuser_target_unless_the_config_accepts_it_and_maps_ownership() {
    let src = PgDb::new("privrf");
    src.exec(
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1); GRANT SELECT ON t TO PUBLIC; \
         CREATE VIEW v AS SELECT x FROM t",
    );
    let dev = PgDb::named(&format!("{}_dev", src.name));
    let s = Setup::new("priv-rf");
    let sources = format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]\n",
        src.name
    );
    let refresh = |server: &str| {
        format!(
            "  scratch: {{ postgres: '{PG_RESTORE_URL}' }}\n  refresh:\n    - {{ from: '{}:postgres/{}', server: {server}, database: {} }}\n",
            s.host, src.name, dev.name
        )
    };
    config(&s, &sources, &refresh(&format!("'{PG_URL}'")));
    s.offsite(&["push"]).expect(0);
    let verified = json(&s.offsite(&["--json", "verify"]).expect(0));
    // pg_dump wrote the source's owners and grants; the scratch role left them out.
    let mapped = &verified[0]["Ok"]["databases"][0]["restored_as"];
    assert_eq!(mapped["role"], RESTORE_ROLE, "{verified:#}");
    assert!(
        mapped["owner_statements"].as_u64() >= Some(2),
        "{verified:#}"
    );
    assert!(
        mapped["privilege_statements"].as_u64() >= Some(1),
        "{verified:#}"
    );

    let refused = json(&s.offsite(&["--json", "refresh"]).expect(2));
    assert_eq!(
        refused["entries"][0]["rule"], "privileged-role",
        "{refused:#}"
    );
    assert!(!dev.exists(), "a refused refresh created the target");

    // Accepted in the config: the refresh runs (as the superuser), still without the dump's owners.
    config(
        &s,
        &sources,
        &refresh(&format!("{{ url: '{PG_URL}', allow_privileged: true }}")),
    );
    let done = json(&s.offsite(&["--json", "refresh"]).expect(0));
    assert_eq!(done["entries"][0]["status"], "refreshed", "{done:#}");
    assert_eq!(dev.exec("SELECT count(*) FROM v"), "1\n");

    // The least-privilege role refreshes it again, replacing the database it now owns.
    dev.exec(&format!(
        "ALTER DATABASE {} OWNER TO {RESTORE_ROLE}",
        dev.name
    ));
    config(&s, &sources, &refresh(&format!("'{PG_RESTORE_URL}'")));
    let again = json(&s.offsite(&["--json", "refresh"]).expect(0));
    assert_eq!(again["entries"][0]["replaced"], true, "{again:#}");
    assert_eq!(
        dev.exec("SELECT tableowner FROM pg_tables WHERE tablename = 't'"),
        format!("{RESTORE_ROLE}\n")
    );
}
