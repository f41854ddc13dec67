//! Catching SIGINT and SIGTERM for a command: the listener thread, the watchdog, a second signal.
//!
//! The library only keeps the flag and the registry of children ([`offsite::interrupt`], whose
//! doc says how a run stops cleanly); installing handlers is the program's business, so a caller
//! of the library keeps its own. The first signal is delivered to the library, the children get
//! SIGTERM then SIGKILL after [`GRACE`], and a run that has not ended [`DEADLINE`] after the signal
//! is ended anyway, with the same exit code, after the last-resort hooks and a list of what was
//! left behind. A second signal exits at once.

use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use offsite::interrupt::{self, Signal};

/// How long children get to end after SIGTERM before they get SIGKILL.
pub const GRACE: Duration = Duration::from_secs(3);
/// How long after the first signal the run may take to end cleanly before it is ended anyway.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// What runs, for the watchdog's message: "push of web1".
static WHAT: Mutex<String> = Mutex::new(String::new());

/// Installs the handlers for SIGINT and SIGTERM; `what` names the run in messages ("push of
/// web1"). Until this is called the signals keep their default action (the process dies). Once
/// per process; a second call only renames the run.
pub fn install(what: &str) -> anyhow::Result<()> {
    if let Ok(mut w) = WHAT.lock() {
        *w = what.to_string();
    }
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| result = start_listener());
    result
}

fn start_listener() -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{signal, SignalKind};
    // A runtime of its own: the command's runtime may be busy, blocked or already dropped when
    // the signal comes, and this thread must still answer a second signal.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the signal listener")?;
    // Registered here, before install returns: from now on the signals no longer kill.
    let (mut int, mut term) = {
        let _entered = rt.enter();
        (
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        )
    };
    std::thread::Builder::new()
        .name("offsite-signals".into())
        .spawn(move || {
            rt.block_on(async move {
                loop {
                    let sig = tokio::select! {
                        Some(()) = int.recv() => Signal::Int,
                        Some(()) = term.recv() => Signal::Term,
                        else => return,
                    };
                    arrived(sig);
                }
            })
        })
        .context("starting the signal listener thread")?;
    Ok(())
}

fn arrived(sig: Signal) {
    let first = interrupt::deliver(sig);
    let what = run_name();
    if !first {
        // The first signal decides the exit code.
        let code = interrupt::received().unwrap_or(sig).exit_code();
        interrupt::signal_children(libc::SIGKILL);
        let left = interrupt::leftovers(false);
        eprintln!(
            "error: {what} interrupted again by {sig}: exiting at once{}",
            describe_left(&left)
        );
        std::process::exit(i32::from(code));
    }
    eprintln!(
        "{what}: {sig} received: stopping cleanly (within {}s; {sig} again exits at once)",
        DEADLINE.as_secs()
    );
    let stopped = std::thread::Builder::new()
        .name("offsite-stopping".into())
        .spawn(move || stop(sig));
    if stopped.is_err() {
        // Without the watchdog thread nothing would bound the clean path; kill what we can now.
        interrupt::signal_children(libc::SIGKILL);
    }
}

/// The first signal's work off the listener's thread: children stopped, then the watchdog.
fn stop(sig: Signal) {
    let start = Instant::now();
    interrupt::signal_children(libc::SIGTERM);
    while start.elapsed() < GRACE && !interrupt::children().is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    interrupt::signal_children(libc::SIGKILL);
    if let Some(rest) = DEADLINE.checked_sub(start.elapsed()) {
        std::thread::sleep(rest);
    }
    let left = interrupt::leftovers(true);
    eprintln!(
        "error: {} interrupted by {sig} did not end within {}s: exiting anyway{}",
        run_name(),
        DEADLINE.as_secs(),
        describe_left(&left)
    );
    std::process::exit(i32::from(sig.exit_code()));
}

fn run_name() -> String {
    match WHAT.lock().map(|w| w.clone()) {
        Ok(w) if !w.is_empty() => w,
        _ => "offsite".into(),
    }
}

fn describe_left(left: &[String]) -> String {
    if left.is_empty() {
        String::new()
    } else {
        format!("; left behind: {}", left.join("; "))
    }
}
