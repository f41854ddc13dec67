//! Object stores: where snapshots live.
//!
//! A store is a flat namespace of keys (`<host>/<snapshot-id>/...`, relative to the store's root or
//! prefix). The contract every implementation keeps:
//! - [`Store::create`] never replaces an existing object: a key that exists, or that another writer
//!   commits first, makes [`ObjectWriter::commit`] fail. The object becomes visible only at commit.
//! - A writer dropped without commit leaves nothing behind under its key (temporary files are removed,
//!   multipart uploads aborted). A writer that could not clean up (its process was killed, the
//!   credential may not abort) leaves an [`Unfinished`] write: not an object, never listed by
//!   [`Store::list`], but listed by [`Store::unfinished`] so the office can report and remove it.
//! - There is no delete here on purpose: push holds a `dyn Store` and so cannot reach a delete.
//!   Deleting is office-side retention's job, through a separate admin type.
//! - Errors carry the key and the store's location; transient failures are retried inside the
//!   implementation, so an error returned here is final for this run.

pub mod local;
pub mod open;
pub mod s3;

pub use open::{open, open_admin, open_s3};

use std::io::{Read, Write};

use anyhow::Result;
use time::OffsetDateTime;

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub modified: Option<OffsetDateTime>,
}

/// A write that began and never finished: a local store's temporary file, an S3 multipart upload.
///
/// Kept apart from [`ObjectInfo`] the way S3 keeps multipart uploads apart from objects: it holds
/// no object, so nothing that reads or copies objects (pull, verify) may see it as one; only the
/// listings that report and clean up (`snapshots --all`, pull's report, prune) ask for these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// The key the write was to create.
    pub key: String,
    /// What to remove: the temporary file's name, or the multipart upload's id.
    pub handle: String,
    /// Bytes written so far, when the store can tell.
    pub size: Option<u64>,
    /// The store's time of its last progress (a temporary file's mtime, an upload's newest part,
    /// else when it was initiated): a write still going on stays young.
    pub modified: Option<OffsetDateTime>,
}

impl Unfinished {
    /// `multipart upload 2~abc of web1/…/x.sql.zst.pgp` or `temporary file .x.partial-1a2b…`.
    pub fn describe(&self, kind: &str) -> String {
        format!("{kind} {} of {}", self.handle, self.key)
    }
}

/// A store server's clock against this host's, from one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockReading {
    /// The server's time (S3's `Date` header: whole seconds).
    pub server: OffsetDateTime,
    /// This host's clock when the response arrived.
    pub local: OffsetDateTime,
}

impl ClockReading {
    /// This host's clock minus the server's, in seconds: positive when the host is ahead.
    pub fn offset_seconds(&self) -> i64 {
        // The server's time was cut to its second: half a second later is the best guess.
        let d = self.local - self.server - time::Duration::milliseconds(500);
        d.as_seconds_f64().round() as i64
    }
}

/// A new object being written. Write the bytes, then `commit`; dropping it aborts.
pub trait ObjectWriter: Write + Send + Sync {
    /// Makes the object visible under its key. Fails if the key exists already.
    fn commit(self: Box<Self>) -> Result<()>;
}

/// Read, list and create-only write access to a store.
pub trait Store: Send + Sync {
    /// The object's Object Lock retain-until time, if it has one. Stores without Object Lock
    /// (a directory, a bucket the config gives no `object_lock`) have none.
    fn lock_until(&self, key: &str) -> Result<Option<OffsetDateTime>> {
        check_key(key)?;
        Ok(None)
    }

