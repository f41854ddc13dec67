use std::io::Write;
use std::sync::Mutex;

use time::macros::datetime;

use super::*;
use crate::snapshot::list::list;
use crate::store::local::LocalStore;
use crate::store::{ObjectInfo, ObjectWriter, Store, Unfinished};

const NOW: OffsetDateTime = datetime!(2026-11-23 12:00:00 UTC);

/// A snapshot the store received at the time its id claims (so trusted time = claimed time).
fn info(id: &str, complete: bool) -> SnapshotInfo {
    let t = crate::snapshot::trust::claimed(id);
    SnapshotInfo {
        host: "web1".into(),
        id: id.into(),
        complete,
        objects: 2,
        stored_bytes: 10,
        has_trees: false,
        needs: Vec::new(),
        committed: if complete { t } else { None },
        last_write: t,
        trusted: t,
        quarantine: None,
        unchecked: false,
        unfinished_writes: 0,
        unfinished_bytes: 0,
    }
}

fn keep_last(n: u32) -> Retention {
    Retention {
        keep_last: n,
        ..Default::default()
    }
}

fn kept_ids(p: &HostPlan) -> Vec<&str> {
    p.keep.iter().map(|k| k.snapshot.as_str()).collect()
}

/// `office.abandon_after`'s default.
const GRACE: time::Duration = time::Duration::hours(48);

fn deleted_ids(p: &HostPlan) -> Vec<&str> {
    p.delete.iter().map(|d| d.snapshot.as_str()).collect()
}

#[test]
fn incomplete_snapshots_have_a_grace_period() {
    let snaps = [
        info("20261120T020000Z-0001", true),
        info("20261121T110000Z-0002", false), // 49 h old
        info("20261121T130000Z-0003", false), // 47 h old
        info("20261123T110000Z-0004", false), // 1 h old
    ];
    let p = plan_host("web1", &snaps, &keep_last(5), None, NOW, GRACE);
    assert_eq!(deleted_ids(&p), vec!["20261121T110000Z-0002"]);
    assert_eq!(p.delete[0].reason, DeleteReason::Abandoned);
    assert_eq!(
        kept_ids(&p),
        vec![
            "20261123T110000Z-0004",
            "20261121T130000Z-0003",
            "20261120T020000Z-0001"
        ]
    );
    assert_eq!(p.keep[0].reasons, vec![KeepReason::InProgress]);

    // The grace is office.abandon_after: a shorter one lets the 47 h old one go too.
    let p = plan_host(
        "web1",
        &snaps,
        &keep_last(5),
        None,
        NOW,
        time::Duration::hours(24),
    );
    assert_eq!(
        deleted_ids(&p),
        vec!["20261121T130000Z-0003", "20261121T110000Z-0002"]
    );
    assert_eq!(kept_ids(&p)[0], "20261123T110000Z-0004");
}

#[test]
fn incomplete_snapshots_do_not_count_for_the_policy() {
    // keep_last 1 must keep the newest *complete* snapshot, not the young incomplete one.
    let snaps = [
        info("20261121T020000Z-0001", true),
        info("20261122T020000Z-0002", true),
        info("20261123T110000Z-0003", false),
    ];
    let p = plan_host("web1", &snaps, &keep_last(1), None, NOW, GRACE);
    assert_eq!(deleted_ids(&p), vec!["20261121T020000Z-0001"]);
    let k = p
        .keep
        .iter()
        .find(|k| k.snapshot == "20261122T020000Z-0002")
        .unwrap();
    assert_eq!(k.reasons, vec![KeepReason::Rule(Rule::KeepLast)]);
}

#[test]
fn the_newest_verified_snapshot_is_never_deleted() {
    let snaps = [
        info("20261101T020000Z-0001", true),
        info("20261102T020000Z-0002", true),
        info("20261123T020000Z-0003", true),
    ];
    let p = plan_host(
        "web1",
        &snaps,
        &keep_last(1),
        Some("20261101T020000Z-0001"),
        NOW,
        GRACE,
    );
    assert_eq!(deleted_ids(&p), vec!["20261102T020000Z-0002"]);
    let k = p
        .keep
        .iter()
        .find(|k| k.snapshot == "20261101T020000Z-0001")
        .unwrap();
    assert_eq!(k.reasons, vec![KeepReason::NewestVerified]);

    // Even if it shows up incomplete (half-deleted by hand?), it stays.
    let snaps = [
        info("20261101T020000Z-0001", false),
        info("20261123T020000Z-0003", true),
    ];
    let p = plan_host(
        "web1",
        &snaps,
        &keep_last(1),
        Some("20261101T020000Z-0001"),
        NOW,
        GRACE,
    );
    assert!(p.delete.is_empty(), "{p:?}");
}

