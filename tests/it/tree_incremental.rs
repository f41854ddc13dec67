//! File-tree incrementals through the real binary: chains of runs with every kind of change,
//! restores at each point (whole, `--at`, `--path`), state loss and aging, chain-aware prune and
//! verify, and a file that grows while it is read.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::cli::{Run, Setup};
use crate::common::db::{PgDb, PG_URL};
use crate::common::s3::{endpoint, TestBucket, ACCESS_KEY, SECRET_KEY};
use crate::common::tree::{assert_same, describe};
use anyhow::Result;
use offsite::crypto::{load_certs, DecryptionKeys};
use offsite::restore::tree::{restore_tree, Selection, TreeSource};
use offsite::snapshot::list::{find, load_manifest};
use offsite::store::local::LocalStore;
use offsite::store::{ObjectInfo, ObjectWriter, Store};

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, data).expect("write");
}

fn noise(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Files must have changed more than a second before a run for the next run to trust its read of
/// them (the racy-file rule); tests wait that long after changing the tree.
fn settle() {
    std::thread::sleep(Duration::from_millis(1100));
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

fn push(s: &Setup, env: &[(&str, &str)], code: i32) -> String {
    let run = s.offsite_env(&["--json", "push"], env).expect(code);
    json(&run)["snapshot"]
        .as_str()
        .expect("snapshot id")
        .to_string()
}

/// The `trees[0]` of each snapshot, by id, from `snapshots --json`.
fn tree_runs(s: &Setup) -> BTreeMap<String, serde_json::Value> {
    let v = json(&s.offsite(&["--json", "snapshots"]).expect(0));
    v.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("id").to_string(),
                r["trees"][0].clone(),
            )
        })
        .collect()
}

/// Restores with the CLI and returns its `--json` report.
fn restore(s: &Setup, to: &Path, args: &[&str]) -> serde_json::Value {
    json(&restore_run(s, to, args).expect(0))
}

/// `offsite --json restore --host HOST --tree www --to TO ARGS`, whatever its exit code.
fn restore_run(s: &Setup, to: &Path, args: &[&str]) -> Run {
    let mut all = vec![
        "--json",
        "restore",
        "--host",
        &s.host,
        "--tree",
        "www",
        "--to",
        to.to_str().expect("utf-8 temp path"),
    ];
    all.extend_from_slice(args);
    s.offsite(&all)
}

fn objects_read(report: &serde_json::Value) -> Vec<String> {
    report["stats"]["objects_read"]
        .as_array()
        .expect("objects_read")
        .iter()
        .map(|v| v.as_str().expect("key").to_string())
        .collect()
}

/// A store that counts what is fetched through it.
struct Counting {
    inner: Arc<dyn Store>,
    opened: std::sync::Mutex<Vec<String>>,
    lists: AtomicUsize,
}

impl Store for Counting {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        self.inner.create(key)
    }
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        self.opened.lock().expect("lock").push(key.to_string());
        self.inner.open(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix)
    }
}

/// Restores `paths` of snapshot `id` through a counting store; returns the keys opened.
fn restore_counted(s: &Setup, id: &str, paths: &[&str], to: &Path) -> Result<Vec<String>> {
    let store = Counting {
        inner: Arc::new(LocalStore::new(s.path("store"))?),
        opened: Default::default(),
        lists: AtomicUsize::new(0),
    };
    let keys = DecryptionKeys::new(load_certs(&s.path("keys/office.secret.asc"))?)?;
    let signers = load_certs(&s.path(&format!("keys/{}.cert.asc", s.host)))?;
    let snap = find(&store, &s.host, id)?;
    let manifest = load_manifest(&store, &snap, &keys, &signers)?;
    let dir = snap.dir();
    let src = TreeSource {
        store: &store,
        snapshot_dir: &dir,
        manifest: &manifest,
        keys: &keys,
        signers: &signers,
    };
    let root = manifest.trees[0].path.clone();
    restore_tree(&src, "www", to, Selection::new(paths, &root)?)?;
    let opened = store.opened.lock().expect("lock").clone();
    Ok(opened
        .into_iter()
        .filter(|k| !k.ends_with("manifest.json.pgp"))
        .collect())
}

