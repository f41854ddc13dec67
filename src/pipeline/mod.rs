//! The write pipeline of one object:
//!
//! ```text
//! plaintext -> sha256/size -> compress -> OpenPGP encrypt -> sha256/size -> store object
//! ```
//!
//! Each stage finishes and reports its result: [`ObjectSink::finish`] closes the stages in order and
//! returns the manifest entry only after the store has committed the object. Anything short of that
//! (an error, a drop) leaves no object under the key.

pub mod compress;
pub mod digest;
mod handoff;
pub mod object;
pub mod read;

use std::io::{self, Write};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};
use sequoia_openpgp::serialize::stream::Message;

pub use crate::shared_writer::Shared;
pub use compress::{Algorithm, Compression, Compressor};
pub use digest::{HashWriter, Measured, OffloadedHashWriter};

use crate::crypto::Encryption;
use crate::store::{ObjectWriter, Store};
use handoff::{ChunkReceiver, ChunkSender};
pub use object::{ObjectEntry, ObjectKind};

/// What every object of a snapshot shares: where it goes, how it is compressed and to whom encrypted.
#[derive(Clone)]
pub struct Pipeline {
    pub store: Arc<dyn Store>,
    pub encryption: Encryption,
    pub compression: Compression,
    /// `<host>/<snapshot-id>/`
    pub snapshot_dir: String,
}

impl Pipeline {
    /// The key of an object in this snapshot: `name` plus the compression and `.pgp` extensions.
    pub fn object_key(&self, name: &str) -> String {
        format!("{name}.{}.pgp", self.compression.algorithm.extension())
    }

    /// Starts a new object; `name` is relative to the snapshot, without extensions
    /// (`db/postgres/shop.sql`).
    ///
    /// Compression runs on the caller's thread (and zstd's workers); encryption, hashing of the stored
    /// bytes and the store write run on a thread of their own, so that the caller goes back to reading
    /// the dump while the previous chunk is encrypted.
    pub fn create(&self, name: &str, kind: ObjectKind, source: &str) -> Result<ObjectSink> {
        let key = self.object_key(name);
        let full_key = format!("{}{key}", self.snapshot_dir);
        let object = self
            .store
            .create(&full_key)
            .with_context(|| format!("creating {full_key} in {}", self.store.location()))?;
        let stored = Shared::new(HashWriter::new(object));
        let encrypted = self.encryption.writer(stored.clone(), None)?;
        let (sender, receiver) = handoff::channel();
        let worker = std::thread::Builder::new()
            .name("offsite-encrypt".to_string())
            .spawn(move || encrypt_and_store(receiver, encrypted, stored))
            .context("starting the encryption thread")?;
        // If this fails, dropping `sender` abandons the stream and the worker drops the object.
        let compressed = Compressor::new(sender, &self.compression);
        let compressed = match compressed {
            Ok(c) => c,
            Err(e) => {
                let _ = worker.join(); // it exits at once: its channel is closed
                return Err(e);
            }
        };
        // The plaintext hash runs beside the caller: its thread reads the source and compresses.
        // A tree volume gets none: every file in it has its own sha256 in the signed index, checked
        // on every restore, and the tar headers are checked against the index too; the stored
        // sha256 and OpenPGP's MDC cover the object as a whole. Hashing the same bytes a second
        // time would cost a push about a tenth of its CPU for no added guarantee.
        let plain = if kind == ObjectKind::TreeVolume {
            OffloadedHashWriter::counting(compressed)
        } else {
            OffloadedHashWriter::new(compressed).context("starting the hashing thread")?
        };
        Ok(ObjectSink {
            plain: Some(plain),
            worker: Some(worker),
            failed: None,
            key,
            full_key,
            kind,
            source: source.to_string(),
            compression: self.compression.algorithm,
            recipients: self.encryption.fingerprints(),
        })
    }
}

type Stored = HashWriter<Box<dyn ObjectWriter>>;
type Worker = JoinHandle<Result<(Box<dyn ObjectWriter>, Measured)>>;

/// The encrypting thread: encrypts and stores chunks until the end marker, then finalizes the OpenPGP
/// message and hands back the store object, uncommitted, with the size and sha256 of what it holds.
/// On any error, or when the stream is abandoned, the object is dropped here, which aborts it.
fn encrypt_and_store(
    chunks: ChunkReceiver,
    mut message: Message<'static>,
    stored: Shared<Stored>,
) -> Result<(Box<dyn ObjectWriter>, Measured)> {
    loop {
        match chunks.rx.recv() {
            Ok(handoff::Message::Data(chunk)) => {
                message
                    .write_all(&chunk)
                    .context("encrypting and storing")?;
                chunks.recycle(chunk);
            }
            Ok(handoff::Message::End) => break,
            Err(_) => bail!("the object was abandoned before the end of its data"),
        }
    }
    message
        .finalize()
        .context("finishing the OpenPGP encryption")?;
    let (object, measured) = stored.take()?.finish();
    Ok((object, measured))
}

