//! Streams a dump child's stdout through a row counter into a pipeline object.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::config::human_duration;
use crate::pipeline::ObjectSink;
use crate::process::Child;
use crate::snapshot::manifest::ObjectEntry;
use crate::sql::DumpCounter;

/// Copies the child's stdout into `sink` while counting, then checks, in this order, that the child
/// exited cleanly, that the stream did not end mid-structure and that its end-of-dump marker was the
/// last thing in it, and only then commits the object. Returns
/// the child's stderr (warnings) with the object entry.
///
/// A child that writes nothing for `stall` while this waits for it is killed, and the source fails
/// with that; time spent storing what it wrote does not count.
pub fn stream_dump(
    name: &str,
    mut child: Child,
    mut sink: ObjectSink,
    counter: &mut dyn DumpCounter,
    stall: Duration,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<(ObjectEntry, String)> {
    let mut out = child.stdout()?;
    let mut buf = vec![0u8; 256 * 1024];
    let watchdog = Watchdog::start(name, child.id(), stall)?;
    let copied: Result<()> = (|| loop {
        watchdog.waiting(true);
        let read = out.read(&mut buf);
        watchdog.waiting(false);
        let n = match read {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading the output of {name}")),
        };
        counter.feed(&buf[..n]);
        sink.write_all(&buf[..n])
            .with_context(|| format!("storing the output of {name}"))?;
        on_bytes(n as u64);
    })();
    // Stopped before the child is reaped below, so its pid cannot have been reused when it kills.
    if watchdog.stop() {
        let stderr = child.kill();
        let mut msg = format!(
            "{name} wrote nothing for {} (dump_stall_timeout) and was killed; the source failed",
            human_duration(stall)
        );
        if !stderr.is_empty() {
            msg.push_str(&format!(": {name} said: {stderr}"));
        }
        bail!("{msg}");
    }
    if let Err(e) = copied {
        let stderr = child.kill();
        if stderr.is_empty() {
            return Err(e);
        }
        return Err(e.context(format!("{name} said: {stderr}")));
    }
    drop(out);
    let stderr = child.finish()?;
    if let Err(e) = counter.finish() {
        bail!("{name} exited cleanly but its output is not a complete dump, end-of-dump marker or not: {e:#}");
    }
    if !counter.end_marker_seen() {
        bail!("{name} exited cleanly but its output lacks the end-of-dump marker: the dump is incomplete");
    }
    let entry = sink.finish()?;
    Ok((entry, stderr))
}

/// Kills a dump child that leaves its reader waiting for `stall`. A thread of its own, because the
/// reader is blocked in `read` exactly when it should act.
struct Watchdog {
    state: Arc<WatchState>,
    thread: Option<JoinHandle<()>>,
}

struct WatchState {
    start: Instant,
    /// Milliseconds after `start` since when the reader waits; `u64::MAX` while it does not.
    waiting_since: AtomicU64,
    fired: AtomicBool,
    stop: Mutex<bool>,
    wake: Condvar,
}

const NOT_WAITING: u64 = u64::MAX;

impl WatchState {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NOT_WAITING - 1)
    }
}

impl Watchdog {
    fn start(name: &str, pid: u32, stall: Duration) -> Result<Self> {
        let state = Arc::new(WatchState {
            start: Instant::now(),
            waiting_since: AtomicU64::new(NOT_WAITING),
            fired: AtomicBool::new(false),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let st = state.clone();
        let stall_ms = u64::try_from(stall.as_millis()).unwrap_or(u64::MAX);
        let every = (stall / 10).clamp(Duration::from_millis(50), Duration::from_secs(5));
        let thread = std::thread::Builder::new()
            .name(format!("{name}-watchdog"))
            .spawn(move || {
                let Ok(mut stopped) = st.stop.lock() else {
                    return;
                };
                while !*stopped {
                    let since = st.waiting_since.load(Ordering::Relaxed);
                    if since != NOT_WAITING && st.now_ms().saturating_sub(since) >= stall_ms {
                        st.fired.store(true, Ordering::Relaxed);
                        // The child is not reaped before this thread is stopped
                        // (`Watchdog::stop`), so the pid is still the dump's. Its group goes too:
                        // a wrapper script's pg_dump would otherwise write on.
                        crate::interrupt::kill_group(pid, libc::SIGKILL);
                        return;
                    }
                    stopped = match st.wake.wait_timeout(stopped, every) {
                        Ok((guard, _)) => guard,
                        Err(_) => return,
                    };
                }
            })
            .context("starting the dump watchdog thread")?;
        Ok(Self {
            state,
            thread: Some(thread),
        })
    }

    fn waiting(&self, yes: bool) {
        let v = if yes {
            self.state.now_ms()
        } else {
            NOT_WAITING
        };
        self.state.waiting_since.store(v, Ordering::Relaxed);
    }

    /// Stops the thread; whether it killed the child.
    fn stop(mut self) -> bool {
        self.halt();
        self.state.fired.load(Ordering::Relaxed)
    }

    fn halt(&mut self) {
        if let Ok(mut stopped) = self.state.stop.lock() {
            *stopped = true;
        }
        self.state.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.halt();
    }
}
