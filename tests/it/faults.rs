//! The fault suite: what a bad night does, and what a user checks afterwards.
//!
//! Each case is its own test, with its own temp dir (keys, config, store, state_dir), running the
//! real binary. So far:
//! - one run at a time: two pushes of one host started together (one commits, the other exits 1
//!   naming the holder); a lock held by someone else; `push --wait`; a push killed by SIGKILL
//!   leaves only a lock file the kernel already released; two office commands on one offsite dir.
//! - kill -9 of push at 20 random moments of a run, on a local store and on S3: every snapshot
//!   listed as complete restores afterwards, and the next push commits.
//! - the dump's own connection ended by the server (pg_terminate_backend, MariaDB KILL): the push
//!   fails naming the database, and nothing is committed. The rule: a snapshot is committed only
//!   when every source succeeded (no manifest when any source fails).
//! - [`leftovers`]: the temporary files of a killed push are listed, reported and pruned.
//! - [`lost_response`]: a response lost on the way back from S3, a key someone else wrote.
//! - [`corrupt`]: one byte of a part or of a PutObject changed on the way to S3.
//! - [`no_abort`]: a push credential that may not abort its multipart upload, and a push that fails
//!   mid-upload.
//! - [`stall`]: S3 stops answering mid-upload; a dump that stops writing.
//! - [`pull_parts`]: pull's ranged parts of a big object: a part's answer with a byte flipped
//!   (once, every time), and a pull killed with SIGKILL while the parts arrive.
//! - [`signals`]: SIGTERM during a push to S3 and during verify, SIGINT during a push to a local
//!   store: exit 143 / 130, nothing committed, no upload, temporary file, scratch database or
//!   child process left, and the next run succeeds.
//!
//! The S3 cases on the network go through [`proxy`], between push and a moto server of their own.

#[path = "faults/corrupt.rs"]
mod corrupt;
#[path = "faults/leftovers.rs"]
mod leftovers;
#[path = "faults/lost_response.rs"]
mod lost_response;
#[path = "faults/no_abort.rs"]
mod no_abort;
#[path = "faults/proxy.rs"]
mod proxy;
#[path = "faults/pull_parts.rs"]
mod pull_parts;
#[path = "faults/signals.rs"]
mod signals;
#[path = "faults/stall.rs"]
mod stall;

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::cli::{bin, Setup};
use crate::common::db::{PgDb, PG_URL};
use crate::common::office::OfficeSetup;

