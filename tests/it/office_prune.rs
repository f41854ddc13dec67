//! `offsite prune` with the real binary on real stores: a local directory, S3 (moto), and the offsite
//! copy. Snapshots are written straight into the stores with chosen ids (prune decides from object
//! presence alone, so a dummy object and a dummy `manifest.json.pgp` make a complete snapshot), and
//! `OFFSITE_NOW` pins the clock. prune ages snapshots by the store's own time of their manifest
//! (trusted time), so the fixtures give every object the store time its id claims: file mtimes in
//! a local store, and a private moto whose clock is set (libfaketime) before each put.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::cli::{Run, Setup};
use crate::common::s3::{raw_client, runtime, PrivateMoto, TestBucket, ACCESS_KEY, SECRET_KEY};
use offsite::office::record::{Freshness, VerifyRecord};
use time::macros::{datetime, format_description};
use time::OffsetDateTime;

const HOST: &str = "web1";
const NOW: OffsetDateTime = datetime!(2026-11-23 12:00:00 UTC);
const NOW_ENV: &str = "2026-11-23T12:00:00Z";
const MANIFEST: &str = "manifest.json.pgp";
const OBJECT: &str = "db/postgres/shop.sql.zst.pgp";

fn id_at(t: OffsetDateTime, n: usize) -> String {
    let f = format_description!("[year][month][day]T[hour][minute][second]Z");
    format!("{}-{n:04x}", t.format(f).expect("formatting an id"))
}

/// Three snapshots a day (02:00, 10:00, 18:00) over the ten days before NOW: Nov 13 .. Nov 22.
fn three_a_day() -> Vec<(String, OffsetDateTime)> {
    let mut out = Vec::new();
    for day in 13u8..=22 {
        for hour in [2u8, 10, 18] {
            let t = time::Date::from_calendar_date(2026, time::Month::November, day)
                .unwrap()
                .with_hms(hour, 0, 0)
                .unwrap()
                .assume_utc();
            out.push((id_at(t, out.len()), t));
        }
    }
    out
}

/// What keep_last 2 + keep_daily 7 keeps of [`three_a_day`]: Nov 22 10:00 (keep_last), and 18:00
/// of Nov 16 .. 22 (keep_daily; Nov 22 18:00 also keep_last).
fn expected_kept(snaps: &[(String, OffsetDateTime)]) -> BTreeSet<String> {
    snaps
        .iter()
        .filter(|(_, t)| (t.day() >= 16 && t.hour() == 18) || (t.day() == 22 && t.hour() == 10))
        .map(|(id, _)| id.clone())
        .collect()
}

fn ids(snaps: &[(String, OffsetDateTime)]) -> BTreeSet<String> {
    snaps.iter().map(|(id, _)| id.clone()).collect()
}

fn write_local(root: &Path, id: &str, complete: bool) {
    let dir = root.join(HOST).join(id);
    std::fs::create_dir_all(dir.join("db/postgres")).unwrap();
    std::fs::write(dir.join(OBJECT), b"dump bytes").unwrap();
    if complete {
        std::fs::write(dir.join(MANIFEST), b"manifest").unwrap();
    }
    // The store received it when its id says, and pull saw it (the ledger is in the offsite dir
    // beside every store of these tests).
    if complete {
        ledger_saw(&root.parent().expect("store parent").join("offsite"), id);
    }
    let t = std::time::SystemTime::from(claimed(id));
    for f in [OBJECT, MANIFEST] {
        if let Ok(file) = std::fs::File::options().write(true).open(dir.join(f)) {
            file.set_modified(t).unwrap();
        }
    }
}

fn claimed(id: &str) -> OffsetDateTime {
    offsite::snapshot::trust::claimed(id).expect("a snapshot id")
}

