//! The two-thread write pipeline: what it stores reads back, and every way it can fail leaves no
//! object and surfaces the real cause.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use sequoia_openpgp as openpgp;

use super::*;
use crate::crypto::DecryptionKeys;
use crate::store::local::LocalStore;
use crate::store::ObjectInfo;

fn cert() -> openpgp::Cert {
    openpgp::cert::CertBuilder::general_purpose(Some("offsite test"))
        .set_profile(openpgp::Profile::RFC4880)
        .unwrap()
        .set_cipher_suite(openpgp::cert::CipherSuite::Cv25519)
        .set_features(openpgp::types::Features::empty().set_seipdv1())
        .unwrap()
        .generate()
        .unwrap()
        .0
}

fn pipeline(store: Arc<dyn Store>, cert: &openpgp::Cert) -> Pipeline {
    Pipeline {
        store,
        encryption: Encryption::new(vec![cert.clone()]).unwrap(),
        compression: Compression::default(),
        snapshot_dir: "h/s1/".to_string(),
    }
}

/// Compressible but not trivially so, like a dump.
fn data(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "{i}\tname-{}\t{}\n",
                i % 977,
                i.wrapping_mul(2654435761) % 100_003
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

#[test]
fn what_is_stored_reads_back_and_matches_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir.path()).unwrap());
    let cert = cert();
    let p = pipeline(store.clone(), &cert);
    let plain = data(12 * 1024 * 1024 + 7);
    let mut sink = p
        .create("db/x.sql", ObjectKind::PostgresDump, "postgres/x")
        .unwrap();
    for piece in plain.chunks(65_537) {
        sink.write_all(piece).unwrap();
    }
    assert_eq!(sink.plain_size(), plain.len() as u64);
    let entry = sink.finish().unwrap();
    assert_eq!(entry.key, "db/x.sql.zst.pgp");
    assert_eq!(entry.plain_size, plain.len() as u64);
    let listed = store.list("h/s1/").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, entry.stored_size);

    let keys = DecryptionKeys::new(vec![cert]).unwrap();
    let mut back = Vec::new();
    read::open_object(store.as_ref(), "h/s1/", &entry, &keys)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == plain, "plaintext differs");
}

#[test]
fn a_sink_dropped_without_finish_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir.path()).unwrap());
    let p = pipeline(store.clone(), &cert());
    let mut sink = p.create("db/x.sql", ObjectKind::PostgresDump, "x").unwrap();
    sink.write_all(&data(5 * 1024 * 1024)).unwrap();
    drop(sink);
    assert!(store.list("").unwrap().is_empty());
    // The drop waited for the encrypting thread, so its temporary file is gone as well.
    let left: Vec<_> = walk(dir.path());
    assert!(left.is_empty(), "{left:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A store whose objects fail (or panic) after `limit` bytes, and record whether one was committed.
struct Failing {
    limit: usize,
    panic: bool,
    committed: Arc<AtomicBool>,
}

struct FailingWriter {
    written: usize,
    limit: usize,
    panic: bool,
    committed: Arc<AtomicBool>,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() > self.limit {
            if self.panic {
                panic!("store writer exploded");
            }
            return Err(io::Error::other("disk full (test)"));
        }
        self.written += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for FailingWriter {
    fn commit(self: Box<Self>) -> Result<()> {
        self.committed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

impl Store for Failing {
    fn location(&self) -> String {
        "failing".to_string()
    }
    fn create(&self, _key: &str) -> Result<Box<dyn ObjectWriter>> {
        Ok(Box::new(FailingWriter {
            written: 0,
            limit: self.limit,
            panic: self.panic,
            committed: self.committed.clone(),
        }))
    }
    fn open(&self, _key: &str) -> Result<Box<dyn Read + Send>> {
        anyhow::bail!("not here")
    }
    fn list(&self, _prefix: &str) -> Result<Vec<ObjectInfo>> {
        Ok(Vec::new())
    }
}

/// Writes until the sink fails or the data ends, then finishes; returns the first error's text.
fn push_through(limit: usize, panic: bool, len: usize) -> (String, bool) {
    let committed = Arc::new(AtomicBool::new(false));
    let store: Arc<dyn Store> = Arc::new(Failing {
        limit,
        panic,
        committed: committed.clone(),
    });
    let p = pipeline(store, &cert());
    let mut sink = p.create("db/x.sql", ObjectKind::PostgresDump, "x").unwrap();
    let plain = data(len);
    for piece in plain.chunks(256 * 1024) {
        if let Err(e) = sink.write_all(piece) {
            // A caller that ignores the error and finishes anyway must still fail.
            let again = sink.finish().unwrap_err();
            assert!(format!("{again:#}").contains("failed earlier"), "{again:#}");
            return (e.to_string(), committed.load(Ordering::SeqCst));
        }
    }
    let e = sink.finish().unwrap_err();
    (format!("{e:#}"), committed.load(Ordering::SeqCst))
}

#[test]
fn a_store_error_midway_is_the_error_and_nothing_is_committed() {
    let (err, committed) = push_through(100_000, false, 64 * 1024 * 1024);
    assert!(err.contains("disk full (test)"), "{err}");
    assert!(!committed);
}

#[test]
fn a_store_error_at_the_end_fails_finish() {
    // Small enough that every byte reaches the store only while finishing.
    let (err, committed) = push_through(1000, false, 200_000);
    assert!(err.contains("disk full (test)"), "{err}");
    assert!(!committed);
}

#[test]
fn a_panic_in_the_encrypting_thread_is_an_error() {
    let (err, committed) = push_through(100_000, true, 64 * 1024 * 1024);
    assert!(
        err.contains("panicked") && err.contains("store writer exploded"),
        "{err}"
    );
    assert!(!committed);
}
