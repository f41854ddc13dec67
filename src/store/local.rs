//! A directory as a store: the embedded default, and the office's offsite copy.
//!
//! Objects are written to a hidden temporary file beside their final name, fsynced, then linked into
//! place with `link(2)`, which fails if the name exists: that makes "never overwrite" atomic without a
//! lock. The directory is fsynced after the link so a committed object survives a power cut.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{check_key, AdminStore, ObjectInfo, ObjectWriter, Store, Unfinished};

/// Marks a temporary file: `.<name>.partial-<8 hex>` beside the object `<name>` it becomes.
const PARTIAL: &str = ".partial-";

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens (and creates, if needed) a store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)
            .with_context(|| format!("creating the local store directory {}", root.display()))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

impl Store for LocalStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        let (file, tmp, path) = self.temporary(key)?;
        Ok(Box::new(LocalWriter {
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            _pending: pending(&tmp),
            tmp,
            path,
            key: key.to_string(),
            written: 0,
            kicked: 0,
        }))
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let path = self.path(key)?;
        let file = File::open(&path)
            .with_context(|| format!("opening object {key} in {}", self.location()))?;
        Ok(Box::new(file))
    }

    fn open_range(&self, key: &str, offset: u64, len: u64) -> Result<Box<dyn Read + Send>> {
        use std::io::{Seek, SeekFrom};
        let path = self.path(key)?;
        let mut file = File::open(&path)
            .with_context(|| format!("opening object {key} in {}", self.location()))?;
        let size = file.metadata()?.len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            bail!(
                "object {key} in {} has {size} bytes, fewer than the range {offset}+{len} asked for",
                self.location()
            );
        }
        file.seek(SeekFrom::Start(offset))
            .with_context(|| format!("reading object {key} in {}", self.location()))?;
        Ok(Box::new(file.take(len)))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out: Vec<ObjectInfo> = self
            .walk_prefix(prefix)?
            .into_iter()
            .filter_map(|(key, meta)| match key {
                Entry::Object(key) => Some(ObjectInfo {
                    key,
                    size: meta.len(),
                    modified: meta.modified().ok().map(time::OffsetDateTime::from),
                }),
                Entry::Partial { .. } => None,
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn unfinished(&self, prefix: &str) -> Result<Vec<Unfinished>> {
        let mut out: Vec<Unfinished> = self
            .walk_prefix(prefix)?
            .into_iter()
            .filter_map(|(key, meta)| match key {
                Entry::Partial { key, file } => Some(Unfinished {
                    key,
                    handle: file,
                    size: Some(meta.len()),
                    modified: meta.modified().ok().map(time::OffsetDateTime::from),
                }),
                Entry::Object(_) => None,
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key).then(a.handle.cmp(&b.handle)));
        Ok(out)
    }

    fn unfinished_kind(&self) -> &'static str {
        "temporary file"
    }
}

impl LocalStore {
    /// A new object of `size` bytes written at offsets, by several threads at once (pull's ranged
    /// parts), into a temporary file like [`Store::create`]'s, so that a killed writer leaves the
    /// same kind of leftover.
    pub fn create_placed(&self, key: &str, size: u64) -> Result<PlacedWriter> {
        let (file, tmp, path) = self.temporary(key)?;
        // The whole length at once: parts land anywhere, and a reader of the finished parts
        // (pull's hasher) never meets the end of the file. Sparse until written.
        file.set_len(size)
            .with_context(|| format!("sizing temporary file {}", tmp.display()))?;
        Ok(PlacedWriter {
            file: Some(file),
            _pending: pending(&tmp),
            tmp,
            path,
            key: key.to_string(),
        })
    }

    /// The hidden temporary file (read-write) an object `key` is written to before its commit,
    /// its path, and the object's path. Fails if the object exists.
    fn temporary(&self, key: &str) -> Result<(File, PathBuf, PathBuf)> {
        let path = self.path(key)?;
        if path.exists() {
            bail!(
                "object {key} already exists in {}; refusing to overwrite it",
                self.location()
            );
        }
        let dir = path
            .parent()
            .context("object key has no parent directory")?;
        fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
        let name = path.file_name().context("object key has no file name")?;
        let tmp = dir.join(format!(
            ".{}{PARTIAL}{:08x}",
            name.to_string_lossy(),
            rand::random::<u32>()
        ));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("creating temporary file {}", tmp.display()))?;
        Ok((file, tmp, path))
    }

    /// Every file whose key starts with `prefix`: objects, and temporary files by the key they
    /// were to become. Walks from the deepest directory the prefix names.
    fn walk_prefix(&self, prefix: &str) -> Result<Vec<(Entry, fs::Metadata)>> {
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        let mut out = Vec::new();
        if start.is_dir() {
            walk(&self.root, &start, &mut out)
                .with_context(|| format!("listing {} under {prefix:?}", self.location()))?;
        } else if !self.root.is_dir() {
            bail!(
                "local store directory {} does not exist",
                self.root.display()
            );
        }
        out.retain(|(e, _)| e.key().starts_with(prefix));
        Ok(out)
    }
}