#[test]
fn keep_within_alone_never_deletes_everything() {
    let snaps = [
        info("20261001T020000Z-0001", true),
        info("20261002T020000Z-0002", true),
        info("20261003T020000Z-0003", true),
    ];
    let ret = Retention {
        keep_within: Some(std::time::Duration::from_secs(7 * 86_400)),
        ..Default::default()
    };
    let p = plan_host("web1", &snaps, &ret, None, NOW, GRACE);
    assert_eq!(kept_ids(&p), vec!["20261003T020000Z-0003"]);
    assert_eq!(p.keep[0].reasons, vec![KeepReason::NewestComplete]);
    assert_eq!(p.delete.len(), 2);
}

#[test]
fn empty_listing_plans_nothing() {
    let p = plan_host("web1", &[], &keep_last(1), None, NOW, GRACE);
    assert!(p.keep.is_empty() && p.delete.is_empty());
}

#[test]
fn an_empty_side_is_an_alarm() {
    let full = [info("20261123T020000Z-0001", true)];
    let only_incomplete = [info("20261120T020000Z-0002", false)];
    assert!(emptiness_alarm("web1", &[("s3", &full), ("offsite", &full)], None).is_none());
    let a = emptiness_alarm("web1", &[("s3", &[]), ("offsite", &full)], None).unwrap();
    assert!(
        a.starts_with("s3 lists no complete snapshot of web1"),
        "{a}"
    );
    assert!(a.contains("offsite has 1 complete"), "{a}");
    // Objects without a manifest do not make a store non-empty.
    assert!(emptiness_alarm(
        "web1",
        &[("s3", &only_incomplete), ("offsite", &full)],
        None
    )
    .is_some());
    // Both empty, but verify passed: something emptied both.
    let a = emptiness_alarm(
        "web1",
        &[("s3", &[]), ("offsite", &[])],
        Some("20261123T020000Z-0001"),
    )
    .unwrap();
    assert!(a.contains("verify passed"), "{a}");
    // A host that never pushed: nothing to say.
    assert!(emptiness_alarm("web1", &[("s3", &[]), ("offsite", &[])], None).is_none());
    // One store pruned alone, empty, no records: fine.
    assert!(emptiness_alarm("web1", &[("offsite", &only_incomplete)], None).is_none());
}

/// A local store that records deletes and can be told to fail.
struct Recorder {
    inner: LocalStore,
    deletes: Mutex<Vec<String>>,
    fail_list: bool,
    fail_delete_after: Option<usize>,
}

impl Recorder {
    fn new(dir: &Path) -> Self {
        Self {
            inner: LocalStore::new(dir).unwrap(),
            deletes: Mutex::new(Vec::new()),
            fail_list: false,
            fail_delete_after: None,
        }
    }
}

impl Store for Recorder {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        self.inner.create(key)
    }
    fn open(&self, key: &str) -> Result<Box<dyn std::io::Read + Send>> {
        self.inner.open(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        if self.fail_list {
            anyhow::bail!("simulated listing failure");
        }
        self.inner.list(prefix)
    }
    fn unfinished(&self, prefix: &str) -> Result<Vec<Unfinished>> {
        self.inner.unfinished(prefix)
    }
}

impl AdminStore for Recorder {
    fn delete(&self, key: &str) -> Result<()> {
        let mut d = self.deletes.lock().unwrap();
        if self.fail_delete_after.is_some_and(|n| d.len() >= n) {
            anyhow::bail!("simulated delete failure");
        }
        d.push(key.to_string());
        self.inner.delete(key)
    }
    fn discard(&self, write: &Unfinished) -> Result<()> {
        self.deletes.lock().unwrap().push(write.handle.clone());
        self.inner.discard(write)
    }
    fn as_store(&self) -> &dyn Store {
        self
    }
}

fn put(store: &dyn Store, key: &str) {
    let mut w = store.create(key).unwrap();
    w.write_all(b"x").unwrap();
    w.commit().unwrap();
}