    /// Where this store is, for messages: `/var/backups/offsite` or `s3://bucket/prefix`.
    fn location(&self) -> String;
    /// Starts writing a new object. The key must not exist (checked again at commit).
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>>;
    /// Streams an existing object.
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>>;
    /// Streams `len` bytes of an existing object from byte `offset` (an S3 ranged GET): what pull
    /// downloads a big object in, several parts at once. The reader ends after exactly `len`
    /// bytes, and fails if the store sends fewer or another range. This default reads and drops
    /// the bytes before `offset`: right for any store, fast for none.
    fn open_range(&self, key: &str, offset: u64, len: u64) -> Result<Box<dyn Read + Send>> {
        use anyhow::Context;
        let mut r = self.open(key)?;
        let skipped = std::io::copy(&mut (&mut r).take(offset), &mut std::io::sink())
            .with_context(|| format!("reading {key} from {}", self.location()))?;
        if skipped < offset {
            anyhow::bail!(
                "{key} in {} ends at byte {skipped}, before the range at {offset} that was asked for",
                self.location()
            );
        }
        Ok(Box::new(Exact {
            inner: r.take(len),
            left: len,
            what: format!("{key} in {}", self.location()),
        }))
    }
    /// Every object whose key starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// The server's clock as its last response gave it, against this host's; `None` for a store
    /// without a server of its own (a local directory) or before any response.
    fn clock(&self) -> Option<ClockReading> {
        None
    }
    /// Writes under `prefix` that began and never finished, sorted by key. A store whose writes
    /// cannot outlive their writer has none.
    fn unfinished(&self, _prefix: &str) -> Result<Vec<Unfinished>> {
        Ok(Vec::new())
    }
    /// What an [`Unfinished`] write is in this store: `temporary file`, `multipart upload`.
    fn unfinished_kind(&self) -> &'static str {
        "unfinished write"
    }
    /// Keys under `prefix` whose newest version is a delete marker (a versioned bucket): someone
    /// with delete rights hid an object, whose bytes are still there as an older version. Stores
    /// without versions have none.
    fn delete_markers(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let _ = prefix;
        Ok(Vec::new())
    }
}

/// A store that can also delete: only office-side retention opens one ([`open_admin`]).
pub trait AdminStore: Store {
    /// Deletes one object. Deleting a key that does not exist is not an error.
    fn delete(&self, key: &str) -> Result<()>;
    /// Removes an unfinished write (the temporary file; aborts the multipart upload). One that is
    /// gone already is not an error.
    fn discard(&self, write: &Unfinished) -> Result<()>;
    fn as_store(&self) -> &dyn Store;
    /// Extends the object's lock to `until`, in the configured mode. Callers never shorten a lock
    /// (S3 refuses that for compliance mode anyway).
    fn extend_lock(&self, key: &str, until: OffsetDateTime) -> Result<()> {
        let _ = until;
        anyhow::bail!(
            "{}: cannot lock {key}: this store has no Object Lock",
            self.as_store().location()
        )
    }
}

/// A reader that must give exactly `left` more bytes: one that ends early is an error, not a short
/// object.
struct Exact<R> {
    inner: R,
    left: u64,
    what: String,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "{} ended {} bytes before the range asked for",
                    self.what, self.left
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads a whole object into memory. Only for small objects: manifests and indexes.
pub fn read_all(store: &dyn Store, key: &str) -> Result<Vec<u8>> {
    use anyhow::Context;
    let mut buf = Vec::new();
    store
        .open(key)?
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {key} from {}", store.location()))?;
    Ok(buf)
}

/// [`read_all`] for an object whose size the writer chose and nobody checked yet (a manifest
/// before its signature is verified): more than `max` bytes is an error, not an allocation.
pub fn read_capped(store: &dyn Store, key: &str, max: u64) -> Result<Vec<u8>> {
    use anyhow::Context;
    let mut buf = Vec::new();
    store
        .open(key)?
        .take(max + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {key} from {}", store.location()))?;
    if buf.len() as u64 > max {
        anyhow::bail!(
            "{key} in {} is larger than {max} bytes: not a manifest offsite wrote; refusing to read it",
            store.location()
        );
    }
    Ok(buf)
}

/// Rejects keys that could escape a local store or confuse S3 listings.
pub fn check_key(key: &str) -> Result<()> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.ends_with('/')
        || key.contains('\\')
        || key.contains('\0')
        || key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        anyhow::bail!("invalid object key {key:?}: keys are relative, '/'-separated, without '.' or '..' parts");
    }
    Ok(())
}
