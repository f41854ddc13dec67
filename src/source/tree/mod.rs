//! File trees: a walk of the directory, streamed into tar volumes of bounded size, then an index.
//!
//! ```text
//! walk (sorted, lstat) -> tar entry -> volume object files/<tree>/vol-00001.tar(.zst.pgp), ...
//!                      -> index line -> temporary file -> files/<tree>/index.jsonl(.zst.pgp), last
//! ```
//!
//! Every volume is a complete GNU tar archive: stock `tar -x` of a full run's volumes in order
//! rebuilds the tree. An incremental's volumes hold only what changed (and hardlinks whose targets
//! may live in older snapshots), so a chain is extracted full first, then each incremental in
//! order. The index (see [`crate::tree::index`]) says, for each path, what it is and which snapshot and volume
//! hold it; it is what restore, verify and later incrementals work from.
//!
//! A live tree is read without locks, so one file's trouble never fails the run: a file that vanishes
//! or cannot be read is left out, a file that changes while being read is stored as read (and marked
//! `inconsistent` in the index, so the next run reads it again); each becomes a warning in the
//! manifest's tree entry.
//!
//! Incrementals (see [`state`]): the previous run's index is merged with the walk. A regular file
//! whose size, mtime, ctime, inode, mode and owner are unchanged is not read: its index line is
//! carried over, pointing at the snapshot and volume that already hold its bytes. Everything else
//! (new and changed files, and every directory, symlink and special file, which cost a header each)
//! goes into this snapshot's volumes. The new index lists every path present now; deleted paths
//! are simply absent. `depends_on` in the manifest names the older snapshots it points into.

pub mod file;
pub mod state;
pub mod volume;

use crate::tree::{index, owners, walk};

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::error::usage;
use crate::pipeline::Pipeline;
use crate::snapshot::manifest::{ObjectEntry, TreeEntry, TreeRun};
use index::{EntryKind, IndexEntry, IndexWriter};
use state::{Previous, Start};
use volume::{EntryHeader, Volumes};
use walk::{display, Excludes, Item, Walker};

pub struct TreeSpec {
    pub name: String,
    pub path: PathBuf,
    /// Globs matched against the path relative to the root, e.g. `**/cache/**` (see [`walk`]).
    pub exclude: Vec<String>,
    pub volume_size: u64,
    /// Full or incremental, as decided before anything was written (see [`state::decide`]).
    pub start: Start,
    pub identity: state::Identity,
    pub state_file: PathBuf,
}

pub struct TreeResult {
    pub entry: TreeEntry,
    /// The volumes in order, then the index.
    pub objects: Vec<ObjectEntry>,
    /// The state to write once the snapshot is committed.
    pub state: state::Pending,
}

/// Backs up one tree into the pipeline's snapshot. `on_bytes(n)` is called with the number of
/// plaintext bytes just read from files (for progress bars).
pub fn backup_tree(
    spec: &TreeSpec,
    pipeline: &Pipeline,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<TreeResult> {
    let name = &spec.name;
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(usage(format!(
            "tree name {name:?} must be letters, digits, '-', '_' or '.'; it becomes part of object keys"
        )));
    }
    if spec.volume_size == 0 {
        return Err(usage(format!(
            "tree {name}: volume_size must be more than 0"
        )));
    }
    // The manifest holds the root as text; config paths come from YAML, so this only trips on a
    // path built elsewhere.
    let root_text = spec.path.to_str().ok_or_else(|| {
        usage(format!(
            "tree {name}: the path {:?} is not valid UTF-8",
            spec.path
        ))
    })?;
    let snapshot = pipeline
        .snapshot_dir
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");

    let walk_started_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
    )
    .unwrap_or(0);
    let previous = match &spec.start {
        Start::Full { .. } => None,
        Start::Incremental { header, file } => Some(Previous::open(file, header)?),
    };
    let mut run = Backup {
        walker: Walker::new(&spec.path, Excludes::new(&spec.exclude)?),
        previous,
        depends_on: BTreeSet::new(),
        new_files: 0,
        new_bytes: 0,
        volumes: Volumes::new(pipeline, name, spec.volume_size),
        index: IndexWriter::new(name, snapshot)?,
        names: owners::Names::default(),
        hardlinks: HashMap::new(),
        enclosing: Vec::new(),
        warnings: Vec::new(),
        files: 0,
        bytes: 0,
        on_bytes,
    };
    loop {
        let item = match run.walker.next_item(&mut run.warnings) {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(e) => {
                return Err(usage(format!(
                    "tree {name}: cannot back up {root_text}: {e}"
                )));
            }
        };
        run.item(item)
            .with_context(|| format!("backing up tree {name}"))?;
    }
    let Backup {
        volumes,
        index,
        warnings,
        files,
        bytes,
        new_files,
        new_bytes,
        previous,
        depends_on,
        ..
    } = run;
    let (volume_keys, mut objects) = volumes.finish()?;
    let (index_object, index_file) = index.finish(pipeline, name)?;
    let depends_on: Vec<String> = depends_on.into_iter().collect();
    let (run, parent, full_reason, full_snapshot, chain) = match (&previous, &spec.start) {
        (Some(p), _) => {
            let h = p.header();
            (
                TreeRun::Incremental,
                Some(h.snapshot.clone()),
                None,
                h.full_snapshot.clone(),
                h.chain + 1,
            )
        }
        (None, Start::Full { reason }) => (
            TreeRun::Full,
            None,
            Some(reason.clone()),
            snapshot.to_string(),
            0,
        ),
        (None, Start::Incremental { .. }) => {
            bail!("internal error: an incremental run of tree {name} without its previous index")
        }
    };
    let entry = TreeEntry {
        name: name.clone(),
        path: root_text.to_string(),
        run,
        parent,
        depends_on: depends_on.clone(),
        full_reason,
        files,
        bytes,
        new_files,
        new_bytes,
        volumes: volume_keys,
        index: index_object.key.clone(),
        warnings,
    };
    objects.push(index_object);
    let state = state::Pending {
        file: spec.state_file.clone(),
        header: state::StateHeader {
            format: state::FORMAT.into(),
            version: state::VERSION,
            identity: spec.identity.clone(),
            snapshot: snapshot.to_string(),
            full_snapshot,
            chain,
            depends_on,
            walk_started_ms,
        },
        index: index_file,
    };
    Ok(TreeResult {
        entry,
        objects,
        state,
    })
}

