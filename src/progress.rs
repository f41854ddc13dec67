//! Progress of long work: bars on a terminal, one log line per source otherwise (cron, CI, pipes).
//! The core reports bytes through plain callbacks, so it never depends on how progress is shown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::human;

pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars only when stderr is a terminal and the caller wants them.
    pub fn new(bars: bool) -> Self {
        use std::io::IsTerminal;
        let multi = (bars && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self { multi }
    }

    pub fn start(&self, what: &str) -> Task {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:<28} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        if bar.is_none() {
            tracing::info!("{what}: started");
        }
        Task {
            what: what.to_string(),
            bar,
            bytes: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

/// One source's progress.
pub struct Task {
    what: String,
    bar: Option<ProgressBar>,
    bytes: AtomicU64,
    started: Instant,
}

impl Task {
    pub fn add(&self, n: u64) {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!(
                "{} read, {}/s",
                human(total),
                human((total as f64 / secs) as u64)
            ));
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn done(&self, summary: &str) {
        match &self.bar {
            Some(bar) => bar.finish_with_message(format!("done: {summary}")),
            None => tracing::info!("{}: done: {summary}", self.what),
        }
    }

    /// Ended by SIGINT or SIGTERM: the run as a whole says what that means.
    pub fn stopped(&self, sig: crate::interrupt::Signal) {
        match &self.bar {
            Some(bar) => bar.abandon_with_message(format!("stopped ({sig})")),
            None => tracing::info!("{}: stopped ({sig})", self.what),
        }
    }

    pub fn failed(&self, err: &anyhow::Error) {
        match &self.bar {
            Some(bar) => bar.abandon_with_message(format!("FAILED: {err:#}")),
            None => tracing::error!("{}: FAILED: {err:#}", self.what),
        }
    }
}
