//! Restoring a file tree as one snapshot saw it: the index drives, volumes supply file bytes.
//!
//! An incremental's index lists every path of its view, each file pointing at the snapshot and
//! volume that hold its bytes (see [`crate::source::tree`]). A restore therefore runs in passes:
//!
//! 1. **Index.** Read the index once, in walk order (checked: a path out of order or twice is
//!    refused). Directories, symlinks, hardlinks and special files need nothing but their index
//!    line; each regular file is set aside ([`spool`]) under the volume that holds it. Entries
//!    outside `--path` are passed over, so only the volumes holding selected files are ever
//!    fetched. A `--path` that matches nothing is an error before anything is written.
//! 2. **Volumes**, on all cores ([`pool`]): each needed volume is streamed by one worker, which
//!    takes the set-aside files out of it in order (both are in walk order), each checked against
//!    the index's size and sha256 as it is written, and its mode and mtime applied once it matched.
//!    Volumes of the view are independent (a file is never split across two), so workers take
//!    them in any order, the largest first. Restore stops reading a volume after its last needed
//!    file; verify reads every volume to its end, so the object's stored and plaintext hashes are
//!    checked too. The first volume that fails stops the other workers and fails the restore.
//! 3. **Links and special files**, then directory attributes, deepest first.
//!
//! verify then reads every object of the snapshot's tree that no file of the view needed (a
//! volume of only directory headers), so every object it vouches for has been read and hashed.
//!
//! Entries are created by hand rather than by `tar::Archive::unpack`, because nothing read from a
//! snapshot is trusted to stay inside the target: absolute paths and `..` are refused, no path may
//! pass through a symlink of the tree (symlinks are created last, after every file), and nothing
//! existing is overwritten (the target starts empty). Metadata is applied after content: ownership
//! (only as root, where EPERM/EINVAL from odd id mappings are tolerated), then mode (after chown,
//! which clears setuid bits), then mtime. A failed restore leaves what it wrote so far; a file
//! whose content was not (or not yet) checked keeps mode 0600 and the time it was written, never
//! its recorded mode and mtime.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

mod attrs;
pub mod chain;
mod pool;
pub mod select;
mod spool;

use crate::error::usage;
use crate::pipeline::read::open_object;
use crate::snapshot::manifest::ObjectEntry;
use crate::tree::index::{EntryKind, IndexEntry, IndexReader};
use crate::tree::owners::Ids;
use crate::tree::walk::{display, walk_cmp, ROOT};
use attrs::Attrs;
use chain::Chain;
pub use chain::TreeSource;
use pool::{Stop, Stoppable};
use select::Place;
pub use select::Selection;
use spool::{SpoolSet, Spooled, Spools};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TreeRestoreStats {
    /// Regular files written (hardlinks to them are counted in `links`).
    pub files: u64,
    /// Directories, the root included.
    pub dirs: u64,
    /// Symlinks and hardlinks.
    pub links: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// The objects read from the store (the index, then volumes), as full keys.
    pub objects_read: Vec<String>,
    /// Their stored sizes, summed: what was fetched (verify: and hashed).
    pub stored_bytes_read: u64,
    /// How many volumes the view spans, read or not.
    pub volumes_in_view: usize,
    /// The threads that read volumes at once.
    pub threads: usize,
}

/// Restores tree `name` of the source's snapshot into `to`, which must be absent or an empty
/// directory; with a non-empty `selection`, only those paths (and the directories above them).
/// Volumes are read on one thread per core (at least two).
pub fn restore_tree(
    src: &TreeSource<'_>,
    name: &str,
    to: &Path,
    selection: Selection,
) -> Result<TreeRestoreStats> {
    restore_tree_threads(src, name, to, selection, pool::default_threads())
}

/// [`restore_tree`] with volumes read on `threads` threads (at least one).
pub fn restore_tree_threads(
    src: &TreeSource<'_>,
    name: &str,
    to: &Path,
    selection: Selection,
    threads: usize,
) -> Result<TreeRestoreStats> {
    let chain = Chain::load(src, name)?;
    prepare_target(to)?;
    walk_view(src, &chain, Restorer::new(to, false), selection, threads)
}