/// What pull records the first time it lists a complete snapshot: prune counts only snapshots the
/// office's ledger knows as validly signed. These fixtures are written straight into the stores
/// (their manifests are dummies), so the test records them as pull would have: seen when the
/// store received them, signature valid.
fn ledger_saw(offsite: &Path, id: &str) {
    use offsite::office::ledger::{Entry, Ledger};
    let mut l = Ledger::load(offsite, HOST).expect("ledger");
    let t = claimed(id)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    l.snapshots.insert(
        id.to_string(),
        Entry {
            trusted_time: t.clone(),
            time_from: "store".into(),
            first_seen: t,
            signature: "valid".into(),
            started_at: None,
            finished_at: None,
            quarantine: None,
            recipients: Vec::new(),
        },
    );
    l.save(offsite).expect("saving the ledger");
}

/// A private S3 server whose clock the test sets, with an empty bucket.
fn moto_with_clock(bucket: &str) -> (PrivateMoto, aws_sdk_s3::Client) {
    let moto = PrivateMoto::start_with_clock(NOW - time::Duration::days(30));
    let client = raw_client(&moto.endpoint, ACCESS_KEY, SECRET_KEY);
    runtime()
        .block_on(client.create_bucket().bucket(bucket).send())
        .expect("create bucket");
    (moto, client)
}

/// Snapshot dirs of HOST in a local store: id -> complete.
fn local_snapshots(root: &Path) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = match std::fs::read_dir(root.join(HOST)) {
        Ok(rd) => rd
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.path().join(MANIFEST).exists(),
                )
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

fn local_ids(root: &Path) -> BTreeSet<String> {
    local_snapshots(root)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

fn s3_yaml(endpoint: &str, bucket: &str) -> String {
    format!(
        "store:\n  s3: {{ bucket: {bucket}, prefix: prod, region: us-east-1, endpoint: '{endpoint}', path_style: true, access_key_id: '{ACCESS_KEY}', secret_access_key: '{SECRET_KEY}' }}"
    )
}

/// The office section's retention lines (indented into `office:` by Setup's config). These tests
/// are about the policy: one run may delete any share of the snapshots (the limit has its own test).
fn office_yaml(retention: &str) -> String {
    format!("  offsite_dir: offsite\n  max_prune_fraction: 1\n  retention: {retention}")
}

fn put_s3(client: &aws_sdk_s3::Client, bucket: &str, id: &str, complete: bool) {
    let mut keys = vec![OBJECT];
    if complete {
        keys.push(MANIFEST);
    }
    for k in keys {
        runtime()
            .block_on(
                client
                    .put_object()
                    .bucket(bucket)
                    .key(format!("prod/{HOST}/{id}/{k}"))
                    .body(aws_sdk_s3::primitives::ByteStream::from_static(b"bytes"))
                    .send(),
            )
            .expect("put_object");
    }
}

/// Snapshot ids of HOST in the bucket, with whether each has its manifest.
fn s3_snapshots(client: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, bool)> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = runtime()
            .block_on(
                client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(format!("prod/{HOST}/"))
                    .set_continuation_token(token.clone())
                    .send(),
            )
            .expect("list_objects_v2");
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        token = out.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let mut snaps = std::collections::BTreeMap::new();
    for k in keys {
        let mut parts = k.splitn(4, '/');
        let (_, _, Some(id), Some(rest)) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let e = snaps.entry(id.to_string()).or_insert(false);
        *e |= rest == MANIFEST;
    }
    snaps.into_iter().collect()
}

fn s3_ids(client: &aws_sdk_s3::Client, bucket: &str) -> BTreeSet<String> {
    s3_snapshots(client, bucket)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

fn prune(s: &Setup, args: &[&str]) -> Run {
    let mut all = vec!["prune"];
    all.extend_from_slice(args);
    s.offsite_env(&all, &[("OFFSITE_NOW", NOW_ENV)])
}

/// One store's part of `prune --json`.
fn store_in<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no store {name} in {v}"))
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("prune --json printed no JSON ({e}):\n{}", run.stdout))
}

