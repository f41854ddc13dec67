//! File trees end to end: a tree with every awkward thing in it is backed up to a local store,
//! restored with offsite and extracted with stock `gpg | zstd | tar`, and both must reproduce it.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::BufReader;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::common::keys::LocalEnv;
use anyhow::{bail, Context, Result};
use offsite::pipeline::read::open_object;
use offsite::pipeline::Pipeline;
use offsite::restore::tree::{restore_tree, Selection, TreeRestoreStats, TreeSource};
use offsite::snapshot::manifest::ObjectKind;
use offsite::snapshot::Manifest;
use offsite::source::tree::state::{Identity, Start};
use offsite::source::tree::{backup_tree, TreeResult, TreeSpec};
use offsite::tree::index::{EntryKind, IndexEntry, IndexReader};

const VOLUME_SIZE: u64 = 64 * 1024;
const BIG: usize = 300 * 1024;
const LONG_DIR: &str =
    "a-directory-name-long-enough-that-the-full-path-needs-a-gnu-long-name-record-in-the-tar";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn lutime(path: &Path, secs: i64) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: valid path and two timespecs for the duration of the call.
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

fn write_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    fs::write(path, data)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The awkward tree. Paths under `skipme` and `a/cache` and the socket must not come back.
fn build_tree(root: &Path) -> Result<()> {
    fs::create_dir_all(root)?;
    write_mode(&root.join("plain.txt"), b"hello\n", 0o644)?;
    write_mode(&root.join("with space.txt"), b"spaces", 0o644)?;
    write_mode(&root.join("new\nline"), b"newline in the name", 0o644)?;
    write_mode(&root.join("ünïcödé ✓.txt"), "unicode".as_bytes(), 0o644)?;
    write_mode(
        &root.join(OsStr::from_bytes(b"caf\xe9")),
        b"latin-1 name",
        0o644,
    )?;
    write_mode(&root.join("secret"), b"0600", 0o600)?;
    write_mode(&root.join("setuid-tool"), b"#!/bin/sh\n", 0o4755)?;
    fs::create_dir(root.join("private"))?;
    write_mode(&root.join("private/inner.txt"), b"inner", 0o640)?;
    fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o700))?;
    fs::create_dir(root.join("empty"))?;
    std::os::unix::fs::symlink("plain.txt", root.join("link-rel"))?;
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling"))?;
    std::os::unix::fs::symlink("../odd//target/", root.join("odd-target"))?;
    let long_target = format!("{}/{}", "x".repeat(150), "y".repeat(60));
    std::os::unix::fs::symlink(&long_target, root.join("long-link"))?;
    fs::create_dir(root.join("hardlinks"))?;
    write_mode(&root.join("hardlinks/a"), b"shared inode", 0o644)?;
    fs::hard_link(root.join("hardlinks/a"), root.join("hardlinks/b"))?;
    let mut big = vec![0u8; BIG];
    let mut x: u32 = 12345;
    for b in big.iter_mut() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    write_mode(&root.join("big.bin"), &big, 0o644)?;
    fs::create_dir(root.join(LONG_DIR))?;
    write_mode(
        &root.join(LONG_DIR).join("f".repeat(120)),
        b"long path",
        0o644,
    )?;
    fs::create_dir(root.join("skipme"))?;
    write_mode(&root.join("skipme/file"), b"excluded", 0o644)?;
    fs::create_dir_all(root.join("a/cache/deeper"))?;
    write_mode(&root.join("a/cache/junk"), b"excluded", 0o644)?;
    write_mode(&root.join("a/kept.log"), b"kept", 0o644)?;
    let fifo = CString::new(root.join("fifo").as_os_str().as_bytes())?;
    // SAFETY: valid path for the duration of the call.
    if unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) } != 0 {
        bail!("mkfifo: {}", std::io::Error::last_os_error());
    }
    drop(std::os::unix::net::UnixListener::bind(root.join("sock"))?);
    if is_root() {
        std::os::unix::fs::lchown(root.join("secret"), Some(1234), Some(5678))?;
    }
    // Distinct mtimes, children before parents so that setting a child does not move its parent.
    set_mtimes(root, &mut 1_600_000_000)?;
    Ok(())
}

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
    *next += 1000;
    lutime(path, *next)
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
    Fifo,
    Other,
}