impl AdminStore for LocalStore {
    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("deleting {}", path.display())),
        }
        self.remove_empty_parents(&path);
        Ok(())
    }

    fn discard(&self, write: &Unfinished) -> Result<()> {
        let path = self.path(&write.key)?;
        let dir = path
            .parent()
            .context("object key has no parent directory")?;
        // Only a name this store gives temporary files: a crafted handle cannot reach anything else.
        let own = write.handle.starts_with('.')
            && !write.handle.contains('/')
            && write.handle.contains(PARTIAL);
        if !own {
            bail!(
                "{:?} is not a temporary file of {} in {}",
                write.handle,
                write.key,
                self.location()
            );
        }
        let tmp = dir.join(&write.handle);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("removing {}", tmp.display())),
        }
        self.remove_empty_parents(&tmp);
        Ok(())
    }

    fn as_store(&self) -> &dyn Store {
        self
    }
}

impl LocalStore {
    /// Removes directories a removal left empty, up to (not including) the root.
    fn remove_empty_parents(&self, path: &Path) {
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
}

/// A file of the store: an object, or the temporary file of a write that did not finish.
enum Entry {
    Object(String),
    /// `file` is the temporary file's name, `key` the object it was to become.
    Partial {
        key: String,
        file: String,
    },
}

impl Entry {
    fn key(&self) -> &str {
        match self {
            Entry::Object(k) | Entry::Partial { key: k, .. } => k,
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(Entry, fs::Metadata)>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let meta = entry.metadata()?;
        let path = entry.path();
        if meta.is_dir() {
            if !name.starts_with('.') {
                walk(root, &path, out)?;
            }
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        let Some(rel) = path.strip_prefix(root).ok().and_then(|r| r.to_str()) else {
            continue;
        };
        let parent = rel.strip_suffix(name).unwrap_or_default();
        // Hidden files are never objects; a temporary file of ours is an unfinished write.
        let found = match name.strip_prefix('.').and_then(|n| n.rsplit_once(PARTIAL)) {
            Some((object, _)) if !object.is_empty() => Entry::Partial {
                key: format!("{parent}{object}"),
                file: name.to_string(),
            },
            Some(_) => continue,
            None if name.starts_with('.') => continue,
            None => Entry::Object(rel.to_string()),
        };
        out.push((found, meta));
    }
    Ok(())
}

struct LocalWriter {
    file: Option<io::BufWriter<File>>,
    /// Names the temporary file if the process has to exit before this writer is dropped.
    _pending: crate::interrupt::Pending,
    tmp: PathBuf,
    path: PathBuf,
    key: String,
    /// Bytes handed to the file (not counting the buffer's), and how many of them writeback was
    /// started for.
    written: u64,
    kicked: u64,
}

/// Writeback is started for every this many bytes written.
const KICK: u64 = 8 << 20;

/// Starts writing `len` bytes at `offset` of `file` to the disk without waiting for it
/// (sync_file_range with SYNC_FILE_RANGE_WRITE), so that the fsync at commit finds them written
/// instead of writing the whole object then. It promises nothing itself: the fsync does.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::unix::io::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain syscall on a descriptor this writer owns; no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // After SIGINT/SIGTERM: fail, so that the writer is dropped and its temporary file goes.
        crate::interrupt::check_io()?;
        let Some(f) = &mut self.file else {
            return Err(io::Error::other("object writer already finished"));
        };
        let before = f.buffer().len() as u64;
        let n = f.write(buf)?;
        // What left the buffer for the file: what came in, less what the buffer grew by.
        self.written = (self.written + before + n as u64).saturating_sub(f.buffer().len() as u64);
        if self.written - self.kicked >= KICK {
            start_writeback(f.get_ref(), self.kicked, self.written - self.kicked);
            self.kicked = self.written;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl ObjectWriter for LocalWriter {
    fn commit(mut self: Box<Self>) -> Result<()> {
        // Checked before the file is taken, so that Drop still removes it. Once past this, the
        // link below makes the object exist whole, or fails and leaves nothing.
        crate::interrupt::check().with_context(|| format!("not committing {}", self.key))?;
        let file = self.file.take().context("object writer already finished")?;
        let file = file
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", self.tmp.display()))?;
        place(file, &self.tmp, &self.path, &self.key)
    }
}

fn pending(tmp: &Path) -> crate::interrupt::Pending {
    crate::interrupt::Pending::new(format!(
        "the temporary file {} (hidden, never listed; remove it)",
        tmp.display()
    ))
}

/// Makes a finished temporary file the object: fsync, link(2) to the object's name, remove the
/// temporary name, fsync the directory.
fn place(file: File, tmp: &Path, path: &Path, key: &str) -> Result<()> {
    file.sync_all()
        .with_context(|| format!("fsync {}", tmp.display()))?;
    drop(file);
    // link(2) refuses an existing target: the no-overwrite guarantee holds even against a
    // concurrent writer of the same key.
    fs::hard_link(tmp, path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("object {key} already exists; refusing to overwrite it")
        } else {
            anyhow::Error::new(e).context(format!("committing {}", path.display()))
        }
    })?;
    fs::remove_file(tmp).with_context(|| format!("removing {}", tmp.display()))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("fsync directory {}", dir.display()))?;
    }
    Ok(())
}

