//! push's memory of a tree between runs: the index it last committed, and where that run stands in
//! its chain.
//!
//! `state_dir/<host>/<tree>.state.zst` is zstd (with its content checksum) of one JSON header line,
//! then the committed index verbatim. It is written only after the manifest is committed (temporary
//! file, fsync, rename), so it never names a snapshot that does not exist; a push that fails leaves
//! the previous state in place, which still describes a committed snapshot.
//!
//! It is read with suspicion, because a wrong state would silently break every later snapshot:
//! - missing, unreadable or corrupt (checked whole before use, checksum included) -> a full run;
//! - foreign: another host, tree, root, store or set of recipients (an incremental must not point
//!   into volumes another store holds, or that the current office key cannot open) -> a full run;
//! - a snapshot the state points into is gone from the store -> a full run.
//! - the previous run is dated after this run's now (this host's clock jumped) -> a full run.
//!
//! production never reads S3 objects or decrypts anything for an incremental: the state holds all
//! it needs, and the office key stays in the office.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::human_duration;
use crate::snapshot::SnapshotId;
use crate::tree::index::{EntryKind, IndexEntry, IndexReader};
use crate::tree::walk::{display, walk_cmp};

pub const FORMAT: &str = "offsite-tree-state";
pub const VERSION: u32 = 1;
const MAX_HEADER: u64 = 1 << 20;

/// What a state must match to describe this tree's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub host: String,
    pub tree: String,
    /// The tree's root directory.
    pub root: String,
    /// The store's location (bucket and prefix, or directory).
    pub store: String,
    /// Fingerprints of the recipients, sorted.
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateHeader {
    pub format: String,
    pub version: u32,
    #[serde(flatten)]
    pub identity: Identity,
    /// The committed snapshot whose index follows.
    pub snapshot: String,
    /// The full run this chain starts from.
    pub full_snapshot: String,
    /// Incrementals since that full (0: `snapshot` is the full).
    pub chain: u32,
    /// Older snapshots the index points into (besides `snapshot` itself).
    pub depends_on: Vec<String>,
    /// When that run began walking the tree, in milliseconds since the epoch (the racy-file rule).
    pub walk_started_ms: i64,
}

pub fn state_file(state_dir: &Path, host: &str, tree: &str) -> PathBuf {
    state_dir.join(host).join(format!("{tree}.state.zst"))
}

/// How the next run of a tree starts.
#[derive(Debug)]
pub enum Start {
    Full {
        reason: String,
    },
    Incremental {
        header: Box<StateHeader>,
        file: PathBuf,
    },
}

pub struct Policy<'a> {
    /// `push --full`.
    pub force_full: bool,
    pub full_every: Duration,
    pub max_chain: Option<u32>,
    pub now: OffsetDateTime,
    /// Whether a snapshot of this host is complete in the store.
    pub exists: &'a dyn Fn(&str) -> Result<bool>,
}

/// Decides full or incremental. Only `exists` failing (the store) is an error: any trouble with the
/// state itself means a full run, with the reason.
pub fn decide(file: &Path, identity: &Identity, p: &Policy<'_>) -> Result<Start> {
    let full = |reason: String| Ok(Start::Full { reason });
    if p.force_full {
        return full("--full".into());
    }
    let header = match check(file, identity) {
        Ok(h) => h,
        Err(e) if is_not_found(&e) => {
            return full(format!("no state in {} (first run)", file.display()));
        }
        Err(e) => {
            tracing::warn!(
                "ignoring the state {}: {e:#}; this run is a full backup",
                file.display()
            );
            return full(format!("the state {} is unusable: {e:#}", file.display()));
        }
    };
    if let Some(reason) = future_parent(&header, p.now) {
        // Nothing is wrong with this snapshot, so no warning in it; but under `push --quiet`
        // (cron) the operator would otherwise never hear that this host's clock jumped.
        tracing::warn!(
            "tree {}: {reason}; this run is a full backup",
            identity.tree
        );
        return full(reason);
    }
    if let Some(reason) = full_reason(&header, p)? {
        return full(reason);
    }
    Ok(Start::Incremental {
        header: Box::new(header),
        file: file.to_path_buf(),
    })
}