/// Reads tree `name` exactly as a restore would, every needed volume to its end and every check,
/// but writes nothing: how `verify` proves a tree restorable, across its whole chain, without
/// staging it on disk.
pub fn verify_tree(src: &TreeSource<'_>, name: &str) -> Result<TreeRestoreStats> {
    let chain = Chain::load(src, name)?;
    let threads = pool::default_threads();
    let mut stats = walk_view(
        src,
        &chain,
        Restorer::new(Path::new("/"), true),
        Selection::default(),
        threads,
    )?;
    // The walk reads only the volumes that hold a file of the view. A volume of nothing but
    // directory headers (every incremental of an unchanged tree has one) would never be read, and
    // a flipped byte in it would pass verify while `gpg -d` refuses it. verify vouches for every
    // object of the snapshot, so the rest of this tree's objects are read to their end too:
    // stored sha256, OpenPGP MDC, plaintext size.
    let tree = chain.tree;
    let mut rest = Vec::new();
    for key in tree.volumes.iter().chain(std::iter::once(&tree.index)) {
        let full = format!("{}{key}", src.snapshot_dir);
        if stats.objects_read.contains(&full) {
            continue;
        }
        let object = src.manifest.object(key).with_context(|| {
            format!("the manifest lists {full} as part of tree {name} but has no entry for it")
        })?;
        rest.push((full, object));
    }
    let workers = vec![(); threads.min(rest.len())];
    pool::run(&rest, workers, |_, (full, object), stop| {
        let reader = open_object(src.store, src.snapshot_dir, object, src.keys)?;
        io::copy(&mut Stoppable::new(reader, stop), &mut io::sink()).with_context(|| {
            format!(
                "checking {full} (no file of the view is in it, but it is part of the snapshot)"
            )
        })?;
        Ok(())
    })?;
    for (full, object) in rest {
        stats.objects_read.push(full);
        stats.stored_bytes_read += object.stored_size;
    }
    Ok(stats)
}

/// (snapshot id, volume key): where a file's bytes are; the stats list volumes in this order.
type VolumeKey = (String, String);

