//! `push`: dump every configured source into a new snapshot and commit it with the manifest.
//!
//! Order matters. Pre-flight (config, keys, servers, dump tool versions) runs before anything is
//! written, so a bad setup writes nothing. Then sources run concurrently, each one committing its own
//! objects. Only when every source has finished cleanly is the signed manifest written: the one write
//! that makes the snapshot exist. A failure leaves objects without a manifest, which every reader treats
//! as an incomplete snapshot and office-side retention removes.

use std::os::unix::fs::DirBuilderExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::{human, Config};
use crate::keyring::push_keys;
use crate::pipeline::Pipeline;
use crate::progress::Progress;
use crate::snapshot::manifest::{
    self, DatabaseEntry, Manifest, ObjectEntry, StoreClock, TreeEntry,
};
use crate::snapshot::{SnapshotId, MANIFEST_NAME};
use crate::source::{mysql, postgres, tree};
use crate::store::{ClockReading, Store};

/// How far this host's clock may be from the store's before push warns (exit 3). A host kept by
/// NTP is within a second; the `Date` header's resolution and the network add about one more.
/// Five minutes flags a clock that is really wrong, well before S3 itself refuses requests signed
/// more than 15 minutes off.
pub const MAX_CLOCK_OFFSET_SECS: u64 = 300;

/// One unit of work.
enum Job {
    Postgres(postgres::PgJob),
    Mysql(mysql::MysqlJob),
    Tree(Box<tree::TreeSpec>),
}

impl Job {
    fn name(&self) -> String {
        match self {
            Job::Postgres(j) => format!("postgres/{}", j.database),
            Job::Mysql(j) => format!("mysql/{}", j.database),
            Job::Tree(t) => format!("tree/{}", t.name),
        }
    }
}

/// What one source produced.
#[derive(Default)]
struct Produced {
    objects: Vec<ObjectEntry>,
    database: Option<DatabaseEntry>,
    tree: Option<TreeEntry>,
    /// A tree's state for its next run, written once the snapshot is committed.
    tree_state: Option<tree::state::Pending>,
}

/// How this push runs.
pub struct PushOptions {
    /// `--full`: every tree starts a new chain.
    pub full: bool,
    /// The clock for tree decisions: `full_every`, a parent in the future (the `OFFSITE_NOW` of
    /// tests; the snapshot id keeps real time).
    pub now: OffsetDateTime,
    /// `--wait`: when another push of this host runs, wait for it instead of failing.
    pub wait: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceSummary {
    pub source: String,
    pub plain_bytes: u64,
    pub stored_bytes: u64,
    pub seconds: f64,
    pub warnings: Vec<String>,
}

/// The result of a committed push.
#[derive(Debug, Clone, Serialize)]
pub struct PushSummary {
    pub host: String,
    pub snapshot: String,
    pub store: String,
    pub sources: Vec<SourceSummary>,
    pub plain_bytes: u64,
    pub stored_bytes: u64,
    pub seconds: f64,
    /// Peak resident memory of this process (its own, not the dump tools'), for capacity planning.
    pub peak_rss_bytes: u64,
    pub warnings: Vec<String>,
}

/// The largest resident set this process has had, from getrusage(2).
pub fn peak_rss_bytes() -> u64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    (usage.ru_maxrss as u64) * 1024
}