/// Snapshot ids a store's plan deletes (or would), from `prune --json`.
fn planned_deletes(v: &serde_json::Value, store: &str) -> BTreeSet<String> {
    let s = v["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == store)
        .unwrap_or_else(|| panic!("no store {store} in {v}"));
    s["hosts"][0]["delete"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["snapshot"].as_str().unwrap().to_string())
        .collect()
}

fn verified(offsite: &Path, id: &str, t: OffsetDateTime, ok: bool) {
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    VerifyRecord {
        locked_until: None,
        format: offsite::office::record::FORMAT.into(),
        version: offsite::office::record::VERSION,
        host: HOST.into(),
        snapshot: id.into(),
        snapshot_time: rfc(t),
        verified_at: rfc(t + time::Duration::hours(1)),
        verified_from: "offsite".into(),
        ok,
        seconds: 1.0,
        signer: "offsite web1".into(),
        stored_bytes: 10,
        plain_bytes: 10,
        freshness: Freshness {
            age_hours: 1.0,
            max_age_hours: 26.0,
            ok: true,
        },
        databases: Vec::new(),
        trees: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    }
    .save(offsite)
    .expect("saving a verify record");
}

#[test]
fn daily_policy_on_a_local_store_and_the_offsite_copy() {
    let s = Setup::new(HOST);
    s.config(&office_yaml("{ keep_last: 2, keep_daily: 7 }"));
    let snaps = three_a_day();
    for (id, _) in &snaps {
        write_local(&s.path("store"), id, true);
        write_local(&s.path("offsite"), id, true);
    }
    let want_kept = expected_kept(&snaps);
    assert_eq!(want_kept.len(), 8);
    let want_deleted: BTreeSet<String> = ids(&snaps).difference(&want_kept).cloned().collect();

    // Dry run: the full plan, nothing deleted.
    let dry = prune(&s, &["--dry-run"]).expect(0);
    assert!(dry.stdout.contains("dry run"), "{}", dry.stdout);
    for id in &want_deleted {
        assert!(
            dry.stdout.contains(&format!("{HOST}/{id}  would delete")),
            "{id} not listed for deletion:\n{}",
            dry.stdout
        );
    }
    assert!(
        dry.stdout.contains("local: would delete 22 snapshots"),
        "{}",
        dry.stdout
    );
    assert_eq!(local_ids(&s.path("store")), ids(&snaps));
    let v = json(&prune(&s, &["--dry-run", "--json"]).expect(0));
    assert_eq!(v["dry_run"], true);
    assert_eq!(planned_deletes(&v, "local"), want_deleted);
    assert_eq!(planned_deletes(&v, "offsite"), want_deleted);
    assert_eq!(local_ids(&s.path("store")), ids(&snaps));
    assert_eq!(local_ids(&s.path("offsite")), ids(&snaps));

    // Why each kept snapshot is kept.
    let newest = &snaps[snaps.len() - 1].0;
    let kept = v["stores"][0]["hosts"][0]["keep"].as_array().unwrap();
    let first = kept.iter().find(|k| k["snapshot"] == *newest).unwrap();
    assert_eq!(
        first["reasons"],
        serde_json::json!(["keep_last", "keep_daily"])
    );

    let run = prune(&s, &["--json"]).expect(0);
    let v = json(&run);
    assert_eq!(v["ok"], true);
    for store in ["local", "offsite"] {
        let st = v["stores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == store)
            .unwrap();
        for d in st["hosts"][0]["delete"].as_array().unwrap() {
            assert_eq!(d["status"], "deleted", "{d}");
            assert_eq!(d["deleted_objects"], 2, "{d}");
        }
    }
    assert_eq!(local_ids(&s.path("store")), want_kept);
    assert_eq!(local_ids(&s.path("offsite")), want_kept);
    // The verify records live in the offsite dir too: untouched (there are none here, but the
    // reports folder must not be mistaken for a host).
    let again = prune(&s, &[]).expect(0);
    assert!(
        again.stdout.contains("local: deleted 0 snapshots"),
        "{}",
        again.stdout
    );
}

#[test]
fn offsite_retention_applies_to_the_offsite_copy() {
    let s = Setup::new(HOST);
    s.config(&format!(
        "{}\n  offsite_retention: {{ keep_last: 1 }}",
        office_yaml("{ keep_last: 2, keep_daily: 7 }")
    ));
    let snaps = three_a_day();
    for (id, _) in &snaps {
        write_local(&s.path("store"), id, true);
        write_local(&s.path("offsite"), id, true);
    }
    prune(&s, &[]).expect(0);
    assert_eq!(local_ids(&s.path("store")), expected_kept(&snaps));
    let newest: BTreeSet<String> = [snaps[snaps.len() - 1].0.clone()].into();
    assert_eq!(local_ids(&s.path("offsite")), newest);
}

#[test]
fn daily_policy_on_s3() {
    let name = "offsite-prune-daily";
    let (moto, client) = moto_with_clock(name);
    struct Bucket<'a> {
        name: &'a str,
        client: aws_sdk_s3::Client,
    }
    impl Bucket<'_> {
        fn client(&self) -> &aws_sdk_s3::Client {
            &self.client
        }
    }
    let bucket = Bucket { name, client };
    let s = Setup::new(HOST);
    s.config_with_store(
        &s3_yaml(&moto.endpoint, bucket.name),
        &office_yaml("{ keep_last: 2, keep_daily: 7 }"),
    );
    let snaps = three_a_day();
    for (id, t) in &snaps {
        moto.set_clock(*t);
        put_s3(bucket.client(), bucket.name, id, true);
        write_local(&s.path("offsite"), id, true);
    }
    // An abandoned push on S3, three days old: removed whole, however many objects it has.
    let dead = id_at(NOW - time::Duration::days(3), 0xdead);
    moto.set_clock(claimed(&dead));
    put_s3(bucket.client(), bucket.name, &dead, false);

    let want_kept = expected_kept(&snaps);
    let want_deleted: BTreeSet<String> = ids(&snaps).difference(&want_kept).cloned().collect();
    let mut want_s3_deleted = want_deleted.clone();
    want_s3_deleted.insert(dead.clone());
    // A key no store may hold, planted by production inside a snapshot the policy drops: it
    // stays (named in the log), and does not stop that snapshot's or any other's deletion.
    let planted_in = want_deleted.iter().next().unwrap().clone();
    let planted = format!("prod/{HOST}/{planted_in}/x//y");
    moto.set_clock(claimed(&planted_in));
    runtime()
        .block_on(
            bucket
                .client()
                .put_object()
                .bucket(bucket.name)
                .key(&planted)
                .body(aws_sdk_s3::primitives::ByteStream::from_static(b"junk"))
                .send(),
        )
        .expect("put the planted key");

    let v = json(&prune(&s, &["--dry-run", "--json"]).expect(0));
    assert_eq!(planned_deletes(&v, "s3"), want_s3_deleted);
    assert_eq!(planned_deletes(&v, "offsite"), want_deleted);
    let mut all = ids(&snaps);
    all.insert(dead.clone());
    assert_eq!(s3_ids(bucket.client(), bucket.name), all);

    let run = prune(&s, &[]).expect(0);
    assert!(
        run.stdout.contains("s3: deleted 23 snapshots"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("{HOST}/{dead}  deleted")),
        "{}",
        run.stdout
    );
    let mut left = s3_ids(bucket.client(), bucket.name);
    assert!(left.remove(&planted_in), "the planted key stays");
    assert_eq!(left, want_kept);
    let listed = runtime()
        .block_on(
            bucket
                .client()
                .list_objects_v2()
                .bucket(bucket.name)
                .prefix(format!("prod/{HOST}/{planted_in}/"))
                .send(),
        )
        .unwrap();
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(
        keys,
        [planted.as_str()],
        "the snapshot's own objects are gone"
    );
    assert!(s3_snapshots(bucket.client(), bucket.name)
        .iter()
        .filter(|(id, _)| *id != planted_in)
        .all(|(_, complete)| *complete));
    assert_eq!(local_ids(&s.path("offsite")), want_kept);
}