fn walk_view(
    src: &TreeSource<'_>,
    chain: &Chain<'_>,
    mut r: Restorer<'_>,
    mut selection: Selection,
    threads: usize,
) -> Result<TreeRestoreStats> {
    let name = chain.tree.name.as_str();
    let (index_dir, index_object) = chain.index()?;
    let index_key = format!("{index_dir}{}", index_object.key);
    let index_ctx = || format!("reading tree index {index_key}");
    let reader = open_object(src.store, index_dir, index_object, src.keys)?;
    r.stats.objects_read.push(index_key.clone());
    r.stats.stored_bytes_read += index_object.stored_size;
    let mut index =
        IndexReader::new(BufReader::with_capacity(1 << 16, reader)).with_context(index_ctx)?;
    if index.header.tree != name {
        bail!(
            "{index_key} is the index of tree {:?}, not {name:?}",
            index.header.tree
        );
    }

    // Pass 1: the index.
    let mut files: Spools<VolumeKey> = Spools::new()?;
    let mut late: Spools<()> = Spools::new()?;
    // Hardlinks whose target is outside the selection: target path -> the first link's path,
    // which gets the target's content.
    let mut orphans: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut last: Option<Vec<u8>> = None;
    while let Some(e) = index.next_entry().with_context(index_ctx)? {
        let path = e.path_bytes().with_context(index_ctx)?;
        if let Some(prev) = &last {
            if walk_cmp(prev, &path) != std::cmp::Ordering::Less {
                bail!(
                    "{index_key}: {} is out of order or listed twice",
                    display(&path)
                );
            }
        }
        last = Some(path.clone());
        if path == ROOT && e.kind != EntryKind::Dir {
            bail!("the root of the tree must be a directory");
        }
        let place = selection.place(&path);
        if place == Place::Outside || (place == Place::Above && e.kind != EntryKind::Dir) {
            continue;
        }
        r.dest.target(&path)?;
        match e.kind {
            EntryKind::Dir => r.plan_dir(&e, &path),
            EntryKind::File => {
                let snapshot = chain.snapshot_of(e.snapshot.as_deref());
                chain.volume(snapshot, &e.volume)?;
                files.push(&(snapshot.to_string(), e.volume.clone()), &e, None)?;
            }
            EntryKind::Hardlink => {
                let target = e.link_bytes()?.context("hardlink entry without a target")?;
                // A hardlink to a symlink is that symlink again: nothing may pass through it.
                if r.dest.symlinks.contains(&target) {
                    r.dest.symlinks.insert(path.clone());
                }
                if selection.contains(&target) {
                    late.push(&(), &e, None)?;
                } else if let Some(first) = orphans.get(&target) {
                    // Another link to the same outside target: link it to the first one.
                    let mut e = e.clone();
                    e.set_link(first);
                    late.push(&(), &e, None)?;
                } else {
                    orphans.insert(target, path.clone());
                }
            }
            EntryKind::Symlink => {
                r.dest.symlinks.insert(path.clone());
                late.push(&(), &e, None)?;
            }
            EntryKind::Fifo | EntryKind::Char | EntryKind::Block => late.push(&(), &e, None)?,
        }
    }
    // At its end; its decompressor and buffers are not needed while the volumes are read.
    drop(index);
    let missing = selection.missing();
    if !missing.is_empty() {
        return Err(usage(format!(
            "tree {name} of snapshot {} has no {}; nothing was restored",
            src.manifest.snapshot,
            missing.join(", ")
        )));
    }
    // Hardlink targets outside the selection come before their links in walk order, so they get
    // volume lists of their own (read in a second round) to keep every list in walk order.
    let mut outside: Spools<VolumeKey> = Spools::new()?;
    if !orphans.is_empty() {
        orphan_targets(src, chain, &orphans, &mut outside)?;
    }

    // Pass 2: the volumes, on `threads` workers.
    r.create_dirs()?;
    r.stats.volumes_in_view = chain.volume_count();
    let lists = [files.finish()?, outside.finish()?];
    let mut jobs = Vec::new();
    for (list, spools) in lists.iter().enumerate() {
        for (i, (snapshot, volume)) in spools.keys().enumerate() {
            let (dir, object) = chain.volume(snapshot, volume)?;
            jobs.push(VolumeJob {
                key: format!("{dir}{volume}"),
                dir,
                object,
                list,
                i,
            });
        }
    }
    for job in &jobs {
        r.stats.objects_read.push(job.key.clone());
        r.stats.stored_bytes_read += job.object.stored_size;
    }
    // Largest first: a big volume taken last would keep one core busy while the others idle.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.object.stored_size));
    let threads = threads.max(1).min(jobs.len());
    r.stats.threads = threads;
    let workers = (0..threads).map(|_| VolumeReader::new(&r.dest)).collect();
    let workers = pool::run(&jobs, workers, |w, job, stop| {
        read_volume(src, &lists, w, job, stop)
    })?;
    for w in workers {
        r.stats.files += w.files;
        r.stats.bytes += w.bytes;
    }

    // Pass 3: links and special files, in index order.
    let late = late.finish()?;
    for i in 0..late.len() {
        for item in late.read(i)? {
            let item = item?;
            let path = item.dest()?;
            r.late(&item.entry, &path)
                .with_context(|| format!("restoring {}", display(&path)))?;
        }
    }
    r.finish()
}

/// Reads the index again for the targets of hardlinks whose first link is selected but whose target
/// is not: each such target's content is written at the first link's path.
fn orphan_targets(
    src: &TreeSource<'_>,
    chain: &Chain<'_>,
    orphans: &HashMap<Vec<u8>, Vec<u8>>,
    files: &mut Spools<VolumeKey>,
) -> Result<()> {
    let (dir, object) = chain.index()?;
    let reader = open_object(src.store, dir, object, src.keys)?;
    let mut index = IndexReader::new(BufReader::with_capacity(1 << 16, reader))?;
    let mut found = 0;
    while let Some(e) = index.next_entry()? {
        let path = e.path_bytes()?;
        let Some(dest) = orphans.get(&path) else {
            continue;
        };
        if e.kind != EntryKind::File {
            bail!(
                "{} is a hardlink to {}, which is outside --path and not a regular file: restore a directory holding both",
                display(dest),
                display(&path)
            );
        }
        let snapshot = chain.snapshot_of(e.snapshot.as_deref());
        files.push(&(snapshot.to_string(), e.volume.clone()), &e, Some(dest))?;
        found += 1;
    }
    if found != orphans.len() {
        bail!("the index has hardlinks whose target it does not list");
    }
    Ok(())
}