/// One point of the chain: its snapshot, when it was taken, and the tree as it was.
struct Point {
    id: String,
    after: String,
    tree: BTreeMap<Vec<u8>, String>,
}

impl Point {
    /// Describes the tree, then pushes it.
    fn push(s: &Setup, src: &Path) -> Self {
        let tree = describe(src);
        let id = push(s, &[], 0);
        Point {
            id,
            after: rfc3339_now(),
            tree,
        }
    }
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

/// The chain test, on whatever store `s` is configured with.
fn chain_of_changes(s: &Setup, src: &Path, local: bool) {
    // Run 1: a full backup of a tree with some of everything.
    write(src, "a.txt", b"alpha\n");
    write(src, "b.txt", b"bravo\n");
    write(src, "d/c.txt", b"charlie\n");
    write(src, "d/e/deep.txt", b"deep\n");
    write(src, "big1.bin", &noise(700_000, 1));
    write(src, "big2.bin", &noise(700_000, 2));
    write(src, "hard1", b"shared inode\n");
    fs::hard_link(src.join("hard1"), src.join("hard2")).expect("hardlink");
    write(src, "caf\u{e9}.txt", b"latin");
    fs::write(src.join(OsStr::from_bytes(b"raw\xff")), b"not utf-8").expect("raw name");
    fs::create_dir(src.join("empty")).expect("empty dir");
    write(src, "hl/a-file", b"linked from elsewhere\n");
    write(src, "hm/x.txt", b"x-ray\n");
    fs::hard_link(src.join("hl/a-file"), src.join("hm/y")).expect("hardlink across dirs");
    std::os::unix::fs::symlink("a.txt", src.join("link")).expect("symlink");
    settle();
    let mut points = vec![Point::push(s, src)];

    // Run 2: modify, add, delete, rename, chmod, retarget a symlink.
    settle();
    fs::OpenOptions::new()
        .append(true)
        .open(src.join("a.txt"))
        .and_then(|mut f| f.write_all(b"more alpha\n"))
        .expect("append");
    write(src, "new.txt", b"november\n");
    fs::remove_file(src.join("b.txt")).expect("delete");
    fs::rename(src.join("d/c.txt"), src.join("d/c-renamed.txt")).expect("rename");
    fs::set_permissions(src.join("d/e/deep.txt"), fs::Permissions::from_mode(0o600))
        .expect("chmod");
    fs::remove_file(src.join("link")).expect("unlink");
    std::os::unix::fs::symlink("new.txt", src.join("link")).expect("retarget");
    settle();
    points.push(Point::push(s, src));

    // Run 3: a big file changes, a directory goes, another comes, a hardlink is broken.
    settle();
    write(src, "big2.bin", &noise(650_000, 3));
    fs::remove_dir_all(src.join("d/e")).expect("rmdir");
    write(src, "d/e2/x.txt", b"x-ray\n");
    fs::remove_file(src.join("hard2")).expect("unlink hardlink");
    settle();
    points.push(Point::push(s, src));

    // snapshots shows how each run went.
    let runs = tree_runs(s);
    assert_eq!(runs[&points[0].id]["run"], "full");
    assert_eq!(runs[&points[1].id]["run"], "incremental");
    assert_eq!(runs[&points[1].id]["parent"], points[0].id.as_str());
    assert_eq!(runs[&points[2].id]["run"], "incremental");
    assert_eq!(runs[&points[2].id]["parent"], points[1].id.as_str());
    // Run 3 read big2.bin, x.txt and hard1 (its link count changed its ctime): not big1.bin.
    let new_bytes = runs[&points[2].id]["new_bytes"]
        .as_u64()
        .expect("new_bytes");
    assert!(
        (650_000..1_000_000).contains(&new_bytes),
        "run 3 must not read unchanged files again: {new_bytes} bytes read"
    );

    let out = tempfile::tempdir().expect("tempdir");
    for (i, p) in points.iter().enumerate() {
        // The whole tree at each point, by id.
        let to = out.path().join(format!("full-{i}"));
        restore(s, &to, &["--snapshot", &p.id]);
        assert_same(&p.tree, &describe(&to), &format!("restore of point {i}"));

        // By time: the newest snapshot taken at or before a moment just after this point.
        let to = out.path().join(format!("at-{i}"));
        let r = restore(s, &to, &["--at", &p.after]);
        assert_eq!(
            r["snapshot"],
            p.id.as_str(),
            "--at {} picks point {i}",
            p.after
        );
        assert_same(
            &p.tree,
            &describe(&to),
            &format!("--at restore of point {i}"),
        );

        // One file: the index and the one volume holding it, nothing else.
        let to = out.path().join(format!("one-{i}"));
        let r = restore(s, &to, &["--snapshot", &p.id, "--path", "a.txt"]);
        let read = objects_read(&r);
        assert_eq!(read.len(), 2, "point {i}: {read:?}");
        assert!(read[0].ends_with("index.jsonl.zst.pgp"), "{read:?}");
        // a.txt last changed in run 2: points 2 and 3 read it from run 2's volume.
        let holder = &points[i.min(1)].id;
        assert!(
            read[1].contains(&format!("/{holder}/files/www/vol-")),
            "point {i} reads a.txt from {read:?}, expected a volume of {holder}"
        );
        let got = describe(&to);
        assert_eq!(got.get(&b"a.txt"[..]), p.tree.get(&b"a.txt"[..]));
        assert_eq!(
            got.keys().filter(|k| k.as_slice() != b".").count(),
            1,
            "only the selected path: {:?}",
            got.keys().collect::<Vec<_>>()
        );
        assert!(r["stats"]["volumes_in_view"].as_u64().expect("count") >= 2);

        if local {
            // The same, counted at the store: only the index and that volume are fetched.
            let to = out.path().join(format!("counted-{i}"));
            let opened = restore_counted(s, &p.id, &["a.txt"], &to).expect("counted restore");
            assert_eq!(opened, read, "point {i}: fetched through the store");
        }
    }

    // A sub-tree with a hardlink whose first link is outside it: the content comes with it.
    let to = out.path().join("hard");
    restore(s, &to, &["--snapshot", &points[0].id, "--path", "hard2"]);
    assert_eq!(
        fs::read(to.join("hard2")).expect("hard2"),
        b"shared inode\n"
    );

    // A directory holding a file and a hardlink whose target lies outside it: both come back.
    let to = out.path().join("hard-dir");
    restore(s, &to, &["--snapshot", &points[0].id, "--path", "hm"]);
    assert_eq!(fs::read(to.join("hm/x.txt")).expect("x.txt"), b"x-ray\n");
    assert_eq!(
        fs::read(to.join("hm/y")).expect("hm/y"),
        b"linked from elsewhere\n"
    );

    // A path the snapshot does not have: a usage error, and nothing written.
    let to = out.path().join("missing");
    restore_run(s, &to, &["--path", "b.txt"]).expect(2);
    assert!(fs::read_dir(&to)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true));
}