fn snapshot(store: &dyn Store, id: &str, complete: bool) {
    put(store, &format!("web1/{id}/db/postgres/a.sql.zst.pgp"));
    put(store, &format!("web1/{id}/files/www/vol-00001.tar.zst.pgp"));
    if complete {
        put(store, &format!("web1/{id}/{MANIFEST_NAME}"));
    }
}

fn target(name: &str, store: Arc<Recorder>, n: u32) -> Target {
    Target {
        name: name.into(),
        store,
        retention: keep_last(n),
        retention_key: "office.retention",
        // The files were written now, under older ids: judged as a copy, their ids stand.
        origin: Origin::Copy,
    }
}

/// Snapshots without file trees need nothing older.
struct NoChains;

impl Dependencies for NoChains {
    fn of(&self, _: &dyn Store, _: &SnapshotInfo) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// What pull would have recorded for every id these tests use: seen, valid, at its claimed time.
fn known() -> &'static BTreeMap<(String, String), Known> {
    static KNOWN: std::sync::OnceLock<BTreeMap<(String, String), Known>> =
        std::sync::OnceLock::new();
    KNOWN.get_or_init(|| {
        IDS.iter()
            .map(|id| {
                (
                    ("web1".to_string(), id.to_string()),
                    Known {
                        time: crate::snapshot::trust::claimed(id).unwrap(),
                        quarantine: None,
                        valid: true,
                    },
                )
            })
            .collect()
    })
}

fn opts(dry_run: bool) -> Options<'static> {
    Options {
        dry_run,
        now: NOW,
        dependencies: &NoChains,
        known: known(),
        tolerance: time::Duration::HOUR,
        max_fraction: 1.0,
        force: false,
        protect_window: time::Duration::WEEK,
        quarantined: false,
        flood_days: no_floods(),
        abandon_after: GRACE,
    }
}

fn no_floods() -> &'static BTreeMap<String, Vec<time::Date>> {
    static NONE: BTreeMap<String, Vec<time::Date>> = BTreeMap::new();
    &NONE
}

const IDS: [&str; 3] = [
    "20261120T020000Z-0001",
    "20261121T020000Z-0002",
    "20261122T020000Z-0003",
];

#[test]
fn deletes_the_manifest_first() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(Recorder::new(&dir.path().join("a")));
    for id in IDS {
        snapshot(a.as_ref(), id, true);
    }
    let hosts = vec!["web1".to_string()];
    let r = prune(
        &[target("a", a.clone(), 2)],
        &hosts,
        dir.path(),
        &opts(false),
    );
    assert!(r.ok, "{r:?}");
    let d = a.deletes.lock().unwrap().clone();
    assert_eq!(d.len(), 3);
    assert_eq!(d[0], format!("web1/{}/{MANIFEST_NAME}", IDS[0]));
    assert_eq!(r.stores[0].hosts[0].delete[0].status, Status::Deleted);
    assert_eq!(r.stores[0].hosts[0].delete[0].deleted_objects, 3);
    let left: Vec<String> = list(a.as_ref(), None)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, vec![IDS[1], IDS[2]]);
}

#[test]
fn a_failed_listing_deletes_nothing_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut broken = Recorder::new(&dir.path().join("a"));
    broken.fail_list = true;
    let broken = Arc::new(broken);
    let ok = Arc::new(Recorder::new(&dir.path().join("b")));
    for id in IDS {
        snapshot(ok.as_ref(), id, true);
    }
    let hosts = vec!["web1".to_string()];
    let r = prune(
        &[
            target("s3", broken.clone(), 1),
            target("offsite", ok.clone(), 1),
        ],
        &hosts,
        dir.path(),
        &opts(false),
    );
    assert!(!r.ok);
    assert!(ok.deletes.lock().unwrap().is_empty());
    assert!(
        r.errors[0].contains("nothing was deleted"),
        "{:?}",
        r.errors
    );
    assert!(r.stores[0].error.as_deref().unwrap().contains("simulated"));
    // The healthy store's plan is still shown, as not carried out.
    let plan = &r.stores[1].hosts[0];
    assert_eq!(plan.delete.len(), 2);
    assert!(plan.delete.iter().all(|d| d.status == Status::Skipped));
}

