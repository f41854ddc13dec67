//! A directory as a store: the embedded default, and the office's offsite copy.
//!
//! Objects are written to a hidden temporary file beside their final name, fsynced, then linked into
//! place with `link(2)`, which fails if the name exists: that makes "never overwrite" atomic without a
//! lock. The directory is fsynced after the link so a committed object survives a power cut.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{check_key, AdminStore, ObjectInfo, ObjectWriter, Store};

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
            ".{}.partial-{:08x}",
            name.to_string_lossy(),
            rand::random::<u32>()
        ));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("creating temporary file {}", tmp.display()))?;
        Ok(Box::new(LocalWriter {
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            _pending: crate::interrupt::Pending::new(format!(
                "the temporary file {} (hidden, never listed; remove it)",
                tmp.display()
            )),
            tmp,
            path,
            key: key.to_string(),
        }))
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let path = self.path(key)?;
        let file = File::open(&path)
            .with_context(|| format!("opening object {key} in {}", self.location()))?;
        Ok(Box::new(file))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        // Walk from the deepest directory the prefix names, then filter by the full prefix.
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
        out.retain(|o| o.key.starts_with(prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
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
        // Remove directories the delete left empty, up to (not including) the root.
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn as_store(&self) -> &dyn Store {
        self
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<ObjectInfo>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        // Temporary files of unfinished writes are hidden and never listed.
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let meta = entry.metadata()?;
        let path = entry.path();
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let Some(key) = rel.to_str() else { continue };
            out.push(ObjectInfo {
                key: key.to_string(),
                size: meta.len(),
                modified: meta.modified().ok().map(time::OffsetDateTime::from),
            });
        }
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
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // After SIGINT/SIGTERM: fail, so that the writer is dropped and its temporary file goes.
        crate::interrupt::check_io()?;
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("object writer already finished")),
        }
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
        file.sync_all()
            .with_context(|| format!("fsync {}", self.tmp.display()))?;
        drop(file);
        // link(2) refuses an existing target: the no-overwrite guarantee holds even against a
        // concurrent writer of the same key.
        fs::hard_link(&self.tmp, &self.path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                anyhow::anyhow!(
                    "object {} already exists; refusing to overwrite it",
                    self.key
                )
            } else {
                anyhow::Error::new(e).context(format!("committing {}", self.path.display()))
            }
        })?;
        fs::remove_file(&self.tmp).with_context(|| format!("removing {}", self.tmp.display()))?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("fsync directory {}", dir.display()))?;
        }
        Ok(())
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Aborted: the temporary file must not linger. Nothing else to do if removal fails.
            if let Err(e) = fs::remove_file(&self.tmp) {
                tracing::warn!(
                    "could not remove temporary file {}: {e}",
                    self.tmp.display()
                );
            }
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
}
