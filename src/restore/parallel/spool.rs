//! The bytes of one unit of work (a table's COPY block, a run of schema statements), written by the
//! reader and read by the connection that loads them, possibly at the same time.
//!
//! A plain dump arrives in order, so a later table can only be read once the earlier ones have
//! been: the reader must run ahead of the loads or the connections wait for each other. What it
//! reads ahead is kept in memory up to [`Budget::mem_limit`] in all, and beyond that compressed
//! (zstd level 1, fast) into one file per chunk in a private directory, up to the spool limit;
//! past that the reader waits for the loads. A chunk's file is removed as soon as it is loaded, and
//! the directory when the restore ends, whatever way it ends.
//!
//! Disk is only worth its cost (compressing, writing, reading back, decompressing: a tenth of the
//! client's CPU on a 2-core office) while a connection waits for work the reader has not reached.
//! So with memory full the reader goes on to disk only while some connection is *hungry*; while
//! every connection is busy it waits for them instead, and a chunk a connection is already waiting
//! for goes to it through memory.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use anyhow::{anyhow, Context, Result};

/// The size the reader collects before handing a chunk over.
pub const CHUNK: usize = 1024 * 1024;
/// Read-ahead held in memory, for all units together; beyond it chunks go to disk.
pub const MEM_LIMIT: u64 = 32 * 1024 * 1024;

/// What the read-ahead may use, shared by every spool of one restore.
pub struct Budget {
    dir: PathBuf,
    mem_limit: u64,
    disk_limit: u64,
    state: Mutex<Usage>,
    freed: Condvar,
    next_file: AtomicU64,
    /// The most that was on disk at once, and all that went there, for the log.
    pub disk_peak: AtomicU64,
    pub disk_total: AtomicU64,
}

#[derive(Default)]
struct Usage {
    mem: u64,
    disk: u64,
    failed: bool,
    /// Connections waiting for work: for a unit to start, or for the next chunk of theirs.
    hungry: usize,
}

impl Budget {
    pub fn new(dir: PathBuf, mem_limit: u64, disk_limit: u64) -> Self {
        Self {
            dir,
            mem_limit,
            disk_limit,
            state: Mutex::new(Usage::default()),
            freed: Condvar::new(),
            next_file: AtomicU64::new(0),
            disk_peak: AtomicU64::new(0),
            disk_total: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Usage> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops every wait: a load failed, the reader must not wait for room.
    pub fn fail(&self) {
        self.lock().failed = true;
        self.freed.notify_all();
    }

    #[cfg(test)]
    pub fn hungry_now(&self) -> usize {
        self.lock().hungry
    }

    /// A connection waits for work until the guard is dropped.
    pub fn hungry(&self) -> Hunger<'_> {
        self.lock().hungry += 1;
        self.freed.notify_all();
        Hunger(self)
    }

    /// Turns `data` into a chunk: in memory while there is room (or when a connection `waits` for
    /// it), else on disk once a connection is hungry, waiting for room there when the spool limit
    /// is reached.
    fn store(&self, data: Vec<u8>, waited: bool) -> Result<Chunk> {
        let len = data.len() as u64;
        {
            let mut u = self.lock();
            loop {
                // A chunk a connection waits for is taken at once: memory over the limit by at
                // most one chunk per connection.
                if waited || u.mem + len <= self.mem_limit {
                    u.mem += len;
                    return Ok(Chunk::Mem(data));
                }
                if u.failed {
                    return Err(anyhow!("the restore failed"));
                }
                if u.hungry > 0 {
                    break;
                }
                u = self.freed.wait(u).unwrap_or_else(|p| p.into_inner());
            }
        }
        let packed = zstd::bulk::compress(&data, 1).context("compressing a spool chunk")?;
        let size = packed.len() as u64;
        {
            let mut u = self.lock();
            // A chunk bigger than the whole limit still goes once the spool is empty.
            while u.disk > 0 && u.disk + size > self.disk_limit && !u.failed {
                u = self.freed.wait(u).unwrap_or_else(|p| p.into_inner());
            }
            if u.failed {
                return Err(anyhow!("the restore failed"));
            }
            u.disk += size;
            self.disk_peak.fetch_max(u.disk, Ordering::Relaxed);
        }
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{n:08}.zst"));
        if let Err(e) = std::fs::write(&path, &packed) {
            self.release_disk(size);
            return Err(e).with_context(|| {
                format!(
                    "writing the restore spool {} (office.spool_limit bounds it; is the disk full?)",
                    path.display()
                )
            });
        }
        self.disk_total.fetch_add(size, Ordering::Relaxed);
        Ok(Chunk::Disk { path, size, len })
    }

    fn release_mem(&self, len: u64) {
        self.lock().mem -= len;
        self.freed.notify_all();
    }

    fn release_disk(&self, size: u64) {
        self.lock().disk -= size;
        self.freed.notify_all();
    }
}

/// See [`Budget::hungry`].
pub struct Hunger<'a>(&'a Budget);