#[test]
fn the_newest_verified_snapshot_survives_the_policy() {
    let s = Setup::new(HOST);
    s.config(&office_yaml("{ keep_last: 2 }"));
    let offsite = s.path("offsite");
    let mut snaps = Vec::new();
    for day in 10u8..=20 {
        let t = time::Date::from_calendar_date(2026, time::Month::November, day)
            .unwrap()
            .with_hms(2, 0, 0)
            .unwrap()
            .assume_utc();
        let id = id_at(t, day as usize);
        write_local(&s.path("store"), &id, true);
        write_local(&offsite, &id, true);
        snaps.push((id, t));
    }
    // Verify passed for Nov 11 only; Nov 12's failed, the newer ones were never verified.
    verified(&offsite, &snaps[1].0, snaps[1].1, true);
    verified(&offsite, &snaps[2].0, snaps[2].1, false);

    let run = prune(&s, &[]).expect(0);
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains(&snaps[1].0))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(
        line.contains("keep") && line.contains("newest verified snapshot"),
        "{line}"
    );
    let want: BTreeSet<String> =
        [snaps[1].0.clone(), snaps[9].0.clone(), snaps[10].0.clone()].into();
    assert_eq!(local_ids(&s.path("store")), want);
    assert_eq!(local_ids(&offsite), want);
    // Records stay, also of deleted snapshots.
    assert!(offsite
        .join(format!("reports/verify/{HOST}/{}.json", snaps[2].0))
        .exists());
}