#[test]
fn three_runs_restore_every_point_exactly() {
    let s = Setup::new("inc-local");
    let src = s.path("src");
    fs::create_dir(&src).expect("src");
    s.config(&format!(
        "trees: [{{ name: www, path: '{}', volume_size: 1MiB }}]",
        src.display()
    ));
    chain_of_changes(&s, &src, true);
}

#[test]
fn three_runs_on_s3() {
    let bucket = TestBucket::new("incr");
    let s = Setup::new("inc-s3");
    let src = s.path("src");
    fs::create_dir(&src).expect("src");
    s.config_with_store(
        &format!(
            "store:\n  s3: {{ bucket: {}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: '{ACCESS_KEY}', secret_access_key: '{SECRET_KEY}' }}",
            bucket.name,
            endpoint()
        ),
        &format!(
            "trees: [{{ name: www, path: '{}', volume_size: 1MiB }}]",
            src.display()
        ),
    );
    chain_of_changes(&s, &src, false);
}

/// A tree of `files` configured as tree `www` (with `extra` YAML for it), settled for a first run.
fn tree_of(s: &Setup, files: &[(&str, &[u8])], extra: &str) -> PathBuf {
    let src = s.path("src");
    for (rel, data) in files {
        write(&src, rel, data);
    }
    s.config(&format!(
        "trees: [{{ name: www, path: '{}'{extra} }}]",
        src.display()
    ));
    settle();
    src
}