/// Why the next run cannot build on the committed run `header` describes (a parent in the future
/// aside: [`future_parent`]), or `None` when it can. Only `exists` failing (the store) is an error.
fn full_reason(header: &StateHeader, p: &Policy<'_>) -> Result<Option<String>> {
    let full_time = header
        .full_snapshot
        .parse::<SnapshotId>()
        .and_then(|id| id.time())
        .ok();
    match full_time {
        // A full dated after now has no age to compare: this host's clock jumped, and the safe
        // answer is a new chain rather than one that `full_every` would never end.
        Some(t) if (p.now - t).is_negative() => {
            return Ok(Some(format!(
                "the last full ({}) is older than full_every {}: it is dated after this host's clock ({}), and a negative age counts as older",
                header.full_snapshot,
                human_duration(p.full_every),
                rfc3339(p.now)
            )))
        }
        Some(t) if p.now - t < p.full_every => {}
        Some(_) => {
            return Ok(Some(format!(
                "the last full ({}) is older than full_every {}",
                header.full_snapshot,
                human_duration(p.full_every)
            )))
        }
        None => {
            return Ok(Some(format!(
                "the state names an undated full {:?}",
                header.full_snapshot
            )))
        }
    }
    if let Some(max) = p.max_chain {
        if header.chain >= max {
            return Ok(Some(format!(
                "max_chain {max}: {} incrementals since the last full",
                header.chain
            )));
        }
    }
    for id in std::iter::once(&header.snapshot).chain(&header.depends_on) {
        if !(p.exists)(id)? {
            return Ok(Some(format!(
                "snapshot {id}, which the last index points into, is no longer complete in the store"
            )));
        }
    }
    Ok(None)
}

/// How far after this run's now the parent run may be dated and still be built on.
///
/// A parent a few seconds ahead is a clock stepped back a little (NTP) between two close runs. The
/// racy-file rule already reads again every file whose ctime lies within a second (five, for
/// whole-second timestamps) of the parent's walk, so a step that small cannot make a new write look
/// like a file the parent trusted. Further ahead, the rule no longer covers the gap, and this
/// host's clock was wrong for one of the two runs: the parent sorts after every later snapshot and
/// `full_every` would never end its chain. So that run is full.
pub const FUTURE_MARGIN_MS: i64 = COARSE_RACY_MS;

/// Why a parent dated after `now` (its id, or when its walk began, whichever is later) cannot be
/// built on; `None` when it is not beyond [`FUTURE_MARGIN_MS`].
fn future_parent(header: &StateHeader, now: OffsetDateTime) -> Option<String> {
    let id_time = header
        .snapshot
        .parse::<SnapshotId>()
        .and_then(|id| id.time())
        .ok();
    let walk_time = OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(header.walk_started_ms).saturating_mul(1_000_000),
    )
    .ok();
    let latest = id_time.into_iter().chain(walk_time).max()?;
    if latest - now <= time::Duration::milliseconds(FUTURE_MARGIN_MS) {
        return None;
    }
    Some(format!(
        "parent snapshot {} is in the future ({}, this host's clock says {}): check this host's clock",
        header.snapshot,
        rfc3339(latest),
        rfc3339(now)
    ))
}

/// A time for messages, to the second.
fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::NotFound)
}

type Decoder = zstd::Decoder<'static, BufReader<File>>;

fn open(file: &Path) -> Result<(StateHeader, BufReader<Decoder>)> {
    let f = File::open(file)?;
    let mut r = BufReader::with_capacity(
        1 << 16,
        zstd::Decoder::new(f).context("reading the zstd frame")?,
    );
    let mut line = Vec::new();
    (&mut r)
        .take(MAX_HEADER)
        .read_until(b'\n', &mut line)
        .context("reading the state header")?;
    let header: StateHeader =
        serde_json::from_slice(&line).context("the state header is not valid")?;
    if header.format != FORMAT || header.version != VERSION {
        bail!(
            "format {:?} version {}, expected {FORMAT:?} version {VERSION}",
            header.format,
            header.version
        );
    }
    Ok((header, r))
}

