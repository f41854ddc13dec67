//! Faults: SIGTERM or SIGINT in the middle of a run. push stops its dump (and what the dump
//! started), aborts its multipart upload or removes its temporary file, commits nothing and exits
//! 143 (SIGTERM) or 130 (SIGINT); the previous snapshot is untouched and the next push commits.
//! verify stops its restore client, drops its scratch database, records nothing and exits 143.
//!
//! Every wait is for a condition (a dump holding with its upload begun, a restore client
//! running), never a blind sleep. The stand-ins for pg_dump and psql are scripts that run the real
//! tool, except while the test holds them: then they leave `<what>.<pid>` in the setup and wait.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::cli::{bin, Setup};
use crate::common::db::{psql, PgDb, PG_RESTORE_URL, PG_URL};
use crate::common::s3::{raw_client, runtime, PrivateMoto, ACCESS_KEY, SECRET_KEY};
use crate::faults::{complete, wait_for, Proc};

/// What the clean path may take after the signal, at most: children get 3 s after SIGTERM before
/// SIGKILL, an abort a few more. The watchdog would end the run after 30 s.
const STOPS_WITHIN: Duration = Duration::from_secs(20);

/// The full path of a tool on PATH.
fn real(tool: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .expect("sh");
    let path = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert!(!path.is_empty(), "{tool} is not on PATH");
    path
}

fn executable(path: &Path, script: &str) {
    std::fs::write(path, script).expect("writing a stand-in");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A `pg_dump` that is the real one, except while the setup has a `hold` file: then it leaves
/// `dumping.<pid>` and writes base64 noise, 4 MB every tenth of a second, for a minute before it
/// fails. So a dump is always under way, and on S3 soon a multipart upload: zstd shrinks the noise
/// by only a quarter. (A dump that paused instead would leave its last bytes in zstd's buffers.)
fn holding_pg_dump(s: &Setup) -> String {
    let dir = s.dir.path().display();
    let path = s.path("holding-pg_dump");
    executable(
        &path,
        &format!(
            "#!/bin/bash\nREAL={}\nif [ \"$1\" = --version ]; then exec $REAL --version; fi\n\
             if [ -e '{dir}/hold' ]; then\n\
               touch '{dir}/dumping.'$$\n\
               for i in $(seq 600); do head -c 3000000 /dev/urandom | base64; sleep 0.1; done\n\
               exit 1\n\
             fi\n\
             exec $REAL \"$@\"\n",
            real("pg_dump")
        ),
    );
    path.display().to_string()
}

/// Pids of the files `<prefix>.<pid>` in the setup.
fn marked_pids(s: &Setup, prefix: &str) -> Vec<i32> {
    std::fs::read_dir(s.dir.path())
        .expect("temp dir")
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix(&format!("{prefix}."))
                .and_then(|p| p.parse().ok())
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Processes whose command line contains `marker` (`pgrep -f`): the stand-ins' paths, unique to
/// their setup. (The database names are percent-encoded in `--dbname`.)
fn processes_with(marker: &str) -> String {
    pgrep(&["-a", "-f", marker])
}

/// Live processes of the process group `pgid` (a stand-in leads one, with what it started), as
/// `pid name` lines. Zombies are left out: an orphan is reaped by init whenever init gets to it.
fn group_members(pgid: i32) -> String {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...; comm may hold spaces, so split after its ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            out.push(head.replace(" (", " "));
        }
    }
    out.join("\n")
}

