//! push against its own clock, through the real binary: one run with the clock 1000 days ahead,
//! then normal runs (the next tree run is full, saying why, and the chain after it restores
//! exactly), and a clock 10 minutes off the S3 server's (a warning, exit 3, and the store's clock in
//! the manifest). The clock is moved with libfaketime, by Debian's `faketime` around the binary.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::cli::{Run, Setup};
use crate::common::s3::{endpoint, TestBucket, ACCESS_KEY, SECRET_KEY};
use crate::common::tree::{assert_same, describe};
use anyhow::Result;
use offsite::crypto::{load_certs, DecryptionKeys};
use offsite::snapshot::list::{find, load_manifest};
use offsite::snapshot::manifest::{TreeEntry, TreeRun};
use offsite::snapshot::{Manifest, SnapshotId};
use offsite::store::local::LocalStore;
use offsite::store::Store;
use time::OffsetDateTime;

const CLOCK_WARNING: &str = "store clock: this host's clock is ";

/// `faketime` must be there (scripts/services installs it): without it this test proves nothing.
fn check_faketime() {
    let ok = Command::new("faketime")
        .args(["-f", "+1d", "true"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "faketime is not installed (Debian package faketime; scripts/services installs it)"
    );
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, data).expect("write");
}

/// Files must have changed more than a second before a run for the next run to trust its read of
/// them (the racy-file rule).
fn settle() {
    std::thread::sleep(Duration::from_millis(1100));
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// `--json push`, with the clock moved by `faketime -f OFFSET` when given; its summary.
fn push(s: &Setup, faketime: Option<&str>, code: i32) -> serde_json::Value {
    let args = ["--json", "push"];
    let run = match faketime {
        Some(offset) => s.offsite_under(&["faketime", "-f", offset], &args),
        None => s.offsite(&args),
    };
    json(&run.expect(code))
}

fn id_of(summary: &serde_json::Value) -> String {
    summary["snapshot"]
        .as_str()
        .unwrap_or_else(|| panic!("no snapshot id in {summary}"))
        .to_string()
}

/// Snapshot `id`'s manifest, signature checked, read with the office key.
fn manifest(s: &Setup, store: &dyn Store, id: &str) -> Result<Manifest> {
    let keys = DecryptionKeys::new(load_certs(&s.path("keys/office.secret.asc"))?)?;
    let signers = load_certs(&s.path(&format!("keys/{}.cert.asc", s.host)))?;
    let snap = find(store, &s.host, id)?;
    load_manifest(store, &snap, &keys, &signers)
}

fn local_store(s: &Setup) -> LocalStore {
    LocalStore::new(s.path("store")).expect("local store")
}

/// Tree `www` of snapshot `id` in the local store, as its manifest records it.
///
/// Read from the manifest rather than `snapshots --json`: that lists every snapshot, and the one
/// pushed 1000 days ahead carries a signature made in the future, which the office refuses as
/// invalid (that snapshot is the office side's business, not this test's).
fn tree_run(s: &Setup, id: &str) -> TreeEntry {
    let m = manifest(s, &local_store(s), id).expect("manifest");
    m.tree("www")
        .unwrap_or_else(|| panic!("no tree www in {id}"))
        .clone()
}

fn restore_exactly(s: &Setup, id: &str, tree: &std::collections::BTreeMap<Vec<u8>, String>) {
    let out = tempfile::tempdir().expect("tempdir");
    let to = out.path().join("www");
    let to_text = to.to_str().expect("utf-8 temp path");
    s.offsite(&[
        "restore",
        "--host",
        &s.host,
        "--snapshot",
        id,
        "--tree",
        "www",
        "--to",
        to_text,
    ])
    .expect(0);
    assert_same(tree, &describe(&to), &format!("restore of {id}"));
}

#[test]
fn after_a_run_from_the_future_the_next_run_is_full_and_the_chain_restores() {
    check_faketime();
    let s = Setup::new("clock-local");
    let src = s.path("src");
    write(&src, "a.txt", b"alpha\n");
    write(&src, "d/b.txt", b"bravo\n");
    write(&src, "big.bin", &[7u8; 300_000]);
    s.config(&format!(
        "trees: [{{ name: www, path: '{}' }}]",
        src.display()
    ));
    settle();

    // One run with this host's clock 1000 days ahead: committed, and dated then.
    let future = id_of(&push(&s, Some("+1000d"), 0));
    let dated = future
        .parse::<SnapshotId>()
        .and_then(|id| id.time())
        .expect("dated id");
    assert!(
        dated > OffsetDateTime::now_utc() + time::Duration::days(999),
        "{future} was taken under faketime +1000d"
    );

    // The clock is right again: the parent is in the future, so the run is full, and says why.
    write(&src, "a.txt", b"alpha, two\n");
    settle();
    let second_tree = describe(&src);
    let quiet = s.offsite(&["--quiet", "--json", "push"]).expect(0);
    let second = id_of(&json(&quiet));
    // Even under --quiet (cron), the operator hears of it.
    assert!(
        quiet.stderr.contains(&format!(
            "tree www: parent snapshot {future} is in the future"
        )) && quiet.stderr.contains("this run is a full backup"),
        "{}",
        quiet.stderr
    );
    let run = tree_run(&s, &second);
    assert_eq!(run.run, TreeRun::Full, "{run:?}");
    let reason = run.full_reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with(&format!("parent snapshot {future} is in the future ("))
            && reason.ends_with("check this host's clock"),
        "{run:?}"
    );

    // The next run builds on that full, not on the future one.
    write(&src, "d/c.txt", b"charlie\n");
    settle();
    let third_tree = describe(&src);
    let third = id_of(&push(&s, None, 0));
    let run = tree_run(&s, &third);
    assert_eq!(run.run, TreeRun::Incremental, "{run:?}");
    assert_eq!(run.parent.as_deref(), Some(second.as_str()), "{run:?}");
    assert_eq!(run.depends_on, std::slice::from_ref(&second), "{run:?}");
    assert_eq!(run.new_files, 1, "only d/c.txt is read again: {run:?}");

    // Both restore exactly, by id.
    restore_exactly(&s, &second, &second_tree);
    restore_exactly(&s, &third, &third_tree);

    // A local directory has no clock of its own: nothing recorded.
    let m = manifest(&s, &local_store(&s), &third).expect("manifest");
    assert_eq!(m.store_clock, None);

    // The office side: latest is the third run, never the future one, which is quarantined.
    let out = tempfile::tempdir().expect("tempdir");
    let latest = out.path().join("www");
    s.offsite(&["restore", "--tree", "www", "--to", latest.to_str().unwrap()])
        .expect(0);
    assert_same(&third_tree, &describe(&latest), "restore of latest");
    let listing = s.offsite(&["snapshots"]).expect(1);
    let row = listing
        .stdout
        .lines()
        .find(|l| l.contains(&future))
        .unwrap_or_else(|| panic!("{future} not listed:\n{}", listing.stdout));
    assert!(row.contains("QUARANTINED"), "{row}");
    let office = s.write(
        "office.yaml",
        &format!(
            "host: office\nstore: {{ local: store }}\noffice:\n  offsite_dir: offsite\n  decryption_key: keys/office.secret.asc\n  hosts: {{ {h}: keys/{h}.cert.asc }}\n  retention: {{ keep_last: 1 }}\n",
            h = s.host
        ),
    );
    // exit 1: the future snapshot is an alarm until a person deletes it.
    s.offsite_with(&office, &["office", "--no-refresh"], &[])
        .expect(1);
    let record: serde_json::Value = serde_json::from_slice(
        &fs::read(s.path(&format!("offsite/reports/verify/{}/{third}.json", s.host)))
            .expect("verify record of the third run"),
    )
    .expect("record");
    assert_eq!(record["ok"], true, "{record}");
    // keep_last 1 keeps the third, the second because the third needs it, and the future one as
    // quarantined evidence: nothing is lost.
    let left: Vec<String> = s.local_snapshots().into_iter().map(|(id, _)| id).collect();
    for id in [&future, &second, &third] {
        assert!(left.contains(id), "{id} was deleted: {left:?}");
    }
}

