//! Index entries set aside between the index pass and the volume pass of a restore, one list per
//! volume, in temporary files: a restore of a million files keeps a few buffers in memory, not a
//! million entries.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};

use anyhow::{Context, Result};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::tree::index::IndexEntry;

/// Writers kept open at once; past this all are closed and reopened for append as needed, so a
/// chain of hundreds of volumes stays under the process's file limit.
const MAX_OPEN: usize = 64;

/// One entry and, when it is written elsewhere than its own path, where (a hardlink whose target
/// is outside the selection gets the target's content).
#[derive(Serialize, Deserialize)]
pub struct Spooled {
    pub entry: IndexEntry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dest_b64: Option<String>,
}

impl Spooled {
    pub fn dest(&self) -> Result<Vec<u8>> {
        match &self.dest_b64 {
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .context("a spooled destination"),
            None => self.entry.path_bytes(),
        }
    }
}

/// Lists keyed by `K`, iterated in key order.
pub struct Spools<K: Ord + Clone> {
    dir: tempfile::TempDir,
    files: BTreeMap<K, usize>,
    open: BTreeMap<usize, BufWriter<File>>,
}

impl<K: Ord + Clone> Spools<K> {
    pub fn new() -> Result<Self> {
        Ok(Self {
            dir: tempfile::tempdir().context("creating a temporary directory for the restore")?,
            files: BTreeMap::new(),
            open: BTreeMap::new(),
        })
    }

    pub fn push(&mut self, key: &K, entry: &IndexEntry, dest: Option<&[u8]>) -> Result<()> {
        let next = self.files.len();
        let n = *self.files.entry(key.clone()).or_insert(next);
        if !self.open.contains_key(&n) && self.open.len() >= MAX_OPEN {
            for (_, mut w) in std::mem::take(&mut self.open) {
                w.flush().context("writing the restore's spool")?;
            }
        }
        let w = match self.open.entry(n) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join(n.to_string()))
                    .context("opening the restore's spool")?;
                v.insert(BufWriter::with_capacity(64 << 10, f))
            }
        };
        let item = Spooled {
            entry: entry.clone(),
            dest_b64: dest.map(|d| base64::engine::general_purpose::STANDARD.encode(d)),
        };
        serde_json::to_writer(&mut *w, &item).context("writing the restore's spool")?;
        w.write_all(b"\n").context("writing the restore's spool")?;
        Ok(())
    }

    /// Every list, in key order. Each is opened only when it is read, so a view of thousands of
    /// volumes never holds thousands of files open.
    pub fn finish(mut self) -> Result<SpoolSet<K>> {
        for (_, mut w) in std::mem::take(&mut self.open) {
            w.flush().context("writing the restore's spool")?;
        }
        let lists = self
            .files
            .iter()
            .map(|(k, n)| (k.clone(), self.dir.path().join(n.to_string())))
            .collect();
        Ok(SpoolSet {
            _dir: self.dir,
            lists,
        })
    }
}

/// The finished lists; the temporary directory lives as long as this.
pub struct SpoolSet<K> {
    _dir: tempfile::TempDir,
    lists: Vec<(K, std::path::PathBuf)>,
}

impl<K: Clone> SpoolSet<K> {
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.lists.iter().map(|(k, _)| k)
    }

    /// The entries of list `i` (in key order), in the order pushed.
    pub fn read(&self, i: usize) -> Result<SpoolReader> {
        let (_, path) = self
            .lists
            .get(i)
            .context("internal error: no such spool list")?;
        let f = File::open(path).context("reading the restore's spool")?;
        Ok(SpoolReader {
            lines: BufReader::with_capacity(64 << 10, f),
            line: Vec::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.lists.len()
    }
}

pub struct SpoolReader {
    lines: BufReader<File>,
    line: Vec<u8>,
}

impl Iterator for SpoolReader {
    type Item = Result<Spooled>;
    fn next(&mut self) -> Option<Self::Item> {
        self.line.clear();
        match self.lines.read_until(b'\n', &mut self.line) {
            Ok(0) => None,
            Ok(_) => {
                Some(serde_json::from_slice(&self.line).context("reading the restore's spool"))
            }
            Err(e) => Some(Err(e).context("reading the restore's spool")),
        }
    }
}
