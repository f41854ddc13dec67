//! Loading one plain dump over several connections, from the stream (`office.restore_jobs`).
//!
//! No tool restores a *streamed* plain dump in parallel: pg_restore -j needs a seekable archive,
//! myloader its own per-table files. offsite reads the dump once, in order, and cuts it into units
//! where the restore client's own lexer ([`crate::sql::PgCounter`]) says statements start and end:
//! each table's data block, each index or constraint, and runs of everything else. A splitter per
//! engine ([`pg_split`]) classifies the units; [`sched`] decides which may run at once;
//! [`spool`] holds what the reader has read ahead of the loads; [`conn`] runs the clients.
//!
//! The result is the database a single stream gives: units that could depend on each other keep
//! their dump order, and what offsite does not recognise runs alone, in order.

mod conn;
mod my_split;
mod pg_split;
mod sched;
mod spool;

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};

pub use conn::ClientSpec;
use conn::Shared;
use sched::Unit;
use spool::{Budget, Spool, CHUNK, MEM_LIMIT};

use crate::snapshot::manifest::Engine;

/// How a restore loads: `jobs` connections, read-ahead spooled under `spool_dir` up to
/// `spool_limit` bytes (compressed).
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub jobs: usize,
    pub spool_dir: PathBuf,
    pub spool_limit: u64,
}

/// The splitter's side: where it sends units and their bytes.
pub struct Feeder {
    shared: Arc<Shared>,
    budget: Arc<Budget>,
    current: Option<Arc<Unit>>,
    buf: Vec<u8>,
    seq: u64,
    /// Units that may run beside others, for the log.
    parallel: u64,
}

impl Feeder {
    fn new(shared: Arc<Shared>, budget: Arc<Budget>) -> Self {
        Self {
            shared,
            budget,
            current: None,
            buf: Vec::with_capacity(CHUNK),
            seq: 0,
            parallel: 0,
        }
    }

    /// Starts a unit. `keys`: the tables it touches; none makes it a barrier, which continues
    /// the current unit if that is a barrier too.
    pub fn start(&mut self, label: impl FnOnce() -> String, keys: Vec<String>) -> Result<()> {
        if keys.is_empty() && self.current.as_ref().is_some_and(|u| u.barrier) {
            return Ok(());
        }
        self.begin(label(), keys, false)
    }

    /// Starts a unit that holds `keys` shared with the units around it that do too (the parts of
    /// one table's data).
    pub fn start_shared(&mut self, label: String, keys: Vec<String>) -> Result<()> {
        self.begin(label, keys, true)
    }

    fn begin(&mut self, label: String, keys: Vec<String>, shared: bool) -> Result<()> {
        self.close()?;
        let session = self
            .shared
            .session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        let mut unit = Unit::new(
            self.seq,
            label,
            keys,
            session,
            Spool::new(self.budget.clone()),
        );
        unit.shared = shared && !unit.barrier;
        let unit = Arc::new(unit);
        self.seq += 1;
        self.parallel += u64::from(!unit.barrier);
        self.shared.sched.add(unit.clone());
        self.current = Some(unit);
        Ok(())
    }

