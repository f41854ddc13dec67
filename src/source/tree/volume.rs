//! Tar volumes: `files/<tree>/vol-00001.tar`, ... each a complete GNU tar archive.
//!
//! Headers are built here rather than by `tar::Builder`, because the builder normalises paths and
//! link targets through `Path::components` (`a//b` becomes `a/b`, a trailing `/` disappears), while a
//! symlink target must be stored byte for byte. Names of 100 bytes or more use GNU long-name (`L`) and
//! long-link (`K`) records, which GNU tar, bsdtar and the `tar` crate all read.
//!
//! Directories across volumes: when a directory's contents continue in a later volume, extracting
//! that volume adds entries to the directory and so moves its mtime. Each volume after the first
//! therefore starts with the headers of the directories that enclose its first entry (repeated, not
//! indexed): GNU tar re-applies their mode and mtime at the end of that volume, so extracting the
//! volumes one by one (`for v in vol-*; do gpg -d $v | zstd -d | tar -x; done`) reproduces the tree,
//! directory times included. Offsite's restore skips these repeats.
//!
//! Sizing: a new volume starts when the next entry (headers + padded data) plus the end-of-archive
//! blocks would push the current one past the limit. An entry larger than the limit is not split:
//! it goes into a volume of its own, which then exceeds the limit. Splitting would need GNU
//! multi-volume archives, which stock `tar -x` cannot extract one volume at a time; volumes are
//! streamed, so an oversized one costs no memory, only a bigger object.

use std::io::{self, Write};

use anyhow::{bail, Context, Result};
use tar::{EntryType, Header};

use crate::pipeline::{ObjectSink, Pipeline};
use crate::snapshot::manifest::{ObjectEntry, ObjectKind};

const BLOCK: u64 = 512;
/// Two zero blocks end a tar archive.
const TRAILER: u64 = 2 * BLOCK;
/// GNU `name` and `linkname` fields; longer names go into `L`/`K` records.
const NAME_FIELD: usize = 100;

/// Everything a tar header records about one entry.
pub struct EntryHeader<'a> {
    pub kind: EntryType,
    /// Relative path as bytes; directories get their trailing `/` here, not from the caller.
    pub path: &'a [u8],
    /// Symlink target or hardlink target path.
    pub link: Option<&'a [u8]>,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub user: Option<&'a [u8]>,
    pub group: Option<&'a [u8]>,
    pub mtime: i64,
    pub device: Option<(u32, u32)>,
}

struct Current {
    sink: ObjectSink,
    entries: u64,
}

pub struct Volumes<'p> {
    pipeline: &'p Pipeline,
    tree: String,
    limit: u64,
    current: Option<Current>,
    /// The previous volume, finishing on a thread of its own (see [`Volumes::close`]).
    finishing: Option<std::thread::JoinHandle<Result<ObjectEntry>>>,
    number: u32,
    keys: Vec<String>,
    objects: Vec<ObjectEntry>,
}

impl<'p> Volumes<'p> {
    pub fn new(pipeline: &'p Pipeline, tree: &str, limit: u64) -> Self {
        Self {
            pipeline,
            tree: tree.to_string(),
            limit,
            current: None,
            finishing: None,
            number: 0,
            keys: Vec::new(),
            objects: Vec::new(),
        }
    }

