//! One object from the store into the offsite copy, checked against the signed manifest.
//!
//! The transfer never waits for the sha256 or the disk: the thread that receives writes what it got
//! and goes on receiving, while the sha256 runs on a thread of its own.
//! - An object up to [`RANGED_PARTS`] parts long streams through one GET: the receiving thread
//!   writes each 1 MiB buffer to the temporary file and hands a copy to the hashing thread
//!   ([`OffloadedHashWriter`], at most a few MiB waiting).
//! - A bigger one is downloaded in ranged parts of `office.download_part_size` on
//!   `parallel_downloads` connections at once, each part written at its offset of the temporary
//!   file (pwrite). The hashing thread follows the contiguous prefix that has arrived (the first
//!   unfinished part's progress), reading it back from the file, that is from the page cache: the
//!   hash is in order and nearly done when the last part lands, and memory is one buffer per
//!   connection whatever the object's size.
//!
//! Either way the object is renamed into place only when its size and sha256 equal the manifest's.
//! A mismatch downloads the object once more (a byte flipped on the way is not there twice); a
//! second one fails, naming the object and the store. No part is trusted on its own: S3 keeps
//! per-part checksums only of the parts an upload had, which need not be these ranges, and the
//! manifest's sha256 covers every byte anyway.

use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};

use super::context::Office;
use crate::pipeline::digest::{Measured, OffloadedHashWriter};
use crate::store::local::PlacedWriter;
use crate::store::Store;

/// An object longer than this many parts is downloaded in ranged parts; a shorter one would not
/// keep the connections busy long enough to gain from it, and pull already downloads
/// `parallel_downloads` objects at once.
pub const RANGED_PARTS: u64 = 4;

/// What one read from the store and one write to the file move: big enough that a hand-off (a
/// channel send, a syscall, a runtime round trip) per buffer costs nothing, small enough that
/// the buffers of every connection stay a few MiB.
const BUF: usize = 1 << 20;

/// Times an object goes through the check: once more after a mismatch.
const ATTEMPTS: u32 = 2;

/// How pull fetches objects: `parallel_downloads` and `office.download_part_size`.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub connections: usize,
    pub part_size: u64,
}

impl Plan {
    pub fn of(office: &Office) -> Self {
        Self {
            connections: office.office.parallel_downloads.max(1),
            part_size: office.office.download_part_size.max(1),
        }
    }

    /// Whether an object of `size` bytes goes in ranged parts.
    pub fn ranged(&self, size: u64) -> bool {
        self.connections > 1 && size > RANGED_PARTS.saturating_mul(self.part_size)
    }

    /// The byte ranges of an object of `size` bytes, in order, each `part_size` long but the last.
    pub fn parts(&self, size: u64) -> Vec<Range<u64>> {
        let step = self.part_size.max(1);
        (0..size.div_ceil(step))
            .map(|i| i * step..((i + 1) * step).min(size))
            .collect()
    }
}

/// Size and sha256 that did not match the manifest.
#[derive(Debug)]
struct Mismatch(String);

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Mismatch {}

/// Downloads `key` into the offsite copy and commits it when it matches `expected`. Returns the
/// bytes downloaded.
pub fn download(
    office: &Office,
    source: &dyn Store,
    key: &str,
    expected: &Measured,
    plan: Plan,
) -> Result<u64> {
    let what = format!("object {key} in {}", source.location());
    for attempt in 1..=ATTEMPTS {
        let res = if plan.ranged(expected.size) {
            ranged(office, source, key, expected, plan, &what)
        } else {
            streamed(office, source, key, expected, &what)
        };
        match res {
            Err(e) if attempt < ATTEMPTS && e.downcast_ref::<Mismatch>().is_some() => {
                tracing::warn!("{e:#}; downloading it once more");
            }
            Err(e) if e.downcast_ref::<Mismatch>().is_some() => {
                return Err(e.context(format!(
                    "{what} did not match its manifest twice: it is damaged in the store, or something between the store and this office changes bytes; nothing of it was kept"
                )));
            }
            Err(e) => return Err(e),
            Ok(()) => return Ok(expected.size),
        }
    }
    Err(anyhow!("{what}: not downloaded"))
}