/// Reads the whole state: header, identity, the index's own header, every entry in walk order, and
/// the zstd checksum at the end.
fn check(file: &Path, identity: &Identity) -> Result<StateHeader> {
    let (header, r) = open(file)?;
    if header.identity != *identity {
        bail!(
            "it belongs to another setup: {}",
            differences(&header.identity, identity)
        );
    }
    let mut index = IndexReader::new(r)?;
    if index.header.tree != identity.tree || index.header.snapshot != header.snapshot {
        bail!(
            "its index is of {}/{}, not {}/{}",
            index.header.tree,
            index.header.snapshot,
            identity.tree,
            header.snapshot
        );
    }
    let mut last: Option<Vec<u8>> = None;
    while let Some(e) = index.next_entry()? {
        let path = e.path_bytes()?;
        if let Some(prev) = &last {
            if walk_cmp(prev, &path) != std::cmp::Ordering::Less {
                bail!("its index is out of order at {}", display(&path));
            }
        }
        last = Some(path);
    }
    Ok(header)
}

fn differences(old: &Identity, new: &Identity) -> String {
    let mut d = Vec::new();
    if old.host != new.host {
        d.push(format!("host {} (now {})", old.host, new.host));
    }
    if old.tree != new.tree {
        d.push(format!("tree {} (now {})", old.tree, new.tree));
    }
    if old.root != new.root {
        d.push(format!("root {} (now {})", old.root, new.root));
    }
    if old.store != new.store {
        d.push(format!("store {} (now {})", old.store, new.store));
    }
    if old.recipients != new.recipients {
        d.push("other recipients (the office key changed)".into());
    }
    d.join(", ")
}

/// The previous index, merged with the walk: both are in walk order, so one pass over each finds
/// every path's previous entry with flat memory.
pub struct Previous {
    header: StateHeader,
    entries: IndexReader<BufReader<Decoder>>,
    next: Option<(Vec<u8>, IndexEntry)>,
}

impl Previous {
    pub fn open(file: &Path, expected: &StateHeader) -> Result<Self> {
        let (header, r) = open(file).with_context(|| format!("reading {}", file.display()))?;
        if header.snapshot != expected.snapshot {
            bail!(
                "{} changed since the pre-flight check (another push of this host running?)",
                file.display()
            );
        }
        Ok(Self {
            header,
            entries: IndexReader::new(r)?,
            next: None,
        })
    }

    pub fn header(&self) -> &StateHeader {
        &self.header
    }