fn prepare_target(to: &Path) -> Result<()> {
    match fs::metadata(to) {
        Ok(m) if m.is_dir() => {
            let mut entries = fs::read_dir(to)
                .with_context(|| format!("listing the restore target {}", to.display()))?;
            if entries.next().is_some() {
                return Err(usage(format!(
                    "refusing to restore into {}: the directory is not empty (restore never overwrites)",
                    to.display()
                )));
            }
            Ok(())
        }
        Ok(_) => Err(usage(format!(
            "cannot restore into {}: it is not a directory",
            to.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(to)
            .with_context(|| format!("creating the restore target {}", to.display())),
        Err(e) => Err(e).with_context(|| format!("checking the restore target {}", to.display())),
    }
}

/// One needed volume: where it is, and which spooled list holds its files.
struct VolumeJob<'c> {
    /// The full key, for messages and the stats.
    key: String,
    dir: &'c str,
    object: &'c ObjectEntry,
    /// `lists[list].read(i)`: the view's files in it, in walk order.
    list: usize,
    i: usize,
}

/// One worker's turn on one volume: open it, stream it, take its files out.
fn read_volume(
    src: &TreeSource<'_>,
    lists: &[SpoolSet<VolumeKey>],
    w: &mut VolumeReader<'_>,
    job: &VolumeJob<'_>,
    stop: &Stop,
) -> Result<()> {
    let entries = lists
        .get(job.list)
        .context("internal error: no such spool set")?
        .read(job.i)?;
    let reader = open_object(src.store, job.dir, job.object, src.keys)?;
    w.volume(&job.key, Stoppable::new(reader, stop), entries)
}

/// Where a restore writes and what it refuses to write: settled by the index pass, then only read,
/// by every volume worker at once.
struct Dest<'a> {
    root: &'a Path,
    /// Symlinks of the view: no path may pass through one.
    symlinks: HashSet<Vec<u8>>,
    chown: bool,
    /// Verify only: every check, no filesystem writes.
    check_only: bool,
}

impl Dest<'_> {
    fn join(&self, path: &[u8]) -> PathBuf {
        if path == ROOT {
            self.root.to_path_buf()
        } else {
            self.root.join(OsStr::from_bytes(path))
        }
    }

    /// The absolute path of an index path, refusing anything that could land outside the target.
    fn target(&self, path: &[u8]) -> Result<PathBuf> {
        if path == ROOT {
            return Ok(self.root.to_path_buf());
        }
        let unsafe_path = path.first() == Some(&b'/')
            || path.contains(&0)
            || path
                .split(|b| *b == b'/')
                .any(|c| c.is_empty() || c == b"." || c == b"..");
        if unsafe_path {
            bail!(
                "unsafe path {} in the index: restore writes only inside its target",
                display(path)
            );
        }
        for (i, _) in path.iter().enumerate().filter(|(_, b)| **b == b'/') {
            if self.symlinks.contains(&path[..i]) {
                bail!(
                    "{} passes through the symlink {}: refused",
                    display(path),
                    display(&path[..i])
                );
            }
        }
        Ok(self.join(path))
    }
}

fn attrs(ids: &mut Ids, e: &IndexEntry) -> Attrs {
    Attrs {
        uid: ids.uid(e.user.as_deref(), e.uid),
        gid: ids.gid(e.group.as_deref(), e.gid),
        mode: e.mode & 0o7777,
        mtime: e.mtime,
    }
}