#[test]
fn a_failed_delete_stops_that_store_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut flaky = Recorder::new(&dir.path().join("a"));
    flaky.fail_delete_after = Some(1);
    let flaky = Arc::new(flaky);
    let ok = Arc::new(Recorder::new(&dir.path().join("b")));
    for id in IDS {
        snapshot(flaky.as_ref(), id, true);
        snapshot(ok.as_ref(), id, true);
    }
    let hosts = vec!["web1".to_string()];
    let r = prune(
        &[
            target("s3", flaky.clone(), 1),
            target("offsite", ok.clone(), 1),
        ],
        &hosts,
        dir.path(),
        &opts(false),
    );
    assert!(!r.ok);
    // Newest first: IDS[1] lost its manifest, then the store stopped; IDS[0] was not touched.
    let plan = &r.stores[0].hosts[0];
    assert_eq!(plan.delete[0].snapshot, IDS[1]);
    assert_eq!(plan.delete[0].status, Status::Failed);
    assert_eq!(plan.delete[0].deleted_objects, 1);
    assert_eq!(plan.delete[1].status, Status::Skipped);
    let listed = list(flaky.as_ref(), None).unwrap();
    assert!(listed.iter().any(|s| s.id == IDS[1] && !s.complete));
    assert!(listed.iter().any(|s| s.id == IDS[0] && s.complete));
    // The other store went ahead.
    assert_eq!(ok.deletes.lock().unwrap().len(), 6);
}

#[test]
fn dry_run_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(Recorder::new(&dir.path().join("a")));
    for id in IDS {
        snapshot(a.as_ref(), id, true);
    }
    let hosts = vec!["web1".to_string()];
    let r = prune(
        &[target("a", a.clone(), 1)],
        &hosts,
        dir.path(),
        &opts(true),
    );
    assert!(r.ok);
    assert!(a.deletes.lock().unwrap().is_empty());
    assert_eq!(r.stores[0].hosts[0].delete.len(), 2);
    assert!(r.stores[0].hosts[0]
        .delete
        .iter()
        .all(|d| d.status == Status::Planned));
}

#[test]
fn an_empty_side_blocks_the_host_in_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let empty = Arc::new(Recorder::new(&dir.path().join("a")));
    let full = Arc::new(Recorder::new(&dir.path().join("b")));
    for id in IDS {
        snapshot(full.as_ref(), id, true);
    }
    let hosts = vec!["web1".to_string()];
    let r = prune(
        &[
            target("s3", empty.clone(), 1),
            target("offsite", full.clone(), 1),
        ],
        &hosts,
        dir.path(),
        &opts(false),
    );
    assert!(!r.ok);
    assert!(full.deletes.lock().unwrap().is_empty());
    assert!(r.stores[1].hosts[0].error.is_some());
}

#[test]
fn a_snapshot_committed_after_planning_is_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let a = Recorder::new(&dir.path().join("a"));
    snapshot(&a, IDS[0], false);
    put(&a, &format!("web1/{}/{MANIFEST_NAME}", IDS[0]));
    let d = Doomed {
        snapshot: IDS[0].into(),
        complete: false,
        age_hours: Some(80.0),
        objects: 2,
        bytes: 2,
        reason: DeleteReason::Abandoned,
        status: Status::Planned,
        deleted_objects: 0,
        error: None,
    };
    let (n, res) = delete_snapshot(&a, "web1", &d);
    assert_eq!(n, 0);
    assert!(res.is_err());
    assert!(a.deletes.lock().unwrap().is_empty());
}

#[test]
fn forged_future_snapshots_are_quarantined_and_never_push_real_ones_out() {
    // Three real snapshots, and three re-sealed copies under ids of next year that the store
    // received today: the judge quarantines them, and keep_last 3 counts only the real ones.
    let mut snaps = vec![
        info("20261120T020000Z-0001", true),
        info("20261121T020000Z-0002", true),
        info("20261122T020000Z-0003", true),
    ];
    for id in [
        "20271201T020000Z-0004",
        "20271202T020000Z-0005",
        "20271203T020000Z-0006",
    ] {
        let mut s = info(id, true);
        s.committed = Some(NOW);
        s.last_write = Some(NOW);
        snaps.push(s);
    }
    Judge::bare(Origin::Source, time::Duration::HOUR).assess(&mut snaps);
    let p = plan_host("web1", &snaps, &keep_last(3), None, NOW, GRACE);
    assert!(p.delete.is_empty(), "{:?}", p.delete);
    let quarantined: Vec<&str> = p
        .keep
        .iter()
        .filter(|k| k.reasons == vec![KeepReason::Quarantined])
        .map(|k| k.snapshot.as_str())
        .collect();
    assert_eq!(quarantined.len(), 3);
    assert!(quarantined.iter().all(|id| id.starts_with("2027")));
    let q = plan_quarantined("web1", &snaps, NOW);
    assert_eq!(q.delete.len(), 3);
    assert!(q.delete.iter().all(|d| d.snapshot.starts_with("2027")));
}

