//! SIGINT and SIGTERM: a run ends through its ordinary failure path, then exits 130 or 143.
//!
//! Why a flag and the failure path, rather than cleaning up in the signal handler and exiting:
//! every step already knows how to fail without committing half. A store writer dropped
//! uncommitted aborts its multipart upload or removes its temporary file; a push with a failed
//! source writes no manifest; a restore that fails drops the database it created; a refresh that
//! fails leaves the old database. `exit` from a handler skips all of that (destructors do not
//! run), and a handler that cleaned up by itself would race the threads still writing. So the
//! first signal only (the program's listener, `cli/signals.rs`, delivers it with [`deliver`]; the
//! library installs no handler of its own):
//! 1. records which signal came ([`received`]). From then on store writes, verified object reads
//!    and new child processes fail with "interrupted by SIGTERM", a commit that has not begun does
//!    not begin, and async waits wrapped in [`interruptible`] end at once;
//! 2. stops every child registered by [`spawn`]: SIGTERM to its process group (so a wrapper
//!    script's own children go too), SIGKILL after a grace period. The thread that owns a child still
//!    reaps it, and sees it fail like any dump or restore that dies;
//! 3. arms a watchdog: a run that has not ended 30 s after the signal (a thread stuck
//!    in a read with no check, a server that does not answer) is ended anyway, with the same exit
//!    code, after the last-resort hooks ([`on_exit`]: the office drops its scratch databases) and a
//!    list of what was left behind.
//!
//! A second signal exits at once, naming what was left. The caller of the command (main) turns
//! an interrupted run's error into exit code 130 (SIGINT) or 143 (SIGTERM) and runs the hooks once
//! more; a command that finished its work although a signal came (it arrived while the manifest
//! was being committed) exits as it would have without it.
//!
//! A commit already under way is never cut: link(2), PutObject and CompleteMultipartUpload each
//! make the object exist whole or not at all, and the flag is checked just before them, not during.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// The signal that arrived first: 0 for none, else SIGINT or SIGTERM.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static WAKE: Notify = Notify::const_new();
/// Children of this process, by pid, with a name for messages. A pid is taken out of this list
/// before the child is reaped, under the lock, so a pid in it is always still ours (running or a
/// zombie) and a kill can never hit a reused pid.
static CHILDREN: Mutex<BTreeMap<u32, String>> = Mutex::new(BTreeMap::new());
/// Work in progress that a hard exit would leave behind ([`Pending`]).
static PENDING: Mutex<BTreeMap<u64, String>> = Mutex::new(BTreeMap::new());
static NEXT_PENDING: AtomicU64 = AtomicU64::new(0);
/// What a clean-up could not remove (an upload that could not be aborted), for the final message.
static LEFT: Mutex<Vec<String>> = Mutex::new(Vec::new());
type Hook = Box<dyn Fn(bool) -> Vec<String> + Send + Sync>;
static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());
/// SIGINT or SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Int,
    Term,
}

impl Signal {
    fn from_raw(n: i32) -> Option<Self> {
        match n {
            libc::SIGINT => Some(Signal::Int),
            libc::SIGTERM => Some(Signal::Term),
            _ => None,
        }
    }

    pub fn raw(self) -> i32 {
        match self {
            Signal::Int => libc::SIGINT,
            Signal::Term => libc::SIGTERM,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
        }
    }

    /// 128 + the signal's number, as a shell reports a process the signal ended.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Int => 130,
            Signal::Term => 143,
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of work refused or stopped because a signal came.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("interrupted by {0}")]
pub struct Interrupted(pub Signal);

/// The signal that arrived, if one did.
pub fn received() -> Option<Signal> {
    Signal::from_raw(SIGNAL.load(Ordering::SeqCst))
}

/// `Err(Interrupted)` once a signal came.
pub fn check() -> Result<(), Interrupted> {
    match received() {
        Some(sig) => Err(Interrupted(sig)),
        None => Ok(()),
    }
}

/// [`check`] as an I/O error, for `Read` and `Write` implementations.
pub fn check_io() -> io::Result<()> {
    check().map_err(io::Error::other)
}

/// Whether `err` is, or was caused by, an interruption.
pub fn is_interrupted(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<Interrupted>()
            || e.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<Interrupted>())
    })
}

/// Runs `f` until it ends or a signal comes, whichever is first. For waits that would otherwise
/// hold a stopping run: a part upload's slot, a query in a scratch database.
pub async fn interruptible<F: Future>(f: F) -> Result<F::Output, Interrupted> {
    let woken = WAKE.notified();
    tokio::pin!(woken);
    // Registered before the flag is read: a signal after the read still wakes this.
    woken.as_mut().enable();
    check()?;
    tokio::select! {
        out = f => Ok(out),
        _ = woken => Err(Interrupted(received().unwrap_or(Signal::Term))),
    }
}

