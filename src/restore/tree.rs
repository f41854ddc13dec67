//! Restoring a file tree: the index drives, the volumes supply the bytes, and every check runs.
//!
//! The index is read in step with the volumes: each index entry must be the next tar entry of the
//! volume it names, with the same path, type and size, and a file's content must hash to the index's
//! sha256 (checked while it is written). Each volume is read to its end so the pipeline's stored and
//! plaintext hashes are checked too; a corrupt object fails the restore with its key in the error.
//! The directory headers a volume repeats at its start (see [`crate::source::tree::volume`]) are
//! recognised as such and skipped. A failed restore leaves what it wrote so far in the target.
//!
//! Entries are created by hand rather than by `tar::Archive::unpack`, because the archive is not
//! trusted to stay inside the target: absolute paths and `..` are refused, nothing is written through
//! a symlink the restore created, and nothing existing is overwritten (the target starts empty).
//! Metadata is applied after content: ownership (only as root, where EPERM/EINVAL from odd id
//! mappings are tolerated), then mode (after chown, which clears setuid bits), then mtime. Directories
//! get theirs last, deepest first, so creating their contents does not disturb their mtime and a
//! read-only directory does not block its own restore.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use tar::EntryType;

mod attrs;

use crate::crypto::DecryptionKeys;
use crate::error::usage;
use crate::pipeline::read::open_object;
use crate::snapshot::Manifest;
use crate::source::tree::index::{EntryKind, IndexEntry, IndexReader};
use crate::source::tree::owners::Ids;
use crate::source::tree::walk::{display, ROOT};
use crate::store::Store;
use attrs::Attrs;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeRestoreStats {
    /// Regular files written (hardlinks to them are counted in `links`).
    pub files: u64,
    /// Directories, the root included.
    pub dirs: u64,
    /// Symlinks and hardlinks.
    pub links: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Restores tree `name` of the manifest into `to`, which must be absent or an empty directory.
pub fn restore_tree(
    store: &dyn Store,
    snapshot_dir: &str,
    manifest: &Manifest,
    name: &str,
    to: &Path,
    keys: &DecryptionKeys,
) -> Result<TreeRestoreStats> {
    let Some(tree) = manifest.tree(name) else {
        let names: Vec<&str> = manifest.trees.iter().map(|t| t.name.as_str()).collect();
        return Err(usage(if names.is_empty() {
            format!("snapshot {} has no file trees", manifest.snapshot)
        } else {
            format!(
                "snapshot {} has no tree {name:?}; it has: {}",
                manifest.snapshot,
                names.join(", ")
            )
        }));
    };
    prepare_target(to)?;
    walk_tree(
        store,
        snapshot_dir,
        manifest,
        tree,
        Restorer::new(to, false),
        keys,
    )
}

/// Reads tree `name` exactly as a restore would, every volume and every check, but writes nothing:
/// what `verify` does to prove a tree restorable without staging it on disk.
pub fn verify_tree(
    store: &dyn Store,
    snapshot_dir: &str,
    manifest: &Manifest,
    name: &str,
    keys: &DecryptionKeys,
) -> Result<TreeRestoreStats> {
    let tree = manifest.tree(name).ok_or_else(|| {
        usage(format!(
            "snapshot {} has no tree {name:?}",
            manifest.snapshot
        ))
    })?;
    walk_tree(
        store,
        snapshot_dir,
        manifest,
        tree,
        Restorer::new(Path::new("/"), true),
        keys,
    )
}

fn walk_tree(
    store: &dyn Store,
    snapshot_dir: &str,
    manifest: &Manifest,
    tree: &crate::snapshot::manifest::TreeEntry,
    mut restorer: Restorer<'_>,
    keys: &DecryptionKeys,
) -> Result<TreeRestoreStats> {
    let name = tree.name.as_str();
    let index_key = format!("{snapshot_dir}{}", tree.index);
    let index_ctx = || format!("reading tree index {index_key}");
    let object = manifest.object(&tree.index).with_context(|| {
        format!("the manifest does not list the index {index_key} of tree {name}")
    })?;
    let reader = open_object(store, snapshot_dir, object, keys)?;
    let mut index =
        IndexReader::new(BufReader::with_capacity(1 << 16, reader)).with_context(index_ctx)?;
    if index.header.tree != name {
        bail!(
            "{index_key} is the index of tree {:?}, not {name:?}",
            index.header.tree
        );
    }

    let mut pending = index.next_entry().with_context(index_ctx)?;
    for volume in &tree.volumes {
        let key = format!("{snapshot_dir}{volume}");
        let read_ctx = || format!("reading tree volume {key}");
        let object = manifest.object(volume).with_context(|| {
            format!("the manifest does not list the volume {key} of tree {name}")
        })?;
        let reader = open_object(store, snapshot_dir, object, keys)?;
        let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, reader));
        {
            let mut entries = archive.entries().with_context(read_ctx)?;
            let mut first = true;
            while let Some(entry) = pending.take_if(|e| e.volume == *volume && e.snapshot.is_none())
            {
                let path = entry.path_bytes().with_context(index_ctx)?;
                let mut tar_entry = loop {
                    let next = entries
                        .next()
                        .with_context(|| {
                            format!(
                                "{key} ends before {}, which the index puts in it",
                                display(&path)
                            )
                        })?
                        .with_context(read_ctx)?;
                    // A volume starts with repeated headers of directories restored from earlier
                    // volumes (for stock tar's sake); they are not in the index.
                    let repeat = first
                        && next.header().entry_type() == EntryType::Directory
                        && restorer
                            .restored_dirs
                            .contains(tar_path(&next.path_bytes()));
                    if !repeat {
                        break next;
                    }
                };
                first = false;
                restorer
                    .entry(&entry, &path, &mut tar_entry)
                    .with_context(|| format!("restoring {} from {key}", display(&path)))?;
                pending = index.next_entry().with_context(index_ctx)?;
            }
            if let Some(extra) = entries.next() {
                let extra = extra.with_context(read_ctx)?;
                bail!(
                    "{key} holds {}, which the index does not list",
                    display(&extra.path_bytes())
                );
            }
        }
        // The hashes of the object are checked at its end: read past the tar trailer to get there.
        io::copy(&mut archive.into_inner(), &mut io::sink()).with_context(read_ctx)?;
    }
    if let Some(entry) = pending {
        let path = display(&entry.path_bytes().unwrap_or_default());
        if let Some(other) = &entry.snapshot {
            bail!(
                "{path} is stored in snapshot {other}; restoring incremental trees is not supported by this offsite"
            );
        }
        bail!(
            "the index puts {path} in {}, which is not one of the volumes of tree {name} (or is out of order)",
            entry.volume
        );
    }
    restorer.finish()
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

