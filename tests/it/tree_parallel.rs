//! Full tree restores read their volumes on several threads: a tree spread over dozens of small
//! volumes comes back identical however the volumes are shared out, a corrupt volume fails the
//! restore by name without leaving a wrong file that looks restored, and a restore at a point in
//! time over an incremental chain still takes each file from the snapshot that holds its version.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::cli::Setup;
use crate::common::keys::LocalEnv;
use crate::common::tree::{assert_same, describe};
use anyhow::{bail, Context, Result};
use offsite::restore::tree::{
    restore_tree, restore_tree_threads, verify_tree, Selection, TreeRestoreStats, TreeSource,
};
use offsite::snapshot::Manifest;
use offsite::source::tree::state::{Identity, Start};
use offsite::source::tree::{backup_tree, TreeResult, TreeSpec};
use offsite::store::{ObjectInfo, ObjectWriter, Store};

/// Small volumes, so a tree of a few MB spreads over dozens of them.
const VOLUME_SIZE: u64 = 64 * 1024;
const BIG: usize = 700 * 1024;

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

fn lutime(path: &Path, secs: i64) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: a valid path and two timespecs for the duration of the call.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            [t, t].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        bail!(
            "utimensat {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Distinct mtimes on everything, children before their directory.
fn set_mtimes(path: &Path, next: &mut i64) -> Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        let mut names: Vec<_> = fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for n in names {
            set_mtimes(&path.join(n), next)?;
        }
    }
    *next += 7;
    lutime(path, *next)
}

/// Nested directories of files from empty to tens of KB (so most volumes hold several files and
/// some files straddle where one volume ends and the next begins), modes, symlinks, hardlinks
/// whose target and link land in different volumes, empty files and directories, and one file
/// ten times the volume size.
fn build_tree(root: &Path) -> Result<()> {
    let mut n = 0u32;
    for a in 0..4 {
        for b in 0..4 {
            let dir = root.join(format!("d{a}/s{b}"));
            fs::create_dir_all(&dir)?;
            for f in 0..9 {
                n += 1;
                let size = match f {
                    0 => 0,
                    1 => 1,
                    _ => (n as usize * 7919) % 40_000,
                };
                fs::write(dir.join(format!("f{f}.bin")), noise(size, n))?;
            }
            fs::set_permissions(dir.join("f2.bin"), fs::Permissions::from_mode(0o600))?;
            fs::set_permissions(dir.join("f3.bin"), fs::Permissions::from_mode(0o755))?;
        }
        fs::set_permissions(
            root.join(format!("d{a}")),
            fs::Permissions::from_mode(0o750),
        )?;
    }
    fs::create_dir_all(root.join("empty/deeper/still"))?;
    fs::write(root.join("empty.txt"), b"")?;
    fs::write(root.join("big.bin"), noise(BIG, 99))?;
    std::os::unix::fs::symlink("d0/s0/f4.bin", root.join("link-file"))?;
    std::os::unix::fs::symlink("d3", root.join("link-dir"))?;
    std::os::unix::fs::symlink("nowhere/at/all", root.join("link-dangling"))?;
    // The first link is early in walk order, the others far later, in other volumes.
    fs::hard_link(root.join("d0/s0/f5.bin"), root.join("d3/s3/hard-a"))?;
    fs::hard_link(root.join("d0/s0/f5.bin"), root.join("z-hard-b"))?;
    set_mtimes(root, &mut 1_650_000_000)?;
    Ok(())
}

fn spec(src: &Path) -> TreeSpec {
    TreeSpec {
        name: "www".into(),
        path: src.to_path_buf(),
        exclude: Vec::new(),
        volume_size: VOLUME_SIZE,
        start: Start::Full {
            reason: "test".into(),
        },
        identity: Identity {
            host: "testhost".into(),
            tree: "www".into(),
            root: src.display().to_string(),
            store: "test".into(),
            recipients: Vec::new(),
        },
        state_file: src.with_extension("state"),
    }
}