    /// Appends one entry: `blocks` from [`header_blocks`], then `size` bytes that `data` writes
    /// (checked: a wrong count would corrupt every later entry of the volume). `enclosing` are the
    /// header blocks of the directories that contain the entry, outermost first; a new volume repeats
    /// them before its first entry (see the module doc). Returns the key of the volume written to.
    pub fn append(
        &mut self,
        blocks: &[u8],
        size: u64,
        enclosing: &[&[u8]],
        data: impl FnOnce(&mut ObjectSink) -> Result<()>,
    ) -> Result<String> {
        let entry_bytes = blocks.len() as u64 + padded(size);
        let rotate = match &self.current {
            Some(c) => c.entries > 0 && c.sink.plain_size() + entry_bytes + TRAILER > self.limit,
            None => false,
        };
        if rotate {
            self.close()?;
        }
        if self.current.is_none() {
            self.number += 1;
            let name = format!("files/{}/vol-{:05}.tar", self.tree, self.number);
            let mut sink = self.pipeline.create(
                &name,
                ObjectKind::TreeVolume,
                &format!("tree/{}", self.tree),
            )?;
            for dir in enclosing {
                sink.write_all(dir)
                    .with_context(|| format!("writing {}", sink.key()))?;
            }
            self.current = Some(Current { sink, entries: 0 });
        }
        let Some(cur) = self.current.as_mut() else {
            bail!("no open volume")
        };
        let key = cur.sink.key().to_string();
        let what = || format!("writing {key}");
        cur.sink.write_all(blocks).with_context(what)?;
        let start = cur.sink.plain_size();
        data(&mut cur.sink)?;
        let written = cur.sink.plain_size() - start;
        if written != size {
            bail!(
                "internal error: {written} bytes written for a tar entry of {size} bytes in {key}"
            );
        }
        write_zeros(&mut cur.sink, padded(size) - size).with_context(what)?;
        cur.entries += 1;
        Ok(key)
    }

    /// Ends the current volume. Finishing it (zstd's last jobs, the end of the encryption, the
    /// store's commit and fsync) drains every stage of its pipeline one after the other; it runs on a
    /// thread of its own, so the next volume's data already flows meanwhile. One volume at most
    /// finishes at a time, which bounds the memory and threads to two pipelines.
    fn close(&mut self) -> Result<()> {
        if let Some(mut cur) = self.current.take() {
            write_zeros(&mut cur.sink, TRAILER)
                .with_context(|| format!("writing {}", cur.sink.key()))?;
            self.join_finishing()?;
            self.keys.push(cur.sink.key().to_string());
            let sink = cur.sink;
            self.finishing = Some(
                std::thread::Builder::new()
                    .name("offsite-volume-end".into())
                    .spawn(move || sink.finish())
                    .context("starting a thread to finish a volume")?,
            );
        }
        Ok(())
    }

    fn join_finishing(&mut self) -> Result<()> {
        if let Some(handle) = self.finishing.take() {
            let entry = handle
                .join()
                .map_err(|_| anyhow::anyhow!("finishing a volume panicked"))??;
            self.objects.push(entry);
        }
        Ok(())
    }

    /// Ends the last volume and returns the volume keys (in order) and their manifest entries.
    pub fn finish(mut self) -> Result<(Vec<String>, Vec<ObjectEntry>)> {
        self.close()?;
        self.join_finishing()?;
        Ok((
            std::mem::take(&mut self.keys),
            std::mem::take(&mut self.objects),
        ))
    }
}

impl Drop for Volumes<'_> {
    /// On an error path, the volume still finishing is waited for, so that nothing of this tree
    /// is still being written when the caller reports the failure.
    fn drop(&mut self) {
        if let Some(handle) = self.finishing.take() {
            let _ = handle.join();
        }
    }
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK
}