/// A new object written at offsets ([`LocalStore::create_placed`]); `&self` methods, so parts on
/// several threads write at once. `commit` makes it visible; dropping it removes the temporary
/// file.
pub struct PlacedWriter {
    file: Option<File>,
    _pending: crate::interrupt::Pending,
    tmp: PathBuf,
    path: PathBuf,
    key: String,
}

impl PlacedWriter {
    /// Writes all of `buf` at `offset` (pwrite).
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        // After SIGINT/SIGTERM: fail, so that the writer is dropped and its temporary file goes.
        crate::interrupt::check_io()?;
        let file = self.file()?;
        file.write_all_at(buf, offset)?;
        // Parts arrive in 1 MiB writes; the kernel merges adjacent ranges.
        start_writeback(file, offset, buf.len() as u64);
        Ok(())
    }

    /// Reads back exactly `buf.len()` bytes written at `offset` (pread).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file()?.read_exact_at(buf, offset)
    }

    fn file(&self) -> io::Result<&File> {
        self.file
            .as_ref()
            .ok_or_else(|| io::Error::other("object writer already finished"))
    }

    /// Makes the object visible under its key. Fails if the key exists already.
    pub fn commit(mut self) -> Result<()> {
        crate::interrupt::check().with_context(|| format!("not committing {}", self.key))?;
        let file = self.file.take().context("object writer already finished")?;
        place(file, &self.tmp, &self.path, &self.key)
    }
}

impl Drop for PlacedWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            discard(&self.tmp);
        }
    }
}

/// An aborted write's temporary file must not linger. Nothing else to do if removal fails.
fn discard(tmp: &Path) {
    if let Err(e) = fs::remove_file(tmp) {
        tracing::warn!("could not remove temporary file {}: {e}", tmp.display());
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            discard(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_makes_visible_and_refuses_overwrite() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = LocalStore::new(dir.path())?;
        let mut w = store.create("h/s1/a.bin")?;
        w.write_all(b"hello")?;
        assert!(
            store.list("h/")?.is_empty(),
            "uncommitted object must not be listed"
        );
        w.commit()?;
        let listed = store.list("h/")?;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "h/s1/a.bin");
        assert_eq!(listed[0].size, 5);
        assert!(store.create("h/s1/a.bin").is_err());
        let mut buf = String::new();
        store.open("h/s1/a.bin")?.read_to_string(&mut buf)?;
        assert_eq!(buf, "hello");
        Ok(())
    }

    #[test]
    fn racing_writers_cannot_overwrite() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = LocalStore::new(dir.path())?;
        let mut a = store.create("k")?;
        let mut b = store.create("k")?;
        a.write_all(b"first")?;
        b.write_all(b"second")?;
        a.commit()?;
        assert!(b.commit().is_err());
        assert_eq!(fs::read(dir.path().join("k"))?, b"first");
        Ok(())
    }

    #[test]
    fn dropped_writer_leaves_nothing() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = LocalStore::new(dir.path())?;
        let mut w = store.create("x/y")?;
        w.write_all(b"partial")?;
        drop(w);
        assert_eq!(fs::read_dir(dir.path().join("x"))?.count(), 0);
        Ok(())
    }

    #[test]
    fn rejects_escaping_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        for key in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
            assert!(store.create(key).is_err(), "{key}");
        }
    }

    #[test]
    fn a_write_whose_writer_died_is_unfinished_not_an_object_and_discard_removes_it() -> Result<()>
    {
        let dir = tempfile::tempdir()?;
        let store = LocalStore::new(dir.path())?;
        let mut done = store.create("h/s1/a.bin")?;
        done.write_all(b"whole")?;
        done.commit()?;
        let mut w = store.create("h/s1/db/b.sql")?;
        w.write_all(b"half a dump")?;
        w.flush()?;
        // A killed process runs no destructor: the temporary file stays.
        std::mem::forget(w);

        let keys: Vec<String> = store.list("h/")?.into_iter().map(|o| o.key).collect();
        assert_eq!(keys, ["h/s1/a.bin"]);
        let left = store.unfinished("h/")?;
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].key, "h/s1/db/b.sql");
        assert_eq!(left[0].size, Some(11));
        assert!(left[0].handle.starts_with(".b.sql.partial-"), "{left:?}");
        assert!(store.unfinished("other/")?.is_empty());

        // Only a temporary file of this store can be discarded.
        let mut forged = left[0].clone();
        forged.handle = "../../a.bin".into();
        assert!(store.discard(&forged).is_err());
        forged.handle = ".partial-x/../../a.bin".into();
        assert!(store.discard(&forged).is_err());
        store.discard(&left[0])?;
        store.discard(&left[0])?;
        assert!(store.unfinished("h/")?.is_empty());
        assert!(
            !dir.path().join("h/s1/db").exists(),
            "the emptied directory goes too"
        );
        assert_eq!(store.list("h/")?.len(), 1);
        Ok(())
    }
}