/// A new object being written: write plaintext into it, then [`ObjectSink::finish`].
///
/// Dropping it without `finish` abandons the object: the encrypting thread stops, the store object is
/// aborted, and the drop returns only once both happened.
pub struct ObjectSink {
    /// `None` once finished or after the encrypting side failed.
    plain: Option<OffloadedHashWriter<Compressor<ChunkSender>>>,
    /// `None` once joined.
    worker: Option<Worker>,
    /// The encrypting side's error, once a write fetched it, so that later calls repeat the cause.
    failed: Option<String>,
    key: String,
    full_key: String,
    kind: ObjectKind,
    source: String,
    compression: Algorithm,
    recipients: Vec<String>,
}

impl ObjectSink {
    /// Plaintext bytes written so far.
    pub fn plain_size(&self) -> u64 {
        self.plain.as_ref().map_or(0, |p| p.size())
    }

    /// The object's key relative to the snapshot.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Closes compression and encryption, commits the object, and returns its manifest entry.
    pub fn finish(mut self) -> Result<ObjectEntry> {
        let what = format!("finishing {}", self.full_key);
        let plain = self.plain.take().ok_or_else(|| self.earlier_failure())?;
        let (compressed, plain) = match plain.finish() {
            Ok(done) => done,
            Err(e) => return Err(anyhow!(self.explain(e))).context(what),
        };
        if let Err(e) = compressed.finish().and_then(ChunkSender::finish) {
            return Err(anyhow!(self.explain(e))).context(what);
        }
        let (object, stored) = self.join_worker().context(what.clone())?;
        object.commit().context(what)?;
        Ok(ObjectEntry {
            key: std::mem::take(&mut self.key),
            kind: self.kind,
            source: std::mem::take(&mut self.source),
            stored_size: stored.size,
            stored_sha256: stored.sha256,
            plain_size: plain.size,
            plain_sha256: plain.sha256,
            compression: self.compression,
            recipients: std::mem::take(&mut self.recipients),
        })
    }

    fn earlier_failure(&self) -> anyhow::Error {
        match &self.failed {
            Some(e) => anyhow!("{} failed earlier: {e}", self.full_key),
            None => anyhow!("{} was already finished", self.full_key),
        }
    }

    /// Waits for the encrypting thread; its panic is an error like any other.
    fn join_worker(&mut self) -> Result<(Box<dyn ObjectWriter>, Measured)> {
        let worker = self.worker.take().ok_or_else(|| self.earlier_failure())?;
        match worker.join() {
            Ok(result) => result,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string());
                bail!("the encryption thread panicked: {msg}")
            }
        }
    }

    /// A write that failed because the encrypting side stopped only says so; the reason is that
    /// thread's error, so fetch it.
    fn explain(&mut self, e: io::Error) -> io::Error {
        let stopped =
            handoff::is_receiver_gone(&e) || self.worker.as_ref().is_some_and(|w| w.is_finished());
        if !stopped {
            return e;
        }
        let cause = match self.join_worker() {
            Err(cause) => format!("{cause:#}"),
            Ok(_) => return e, // cannot happen without the end marker; the object is dropped, aborted
        };
        self.plain = None;
        self.failed = Some(cause.clone());
        io::Error::other(format!("{}: {cause}", self.full_key))
    }
}

impl Write for ObjectSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(plain) = self.plain.as_mut() else {
            return Err(io::Error::other(self.earlier_failure()));
        };
        plain.write(buf).map_err(|e| self.explain(e))
    }
    fn flush(&mut self) -> io::Result<()> {
        let Some(plain) = self.plain.as_mut() else {
            return Err(io::Error::other(self.earlier_failure()));
        };
        plain.flush().map_err(|e| self.explain(e))
    }
}

impl Drop for ObjectSink {
    fn drop(&mut self) {
        // Closing the channel without the end marker tells the encrypting thread to give up; joining
        // it makes sure the store object is aborted (temporary file removed, upload cancelled) before
        // the caller goes on, e.g. to report the error and exit.
        drop(self.plain.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join(); // abandoning: its error is the expected "abandoned"
        }
    }
}

#[cfg(test)]
mod tests;