fn pgrep(args: &[&str]) -> String {
    let out = Command::new("pgrep").args(args).output().expect("pgrep");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn send(p: &Proc, sig: i32) -> Instant {
    // SAFETY: kill takes plain integers; the pid is our own child's, not reaped yet.
    let rc = unsafe { libc::kill(p.pid() as i32, sig) };
    assert_eq!(rc, 0, "sending signal {sig}");
    Instant::now()
}

/// Waits for the exit after a signal sent at `sent`; returns the exit code and stderr, having
/// checked that the clean path, not the watchdog, ended the run.
fn stopped(p: &mut Proc, sent: Instant) -> (i32, String) {
    let code = p.finish(60);
    let took = sent.elapsed();
    let stderr = p.stderr();
    eprintln!("stopped {took:?} after the signal:\n{stderr}");
    assert!(
        took < STOPS_WITHIN,
        "the run took {took:?} to stop after the signal:\n{stderr}"
    );
    assert!(
        !stderr.contains("did not end within"),
        "the watchdog ended the run, not its clean path:\n{stderr}"
    );
    (code, stderr)
}

/// Starts `offsite -c CONFIG ARGS` in the background with more environment.
fn spawn_env(s: &Setup, config: &Path, args: &[&str], env: &[(&str, String)], tag: &str) -> Proc {
    let stderr = s.path(&format!("{tag}.stderr"));
    let mut cmd = Command::new(bin());
    cmd.arg("-c")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc {
        child: cmd.spawn().expect("spawning offsite"),
        stderr,
    }
}

fn snapshots_json(s: &Setup) -> Vec<(String, bool)> {
    let run = s.offsite(&["snapshots", "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("snapshots --json");
    v.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("id").to_string(),
                r["complete"] == true,
            )
        })
        .collect()
}

const BUCKET: &str = "offsite-signals";

