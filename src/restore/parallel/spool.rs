//! The bytes of one unit of work (a table's COPY block, a run of schema statements), written by the
//! reader and read by the connection that loads them, possibly at the same time.
//!
//! A plain dump arrives in order, so a later table can only be read once the earlier ones have
//! been: the reader must run ahead of the loads or the connections wait for each other. What it
//! reads ahead is kept in memory up to [`Budget::mem_limit`] in all, and beyond that compressed
//! (zstd level 1, fast) into one file per chunk in a private directory, up to the spool limit;
//! past that the reader waits for the loads. A chunk's file is removed as soon as it is loaded, and
//! the directory when the restore ends, whatever way it ends.

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
    /// The most that was on disk at once, for the log.
    pub disk_peak: AtomicU64,
}

#[derive(Default)]
struct Usage {
    mem: u64,
    disk: u64,
    failed: bool,
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

    /// Turns `data` into a chunk: in memory while there is room, else on disk, waiting for room
    /// there when the spool limit is reached.
    fn store(&self, data: Vec<u8>) -> Result<Chunk> {
        let len = data.len() as u64;
        {
            let mut u = self.lock();
            if u.mem + len <= self.mem_limit {
                u.mem += len;
                return Ok(Chunk::Mem(data));
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
        let chunk = self.budget.store(data)?;
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
            loop {
                if s.failed {
                    return Err(anyhow!("the restore failed"));
                }
                if let Some(c) = s.chunks.pop_front() {
                    break c;
                }
                if s.closed {
                    return Ok(None);
                }
                s = self.more.wait(s).unwrap_or_else(|p| p.into_inner());
            }
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
        // 3 bytes of memory: the first chunk stays there, the others go to disk.
        let budget = Arc::new(Budget::new(dir.path().to_path_buf(), 3, 1 << 20));
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
        let u = budget.lock();
        assert_eq!((u.mem, u.disk), (0, 0));
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
        let spool = Arc::new(Spool::new(budget.clone()));
        spool.push(vec![1; 100]).unwrap();
        let blocked = {
            let spool = spool.clone();
            std::thread::spawn(move || spool.push(vec![2; 100]))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        budget.fail();
        assert!(blocked.join().unwrap().is_err());
        let empty = Spool::new(budget);
        empty.fail();
        assert!(empty.next().is_err());
    }
}