#[derive(Debug, PartialEq, Eq)]
struct Desc {
    kind: Kind,
    mode: u32,
    mtime: i64,
    uid: u32,
    gid: u32,
}

/// Everything about a tree that a restore must reproduce, keyed by relative path bytes.
fn describe(root: &Path) -> Result<BTreeMap<Vec<u8>, Desc>> {
    fn walk(root: &Path, rel: &[u8], out: &mut BTreeMap<Vec<u8>, Desc>) -> Result<()> {
        let path = if rel == b"." {
            root.to_path_buf()
        } else {
            root.join(OsStr::from_bytes(rel))
        };
        let m = fs::symlink_metadata(&path)?;
        let ft = m.file_type();
        let kind = if ft.is_file() {
            Kind::File(fs::read(&path)?)
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink(fs::read_link(&path)?.into_os_string().into_encoded_bytes())
        } else if std::os::unix::fs::FileTypeExt::is_fifo(&ft) {
            Kind::Fifo
        } else {
            Kind::Other
        };
        let is_dir = kind == Kind::Dir;
        let mode = if matches!(kind, Kind::Symlink(_)) {
            0
        } else {
            m.mode() & 0o7777
        };
        out.insert(
            rel.to_vec(),
            Desc {
                kind,
                mode,
                mtime: m.mtime(),
                uid: m.uid(),
                gid: m.gid(),
            },
        );
        if is_dir {
            for e in fs::read_dir(&path)? {
                let name = e?.file_name();
                let child = if rel == b"." {
                    name.as_bytes().to_vec()
                } else {
                    [rel, b"/", name.as_bytes()].concat()
                };
                walk(root, &child, out)?;
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(root, b".", &mut out)?;
    Ok(out)
}

/// What the restore must produce: the source minus the excluded paths and the socket.
fn expected(src: &Path) -> Result<BTreeMap<Vec<u8>, Desc>> {
    let mut want = describe(src)?;
    want.retain(|k, _| {
        !(k.starts_with(b"skipme") || k.starts_with(b"a/cache/") || k.as_slice() == b"sock")
    });
    assert!(
        want.contains_key(&b"a/cache"[..]),
        "a directory emptied by **/cache/** stays"
    );
    Ok(want)
}

fn compare(want: &BTreeMap<Vec<u8>, Desc>, got: &BTreeMap<Vec<u8>, Desc>) {
    let names = |m: &BTreeMap<Vec<u8>, Desc>| {
        m.keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(want), names(got), "paths differ");
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "names differ as bytes"
    );
    let wrong: Vec<_> = want
        .iter()
        .filter(|(k, w)| got.get(*k) != Some(w))
        .map(|(k, w)| {
            format!(
                "{}: want {w:?}, got {:?}",
                String::from_utf8_lossy(k),
                got.get(k)
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn spec(src: &Path) -> TreeSpec {
    TreeSpec {
        name: "www".into(),
        path: src.to_path_buf(),
        exclude: vec!["skipme".into(), "**/cache/**".into()],
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
        // Never committed here: these tests call backup_tree directly, without push.
        state_file: src.with_extension("state"),
    }
}

/// A whole-tree restore of a snapshot without incrementals (no older manifests to check).
fn restore(env: &LocalEnv, m: &Manifest, name: &str, to: &Path) -> Result<TreeRestoreStats> {
    let src = TreeSource {
        store: env.store.as_ref(),
        snapshot_dir: &env.pipeline.snapshot_dir,
        manifest: m,
        keys: &env.keys,
        signers: &[],
    };
    restore_tree(&src, name, to, Selection::default())
}

fn manifest(pipeline: &Pipeline, result: &TreeResult) -> Manifest {
    let snapshot = pipeline
        .snapshot_dir
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    Manifest {
        format: "offsite-manifest".into(),
        version: 1,
        tool_version: "test".into(),
        host: "testhost".into(),
        snapshot: snapshot.into(),
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

fn read_index(env: &LocalEnv, m: &Manifest) -> Result<Vec<IndexEntry>> {
    let tree = &m.trees[0];
    let object = m.object(&tree.index).context("index object")?;
    let reader = open_object(
        env.store.as_ref(),
        &env.pipeline.snapshot_dir,
        object,
        &env.keys,
    )?;
    let mut index = IndexReader::new(BufReader::new(reader))?;
    assert_eq!(index.header.tree, "www");
    assert_eq!(index.header.snapshot, m.snapshot);
    let mut out = Vec::new();
    while let Some(e) = index.next_entry()? {
        out.push(e);
    }
    Ok(out)
}

struct Fixture {
    env: LocalEnv,
    src: PathBuf,
    result: TreeResult,
    manifest: Manifest,
    _dir: tempfile::TempDir,
}

fn backed_up() -> Result<Fixture> {
    let env = LocalEnv::new()?;
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src");
    build_tree(&src)?;
    let read = AtomicU64::new(0);
    let result = backup_tree(&spec(&src), &env.pipeline, &|n| {
        read.fetch_add(n, Ordering::Relaxed);
    })?;
    assert_eq!(
        read.load(Ordering::Relaxed),
        result.entry.bytes,
        "on_bytes reports every byte read"
    );
    let manifest = manifest(&env.pipeline, &result);
    Ok(Fixture {
        env,
        src,
        result,
        manifest,
        _dir: dir,
    })
}

#[test]
fn backup_then_restore_reproduces_the_tree() -> Result<()> {
    let f = backed_up()?;
    let entry = &f.result.entry;
    assert!(
        entry
            .warnings
            .iter()
            .any(|w| w.contains("sock") && w.contains("socket")),
        "{:?}",
        entry.warnings
    );
    assert_eq!(entry.warnings.len(), 1, "{:?}", entry.warnings);
    assert_eq!(entry.index, "files/www/index.jsonl.zst.pgp");
    assert_eq!(entry.volumes[0], "files/www/vol-00001.tar.zst.pgp");
    assert!(entry.volumes.len() >= 3, "{:?}", entry.volumes);
    let kinds: Vec<_> = f.result.objects.iter().map(|o| o.kind).collect();
    assert_eq!(
        kinds.last(),
        Some(&ObjectKind::TreeIndex),
        "the index is written after the volumes"
    );
    assert!(kinds[..kinds.len() - 1]
        .iter()
        .all(|k| *k == ObjectKind::TreeVolume));

    // The oversized file sits alone in its volume; every other volume respects the limit.
    let index = read_index(&f.env, &f.manifest)?;
    let big = index
        .iter()
        .find(|e| e.path.as_deref() == Some("big.bin"))
        .context("big.bin indexed")?;
    assert_eq!(index.iter().filter(|e| e.volume == big.volume).count(), 1);
    for o in f
        .result
        .objects
        .iter()
        .filter(|o| o.kind == ObjectKind::TreeVolume && o.key != big.volume)
    {
        assert!(
            o.plain_size <= VOLUME_SIZE,
            "{} is {} bytes",
            o.key,
            o.plain_size
        );
    }
    let latin = index
        .iter()
        .find(|e| e.path_b64.is_some())
        .context("non-UTF-8 name stored as base64")?;
    assert_eq!(latin.path_bytes()?, b"caf\xe9");
    let link = index
        .iter()
        .find(|e| e.kind == EntryKind::Hardlink)
        .context("hardlink indexed")?;
    assert_eq!(
        (link.path.as_deref(), link.link.as_deref()),
        (Some("hardlinks/b"), Some("hardlinks/a"))
    );
    assert!(index.iter().all(|e| e.snapshot.is_none()));
    assert_eq!(
        entry.files,
        index.iter().filter(|e| e.kind == EntryKind::File).count() as u64
    );

    let out = f._dir.path().join("restored");
    let stats = restore(&f.env, &f.manifest, "www", &out)?;
    assert_eq!((stats.files, stats.bytes), (entry.files, entry.bytes));
    assert_eq!(stats.links, 5, "4 symlinks and 1 hardlink");
    compare(&expected(&f.src)?, &describe(&out)?);
    let (a, b) = (
        fs::metadata(out.join("hardlinks/a"))?,
        fs::metadata(out.join("hardlinks/b"))?,
    );
    assert_eq!(
        (a.ino(), a.nlink()),
        (b.ino(), 2),
        "hardlinks share their inode"
    );

    // Same tree, another snapshot: the volumes come out byte-identical (sorted, deterministic walk).
    let again = backup_tree(
        &spec(&f.src),
        &f.env.pipeline_for("20260102T000000Z-0002"),
        &|_| {},
    )?;
    // Volumes record no plaintext sha256 (their files have theirs in the index): decrypt and hash.
    let plain = |r: &TreeResult, dir: &str| -> Result<Vec<String>> {
        let mut out = Vec::new();
        for o in r
            .objects
            .iter()
            .filter(|o| o.kind == ObjectKind::TreeVolume)
        {
            assert!(o.plain_sha256.is_empty(), "{o:?}");
            let mut reader = open_object(f.env.store.as_ref(), dir, o, &f.env.keys)?;
            let mut h = <sha2::Sha256 as sha2::Digest>::new();
            std::io::copy(&mut reader, &mut h)?;
            out.push(hex::encode(sha2::Digest::finalize(h)));
        }
        Ok(out)
    };
    assert_eq!(
        plain(&f.result, &f.env.pipeline.snapshot_dir)?,
        plain(&again, "testhost/20260102T000000Z-0002/")?
    );
    Ok(())
}

#[test]
fn volumes_extract_with_stock_gpg_zstd_and_tar() -> Result<()> {
    let f = backed_up()?;
    let gnupg = tempfile::tempdir()?;
    fs::set_permissions(gnupg.path(), fs::Permissions::from_mode(0o700))?;
    let gpg = |args: &[&str]| -> Result<()> {
        let st = Command::new("gpg")
            .env("GNUPGHOME", gnupg.path())
            .args(args)
            .status()
            .context("running gpg")?;
        if !st.success() {
            bail!("gpg {args:?} failed: {st}");
        }
        Ok(())
    };
    gpg(&[
        "--batch",
        "--quiet",
        "--import",
        f.env.secret.to_str().context("utf-8 temp path")?,
    ])?;
    let out = f._dir.path().join("tar-out");
    fs::create_dir(&out)?;
    for key in &f.result.entry.volumes {
        let vol = f.env.object_path(&f.env.pipeline.snapshot_dir, key);
        let st = Command::new("bash")
            .env("GNUPGHOME", gnupg.path())
            .args(["-c", "set -euo pipefail; gpg --batch --quiet --decrypt \"$1\" | zstd -d -q | tar -x -p -C \"$2\"", "extract"])
            .arg(&vol)
            .arg(&out)
            .status()?;
        if !st.success() {
            bail!(
                "extracting {} with gpg | zstd | tar failed: {st}",
                vol.display()
            );
        }
    }
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", gnupg.path())
        .args(["--kill", "all"])
        .status();
    compare(&expected(&f.src)?, &describe(&out)?);
    let (a, b) = (
        fs::metadata(out.join("hardlinks/a"))?,
        fs::metadata(out.join("hardlinks/b"))?,
    );
    assert_eq!(a.ino(), b.ino());
    Ok(())
}

#[test]
fn a_flipped_byte_in_a_volume_fails_the_restore_naming_it() -> Result<()> {
    let f = backed_up()?;
    // A small volume (sequoia checks the MDC before releasing anything) and the big one (data flows
    // before the end of the message is authenticated, so zstd or the file's sha256 has to catch it).
    let index = read_index(&f.env, &f.manifest)?;
    let big = index
        .iter()
        .find(|e| e.path.as_deref() == Some("big.bin"))
        .context("big.bin")?
        .volume
        .clone();
    for (n, key) in [f.result.entry.volumes[0].clone(), big].iter().enumerate() {
        let path = f.env.object_path(&f.env.pipeline.snapshot_dir, key);
        let good = fs::read(&path)?;
        let mut bad = good.clone();
        bad[good.len() / 2] ^= 0x01;
        fs::write(&path, &bad)?;
        let out = f._dir.path().join(format!("restored-{n}"));
        let err = restore(&f.env, &f.manifest, "www", &out)
            .err()
            .context("restore of a corrupt volume must fail")?;
        let msg = format!("{err:#}");
        eprintln!("{msg}");
        assert!(msg.contains(key.as_str()), "{msg}");
        fs::write(&path, &good)?;
    }
    Ok(())
}

#[test]
fn user_errors_are_usage_errors() -> Result<()> {
    let f = backed_up()?;
    let restore = |name: &str, to: &Path| restore(&f.env, &f.manifest, name, to);
    let err = restore("nope", &f._dir.path().join("x"))
        .err()
        .context("unknown tree")?;
    assert!(offsite::error::is_usage(&err));
    assert!(
        err.to_string().contains("www"),
        "lists the trees there are: {err}"
    );

    let busy = f._dir.path().join("busy");
    fs::create_dir(&busy)?;
    fs::write(busy.join("precious"), b"keep me")?;
    let err = restore("www", &busy).err().context("non-empty target")?;
    assert!(offsite::error::is_usage(&err), "{err:#}");
    assert_eq!(fs::read(busy.join("precious"))?, b"keep me");

    let missing = TreeSpec {
        path: f._dir.path().join("no-such-dir"),
        ..spec(&f.src)
    };
    let err = backup_tree(
        &missing,
        &f.env.pipeline_for("20260103T000000Z-0003"),
        &|_| {},
    )
    .err()
    .context("missing root")?;
    assert!(offsite::error::is_usage(&err), "{err:#}");
    Ok(())
}

/// One crafted entry: kind, path, link target, content.
type Crafted<'a> = (EntryKind, &'a [u8], Option<&'a [u8]>, &'a [u8]);

/// A snapshot written by a hostile push host: one volume and an index that agree with each other.
fn hostile_snapshot(env: &LocalEnv, entries: &[Crafted<'_>]) -> Result<Manifest> {
    use offsite::snapshot::manifest::{TreeEntry, TreeRun};
    use offsite::source::tree::volume::{header_blocks, EntryHeader};
    use offsite::tree::index::IndexWriter;
    use std::io::Write as _;
    let volume_key = "files/evil/vol-00001.tar.zst.pgp";
    let mut sink = env.pipeline.create(
        "files/evil/vol-00001.tar",
        ObjectKind::TreeVolume,
        "tree/evil",
    )?;
    let mut index = IndexWriter::new("evil", "20260101T000000Z-0001")?;
    for (kind, path, link, data) in entries {
        let header = EntryHeader {
            kind: kind.tar_type(),
            path,
            link: *link,
            size: data.len() as u64,
            mode: 0o644,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: 0,
            device: None,
        };
        sink.write_all(&header_blocks(&header)?)?;
        sink.write_all(data)?;
        sink.write_all(&vec![0; (512 - data.len() % 512) % 512])?;
        let mut e: IndexEntry = serde_json::from_str(&format!(
            r#"{{"path":"x","type":"file","mode":420,"uid":0,"gid":0,"mtime":0,"volume":"{volume_key}"}}"#
        ))?;
        e.kind = *kind;
        e.size = data.len() as u64;
        e.set_path(path);
        if let Some(l) = link {
            e.set_link(l);
        }
        if *kind == EntryKind::File {
            e.sha256 = Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data)));
        }
        index.push(&e)?;
    }
    sink.write_all(&[0; 1024])?;
    let volume = sink.finish()?;
    let (index, index_file) = index.finish(&env.pipeline, "evil")?;
    let entry = TreeEntry {
        name: "evil".into(),
        path: "/evil".into(),
        run: TreeRun::Full,
        parent: None,
        depends_on: Vec::new(),
        full_reason: None,
        files: 1,
        bytes: 0,
        new_files: 1,
        new_bytes: 0,
        volumes: vec![volume.key.clone()],
        index: index.key.clone(),
        warnings: Vec::new(),
    };
    Ok(manifest(
        &env.pipeline,
        &TreeResult {
            entry,
            objects: vec![volume, index],
            state: offsite::source::tree::state::Pending {
                file: env.dir.path().join("unused.state"),
                header: offsite::source::tree::state::StateHeader {
                    format: String::new(),
                    version: 0,
                    identity: spec(Path::new("/evil")).identity,
                    snapshot: String::new(),
                    full_snapshot: String::new(),
                    chain: 0,
                    depends_on: Vec::new(),
                    walk_started_ms: 0,
                },
                index: index_file,
            },
        },
    ))
}

#[test]
fn restore_stays_inside_its_target() -> Result<()> {
    let outside = tempfile::tempdir()?;
    let victim = outside.path().join("victim");
    let victim_bytes = victim.as_os_str().as_bytes().to_vec();
    let escape = [&victim_bytes[..], b"/.."].concat();
    let attempts: Vec<Vec<Crafted<'_>>> = vec![
        vec![
            (EntryKind::Dir, b".", None, b""),
            (EntryKind::File, b"../pwned", None, b"x"),
        ],
        vec![
            (EntryKind::Dir, b".", None, b""),
            (EntryKind::File, b"a/../../pwned", None, b"x"),
        ],
        vec![
            (EntryKind::Dir, b".", None, b""),
            (EntryKind::File, &victim_bytes, None, b"x"),
        ],
        vec![
            (EntryKind::Dir, b".", None, b""),
            (EntryKind::Symlink, b"link", Some(&escape), b""),
            (EntryKind::File, b"link/pwned", None, b"x"),
        ],
        vec![
            (EntryKind::Dir, b".", None, b""),
            (EntryKind::Hardlink, b"h", Some(b"../../etc/passwd"), b""),
        ],
        // A hardlink to a symlink is the symlink again: writing through it must be refused too.
        vec![
            (EntryKind::Dir, b".", None, b""),
            (EntryKind::Symlink, b"s", Some(&victim_bytes), b""),
            (EntryKind::Hardlink, b"x", Some(b"s"), b""),
            (EntryKind::File, b"x/pwned", None, b"x"),
        ],
    ];
    fs::create_dir(&victim)?;
    for (n, entries) in attempts.iter().enumerate() {
        let env = LocalEnv::new()?;
        let m = hostile_snapshot(&env, entries)?;
        let out = outside.path().join(format!("out-{n}"));
        let res = restore(&env, &m, "evil", &out);
        let msg = format!("{:#}", res.err().context("a hostile path must be refused")?);
        assert!(
            msg.contains("unsafe path") || msg.contains("passes through the symlink"),
            "attempt {n}: {msg}"
        );
        assert!(
            !outside.path().join("pwned").exists() && fs::read_dir(&victim)?.next().is_none(),
            "attempt {n} escaped"
        );
    }
    Ok(())
}