#[test]
fn one_run_deletes_at_most_the_configured_share() {
    let snaps: Vec<SnapshotInfo> = (1..=10)
        .map(|d| info(&format!("202611{d:02}T020000Z-00{d:02}"), true))
        .collect();
    let mut p = plan_host("web1", &snaps, &keep_last(2), None, NOW, GRACE);
    assert_eq!(p.delete.len(), 8);
    limit_deletions(&mut p, 10, 0.5);
    // The five oldest go; the three newer ones the policy drops wait for a later run.
    assert_eq!(
        deleted_ids(&p),
        vec![
            "20261105T020000Z-0005",
            "20261104T020000Z-0004",
            "20261103T020000Z-0003",
            "20261102T020000Z-0002",
            "20261101T020000Z-0001"
        ]
    );
    assert_eq!(
        p.keep
            .iter()
            .filter(|k| k.reasons == vec![KeepReason::PruneLimit])
            .count(),
        3
    );
    assert!(p.notes[0].contains("max_prune_fraction"), "{:?}", p.notes);
}

#[test]
fn snapshots_recently_the_newest_verified_are_protected() {
    let rec = |snap: &str, verified_at: &str, ok: bool| record::VerifyRecord {
        locked_until: None,
        format: record::FORMAT.into(),
        version: record::VERSION,
        host: "web1".into(),
        snapshot: snap.into(),
        snapshot_time: crate::snapshot::trust::claimed(snap)
            .unwrap()
            .format(&Rfc3339)
            .unwrap(),
        verified_at: verified_at.into(),
        verified_from: "offsite".into(),
        ok,
        seconds: 1.0,
        signer: String::new(),
        stored_bytes: 0,
        plain_bytes: 0,
        freshness: record::Freshness {
            age_hours: 1.0,
            max_age_hours: 26.0,
            ok: true,
        },
        databases: Vec::new(),
        trees: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let records = [
        rec("20261101T020000Z-0001", "2026-11-01T06:00:00Z", true),
        rec("20261110T020000Z-0002", "2026-11-10T06:00:00Z", true),
        rec("20261118T020000Z-0003", "2026-11-18T06:00:00Z", true),
        rec("20261120T020000Z-0004", "2026-11-20T06:00:00Z", false),
        rec("20261121T020000Z-0005", "2026-11-21T06:00:00Z", true),
    ];
    let got = recently_verified(&records, NOW - time::Duration::WEEK);
    // In effect when the window opened (Nov 16): 0002; then 0003 and 0005. Not the failed 0004.
    assert_eq!(
        got,
        vec![
            "20261110T020000Z-0002",
            "20261118T020000Z-0003",
            "20261121T020000Z-0005"
        ]
    );
}

#[test]
fn a_snapshot_pull_has_not_checked_is_never_counted() {
    // Written by someone with put access after the last pull: its signature is unknown, so it
    // cannot take a keep_last slot from a real snapshot.
    let mut snaps = vec![
        info("20261121T020000Z-0001", true),
        info("20261122T020000Z-0002", true),
        info("20261123T020000Z-0003", true),
    ];
    snaps[2].unchecked = true;
    let p = plan_host("web1", &snaps, &keep_last(2), None, NOW, GRACE);
    assert!(p.delete.is_empty(), "{:?}", p.delete);
    let k = p.keep.iter().find(|k| k.snapshot == snaps[2].id).unwrap();
    assert_eq!(k.reasons, vec![KeepReason::Unchecked]);
}

fn write(key: &str, hours_ago: Option<i64>) -> Unfinished {
    Unfinished {
        key: key.into(),
        handle: format!("upload-of-{key}"),
        size: Some(5 << 20),
        modified: hours_ago.map(|h| NOW - time::Duration::hours(h)),
    }
}

#[test]
fn unfinished_writes_go_after_abandon_after_without_progress_in_them_or_their_snapshot() {
    let snaps = [
        info("20261120T020000Z-0001", true),  // long committed
        info("20261123T110000Z-0004", false), // a push writing now (1 h)
    ];
    let writes = [
        // A stale upload in a committed snapshot: nothing will finish it.
        write(
            "web1/20261120T020000Z-0001/files/www/vol-00002.tar.zst.pgp",
            Some(49),
        ),
        // Some servers report a fixed, ancient start for every upload: the snapshot's
        // progress keeps it.
        write(
            "web1/20261123T110000Z-0004/db/postgres/a.sql.zst.pgp",
            Some(140_000),
        ),
        // Young: may still be uploading.
        write(
            "web1/20261120T020000Z-0001/files/www/vol-00003.tar.zst.pgp",
            Some(47),
        ),
        // A snapshot nothing else of which was listed: the write's own time decides.
        write(
            "web1/20261101T020000Z-0009/db/postgres/b.sql.zst.pgp",
            Some(50),
        ),
        // No time at all: nothing is decided about it.
        write("web1/20261101T020000Z-0010/db/postgres/c.sql.zst.pgp", None),
    ];
    let stale = stale_writes(&writes, &snaps, "multipart upload", NOW, GRACE);
    let keys: Vec<&str> = stale.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "web1/20261120T020000Z-0001/files/www/vol-00002.tar.zst.pgp",
            "web1/20261101T020000Z-0009/db/postgres/b.sql.zst.pgp",
        ]
    );
    assert_eq!(stale[0].status, Status::Planned);
    assert!((stale[0].age_hours - 49.0).abs() < 0.01);
}

