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
pub mod read;
pub mod shared;

use std::io::{self, Write};
use std::sync::Arc;

use anyhow::{Context, Result};
use sequoia_openpgp::serialize::stream::Message;

pub use compress::{Algorithm, Compression, Compressor};
pub use digest::{HashWriter, Measured};
pub use shared::Shared;

use crate::crypto::Encryption;
use crate::snapshot::manifest::{ObjectEntry, ObjectKind};
use crate::store::{ObjectWriter, Store};

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
    pub fn create(&self, name: &str, kind: ObjectKind, source: &str) -> Result<ObjectSink> {
        let key = self.object_key(name);
        let full_key = format!("{}{key}", self.snapshot_dir);
        let object = self
            .store
            .create(&full_key)
            .with_context(|| format!("creating {full_key} in {}", self.store.location()))?;
        let stored = Shared::new(HashWriter::new(object));
        let encrypted = self.encryption.writer(stored.clone(), None)?;
        let compressed = Compressor::new(encrypted, &self.compression)?;
        Ok(ObjectSink {
            plain: HashWriter::new(compressed),
            stored,
            key,
            full_key,
            kind,
            source: source.to_string(),
            compression: self.compression.algorithm,
            recipients: self.encryption.fingerprints(),
        })
    }
}

/// A new object being written: write plaintext into it, then [`ObjectSink::finish`].
pub struct ObjectSink {
    plain: HashWriter<Compressor<Message<'static>>>,
    stored: Shared<HashWriter<Box<dyn ObjectWriter>>>,
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
        self.plain.size()
    }

    /// The object's key relative to the snapshot.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Closes compression and encryption, commits the object, and returns its manifest entry.
    pub fn finish(self) -> Result<ObjectEntry> {
        let what = || format!("finishing {}", self.full_key);
        let (compressed, plain) = self.plain.finish();
        let encrypted = compressed.finish().with_context(what)?;
        encrypted.finalize().with_context(what)?;
        let (object, stored) = self.stored.take().with_context(what)?.finish();
        object.commit().with_context(what)?;
        Ok(ObjectEntry {
            key: self.key,
            kind: self.kind,
            source: self.source,
            stored_size: stored.size,
            stored_sha256: stored.sha256,
            plain_size: plain.size,
            plain_sha256: plain.sha256,
            compression: self.compression,
            recipients: self.recipients,
        })
    }
}

impl Write for ObjectSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.plain.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.plain.flush()
    }
}
