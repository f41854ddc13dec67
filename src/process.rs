//! A child process whose stdout is the data stream (pg_dump, mariadb-dump, psql's input side).
//!
//! stderr is drained on its own thread (a child blocked on a full stderr pipe would never finish its
//! stdout), keeping the last 64 KiB for the error message. [`Child::finish`] waits for the exit and
//! turns a non-zero status or a signal into an error that carries that stderr: a dump that dies midway
//! can never look complete.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};

const STDERR_KEEP: usize = 64 * 1024;
/// The dump's stdout pipe: with Linux's default 64 KiB the dump stalls whenever the reader pauses for a
/// moment (a zstd job hand-off, a store write); 1 MiB lets it run on through those.
const STDOUT_PIPE_SIZE: libc::c_int = 1024 * 1024;

pub struct Child {
    name: String,
    child: std::process::Child,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Child {
    /// Starts `cmd` with stdout piped (taken by the caller with [`Child::stdout`]), stderr captured.
    pub fn spawn(name: impl Into<String>, mut cmd: Command, stdin: Stdio) -> Result<Self> {
        let name = name.into();
        cmd.stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = crate::interrupt::spawn(&name, &mut cmd).map_err(|e| {
            let context = if e
                .get_ref()
                .is_some_and(|i| i.is::<crate::interrupt::Interrupted>())
            {
                format!("not starting {name}")
            } else {
                format!("starting {name} (is it installed and on PATH?)")
            };
            anyhow::Error::new(e).context(context)
        })?;
        if let Some(out) = &child.stdout {
            enlarge_pipe(&name, out);
        }
        let mut err = child
            .stderr
            .take()
            .context("child stderr was not captured")?;
        let stderr = std::thread::Builder::new()
            .name(format!("{name}-stderr"))
            .spawn(move || {
                let mut kept = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    match err.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            kept.extend_from_slice(&buf[..n]);
                            if kept.len() > 2 * STDERR_KEEP {
                                kept.drain(..kept.len() - STDERR_KEEP);
                            }
                        }
                    }
                }
                kept
            })
            .context("starting the stderr reader thread")?;
        Ok(Self {
            name,
            child,
            stderr: Some(stderr),
        })
    }

    pub fn stdout(&mut self) -> Result<std::process::ChildStdout> {
        self.child
            .stdout
            .take()
            .context("child stdout already taken")
    }

    /// The child's process id (and its process group's: it leads one); valid until
    /// [`Child::finish`] or [`Child::kill`] reaps it.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn stdin(&mut self) -> Result<std::process::ChildStdin> {
        self.child.stdin.take().context("child stdin was not piped")
    }

    /// Waits for the child; fails on a non-zero exit or a signal, with the child's stderr.
    pub fn finish(mut self) -> Result<String> {
        let status = crate::interrupt::wait(&mut self.child)
            .with_context(|| format!("waiting for {}", self.name))?;
        let stderr = self.take_stderr();
        check_status(&self.name, status, &stderr)?;
        Ok(stderr)
    }

    /// Kills the child (if still running), with whatever it started, and reaps it. Used when the
    /// consumer failed.
    pub fn kill(mut self) -> String {
        // It may have exited already; the wait below reaps it either way.
        crate::interrupt::kill_group(self.child.id(), libc::SIGKILL);
        let _ = crate::interrupt::wait(&mut self.child);
        self.take_stderr()
    }

    fn take_stderr(&mut self) -> String {
        let bytes = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        let start = text.len().saturating_sub(STDERR_KEEP);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Never leave a dump running behind us when an error unwinds the pipeline.
        if self.stderr.is_some() {
            crate::interrupt::kill_group(self.child.id(), libc::SIGKILL);
            let _ = crate::interrupt::wait(&mut self.child);
        }
    }
}

/// Best effort: a smaller /proc/sys/fs/pipe-max-size (or a kernel without F_SETPIPE_SZ) only costs
/// speed, so a refusal is logged and ignored.
fn enlarge_pipe(name: &str, pipe: &impl AsRawFd) {
    // SAFETY: F_SETPIPE_SZ takes an int and touches no memory of ours; the descriptor is valid for the
    // duration of the call because `pipe` borrows the open pipe.
    let rc = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, STDOUT_PIPE_SIZE) };
    if rc < 0 {
        tracing::debug!(
            "could not enlarge the stdout pipe of {name} to {STDOUT_PIPE_SIZE} bytes: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn check_status(name: &str, status: ExitStatus, stderr: &str) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    let how = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "failed".to_string(),
    };
    if stderr.is_empty() {
        bail!("{name} {how}")
    }
    Err(anyhow!("{name} {how}: {stderr}"))
}

/// Runs a short command (like `pg_dump --version`) and returns its stdout.
pub fn output(name: &str, mut cmd: Command) -> Result<String> {
    let out = crate::interrupt::output(name, &mut cmd)
        .with_context(|| format!("running {name} (is it installed and on PATH?)"))?;
    check_status(
        name,
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_child_reports_exit_and_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo partial; echo 'pg_dump: error: connection lost' >&2; exit 3",
        ]);
        let mut child = Child::spawn("pg_dump", cmd, Stdio::null()).unwrap();
        let mut out = String::new();
        child.stdout().unwrap().read_to_string(&mut out).unwrap();
        let err = child.finish().unwrap_err().to_string();
        assert!(err.contains("pg_dump exited with code 3"), "{err}");
        assert!(err.contains("connection lost"), "{err}");
    }

    #[test]
    fn killed_child_is_an_error() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "kill -9 $$"]);
        let child = Child::spawn("dump", cmd, Stdio::null()).unwrap();
        let err = child.finish().unwrap_err().to_string();
        assert!(err.contains("killed by signal 9"), "{err}");
    }
}