struct Backup<'a> {
    walker: Walker,
    /// The previous run's index, for an incremental.
    previous: Option<Previous>,
    /// Older snapshots whose volumes hold files of this index.
    depends_on: BTreeSet<String>,
    /// Files and bytes read in this run.
    new_files: u64,
    new_bytes: u64,
    volumes: Volumes<'a>,
    index: IndexWriter,
    names: owners::Names,
    /// (dev, inode) of multiply-linked files already stored -> the path they were stored under.
    hardlinks: HashMap<(u64, u64), Vec<u8>>,
    /// Directories that enclose the walk's position, with their tar header blocks.
    enclosing: Vec<(Vec<u8>, Vec<u8>)>,
    warnings: Vec<String>,
    /// Files and bytes of the tree as this snapshot sees it.
    files: u64,
    bytes: u64,
    on_bytes: &'a (dyn Fn(u64) + Sync),
}

/// What a file's content write reports.
struct Stored {
    sha256: String,
    inconsistent: bool,
}

/// The parts of an entry that come from its metadata, for both the tar header and the index.
struct Owner {
    user: Option<Vec<u8>>,
    group: Option<Vec<u8>>,
}

impl Backup<'_> {
    fn item(&mut self, item: Item) -> Result<()> {
        let ft = item.meta.file_type();
        if ft.is_file() {
            return self.file(item);
        }
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else if ft.is_char_device() {
            EntryKind::Char
        } else if ft.is_block_device() {
            EntryKind::Block
        } else {
            let what = if ft.is_socket() {
                "a socket"
            } else {
                "of an unknown type"
            };
            self.warnings.push(format!(
                "{} is {what}, which tar cannot store: left out",
                display(&item.rel)
            ));
            return Ok(());
        };
        let link = if kind == EntryKind::Symlink {
            match fs::read_link(self.walker.full_path(&item.rel)) {
                Ok(target) => Some(target.into_os_string().as_bytes().to_vec()),
                Err(e) => {
                    self.warn_unreadable(&item.rel, &e);
                    return Ok(());
                }
            }
        } else {
            None
        };
        self.store(&item.rel, &item.meta, kind, link.as_deref(), |_| Ok(None))
    }

    fn file(&mut self, item: Item) -> Result<()> {
        let Item { rel, meta } = item;
        if meta.nlink() > 1 {
            if let Some(target) = self.hardlinks.get(&(meta.dev(), meta.ino())).cloned() {
                let link = Some(target.as_slice());
                return self.store(&rel, &meta, EntryKind::Hardlink, link, |_| Ok(None));
            }
        }
        if let Some(prev) = self.previous.as_mut() {
            if let Some(old) = prev.take(&rel)? {
                if prev.unchanged(&old, &meta) {
                    return self.carry_over(rel, &meta, old);
                }
            }
        }
        let (mut file, meta) = match file::open_regular(&self.walker.full_path(&rel)) {
            Ok(opened) => opened,
            Err(e) => {
                self.warn_unreadable(&rel, &e);
                return Ok(());
            }
        };
        let on_bytes = self.on_bytes;
        let mut copied = None;
        let size = meta.len();
        let mut changed = false;
        self.store(&rel, &meta, EntryKind::File, None, |sink| {
            let c = file::copy_exact(&mut file, size, sink, on_bytes)
                .with_context(|| format!("writing {}", sink.key()))?;
            let after = file.metadata().ok();
            changed = after.is_none_or(|a| {
                a.len() != meta.len()
                    || a.mtime() != meta.mtime()
                    || a.mtime_nsec() != meta.mtime_nsec()
                    || a.ctime() != meta.ctime()
                    || a.ctime_nsec() != meta.ctime_nsec()
            });
            let stored = Stored {
                sha256: c.sha256.clone(),
                inconsistent: changed || c.grew || c.padded > 0 || c.read_error.is_some(),
            };
            copied = Some(c);
            Ok(Some(stored))
        })?;
        self.files += 1;
        self.bytes += size;
        self.new_files += 1;
        self.new_bytes += size;
        if meta.nlink() > 1 {
            self.hardlinks.insert((meta.dev(), meta.ino()), rel.clone());
        }
        let p = display(&rel);
        match copied {
            Some(c) if c.read_error.is_some() => {
                let e = c.read_error.map(|e| e.to_string()).unwrap_or_default();
                self.warnings.push(format!(
                    "read error in {p} after {} of {size} bytes, the rest stored as zeros: {e}",
                    size - c.padded
                ));
            }
            Some(c) if c.padded > 0 => self.warnings.push(format!(
                "changed while being read: {p} (shrank by {} bytes, stored padded with zeros)",
                c.padded
            )),
            Some(c) if c.grew || changed => {
                self.warnings.push(format!("changed while being read: {p}"));
            }
            _ => {}
        }
        Ok(())
    }

    /// An unchanged file: its previous index line, pointing where its bytes already are.
    fn carry_over(&mut self, rel: Vec<u8>, meta: &Metadata, old: IndexEntry) -> Result<()> {
        let Some(snapshot) = old.snapshot.clone() else {
            bail!("internal error: a carried-over entry without its snapshot");
        };
        self.files += 1;
        self.bytes += old.size;
        if meta.nlink() > 1 {
            self.hardlinks.insert((meta.dev(), meta.ino()), rel);
        }
        self.depends_on.insert(snapshot);
        self.index.push(&old)
    }

    /// Writes one tar entry and its index line. `data` writes the entry's content (files only) and
    /// returns its sha256.
    fn store(
        &mut self,
        rel: &[u8],
        meta: &Metadata,
        kind: EntryKind,
        link: Option<&[u8]>,
        data: impl FnOnce(&mut crate::pipeline::ObjectSink) -> Result<Option<Stored>>,
    ) -> Result<()> {
        let device = matches!(kind, EntryKind::Char | EntryKind::Block)
            .then(|| (libc::major(meta.rdev()), libc::minor(meta.rdev())));
        let owner = self.owner(meta);
        let size = if kind == EntryKind::File {
            meta.len()
        } else {
            0
        };
        let header = EntryHeader {
            kind: kind.tar_type(),
            path: rel,
            link,
            size,
            mode: meta.mode() & 0o7777,
            uid: meta.uid().into(),
            gid: meta.gid().into(),
            user: owner.user.as_deref(),
            group: owner.group.as_deref(),
            mtime: meta.mtime(),
            device,
        };
        let blocks = volume::header_blocks(&header)?;
        // Keep only the directories that enclose this entry (the walk is depth-first).
        while let Some((dir, _)) = self.enclosing.last() {
            let inside = dir.as_slice() == walk::ROOT
                || (rel.starts_with(dir) && rel.get(dir.len()) == Some(&b'/'));
            if inside {
                break;
            }
            self.enclosing.pop();
        }
        let enclosing: Vec<&[u8]> = self.enclosing.iter().map(|(_, b)| b.as_slice()).collect();
        let mut stored = None;
        let volume = self.volumes.append(&blocks, size, &enclosing, |sink| {
            stored = data(sink)?;
            Ok(())
        })?;
        if kind == EntryKind::Dir {
            self.enclosing.push((rel.to_vec(), blocks));
        }
        let text = |b: &Option<Vec<u8>>| {
            b.as_deref()
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(String::from)
        };
        let mut entry = IndexEntry {
            path: None,
            path_b64: None,
            kind,
            size,
            mode: header.mode,
            uid: header.uid,
            gid: header.gid,
            user: text(&owner.user),
            group: text(&owner.group),
            mtime: header.mtime,
            mtime_ns: u32::try_from(meta.mtime_nsec()).unwrap_or(0),
            ctime: meta.ctime(),
            ctime_ns: u32::try_from(meta.ctime_nsec()).unwrap_or(0),
            ino: meta.ino(),
            inconsistent: stored.as_ref().is_some_and(|s| s.inconsistent),
            sha256: stored.map(|s| s.sha256),
            volume,
            snapshot: None,
            link: None,
            link_b64: None,
            major: device.map(|d| d.0),
            minor: device.map(|d| d.1),
        };
        entry.set_path(rel);
        if let Some(link) = link {
            entry.set_link(link);
        }
        self.index.push(&entry)?;
        Ok(())
    }

    fn owner(&mut self, meta: &Metadata) -> Owner {
        Owner {
            user: self.names.user(meta.uid()).map(<[u8]>::to_vec),
            group: self.names.group(meta.gid()).map(<[u8]>::to_vec),
        }
    }

    fn warn_unreadable(&mut self, rel: &[u8], e: &io::Error) {
        let p = display(rel);
        self.warnings.push(if e.kind() == io::ErrorKind::NotFound {
            format!("vanished before it was read: {p}")
        } else {
            format!("cannot read {p}, left out: {e}")
        });
    }
}