/// A hacked host signs one snapshot whose manifest says it needs every older snapshot: the
/// plan keeps them (it cannot tell), but none inherits that snapshot's lock. An honest chain's
/// parents do.
#[test]
fn a_snapshot_claiming_every_older_one_as_parent_passes_its_lock_to_none() {
    let id_at = |days_ago: i64, n: usize| {
        let t = NOW - time::Duration::days(days_ago);
        let f = time::macros::format_description!("[year][month][day]T020000Z");
        format!("{}-{n:04x}", t.format(f).unwrap())
    };
    let snaps: Vec<SnapshotInfo> = (1..=80)
        .rev()
        .map(|d| SnapshotInfo {
            has_trees: true,
            ..info(&id_at(d, d as usize), true)
        })
        .collect();
    let forged = id_at(1, 1);
    let honest = id_at(2, 2);
    let honest_parents: Vec<String> = (30..=32).map(|d| id_at(d, d as usize)).collect();
    struct Claims(BTreeMap<String, Vec<String>>);
    impl Dependencies for Claims {
        fn of(&self, _: &dyn Store, s: &SnapshotInfo) -> Result<Vec<String>> {
            Ok(self.0.get(&s.id).cloned().unwrap_or_default())
        }
    }
    let mut claims = BTreeMap::new();
    claims.insert(
        forged.clone(),
        snaps
            .iter()
            .map(|s| s.id.clone())
            .filter(|id| *id < forged)
            .collect::<Vec<_>>(),
    );
    claims.insert(honest.clone(), honest_parents.clone());
    let ret = Retention {
        keep_daily: 7,
        ..Default::default()
    };
    let mut p = plan_host("web1", &snaps, &ret, None, NOW, GRACE);
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    keep_dependencies(&mut p, &snaps, &store, &Claims(claims)).unwrap();
    assert!(
        p.keep.len() > 70,
        "the forged claims keep everything: {}",
        p.keep.len()
    );
    let lock = crate::config::RetentionLock {
        daily: Some(std::time::Duration::from_secs(14 * 86_400)),
        ..Default::default()
    };
    let locks = lock::plan_locks(&p, &snaps, &lock, NOW);
    let locked = |id: &str| locks.iter().find(|l| l.snapshot == id);
    // The forged snapshot itself is a daily (yesterday is closed): locked by its own rule.
    assert_eq!(locked(&forged).map(|l| l.rule.as_str()), Some("keep_daily"));
    // Its claimed parents inherit nothing from it...
    let old = id_at(60, 60);
    assert!(
        locked(&old).is_none(),
        "{:?}",
        locked(&old).map(|l| &l.rule)
    );
    assert!(!locks
        .iter()
        .any(|l| l.rule == format!("needed by {forged}")));
    // ...while the honest chain's parents are locked as long as the incremental.
    for parent in &honest_parents {
        let l = locked(parent).unwrap_or_else(|| panic!("{parent} not locked"));
        assert_eq!(l.rule, format!("needed by {honest}"), "{parent}");
        assert_eq!(l.until_time, locked(&honest).unwrap().until_time);
    }
}