    pub fn data(&mut self, bytes: &[u8]) -> Result<()> {
        if self.current.is_none() {
            self.start(|| "the dump's first statements".into(), Vec::new())?;
        }
        let mut bytes = bytes;
        while !bytes.is_empty() {
            let take = (CHUNK - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() >= CHUNK {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// A SET statement, which the current unit (a barrier) also holds: later units replay it.
    pub fn session(&mut self, stmt: Vec<u8>) {
        self.shared
            .session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(stmt);
    }

    /// The session log's size, for the splitter's bound on it.
    pub fn session_len(&self) -> usize {
        self.shared
            .session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    fn flush(&mut self) -> Result<()> {
        if let Some(u) = &self.current {
            if !self.buf.is_empty() {
                let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
                u.body.push(chunk)?;
            }
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.flush()?;
        if let Some(u) = self.current.take() {
            let len = self.session_len();
            u.session_end.store(len, Ordering::Release);
            u.body.close();
        }
        Ok(())
    }
}

/// A dump cut into units as it streams.
pub trait Splitter {
    fn feed(&mut self, data: &[u8], to: &mut Feeder) -> Result<()>;
    /// The input ended: fails when it cannot be a whole dump.
    fn finish(&mut self, to: &mut Feeder) -> Result<()>;
}

/// The splitter for an engine.
pub fn splitter(engine: Engine) -> Option<Box<dyn Splitter>> {
    match engine {
        Engine::Postgres => Some(Box::new(pg_split::PgSplit::new())),
        Engine::Mysql => Some(Box::new(my_split::MySplit::new())),
    }
}

/// Loads `reader` over `clients.len()` connections. Returns the bytes read.
pub fn load(
    reader: &mut dyn Read,
    mut split: Box<dyn Splitter>,
    clients: Vec<ClientSpec>,
    opts: &LoadOptions,
) -> Result<u64> {
    std::fs::create_dir_all(&opts.spool_dir).with_context(|| {
        format!(
            "creating the restore spool directory {}",
            opts.spool_dir.display()
        )
    })?;
    // Removed when it goes out of scope, on every path out of here.
    let dir = tempfile::Builder::new()
        .prefix("restore-spool-")
        .tempdir_in(&opts.spool_dir)
        .with_context(|| format!("creating a spool under {}", opts.spool_dir.display()))?;
    let budget = Arc::new(Budget::new(
        dir.path().to_path_buf(),
        MEM_LIMIT,
        opts.spool_limit,
    ));
    let shared = Arc::new(Shared::new(budget.clone()));
    let mut threads = Vec::new();
    for (i, spec) in clients.into_iter().enumerate() {
        let shared = shared.clone();
        let t = std::thread::Builder::new()
            .name(format!("load-{i}"))
            .spawn(move || conn::run(i, spec, shared))
            .context("starting a loading thread")?;
        threads.push(t);
    }
    let mut feeder = Feeder::new(shared.clone(), budget.clone());
    let read = read_all(reader, split.as_mut(), &mut feeder, &shared);
    let (units, parallel) = (feeder.seq, feeder.parallel);
    let loaded_first = shared.take_error();
    if read.is_ok() {
        shared.sched.close();
    } else {
        shared.fail(anyhow::anyhow!("reading the dump failed"));
    }
    drop(feeder);
    for t in threads {
        let _ = t.join();
    }
    // A connection's failure comes first: the reader may only have stopped because of it.
    if let Some(e) = loaded_first.or_else(|| shared.take_error().filter(|_| read.is_ok())) {
        return Err(e);
    }
    let n = read?;
    tracing::info!(
        "loaded {} of SQL over {} connections: {units} units, {parallel} of them beside others; read-ahead spooled to disk: {} in all, at most {} at once",
        crate::config::human(n),
        opts.jobs,
        crate::config::human(budget.disk_total.load(Ordering::Relaxed)),
        crate::config::human(budget.disk_peak.load(Ordering::Relaxed))
    );
    Ok(n)
}

fn read_all(
    reader: &mut dyn Read,
    split: &mut dyn Splitter,
    feeder: &mut Feeder,
    shared: &Shared,
) -> Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        if shared.sched.failed() {
            // A connection failed: its error is the restore's.
            return Ok(total);
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // The read error stays the source: a strict masking refusal is recognised by its type.
            Err(e) => return Err(anyhow::Error::new(e).context("reading the dump")),
        };
        total += n as u64;
        split.feed(&buf[..n], feeder)?;
    }
    split.finish(feeder)?;
    feeder.close()?;
    Ok(total)
}

/// The units a splitter cuts a dump into, fed in 7-byte pieces: keys, shared, body.
#[cfg(test)]
fn cut_units(split: &mut dyn Splitter, dump: &[u8]) -> Vec<(Vec<String>, bool, String)> {
    let dir = tempfile::tempdir().unwrap();
    let budget = Arc::new(Budget::new(dir.path().into(), 1 << 30, 1 << 30));
    let shared = Arc::new(Shared::new(budget.clone()));
    let mut feeder = Feeder::new(shared.clone(), budget);
    for piece in dump.chunks(7) {
        split.feed(piece, &mut feeder).unwrap();
    }
    split.finish(&mut feeder).unwrap();
    feeder.close().unwrap();
    shared.sched.close();
    let mut out = Vec::new();
    while let Some(u) = shared.sched.next(0) {
        let mut body = Vec::new();
        while let Some(c) = u.body.next().unwrap() {
            body.extend(c);
        }
        out.push((u.keys.clone(), u.shared, String::from_utf8(body).unwrap()));
        shared.sched.done(u.seq);
    }
    out
}