#[test]
fn incomplete_snapshots_are_removed_only_after_48_hours() {
    let s = Setup::new(HOST);
    s.config(&office_yaml("{ keep_last: 10 }"));
    let complete = id_at(NOW - time::Duration::days(5), 1);
    let hour_old = id_at(NOW - time::Duration::hours(1), 2);
    let day_old = id_at(NOW - time::Duration::days(1), 3);
    let three_days_old = id_at(NOW - time::Duration::days(3), 4);
    for root in [s.path("store"), s.path("offsite")] {
        write_local(&root, &complete, true);
        for id in [&hour_old, &day_old, &three_days_old] {
            write_local(&root, id, false);
        }
    }
    let run = prune(&s, &[]).expect(0);
    assert!(run.stdout.contains("its push died"), "{}", run.stdout);
    let want = vec![
        (complete.clone(), true),
        (day_old.clone(), false),
        (hour_old.clone(), false),
    ];
    let mut want = want;
    want.sort();
    assert_eq!(local_snapshots(&s.path("store")), want);
    assert_eq!(local_snapshots(&s.path("offsite")), want);
    assert!(!s.path("store").join(HOST).join(&three_days_old).exists());
}

#[test]
fn no_retention_is_a_usage_error() {
    let s = Setup::new(HOST);
    s.config("  offsite_dir: offsite");
    write_local(
        &s.path("store"),
        &id_at(NOW - time::Duration::days(9), 1),
        true,
    );
    let run = prune(&s, &[]).expect(2);
    assert!(run.stderr.contains("retention:"), "{}", run.stderr);
    assert_eq!(local_snapshots(&s.path("store")).len(), 1);
}

#[test]
fn an_empty_s3_listing_deletes_nothing_offsite() {
    // S3 lists nothing (a wrong prefix, or an emptied bucket) while the offsite copy has snapshots:
    // the offsite copy may now be the only one, so it is not pruned either.
    let bucket = TestBucket::new("prune-empty");
    let s = Setup::new(HOST);
    s.config_with_store(
        &s3_yaml(&crate::common::s3::endpoint(), &bucket.name),
        &office_yaml("{ keep_last: 1 }"),
    );
    let snaps = three_a_day();
    for (id, _) in &snaps {
        write_local(&s.path("offsite"), id, true);
    }
    let run = prune(&s, &[]).expect(1);
    assert!(
        run.stderr.contains("s3 lists no complete snapshot of web1"),
        "{}",
        run.stderr
    );
    assert_eq!(local_ids(&s.path("offsite")), ids(&snaps));
}

