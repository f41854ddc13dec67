//! Progress bars on a terminal (indicatif); log lines otherwise (cron, CI, pipes).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use offsite::config::human;
use offsite::interrupt::Signal;
use offsite::progress::{LogLines, Progress, Task};

/// Bars only when stderr is a terminal and the caller wants them.
pub fn for_stderr(bars: bool) -> Box<dyn Progress> {
    use std::io::IsTerminal;
    if bars && std::io::stderr().is_terminal() {
        Box::new(Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        })
    } else {
        Box::new(LogLines)
    }
}

struct Bars {
    multi: MultiProgress,
}

impl Progress for Bars {
    fn start(&self, what: &str) -> Box<dyn Task> {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:<28} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Box::new(Bar {
            bar,
            bytes: AtomicU64::new(0),
            started: Instant::now(),
        })
    }
}

struct Bar {
    bar: ProgressBar,
    bytes: AtomicU64,
    started: Instant,
}

impl Task for Bar {
    fn add(&self, n: u64) {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        self.bar.set_message(format!(
            "{} read, {}/s",
            human(total),
            human((total as f64 / secs) as u64)
        ));
    }

    fn done(&self, summary: &str) {
        self.bar.finish_with_message(format!("done: {summary}"));
    }

    fn stopped(&self, sig: Signal) {
        self.bar.abandon_with_message(format!("stopped ({sig})"));
    }

    fn failed(&self, err: &anyhow::Error) {
        self.bar.abandon_with_message(format!("FAILED: {err:#}"));
    }
}