fn check(got: &Measured, expected: &Measured, what: &str, how: &str) -> Result<()> {
    // No recorded sha256 (tree volumes of old manifests): the size is what is checked.
    let hash_ok = expected.sha256.is_empty() || got.sha256 == expected.sha256;
    if got.size == expected.size && hash_ok {
        return Ok(());
    }
    Err(Mismatch(format!(
        "{what} is corrupt: expected {} bytes with sha256 {}, received {} bytes with sha256 {} ({how})",
        expected.size, expected.sha256, got.size, got.sha256
    ))
    .into())
}

/// One GET, written as it arrives, hashed on the side.
fn streamed(
    office: &Office,
    source: &dyn Store,
    key: &str,
    expected: &Measured,
    what: &str,
) -> Result<()> {
    let mut reader = source
        .open(key)
        .with_context(|| format!("downloading {key}"))?;
    let w = office.offsite.create(key)?;
    let mut w = OffloadedHashWriter::new(w).context("starting the sha256 thread")?;
    let mut buf = vec![0u8; BUF];
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("downloading {key}"))?;
        if n == 0 {
            break;
        }
        if w.size() + n as u64 > expected.size {
            return Err(Mismatch(format!(
                "{what} is corrupt: longer than the {} bytes recorded",
                expected.size
            ))
            .into());
        }
        w.write_all(&buf[..n])
            .with_context(|| format!("writing {key} to the offsite copy"))?;
    }
    let (w, got) = w.finish().with_context(|| format!("hashing {key}"))?;
    check(&got, expected, what, "one GET")?;
    w.commit()
        .with_context(|| format!("storing {key} in the offsite copy"))
}

/// How far each part has arrived, and the signal the hashing thread waits on.
struct Progress {
    parts: Vec<Range<u64>>,
    /// Bytes written of each part, from its start.
    done: Vec<AtomicU64>,
    /// Set when a part failed: everyone stops.
    stop: AtomicBool,
    signal: Mutex<()>,
    moved: Condvar,
}

impl Progress {
    fn new(parts: Vec<Range<u64>>) -> Self {
        Self {
            done: parts.iter().map(|_| AtomicU64::new(0)).collect(),
            parts,
            stop: AtomicBool::new(false),
            signal: Mutex::new(()),
            moved: Condvar::new(),
        }
    }

    /// The end of the prefix that has arrived whole: every part before the first unfinished one,
    /// and what that one has of its beginning.
    fn frontier(&self) -> u64 {
        let mut end = 0;
        for (r, d) in self.parts.iter().zip(&self.done) {
            let d = d.load(Ordering::Acquire);
            end = r.start + d;
            if d < r.end - r.start {
                break;
            }
        }
        end
    }

    fn advance(&self, part: usize, done: u64) {
        self.done[part].store(done, Ordering::Release);
        let _guard = self.signal.lock();
        self.moved.notify_all();
    }

    fn halt(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _guard = self.signal.lock();
        self.moved.notify_all();
    }

