//! Run locks: one process at a time per job, for push (per host) and for the office (per offsite
//! directory, or per host of it: a shared lock on the directory's file plus the host's own).
//!
//! A lock is an exclusive `flock(2)` on a lock file, not the file's existence. The kernel releases
//! it when the holder's last descriptor closes, so also when the holder is killed outright: a lock
//! file a killed run left behind is harmless and is simply locked again. That is also why a lock
//! file is never deleted: a process that opened the old inode before the delete could lock it
//! while another locks a new file under the same name, and both would run.
//!
//! The holder writes its pid and start time into the file (`<pid>\n<RFC 3339>\n`, pidfile style, so
//! `kill $(head -1 FILE)` works), only so that the process refused can say who is in the way. The
//! content decides nothing.
//!
//! Files are opened close-on-exec (Rust's default), so a child process (pg_dump, a notify command)
//! that outlives its parent never holds the lock on its behalf.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Result};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A lock this process holds; released when dropped, or by the kernel when the process dies.
#[derive(Debug)]
pub struct Held {
    _file: File,
    path: PathBuf,
}

impl Held {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Who holds a lock, as far as its file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    pub since: Option<String>,
    /// Why pid and time could not be read, when they could not.
    pub unreadable: Option<String>,
}

impl fmt::Display for Holder {
    /// `pid N, since T`, or a note that the file did not say.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.pid, &self.since, &self.unreadable) {
            (Some(pid), Some(since), _) => write!(f, "pid {pid}, since {since}"),
            (Some(pid), None, _) => write!(f, "pid {pid}, start time unknown"),
            (_, _, Some(why)) => write!(f, "pid and start time unreadable: {why}"),
            (None, _, None) => write!(f, "pid and start time unreadable"),
        }
    }
}

/// Takes the lock at `path` if it is free; `Ok(None)` if another process holds it. The file is
/// created if needed (its directory must exist).
pub fn try_lock(path: &Path) -> Result<Option<Held>> {
    let file = open(path)?;
    match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => claim(file, path).map(Some),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
        Err(e) => Err(anyhow!("locking {}: {e}", path.display())),
    }
}

/// Takes the lock at `path`, waiting as long as another process holds it, or until SIGINT or
/// SIGTERM ([`crate::interrupt`]).
///
/// It polls (every [`POLL`]) rather than blocking in `flock`: a blocking `flock` is restarted
/// after a signal handler, so a stopping run would wait for the holder.
pub fn lock_waiting(path: &Path) -> Result<Held> {
    let file = open(path)?;
    loop {
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => return claim(file, path),
            // A signal that did not kill us (SIGWINCH, a stopped and continued job): wait on.
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                crate::interrupt::check()
                    .map_err(|i| anyhow!("stopped waiting for the lock {}: {i}", path.display()))?;
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(anyhow!("waiting for the lock {}: {e}", path.display())),
        }
    }
}

/// A shared lock this process holds: any number of processes may hold one at once, and none of
/// them while another holds the exclusive lock of the same file. Its holders write nothing into
/// the file: it keeps the last exclusive holder's pid, which only that holder may rewrite.
#[derive(Debug)]
pub struct SharedHeld {
    _file: File,
}

/// Takes a shared lock on `path` if no process holds it exclusively; `Ok(None)` if one does.
pub fn try_lock_shared(path: &Path) -> Result<Option<SharedHeld>> {
    let file = open(path)?;
    match flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
        Ok(()) => Ok(Some(SharedHeld { _file: file })),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
        Err(e) => Err(anyhow!("locking {} (shared): {e}", path.display())),
    }
}

/// Whether some process holds the lock at `path` exclusively. Looks with a shared lock, dropped
/// at once, so the file is never written; a missing file is no lock.
pub fn held_exclusively(path: &Path) -> bool {
    let Ok(file) = OpenOptions::new().read(true).open(path) else {
        return false;
    };
    matches!(
        flock(&file, libc::LOCK_SH | libc::LOCK_NB),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK)
    )
}

/// How often [`lock_waiting`] tries again.
const POLL: Duration = Duration::from_millis(100);