/// A child process that is killed if the test panics before it finished.
struct Proc {
    child: Child,
    stderr: PathBuf,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the exit (at most `secs`) and returns the exit code.
    fn finish(&mut self, secs: u64) -> i32 {
        let status = wait_exit(&mut self.child, secs)
            .unwrap_or_else(|| panic!("still running after {secs}s:\n{}", self.stderr()));
        status.code().unwrap_or(-1)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_exit(child: &mut Child, secs: u64) -> Option<ExitStatus> {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Polls `cond` every 20 ms for at most `secs`; panics naming `what` when it never holds.
fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

/// Starts `offsite -c CONFIG ARGS` in the background, stderr to a file of the setup (`tag`.stderr).
fn spawn(s: &Setup, config: &Path, args: &[&str], tag: &str) -> Proc {
    let stderr = s.path(&format!("{tag}.stderr"));
    let child = Command::new(bin())
        .arg("-c")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("spawning offsite");
    Proc { child, stderr }
}

/// A production config (no office section: push refuses the office's secret key) of `sources`.
fn push_config(s: &Setup, sources: &str) -> PathBuf {
    let host = &s.host;
    let path = s.path("push.yaml");
    std::fs::write(
        &path,
        format!(
            "host: {host}\nstore: {{ local: store }}\nstate_dir: state\nencryption:\n  recipients: [keys/office.cert.asc]\n  signing_key: keys/{host}.secret.asc\n{sources}\n"
        ),
    )
    .expect("writing the push config");
    path
}

fn lock_path(s: &Setup) -> PathBuf {
    s.path(&format!("state/{}.push.lock", s.host))
}

/// A small tree, so a push with nothing else is quick.
fn tree_sources(s: &Setup) -> String {
    s.write("tree/a.txt", "a\n");
    s.write("tree/sub/b.txt", "b\n");
    format!(
        "trees: [{{ name: www, path: '{}' }}]",
        s.path("tree").display()
    )
}

/// A `pg_dump` that, when asked to dump, leaves a `dumping.<pid>` file in the setup and then waits
/// until the setup has a `release` file (at most a minute) before running the real pg_dump. A push
/// using it holds its lock until the test says so: overlap that does not depend on timing.
fn held_pg_dump(s: &Setup) -> String {
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v pg_dump"])
            .output()
            .expect("sh")
            .stdout,
    )
    .expect("utf-8")
    .trim()
    .to_string();
    assert!(!real.is_empty(), "pg_dump is not on PATH");
    let dir = s.dir.path().display();
    let path = s.path("held-pg_dump");
    std::fs::write(
        &path,
        format!(
            "#!/bin/bash\nREAL={real}\nif [ \"$1\" = --version ]; then exec $REAL --version; fi\n\
             touch '{dir}/dumping.'$$\n\
             for i in $(seq 1200); do [ -e '{dir}/release' ] && break; sleep 0.05; done\n\
             exec $REAL \"$@\"\n"
        ),
    )
    .expect("writing the fake pg_dump");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

fn dumps_started(s: &Setup) -> usize {
    std::fs::read_dir(s.dir.path())
        .expect("temp dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("dumping."))
        .count()
}

/// Takes `path`'s flock from this test process, as another push would, and writes `content`.
fn hold_lock(path: &Path, content: &str) -> File {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .expect("opening the lock file");
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0, "the lock should be free");
    std::fs::write(path, content).expect("writing the lock file");
    f
}

fn complete(s: &Setup) -> Vec<String> {
    s.local_snapshots()
        .into_iter()
        .filter(|(_, c)| *c)
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn two_pushes_started_together_one_commits_the_other_exits_1_naming_the_holder() {
    let pg = PgDb::new("fault_race");
    pg.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)");
    let s = Setup::new("fault-race");
    let fake = held_pg_dump(&s);
    let config = push_config(
        &s,
        &format!(
            "postgres: [{{ url: '{PG_URL}', databases: [{}], pg_dump: '{fake}' }}]",
            pg.name
        ),
    );
    let mut a = spawn(&s, &config, &["push"], "a");
    let mut b = spawn(&s, &config, &["push"], "b");

    // Whichever took the lock waits in its dump until `release`, so the other one must give up
    // while the first is still running.
    wait_for(60, "one of the two pushes to exit", || {
        !a.running() || !b.running()
    });
    let (mut winner, mut loser) = if a.running() { (a, b) } else { (b, a) };
    let code = loser.finish(5);
    let msg = loser.stderr();
    assert_eq!(code, 1, "{msg}");
    let want = format!(
        "another push of fault-race is running (pid {}, since ",
        winner.pid()
    );
    assert!(msg.contains(&want), "expected {want:?} in:\n{msg}");
    assert!(
        msg.contains(&format!("it holds {}", lock_path(&s).display())),
        "{msg}"
    );
    assert!(winner.running(), "{}", winner.stderr());
    wait_for(60, "the winner's dump to start", || dumps_started(&s) == 1);

    std::fs::write(s.path("release"), "").expect("release");
    let code = winner.finish(120);
    assert_eq!(code, 0, "{}", winner.stderr());
    assert_eq!(dumps_started(&s), 1, "the refused push dumped nothing");
    let snaps = s.local_snapshots();
    assert_eq!(
        snaps.len(),
        1,
        "one snapshot, and nothing of the refused push: {snaps:?}"
    );
    assert!(snaps[0].1, "{snaps:?}");
}

#[test]
fn a_held_lock_refuses_push_at_once_and_push_runs_once_it_is_released() {
    let s = Setup::new("fault-held");
    let config = push_config(&s, &tree_sources(&s));
    let path = lock_path(&s);
    let me = std::process::id();
    let held = hold_lock(&path, &format!("{me}\n2026-12-04T02:15:00Z\n"));

    let started = Instant::now();
    let run = s.offsite_with(&config, &["push"], &[]).expect(1);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refused at once, not after {:?}",
        started.elapsed()
    );
    let want = format!(
        "another push of fault-held is running (pid {me}, since 2026-12-04T02:15:00Z); it holds {}",
        path.display()
    );
    assert!(
        run.stderr.contains(&want),
        "expected {want:?} in:\n{}",
        run.stderr
    );
    assert!(s.store_files().is_empty(), "{:?}", s.store_files());

    // A file that does not say who holds it: the message says so instead of inventing a pid.
    std::fs::write(&path, "").expect("emptying the lock file");
    let run = s.offsite_with(&config, &["push"], &[]).expect(1);
    assert!(
        run.stderr
            .contains("another push of fault-held is running (pid and start time unreadable"),
        "{}",
        run.stderr
    );

    drop(held);
    s.offsite_with(&config, &["push"], &[]).expect(0);
    assert_eq!(complete(&s).len(), 1);
}

#[test]
fn push_wait_waits_for_a_held_lock_and_commits_after_it_is_released() {
    let s = Setup::new("fault-wait");
    let config = push_config(&s, &tree_sources(&s));
    let me = std::process::id();
    let held = hold_lock(&lock_path(&s), &format!("{me}\n2026-12-04T02:15:00Z\n"));

    let mut p = spawn(&s, &config, &["push", "--wait"], "wait");
    wait_for(30, "push --wait to say that it waits", || {
        p.stderr()
            .contains("waiting for another push of fault-wait")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(p.running(), "push --wait gave up:\n{}", p.stderr());
    assert!(s.store_files().is_empty(), "{:?}", s.store_files());

    drop(held);
    let code = p.finish(60);
    let err = p.stderr();
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches("waiting for another push").count(), 1, "{err}");
    assert!(
        err.contains(&format!("pid {me}, since 2026-12-04T02:15:00Z")),
        "{err}"
    );
    assert_eq!(complete(&s).len(), 1);
}

#[test]
fn a_push_killed_by_sigkill_leaves_its_lock_file_and_the_next_push_runs() {
    let pg = PgDb::new("fault_kill");
    pg.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let s = Setup::new("fault-kill");
    let fake = held_pg_dump(&s);
    let config = push_config(
        &s,
        &format!(
            "postgres: [{{ url: '{PG_URL}', databases: [{}], pg_dump: '{fake}' }}]",
            pg.name
        ),
    );
    let mut p = spawn(&s, &config, &["push"], "killed");
    wait_for(60, "the push to start its dump", || dumps_started(&s) == 1);
    let path = lock_path(&s);
    let text = std::fs::read_to_string(&path).expect("the lock file");
    assert_eq!(
        text.lines().next(),
        Some(p.pid().to_string().as_str()),
        "{text}"
    );

    p.child.kill().expect("SIGKILL");
    let status = wait_exit(&mut p.child, 10).expect("killed");
    assert_eq!(status.code(), None, "killed by a signal");
    // The file stays, naming a dead process; only the kernel's lock counted, and it is gone.
    assert!(path.exists());
    std::fs::write(s.path("release"), "").expect("release");

    s.offsite_with(&config, &["push"], &[]).expect(0);
    assert_eq!(complete(&s).len(), 1, "{:?}", s.local_snapshots());
}

#[test]
fn a_second_office_command_is_refused_naming_the_first_ones_pid() {
    let o = OfficeSetup::new(&["fault-office-h"]);
    let s = &o.setup;
    let dir = s.dir.path().display().to_string();
    // The first office run stays in its last step, notify, until the test releases it.
    let notify = s.write(
        "notify.sh",
        &format!(
            "touch '{dir}/notifying'\nfor i in $(seq 1200); do [ -e '{dir}/release' ] && break; sleep 0.05; done\n"
        ),
    );
    o.config(&format!(
        "  notify: {{ command: \"sh '{}'\" }}",
        notify.display()
    ));
    let mut first = spawn(s, &s.config_path(), &["office"], "office1");
    wait_for(120, "the first office run to reach notify", || {
        s.path("notifying").exists()
    });

    let want = format!(
        "another offsite office command is running on {} (pid {}, since ",
        o.offsite_dir().display(),
        first.pid()
    );
    for cmd in [&["office"][..], &["pull"][..]] {
        let run = o.offsite(cmd).expect(1);
        assert!(
            run.stderr.contains(&want),
            "{cmd:?}: expected {want:?} in:\n{}",
            run.stderr
        );
        assert!(run.stderr.contains(".offsite.lock"), "{}", run.stderr);
    }

    std::fs::write(s.path("release"), "").expect("release");
    first.finish(60);
    let run = o.offsite(&["pull"]);
    assert!(
        !run.stderr.contains("another offsite office command"),
        "the lock died with its holder:\n{}",
        run.stderr
    );
}

#[test]
fn push_wait_behind_a_long_push_builds_on_it_without_a_clock_warning() {
    // The first push dumps PostgreSQL first (parallel: 1), held, and walks its tree only after the
    // second push started waiting. Had the waiting push kept the time it started at, that walk
    // would lie more than 5 s in its future: a forced full run and a "check this host's clock".
    let pg = PgDb::new("fault_long");
    pg.exec("CREATE TABLE t (x int)");
    let s = Setup::new("fault-long");
    let fake = held_pg_dump(&s);
    let trees = tree_sources(&s);
    let config = push_config(
        &s,
        &format!(
            "parallel: 1\npostgres: [{{ url: '{PG_URL}', databases: [{}], pg_dump: '{fake}' }}]\n{trees}",
            pg.name
        ),
    );
    let mut first = spawn(&s, &config, &["push"], "first");
    wait_for(60, "the first push to start its dump", || {
        dumps_started(&s) == 1
    });
    let mut second = spawn(&s, &config, &["push", "--wait"], "second");
    wait_for(30, "push --wait to say that it waits", || {
        second.stderr().contains("waiting for another push")
    });
    std::thread::sleep(Duration::from_millis(6500));
    std::fs::write(s.path("release"), "").expect("release");
    assert_eq!(first.finish(120), 0, "{}", first.stderr());
    let code = second.finish(120);
    let err = second.stderr();
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("in the future"), "{err}");
    assert!(
        !err.contains("full backup"),
        "an incremental on the first push:\n{err}"
    );
    assert_eq!(complete(&s).len(), 2);
}

#[test]
fn a_lock_file_push_cannot_open_is_a_setup_error() {
    let s = Setup::new("fault-perm");
    let config = push_config(&s, &tree_sources(&s));
    // A directory where the lock file should be: opening it fails even for root.
    std::fs::create_dir_all(lock_path(&s)).expect("mkdir");
    let run = s.offsite_with(&config, &["push"], &[]).expect(2);
    assert!(
        run.stderr.contains("fault-perm.push.lock"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("state_dir"), "{}", run.stderr);
    assert!(s.store_files().is_empty(), "{:?}", s.store_files());
}

/// A tree of `files` files of 200 KiB of seeded noise (incompressible, so volumes fill).
fn noisy_tree(s: &Setup, files: usize, seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for i in 0..files {
        let mut data = vec![0u8; 200 * 1024];
        rng.fill(&mut data[..]);
        std::fs::create_dir_all(s.path("tree/d")).expect("mkdir");
        std::fs::write(s.path(&format!("tree/d/f{i:02}.bin")), data).expect("write");
    }
}

/// kill -9 of push at 20 random moments of its run, in `store_yaml`: after each, every snapshot
/// `snapshots` lists as complete restores, and at the end a normal push commits and restores the
/// tree exactly. The moments are drawn from a printed seed, so a failure can be replayed.
fn killed_at_random_moments(s: &Setup, store_yaml: &str) {
    use rand::{Rng, SeedableRng};
    noisy_tree(s, 24, 7);
    let sources = format!(
        "trees: [{{ name: www, path: '{}', volume_size: 1MiB }}]",
        s.path("tree").display()
    );
    s.config_with_store(store_yaml, &sources);
    let started = Instant::now();
    s.offsite(&["push"]).expect(0);
    let run_ms = started.elapsed().as_millis().max(50) as u64;
    let seed: u64 = rand::random();
    eprintln!("kill moments drawn with seed {seed} over a {run_ms} ms run");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut checked: Vec<String> = Vec::new();
    let config = s.config_path().with_extension("production.yaml");
    for i in 0..20u32 {
        // Something new for the incrementals, and a full now and then.
        s.write(&format!("tree/night{i:02}.txt"), &format!("night {i}\n"));
        let mut args = vec!["push"];
        if i % 4 == 0 {
            args.push("--full");
        }
        let mut p = spawn(s, &config, &args, &format!("kill{i}"));
        std::thread::sleep(Duration::from_millis(rng.random_range(0..run_ms)));
        let _ = p.child.kill();
        let _ = p.child.wait();
        let listing = s.offsite(&["--json", "snapshots"]).expect(0);
        let rows: serde_json::Value =
            serde_json::from_str(&listing.stdout).expect("snapshots --json");
        for row in rows.as_array().expect("rows") {
            let id = row["id"].as_str().expect("id").to_string();
            if row["complete"] != true || checked.contains(&id) {
                continue;
            }
            let to = s.path(&format!("restored-{id}"));
            let run = s.offsite(&[
                "restore",
                "--snapshot",
                &id,
                "--tree",
                "www",
                "--to",
                to.to_str().expect("utf-8"),
            ]);
            assert_eq!(
                run.code, 0,
                "kill {i} (seed {seed}): complete snapshot {id} does not restore:\n{}",
                run.stderr
            );
            std::fs::remove_dir_all(&to).ok();
            checked.push(id);
        }
    }
    let run = s.offsite(&["push"]);
    assert!(
        run.code == 0 || run.code == 3,
        "the push after the kills (seed {seed}): {}",
        run.stderr
    );
    let to = s.path("restored-latest");
    s.offsite(&[
        "restore",
        "--tree",
        "www",
        "--to",
        to.to_str().expect("utf-8"),
    ])
    .expect(0);
    crate::common::tree::assert_same(
        &crate::common::tree::describe(&s.path("tree")),
        &crate::common::tree::describe(&to),
        &format!("the tree after 20 kills (seed {seed})"),
    );
}

#[test]
fn push_killed_at_random_moments_leaves_a_store_whose_complete_snapshots_restore() {
    let s = Setup::new("kill-local");
    killed_at_random_moments(&s, "store: { local: store }");
}

#[test]
fn push_killed_at_random_moments_on_s3_leaves_complete_snapshots_that_restore() {
    let bucket = crate::common::s3::TestBucket::new("kill9");
    let s = Setup::new("kill-s3");
    let store = format!(
        "store:\n  s3: {{ bucket: {}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: test, secret_access_key: test, part_size: 5MiB }}",
        bucket.name,
        crate::common::s3::endpoint()
    );
    killed_at_random_moments(&s, &store);
}

/// A database whose dump takes a few seconds: one table of 2 million rows.
fn slow_pg_db(tag: &str) -> PgDb {
    let db = PgDb::new(tag);
    db.exec(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 2000000) g",
    );
    db
}

/// Polls `sql` (one value per row) until it returns a row, for at most 60 s; returns that row.
fn first_row(mut query: impl FnMut() -> String, what: &str) -> String {
    let mut found = String::new();
    wait_for(60, what, || {
        found = query()
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        !found.is_empty()
    });
    found
}

#[test]
fn a_dump_whose_connection_is_terminated_fails_the_push_naming_the_database() {
    let db = slow_pg_db("fault_term");
    let s = Setup::new("fault-term");
    let config = push_config(
        &s,
        &format!(
            "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]",
            db.name
        ),
    );
    let mut p = spawn(&s, &config, &["push"], "push");
    // The server ends the dump's own connection while its COPY runs, as an admin or a failover
    // would.
    let admin = PgDb::named("postgres");
    let pid = first_row(
        || {
            admin.exec(&format!(
                "SELECT pid FROM pg_stat_activity WHERE datname = '{}' AND application_name = 'pg_dump' AND query ILIKE 'COPY%'",
                db.name
            ))
        },
        "pg_dump's COPY",
    );
    admin.exec(&format!("SELECT pg_terminate_backend({pid})"));
    let code = p.finish(60);
    let stderr = p.stderr();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("postgres/{}", db.name)),
        "names the database: {stderr}"
    );
    assert!(complete(&s).is_empty(), "{:?}", s.local_snapshots());
}

#[test]
fn a_mariadb_dump_whose_connection_is_killed_fails_the_push_naming_the_database() {
    let db = crate::common::db::MyDb::new("fault_kill");
    db.exec("CREATE TABLE big (id INT PRIMARY KEY, v CHAR(32)) ENGINE=InnoDB");
    db.exec("INSERT INTO big SELECT seq, md5(seq) FROM seq_1_to_1000000");
    let s = Setup::new("fault-kill");
    let config = push_config(
        &s,
        &format!(
            "mysql: [{{ url: '{}', databases: [{}] }}]",
            crate::common::db::MY_URL,
            db.name
        ),
    );
    let mut p = spawn(&s, &config, &["push"], "push");
    let id = first_row(
        || {
            crate::common::db::MyDb::named("information_schema").exec(&format!(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{}' AND INFO LIKE 'SELECT%big%'",
                db.name
            ))
        },
        "mariadb-dump's SELECT",
    );
    crate::common::db::MyDb::named("information_schema").exec(&format!("KILL {id}"));
    let code = p.finish(60);
    let stderr = p.stderr();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("mysql/{}", db.name)),
        "names the database: {stderr}"
    );
    assert!(complete(&s).is_empty(), "{:?}", s.local_snapshots());
}
