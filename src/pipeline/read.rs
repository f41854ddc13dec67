//! The read pipeline, the write pipeline in reverse, with every check:
//!
//! ```text
//! store object -> verify stored sha256 -> OpenPGP decrypt -> decompress -> verify plaintext sha256
//! ```
//!
//! A reader only reaches a clean end of stream when both hashes matched; corruption anywhere is an
//! error naming the object.

use std::io::Read;

use anyhow::{Context, Result};

use super::compress::decompressor;
use super::digest::VerifyingReader;
use super::object::ObjectEntry;
use crate::crypto::{decrypt_reader, DecryptionKeys};
use crate::store::Store;

/// Opens an object of a snapshot for reading its verified plaintext.
pub fn open_object(
    store: &dyn Store,
    snapshot_dir: &str,
    entry: &ObjectEntry,
    keys: &DecryptionKeys,
) -> Result<Box<dyn Read + Send>> {
    let full_key = format!("{snapshot_dir}{}", entry.key);
    let raw = store
        .open(&full_key)
        .with_context(|| format!("opening {full_key}"))?;
    let checked = VerifyingReader::new(raw, entry.stored(), format!("stored object {full_key}"));
    let plain = decrypt_reader(Box::new(checked), keys)
        .with_context(|| format!("decrypting {full_key}"))?;
    let plain = decompressor(plain, entry.compression)?;
    let checked = VerifyingReader::new(plain, entry.plain(), format!("plaintext of {full_key}"));
    Ok(Box::new(Named {
        inner: checked,
        key: full_key,
    }))
}

/// Puts the object's key into every read error: sequoia's "Message has been manipulated" alone would
/// not tell which of a snapshot's objects is bad.
struct Named<R> {
    inner: R,
    key: String,
}

impl<R: Read> Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // After SIGINT/SIGTERM a restore or verify stops at its next read, through its failure
        // path (the half-restored database is dropped).
        crate::interrupt::check_io()?;
        self.inner.read(buf).map_err(|e| {
            if e.to_string().contains(&self.key) {
                e
            } else {
                std::io::Error::new(e.kind(), format!("object {}: {e}", self.key))
            }
        })
    }
}