#[test]
fn a_clock_off_the_s3_servers_is_a_warning_and_the_manifest_records_the_stores_clock() {
    check_faketime();
    let bucket = TestBucket::new("clock");
    let s = Setup::new("clock-s3");
    let src = s.path("src");
    write(&src, "a.txt", b"alpha\n");
    s.config_with_store(
        &format!(
            "store:\n  s3: {{ bucket: {}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: '{ACCESS_KEY}', secret_access_key: '{SECRET_KEY}' }}",
            bucket.name,
            endpoint()
        ),
        &format!("trees: [{{ name: www, path: '{}' }}]", src.display()),
    );
    settle();
    let store = bucket.store_with(|c| c.prefix = "prod".into());

    // Ten minutes ahead of the store: committed, with a warning naming the offset (exit 3).
    let summary = push(&s, Some("+10m"), 3);
    let warnings: Vec<&str> = summary["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    let warning = warnings
        .iter()
        .find(|w| w.starts_with(CLOCK_WARNING))
        .unwrap_or_else(|| panic!("no clock warning in {warnings:?}"));
    let secs: i64 = warning[CLOCK_WARNING.len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {warning:?}"));
    assert!((590..=610).contains(&secs), "{warning}");
    assert!(
        warning.contains(" s ahead of the store's (s3://"),
        "{warning}"
    );
    let m = manifest(&s, &store, &id_of(&summary)).expect("manifest");
    assert!(m.warnings.iter().any(|w| w == warning), "{:?}", m.warnings);
    let clock = m.store_clock.expect("the store's clock in the manifest");
    assert!((590..=610).contains(&clock.offset_seconds), "{clock:?}");

    // The right clock: no warning, and the store's clock is recorded, about 0 off.
    let summary = push(&s, None, 0);
    let m = manifest(&s, &store, &id_of(&summary)).expect("manifest");
    assert_eq!(m.version, offsite::snapshot::manifest::VERSION);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let clock = m.store_clock.expect("the store's clock in the manifest");
    assert!(clock.offset_seconds.abs() <= 2, "{clock:?}");
    let server = OffsetDateTime::parse(
        &clock.server_date,
        &time::format_description::well_known::Rfc3339,
    )
    .expect("server_date is RFC 3339");
    let off = OffsetDateTime::now_utc() - server;
    assert!(off.abs() < time::Duration::minutes(1), "{clock:?}");
    // That run's parent was dated ten minutes ahead: a full run.
    let reason = m.trees[0].full_reason.as_deref().unwrap_or_default();
    assert!(reason.contains("is in the future"), "{:?}", m.trees[0]);
}