pub fn push(
    cfg: &Config,
    store: Arc<dyn Store>,
    rt: &tokio::runtime::Handle,
    progress: &dyn Progress,
    opts: &PushOptions,
) -> Result<PushSummary> {
    // Keys first: reading them is cheap and writes nothing, and a bad setup should say so (exit 2)
    // even while another push runs. Everything after the lock may cost (servers, dumps, writes).
    let keys = push_keys(cfg)?;
    let waiting = Instant::now();
    let _lock = take_lock(cfg, opts.wait)?;
    // The run starts now, not when it began to wait (`--wait` may wait for hours): the snapshot id
    // says when its data was read, and the tree decisions' clock moves on by the wait. Otherwise
    // the push waited for, whose tree walk began after this one started waiting, would look dated
    // in this run's future: a forced full run and a false "check this host's clock".
    let opts = &PushOptions {
        full: opts.full,
        now: opts.now + waiting.elapsed(),
        wait: opts.wait,
    };
    let started = Instant::now();
    let started_at = OffsetDateTime::now_utc();
    let mut recipients = keys.encryption.fingerprints();
    recipients.sort();
    let jobs = plan(cfg, rt, store.as_ref(), &recipients, opts);
    // A signal during the pre-flight makes its questions fail; say why, not what failed.
    if let Some(sig) = crate::interrupt::received() {
        return Err(anyhow!(
            "push of {} interrupted by {sig} before anything was written",
            cfg.host
        ));
    }
    let jobs = jobs?;
    if jobs.is_empty() {
        return Err(crate::error::usage(format!(
            "{}: nothing to back up (no postgres:, mysql: or trees: sources)",
            cfg.path.display()
        )));
    }
    let id = SnapshotId::new(started_at);
    let snapshot_dir = crate::snapshot::dir(&cfg.host, id.as_str());
    let interrupted = |sig: crate::interrupt::Signal| {
        anyhow!(
            "push of {} interrupted by {sig}: nothing committed ({snapshot_dir} stays incomplete; office-side retention removes it)",
            cfg.host
        )
    };
    // A wrong bucket or credential should fail now, not after an hour of dumping.
    store.list(&snapshot_dir).with_context(|| {
        format!(
            "checking that the store {} is reachable before dumping; nothing was written",
            store.location()
        )
    })?;
    mark_needs(&jobs, store.as_ref(), &snapshot_dir).map_err(
        |e| match crate::interrupt::received() {
            Some(sig) if crate::interrupt::is_interrupted(&e) => interrupted(sig),
            _ => e,
        },
    )?;
    tracing::info!(
        "push: snapshot {} of {} sources to {}",
        id,
        jobs.len(),
        store.location()
    );
    let pipeline = Pipeline {
        store: store.clone(),
        encryption: keys.encryption.clone(),
        compression: cfg.compression,
        snapshot_dir: snapshot_dir.clone(),
    };

    let results = run_jobs(&jobs, cfg.parallel, &pipeline, progress);
    // What a signal made fail is no news; what it stopped is said once.
    if let Some(sig) = crate::interrupt::received() {
        for (job, result) in jobs.iter().zip(&results) {
            if let Some(Err(e)) = result {
                tracing::debug!("{}: {e:#}", job.name());
            }
        }
        return Err(interrupted(sig));
    }

    let mut failures = Vec::new();
    let mut produced = Vec::new();
    for (job, result) in jobs.iter().zip(results) {
        match result {
            Some(Ok(p)) => produced.push(p),
            Some(Err(e)) => failures.push(format!("{}: {e:#}", job.name())),
            None => failures.push(format!(
                "{}: not started because another source failed",
                job.name()
            )),
        }
    }
    if !failures.is_empty() {
        return Err(anyhow!(
            "push failed; no snapshot was committed ({snapshot_dir} stays incomplete, office-side retention removes it):\n  {}",
            failures.join("\n  ")
        ));
    }

    let mut m = Manifest {
        format: manifest::FORMAT.into(),
        version: manifest::VERSION,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        host: cfg.host.clone(),
        snapshot: id.to_string(),
        started_at: started_at.format(&Rfc3339)?,
        finished_at: String::new(),
        config_digest: cfg.digest(),
        signer: keys.signing.fingerprint().to_string(),
        recipients: keys.encryption.fingerprints(),
        objects: Vec::new(),
        databases: Vec::new(),
        trees: Vec::new(),
        warnings: Vec::new(),
        store_clock: None,
    };
    let mut sources = Vec::new();
    let mut states = Vec::new();
    for (job, (mut p, secs)) in jobs.iter().zip(produced) {
        states.extend(p.tree_state.take());
        let mut warnings = Vec::new();
        if let Some(db) = p.database {
            warnings.extend(db.warnings.iter().cloned());
            m.databases.push(db);
        }
        if let Some(t) = p.tree {
            warnings.extend(t.warnings.iter().cloned());
            m.trees.push(t);
        }
        m.warnings
            .extend(warnings.iter().map(|w| format!("{}: {w}", job.name())));
        sources.push(SourceSummary {
            source: job.name(),
            plain_bytes: p.objects.iter().map(|o| o.plain_size).sum(),
            stored_bytes: p.objects.iter().map(|o| o.stored_size).sum(),
            seconds: secs.as_secs_f64(),
            warnings,
        });
        m.objects.extend(p.objects);
    }
    m.finished_at = OffsetDateTime::now_utc().format(&Rfc3339)?;

    // What the incrementals point into must still be there: committing otherwise would make a
    // snapshot that cannot be restored. (The state still names the missing snapshot, so the next run
    // of that tree is full.)
    for t in &m.trees {
        for id in &t.depends_on {
            if !complete_in(store.as_ref(), &cfg.host, id)? {
                return Err(anyhow!(
                    "push failed; no snapshot was committed: snapshot {id}, which the incremental of tree {} builds on, is no longer complete in {} (deleted while this push ran?). The next run of {} is a full backup.",
                    t.name,
                    store.location(),
                    t.name
                ));
            }
        }
    }

    // The store's clock, from its latest response (a local directory has none). Snapshot ids and
    // times are this host's clock; the office needs to know when that was wrong, and the operator
    // needs to hear it now rather than when the snapshots sort wrongly.
    if let Some(reading) = store.clock() {
        m.store_clock = Some(StoreClock {
            server_date: reading.server.format(&Rfc3339)?,
            offset_seconds: reading.offset_seconds(),
        });
        if let Some(w) = clock_warning(&reading, &store.location()) {
            tracing::warn!("{w}");
            m.warnings.push(w);
        }
    }

    // The commit point: the manifest, signed and encrypted, written last and never overwritten.
    // A signal before the store's commit call stops it (the writer checks); one during it lets
    // it finish: the manifest exists whole or not at all, and push reports which.
    let json = serde_json::to_vec_pretty(&m)?;
    let sealed = keys.encryption.seal(&json, &keys.signing)?;
    let key = format!("{snapshot_dir}{MANIFEST_NAME}");
    let written = (|| -> Result<()> {
        crate::interrupt::check()?;
        let mut w = store.create(&key)?;
        std::io::Write::write_all(&mut w, &sealed).with_context(|| format!("writing {key}"))?;
        let _committing = crate::interrupt::Pending::new(format!(
            "the manifest {key} was being committed: the snapshot is complete or absent, never half (offsite snapshots tells which)"
        ));
        w.commit()
            .with_context(|| format!("committing the manifest {key}"))
    })();
    if let Err(e) = written {
        return Err(match crate::interrupt::received() {
            Some(sig) if crate::interrupt::is_interrupted(&e) => interrupted(sig),
            _ => e,
        });
    }
    if let Some(sig) = crate::interrupt::received() {
        tracing::warn!(
            "{sig} arrived while the manifest {key} was being committed; the commit finished: the snapshot is complete"
        );
    }

    // Only now may the next run build on this snapshot. A state that cannot be written leaves the
    // previous one, which still names a committed snapshot: the chain stays sound either way.
    let mut warnings = m.warnings.clone();
    for state in states {
        let tree = state.header.identity.tree.clone();
        if let Err(e) = state.commit() {
            tracing::warn!("tree {tree}: {e:#}");
            warnings.push(format!(
                "tree/{tree}: the snapshot is committed, but its state for the next incremental was not saved ({e:#}); the next run builds on an older snapshot or is full"
            ));
        }
    }

    Ok(PushSummary {
        host: cfg.host.clone(),
        snapshot: id.to_string(),
        store: store.location(),
        plain_bytes: sources.iter().map(|s| s.plain_bytes).sum(),
        stored_bytes: m.stored_bytes() + sealed.len() as u64,
        sources,
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_bytes: peak_rss_bytes(),
        warnings,
    })
}