fn manifest(env: &LocalEnv, result: &TreeResult) -> Manifest {
    assert_eq!(env.pipeline.snapshot_dir, "testhost/20260101T000000Z-0001/");
    Manifest {
        format: "offsite-manifest".into(),
        version: 1,
        tool_version: "test".into(),
        host: "testhost".into(),
        snapshot: "20260101T000000Z-0001".into(),
        started_at: String::new(),
        finished_at: String::new(),
        config_digest: String::new(),
        signer: String::new(),
        recipients: Vec::new(),
        objects: result.objects.clone(),
        databases: Vec::new(),
        trees: vec![result.entry.clone()],
        warnings: Vec::new(),
        store_clock: None,
    }
}

/// A store that counts the objects opened, and the volumes being read at the same moment.
struct Concurrency {
    inner: Arc<dyn Store>,
    live: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    opened: AtomicUsize,
}

impl Concurrency {
    fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            live: Arc::default(),
            max: Arc::default(),
            opened: AtomicUsize::new(0),
        }
    }
}

struct Live {
    inner: Box<dyn Read + Send>,
    live: Arc<AtomicUsize>,
}

impl Read for Live {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Store for Concurrency {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        self.inner.create(key)
    }
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let inner = self.inner.open(key)?;
        self.opened.fetch_add(1, Ordering::SeqCst);
        if !key.contains("/vol-") {
            return Ok(inner);
        }
        let now = self.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        Ok(Box::new(Live {
            inner,
            live: self.live.clone(),
        }))
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }
}

struct Fixture {
    env: LocalEnv,
    src: std::path::PathBuf,
    result: TreeResult,
    manifest: Manifest,
    dir: tempfile::TempDir,
}

fn backed_up() -> Result<Fixture> {
    let env = LocalEnv::new()?;
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src");
    fs::create_dir(&src)?;
    build_tree(&src)?;
    let result = backup_tree(&spec(&src), &env.pipeline, &|_| {})?;
    assert!(
        result.entry.warnings.is_empty(),
        "{:?}",
        result.entry.warnings
    );
    let manifest = manifest(&env, &result);
    Ok(Fixture {
        env,
        src,
        result,
        manifest,
        dir,
    })
}

fn restore_with(
    f: &Fixture,
    store: &dyn Store,
    to: &Path,
    threads: Option<usize>,
) -> Result<TreeRestoreStats> {
    let src = TreeSource {
        store,
        snapshot_dir: &f.env.pipeline.snapshot_dir,
        manifest: &f.manifest,
        keys: &f.env.keys,
        signers: &[],
    };
    match threads {
        Some(n) => restore_tree_threads(&src, "www", to, Selection::default(), n),
        None => restore_tree(&src, "www", to, Selection::default()),
    }
}

fn verify_with(f: &Fixture) -> Result<TreeRestoreStats> {
    let src = TreeSource {
        store: f.env.store.as_ref(),
        snapshot_dir: &f.env.pipeline.snapshot_dir,
        manifest: &f.manifest,
        keys: &f.env.keys,
        signers: &[],
    };
    verify_tree(&src, "www")
}

#[test]
fn a_tree_of_many_volumes_restores_identically_on_several_threads() -> Result<()> {
    let f = backed_up()?;
    let volumes = f.result.entry.volumes.len();
    assert!(volumes >= 20, "{volumes} volumes: the test wants many");
    let want = describe(&f.src);

    for (n, threads) in [Some(1), Some(4), None].into_iter().enumerate() {
        let store = Concurrency::new(f.env.store.clone());
        let out = f.dir.path().join(format!("restored-{n}"));
        let stats = restore_with(&f, &store, &out, threads)?;
        assert_same(
            &want,
            &describe(&out),
            &format!("restore on {threads:?} threads"),
        );
        assert_eq!(
            (stats.files, stats.bytes),
            (f.result.entry.files, f.result.entry.bytes)
        );
        assert_eq!(stats.links, 5, "3 symlinks and 2 hardlinks");
        let hard = fs::metadata(out.join("z-hard-b"))?;
        assert_eq!(hard.nlink(), 3);
        assert_eq!(hard.ino(), fs::metadata(out.join("d0/s0/f5.bin"))?.ino());
        // Every object once: the index, then each volume holding a file, in key order.
        assert_eq!(
            stats.objects_read.len(),
            store.opened.load(Ordering::SeqCst)
        );
        assert!(stats.objects_read[0].ends_with("index.jsonl.zst.pgp"));
        let mut sorted = stats.objects_read[1..].to_vec();
        sorted.sort();
        assert_eq!(sorted, stats.objects_read[1..], "listed in key order");
        assert!(stats.objects_read.len() > volumes / 2);
        let expect_threads = threads.unwrap_or(
            2.max(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
                    .min(16),
            ),
        );
        assert_eq!(stats.threads, expect_threads);
        if stats.threads > 1 {
            assert!(
                store.max.load(Ordering::SeqCst) >= 2,
                "volumes were read one at a time on {} threads",
                stats.threads
            );
        } else {
            assert_eq!(store.max.load(Ordering::SeqCst), 1);
        }
    }

    // verify reads the same volumes in parallel, and every object besides.
    let stats = verify_with(&f)?;
    assert_eq!(stats.files, f.result.entry.files);
    assert_eq!(stats.objects_read.len(), volumes + 1);
    Ok(())
}

