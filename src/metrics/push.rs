//! push's metrics: per source (what the last committed snapshot took), and per run.
//!
//! A snapshot is all of its sources or nothing, so a committed push replaces every per-source
//! sample of its host (a source no longer configured disappears), and a failed one leaves them
//! all as they were: `offsite_push_last_success_timestamp_seconds` keeps the last success.

use std::path::Path;

use anyhow::Result;
use time::OffsetDateTime;

use super::{label, timestamp, Family, Metrics};
use crate::push::PushSummary;

pub const LAST_SUCCESS: &str = "offsite_push_last_success_timestamp_seconds";
pub const BYTES: &str = "offsite_push_bytes";
pub const DURATION: &str = "offsite_push_duration_seconds";
pub const RUN_SUCCESS: &str = "offsite_push_last_run_success";
pub const RUN_TIMESTAMP: &str = "offsite_push_last_run_timestamp_seconds";

/// Records one push run of `host` in `path`: `committed` is the summary of a committed snapshot
/// (exit 0 or 3), `None` a failed run.
pub fn record(
    path: &Path,
    host: &str,
    committed: Option<&PushSummary>,
    finished: OffsetDateTime,
) -> Result<()> {
    let ours = |l: &super::Labels| label(l, "host") == Some(host);
    super::update(path, |m: &mut Metrics| {
        if let Some(s) = committed {
            let mut last = Family::gauge(
                LAST_SUCCESS,
                "When the last committed snapshot of this source was committed (Unix time).",
            );
            let mut bytes = Family::gauge(
                BYTES,
                "Bytes this source stored (compressed, encrypted) in the last committed snapshot.",
            );
            let mut duration = Family::gauge(
                DURATION,
                "Seconds this source took to dump and store in the last committed snapshot.",
            );
            for src in &s.sources {
                let labels = [("host", host), ("source", src.source.as_str())];
                last.set(&labels, timestamp(finished));
                bytes.set(&labels, src.stored_bytes as f64);
                duration.set(&labels, src.seconds);
            }
            m.replace(last, ours);
            m.replace(bytes, ours);
            m.replace(duration, ours);
        }
        m.replace(
            Family::gauge(
                RUN_SUCCESS,
                "1 when the last push run of this host committed its snapshot, 0 when it failed.",
            )
            .sample(&[("host", host)], f64::from(u8::from(committed.is_some()))),
            ours,
        );
        m.replace(
            Family::gauge(
                RUN_TIMESTAMP,
                "When the last push run of this host ended, committed or not (Unix time).",
            )
            .sample(&[("host", host)], timestamp(finished)),
            ours,
        );
    })
}