/// Reads who holds the lock at `path` (call after [`try_lock`] returned `None`).
pub fn holder(path: &Path) -> Holder {
    // The holder truncates, then writes: between its flock and its write the file is empty for a
    // moment. Wait out that moment rather than report an empty file.
    let mut tries = 0;
    loop {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => return unreadable(format!("reading {}: {e}", path.display())),
        };
        if text.is_empty() && tries < 20 {
            tries += 1;
            std::thread::sleep(Duration::from_millis(25));
            continue;
        }
        return parse(&text, path);
    }
}

fn parse(text: &str, path: &Path) -> Holder {
    let mut lines = text.lines();
    let pid = lines.next().and_then(|l| l.trim().parse::<u32>().ok());
    let since = lines
        .next()
        .map(str::trim)
        .filter(|s| OffsetDateTime::parse(s, &Rfc3339).is_ok())
        .map(str::to_string);
    match pid {
        Some(pid) => Holder {
            pid: Some(pid),
            since,
            unreadable: None,
        },
        None if text.is_empty() => unreadable(format!("{} is empty", path.display())),
        None => unreadable(format!(
            "{} does not start with a pid (it holds {:?})",
            path.display(),
            text.chars().take(40).collect::<String>()
        )),
    }
}

fn unreadable(why: String) -> Holder {
    Holder {
        pid: None,
        since: None,
        unreadable: Some(why),
    }
}

fn open(path: &Path) -> Result<File> {
    // Never truncate on open: a process that is refused must not wipe the holder's pid and time.
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| {
            anyhow!(
                "opening the lock file {}: {e} (its directory must exist and be writable by this user)",
                path.display()
            )
        })
}

fn flock(file: &File, op: libc::c_int) -> std::io::Result<()> {
    // SAFETY: flock on a file descriptor we own; it has no memory-safety preconditions.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Writes this process's pid and the time into the file it just locked.
fn claim(mut file: File, path: &Path) -> Result<Held> {
    let since = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc())
        .format(&Rfc3339)?;
    file.set_len(0)
        .and_then(|()| file.write_all(format!("{}\n{since}\n", std::process::id()).as_bytes()))
        .map_err(|e| anyhow!("writing the pid into the lock file {}: {e}", path.display()))?;
    Ok(Held {
        _file: file,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = try_lock(&path).unwrap().expect("free");
        // flock locks belong to the open file, so a second open in this process conflicts too.
        assert!(try_lock(&path).unwrap().is_none());
        let h = holder(&path);
        assert_eq!(h.pid, Some(std::process::id()));
        assert!(h.since.is_some(), "{h:?}");
        assert!(
            h.to_string()
                .starts_with(&format!("pid {}, since ", std::process::id())),
            "{h}"
        );
        drop(first);
        assert!(try_lock(&path).unwrap().is_some());
    }

    #[test]
    fn shared_locks_coexist_and_exclude_the_exclusive_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        assert!(!held_exclusively(&path), "a missing file is no lock");
        let a = try_lock_shared(&path).unwrap().expect("free");
        let b = try_lock_shared(&path)
            .unwrap()
            .expect("shared with the first");
        assert!(
            try_lock(&path).unwrap().is_none(),
            "shared holders exclude it"
        );
        assert!(!held_exclusively(&path));
        drop((a, b));
        let x = try_lock(&path).unwrap().expect("free again");
        assert!(held_exclusively(&path));
        assert!(try_lock_shared(&path).unwrap().is_none());
        drop(x);
        assert!(try_lock_shared(&path).unwrap().is_some());
    }

    #[test]
    fn a_file_without_a_pid_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        std::fs::write(&path, "garbage\n").unwrap();
        let h = holder(&path);
        assert_eq!(h.pid, None);
        assert!(h.to_string().contains("does not start with a pid"), "{h}");
        std::fs::write(&path, "").unwrap();
        assert!(holder(&path).to_string().contains("is empty"));
    }

    #[test]
    fn a_stale_file_is_locked_again_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        std::fs::write(&path, "999999999\n2000-01-01T00:00:00Z\nleftover\n").unwrap();
        let _held = try_lock(&path).unwrap().expect("a stale file is no lock");
        let h = holder(&path);
        assert_eq!(h.pid, Some(std::process::id()));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("leftover"), "{text}");
    }
}
