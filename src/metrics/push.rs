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
pub const LOCK_UNTIL: &str = "offsite_object_lock_until_timestamp_seconds";

/// One push run as the metrics see it.
pub struct Run<'a> {
    /// The summary of a committed snapshot (exit 0 or 3); `None`: the run failed.
    pub committed: Option<&'a PushSummary>,
    pub finished: OffsetDateTime,
    /// With `store.s3.object_lock`: until when the committed snapshot's objects are locked at
    /// least (the office's prune may extend some; a later push's lock is what protects the newest).
    pub locked_until: Option<OffsetDateTime>,
}

/// Records one push run of `host` in `path`.
pub fn record(path: &Path, host: &str, run: &Run) -> Result<()> {
    let (committed, finished) = (run.committed, run.finished);
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
            if let Some(until) = run.locked_until {
                m.replace(
                    Family::gauge(
                        LOCK_UNTIL,
                        "Until when the host's newest committed snapshot is under S3 Object Lock (Unix time).",
                    )
                    .sample(&[("host", host)], timestamp(until)),
                    ours,
                );
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::SourceSummary;

    #[test]
    fn a_committed_push_to_a_locked_store_exports_its_lock_and_a_failed_one_keeps_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("offsite.prom");
        let finished = time::macros::datetime!(2026-12-05 02:00:00 UTC);
        let summary = PushSummary {
            host: "web1".into(),
            snapshot: "20261205T020000Z-0001".into(),
            store: "s3://b/prod".into(),
            sources: vec![SourceSummary {
                source: "postgres/shop".into(),
                plain_bytes: 10,
                stored_bytes: 5,
                seconds: 1.0,
                warnings: Vec::new(),
            }],
            plain_bytes: 10,
            stored_bytes: 5,
            seconds: 1.0,
            peak_rss_bytes: 0,
            warnings: Vec::new(),
        };
        let until = finished + time::Duration::days(10);
        let run = Run {
            committed: Some(&summary),
            finished,
            locked_until: Some(until),
        };
        record(&path, "web1", &run).expect("record");
        let lock = |p: &Path| {
            Metrics::load(p)
                .expect("load")
                .get(LOCK_UNTIL)
                .and_then(|f| f.get(&[("host", "web1")]))
        };
        assert_eq!(lock(&path), Some(timestamp(until)));
        let failed = Run {
            committed: None,
            finished: finished + time::Duration::days(1),
            locked_until: Some(until + time::Duration::days(1)),
        };
        record(&path, "web1", &failed).expect("record");
        assert_eq!(
            lock(&path),
            Some(timestamp(until)),
            "a failed push locked nothing new"
        );
    }
}