/// Regular files under `root` whose mode and mtime are the source's: what claims to be restored.
fn claiming_complete(src: &Path, root: &Path) -> Result<Vec<(String, bool)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir)? {
            let path = e?.path();
            let m = fs::symlink_metadata(&path)?;
            if m.is_dir() {
                stack.push(path);
                continue;
            }
            if !m.is_file() {
                continue;
            }
            let rel = path.strip_prefix(root)?;
            let want = fs::symlink_metadata(src.join(rel))?;
            if m.mtime() == want.mtime() && m.mode() == want.mode() {
                let same = fs::read(&path)? == fs::read(src.join(rel))?;
                out.push((rel.display().to_string(), same));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[test]
fn a_corrupt_volume_fails_the_restore_by_name_and_leaves_no_wrong_file_looking_whole() -> Result<()>
{
    let f = backed_up()?;
    let volumes = &f.result.entry.volumes;
    let big_volume = f
        .result
        .objects
        .iter()
        .filter(|o| volumes.contains(&o.key))
        .max_by_key(|o| o.stored_size)
        .context("volumes")?
        .key
        .clone();
    // A small volume in the middle (sequoia refuses it before releasing a byte) and the big one
    // (its data flows before the end of the message is authenticated: zstd or the file's sha256
    // catches the flipped byte, after part of the file is written).
    for (n, key) in [volumes[volumes.len() / 2].clone(), big_volume]
        .iter()
        .enumerate()
    {
        let path = f.env.object_path(&f.env.pipeline.snapshot_dir, key);
        let good = fs::read(&path)?;
        let mut bad = good.clone();
        bad[good.len() / 2] ^= 0x01;
        fs::write(&path, &bad)?;

        let out = f.dir.path().join(format!("corrupt-{n}"));
        let err = restore_with(&f, f.env.store.as_ref(), &out, Some(4))
            .err()
            .context("a restore with a corrupt volume must fail")?;
        let msg = format!("{err:#}");
        eprintln!("{msg}");
        assert!(msg.contains(key.as_str()), "names the volume: {msg}");
        assert!(
            !msg.contains("stopped: another volume"),
            "the failure reported is the volume's, not a stopped worker's: {msg}"
        );
        // Files restored before the failure are whole; the one it hit keeps mode 0600 and the
        // time it was written, as do the files the other workers were in the middle of.
        let claimed = claiming_complete(&f.src, &out)?;
        let wrong: Vec<_> = claimed.iter().filter(|(_, same)| !same).collect();
        assert!(
            wrong.is_empty(),
            "files that look restored but differ: {wrong:?}"
        );
        // No worker outlives the failed restore: nothing changes in the target afterwards.
        let before = describe(&out);
        std::thread::sleep(Duration::from_millis(300));
        assert_same(&before, &describe(&out), "the target after the failure");

        let err = verify_with(&f).err().context("verify must fail too")?;
        let msg = format!("{err:#}");
        assert!(msg.contains(key.as_str()), "verify names the volume: {msg}");
        fs::write(&path, &good)?;
    }
    // Put back, the same snapshot restores and verifies.
    let out = f.dir.path().join("after");
    restore_with(&f, f.env.store.as_ref(), &out, Some(4))?;
    assert_same(&describe(&f.src), &describe(&out), "restore after repair");
    verify_with(&f)?;
    Ok(())
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, data).expect("write");
}

/// Changes must be more than a second old for the next run to trust its read of them.
fn settle() {
    std::thread::sleep(Duration::from_millis(1100));
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

#[test]
fn a_point_in_time_restore_over_a_chain_takes_each_file_from_its_snapshot() {
    let s = Setup::new("par-chain");
    let src = s.path("src");
    fs::create_dir(&src).expect("src");
    s.config(&format!(
        "trees: [{{ name: www, path: '{}', volume_size: 1MiB }}]",
        src.display()
    ));
    let push = |s: &Setup| -> String {
        let run = s.offsite(&["--json", "push"]).expect(0);
        json(&run.stdout)["snapshot"]
            .as_str()
            .expect("snapshot id")
            .to_string()
    };

    // A full of about 8 MB in 1 MiB volumes.
    for i in 0..12u32 {
        write(
            &src,
            &format!("dir{}/big-{i}.bin", i % 3),
            &noise(650_000, i),
        );
        write(
            &src,
            &format!("dir{}/small-{i}.txt", i % 4),
            &noise(2_000, 100 + i),
        );
    }
    write(&src, "empty", b"");
    std::os::unix::fs::symlink("dir0/big-0.bin", src.join("link")).expect("symlink");
    settle();
    let mut points = Vec::new();
    let full = push(&s);
    points.push((full.clone(), now(), describe(&src)));

    // Two incrementals, each changing some big files (new volumes) and leaving the rest where
    // the full put them; one file changes in both.
    settle();
    for i in [1u32, 5, 7] {
        write(
            &src,
            &format!("dir{}/big-{i}.bin", i % 3),
            &noise(600_000, 1000 + i),
        );
    }
    fs::remove_file(src.join("dir2/small-2.txt")).expect("delete");
    write(&src, "dir9/new.txt", b"new in run 2");
    settle();
    let second = push(&s);
    points.push((second.clone(), now(), describe(&src)));

    settle();
    for i in [5u32, 10] {
        write(
            &src,
            &format!("dir{}/big-{i}.bin", i % 3),
            &noise(640_000, 2000 + i),
        );
    }
    write(&src, "dir9/new.txt", b"changed in run 3");
    settle();
    let third = push(&s);
    points.push((third.clone(), now(), describe(&src)));

    let out = tempfile::tempdir().expect("tempdir");
    for (i, (id, after, tree)) in points.iter().enumerate() {
        let to = out.path().join(format!("at-{i}"));
        let run = s
            .offsite(&[
                "--json",
                "restore",
                "--host",
                &s.host,
                "--tree",
                "www",
                "--to",
                to.to_str().expect("utf-8 temp path"),
                "--at",
                after,
            ])
            .expect(0);
        let r = json(&run.stdout);
        assert_eq!(r["snapshot"], id.as_str(), "--at {after} picks point {i}");
        assert_same(tree, &describe(&to), &format!("--at restore of point {i}"));
        assert!(r["stats"]["threads"].as_u64().expect("threads") >= 2);
        // Each volume read belongs to a snapshot of the chain up to this point; the newest point
        // reads from all three.
        let read: Vec<String> = r["stats"]["objects_read"]
            .as_array()
            .expect("objects_read")
            .iter()
            .map(|v| v.as_str().expect("key").to_string())
            .collect();
        let from: BTreeMap<&str, usize> = points
            .iter()
            .map(|(id, _, _)| {
                let n = read[1..]
                    .iter()
                    .filter(|k| k.contains(&format!("/{id}/files/www/vol-")))
                    .count();
                (id.as_str(), n)
            })
            .collect();
        assert_eq!(
            from.values().sum::<usize>(),
            read.len() - 1,
            "point {i}: {read:?}"
        );
        for (j, (other, _, _)) in points.iter().enumerate() {
            assert_eq!(
                from[other.as_str()] > 0,
                j <= i,
                "point {i} reads from snapshot {j}: {read:?}"
            );
        }
    }
}