/// Records a signal the command line's listener caught ([`crate`] installs none itself): the
/// first one sets the flag every [`check`] reads and wakes every [`interruptible`] wait. Returns
/// whether it was the first.
pub fn deliver(sig: Signal) -> bool {
    let first = SIGNAL
        .compare_exchange(0, sig.raw(), Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    if first {
        WAKE.notify_waiters();
    }
    first
}

/// Registers a last-resort clean-up, run when an interrupted run ends (by its clean path or the
/// watchdog; `true`) or on a second signal (`false`: only describe, no time to clean). Returns what
/// it left behind.
pub fn on_exit(hook: impl Fn(bool) -> Vec<String> + Send + Sync + 'static) {
    lock(&HOOKS).push(Box::new(hook));
}

/// What an interrupted run leaves behind, after the hooks ran (`clean`) or described it: children
/// not yet reaped, work still [`Pending`], what a clean-up could not remove ([`left_behind`]).
pub fn leftovers(clean: bool) -> Vec<String> {
    let mut out: Vec<String> = children()
        .into_iter()
        .map(|(pid, name)| format!("{name} (pid {pid}, killed, not yet reaped)"))
        .collect();
    out.extend(lock(&PENDING).values().cloned());
    out.extend(lock(&LEFT).iter().cloned());
    for hook in lock(&HOOKS).iter() {
        out.extend(hook(clean));
    }
    out
}

/// Records something a clean-up could not remove, for the final message of an interrupted run.
pub fn left_behind(what: impl Into<String>) {
    lock(&LEFT).push(what.into());
}

/// Work that a hard exit (the watchdog, a second signal) would leave behind, named in its message
/// until this guard is dropped: a multipart upload not yet completed or aborted, a temporary file.
#[derive(Debug)]
pub struct Pending(u64);

impl Pending {
    pub fn new(what: impl Into<String>) -> Self {
        let id = NEXT_PENDING.fetch_add(1, Ordering::Relaxed);
        lock(&PENDING).insert(id, what.into());
        Self(id)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        lock(&PENDING).remove(&self.0);
    }
}

/// A poisoned lock still holds valid data here (plain lists): use it rather than lose the list.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The registered children not yet reaped, with their names.
pub fn children() -> Vec<(u32, String)> {
    lock(&CHILDREN)
        .iter()
        .map(|(p, n)| (*p, n.clone()))
        .collect()
}

/// Sends `sig` to every registered child's process group (and to the child itself, should it have
/// left the group).
pub fn signal_children(sig: i32) {
    let kids = lock(&CHILDREN);
    for pid in kids.keys() {
        kill_group(*pid, sig);
    }
}

/// Sends `sig` to the process group `pid` leads, and to `pid`. Only for a child of ours that is
/// not reaped yet (its pid, and so its group id, cannot have been reused).
pub fn kill_group(pid: u32, sig: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill takes plain integers and touches no memory.
    unsafe {
        libc::kill(-pid, sig);
        libc::kill(pid, sig);
    }
}

/// Starts `cmd` as a registered child, leading a process group of its own: a signal stops it and
/// whatever it started. Refused once a signal came. `name` is for messages ("pg_dump of shop").
///
/// Its own group also keeps a terminal's Ctrl-C from reaching the child directly: offsite stops
/// it, in order, and sees it go. Reap it with [`wait`], never `Child::wait`.
pub fn spawn(name: &str, cmd: &mut Command) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // Held across the spawn: a signal either finds the child in the list or is seen here first.
    let mut kids = lock(&CHILDREN);
    check_io()?;
    let child = cmd.spawn()?;
    kids.insert(child.id(), name.to_string());
    Ok(child)
}

/// Waits for a child started by [`spawn`] and reaps it, taking it out of the list first.
pub fn wait(child: &mut Child) -> io::Result<ExitStatus> {
    let pid = child.id();
    {
        let raw: libc::id_t = pid;
        loop {
            // SAFETY: waitid writes only into the zeroed siginfo we pass; WNOWAIT leaves the child
            // unreaped, so its pid stays ours until `child.wait()` below.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let rc =
                unsafe { libc::waitid(libc::P_PID, raw, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
    }
    lock(&CHILDREN).remove(&pid);
    child.wait()
}

/// [`Command::output`] for a registered child: stdout and stderr collected, stdin closed.
pub fn output(name: &str, cmd: &mut Command) -> io::Result<Output> {
    use std::io::Read;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(name, cmd)?;
    let err = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut e) = err {
            let _ = e.read_to_end(&mut buf);
        }
        buf
    });
    let mut stdout = Vec::new();
    let read = match child.stdout.take() {
        Some(mut o) => o.read_to_end(&mut stdout).map(|_| ()),
        None => Ok(()),
    };
    if read.is_err() {
        kill_group(child.id(), libc::SIGKILL);
    }
    let status = wait(&mut child);
    let stderr = err_reader.join().unwrap_or_default();
    read?;
    Ok(Output {
        status: status?,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_child_is_listed_until_reaped_and_leads_its_own_group() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 3"]);
        let mut child = spawn("test child", &mut cmd).unwrap();
        let pid = child.id();
        assert!(children().iter().any(|(p, _)| *p == pid));
        // SAFETY: getpgid only reads.
        let pgid = unsafe { libc::getpgid(pid as libc::pid_t) };
        assert!(
            pgid == pid as libc::pid_t || pgid == -1,
            "own group: {pgid}"
        );
        let status = wait(&mut child).unwrap();
        assert_eq!(status.code(), Some(3));
        assert!(!children().iter().any(|(p, _)| *p == pid));
    }

    #[test]
    fn output_collects_both_streams() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2"]);
        let out = output("test", &mut cmd).unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn exit_codes_are_128_plus_the_signal() {
        assert_eq!(i32::from(Signal::Int.exit_code()), 128 + Signal::Int.raw());
        assert_eq!(
            i32::from(Signal::Term.exit_code()),
            128 + Signal::Term.raw()
        );
    }
}
