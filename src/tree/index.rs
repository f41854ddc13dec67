//! The tree index: JSON Lines, one header line, then one line per entry in walk order.
//!
//! ```text
//! {"format":"offsite-tree-index","version":1,"tree":"www","snapshot":"20261123T020000Z-1a2b"}
//! {"path":".","type":"dir","mode":493,"uid":0,"gid":0,"user":"root","group":"root","mtime":1700000000,"volume":"files/www/vol-00001.tar.zst.pgp"}
//! {"path":"a.txt","type":"file","size":5,"mode":420,...,"sha256":"...","volume":"files/www/vol-00001.tar.zst.pgp"}
//! {"path_b64":"Y2Fm6Q==","type":"symlink",...,"link":"a.txt","volume":"..."}
//! ```
//!
//! - Names are bytes on Unix. A name that is valid UTF-8 is stored as `path` / `link`; any other is
//!   stored as `path_b64` / `link_b64` (standard base64 of the raw bytes), so nothing is ever lost to a
//!   lossy conversion and ordinary names stay readable with `jq`.
//! - `volume` is the key of the tar volume that holds the entry, relative to the snapshot named by
//!   `snapshot`; an absent `snapshot` means the snapshot this index belongs to. Incrementals point
//!   unchanged files at an older snapshot's volume this way.
//! - `sha256` (regular files) is of the bytes actually stored in the volume.
//! - `mode` is the permission bits including setuid/setgid/sticky (`st_mode & 0o7777`), as a number.
//! - Readers ignore fields they do not know, so fields can be added without a version bump; a
//!   change of meaning bumps `version`, and a reader refuses a version newer than its own.

use std::fs::File;
use std::io::{self, BufRead, BufWriter, Read, Seek, Write};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::pipeline::Pipeline;
use crate::snapshot::manifest::{ObjectEntry, ObjectKind};

pub const FORMAT: &str = "offsite-tree-index";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexHeader {
    pub format: String,
    pub version: u32,
    pub tree: String,
    pub snapshot: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Fifo,
    Char,
    Block,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_b64: Option<String>,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// The rest of the mtime, and the change time and inode: what the next incremental compares
    /// to decide that a file is unchanged without reading it.
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub mtime_ns: u32,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub ctime: i64,
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub ctime_ns: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ino: u64,
    /// The file changed, shrank or failed while it was read: the stored bytes (which `sha256`
    /// matches) may not be one consistent version, so the next incremental reads it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inconsistent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub volume: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_b64: Option<String>,
    /// Device numbers of `char` and `block` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<u32>,
}