#[test]
fn sigterm_during_a_push_to_s3_aborts_the_upload_stops_the_dump_commits_nothing_and_exits_143() {
    let moto = PrivateMoto::start();
    let admin = raw_client(&moto.endpoint, ACCESS_KEY, SECRET_KEY);
    runtime()
        .block_on(admin.create_bucket().bucket(BUCKET).send())
        .expect("create bucket");
    let uploads = || {
        runtime()
            .block_on(admin.list_multipart_uploads().bucket(BUCKET).send())
            .expect("list multipart uploads")
            .uploads()
            .iter()
            .map(|u| {
                format!(
                    "{} {}",
                    u.key().unwrap_or("?"),
                    u.upload_id().unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
    };

    let pg = PgDb::new("sig_s3");
    pg.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (4711)");
    let s = Setup::new("sig-s3");
    s.write("www/a.txt", "a\n");
    let fake = holding_pg_dump(&s);
    let store = format!(
        "store:\n  s3: {{ bucket: {BUCKET}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: '{ACCESS_KEY}', secret_access_key: '{SECRET_KEY}', part_size: 5MiB }}",
        moto.endpoint
    );
    let sources = format!(
        "trees: [{{ name: www, path: www }}]\npostgres: [{{ url: '{PG_URL}', databases: [{}], pg_dump: '{fake}' }}]",
        pg.name
    );
    s.config_with_store(&store, &sources);
    let push_config = s.write(
        "push.yaml",
        &format!(
            "host: sig-s3\n{store}\nstate_dir: state\nencryption:\n  recipients: [keys/office.cert.asc]\n  signing_key: keys/sig-s3.secret.asc\n{sources}\n"
        ),
    );

    s.offsite_with(&push_config, &["push"], &[]).expect(0);
    let before = snapshots_json(&s);
    assert_eq!(before.len(), 1, "{before:?}");
    let previous = before[0].0.clone();

    std::fs::write(s.path("hold"), "").expect("hold");
    let mut p = crate::faults::spawn(&s, &push_config, &["push"], "interrupted");
    wait_for(
        60,
        "the dump to hold with its multipart upload begun",
        || {
            assert!(p.running(), "push ended early:\n{}", p.stderr());
            marked_pids(&s, "dumping").len() == 1 && !uploads().is_empty()
        },
    );
    let dump = marked_pids(&s, "dumping")[0];
    assert!(!processes_with(&fake).is_empty(), "the dump stand-in runs");
    assert!(!group_members(dump).is_empty(), "it leads a process group");

    let sent = send(&p, libc::SIGTERM);
    let (code, stderr) = stopped(&mut p, sent);
    assert_eq!(code, 143, "{stderr}");
    assert!(
        stderr.contains("push of sig-s3 interrupted by SIGTERM: nothing committed"),
        "{stderr}"
    );
    assert!(!stderr.contains("left behind"), "{stderr}");

    // What a user checks: the upload was aborted, the dump is gone, nothing new is complete.
    assert_eq!(uploads(), Vec::<String>::new(), "multipart uploads left");
    assert!(!alive(dump), "the dump stand-in (pid {dump}) still runs");
    assert_eq!(processes_with(&fake), "", "a dump stand-in is left");
    assert_eq!(group_members(dump), "", "what the dump started is left");
    let after = snapshots_json(&s);
    let complete_ids: Vec<&String> = after.iter().filter(|(_, c)| *c).map(|(i, _)| i).collect();
    assert_eq!(complete_ids, vec![&previous], "{after:?}");

    // The previous snapshot still restores, both its database and its tree.
    let dump_text = s
        .offsite(&[
            "restore",
            "--snapshot",
            &previous,
            "--db",
            &format!("postgres/{}", pg.name),
            "--stdout",
        ])
        .expect(0)
        .stdout;
    assert!(dump_text.contains("4711"), "{dump_text}");
    let to = s.path("restored");
    s.offsite(&[
        "restore",
        "--snapshot",
        &previous,
        "--tree",
        "www",
        "--to",
        to.to_str().expect("utf-8"),
    ])
    .expect(0);
    assert_eq!(std::fs::read_to_string(to.join("a.txt")).unwrap(), "a\n");

    // And the next push commits.
    std::fs::remove_file(s.path("hold")).expect("unhold");
    s.offsite_with(&push_config, &["push"], &[]).expect(0);
    let last = snapshots_json(&s);
    assert_eq!(last.iter().filter(|(_, c)| *c).count(), 2, "{last:?}");
    assert_eq!(uploads(), Vec::<String>::new());
}

/// Files anywhere under `dir` whose name contains `.partial-` (the local store's temporary files).
fn partial_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(partial_files(&p));
            } else if e.file_name().to_string_lossy().contains(".partial-") {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn sigint_during_a_push_to_a_local_store_removes_its_temporary_file_and_exits_130() {
    let pg = PgDb::new("sig_local");
    pg.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let s = Setup::new("sig-local");
    let fake = holding_pg_dump(&s);
    let config = crate::faults::push_config(
        &s,
        &format!(
            "postgres: [{{ url: '{PG_URL}', databases: [{}], pg_dump: '{fake}' }}]",
            pg.name
        ),
    );
    std::fs::write(s.path("hold"), "").expect("hold");
    let mut p = crate::faults::spawn(&s, &config, &["push"], "interrupted");
    let store = s.path("store");
    wait_for(60, "the dump to hold with its object being written", || {
        assert!(p.running(), "push ended early:\n{}", p.stderr());
        marked_pids(&s, "dumping").len() == 1 && !partial_files(&store).is_empty()
    });
    let dump = marked_pids(&s, "dumping")[0];

    let sent = send(&p, libc::SIGINT);
    let (code, stderr) = stopped(&mut p, sent);
    assert_eq!(code, 130, "{stderr}");
    assert!(
        stderr.contains("push of sig-local interrupted by SIGINT: nothing committed"),
        "{stderr}"
    );
    assert_eq!(partial_files(&store), Vec::<String>::new());
    assert!(!alive(dump), "the dump stand-in (pid {dump}) still runs");
    assert_eq!(processes_with(&fake), "");
    assert_eq!(group_members(dump), "");
    assert!(complete(&s).is_empty(), "{:?}", s.local_snapshots());
    assert!(
        !s.store_files()
            .iter()
            .any(|f| f.ends_with("manifest.json.pgp")),
        "{:?}",
        s.store_files()
    );

    std::fs::remove_file(s.path("hold")).expect("unhold");
    s.offsite_with(&config, &["push"], &[]).expect(0);
    assert_eq!(complete(&s).len(), 1, "{:?}", s.local_snapshots());
}

/// Scratch databases for database `db` of host `host` on the local PostgreSQL
/// (`offsite_verify_<host>_<db>_<hex>`).
fn scratch_dbs(host: &str, db: &str) -> Vec<String> {
    let prefix = format!("offsite_verify_{}_{db}_", host.replace('-', "_"));
    let out = psql("postgres")
        .args([
            "-At",
            "-c",
            "SELECT datname FROM pg_database WHERE datname LIKE 'offsite%'",
        ])
        .output()
        .expect("psql");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn sigterm_during_verify_drops_the_scratch_database_stops_psql_records_nothing_and_exits_143() {
    let pg = PgDb::new("sig_verify");
    pg.exec("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g");
    let s = Setup::new("sig-verify");
    let config = s.write(
        "office.yaml",
        &format!(
            "host: sig-verify\nstore: {{ local: store }}\nstate_dir: state\nencryption:\n  recipients: [keys/office.cert.asc]\n  signing_key: keys/sig-verify.secret.asc\n\
             office:\n  offsite_dir: offsite\n  decryption_key: keys/office.secret.asc\n  hosts: {{ sig-verify: keys/sig-verify.cert.asc }}\n  scratch: {{ postgres: '{PG_RESTORE_URL}' }}\n\
             postgres: [{{ url: '{PG_URL}', databases: [{}] }}]\n",
            pg.name
        ),
    );
    s.offsite_with(&config, &["push"], &[]).expect(0);
    s.offsite_with(&config, &["pull"], &[]).expect(0);

    // A psql that holds (while the restore writes into its stdin) until the test says so.
    let dir = s.dir.path().display();
    std::fs::create_dir_all(s.path("bin")).expect("bin dir");
    executable(
        &s.path("bin/psql"),
        &format!(
            "#!/bin/bash\nREAL={}\nif [ \"$1\" = --version ]; then exec $REAL --version; fi\n\
             touch '{dir}/restoring.'$$\n\
             for i in $(seq 1200); do sleep 0.05; done\n\
             exit 1\n",
            real("psql")
        ),
    );
    let path = format!(
        "{}:{}",
        s.path("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut p = spawn_env(&s, &config, &["verify"], &[("PATH", path)], "verify");
    wait_for(60, "the restore into the scratch database to run", || {
        assert!(p.running(), "verify ended early:\n{}", p.stderr());
        // One psql per connection of the parallel load (office.restore_jobs, 2 or more).
        marked_pids(&s, "restoring").len() >= 2 && !scratch_dbs("sig-verify", &pg.name).is_empty()
    });
    let psql_pids = marked_pids(&s, "restoring");
    let scratch = scratch_dbs("sig-verify", &pg.name);
    assert_eq!(scratch.len(), 1, "{scratch:?}");
    let stand_in = s.path("bin/psql").display().to_string();
    assert!(
        !processes_with(&stand_in).is_empty(),
        "the psql stand-in runs"
    );

    let sent = send(&p, libc::SIGTERM);
    let (code, stderr) = stopped(&mut p, sent);
    assert_eq!(code, 143, "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert!(stderr.contains("no result recorded"), "{stderr}");
    assert!(!stderr.contains("left behind"), "{stderr}");
    assert_eq!(scratch_dbs("sig-verify", &pg.name), Vec::<String>::new());
    for psql_pid in psql_pids {
        assert!(
            !alive(psql_pid),
            "the psql stand-in (pid {psql_pid}) still runs"
        );
        assert_eq!(group_members(psql_pid), "");
    }
    assert_eq!(processes_with(&stand_in), "");
    let registrations = s.path("offsite/reports/scratch");
    let left: Vec<_> = std::fs::read_dir(&registrations)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "scratch registrations left: {left:?}");

    // The next verify (with the real psql) passes, and finds nothing stale to drop.
    let run = s.offsite_with(&config, &["verify"], &[]).expect(0);
    assert!(!run.stderr.contains("stale scratch"), "{}", run.stderr);
    assert_eq!(scratch_dbs("sig-verify", &pg.name), Vec::<String>::new());
}

/// A `pg_dump` that ignores SIGTERM and SIGINT (and so do the `sleep`s it starts), leaves
/// `dumping.<pid>` and then says nothing for a minute, like a dump waiting for a lock. Silent, so
/// that no failing store write ends it: only the SIGKILL after the grace can.
fn stubborn_pg_dump(s: &Setup) -> String {
    let dir = s.dir.path().display();
    let path = s.path("stubborn-pg_dump");
    executable(
        &path,
        &format!(
            "#!/bin/bash\nif [ \"$1\" = --version ]; then exec {} --version; fi\n\
             trap '' TERM INT\n\
             touch '{dir}/dumping.'$$\n\
             for i in $(seq 1200); do sleep 0.05; done\n\
             exit 1\n",
            real("pg_dump")
        ),
    );
    path.display().to_string()
}

#[test]
fn a_dump_that_ignores_sigterm_is_still_stopped_and_a_second_sigterm_ends_the_run() {
    let pg = PgDb::new("sig_stubborn");
    pg.exec("CREATE TABLE t (x int)");
    let s = Setup::new("sig-stubborn");
    let fake = stubborn_pg_dump(&s);
    let config = crate::faults::push_config(
        &s,
        &format!(
            "postgres: [{{ url: '{PG_URL}', databases: [{}], pg_dump: '{fake}' }}]",
            pg.name
        ),
    );
    let store = s.path("store");

    // One SIGTERM: the dump ignores it, gets SIGKILL after the grace (3 s), and push ends cleanly.
    let mut p = crate::faults::spawn(&s, &config, &["push"], "graced");
    wait_for(60, "the dump to run", || {
        assert!(p.running(), "push ended early:\n{}", p.stderr());
        marked_pids(&s, "dumping").len() == 1 && !partial_files(&store).is_empty()
    });
    let dump = marked_pids(&s, "dumping")[0];
    let sent = send(&p, libc::SIGTERM);
    let (code, stderr) = stopped(&mut p, sent);
    assert_eq!(code, 143, "{stderr}");
    assert!(
        stderr.contains("push of sig-stubborn interrupted by SIGTERM: nothing committed"),
        "{stderr}"
    );
    assert!(!alive(dump), "the dump stand-in (pid {dump}) still runs");
    assert_eq!(group_members(dump), "");
    assert_eq!(partial_files(&store), Vec::<String>::new());
    std::fs::remove_file(s.path(&format!("dumping.{dump}"))).expect("marker");

    // SIGTERM twice: the second ends the run at once if the first's clean stop is still going
    // (whether it still is depends on which thread notices first: both ends are checked).
    let mut p = crate::faults::spawn(&s, &config, &["push"], "twice");
    wait_for(60, "the dump to run", || {
        assert!(p.running(), "push ended early:\n{}", p.stderr());
        marked_pids(&s, "dumping").len() == 1 && !partial_files(&store).is_empty()
    });
    let dump = marked_pids(&s, "dumping")[0];
    let partial = partial_files(&store);
    send(&p, libc::SIGTERM);
    send(&p, libc::SIGTERM);
    let code = p.finish(60);
    let stderr = p.stderr();
    assert_eq!(code, 143, "{stderr}");
    wait_for(10, "the dump stand-in to be gone", || {
        group_members(dump).is_empty()
    });
    if stderr.contains("push of sig-stubborn interrupted again by SIGTERM: exiting at once") {
        // No time to clean up: what is left is named, and the temporary file is never listed.
        assert!(stderr.contains("; left behind: "), "{stderr}");
        assert!(
            stderr.contains(&format!("the temporary file {} (hidden", partial[0])),
            "{stderr}"
        );
    } else {
        assert!(
            stderr.contains("push of sig-stubborn interrupted by SIGTERM: nothing committed"),
            "{stderr}"
        );
        assert_eq!(partial_files(&store), Vec::<String>::new());
    }
    assert!(complete(&s).is_empty(), "{:?}", s.local_snapshots());
}