fn small_tree(s: &Setup, extra: &str) -> PathBuf {
    tree_of(
        s,
        &[("keep.txt", b"unchanged\n"), ("moving.txt", b"v1\n")],
        extra,
    )
}

fn touch(src: &Path, n: u32) {
    write(src, "moving.txt", format!("v{n}\n").as_bytes());
    settle();
}

#[test]
fn a_lost_or_corrupt_state_means_a_full_backup() {
    let s = Setup::new("inc-state");
    let src = small_tree(&s, "");
    let first = push(&s, &[], 0);
    touch(&src, 2);
    let second = push(&s, &[], 0);
    let runs = tree_runs(&s);
    assert_eq!(runs[&first]["run"], "full");
    assert_eq!(runs[&second]["run"], "incremental");

    // The state is gone (a new disk, a wiped /var/lib): a full run, never a broken chain.
    fs::remove_dir_all(s.path("state")).expect("rm state");
    touch(&src, 3);
    let third = push(&s, &[], 0);
    assert_full(&s, &third, "no state");
    let out = tempfile::tempdir().expect("tempdir");
    assert_restores(&s, &third, &src, &out.path().join("r3"));

    // A corrupt state: the same.
    let state = s.path(&format!("state/{}/www.state.zst", s.host));
    let mut bytes = fs::read(&state).expect("state");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&state, &bytes).expect("corrupt");
    touch(&src, 4);
    let fourth = push(&s, &[], 0);
    assert_full(&s, &fourth, "unusable");
    assert_restores(&s, &fourth, &src, &out.path().join("r4"));

    // A state from another setup (here: another tree root) is foreign: full.
    touch(&src, 5);
    let fifth = push(&s, &[], 0);
    assert_eq!(tree_runs(&s)[&fifth]["run"], "incremental");
    let moved = s.path("src-moved");
    fs::rename(&src, &moved).expect("move the tree");
    s.config(&format!(
        "trees: [{{ name: www, path: '{}' }}]",
        moved.display()
    ));
    let sixth = push(&s, &[], 0);
    assert_full(&s, &sixth, "another setup");
}

/// Snapshot `id` ran its tree in full, for a reason that mentions `why`.
fn assert_full(s: &Setup, id: &str, why: &str) {
    let run = &tree_runs(s)[id];
    assert_eq!(run["run"], "full", "{run}");
    assert!(
        run["full_reason"].as_str().is_some_and(|r| r.contains(why)),
        "{run}"
    );
}

/// Snapshot `id` restores to exactly the tree at `src`.
fn assert_restores(s: &Setup, id: &str, src: &Path, to: &Path) {
    restore(s, to, &["--snapshot", id]);
    assert_same(&describe(src), &describe(to), &format!("restore of {id}"));
}