    /// The previous run's entry for `path` (its `snapshot` always set), passing over the entries of
    /// paths that are gone.
    pub fn take(&mut self, path: &[u8]) -> Result<Option<IndexEntry>> {
        loop {
            if self.next.is_none() {
                let Some(mut e) = self.entries.next_entry()? else {
                    return Ok(None);
                };
                if e.snapshot.is_none() {
                    e.snapshot = Some(self.header.snapshot.clone());
                }
                self.next = Some((e.path_bytes()?, e));
            }
            let Some((p, _)) = &self.next else {
                return Ok(None);
            };
            match walk_cmp(p, path) {
                std::cmp::Ordering::Less => self.next = None,
                std::cmp::Ordering::Equal => return Ok(self.next.take().map(|(_, e)| e)),
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
    }

    /// Whether the file the walk found (`meta`, from lstat) is the one `prev` describes, so its
    /// bytes need not be read again: same size, mtime, ctime, inode, mode and owner, stored whole.
    ///
    /// A file the previous run read although its ctime was less than [`RACY_MS`] before that run
    /// began is read again: a write in the same timestamp tick after the read would have left every
    /// timestamp as recorded. (A file carried over from an older run passed this test then.)
    pub fn unchanged(&self, prev: &IndexEntry, meta: &fs::Metadata) -> bool {
        let same = prev.kind == EntryKind::File
            && !prev.inconsistent
            && prev.sha256.is_some()
            && prev.size == meta.len()
            && prev.mtime == meta.mtime()
            && i64::from(prev.mtime_ns) == meta.mtime_nsec()
            && prev.ctime == meta.ctime()
            && i64::from(prev.ctime_ns) == meta.ctime_nsec()
            && prev.ino == meta.ino()
            && prev.mode == meta.mode() & 0o7777
            && prev.uid == u64::from(meta.uid())
            && prev.gid == u64::from(meta.gid());
        if !same {
            return false;
        }
        if prev.snapshot.as_deref() != Some(self.header.snapshot.as_str()) {
            return true;
        }
        let ctime_ms = prev
            .ctime
            .saturating_mul(1000)
            .saturating_add(i64::from(prev.ctime_ns / 1_000_000));
        // Whole-second timestamps (no nanoseconds) may come from a filesystem that keeps 2 s
        // (FAT) or from a server's clock (NFS): a wider margin for those.
        let margin = if prev.ctime_ns == 0 && prev.mtime_ns == 0 {
            COARSE_RACY_MS
        } else {
            RACY_MS
        };
        ctime_ms < self.header.walk_started_ms.saturating_sub(margin)
    }
}

/// How long before a run a file must have last changed for that run's read of it to be trusted
/// without reading it again, on filesystems with fine timestamps.
pub const RACY_MS: i64 = 1000;
/// The same where timestamps have no sub-second part.
pub const COARSE_RACY_MS: i64 = 5000;

/// The state a committed snapshot leaves for the next run.
pub struct Pending {
    pub file: PathBuf,
    pub header: StateHeader,
    /// The spooled index, as committed.
    pub index: File,
}

impl Pending {
    /// Writes the state atomically: a temporary file beside it, fsynced, renamed over the old one.
    pub fn commit(mut self) -> Result<()> {
        let dir = self
            .file
            .parent()
            .context("the state file has no directory")?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let tmp = self
            .file
            .with_extension(format!("tmp-{}", std::process::id()));
        let mut write = || -> Result<()> {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            let mut z = zstd::Encoder::new(BufWriter::with_capacity(1 << 16, f), 1)?;
            z.include_checksum(true)?;
            serde_json::to_writer(&mut z, &self.header)?;
            z.write_all(b"\n")?;
            self.index.rewind()?;
            io::copy(&mut self.index, &mut z)?;
            let f = z.finish()?.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.file)?;
            File::open(dir)?.sync_all()?;
            Ok(())
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            e.context(format!("writing the tree state {}", self.file.display()))
        })
    }
}

