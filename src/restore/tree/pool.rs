//! Reading a restore's volumes on several threads at once.
//!
//! A volume is one OpenPGP message, one zstd frame sequence and one tar archive: each has to be
//! read from its start by a single thread, so the unit of work is the volume. Volumes do not depend
//! on each other: a file is never split across volumes (an oversized one gets a volume of its own),
//! every directory exists before the first volume is opened, and links, special files and directory
//! attributes wait until every volume is done. So they can be taken in any order, by any worker.
//!
//! Each worker streams one volume at a time through its own buffers, so memory grows with the
//! number of workers, never with the size of a volume or of the tree.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use anyhow::{anyhow, Result};

/// Past this, more workers mostly cost memory (a zstd window and about 1.5 MiB of buffers each)
/// and contend for the same disk.
const MAX_THREADS: usize = 16;

/// One worker per core, at least two: even on one core, a second worker decrypts while the first
/// waits for the store or the disk.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, MAX_THREADS)
}

/// The first failure of a run, and the flag that tells every other worker to stop.
#[derive(Default)]
pub struct Stop {
    stopped: AtomicBool,
    first: Mutex<Option<anyhow::Error>>,
}

impl Stop {
    pub fn is_set(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    fn fail(&self, e: anyhow::Error) {
        // Kept before the flag goes up: the workers the flag stops fail too, and their "stopped"
        // must never be what the restore reports instead of the volume that actually failed.
        self.first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(e);
        self.stopped.store(true, Ordering::Release);
    }
}

/// A worker that panics stops the others as an error would.
struct StopOnPanic<'a>(&'a Stop);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stopped.store(true, Ordering::Release);
        }
    }
}

/// Runs `work` for every job, on one thread per element of `workers` (each thread owns one, for
/// its buffers and counters). Jobs are taken in slice order. The first error stops every worker at
/// its next read or job and is returned; otherwise the workers come back for their counters.
pub fn run<J, W, F>(jobs: &[J], workers: Vec<W>, work: F) -> Result<Vec<W>>
where
    J: Sync,
    W: Send,
    F: Fn(&mut W, &J, &Stop) -> Result<()> + Sync,
{
    let stop = Stop::default();
    let next = AtomicUsize::new(0);
    let joined = std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(workers.len());
        for (n, mut worker) in workers.into_iter().enumerate() {
            let (stop, next, work) = (&stop, &next, &work);
            let spawned = std::thread::Builder::new()
                .name(format!("offsite-restore-{n}"))
                .spawn_scoped(scope, move || {
                    let _guard = StopOnPanic(stop);
                    while !stop.is_set() {
                        let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            break;
                        };
                        if let Err(e) = work(&mut worker, job, stop) {
                            stop.fail(e);
                        }
                    }
                    worker
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    stop.fail(anyhow!(e).context("starting a restore thread"));
                    break;
                }
            }
        }
        handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
    });
    if let Some(e) = stop
        .first
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
    {
        return Err(e);
    }
    joined
        .into_iter()
        .map(|r| r.map_err(|_| anyhow!("internal error: a restore thread panicked")))
        .collect()
}

/// A volume's reader that fails once another worker has failed, so a worker in the middle of a
/// large volume does not go on writing files of a restore that has already failed.
pub struct Stoppable<'s, R> {
    inner: R,
    stop: &'s Stop,
}

impl<'s, R> Stoppable<'s, R> {
    pub fn new(inner: R, stop: &'s Stop) -> Self {
        Self { inner, stop }
    }
}

impl<R: Read> Read for Stoppable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.is_set() {
            return Err(io::Error::other(
                "stopped: another volume of this restore failed",
            ));
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_job_runs_once_across_the_workers() -> Result<()> {
        let jobs: Vec<u64> = (1..=200).collect();
        let workers = super::run(&jobs, vec![(0u64, 0usize); 4], |w, j, _| {
            w.0 += j;
            w.1 += 1;
            Ok(())
        })?;
        assert_eq!(workers.iter().map(|w| w.0).sum::<u64>(), 200 * 201 / 2);
        assert_eq!(workers.iter().map(|w| w.1).sum::<usize>(), 200);
        Ok(())
    }

    #[test]
    fn the_first_failure_stops_the_others_and_is_the_one_reported() {
        let started = AtomicUsize::new(0);
        let jobs: Vec<usize> = (0..100).collect();
        let err = super::run(&jobs, vec![(); 4], |_, j, stop| {
            started.fetch_add(1, Ordering::Relaxed);
            if *j == 0 {
                anyhow::bail!("job 0 is broken");
            }
            // A long job: it ends early through its reader once job 0 has failed.
            let mut r = Stoppable::new(io::repeat(0), stop);
            for _ in 0..200 {
                std::thread::sleep(Duration::from_millis(5));
                r.read_exact(&mut [0; 16])?;
            }
            Ok(())
        })
        .err()
        .map(|e| format!("{e:#}"));
        assert_eq!(err.as_deref(), Some("job 0 is broken"));
        assert!(
            started.load(Ordering::Relaxed) <= 4,
            "no job starts after the failure: {} started",
            started.load(Ordering::Relaxed)
        );
    }

    #[test]
    fn a_panicking_worker_fails_the_run() {
        let jobs = [0, 1, 2];
        let r = super::run(&jobs, vec![(); 2], |_, j, _| {
            if *j == 1 {
                panic!("worker bug");
            }
            Ok(())
        });
        assert!(r.is_err());
    }
}