#[test]
fn an_old_full_or_a_long_chain_or_full_means_a_full_backup() {
    let s = Setup::new("inc-age");
    let src = small_tree(&s, ", full_every: 30d, max_chain: 2");
    let runs_of = |ids: &[&String]| -> Vec<String> {
        let runs = tree_runs(&s);
        ids.iter()
            .map(|id| runs[*id]["run"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    let a = push(&s, &[], 0);
    touch(&src, 2);
    let b = push(&s, &[], 0);
    touch(&src, 3);
    let c = push(&s, &[], 0);
    touch(&src, 4);
    // max_chain 2: two incrementals, then a full.
    let d = push(&s, &[], 0);
    assert_eq!(
        runs_of(&[&a, &b, &c, &d]),
        ["full", "incremental", "incremental", "full"]
    );
    assert_full(&s, &d, "max_chain");

    // The last full looks 31 days old: full.
    touch(&src, 5);
    let later = (time::OffsetDateTime::now_utc() + time::Duration::days(31))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let e = push(&s, &[("OFFSITE_NOW", &later)], 0);
    assert_full(&s, &e, "full_every");

    // push --full forces one.
    touch(&src, 6);
    let f = push(&s, &[], 0);
    touch(&src, 7);
    let run = s.offsite(&["--json", "push", "--full"]).expect(0);
    let g = json(&run)["snapshot"].as_str().expect("id").to_string();
    assert_eq!(runs_of(&[&f, &g]), ["incremental", "full"]);
}

#[test]
fn prune_keeps_what_kept_incrementals_need_and_verify_still_passes() {
    let s = Setup::new("inc-prune");
    let src = tree_of(&s, &[("a", b"a1"), ("b", b"b1"), ("c", b"c1")], "");
    let full = push(&s, &[], 0);
    write(&src, "a", b"a2");
    settle();
    let inc1 = push(&s, &[], 0);
    write(&src, "a", b"a3");
    settle();
    let inc2 = push(&s, &[], 0);
    write(&src, "b", b"b2");
    settle();
    let inc3 = push(&s, &[], 0);
    let expected = describe(&src);
    // While it ran, inc3 told prune what it builds on: its parent inc2, and the full that still
    // holds c (inc2 holds a, the full b and c).
    let mut needs: Vec<String> = fs::read_dir(s.path(&format!("store/{}/{inc3}/needs", s.host)))
        .expect("inc3 wrote needs/ markers")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    needs.sort();
    assert_eq!(needs, [full.clone(), inc2.clone()]);

    let office = s.write(
        "office.yaml",
        &format!(
            "host: office\nstore: {{ local: store }}\noffice:\n  offsite_dir: offsite\n  decryption_key: keys/office.secret.asc\n  hosts: {{ {h}: keys/{h}.cert.asc }}\n  retention: {{ keep_last: 1 }}\n",
            h = s.host
        ),
    );
    s.offsite_with(&office, &["pull"], &[]).expect(0);

    // A push still running that builds on inc1 (its `needs/` marker, as push writes it before it
    // dumps): prune keeps inc1 for it.
    let running = format!(
        "{}-beef",
        time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .expect("format")
    );
    let marker = s.path(&format!("store/{}/{running}/needs/{inc1}", s.host));
    fs::create_dir_all(marker.parent().expect("dir")).expect("mkdir");
    fs::write(&marker, b"").expect("marker");
    let dry = json(
        &s.offsite_with(&office, &["--json", "prune", "--dry-run"], &[])
            .expect(0),
    );
    let local = &dry["stores"][0]["hosts"][0];
    let inc1_row = local["keep"]
        .as_array()
        .expect("keep")
        .iter()
        .find(|k| k["snapshot"] == inc1.as_str())
        .unwrap_or_else(|| panic!("inc1 is kept while a push builds on it: {local}"));
    assert_eq!(inc1_row["needed_by"][0], running.as_str());
    fs::remove_dir_all(s.path(&format!("store/{}/{running}", s.host))).expect("rm");

    // keep_last 1 keeps inc3; inc3's index points into the full (c) and inc2 (a); inc1 goes.
    let dry = s
        .offsite_with(&office, &["prune", "--dry-run"], &[])
        .expect(0);
    assert!(
        dry.stdout.contains(&format!("needed by {inc3}")),
        "{}",
        dry.stdout
    );
    let report = json(&s.offsite_with(&office, &["--json", "prune"], &[]).expect(0));
    for store in report["stores"].as_array().expect("stores") {
        let host = &store["hosts"][0];
        let kept: Vec<&str> = host["keep"]
            .as_array()
            .expect("keep")
            .iter()
            .map(|k| k["snapshot"].as_str().expect("id"))
            .collect();
        let gone: Vec<&str> = host["delete"]
            .as_array()
            .expect("delete")
            .iter()
            .map(|d| d["snapshot"].as_str().expect("id"))
            .collect();
        assert_eq!(kept, [&inc3, &inc2, &full], "{}", store["name"]);
        assert_eq!(gone, [&inc1], "{}", store["name"]);
        let full_row = &host["keep"][2];
        assert_eq!(full_row["reasons"][0], "needed_by");
        assert_eq!(full_row["needed_by"][0], inc3.as_str());
    }

    // The newest view is whole after prune: verify reads it across the chain, restore too.
    let v = s
        .offsite_with(&office, &["--json", "verify", "--host", &s.host], &[])
        .expect(0);
    assert!(v.stdout.contains(&inc3), "{}", v.stdout);
    let out = tempfile::tempdir().expect("tempdir");
    restore(&s, &out.path().join("r"), &["--snapshot", &inc3]);
    assert_same(&expected, &describe(&out.path().join("r")), "after prune");
}

#[test]
fn a_file_growing_while_read_warns_and_the_previous_version_survives() {
    let s = Setup::new("inc-grow");
    let src = s.path("src");
    let original = noise(8 << 20, 7);
    write(&src, "grow.log", &original);
    write(&src, "other.txt", b"other");
    s.config(&format!(
        "trees: [{{ name: www, path: '{}' }}]",
        src.display()
    ));
    settle();
    let first = push(&s, &[], 0);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let path = src.join("grow.log");
        std::thread::spawn(move || {
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(path)
                .expect("open for append");
            let chunk = vec![b'+'; 4096];
            while !stop.load(Ordering::Relaxed) {
                f.write_all(&chunk).expect("append");
            }
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let run = s.offsite(&["--json", "push"]).expect(3);
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let second = json(&run)["snapshot"].as_str().expect("id").to_string();
    assert!(
        run.stdout.contains("changed while being read: grow.log"),
        "{}",
        run.stdout
    );

    let out = tempfile::tempdir().expect("tempdir");
    restore(&s, &out.path().join("r1"), &["--snapshot", &first]);
    assert!(
        fs::read(out.path().join("r1/grow.log")).expect("r1") == original,
        "the previous version is intact"
    );
    restore(&s, &out.path().join("r2"), &["--snapshot", &second]);
    let stored = fs::read(out.path().join("r2/grow.log")).expect("r2");
    let now = fs::read(src.join("grow.log")).expect("now");
    assert!(stored.len() > original.len() && now.starts_with(&stored));

    // The next run reads it again (it was marked inconsistent), although nothing changed since.
    settle();
    let third = push(&s, &[], 0);
    restore(&s, &out.path().join("r3"), &["--snapshot", &third]);
    assert!(fs::read(out.path().join("r3/grow.log")).expect("r3") == now);
}

#[test]
fn a_parent_deleted_while_the_push_runs_is_never_committed_against() {
    let pg = PgDb::new("inc_race");
    pg.exec("CREATE TABLE t (x int)");
    let s = Setup::new("inc-race");
    let src = tree_of(&s, &[("a", b"a1"), ("b", b"b1")], "");
    let full = push(&s, &[], 0);
    write(&src, "a", b"a2");
    settle();

    // A slow database dump keeps the push open after its pre-flight saw the full complete.
    let slow = s.write(
        "slow-pg_dump",
        "#!/bin/bash\nif [ \"$1\" = --version ]; then exec pg_dump --version; fi\nsleep 3\nexec pg_dump \"$@\"\n",
    );
    fs::set_permissions(&slow, fs::Permissions::from_mode(0o755)).expect("chmod");
    s.config(&format!(
        "trees: [{{ name: www, path: '{}' }}]\npostgres: [{{ url: '{PG_URL}', databases: [{}], pg_dump: '{}' }}]",
        src.display(),
        pg.name,
        slow.display()
    ));
    let run = std::thread::scope(|scope| {
        let pushing = scope.spawn(|| s.offsite(&["push"]));
        std::thread::sleep(Duration::from_millis(1500));
        // The full goes away meanwhile (a prune that ignored the needs/ marker, an operator).
        fs::remove_dir_all(s.path(&format!("store/{}/{full}", s.host))).expect("rm full");
        pushing.join().expect("push thread")
    });
    let run = run.expect(1);
    assert!(
        run.stderr.contains("is no longer complete")
            && run.stderr.contains("no snapshot was committed"),
        "{}",
        run.stderr
    );
    assert!(
        s.local_snapshots().iter().all(|(_, complete)| !complete),
        "nothing complete is left or made: {:?}",
        s.local_snapshots()
    );

    // The state still names the full, which is gone: the next run starts a new chain.
    let next = push(&s, &[], 0);
    assert_full(&s, &next, "no longer complete");
    assert_restores(&s, &next, &src, &s.path("restored"));
}