/// Creates `state_dir/<host>` (private) so a push that cannot keep its state fails before it dumps.
pub fn prepare(state_dir: &Path, host: &str) -> Result<()> {
    let dir = state_dir.join(host);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| {
            crate::error::usage(format!(
                "cannot create the state directory {}: {e} (set state_dir: in the config to a directory this user may write)",
                dir.display()
            ))
        })?;
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    File::create(&probe)
        .and_then(|_| fs::remove_file(&probe))
        .map_err(|e| {
            crate::error::usage(format!(
                "cannot write in the state directory {}: {e}",
                dir.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_differences_are_named() {
        let a = Identity {
            host: "h".into(),
            tree: "t".into(),
            root: "/a".into(),
            store: "s3://b/p".into(),
            recipients: vec!["X".into()],
        };
        let mut b = a.clone();
        b.root = "/b".into();
        b.recipients = vec!["Y".into()];
        let d = differences(&a, &b);
        assert!(d.contains("root /a (now /b)"), "{d}");
        assert!(d.contains("office key"), "{d}");
    }

    fn header(snapshot: &str, full: &str, walk: OffsetDateTime, chain: u32) -> StateHeader {
        StateHeader {
            format: FORMAT.into(),
            version: VERSION,
            identity: Identity {
                host: "h".into(),
                tree: "t".into(),
                root: "/t".into(),
                store: "/s".into(),
                recipients: Vec::new(),
            },
            snapshot: snapshot.into(),
            full_snapshot: full.into(),
            chain,
            depends_on: Vec::new(),
            walk_started_ms: i64::try_from(walk.unix_timestamp_nanos() / 1_000_000).unwrap(),
        }
    }

    fn reason(h: &StateHeader, now: OffsetDateTime) -> Option<String> {
        let exists = |_: &str| Ok(true);
        let p = Policy {
            force_full: false,
            full_every: Duration::from_secs(30 * 86_400),
            max_chain: None,
            now,
            exists: &exists,
        };
        // In `decide`'s order.
        future_parent(h, now).or_else(|| full_reason(h, &p).unwrap())
    }

    #[test]
    fn a_parent_in_the_past_is_built_on() {
        let t = time::macros::datetime!(2026-12-04 02:00:00 UTC);
        let h = header(
            "20261204T020000Z-0001",
            "20261201T020000Z-0001",
            t + time::Duration::milliseconds(300),
            3,
        );
        assert_eq!(reason(&h, t + time::Duration::hours(24)), None);
        // A clock stepped back by a second or two (NTP) between two close runs: still built on.
        assert_eq!(reason(&h, t - time::Duration::seconds(2)), None);
    }

    #[test]
    fn a_parent_in_the_future_means_a_full_run() {
        let now = time::macros::datetime!(2026-12-04 02:00:00 UTC);
        let ahead = now + time::Duration::days(1000);
        let id = SnapshotId::new(ahead).to_string();
        let h = header(&id, &id, ahead, 0);
        let r = reason(&h, now).unwrap();
        assert!(
            r.starts_with(&format!(
                "parent snapshot {id} is in the future (2029-08-30T02:00:00Z, this host's clock says 2026-12-04T02:00:00Z)"
            )),
            "{r}"
        );
        assert!(r.contains("check this host's clock"), "{r}");
        // Just beyond the margin, by the walk's start alone (the id's second is not after now).
        let h = header(
            "20261204T020000Z-0001",
            "20261201T020000Z-0001",
            now + time::Duration::milliseconds(FUTURE_MARGIN_MS + 1),
            1,
        );
        assert!(reason(&h, now).is_some_and(|r| r.contains("in the future")));
    }

    #[test]
    fn a_full_with_a_negative_age_is_older_than_full_every() {
        let now = time::macros::datetime!(2026-12-04 02:00:00 UTC);
        // The full is 3 s ahead: within the margin for the parent, but its age is negative.
        let id = SnapshotId::new(now + time::Duration::seconds(3)).to_string();
        let h = header(&id, &id, now + time::Duration::seconds(3), 0);
        let r = reason(&h, now).unwrap();
        assert!(r.contains("older than full_every 30d"), "{r}");
        assert!(r.contains("negative age"), "{r}");
        // An ordinary old full, for comparison.
        let h = header(
            "20261103T020000Z-0001",
            "20261103T020000Z-0001",
            time::macros::datetime!(2026-11-03 02:00:00 UTC),
            0,
        );
        let r = reason(&h, now).unwrap();
        assert!(r.ends_with("is older than full_every 30d"), "{r}");
    }

    #[test]
    fn a_long_chain_or_a_missing_parent_means_a_full_run() {
        let now = time::macros::datetime!(2026-12-04 02:00:00 UTC);
        let h = header(
            "20261203T020000Z-0001",
            "20261201T020000Z-0001",
            time::macros::datetime!(2026-12-03 02:00:00 UTC),
            4,
        );
        let gone = |id: &str| Ok(id != "20261203T020000Z-0001");
        let p = Policy {
            force_full: false,
            full_every: Duration::from_secs(30 * 86_400),
            max_chain: Some(4),
            now,
            exists: &gone,
        };
        let r = full_reason(&h, &p).unwrap().unwrap();
        assert!(r.starts_with("max_chain 4"), "{r}");
        let p = Policy {
            max_chain: None,
            ..p
        };
        let r = full_reason(&h, &p).unwrap().unwrap();
        assert!(r.contains("no longer complete"), "{r}");
    }
}
