//! Comparing a file tree with its restore.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What a user compares after a restore: per path (as bytes), type, content, mode, mtime, link
/// target, and for files the number of links.
pub fn describe(root: &Path) -> BTreeMap<Vec<u8>, String> {
    fn walk(root: &Path, rel: &[u8], out: &mut BTreeMap<Vec<u8>, String>) {
        let path = if rel == b"." {
            root.to_path_buf()
        } else {
            root.join(OsStr::from_bytes(rel))
        };
        let m = fs::symlink_metadata(&path).expect("lstat");
        let ft = m.file_type();
        let what = if ft.is_symlink() {
            let target = fs::read_link(&path).expect("readlink");
            format!("link -> {:?}", target.as_os_str().as_bytes())
        } else if ft.is_dir() {
            format!("dir {:o} mtime {}", m.mode() & 0o7777, m.mtime())
        } else {
            let data = fs::read(&path).expect("read");
            format!(
                "file {:o} mtime {} nlink {} sha {}",
                m.mode() & 0o7777,
                m.mtime(),
                m.nlink(),
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data))
            )
        };
        out.insert(rel.to_vec(), what);
        if ft.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&path)
                .expect("readdir")
                .map(|e| e.expect("entry").file_name())
                .collect();
            names.sort();
            for n in names {
                let child = if rel == b"." {
                    n.as_bytes().to_vec()
                } else {
                    [rel, b"/", n.as_bytes()].concat()
                };
                walk(root, &child, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, b".", &mut out);
    out
}

/// Asserts two [`describe`]s are equal, listing every path that differs.
pub fn assert_same(want: &BTreeMap<Vec<u8>, String>, got: &BTreeMap<Vec<u8>, String>, what: &str) {
    let diff: Vec<String> = want
        .keys()
        .chain(got.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| want.get(*k) != got.get(*k))
        .map(|k| {
            format!(
                "{}: want {:?}, got {:?}",
                String::from_utf8_lossy(k),
                want.get(k),
                got.get(k)
            )
        })
        .collect();
    assert!(diff.is_empty(), "{what}:\n{}", diff.join("\n"));
}
