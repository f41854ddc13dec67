//! `offsite office --host NAME`: one office run per host, side by side. Two hosts push (the same
//! PostgreSQL database, and one a MariaDB database too), then an office run for each host runs at
//! once against real scratch servers; while both hold their locks, a second run for one of the
//! hosts and a run for every host are refused, naming who runs.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::cli::{bin, Setup};
use crate::common::db::{MyDb, PgDb, MY_RESTORE_URL, MY_URL, PG_RESTORE_URL, PG_URL};

/// Waits for `child` and returns its exit code and stderr (written to `stderr`).
fn finish(mut child: Child, stderr: &std::path::Path) -> (i32, String) {
    let end = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(st) = child.try_wait().expect("waiting for offsite") {
            let err = std::fs::read_to_string(stderr).unwrap_or_default();
            return (st.code().unwrap_or(-1), err);
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!(
                "office run did not end: {}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn office_runs_for_two_hosts_at_once_and_a_second_run_for_one_is_refused() {
    let s = Setup::new("hosts-a");
    s.add_host_key("hosts-b");
    let pg = PgDb::new("office_hosts");
    pg.exec("CREATE TABLE t (id int primary key, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g");
    let my = MyDb::new("office_hosts");
    my.exec("CREATE TABLE t (id int primary key, v text) ENGINE=InnoDB; INSERT INTO t VALUES (1, 'x'), (2, 'y')");
    let a = s.write(
        "hosts-a.yaml",
        &format!(
            "host: hosts-a\nstore: {{ local: store }}\nencryption: {{ recipients: [keys/office.cert.asc], signing_key: keys/hosts-a.secret.asc }}\npostgres: [{{ url: '{PG_URL}', databases: [{}] }}]\n",
            pg.name
        ),
    );
    // The same PostgreSQL database as hosts-a: both verifies restore `postgres/<name>` at once.
    let b = s.write(
        "hosts-b.yaml",
        &format!(
            "host: hosts-b\nstore: {{ local: store }}\nencryption: {{ recipients: [keys/office.cert.asc], signing_key: keys/hosts-b.secret.asc }}\npostgres: [{{ url: '{PG_URL}', databases: [{pg}] }}]\nmysql: [{{ url: '{MY_URL}', databases: [{my}] }}]\n",
            pg = pg.name,
            my = my.name
        ),
    );
    s.offsite_with(&a, &["push"], &[]).expect(0);
    s.offsite_with(&b, &["push"], &[]).expect(0);

    // Each run waits in its last step, notify, until the test releases it: both runs are then
    // provably under way at the same time, holding their locks.
    let dir = s.dir.path().display().to_string();
    let notify = s.write(
        "notify.sh",
        &format!(
            "touch '{dir}/notifying-'$$\nfor i in $(seq 2400); do [ -e '{dir}/release' ] && break; sleep 0.05; done\n"
        ),
    );
    let office = s.write(
        "office.yaml",
        &format!(
            "host: office\nstore: {{ local: store }}\noffice:\n  offsite_dir: offsite\n  decryption_key: keys/office.secret.asc\n  hosts: {{ hosts-a: keys/hosts-a.cert.asc, hosts-b: keys/hosts-b.cert.asc }}\n  scratch: {{ postgres: '{PG_RESTORE_URL}', mysql: '{MY_RESTORE_URL}' }}\n  notify: {{ command: \"sh '{}'\" }}\n",
            notify.display()
        ),
    );
    let spawn = |host: &str| {
        let stderr = s.path(&format!("office-{host}.stderr"));
        let child = Command::new(bin())
            .arg("-c")
            .arg(&office)
            .args(["office", "--host", host])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawning offsite office");
        (child, stderr)
    };
    let (run_a, err_a) = spawn("hosts-a");
    let (run_b, err_b) = spawn("hosts-b");
    let (pid_a, pid_b) = (run_a.id(), run_b.id());
    let notifying = || {
        std::fs::read_dir(s.dir.path())
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("notifying-"))
                    .count()
            })
            .unwrap_or(0)
    };
    let both = Instant::now() + Duration::from_secs(240);
    while notifying() < 2 {
        // A run refused or failed early never reaches notify: show why instead of timing out.
        for p in [&err_a, &err_b] {
            let err = std::fs::read_to_string(p).unwrap_or_default();
            assert!(
                !err.contains("office: exit code") && !err.contains("error: another"),
                "{}: {err}",
                p.display()
            );
        }
        assert!(
            Instant::now() < both,
            "both runs did not reach notify together:\n{}\n{}",
            std::fs::read_to_string(&err_a).unwrap_or_default(),
            std::fs::read_to_string(&err_b).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A second run for hosts-a is refused and names the first; so is a run for every host, which
    // names both; an unknown host is a usage error naming the configured ones.
    let again = s.offsite_with(&office, &["office", "--host", "hosts-a"], &[]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(
        again.stderr.contains(&format!(
            "another offsite office command for host hosts-a is running on {}/offsite (pid {pid_a}, since ",
            dir
        )),
        "{}",
        again.stderr
    );
    let whole = s.offsite_with(&office, &["office"], &[]);
    assert_eq!(whole.code, 1, "{}", whole.stderr);
    assert!(
        whole.stderr.contains("for single hosts are running")
            && whole
                .stderr
                .contains(&format!("hosts-a: pid {pid_a}, since "))
            && whole
                .stderr
                .contains(&format!("hosts-b: pid {pid_b}, since ")),
        "{}",
        whole.stderr
    );
    let pull = s.offsite_with(&office, &["pull"], &[]);
    assert_eq!(pull.code, 1, "{}", pull.stderr);
    let unknown = s.offsite_with(&office, &["office", "--host", "nope"], &[]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(
        unknown
            .stderr
            .contains("host nope is not in office.hosts (configured: hosts-a, hosts-b)"),
        "{}",
        unknown.stderr
    );

    std::fs::write(s.path("release"), "").expect("release");
    let (code_a, text_a) = finish(run_a, &err_a);
    let (code_b, text_b) = finish(run_b, &err_b);
    assert_eq!(code_a, 0, "hosts-a:\n{text_a}");
    assert_eq!(code_b, 0, "hosts-b:\n{text_b}");
    for (text, other) in [(&text_a, "hosts-b"), (&text_b, "hosts-a")] {
        assert!(
            !text.contains(&format!("{other}/")),
            "ran another host:\n{text}"
        );
    }
    assert!(text_b.contains("PASS"), "{text_b}");

    // Both verified; the report and the pull record know both hosts whichever run wrote last.
    let json = |rel: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(s.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}")))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
    };
    let report = json("offsite/reports/report.json");
    assert_eq!(report["ok"], true, "{report}");
    let pulled = json("offsite/reports/pull/latest.json");
    let hosts: Vec<&str> = pulled["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(|h| h["host"].as_str())
        .collect();
    assert_eq!(hosts, ["hosts-a", "hosts-b"], "{pulled}");
    // No scratch database of either run is left.
    let left =
        pg.exec("SELECT count(*) FROM pg_database WHERE datname LIKE 'offsite_verify_hosts_%'");
    assert_eq!(left.trim(), "0");

    // With the runs over, the whole office runs again.
    std::fs::remove_file(notify).expect("no notify needed");
    let after = s.offsite_with(&office, &["office"], &[]);
    assert!(
        !after.stderr.contains("another offsite office"),
        "{}",
        after.stderr
    );
}