/// The index pass, directories, links and special files: everything but the volumes.
struct Restorer<'a> {
    dest: Dest<'a>,
    /// Directories with their attributes, in walk order: created in that order before any file,
    /// their attributes applied in reverse at the end.
    dirs: Vec<(PathBuf, Attrs)>,
    ids: Ids,
    stats: TreeRestoreStats,
}

impl<'a> Restorer<'a> {
    fn new(root: &'a Path, check_only: bool) -> Self {
        Self {
            dest: Dest {
                root,
                symlinks: HashSet::new(),
                // SAFETY: geteuid has no preconditions and cannot fail.
                chown: unsafe { libc::geteuid() } == 0,
                check_only,
            },
            dirs: Vec::new(),
            ids: Ids::default(),
            stats: TreeRestoreStats::default(),
        }
    }

    fn plan_dir(&mut self, e: &IndexEntry, path: &[u8]) {
        let full = self.dest.join(path);
        let attrs = attrs(&mut self.ids, e);
        self.dirs.push((full, attrs));
        self.stats.dirs += 1;
    }

    fn create_dirs(&mut self) -> Result<()> {
        if self.dest.check_only {
            return Ok(());
        }
        for (full, _) in &self.dirs {
            if full.as_path() != self.dest.root {
                // Private until `finish` applies the recorded mode.
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(full)
                    .with_context(|| format!("creating the directory {}", full.display()))?;
            }
        }
        Ok(())
    }

    /// Symlinks, hardlinks and special files: everything is in the index line.
    fn late(&mut self, e: &IndexEntry, path: &[u8]) -> Result<()> {
        let full = self.dest.target(path)?;
        match e.kind {
            EntryKind::Symlink | EntryKind::Hardlink => self.stats.links += 1,
            _ => {}
        }
        if self.dest.check_only {
            return Ok(());
        }
        let chown = self.dest.chown;
        let attrs = attrs(&mut self.ids, e);
        match e.kind {
            EntryKind::Symlink => {
                let target = e.link_bytes()?.context("symlink entry without a target")?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &full)
                    .context("creating the symlink")?;
                attrs::apply(&full, &attrs, true, chown)?;
            }
            EntryKind::Hardlink => {
                let target = e.link_bytes()?.context("hardlink entry without a target")?;
                if target == ROOT {
                    bail!("a hardlink cannot point at the root directory");
                }
                let source = self.dest.target(&target)?;
                // link(2) does not follow a symlink at `source`, so this cannot reach outside.
                fs::hard_link(&source, &full)
                    .with_context(|| format!("linking to {}", display(&target)))?;
            }
            EntryKind::Fifo => {
                attrs::mknod(&full, libc::S_IFIFO, 0)?;
                attrs::apply(&full, &attrs, false, chown)?;
            }
            EntryKind::Char | EntryKind::Block => {
                if !chown {
                    let p = display(path);
                    tracing::warn!("{p}: device nodes can only be created as root; skipped");
                    return Ok(());
                }
                let kind = if e.kind == EntryKind::Char {
                    libc::S_IFCHR
                } else {
                    libc::S_IFBLK
                };
                let dev = libc::makedev(e.major.unwrap_or(0), e.minor.unwrap_or(0));
                attrs::mknod(&full, kind, dev)?;
                attrs::apply(&full, &attrs, false, chown)?;
            }
            EntryKind::File | EntryKind::Dir => {
                bail!("internal error: {:?} among links and special files", e.kind)
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<TreeRestoreStats> {
        if self.dest.check_only {
            return Ok(self.stats);
        }
        let dirs = std::mem::take(&mut self.dirs);
        for (path, attrs) in dirs.iter().rev() {
            attrs::apply(path, attrs, false, self.dest.chown)
                .with_context(|| format!("restoring the attributes of {}", path.display()))?;
        }
        Ok(self.stats)
    }
}

/// One volume worker: its own buffer, owner cache and counts.
struct VolumeReader<'d> {
    dest: &'d Dest<'d>,
    ids: Ids,
    buf: Vec<u8>,
    files: u64,
    bytes: u64,
}

impl<'d> VolumeReader<'d> {
    fn new(dest: &'d Dest<'d>) -> Self {
        Self {
            dest,
            ids: Ids::default(),
            buf: vec![0; 256 * 1024],
            files: 0,
            bytes: 0,
        }
    }

