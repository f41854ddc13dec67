//! Progress of long work, as the core reports it. How it is shown (bars on a terminal, log lines
//! for cron and pipes) is the command line's business (`cli/progress.rs`): the core only calls
//! these traits, so it never depends on a terminal library.

use crate::interrupt::Signal;

/// Where a run reports its units of work (a source of a push).
pub trait Progress: Sync {
    fn start(&self, what: &str) -> Box<dyn Task>;
}

/// One unit of work's progress.
pub trait Task: Send + Sync {
    /// `n` more bytes read.
    fn add(&self, n: u64);
    fn done(&self, summary: &str);
    /// Ended by SIGINT or SIGTERM: the run as a whole says what that means.
    fn stopped(&self, sig: Signal);
    fn failed(&self, err: &anyhow::Error);
}

/// One log line when a unit starts and one when it ends: what cron, CI and pipes get.
pub struct LogLines;

impl Progress for LogLines {
    fn start(&self, what: &str) -> Box<dyn Task> {
        tracing::info!("{what}: started");
        Box::new(LogTask(what.to_string()))
    }
}

struct LogTask(String);

impl Task for LogTask {
    fn add(&self, _: u64) {}

    fn done(&self, summary: &str) {
        tracing::info!("{}: done: {summary}", self.0);
    }

    fn stopped(&self, sig: Signal) {
        tracing::info!("{}: stopped ({sig})", self.0);
    }

    fn failed(&self, err: &anyhow::Error) {
        tracing::error!("{}: FAILED: {err:#}", self.0);
    }
}
