//! The walk: depth-first, directory before its contents, names sorted by their bytes, symlinks not
//! followed (only the root itself is resolved, so a tree may be configured as a symlink to its data).
//!
//! Sorted order makes two backups of an unchanged tree byte-identical, and pre-order guarantees that
//! tar sees a directory before anything in it and a hardlink target before the link.
//!
//! Exclude globs match the path relative to the root (`a/b/c`, no leading `./`). `*` and `?` do not
//! cross `/`; `**` as a whole component crosses directories, so `**/cache/**` excludes everything
//! inside any `cache` directory. A directory the pattern would empty entirely (the pattern ends in
//! `/**` and the rest matches the directory) is kept as an empty directory and not descended, which
//! spares walking a huge cache only to drop every entry.

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use anyhow::Result;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::usage;

/// The root's relative path in the walk, the index and (as `./`) the tar.
pub const ROOT: &[u8] = b".";

pub struct Excludes {
    /// Paths that are left out entirely.
    skip: GlobSet,
    /// Directories whose every descendant is left out: kept, not descended.
    prune: GlobSet,
}

impl Excludes {
    pub fn new(patterns: &[String]) -> Result<Self> {
        let mut skip = GlobSetBuilder::new();
        let mut prune = GlobSetBuilder::new();
        for p in patterns {
            skip.add(glob(p)?);
            if let Some(dir) = p.strip_suffix("/**") {
                if !dir.is_empty() {
                    prune.add(glob(dir)?);
                }
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| usage(format!("exclude patterns: {e}")))
        };
        Ok(Self {
            skip: build(skip)?,
            prune: build(prune)?,
        })
    }

    fn skips(&self, rel: &[u8]) -> bool {
        self.skip
            .is_match(Path::new(std::ffi::OsStr::from_bytes(rel)))
    }

    fn prunes(&self, rel: &[u8]) -> bool {
        self.prune
            .is_match(Path::new(std::ffi::OsStr::from_bytes(rel)))
    }
}

fn glob(pattern: &str) -> Result<globset::Glob> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| usage(format!("exclude pattern {pattern:?}: {e}")))
}

/// One path found by the walk, with its `lstat`.
pub struct Item {
    /// Relative to the root, `/`-separated; [`ROOT`] for the root.
    pub rel: Vec<u8>,
    pub meta: Metadata,
}

struct Frame {
    rel: Vec<u8>,
    names: std::vec::IntoIter<OsString>,
}

pub struct Walker {
    root: PathBuf,
    excludes: Excludes,
    stack: Vec<Frame>,
    root_pending: bool,
}

impl Walker {
    pub fn new(root: &Path, excludes: Excludes) -> Self {
        Self {
            root: root.to_path_buf(),
            excludes,
            stack: Vec::new(),
            root_pending: true,
        }
    }

    /// The absolute path of a walk item.
    pub fn full_path(&self, rel: &[u8]) -> PathBuf {
        if rel == ROOT {
            self.root.clone()
        } else {
            self.root.join(std::ffi::OsStr::from_bytes(rel))
        }
    }

    /// The next path in walk order. Paths that vanish or cannot be listed become warnings; the root
    /// must be a readable directory (anything else is the caller's error to report).
    pub fn next_item(&mut self, warnings: &mut Vec<String>) -> io::Result<Option<Item>> {
        if self.root_pending {
            self.root_pending = false;
            let meta = fs::metadata(&self.root)?;
            if !meta.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "not a directory",
                ));
            }
            self.descend(ROOT.to_vec(), warnings);
            return Ok(Some(Item {
                rel: ROOT.to_vec(),
                meta,
            }));
        }
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(name) = frame.names.next() else {
                self.stack.pop();
                continue;
            };
            let rel = if frame.rel == ROOT {
                name.into_vec()
            } else {
                let mut rel = frame.rel.clone();
                rel.push(b'/');
                rel.extend_from_slice(name.as_bytes());
                rel
            };
            if self.excludes.skips(&rel) {
                continue;
            }
            let meta = match fs::symlink_metadata(self.full_path(&rel)) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    warnings.push(format!("vanished before it was read: {}", display(&rel)));
                    continue;
                }
                Err(e) => {
                    warnings.push(format!("cannot stat {}, left out: {e}", display(&rel)));
                    continue;
                }
            };
            if meta.is_dir() && !self.excludes.prunes(&rel) {
                self.descend(rel.clone(), warnings);
            }
            return Ok(Some(Item { rel, meta }));
        }
    }

    /// Lists a directory now, so its entries follow it in the walk. An unreadable directory is
    /// still stored (its own metadata is known) but empty, with a warning.
    fn descend(&mut self, rel: Vec<u8>, warnings: &mut Vec<String>) {
        let mut names = Vec::new();
        match fs::read_dir(self.full_path(&rel)) {
            Ok(entries) => {
                for entry in entries {
                    match entry {
                        Ok(e) => names.push(e.file_name()),
                        Err(e) => {
                            warnings.push(format!("cannot list all of {}: {e}", display(&rel)));
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                warnings.push(format!("cannot list {}, stored empty: {e}", display(&rel)));
            }
        }
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        self.stack.push(Frame {
            rel,
            names: names.into_iter(),
        });
    }
}

/// The walk's order on relative paths: the root first, then component by component, each compared
/// as bytes. Indexes are in this order, which lets push merge the previous index with the walk and
/// restore match index entries with volume entries, both streaming.
pub fn walk_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a == ROOT, b == ROOT) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.split(|c| *c == b'/').cmp(b.split(|c| *c == b'/')),
    }
}

/// A path for messages only: lossy, with control characters (a newline in a name) escaped.
pub fn display(rel: &[u8]) -> String {
    String::from_utf8_lossy(rel).escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str]) -> Excludes {
        Excludes::new(&patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn walk_order_is_component_wise() {
        use std::cmp::Ordering::*;
        assert_eq!(walk_cmp(b".", b"a"), Less);
        assert_eq!(walk_cmp(b"a", b"a/b"), Less);
        // Byte order would put "a.txt" first ('.' < '/'); the walk finishes "a/" first.
        assert_eq!(walk_cmp(b"a/b", b"a.txt"), Less);
        assert_eq!(walk_cmp(b"a/z", b"ab"), Less);
        assert_eq!(walk_cmp(b"b", b"a/b"), Greater);
        assert_eq!(walk_cmp(b"a/b", b"a/b"), Equal);
    }

    #[test]
    fn glob_semantics() {
        let e = ex(&["**/cache/**", "*.tmp", "logs/*.log"]);
        assert!(e.skips(b"cache/x"));
        assert!(e.skips(b"a/b/cache/x/y"));
        assert!(!e.skips(b"a/cache"), "the directory itself stays");
        assert!(e.prunes(b"a/cache"), "but it is not descended");
        assert!(e.prunes(b"cache"));
        assert!(!e.prunes(b"a/cachet"));
        assert!(e.skips(b"x.tmp"));
        assert!(!e.skips(b"a/x.tmp"), "* does not cross /");
        assert!(e.skips(b"logs/a.log"));
        assert!(!e.skips(b"logs/old/a.log"));
        assert!(e.skips(b"caf\xe9.tmp"));
        assert!(Excludes::new(&["a[".to_string()]).is_err());
    }
}