    /// Waits until the frontier is past `hashed` or the download stopped; returns the frontier.
    fn wait_past(&self, hashed: u64) -> u64 {
        let mut guard = self.signal.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let f = self.frontier();
            if f > hashed || self.stop.load(Ordering::SeqCst) {
                return f;
            }
            // The timeout only guards against a wake-up lost between the check and the wait.
            guard = match self.moved.wait_timeout(guard, Duration::from_millis(100)) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// Ranged parts on several connections, written at their offsets, hashed in order.
fn ranged(
    office: &Office,
    source: &dyn Store,
    key: &str,
    expected: &Measured,
    plan: Plan,
    what: &str,
) -> Result<()> {
    let parts = plan.parts(expected.size);
    let count = parts.len();
    let out = office.offsite.create_placed(key, expected.size)?;
    let progress = Progress::new(parts);
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let hashed = std::thread::scope(|scope| {
        let hasher = std::thread::Builder::new()
            .name("offsite-sha256".into())
            .spawn_scoped(scope, || hash_in_order(&out, &progress, expected.size))
            .context("starting the sha256 thread")?;
        for _ in 0..plan.connections.min(count) {
            scope.spawn(|| loop {
                if progress.stop.load(Ordering::SeqCst) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(range) = progress.parts.get(i).cloned() else {
                    return;
                };
                if let Err(e) = fetch_part(source, key, i, range.clone(), &out, &progress) {
                    let e = e.context(format!(
                        "downloading part {} of {count} (bytes {}-{}) of {what}",
                        i + 1,
                        range.start,
                        range.end.saturating_sub(1)
                    ));
                    if let Ok(mut f) = failed.lock() {
                        f.get_or_insert(e);
                    }
                    progress.halt();
                    return;
                }
            });
        }
        hasher
            .join()
            .map_err(|_| anyhow!("the sha256 thread of {key} panicked"))
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let got = hashed?.with_context(|| format!("reading back {key} to hash it"))?;
    check(
        &got,
        expected,
        what,
        &format!(
            "{count} ranged parts of {}",
            crate::config::human(plan.part_size)
        ),
    )?;
    out.commit()
        .with_context(|| format!("storing {key} in the offsite copy"))
}

/// One part: a ranged GET written at its offset as it arrives.
fn fetch_part(
    source: &dyn Store,
    key: &str,
    part: usize,
    range: Range<u64>,
    out: &PlacedWriter,
    progress: &Progress,
) -> Result<()> {
    let len = range.end - range.start;
    let mut r = source.open_range(key, range.start, len)?;
    let mut buf = vec![0u8; BUF.min(usize::try_from(len).unwrap_or(BUF))];
    let mut done = 0u64;
    while done < len {
        if progress.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let want = buf
            .len()
            .min(usize::try_from(len - done).unwrap_or(usize::MAX));
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            anyhow::bail!("the answer ended {} bytes early", len - done);
        }
        out.write_at(&buf[..n], range.start + done)
            .context("writing to the offsite copy")?;
        done += n as u64;
        progress.advance(part, done);
    }
    // The end of the answer is read too: the HTTP client puts a connection back in its pool only
    // once it has seen its body end, and a new connection per part is a TLS handshake per part.
    if r.read(&mut buf[..1])? != 0 {
        anyhow::bail!("the answer is longer than the {len} bytes asked for");
    }
    Ok(())
}

/// The sha256 of the file as its parts arrive, in order; `None` when the download stopped first.
fn hash_in_order(out: &PlacedWriter, progress: &Progress, size: u64) -> io::Result<Measured> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BUF];
    let mut hashed = 0u64;
    while hashed < size {
        let frontier = progress.wait_past(hashed);
        if frontier <= hashed {
            // Stopped: a part failed, and that error is the one to report.
            break;
        }
        while hashed < frontier {
            let n = buf
                .len()
                .min(usize::try_from(frontier - hashed).unwrap_or(usize::MAX));
            out.read_at(&mut buf[..n], hashed)?;
            h.update(&buf[..n]);
            hashed += n as u64;
        }
    }
    Ok(Measured {
        size: hashed,
        sha256: hex::encode(h.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::local::LocalStore;

    #[test]
    fn parts_cover_the_object_in_order_without_gaps() {
        let plan = Plan {
            connections: 4,
            part_size: 16 << 20,
        };
        assert!(!plan.ranged(64 << 20), "four parts: one GET");
        assert!(plan.ranged((64 << 20) + 1));
        assert!(!Plan {
            connections: 1,
            ..plan
        }
        .ranged(1 << 40));
        for size in [
            1u64,
            (16 << 20) - 1,
            16 << 20,
            (16 << 20) + 1,
            1_000_000_007,
        ] {
            let parts = plan.parts(size);
            assert_eq!(parts.len() as u64, size.div_ceil(16 << 20), "{size}");
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts.last().map(|r| r.end), Some(size));
            for w in parts.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert_eq!(w[0].end - w[0].start, 16 << 20);
            }
        }
        assert!(plan.parts(0).is_empty());
    }

    #[test]
    fn the_frontier_follows_the_first_unfinished_part() {
        let p = Progress::new(vec![0..10, 10..20, 20..25]);
        assert_eq!(p.frontier(), 0);
        p.advance(1, 10);
        assert_eq!(p.frontier(), 0, "a later part alone moves nothing");
        p.advance(0, 4);
        assert_eq!(p.frontier(), 4);
        p.advance(0, 10);
        assert_eq!(p.frontier(), 20, "part 1 was already whole");
        p.advance(2, 5);
        assert_eq!(p.frontier(), 25);
    }

    /// Parts fetched by several threads out of order from a local store, assembled at their
    /// offsets and hashed in order, give the object; a flipped byte is caught and nothing is
    /// committed.
    #[test]
    fn ranged_parts_assemble_the_object_and_a_flipped_byte_is_never_committed() -> Result<()> {
        let src_dir = tempfile::tempdir()?;
        let dst_dir = tempfile::tempdir()?;
        let source = LocalStore::new(src_dir.path())?;
        let data: Vec<u8> = (0..5_000_123u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let mut w = source.create("h/s/big.bin")?;
        w.write_all(&data)?;
        w.commit()?;
        let expected = Measured {
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(&data)),
        };
        let office = LocalStore::new(dst_dir.path())?;
        let plan = Plan {
            connections: 3,
            part_size: 1 << 20,
        };
        assert!(plan.ranged(expected.size));

        let out = office.create_placed("h/s/big.bin", expected.size)?;
        let progress = Progress::new(plan.parts(expected.size));
        // Parts in reverse order: the hasher must wait for the first.
        let got = std::thread::scope(|s| {
            let h = s.spawn(|| hash_in_order(&out, &progress, expected.size));
            for (i, r) in progress.parts.iter().enumerate().rev() {
                fetch_part(&source, "h/s/big.bin", i, r.clone(), &out, &progress)?;
            }
            h.join()
                .map_err(|_| anyhow!("hasher panicked"))?
                .map_err(anyhow::Error::from)
        })?;
        check(&got, &expected, "big.bin", "test")?;
        out.commit()?;
        assert_eq!(std::fs::read(dst_dir.path().join("h/s/big.bin"))?, data);

        let mut bad = expected.clone();
        bad.sha256 = hex::encode(Sha256::digest(b"other"));
        let out = office.create_placed("h/s/other.bin", expected.size)?;
        let progress = Progress::new(plan.parts(expected.size));
        let got = std::thread::scope(|s| {
            let h = s.spawn(|| hash_in_order(&out, &progress, expected.size));
            for (i, r) in progress.parts.iter().enumerate() {
                fetch_part(&source, "h/s/big.bin", i, r.clone(), &out, &progress)?;
            }
            h.join()
                .map_err(|_| anyhow!("hasher panicked"))?
                .map_err(anyhow::Error::from)
        })?;
        let err = check(&got, &bad, "object h/s/other.bin", "test").unwrap_err();
        assert!(err.downcast_ref::<Mismatch>().is_some(), "{err:#}");
        assert!(
            format!("{err:#}").contains("h/s/other.bin is corrupt"),
            "{err:#}"
        );
        drop(out);
        let left: Vec<_> = std::fs::read_dir(dst_dir.path().join("h/s"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        assert_eq!(left, ["big.bin"], "no temporary file, no other.bin");
        Ok(())
    }

    /// A part that fails stops the others and the hasher, which reports how far it got.
    #[test]
    fn a_halted_download_stops_the_hasher() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let office = LocalStore::new(dir.path())?;
        let out = office.create_placed("k", 30)?;
        let progress = Progress::new(vec![0..10, 10..20, 20..30]);
        let got = std::thread::scope(|s| {
            let h = s.spawn(|| hash_in_order(&out, &progress, 30));
            progress.advance(0, 10);
            progress.halt();
            h.join()
        })
        .map_err(|_| anyhow!("hasher panicked"))??;
        assert_eq!(got.size, 10);
        Ok(())
    }
}
