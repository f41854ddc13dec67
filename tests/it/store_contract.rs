//! The store contract (src/store/mod.rs), checked against every store offsite has: a local
//! directory and S3 (the shared moto test server). Each test runs the same steps on both, so a
//! guarantee push and the office rely on cannot hold for one store and quietly not for the other.

use std::io::{Read, Write};

use crate::common::s3::{TestBucket, PART_SIZE};
use offsite::store::local::LocalStore;
use offsite::store::{AdminStore, Store};

/// Both stores, each with a name for messages; what keeps them alive comes along.
struct Stores {
    _dir: tempfile::TempDir,
    _bucket: TestBucket,
    all: Vec<(&'static str, Box<dyn AdminStore>)>,
}

fn stores(tag: &str) -> Stores {
    let dir = tempfile::tempdir().expect("temp dir");
    let bucket = TestBucket::new(tag);
    let local = LocalStore::new(dir.path().join("store")).expect("local store");
    let s3 = bucket.store_with(|c| c.prefix = "contract".into());
    Stores {
        all: vec![("local", Box::new(local)), ("s3", Box::new(s3))],
        _dir: dir,
        _bucket: bucket,
    }
}

fn put(store: &dyn Store, key: &str, data: &[u8]) -> anyhow::Result<()> {
    let mut w = store.create(key)?;
    w.write_all(data)?;
    w.commit()
}

fn read(store: &dyn Store, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .open(key)
        .and_then(|mut r| Ok(r.read_to_end(&mut out)?))
        .unwrap_or_else(|e| panic!("reading {key}: {e:#}"));
    out
}

fn keys(store: &dyn Store, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .expect("listing")
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// More than one part, so S3 has a multipart upload under way.
fn big() -> Vec<u8> {
    (0..PART_SIZE as usize + 4096)
        .map(|i| (i * 7 % 251) as u8)
        .collect()
}

#[test]
fn an_object_is_visible_only_once_committed_and_reads_back_exactly() {
    let s = stores("contract-commit");
    for (name, store) in &s.all {
        let store = store.as_store();
        for (key, data) in [("h/s1/small", b"hello".to_vec()), ("h/s1/big", big())] {
            let mut w = store.create(key).expect("create");
            w.write_all(&data).expect("write");
            assert!(
                keys(store, "h/").iter().all(|k| k != key),
                "{name}: listed before commit"
            );
            w.commit()
                .unwrap_or_else(|e| panic!("{name}: commit {key}: {e:#}"));
            assert_eq!(read(store, key), data, "{name}: {key}");
            let listed = store.list(key).expect("listing");
            assert_eq!(listed.len(), 1, "{name}");
            assert_eq!(listed[0].size, data.len() as u64, "{name}");
            assert!(
                listed[0].modified.is_some(),
                "{name}: the store's time of {key}"
            );
        }
    }
}

/// What pull downloads a big object in: any range reads back exactly those bytes, and a range past
/// the end is an error, not a short read.
#[test]
fn a_range_reads_back_exactly_its_bytes_and_one_past_the_end_fails() {
    let s = stores("contract-range");
    let data = big();
    let n = data.len() as u64;
    for (name, store) in &s.all {
        let store = store.as_store();
        put(store, "h/s1/big", &data).expect("put");
        for (offset, len) in [
            (0, 1),
            (0, n),
            (1, 4095),
            (PART_SIZE - 7, 4096 + 7),
            (n - 1, 1),
        ] {
            let mut got = Vec::new();
            store
                .open_range("h/s1/big", offset, len)
                .and_then(|mut r| Ok(r.read_to_end(&mut got)?))
                .unwrap_or_else(|e| panic!("{name}: range {offset}+{len}: {e:#}"));
            let (a, b) = (offset as usize, (offset + len) as usize);
            assert!(got == data[a..b], "{name}: range {offset}+{len}");
        }
        let past = store.open_range("h/s1/big", n - 10, 20).and_then(|mut r| {
            let mut got = Vec::new();
            Ok(r.read_to_end(&mut got)?)
        });
        assert!(past.is_err(), "{name}: a range past the end: {past:?}");
    }
}

#[test]
fn an_existing_key_is_never_overwritten_even_by_a_racing_writer() {
    let s = stores("contract-once");
    for (name, store) in &s.all {
        let store = store.as_store();
        put(store, "h/s1/k", b"first").expect("first put");
        assert!(put(store, "h/s1/k", b"other").is_err(), "{name}: overwrote");
        // Two writers of one new key: the first commit wins, the second fails.
        let mut a = store.create("h/s1/race").expect("create a");
        let mut b = store.create("h/s1/race").expect("create b");
        a.write_all(b"a wins").expect("write a");
        b.write_all(b"b loses").expect("write b");
        a.commit().expect("commit a");
        assert!(b.commit().is_err(), "{name}: the second commit must fail");
        assert_eq!(read(store, "h/s1/k"), b"first", "{name}");
        assert_eq!(read(store, "h/s1/race"), b"a wins", "{name}");
    }
}

#[test]
fn a_dropped_writer_leaves_nothing_and_a_dead_one_leaves_an_unfinished_write_the_office_removes() {
    let s = stores("contract-leftover");
    for (name, store) in &s.all {
        let data = big();
        let mut w = store.create("h/s2/dropped").expect("create");
        w.write_all(&data).expect("write");
        drop(w);
        assert_eq!(keys(store.as_store(), "h/"), Vec::<String>::new(), "{name}");
        assert!(
            store.unfinished("h/").expect("unfinished").is_empty(),
            "{name}"
        );

        // A writer whose process died runs no destructor.
        let mut w = store.create("h/s2/died").expect("create");
        w.write_all(&data).expect("write");
        w.flush().expect("flush");
        std::mem::forget(w);
        assert_eq!(
            keys(store.as_store(), "h/"),
            Vec::<String>::new(),
            "{name}: not an object"
        );
        let left = store.unfinished("h/").expect("unfinished");
        assert_eq!(left.len(), 1, "{name}: {left:?}");
        assert_eq!(left[0].key, "h/s2/died", "{name}");
        assert!(left[0].modified.is_some(), "{name}");
        assert!(
            store.unfinished("other/").expect("unfinished").is_empty(),
            "{name}"
        );
        store.discard(&left[0]).expect("discard");
        store
            .discard(&left[0])
            .expect("a second discard is no error");
        assert!(
            store.unfinished("h/").expect("unfinished").is_empty(),
            "{name}"
        );
        // The key is free again.
        put(store.as_store(), "h/s2/died", b"whole").expect("put after discard");
    }
}

#[test]
fn listing_is_by_prefix_and_sorted_and_delete_is_idempotent() {
    let s = stores("contract-list");
    for (name, store) in &s.all {
        for key in ["b/2/x", "a/1/y", "a/1/x", "a/10/z", "ab/1/x"] {
            put(store.as_store(), key, key.as_bytes()).expect("put");
        }
        assert_eq!(
            keys(store.as_store(), "a/1"),
            ["a/1/x", "a/1/y", "a/10/z"],
            "{name}"
        );
        assert_eq!(keys(store.as_store(), "a/1/"), ["a/1/x", "a/1/y"], "{name}");
        assert_eq!(
            keys(store.as_store(), "a/"),
            ["a/1/x", "a/1/y", "a/10/z"],
            "{name}"
        );
        assert_eq!(keys(store.as_store(), "").len(), 5, "{name}");
        store.delete("a/1/x").expect("delete");
        store
            .delete("a/1/x")
            .expect("deleting a missing key is no error");
        assert_eq!(keys(store.as_store(), "a/1/"), ["a/1/y"], "{name}");
    }
}

#[test]
fn keys_that_could_escape_or_confuse_a_listing_are_refused() {
    let s = stores("contract-keys");
    for (name, store) in &s.all {
        for key in [
            "../x",
            "/etc/passwd",
            "a//b",
            "a/./b",
            "a/../b",
            "",
            "a/",
            "a\\b",
        ] {
            assert!(store.create(key).is_err(), "{name}: created {key:?}");
            assert!(store.open(key).is_err(), "{name}: opened {key:?}");
            assert!(store.delete(key).is_err(), "{name}: deleted {key:?}");
        }
        let err = store.open("h/missing").err().map(|e| format!("{e:#}"));
        let err = err.unwrap_or_else(|| panic!("{name}: opened a missing key"));
        assert!(
            err.contains("h/missing"),
            "{name}: the error names the key: {err}"
        );
    }
}