/// The warning for a host clock more than [`MAX_CLOCK_OFFSET_SECS`] off the store's, if it is.
fn clock_warning(reading: &ClockReading, location: &str) -> Option<String> {
    let offset = reading.offset_seconds();
    if offset.unsigned_abs() <= MAX_CLOCK_OFFSET_SECS {
        return None;
    }
    let n = offset.unsigned_abs();
    let side = if offset > 0 { "ahead of" } else { "behind" };
    let at = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_else(|_| t.to_string());
    Some(format!(
        "store clock: this host's clock is {n} s {side} the store's ({location} said {} when this host said {}); snapshot ids and times come from this host's clock: check its time sync (NTP)",
        at(reading.server),
        at(reading.local.replace_nanosecond(0).unwrap_or(reading.local))
    ))
}

/// Whether snapshot `id` of `host` is committed (has its manifest) in the store.
fn complete_in(store: &dyn Store, host: &str, id: &str) -> Result<bool> {
    let key = format!("{}{MANIFEST_NAME}", crate::snapshot::dir(host, id));
    Ok(store
        .list(&key)
        .with_context(|| format!("looking for {key} in {}", store.location()))?
        .iter()
        .any(|o| o.key == key))
}

/// Tells office-side prune, while this push runs, which older snapshots its incrementals build on:
/// an empty object `needs/<id>` per snapshot. prune keeps what a young incomplete snapshot needs,
/// so a prune running beside a long push cannot delete a parent under it. (The manifest's
/// `depends_on` takes over once the snapshot is committed.)
fn mark_needs(jobs: &[Job], store: &dyn Store, snapshot_dir: &str) -> Result<()> {
    let mut needs = std::collections::BTreeSet::new();
    for job in jobs {
        if let Job::Tree(t) = job {
            if let tree::state::Start::Incremental { header, .. } = &t.start {
                needs.insert(header.snapshot.clone());
                needs.extend(header.depends_on.iter().cloned());
            }
        }
    }
    for id in needs {
        let key = format!("{snapshot_dir}needs/{id}");
        store
            .create(&key)
            .and_then(|w| w.commit())
            .with_context(|| format!("writing {key}"))?;
    }
    Ok(())
}

