use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::{reading_judge, reading_store, runtime, Cli, EXIT_FAILED};
use offsite::config::human;
use offsite::keyring::read_keys;
use offsite::snapshot::list::{list, list_with_unfinished, load_manifest, writes_of, SnapshotInfo};
use offsite::snapshot::manifest::TreeRun;

#[derive(clap::Args)]
pub struct Args {
    /// Only this host's snapshots.
    #[arg(long)]
    pub host: Option<String>,
    /// Office secret key: with it, manifests are opened to show sources and check signatures
    /// (default: office.decryption_key from the config, when set).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Certificate of the host whose signature to check (default: office.hosts[host]).
    #[arg(long, value_name = "FILE")]
    pub signer: Option<PathBuf>,
    /// Also list every unfinished write (a local store's temporary file, an S3 multipart upload)
    /// with its key, age and size: what a killed push left, which the office's prune removes
    /// once older than office.abandon_after.
    #[arg(long)]
    pub all: bool,
}

#[derive(Serialize)]
struct Row {
    #[serde(flatten)]
    info: SnapshotInfo,
    /// `valid`, `INVALID: why`, or absent when no office key was available.
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sources: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    /// The trusted time: when the store received the manifest (or what the office recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    received_at: Option<String>,
    /// Per file tree: full or incremental, and on what.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    trees: Vec<TreeRow>,
    /// Incomplete: hours since the store last saw it written to.
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_hours: Option<f64>,
    /// The manifest's Object Lock retain-until (a store with `object_lock` configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    locked_until: Option<String>,
    /// With `--all`: its unfinished writes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unfinished: Vec<WriteRow>,
}

#[derive(Serialize)]
struct WriteRow {
    key: String,
    kind: &'static str,
    /// The temporary file's name or the multipart upload's id.
    handle: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_hours: Option<f64>,
}

#[derive(Serialize)]
struct TreeRow {
    name: String,
    run: TreeRun,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    depends_on: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    full_reason: Option<String>,
    files: u64,
    new_files: u64,
    new_bytes: u64,
}