impl Drop for Hunger<'_> {
    fn drop(&mut self) {
        self.0.lock().hungry -= 1;
    }
}

enum Chunk {
    Mem(Vec<u8>),
    Disk { path: PathBuf, size: u64, len: u64 },
}

/// One unit's bytes: appended by the reader, taken in order by one loader.
pub struct Spool {
    budget: Arc<Budget>,
    state: Mutex<SpoolState>,
    more: Condvar,
}

#[derive(Default)]
struct SpoolState {
    chunks: VecDeque<Chunk>,
    closed: bool,
    failed: bool,
    /// Its connection waits for the next chunk.
    waiting: bool,
}

impl Spool {
    pub fn new(budget: Arc<Budget>) -> Self {
        Self {
            budget,
            state: Mutex::new(SpoolState::default()),
            more: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SpoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a chunk (the reader).
    pub fn push(&self, data: Vec<u8>) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        // Once: the next chunk is the one it waits for, and later ones wait their turn.
        let waited = std::mem::take(&mut self.lock().waiting);
        let chunk = self.budget.store(data, waited)?;
        self.lock().chunks.push_back(chunk);
        self.more.notify_all();
        Ok(())
    }

    /// No more chunks will come.
    pub fn close(&self) {
        self.lock().closed = true;
        self.more.notify_all();
    }

    /// Wakes a loader waiting for chunks that will never come.
    pub fn fail(&self) {
        self.lock().failed = true;
        self.more.notify_all();
    }

    /// The next chunk's bytes, waiting for the reader; None at the end.
    pub fn next(&self) -> Result<Option<Vec<u8>>> {
        let chunk = {
            let mut s = self.lock();
            let mut hunger = None;
            // After a failure or the close no chunk comes, so `waiting` no longer matters.
            let chunk = loop {
                if s.failed {
                    return Err(anyhow!("the restore failed"));
                }
                if let Some(c) = s.chunks.pop_front() {
                    break c;
                }
                if s.closed {
                    return Ok(None);
                }
                s.waiting = true;
                hunger.get_or_insert_with(|| self.budget.hungry());
                s = self.more.wait(s).unwrap_or_else(|p| p.into_inner());
            };
            s.waiting = false;
            chunk
        };
        match chunk {
            Chunk::Mem(v) => {
                self.budget.release_mem(v.len() as u64);
                Ok(Some(v))
            }
            Chunk::Disk { path, size, len } => {
                let read = std::fs::read(&path);
                let _ = std::fs::remove_file(&path);
                self.budget.release_disk(size);
                let packed =
                    read.with_context(|| format!("reading the restore spool {}", path.display()))?;
                let data = zstd::bulk::decompress(&packed, len as usize).with_context(|| {
                    format!("decompressing the restore spool {}", path.display())
                })?;
                Ok(Some(data))
            }
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Chunks never loaded (a failed restore) give back what they held.
        let chunks = std::mem::take(&mut self.lock().chunks);
        for c in chunks {
            match c {
                Chunk::Mem(v) => self.budget.release_mem(v.len() as u64),
                Chunk::Disk { path, size, .. } => {
                    let _ = std::fs::remove_file(&path);
                    self.budget.release_disk(size);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_come_back_in_order_from_memory_and_disk() {
        let dir = tempfile::tempdir().unwrap();
        // 3 bytes of memory: the first chunk stays there, the others go to disk, since a
        // connection waits for work.
        let budget = Arc::new(Budget::new(dir.path().to_path_buf(), 3, 1 << 20));
        let hunger = budget.hungry();
        let spool = Spool::new(budget.clone());
        spool.push(b"abc".to_vec()).unwrap();
        spool.push(b"defg".to_vec()).unwrap();
        spool.push(vec![7u8; 10_000]).unwrap();
        spool.close();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        assert_eq!(spool.next().unwrap().unwrap(), b"abc");
        assert_eq!(spool.next().unwrap().unwrap(), b"defg");
        assert_eq!(spool.next().unwrap().unwrap(), vec![7u8; 10_000]);
        assert!(spool.next().unwrap().is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        drop(hunger);
        let u = budget.lock();
        assert_eq!((u.mem, u.disk, u.hungry), (0, 0, 0));
        let (total, peak) = (
            budget.disk_total.load(Ordering::Relaxed),
            budget.disk_peak.load(Ordering::Relaxed),
        );
        assert!(peak > 0 && total >= peak, "{total} {peak}");
    }

    #[test]
    fn with_memory_full_the_reader_waits_for_busy_connections_and_spools_for_a_hungry_one() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Arc::new(Budget::new(dir.path().to_path_buf(), 4, 1 << 20));
        let (a, b) = (
            Arc::new(Spool::new(budget.clone())),
            Arc::new(Spool::new(budget.clone())),
        );
        a.push(b"full".to_vec()).unwrap();
        // Every connection is busy: the next chunk waits in the reader, not on disk.
        let reader = {
            let b = b.clone();
            std::thread::spawn(move || b.push(b"next".to_vec()))
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !reader.is_finished(),
            "the reader went on while every connection was busy"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // A connection takes a chunk: room in memory, and nothing went to disk.
        assert_eq!(a.next().unwrap().unwrap(), b"full");
        reader.join().unwrap().unwrap();
        assert_eq!(budget.disk_total.load(Ordering::Relaxed), 0);
        // Memory full again, and a connection waits for a unit the reader has not reached: the
        // reader spools ahead to disk.
        let hunger = budget.hungry();
        b.push(b"more".to_vec()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(hunger);
        // A chunk a connection already waits for goes to it through memory, even when full.
        let waiter = {
            let a = a.clone();
            std::thread::spawn(move || a.next().unwrap().unwrap())
        };
        while !a.lock().waiting {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        a.push(b"wait".to_vec()).unwrap();
        assert_eq!(waiter.join().unwrap(), b"wait");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(b.next().unwrap().unwrap(), b"next");
        assert_eq!(b.next().unwrap().unwrap(), b"more");
    }

    #[test]
    fn a_full_spool_makes_the_writer_wait_for_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Arc::new(Budget::new(dir.path().to_path_buf(), 0, 1));
        let spool = Arc::new(Spool::new(budget));
        let writer = {
            let spool = spool.clone();
            std::thread::spawn(move || {
                for i in 0..20u8 {
                    spool.push(vec![i; 1000]).unwrap();
                }
                spool.close();
            })
        };
        let mut got = Vec::new();
        while let Some(c) = spool.next().unwrap() {
            // Never more than one chunk on disk: the limit is one byte.
            assert!(std::fs::read_dir(dir.path()).unwrap().count() <= 1);
            got.push(c[0]);
        }
        writer.join().unwrap();
        assert_eq!(got, (0..20).collect::<Vec<u8>>());
    }

    #[test]
    fn a_failure_wakes_both_sides() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Arc::new(Budget::new(dir.path().to_path_buf(), 0, 1));
        let _hunger = budget.hungry();
        let spool = Arc::new(Spool::new(budget.clone()));
        spool.push(vec![1; 100]).unwrap();
        let blocked = {
            let spool = spool.clone();
            std::thread::spawn(move || spool.push(vec![2; 100]))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        budget.fail();
        assert!(blocked.join().unwrap().is_err());
        let empty = Spool::new(budget.clone());
        empty.fail();
        assert!(empty.next().is_err());
    }
}