impl EntryKind {
    /// The tar entry type that carries this kind in a volume.
    pub fn tar_type(self) -> tar::EntryType {
        use tar::EntryType as T;
        match self {
            EntryKind::File => T::Regular,
            EntryKind::Dir => T::Directory,
            EntryKind::Symlink => T::Symlink,
            EntryKind::Hardlink => T::Link,
            EntryKind::Fifo => T::Fifo,
            EntryKind::Char => T::Char,
            EntryKind::Block => T::Block,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero32(n: &u32) -> bool {
    *n == 0
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

impl IndexEntry {
    pub fn path_bytes(&self) -> Result<Vec<u8>> {
        decode(self.path.as_deref(), self.path_b64.as_deref(), "path")?
            .context("index entry without a path")
    }

    pub fn set_path(&mut self, bytes: &[u8]) {
        (self.path, self.path_b64) = encode(bytes);
    }

    pub fn link_bytes(&self) -> Result<Option<Vec<u8>>> {
        decode(self.link.as_deref(), self.link_b64.as_deref(), "link")
    }

    pub fn set_link(&mut self, bytes: &[u8]) {
        (self.link, self.link_b64) = encode(bytes);
    }
}

/// UTF-8 names as text, anything else as base64 of the raw bytes.
fn encode(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    }
}

fn decode(text: Option<&str>, b64: Option<&str>, field: &str) -> Result<Option<Vec<u8>>> {
    match (text, b64) {
        (Some(_), Some(_)) => bail!("index entry has both {field} and {field}_b64"),
        (Some(s), None) => Ok(Some(s.as_bytes().to_vec())),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map(Some)
            .with_context(|| format!("index entry has an invalid {field}_b64")),
        (None, None) => Ok(None),
    }
}

/// Collects index lines in an anonymous temporary file while the volumes are written.
///
/// The index object is written after the volumes (it names them), and holding a million entries in
/// memory would cost hundreds of MB. Spooling to disk does not break the "never stage a dump on disk"
/// rule: this is metadata the process generates (names, sizes, hashes), not backup data, and the file
/// has no name (`O_TMPFILE` or unlinked at once), so it vanishes with the process.
pub struct IndexWriter {
    out: BufWriter<File>,
    entries: u64,
}

impl IndexWriter {
    pub fn new(tree: &str, snapshot: &str) -> Result<Self> {
        let file = tempfile::tempfile().context("creating a temporary file for the tree index")?;
        let mut w = Self {
            out: BufWriter::with_capacity(1 << 20, file),
            entries: 0,
        };
        let header = IndexHeader {
            format: FORMAT.to_string(),
            version: VERSION,
            tree: tree.to_string(),
            snapshot: snapshot.to_string(),
        };
        w.line(&header)?;
        Ok(w)
    }

    pub fn push(&mut self, entry: &IndexEntry) -> Result<()> {
        self.entries += 1;
        self.line(entry)
    }

    fn line<T: Serialize>(&mut self, value: &T) -> Result<()> {
        serde_json::to_writer(&mut self.out, value).context("writing the tree index")?;
        self.out
            .write_all(b"\n")
            .context("writing the tree index")?;
        Ok(())
    }

    /// Copies the spooled index into its object (`files/<tree>/index.jsonl`) and commits it.
    /// Returns the object and the spooled index itself (for push's state).
    pub fn finish(self, pipeline: &Pipeline, tree: &str) -> Result<(ObjectEntry, File)> {
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .context("writing the tree index")?;
        file.rewind().context("rewinding the tree index")?;
        let name = format!("files/{tree}/index.jsonl");
        let mut sink = pipeline.create(&name, ObjectKind::TreeIndex, &format!("tree/{tree}"))?;
        io::copy(&mut file, &mut sink).with_context(|| format!("writing {}", sink.key()))?;
        Ok((sink.finish()?, file))
    }
}

/// Reads an index line by line, after checking its header.
pub struct IndexReader<R> {
    inner: R,
    line: Vec<u8>,
    number: u64,
    pub header: IndexHeader,
}

impl<R: BufRead> IndexReader<R> {
    pub fn new(mut inner: R) -> Result<Self> {
        let mut line = Vec::new();
        read_line(&mut inner, &mut line).context("reading the index header")?;
        #[derive(Deserialize)]
        struct Head {
            format: String,
            version: u32,
        }
        let head: Head =
            serde_json::from_slice(&line).context("the index header is not valid JSON")?;
        if head.format != FORMAT {
            bail!("not an offsite tree index (format {:?})", head.format);
        }
        if head.version > VERSION {
            bail!(
                "tree index version {} is newer than this offsite understands ({VERSION}); upgrade offsite",
                head.version
            );
        }
        let header: IndexHeader =
            serde_json::from_slice(&line).context("reading the index header")?;
        Ok(Self {
            inner,
            line,
            number: 1,
            header,
        })
    }

    /// The next entry; `None` at the end (for a verified object: only once its hashes matched).
    pub fn next_entry(&mut self) -> Result<Option<IndexEntry>> {
        let n = read_line(&mut self.inner, &mut self.line)
            .with_context(|| format!("reading index line {}", self.number + 1))?;
        if n == 0 {
            return Ok(None);
        }
        self.number += 1;
        let entry = serde_json::from_slice(&self.line)
            .with_context(|| format!("index line {} is not a valid entry", self.number))?;
        Ok(Some(entry))
    }
}

/// The longest index line accepted: a path and a link target of 64 KiB each, base64-encoded, fit
/// with room to spare; a hostile index cannot make a reader buffer without bound.
const MAX_LINE: u64 = 1 << 20;

/// Reads one line (with its `\n`) into `line`, refusing lines longer than [`MAX_LINE`].
fn read_line(r: &mut impl BufRead, line: &mut Vec<u8>) -> Result<usize> {
    line.clear();
    let n = (&mut *r).take(MAX_LINE).read_until(b'\n', line)?;
    if n as u64 == MAX_LINE && line.last() != Some(&b'\n') {
        bail!("a line is longer than {MAX_LINE} bytes: not an index offsite wrote");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &[u8]) -> IndexEntry {
        let mut e = IndexEntry {
            path: None,
            path_b64: None,
            kind: EntryKind::File,
            size: 3,
            mode: 0o644,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: 1,
            mtime_ns: 0,
            ctime: 0,
            ctime_ns: 0,
            ino: 0,
            inconsistent: false,
            sha256: None,
            volume: "files/t/vol-00001.tar.zst.pgp".into(),
            snapshot: None,
            link: None,
            link_b64: None,
            major: None,
            minor: None,
        };
        e.set_path(path);
        e
    }

    #[test]
    fn names_round_trip_as_bytes() -> Result<()> {
        for name in [&b"plain"[..], b"caf\xe9", b"new\nline", "ünï".as_bytes()] {
            let e = entry(name);
            let json = serde_json::to_string(&e)?;
            assert!(!json.contains('\n'), "{json}");
            let back: IndexEntry = serde_json::from_str(&json)?;
            assert_eq!(back.path_bytes()?, name);
            assert_eq!(back.path.is_some(), std::str::from_utf8(name).is_ok());
        }
        Ok(())
    }

    #[test]
    fn reader_refuses_newer_versions_and_tolerates_new_fields() -> Result<()> {
        let newer = b"{\"format\":\"offsite-tree-index\",\"version\":9,\"tree\":\"t\",\"snapshot\":\"s\"}\n";
        assert!(IndexReader::new(&newer[..]).is_err());
        let data = format!(
            "{}\n{}\n",
            r#"{"format":"offsite-tree-index","version":1,"tree":"t","snapshot":"s","extra":1}"#,
            r#"{"path":"a","type":"dir","mode":493,"uid":0,"gid":0,"mtime":5,"volume":"v","future":true}"#
        );
        let mut r = IndexReader::new(data.as_bytes())?;
        assert_eq!(r.header.tree, "t");
        let e = r.next_entry()?.context("one entry")?;
        assert_eq!(e.kind, EntryKind::Dir);
        assert!(r.next_entry()?.is_none());
        Ok(())
    }
}
