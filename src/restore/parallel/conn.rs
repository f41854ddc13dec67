//! One loading connection: a restore client (psql, mariadb) fed one unit after another.
//!
//! The clients are the same as for a single-stream restore, with the same protections (psql's
//! `\restrict`, mariadb's `--sandbox --local-infile=0`, the least-privilege role): offsite never
//! sends a dump's SQL over a driver of its own. To know when a unit has been executed, the
//! connection follows it with `SELECT 'offsite-sync-<random>-<unit>';` and waits for the client to
//! print that line. The random part is new for every restore, so a dump cannot print a marker early;
//! a client that dies (a statement failed) closes its output, and the unit fails with its stderr.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};

use super::sched::{Sched, Unit};
use super::spool::Budget;
use crate::process::Child;

/// How to start a client connection.
pub struct ClientSpec {
    pub name: String,
    pub cmd: Command,
    /// Written before anything else (psql's `\restrict KEY`).
    pub preamble: Vec<u8>,
    /// A client defaults file (the password) the client reads when it starts.
    pub defaults: Option<tempfile::NamedTempFile>,
}

/// What every connection of one restore shares.
pub struct Shared {
    pub sched: Sched,
    /// SET statements seen so far, in order: a connection replays those it has not run before it
    /// loads a unit, so every unit runs with the session settings of its place in the dump.
    pub session: Mutex<Vec<Vec<u8>>>,
    /// Per restore, so the dump cannot know the sync marker.
    pub nonce: String,
    /// The clients' process ids, to stop them all when one fails.
    pub pids: Mutex<Vec<u32>>,
    /// The first failure, which the restore reports.
    pub error: Mutex<Option<anyhow::Error>>,
    budget: Arc<Budget>,
}

impl Shared {
    pub fn new(budget: Arc<Budget>) -> Self {
        Self {
            sched: Sched::new(budget.clone()),
            budget,
            session: Mutex::new(Vec::new()),
            nonce: format!("{:032x}", rand::random::<u128>()),
            pids: Mutex::new(Vec::new()),
            error: Mutex::new(None),
        }
    }

    /// Records the first failure and stops everything: the scheduler, the spools, the clients.
    pub fn fail(&self, e: anyhow::Error) {
        {
            let mut first = self.error.lock().unwrap_or_else(|p| p.into_inner());
            if first.is_some() || self.sched.failed() {
                return;
            }
            *first = Some(e);
        }
        self.sched.fail();
        self.budget.fail();
        for &pid in self.pids.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            crate::interrupt::kill_group(pid, libc::SIGKILL);
        }
    }

    pub fn take_error(&self) -> Option<anyhow::Error> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn marker(&self, seq: u64) -> String {
        format!("offsite-sync-{}-{seq}", self.nonce)
    }
}

/// Runs connection `conn` until there is no more work; a failure is recorded in `shared`.
pub fn run(conn: usize, spec: ClientSpec, shared: Arc<Shared>) {
    if let Err(e) = serve(conn, spec, &shared) {
        // After another connection's failure this one only stopped: not worth reporting.
        if !shared.sched.failed() {
            shared.fail(e);
        }
    }
}

fn serve(conn: usize, spec: ClientSpec, shared: &Shared) -> Result<()> {
    let name = spec.name.clone();
    let mut child = Child::spawn(spec.name.clone(), spec.cmd, Stdio::piped())?;
    let _defaults = spec.defaults;
    shared
        .pids
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(child.id());
    if shared.sched.failed() {
        child.kill();
        return Ok(());
    }
    let mut stdin = child.stdin()?;
    let stdout = child.stdout()?;
    let prefix = format!("offsite-sync-{}-", shared.nonce).into_bytes();
    let (tx, rx) = channel();
    let reader = std::thread::Builder::new()
        .name(format!("{}-out", spec.name))
        .spawn(move || scan_markers(stdout, &prefix, |seq| tx.send(seq).is_ok()))
        .context("starting a client output thread")?;
    let mut current = None;
    let result = (|| -> Result<()> {
        stdin.write_all(&spec.preamble)?;
        let mut applied = 0;
        while let Some(unit) = shared.sched.next(conn) {
            current = Some(unit.label.clone());
            load(&mut stdin, &rx, unit.as_ref(), &mut applied, shared)?;
            shared.sched.done(unit.seq);
            current = None;
        }
        Ok(())
    })();
    drop(stdin);
    match result {
        Ok(()) => {
            let _ = reader.join();
            child.finish()?;
            Ok(())
        }
        Err(e) => {
            let stderr = child.kill();
            let _ = reader.join();
            let what = current.map_or_else(String::new, |l| format!(" while loading {l}"));
            // The client's own words: they name the statement and the server's error.
            let e = if stderr.is_empty() {
                e
            } else {
                anyhow!("{stderr}")
            };
            Err(e.context(format!("{name} failed{what}")))
        }
    }
}

fn load(
    stdin: &mut impl Write,
    markers: &Receiver<u64>,
    unit: &Unit,
    applied: &mut usize,
    shared: &Shared,
) -> Result<()> {
    if *applied < unit.session {
        let log = shared.session.lock().unwrap_or_else(|p| p.into_inner());
        for stmt in &log[*applied..unit.session] {
            stdin.write_all(stmt)?;
        }
        *applied = unit.session;
    }
    while let Some(chunk) = unit.body.next()? {
        stdin.write_all(&chunk)?;
    }
    // The unit ran the SET statements it holds itself.
    *applied = (*applied).max(unit.session_end());
    stdin.write_all(format!("\nSELECT '{}';\n", shared.marker(unit.seq)).as_bytes())?;
    stdin.flush()?;
    match markers.recv() {
        Ok(seq) if seq == unit.seq => Ok(()),
        Ok(seq) => bail!("the client confirmed unit {seq} where {} was due", unit.seq),
        Err(_) => Err(anyhow!("the client stopped before it finished")),
    }
}

/// Reads the client's output, calling `found` with each marker's unit number; keeps at most a
/// short line, whatever the dump prints.
fn scan_markers(mut out: impl Read, prefix: &[u8], mut found: impl FnMut(u64) -> bool) {
    let mut line: Vec<u8> = Vec::with_capacity(128);
    let mut long = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                if !long {
                    if let Some(seq) = line
                        .strip_prefix(prefix)
                        .and_then(|d| std::str::from_utf8(d).ok())
                        .and_then(|d| d.trim_end_matches('\r').parse::<u64>().ok())
                    {
                        if !found(seq) {
                            return;
                        }
                    }
                }
                line.clear();
                long = false;
            } else if line.len() < 128 {
                line.push(b);
            } else {
                long = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_whole_lines_with_the_nonce() {
        let out = b"x\noffsite-sync-ab-3\n  offsite-sync-ab-4\noffsite-sync-zz-5\noffsite-sync-ab-6x\noffsite-sync-ab-7\r\nofs";
        let mut got = Vec::new();
        scan_markers(&out[..], b"offsite-sync-ab-", |s| {
            got.push(s);
            true
        });
        assert_eq!(got, vec![3, 7]);
        let mut long = vec![b'a'; 500];
        long.extend_from_slice(b"offsite-sync-ab-9\n");
        let mut got = Vec::new();
        scan_markers(&long[..], b"offsite-sync-ab-", |s| {
            got.push(s);
            true
        });
        assert!(
            got.is_empty(),
            "a marker at the end of a long line is not one"
        );
    }
}