fn write_zeros(w: &mut impl Write, mut n: u64) -> io::Result<()> {
    const ZEROS: [u8; 4096] = [0; 4096];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        w.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// The header block of an entry, preceded by GNU long-name / long-link records where needed.
pub fn header_blocks(h: &EntryHeader<'_>) -> Result<Vec<u8>> {
    let mut name = h.path.to_vec();
    if h.kind == EntryType::Directory && !name.ends_with(b"/") {
        name.push(b'/');
    }
    let mut out = Vec::with_capacity(BLOCK as usize);
    if name.len() >= NAME_FIELD {
        long_record(&mut out, EntryType::GNULongName, &name);
    }
    if let Some(link) = h.link {
        if link.len() >= NAME_FIELD {
            long_record(&mut out, EntryType::GNULongLink, link);
        }
    }
    let mut header = Header::new_gnu();
    {
        let old = header.as_old_mut();
        copy_truncated(&mut old.name, &name);
        if let Some(link) = h.link {
            copy_truncated(&mut old.linkname, link);
        }
    }
    header.set_entry_type(h.kind);
    header.set_mode(h.mode & 0o7777);
    header.set_uid(h.uid);
    header.set_gid(h.gid);
    // Tar's classic mtime field is unsigned; the index keeps the true (possibly negative) value.
    header.set_mtime(h.mtime.max(0) as u64);
    header.set_size(h.size);
    if let Some(gnu) = header.as_gnu_mut() {
        // Names that do not fit (31 bytes + NUL) are left out; tar then falls back to the ids.
        if let Some(user) = h.user.filter(|u| u.len() < gnu.uname.len()) {
            gnu.uname[..user.len()].copy_from_slice(user);
        }
        if let Some(group) = h.group.filter(|g| g.len() < gnu.gname.len()) {
            gnu.gname[..group.len()].copy_from_slice(group);
        }
    }
    if let Some((major, minor)) = h.device {
        header
            .set_device_major(major)
            .context("device major number")?;
        header
            .set_device_minor(minor)
            .context("device minor number")?;
    }
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    Ok(out)
}

/// A GNU `././@LongLink` record carrying a long name (NUL-terminated), as GNU tar writes it.
fn long_record(out: &mut Vec<u8>, kind: EntryType, name: &[u8]) {
    let mut header = Header::new_gnu();
    copy_truncated(&mut header.as_old_mut().name, b"././@LongLink");
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(name.len() as u64 + 1);
    header.set_entry_type(kind);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(name);
    out.push(0);
    let len = out.len() as u64;
    out.resize(padded(len) as usize, 0);
}

fn copy_truncated(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn header<'a>(kind: EntryType, path: &'a [u8], link: Option<&'a [u8]>) -> EntryHeader<'a> {
        EntryHeader {
            kind,
            path,
            link,
            size: 0,
            mode: 0o4755,
            uid: 1000,
            gid: 1000,
            user: Some(b"alice"),
            group: Some(b"staff"),
            mtime: 1_700_000_000,
            device: None,
        }
    }

    #[test]
    fn long_and_odd_names_read_back_byte_exact() -> Result<()> {
        let long: Vec<u8> = [b"d/".repeat(60), b"caf\xe9 \n".to_vec()].concat();
        let target: Vec<u8> = [b"../".repeat(50), b"x//y/".to_vec()].concat();
        let mut tar = Vec::new();
        tar.extend(header_blocks(&header(
            EntryType::Symlink,
            &long,
            Some(&target),
        ))?);
        tar.extend(header_blocks(&header(
            EntryType::Directory,
            b"short",
            None,
        ))?);
        tar.extend(header_blocks(&header(
            EntryType::Symlink,
            b"s",
            Some(b"a//b/"),
        ))?);
        tar.extend([0u8; 1024]);
        let mut archive = tar::Archive::new(&tar[..]);
        let mut seen = Vec::new();
        for entry in archive.entries()? {
            let entry = entry?;
            seen.push((
                entry.path_bytes().to_vec(),
                entry.link_name_bytes().map(|l| l.to_vec()),
                entry.header().mode()?,
                entry.header().username_bytes().map(|u| u.to_vec()),
            ));
        }
        assert_eq!(seen[0].0, long);
        assert_eq!(seen[0].1.as_deref(), Some(&target[..]));
        assert_eq!(seen[0].2, 0o4755);
        assert_eq!(seen[0].3.as_deref(), Some(&b"alice"[..]));
        assert_eq!(seen[1].0, b"short/");
        assert_eq!(seen[2].1.as_deref(), Some(&b"a//b/"[..]));
        let mut rest = Vec::new();
        archive.into_inner().read_to_end(&mut rest)?;
        Ok(())
    }
}