impl TreeRow {
    /// `tree/www (full)`, `tree/www (incremental on 20261122T020000Z-1a2b, 12 new files)`.
    fn describe(&self) -> String {
        match (&self.run, &self.parent) {
            (TreeRun::Incremental, Some(p)) => format!(
                "tree/{} (incremental on {p}, {} new of {} files)",
                self.name, self.new_files, self.files
            ),
            _ => format!("tree/{} (full)", self.name),
        }
    }
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let cfg = cli.maybe_config()?;
    let rt = runtime()?;
    let store = reading_store(cli, cfg.as_ref(), rt.handle())?;
    let (mut snaps, writes) = match list_with_unfinished(store.as_ref(), a.host.as_deref()) {
        Ok(found) => found,
        // A push-only credential may not list multipart uploads: the objects still tell most.
        Err(e) => {
            eprintln!("warning: {e:#}; unfinished writes are not shown");
            (list(store.as_ref(), a.host.as_deref())?, Vec::new())
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let hours = |t: Option<time::OffsetDateTime>| t.map(|t| (now - t).as_seconds_f64() / 3600.0);
    reading_judge(cli, cfg.as_ref())?.assess(&mut snaps);
    let can_open = a.key.is_some()
        || cfg
            .as_ref()
            .and_then(|c| c.office.as_ref())
            .is_some_and(|o| !o.decryption_key.is_empty());
    let mut rows = Vec::new();
    for s in snaps {
        let mut row = Row {
            info: s.clone(),
            signature: None,
            sources: Vec::new(),
            finished_at: None,
            received_at: s.trusted.and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
            trees: Vec::new(),
            idle_hours: (!s.complete).then(|| hours(s.last_write)).flatten(),
            locked_until: None,
            unfinished: if a.all {
                writes_of(&writes, &s.host, &s.id)
                    .map(|w| WriteRow {
                        key: w.key.clone(),
                        kind: store.unfinished_kind(),
                        handle: w.handle.clone(),
                        bytes: w.size,
                        idle_hours: hours(w.modified),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        };
        if s.complete {
            let manifest = format!("{}{}", s.dir(), offsite::snapshot::MANIFEST_NAME);
            match store.lock_until(&manifest) {
                Ok(until) => {
                    row.locked_until = until.and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                }
                Err(e) => eprintln!("warning: {e:#}"),
            }
        }
        if can_open && s.complete {
            match read_keys(cfg.as_ref(), &s.host, a.key.as_deref(), a.signer.as_deref())
                .and_then(|k| load_manifest(store.as_ref(), &s, &k.decryption, &k.signers))
            {
                Ok(m) => {
                    row.signature = Some("valid".into());
                    row.trees = m
                        .trees
                        .iter()
                        .map(|t| TreeRow {
                            name: t.name.clone(),
                            run: t.run,
                            parent: t.parent.clone(),
                            depends_on: t.depends_on.clone(),
                            full_reason: t.full_reason.clone(),
                            files: t.files,
                            new_files: t.new_files,
                            new_bytes: t.new_bytes,
                        })
                        .collect();
                    row.sources = m
                        .databases
                        .iter()
                        .map(|d| d.source.clone())
                        .chain(row.trees.iter().map(TreeRow::describe))
                        .collect();
                    row.finished_at = Some(m.finished_at);
                }
                Err(e) => row.signature = Some(format!("INVALID: {e:#}")),
            }
        }
        rows.push(row);
    }
    // A snapshot whose signature does not check out is not the host's, and a quarantined one
    // claims a time the store contradicts: say so in the exit code.
    let code = if rows.iter().any(|r| {
        r.signature.as_deref().is_some_and(|s| s != "valid") || r.info.quarantine.is_some()
    }) {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(code);
    }
    if rows.is_empty() {
        println!("no snapshots in {}", store.location());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<14} {:<22} {:<15} {:>10} {:>8}  {:<10} SOURCES",
        "HOST", "SNAPSHOT", "STATUS", "SIZE", "OBJECTS", "SIGNATURE"
    );
    for r in &rows {
        let status = match (r.info.complete, &r.info.quarantine) {
            (true, Some(_)) => "QUARANTINED".to_string(),
            (true, None) => "complete".to_string(),
            (false, _) => match r.idle_hours {
                Some(h) => format!("incomplete {}", idle(h)),
                None => "incomplete".to_string(),
            },
        };
        println!(
            "{:<14} {:<22} {:<15} {:>10} {:>8}  {:<10} {}",
            r.info.host,
            r.info.id,
            status,
            human(r.info.stored_bytes + r.info.unfinished_bytes),
            r.info.objects,
            r.signature
                .as_deref()
                .map(|s| if s == "valid" { "valid" } else { "INVALID" })
                .unwrap_or("-"),
            r.sources.join(", ")
        );
    }
    for r in rows.iter().filter(|r| r.locked_until.is_some()) {
        println!(
            "{}/{}: locked until {}",
            r.info.host,
            r.info.id,
            r.locked_until.as_deref().unwrap_or_default()
        );
    }
    let unfinished: usize = rows.iter().map(|r| r.info.unfinished_writes).sum();
    if a.all {
        for r in &rows {
            for w in &r.unfinished {
                println!(
                    "  unfinished {} {} of {}: {}, idle {}",
                    w.kind,
                    w.handle,
                    w.key,
                    w.bytes.map(human).unwrap_or_else(|| "size unknown".into()),
                    w.idle_hours.map(idle).unwrap_or_else(|| "?".into()),
                );
            }
        }
    } else if unfinished > 0 {
        println!(
            "{unfinished} unfinished write(s) left by pushes that did not finish (--all lists them; the office's prune removes them after office.abandon_after)"
        );
    }
    for r in &rows {
        if let Some(q) = &r.info.quarantine {
            eprintln!("{}/{}: QUARANTINED: {q}", r.info.host, r.info.id);
        }
    }
    for r in rows
        .iter()
        .filter(|r| r.signature.as_deref().is_some_and(|s| s != "valid"))
    {
        eprintln!(
            "{}/{}: {}",
            r.info.host,
            r.info.id,
            r.signature.as_deref().unwrap_or_default()
        );
    }
    Ok(code)
}

/// `3h`, `2d 4h`, `25m`: how long something has been idle.
fn idle(hours: f64) -> String {
    let minutes = (hours * 60.0).max(0.0).round() as u64;
    match minutes {
        m if m < 60 => format!("{m}m"),
        m if m < 48 * 60 => format!("{}h", m / 60),
        m => format!("{}d {}h", m / (24 * 60), m / 60 % 24),
    }
}