    /// Takes the spooled files out of one volume, in order.
    fn volume<R: Read>(&mut self, key: &str, reader: R, entries: spool::SpoolReader) -> Result<()> {
        let read_ctx = || format!("reading tree volume {key}");
        let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, reader));
        {
            let mut tar_entries = archive.entries().with_context(read_ctx)?;
            for item in entries {
                let item: Spooled = item?;
                let e = &item.entry;
                let source = e.path_bytes()?;
                let dest = item.dest()?;
                let mut t = loop {
                    let t = tar_entries
                        .next()
                        .with_context(|| {
                            format!(
                                "{key} ends before {}, which the index puts in it",
                                display(&source)
                            )
                        })?
                        .with_context(read_ctx)?;
                    let in_tar = t.path_bytes();
                    match walk_cmp(tar_path(&in_tar), &source) {
                        // Entries the view does not take from this volume.
                        std::cmp::Ordering::Less => continue,
                        std::cmp::Ordering::Equal => break t,
                        std::cmp::Ordering::Greater => bail!(
                            "{key} has no {}, which the index puts in it",
                            display(&source)
                        ),
                    }
                };
                if t.header().entry_type() != tar::EntryType::Regular {
                    bail!(
                        "{key} holds a {:?} entry for {}, where the index expects a file",
                        t.header().entry_type(),
                        display(&source)
                    );
                }
                self.file(e, &dest, &mut t)
                    .with_context(|| format!("restoring {} from {key}", display(&source)))?;
            }
            if self.dest.check_only {
                for t in tar_entries {
                    t.with_context(read_ctx)?;
                }
            }
        }
        if self.dest.check_only {
            // The object's hashes are checked at its end: read past the tar trailer to get there.
            io::copy(&mut archive.into_inner(), &mut io::sink()).with_context(read_ctx)?;
        }
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        e: &IndexEntry,
        dest: &[u8],
        t: &mut tar::Entry<'_, R>,
    ) -> Result<()> {
        if self.dest.check_only {
            self.hash_file(e, t, None)?;
        } else {
            let full = self.dest.target(dest)?;
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&full)
                .context("creating the file")?;
            self.hash_file(e, t, Some(file))?;
            // Only now that the content matched: a file with its recorded mode and mtime is whole.
            let attrs = attrs(&mut self.ids, e);
            attrs::apply(&full, &attrs, false, self.dest.chown)?;
        }
        self.files += 1;
        self.bytes += e.size;
        Ok(())
    }

    /// Streams a file's content out of the volume, into `out` if given, and checks it against the
    /// index's size and sha256.
    fn hash_file<R: Read>(
        &mut self,
        e: &IndexEntry,
        t: &mut tar::Entry<'_, R>,
        mut out: Option<fs::File>,
    ) -> Result<()> {
        if t.size() != e.size {
            bail!(
                "the volume holds {} bytes where the index records {}",
                t.size(),
                e.size
            );
        }
        let expected = e
            .sha256
            .as_deref()
            .context("file entry without a sha256 in the index")?;
        let mut hasher = Sha256::new();
        let mut left = e.size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = t.read(&mut self.buf[..want])?;
            if n == 0 {
                bail!("the volume ends {left} bytes before the end of the file");
            }
            hasher.update(&self.buf[..n]);
            if let Some(file) = &mut out {
                file.write_all(&self.buf[..n]).context("writing the file")?;
            }
            left -= n as u64;
        }
        let got = hex::encode(hasher.finalize());
        if got != expected {
            bail!("content does not match the index: sha256 {got}, expected {expected}");
        }
        Ok(())
    }
}

/// A tar path as the index writes it: directories without their trailing `/`, the root as `.`.
fn tar_path(path: &[u8]) -> &[u8] {
    if path == b"./" {
        ROOT
    } else {
        path.strip_suffix(b"/").unwrap_or(path)
    }
}