struct Restorer<'a> {
    root: &'a Path,
    /// Directories with their attributes, in walk order; applied in reverse at the end.
    dirs: Vec<(PathBuf, Attrs)>,
    restored_dirs: HashSet<Vec<u8>>,
    /// Symlinks created so far: no later entry may pass through one.
    symlinks: HashSet<Vec<u8>>,
    ids: Ids,
    chown: bool,
    buf: Vec<u8>,
    stats: TreeRestoreStats,
    /// Verify only: every check, no filesystem writes.
    check_only: bool,
}

impl<'a> Restorer<'a> {
    fn new(root: &'a Path, check_only: bool) -> Self {
        Self {
            check_only,
            root,
            dirs: Vec::new(),
            restored_dirs: HashSet::new(),
            symlinks: HashSet::new(),
            ids: Ids::default(),
            // SAFETY: geteuid has no preconditions and cannot fail.
            chown: unsafe { libc::geteuid() } == 0,
            buf: vec![0; 256 * 1024],
            stats: TreeRestoreStats::default(),
        }
    }

    fn entry<R: Read>(
        &mut self,
        e: &IndexEntry,
        path: &[u8],
        t: &mut tar::Entry<'_, R>,
    ) -> Result<()> {
        let in_tar = t.path_bytes();
        if tar_path(&in_tar) != path {
            bail!(
                "the volume holds {} where the index expects it",
                display(tar_path(&in_tar))
            );
        }
        let expected = e.kind.tar_type();
        if t.header().entry_type() != expected {
            bail!(
                "the volume holds a {:?} entry where the index expects {:?}",
                t.header().entry_type(),
                e.kind
            );
        }
        let link = e.link_bytes()?;
        if link.as_deref() != t.link_name_bytes().as_deref() {
            bail!("the volume and the index disagree on the link target");
        }
        if path == ROOT && e.kind != EntryKind::Dir {
            bail!("the root of the tree must be a directory");
        }
        let full = self.target(path)?;
        if self.check_only {
            return self.check_entry(e, path, t);
        }
        let attrs = Attrs {
            uid: self.ids.uid(e.user.as_deref(), e.uid),
            gid: self.ids.gid(e.group.as_deref(), e.gid),
            mode: e.mode & 0o7777,
            mtime: e.mtime,
        };
        match e.kind {
            EntryKind::Dir => {
                if path != ROOT {
                    // Private until `finish` applies the recorded mode.
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&full)
                        .context("creating the directory")?;
                }
                self.dirs.push((full, attrs));
                self.restored_dirs.insert(path.to_vec());
                self.stats.dirs += 1;
            }
            EntryKind::File => {
                self.write_file(e, &full, t)?;
                attrs::apply(&full, &attrs, false, self.chown)?;
                self.stats.files += 1;
                self.stats.bytes += e.size;
            }
            EntryKind::Symlink => {
                let target = link.context("symlink entry without a target")?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &full)
                    .context("creating the symlink")?;
                attrs::apply(&full, &attrs, true, self.chown)?;
                self.symlinks.insert(path.to_vec());
                self.stats.links += 1;
            }
            EntryKind::Hardlink => {
                let target = link.context("hardlink entry without a target")?;
                if target == ROOT {
                    bail!("a hardlink cannot point at the root directory");
                }
                let source = self.target(&target)?;
                // link(2) does not follow a symlink at `source`, so this cannot reach outside.
                fs::hard_link(&source, &full)
                    .with_context(|| format!("linking to {}", display(&target)))?;
                // A hardlink to a symlink is a symlink too: nothing may be written through it.
                if self.symlinks.contains(&target) {
                    self.symlinks.insert(path.to_vec());
                }
                self.stats.links += 1;
            }
            EntryKind::Fifo => {
                attrs::mknod(&full, libc::S_IFIFO, 0)?;
                attrs::apply(&full, &attrs, false, self.chown)?;
            }
            EntryKind::Char | EntryKind::Block => {
                if !self.chown {
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
                attrs::apply(&full, &attrs, false, self.chown)?;
            }
        }
        Ok(())
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
        Ok(self.root.join(OsStr::from_bytes(path)))
    }

    fn write_file<R: Read>(
        &mut self,
        e: &IndexEntry,
        full: &Path,
        t: &mut tar::Entry<'_, R>,
    ) -> Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(full)
            .context("creating the file")?;
        self.hash_file(e, t, Some(file))
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

    /// The check-only counterpart of the entry match above: content hashed, nothing written.
    fn check_entry<R: Read>(
        &mut self,
        e: &IndexEntry,
        path: &[u8],
        t: &mut tar::Entry<'_, R>,
    ) -> Result<()> {
        match e.kind {
            EntryKind::Dir => {
                self.restored_dirs.insert(path.to_vec());
                self.stats.dirs += 1;
            }
            EntryKind::File => {
                self.hash_file(e, t, None)?;
                self.stats.files += 1;
                self.stats.bytes += e.size;
            }
            EntryKind::Symlink => {
                self.symlinks.insert(path.to_vec());
                self.stats.links += 1;
            }
            EntryKind::Hardlink => {
                let target = e.link_bytes()?.unwrap_or_default();
                if self.symlinks.contains(&target) {
                    self.symlinks.insert(path.to_vec());
                }
                self.stats.links += 1;
            }
            EntryKind::Fifo | EntryKind::Char | EntryKind::Block => {}
        }
        Ok(())
    }

    fn finish(mut self) -> Result<TreeRestoreStats> {
        if self.check_only {
            return Ok(self.stats);
        }
        let dirs = std::mem::take(&mut self.dirs);
        for (path, attrs) in dirs.iter().rev() {
            attrs::apply(path, attrs, false, self.chown)
                .with_context(|| format!("restoring the attributes of {}", path.display()))?;
        }
        Ok(self.stats)
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