/// One push per host at a time: `<state_dir>/<host>.push.lock`, held until push returns (or dies).
///
/// What two pushes of one host would share, and break, is the host's tree states in
/// `state_dir/<host>/` (both would build on the same parent, and the last to finish would overwrite
/// the other's state) and its snapshots in the store (a flood, twice the load on the servers). The
/// state is keyed by state_dir and host, so that is the lock's key too. The config path is
/// deliberately not part of it: two config files for one host and state_dir (a copy, a symlink, a
/// cron line and a manual run with `-c`) share those states, so they must exclude each other.
/// Pushes of different hosts, or with different state_dirs, share nothing local and may run
/// together; snapshot ids never collide in the store.
fn take_lock(cfg: &Config, wait: bool) -> Result<crate::lock::Held> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cfg.state_dir)
        .map_err(|e| {
            crate::error::usage(format!(
                "cannot create the state directory {} (for the push lock): {e} (set state_dir: in the config to a directory this user may write)",
                cfg.state_dir.display()
            ))
        })?;
    let path = cfg.state_dir.join(format!("{}.push.lock", cfg.host));
    // Not being able to open the lock file is a setup problem (exit 2, nothing written).
    let taken = crate::lock::try_lock(&path).map_err(|e| {
        crate::error::usage(format!(
            "{e:#}; set state_dir: in the config to a directory this user may write"
        ))
    })?;
    if let Some(held) = taken {
        return Ok(held);
    }
    let holder = crate::lock::holder(&path);
    if !wait {
        // Exit 1, not 2: nothing is wrong with the setup, and this run committed nothing.
        return Err(anyhow!(
            "another push of {} is running ({holder}); it holds {}: let it finish, or run push --wait to start after it",
            cfg.host,
            path.display()
        ));
    }
    tracing::info!(
        "push: waiting for another push of {} to finish ({holder}; it holds {})",
        cfg.host,
        path.display()
    );
    let waited = Instant::now();
    let held = crate::lock::lock_waiting(&path)?;
    tracing::info!(
        "push: the other push of {} finished after {:.1}s; starting",
        cfg.host,
        waited.elapsed().as_secs_f64()
    );
    Ok(held)
}

/// Pre-flight: asks every server what to dump and checks the dump tools, and decides full or
/// incremental for each tree, before anything is written.
fn plan(
    cfg: &Config,
    rt: &tokio::runtime::Handle,
    store: &dyn Store,
    recipients: &[String],
    opts: &PushOptions,
) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    for server in &cfg.postgres {
        jobs.extend(
            rt.block_on(postgres::plan(server))?
                .into_iter()
                .map(Job::Postgres),
        );
    }
    for server in &cfg.mysql {
        jobs.extend(
            rt.block_on(mysql::plan(server))?
                .into_iter()
                .map(Job::Mysql),
        );
    }
    if !cfg.trees.is_empty() {
        tree::state::prepare(&cfg.state_dir, &cfg.host)?;
    }
    let exists = |id: &str| complete_in(store, &cfg.host, id);
    for t in &cfg.trees {
        if !t.path.is_dir() {
            return Err(crate::error::usage(format!(
                "trees[{}]: {} is not a directory",
                t.name,
                t.path.display()
            )));
        }
        let identity = tree::state::Identity {
            host: cfg.host.clone(),
            tree: t.name.clone(),
            root: t.path.to_string_lossy().into_owned(),
            store: store.location(),
            recipients: recipients.to_vec(),
        };
        let state_file = tree::state::state_file(&cfg.state_dir, &cfg.host, &t.name);
        let start = tree::state::decide(
            &state_file,
            &identity,
            &tree::state::Policy {
                force_full: opts.full,
                full_every: t.full_every,
                max_chain: t.max_chain,
                now: opts.now,
                exists: &exists,
            },
        )?;
        match &start {
            tree::state::Start::Full { reason } => {
                tracing::info!("tree {}: full backup ({reason})", t.name)
            }
            tree::state::Start::Incremental { header, .. } => tracing::info!(
                "tree {}: incremental on {} ({} since the full {})",
                t.name,
                header.snapshot,
                header.chain + 1,
                header.full_snapshot
            ),
        }
        jobs.push(Job::Tree(Box::new(tree::TreeSpec {
            name: t.name.clone(),
            path: t.path.clone(),
            exclude: t.exclude.clone(),
            volume_size: t.volume_size,
            start,
            identity,
            state_file,
        })));
    }
    Ok(jobs)
}