#[test]
fn a_failing_s3_listing_deletes_nothing_anywhere() {
    let bucket = "offsite-prune-dead";
    let (moto, client) = moto_with_clock(bucket);
    let s = Setup::new(HOST);
    s.config_with_store(
        &s3_yaml(&moto.endpoint, bucket),
        &office_yaml("{ keep_last: 1 }"),
    );
    let snaps = three_a_day();
    for (id, t) in &snaps {
        moto.set_clock(*t);
        put_s3(&client, bucket, id, true);
        write_local(&s.path("offsite"), id, true);
    }
    // The plan works while the server is up...
    let v = json(&prune(&s, &["--dry-run", "--json"]).expect(0));
    assert_eq!(planned_deletes(&v, "offsite").len(), snaps.len() - 1);

    // ...and with the server gone, nothing is deleted, not even in the offsite copy.
    let status = std::process::Command::new("kill")
        .args(["-KILL", &moto.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let run = prune(&s, &[]).expect(1);
    assert!(
        run.stderr.contains("listing failed in s3"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("nothing was deleted in any store"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("not deleted"), "{}", run.stdout);
    assert_eq!(local_ids(&s.path("offsite")), ids(&snaps));
    assert!(local_snapshots(&s.path("offsite"))
        .iter()
        .all(|(_, complete)| *complete));

    let run = prune(&s, &["--json"]).expect(1);
    let v = json(&run);
    assert_eq!(v["ok"], false);
    let s3 = &v["stores"][0];
    assert_eq!(s3["name"], "s3");
    assert_eq!(s3["ok"], false);
    assert!(s3["error"].as_str().unwrap().contains("listing"), "{s3}");
    assert_eq!(local_ids(&s.path("offsite")), ids(&snaps));
}

#[test]
fn old_audit_canaries_are_removed_and_never_counted_as_snapshots() {
    let s = Setup::new(HOST);
    s.config(&office_yaml("{ keep_last: 2 }"));
    let snaps = three_a_day();
    for (id, _) in snaps.iter().rev().take(3) {
        write_local(&s.path("store"), id, true);
        write_local(&s.path("offsite"), id, true);
    }
    // What `offsite audit` on the host leaves (push cannot delete it): one from three days ago,
    // one from an audit that may still be running.
    let audit = s.path("store").join(HOST).join(".audit");
    std::fs::create_dir_all(&audit).unwrap();
    for (name, age_h) in [("20261120T120000Z-old", 72), ("20261123T110000Z-new", 1)] {
        std::fs::write(audit.join(name), b"offsite audit canary").unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(audit.join(name))
            .unwrap();
        f.set_modified(std::time::SystemTime::from(
            NOW - time::Duration::hours(age_h),
        ))
        .unwrap();
    }
    let v = json(&prune(&s, &["--json"]).expect(0));
    let local = store_in(&v, "local");
    assert_eq!(
        local["hosts"][0]["audit_canaries_removed"],
        serde_json::json!([format!("{HOST}/.audit/20261120T120000Z-old")]),
        "{v}"
    );
    // One snapshot went by the policy; the canaries were never snapshots to keep or delete.
    assert_eq!(planned_deletes(&v, "local").len(), 1, "{v}");
    assert!(!audit.join("20261120T120000Z-old").exists());
    assert!(audit.join("20261123T110000Z-new").exists());
    let left: Vec<_> = local_ids(&s.path("store"))
        .into_iter()
        .filter(|id| id != ".audit")
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

/// Puts a complete dummy snapshot whose objects push locked (compliance) until `until`.
fn put_s3_locked(client: &aws_sdk_s3::Client, bucket: &str, id: &str, until: OffsetDateTime) {
    for k in [OBJECT, MANIFEST] {
        runtime()
            .block_on(
                client
                    .put_object()
                    .bucket(bucket)
                    .key(format!("prod/{HOST}/{id}/{k}"))
                    .object_lock_mode(aws_sdk_s3::types::ObjectLockMode::Compliance)
                    .object_lock_retain_until_date(aws_smithy_types::DateTime::from_secs(
                        until.unix_timestamp(),
                    ))
                    .body(aws_sdk_s3::primitives::ByteStream::from_static(b"bytes"))
                    .send(),
            )
            .expect("put_object");
    }
}

fn lock_of(client: &aws_sdk_s3::Client, bucket: &str, id: &str, k: &str) -> OffsetDateTime {
    let out = runtime()
        .block_on(
            client
                .head_object()
                .bucket(bucket)
                .key(format!("prod/{HOST}/{id}/{k}"))
                .send(),
        )
        .expect("head_object");
    let secs = out
        .object_lock_retain_until_date()
        .expect("a retain-until date")
        .secs();
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

#[test]
fn object_lock_follows_the_rule_that_keeps_each_snapshot() {
    let bucket = "offsite-prune-lock";
    let moto = PrivateMoto::start_with_clock(NOW - time::Duration::days(90));
    let client = raw_client(&moto.endpoint, ACCESS_KEY, SECRET_KEY);
    runtime()
        .block_on(
            client
                .create_bucket()
                .bucket(bucket)
                .object_lock_enabled_for_bucket(true)
                .send(),
        )
        .expect("create a bucket with Object Lock");
    let s = Setup::new(HOST);
    let store = format!(
        "store:\n  s3: {{ bucket: {bucket}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: '{ACCESS_KEY}', secret_access_key: '{SECRET_KEY}', object_lock: {{ mode: compliance, days: 10 }} }}",
        moto.endpoint
    );
    let write_config = |lock: &str| {
        s.config_with_store(
            &store,
            &office_yaml(&format!(
                "{{ keep_daily: 7, keep_monthly: 3, lock: {lock} }}"
            )),
        );
    };
    write_config("{ daily: 14d, monthly: 100d }");
    // Pushes at 02:00 on these days (the last of each month is the monthly one), each locked by
    // push for 10 days.
    let days = [(9, 30), (10, 15), (10, 31), (11, 10)]
        .into_iter()
        .chain((14..=23).map(|d| (11, d)));
    let mut snaps = Vec::new();
    for (m, d) in days {
        let t = time::Date::from_calendar_date(2026, time::Month::try_from(m).unwrap(), d)
            .unwrap()
            .with_hms(2, 0, 0)
            .unwrap()
            .assume_utc();
        let id = id_at(t, snaps.len());
        moto.set_clock(t);
        put_s3_locked(&client, bucket, &id, t + time::Duration::days(10));
        write_local(&s.path("offsite"), &id, true);
        snaps.push((id, t));
    }
    moto.set_clock(NOW);
    let id_of = |y: i32, m: time::Month, d: u8| {
        let want = time::Date::from_calendar_date(y, m, d).unwrap();
        snaps
            .iter()
            .find(|(_, t)| t.date() == want)
            .map(|(id, t)| (id.clone(), *t))
            .unwrap()
    };
    use time::Month::{November, October, September};

    // A dry run does not promise deletes the store will refuse: push's lock still holds Nov 16.
    let v = json(&prune(&s, &["--json", "--dry-run"]).expect(0));
    let (held, _) = id_of(2026, November, 16);
    let d = store_in(&v, "s3")["hosts"][0]["delete"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["snapshot"] == held.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{held} not in the plan: {v}"));
    assert_eq!(d["status"], "skipped", "{d}");

    let run = prune(&s, &["--json"]).expect(0);
    let v = json(&run);
    let s3 = store_in(&v, "s3");
    let host = &s3["hosts"][0];

    // Monthly snapshots of closed months: locked 100 days from their own time; daily ones of
    // closed days 14 days.
    for (id, t) in [id_of(2026, September, 30), id_of(2026, October, 31)] {
        for k in [OBJECT, MANIFEST] {
            assert_eq!(
                lock_of(&client, bucket, &id, k),
                t + time::Duration::days(100),
                "{id} {k}"
            );
        }
    }
    // Tonight's snapshot is the newest of its day, week and month, so every rule keeps it; but
    // those periods are still open, and it keeps push's lock until one closes.
    let (newest, newest_t) = id_of(2026, November, 23);
    assert_eq!(
        lock_of(&client, bucket, &newest, OBJECT),
        newest_t + time::Duration::days(10)
    );
    let (daily, t) = id_of(2026, November, 18);
    assert_eq!(
        lock_of(&client, bucket, &daily, OBJECT),
        t + time::Duration::days(14)
    );
    let l = host["locks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["snapshot"] == daily)
        .unwrap();
    assert_eq!(l["rule"], "keep_daily");
    assert_eq!(l["status"], "extended");

    // The policy drops Nov 14 to 16, but push's 10-day lock still holds them: kept for a later
    // run, and the store refuses a delete of them outright.
    assert!(s3_ids(&client, bucket).contains(&held));
    let notes = host["notes"].to_string();
    assert!(
        notes.contains(&held) && notes.contains("locked until"),
        "{notes}"
    );
    let versions = runtime()
        .block_on(
            client
                .list_object_versions()
                .bucket(bucket)
                .prefix(format!("prod/{HOST}/{held}/{MANIFEST}"))
                .send(),
        )
        .unwrap();
    let version = versions.versions()[0].version_id().unwrap().to_string();
    let refused = runtime().block_on(
        client
            .delete_object()
            .bucket(bucket)
            .key(format!("prod/{HOST}/{held}/{MANIFEST}"))
            .version_id(version)
            .send(),
    );
    assert!(refused.is_err(), "a locked version must not be deletable");
    // What the policy dropped and no lock holds is gone, every version of it.
    let (gone, _) = id_of(2026, November, 10);
    assert!(!s3_ids(&client, bucket).contains(&gone));
    let left = runtime()
        .block_on(
            client
                .list_object_versions()
                .bucket(bucket)
                .prefix(format!("prod/{HOST}/{gone}/"))
                .send(),
        )
        .unwrap();
    assert!(left.versions().is_empty() && left.delete_markers().is_empty());

    // The next day its day has closed: the daily lock, not the monthly one.
    let prune_at = |t: OffsetDateTime, args: &[&str]| {
        moto.set_clock(t);
        let when = t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let mut all = vec!["prune"];
        all.extend_from_slice(args);
        s.offsite_env(&all, &[("OFFSITE_NOW", when.as_str())])
    };
    prune_at(NOW + time::Duration::days(1), &["--json"]).expect(0);
    assert_eq!(
        lock_of(&client, bucket, &newest, OBJECT),
        newest_t + time::Duration::days(14)
    );
    // Once November is over, it is November's monthly snapshot for good: 100 days.
    prune_at(datetime!(2026-12-01 12:00:00 UTC), &["--json"]).expect(0);
    assert_eq!(
        lock_of(&client, bucket, &newest, MANIFEST),
        newest_t + time::Duration::days(100)
    );

    // A shorter lock in the config never shortens what is locked.
    write_config("{ daily: 2d, monthly: 30d }");
    let v = json(&prune_at(datetime!(2026-12-01 12:00:00 UTC), &["--json"]).expect(0));
    let (monthly, t) = id_of(2026, October, 31);
    assert_eq!(
        lock_of(&client, bucket, &monthly, OBJECT),
        t + time::Duration::days(100)
    );
    let s3 = store_in(&v, "s3");
    for l in s3["hosts"][0]["locks"].as_array().unwrap() {
        assert_eq!(l["status"], "held", "{l}");
    }
    // Someone with delete rights hides an object of a kept snapshot behind a delete marker (the
    // locked version stays): prune reports it.
    let hidden = format!("{HOST}/{daily}/{OBJECT}");
    runtime()
        .block_on(
            client
                .delete_object()
                .bucket(bucket)
                .key(format!("prod/{hidden}"))
                .send(),
        )
        .expect("a delete marker");
    let v = json(&prune_at(datetime!(2026-12-01 12:00:00 UTC), &["--json", "--dry-run"]).expect(0));
    let s3 = store_in(&v, "s3");
    assert_eq!(
        s3["hosts"][0]["delete_markers"],
        serde_json::json!([hidden]),
        "{v}"
    );
    // `snapshots` shows each snapshot's lock.
    let listed = s.offsite(&["snapshots", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == monthly)
        .unwrap();
    let want = (t + time::Duration::days(100))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(row["locked_until"], want.as_str(), "{row}");
}
