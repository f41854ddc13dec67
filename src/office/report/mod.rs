//! `offsite report`: the verify records rendered for machines (`report.json`, shaped by
//! `schemas/report.schema.json`) and for people (`report.md` for a ticket or an email, `report.html`
//! as one self-contained page).
//!
//! The report only reads what verify and pull recorded; it needs no key and touches no store, so it
//! can be rendered again at any time, anywhere the offsite directory is readable.

pub mod build;
mod changes;
pub mod fmt;
mod html;
mod html_host;
mod markdown;
pub mod model;
mod svg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use time::OffsetDateTime;

use crate::office::record::{load_all, write_atomic, PullRecord};
pub use model::Report;

/// Verification runs kept per host in the history.
pub const HISTORY: usize = 30;
/// A database or table that lost more than this share (percent) since the previous snapshot.
pub const SHRINK_PERCENT: u64 = 30;

/// Reads the records under `offsite_dir` and builds the report for `hosts` as of `now`.
pub fn load(
    offsite_dir: &Path,
    hosts: &[String],
    max_age: Duration,
    now: OffsetDateTime,
) -> Result<Report> {
    let mut records = BTreeMap::new();
    for h in hosts {
        records.insert(h.clone(), load_all(offsite_dir, Some(h))?);
    }
    let pull = PullRecord::load_latest(offsite_dir)?;
    let scrub = crate::office::scrub::ScrubRun::load_latest(offsite_dir)?;
    build::build(&build::Inputs {
        hosts,
        records: &records,
        pull: pull.as_ref(),
        scrub: scrub.as_ref(),
        max_age,
        now,
    })
}

/// Adds warnings about keys (the office's decryption keys, under host `office`, and each host's
/// signing certificates) that expired or expire within 30 days of `now`. They change no verdict.
pub fn add_key_warnings(
    r: &mut Report,
    keys: &[crate::crypto::expiry::KeyExpiry],
    now: std::time::SystemTime,
) {
    use crate::crypto::expiry::{warned, KeyRole};
    for (k, message) in warned(keys, now) {
        let host = match &k.role {
            KeyRole::HostCert(h) => h.clone(),
            _ => "office".to_string(),
        };
        r.warnings.push(model::Warning {
            kind: model::WarningKind::KeyExpiry,
            host,
            database: None,
            table: None,
            message,
        });
    }
    r.summary.warnings = r.warnings.len();
}

pub struct Written {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub html: PathBuf,
}

/// Writes `report.json`, `report.md` and `report.html` into `dir`, each atomically: a mail or web
/// server picking one up mid-run sees last night's file or tonight's, never half of one.
pub fn write(report: &Report, dir: &Path) -> Result<Written> {
    let w = Written {
        json: dir.join("report.json"),
        markdown: dir.join("report.md"),
        html: dir.join("report.html"),
    };
    let mut json = serde_json::to_vec_pretty(report)?;
    json.push(b'\n');
    write_atomic(&w.json, &json)?;
    write_atomic(&w.markdown, markdown::render(report).as_bytes())?;
    write_atomic(&w.html, html::render(report).as_bytes())?;
    Ok(w)
}

/// Hosts as people should read them: failing ones first, otherwise in config order. Each comes
/// with its index in `r.hosts`, which names its section in the HTML.
pub fn display_order(r: &Report) -> Vec<(usize, &model::HostReport)> {
    let mut v: Vec<_> = r.hosts.iter().enumerate().collect();
    v.sort_by_key(|(i, h)| (h.ok, *i));
    v
}

/// One line for a terminal or a log: `2 of 3 hosts verified, 1 failing, 4 warnings`.
pub fn headline(r: &Report) -> String {
    let s = &r.summary;
    let hosts = if s.hosts == 1 { "host" } else { "hosts" };
    let warnings = match s.warnings {
        0 => String::new(),
        1 => ", 1 warning".into(),
        n => format!(", {n} warnings"),
    };
    if s.failing == 0 {
        format!("all {} {hosts} verified{warnings}", s.hosts)
    } else {
        format!("{} of {} {hosts} failing{warnings}", s.failing, s.hosts)
    }
}
