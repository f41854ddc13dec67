//! `--path`: which entries of a tree a restore writes. A selected path brings everything under it;
//! the directories above it are restored too (with their recorded attributes), so the selection
//! lands at the same relative place as in a full restore.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::Result;

use crate::error::usage;
use crate::tree::walk::{display, ROOT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Selected, or inside a selected directory.
    Inside,
    /// A directory that leads to a selected path.
    Above,
    Outside,
}

/// The selected paths (relative to the tree root, as in the index); empty selects everything.
#[derive(Debug, Default)]
pub struct Selection {
    paths: Vec<Vec<u8>>,
    found: Vec<bool>,
}

impl Selection {
    /// From `--path` arguments: relative to the tree (`etc/nginx`, `./a/b/`), or absolute under the
    /// tree's root as it was backed up (`/var/www/a/b` for a tree of `/var/www`).
    pub fn new(args: &[impl AsRef<Path>], root: &str) -> Result<Self> {
        let mut paths = Vec::new();
        for a in args {
            let raw = a.as_ref().as_os_str().as_bytes();
            let root = root.trim_end_matches('/').as_bytes();
            let rel = match raw.strip_prefix(root) {
                Some(rest)
                    if raw.first() == Some(&b'/') && (rest.is_empty() || rest[0] == b'/') =>
                {
                    rest
                }
                _ if raw.first() == Some(&b'/') => {
                    return Err(usage(format!(
                        "--path {}: an absolute path must be inside the tree's root {}",
                        display(raw),
                        String::from_utf8_lossy(root)
                    )))
                }
                _ => raw,
            };
            let parts: Vec<&[u8]> = rel
                .split(|b| *b == b'/')
                .filter(|c| !c.is_empty() && *c != b".")
                .collect();
            if parts.contains(&&b".."[..]) {
                return Err(usage(format!(
                    "--path {}: '..' is not allowed",
                    display(raw)
                )));
            }
            if parts.is_empty() {
                // The whole tree.
                return Ok(Self::default());
            }
            paths.push(parts.join(&b'/'));
        }
        let found = vec![false; paths.len()];
        Ok(Self { paths, found })
    }

    pub fn is_all(&self) -> bool {
        self.paths.is_empty()
    }

    /// Where `path` stands; marks the selected path it falls under as found.
    pub fn place(&mut self, path: &[u8]) -> Place {
        if self.paths.is_empty() {
            return Place::Inside;
        }
        let mut above = false;
        for (i, sel) in self.paths.iter().enumerate() {
            if under(path, sel) {
                self.found[i] = true;
                return Place::Inside;
            }
            if path == ROOT || under(sel, path) {
                above = true;
            }
        }
        if above {
            Place::Above
        } else {
            Place::Outside
        }
    }

    /// Whether `path` is selected, without marking anything.
    pub fn contains(&self, path: &[u8]) -> bool {
        self.paths.is_empty() || self.paths.iter().any(|s| under(path, s))
    }

    /// The selected paths that matched nothing.
    pub fn missing(&self) -> Vec<String> {
        self.paths
            .iter()
            .zip(&self.found)
            .filter(|(_, f)| !**f)
            .map(|(p, _)| display(p))
            .collect()
    }
}

/// `path` is `dir` or inside it.
fn under(path: &[u8], dir: &[u8]) -> bool {
    path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_and_placed() -> Result<()> {
        let mut s = Selection::new(&["./a/b/", "/srv/www/c"], "/srv/www")?;
        assert_eq!(s.place(b"."), Place::Above);
        assert_eq!(s.place(b"a"), Place::Above);
        assert_eq!(s.place(b"a/b"), Place::Inside);
        assert_eq!(s.place(b"a/b/x"), Place::Inside);
        assert_eq!(s.place(b"a/bc"), Place::Outside);
        assert_eq!(s.place(b"d"), Place::Outside);
        assert_eq!(s.missing(), vec!["c".to_string()]);
        assert!(Selection::new(&["a/../b"], "/r").is_err());
        assert!(Selection::new(&["/elsewhere/x"], "/srv/www").is_err());
        assert!(Selection::new(&["."], "/r")?.is_all());
        Ok(())
    }
}