/// A job's outcome: `None` when it never started.
type JobResult = Option<Result<(Produced, Duration)>>;

/// Runs jobs on `parallel` worker threads. After the first failure no new job starts (`None`).
fn run_jobs(
    jobs: &[Job],
    parallel: usize,
    pipeline: &Pipeline,
    progress: &dyn Progress,
) -> Vec<JobResult> {
    let next = Mutex::new(0usize);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<JobResult>> = Mutex::new(jobs.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..parallel.min(jobs.len()) {
            scope.spawn(|| loop {
                let i = {
                    let Ok(mut n) = next.lock() else { return };
                    let i = *n;
                    *n += 1;
                    i
                };
                if i >= jobs.len()
                    || failed.load(Ordering::SeqCst)
                    || crate::interrupt::received().is_some()
                {
                    return;
                }
                let job = &jobs[i];
                let started = std::time::Instant::now();
                let task = progress.start(&job.name());
                let result = run_one(job, pipeline, &|n| task.add(n));
                match &result {
                    Ok(p) => {
                        let plain: u64 = p.objects.iter().map(|o| o.plain_size).sum();
                        let stored: u64 = p.objects.iter().map(|o| o.stored_size).sum();
                        task.done(&format!(
                            "{} -> {} stored in {:.1}s",
                            human(plain),
                            human(stored),
                            started.elapsed().as_secs_f64()
                        ));
                    }
                    Err(e) => {
                        failed.store(true, Ordering::SeqCst);
                        match crate::interrupt::received() {
                            Some(sig) => task.stopped(sig),
                            None => task.failed(e),
                        }
                    }
                }
                let elapsed = started.elapsed();
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(result.map(|p| (p, elapsed)));
                }
            });
        }
    });
    // A poisoned lock still holds every result written before the panic; missing ones count as failed.
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

fn run_one(job: &Job, pipeline: &Pipeline, on_bytes: &(dyn Fn(u64) + Sync)) -> Result<Produced> {
    Ok(match job {
        Job::Postgres(j) => {
            let (object, db) = postgres::dump(j, pipeline, on_bytes)?;
            Produced {
                objects: vec![object],
                database: Some(db),
                tree: None,
                tree_state: None,
            }
        }
        Job::Mysql(j) => {
            let (object, db) = mysql::dump(j, pipeline, on_bytes)?;
            Produced {
                objects: vec![object],
                database: Some(db),
                tree: None,
                tree_state: None,
            }
        }
        Job::Tree(spec) => {
            let r = tree::backup_tree(spec, pipeline, on_bytes)?;
            Produced {
                objects: r.objects,
                database: None,
                tree: Some(r.entry),
                tree_state: Some(r.state),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_clock_more_than_five_minutes_off_is_a_warning() {
        let server = datetime!(2026-12-04 16:05:05 UTC);
        let reading = |local| ClockReading { server, local };
        let loc = "s3://b/prod";
        assert_eq!(clock_warning(&reading(server), loc), None);
        let near = server + time::Duration::seconds(299);
        assert_eq!(clock_warning(&reading(near), loc), None);
        let w = clock_warning(
            &reading(server + time::Duration::milliseconds(600_400)),
            loc,
        )
        .unwrap();
        assert!(
            w.starts_with("store clock: this host's clock is 600 s ahead of the store's (s3://b/prod said 2026-12-04T16:05:05Z when this host said 2026-12-04T16:15:05Z)"),
            "{w}"
        );
        let behind = server - time::Duration::hours(1) + time::Duration::milliseconds(400);
        let w = clock_warning(&reading(behind), loc).unwrap();
        assert!(w.contains("3600 s behind the store's"), "{w}");
    }
}
