//! verify reads every byte it vouches for, and the scrub re-reads the offsite copy over
//! `office.scrub_days`: a flipped byte anywhere is found, named, and repaired from the store when
//! the store's copy is good.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::cli::{Run, Setup};
use crate::common::db::{fixture, PgDb, PG_RESTORE_URL, PG_URL};
use crate::common::office::schema_errors;
use crate::common::s3::{endpoint, runtime, TestBucket};

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr))
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, data).expect("write");
}

/// Files must have changed more than a second before a push for the next push to trust its read
/// of them (the racy-file rule), so an unchanged tree really reads nothing the second time.
fn settle() {
    std::thread::sleep(Duration::from_millis(1100));
}

fn push(s: &Setup) -> String {
    let run = s.offsite(&["--json", "push"]).expect(0);
    json(&run)["snapshot"]
        .as_str()
        .expect("snapshot id")
        .to_string()
}

/// An office config over this setup's local store, with the offsite copy in `offsite/` and
/// `extra` YAML lines for the office section.
fn office_config(s: &Setup, extra: &str) -> PathBuf {
    s.write(
        "office.yaml",
        &format!(
            "host: office\nstore: {{ local: store }}\noffice:\n  offsite_dir: offsite\n  decryption_key: keys/office.secret.asc\n  hosts: {{ {h}: keys/{h}.cert.asc }}\n{extra}\n",
            h = s.host
        ),
    )
}

/// Flips one bit in the middle of a file.
fn flip(path: &Path) {
    let mut data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mid = data.len() / 2;
    data[mid] ^= 0x10;
    fs::write(path, data).expect("write flipped");
}

fn sha256(path: &Path) -> String {
    let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data))
}

/// `reports/scrub/latest.json` of the offsite copy.
fn scrub_record(s: &Setup) -> serde_json::Value {
    let path = s.path("offsite/reports/scrub/latest.json");
    serde_json::from_slice(&fs::read(&path).expect("the scrub wrote its record")).expect("JSON")
}

/// Runs `report` and returns report.json, after checking it against the schema.
fn report(s: &Setup, office: &Path) -> serde_json::Value {
    s.offsite_with(office, &["report"], &[]).expect(0);
    let path = s.path("offsite/reports/report.json");
    let errors = schema_errors(&path);
    assert!(
        errors.is_empty(),
        "report.json violates the schema:\n{}",
        errors.join("\n")
    );
    serde_json::from_slice(&fs::read(&path).expect("report.json")).expect("JSON")
}

/// The warnings of `kind` in report.json, as messages.
fn warnings(report: &serde_json::Value, kind: &str) -> Vec<String> {
    report["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter(|w| w["kind"] == kind)
        .map(|w| w["message"].as_str().expect("message").to_string())
        .collect()
}

/// The second snapshot of an unchanged tree holds one volume with nothing but directory headers:
/// no file of the view is in it, so a walk of the view never reads it. verify must.
#[test]
fn a_flipped_byte_in_a_header_only_volume_fails_verify_naming_it() {
    let s = Setup::new("scrub-hdr");
    let src = s.path("src");
    write(&src, "a.txt", b"alpha\n");
    write(&src, "d/b.txt", b"bravo\n");
    s.config(&format!(
        "trees: [{{ name: www, path: '{}' }}]",
        src.display()
    ));
    settle();
    let _full = push(&s);
    let inc = push(&s);
    let snap = s.path(&format!("store/{}/{inc}", s.host));
    let volume = snap.join("files/www/vol-00001.tar.zst.pgp");
    assert!(volume.exists(), "the incremental has a volume of headers");
    let key = format!("{}/{inc}/files/www/vol-00001.tar.zst.pgp", s.host);

    let office = office_config(&s, "");
    let ok = s
        .offsite_with(
            &office,
            &["--json", "verify", "--from-s3", "--host", &s.host, &inc],
            &[],
        )
        .expect(0);
    let v = json(&ok);
    let tree = &v[0]["Ok"]["trees"][0];
    assert_eq!(tree["ok"], true, "{v}");
    // The index and the header-only volume of the incremental, the full's volume with the files.
    assert!(
        tree["objects_read"].as_u64().expect("objects_read") >= 3,
        "{v}"
    );

    flip(&volume);
    // Stock gpg refuses it too: the flip is real damage, not a detail of offsite's format.
    let gpg = s.sh(&format!(
        "gpg --batch --quiet --decrypt '{}' > /dev/null",
        volume.display()
    ));
    assert_ne!(gpg.code, 0, "gpg decrypts a manipulated volume");

    let bad = s.offsite_with(
        &office,
        &["--json", "verify", "--from-s3", "--host", &s.host, &inc],
        &[],
    );
    let bad = bad.expect(1);
    let v = json(&bad);
    let tree = &v[0]["Ok"]["trees"][0];
    assert_eq!(tree["ok"], false, "{v}");
    let error = tree["error"].as_str().expect("error");
    assert!(error.contains(&key), "the error names {key}: {error}");
}

/// A database and a tree pulled into the offsite copy; a byte rots there. The scrub finds it and
/// fetches the good copy from the store; when the store's copy is bad too, it says LOST.
#[test]
fn scrub_repairs_a_rotten_object_from_the_store_or_reports_it_lost() {
    let pg = PgDb::new("scrub");
    pg.load(&fixture("postgres/shop.sql"));
    let s = Setup::new("scrub-fix");
    let src = s.path("src");
    write(&src, "a.txt", b"alpha\n");
    write(&src, "d/b.txt", &vec![b'b'; 100_000]);
    s.config(&format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]\ntrees: [{{ name: www, path: '{}' }}]",
        pg.name,
        src.display()
    ));
    let id = push(&s);
    let office = office_config(
        &s,
        &format!("  scratch: {{ postgres: '{PG_RESTORE_URL}' }}\n  scrub_days: 1"),
    );
    s.offsite_with(&office, &["pull"], &[]).expect(0);

    // Nothing wrong: every object is re-hashed (scrub_days 1), nothing repaired.
    let clean = json(
        &s.offsite_with(&office, &["--json", "verify", "--scrub"], &[])
            .expect(0),
    );
    assert!(
        clean["checked_objects"].as_u64().expect("count") >= 3,
        "{clean}"
    );
    assert_eq!(clean["checked_objects"], clean["objects"], "{clean}");
    assert_eq!(clean["repaired"].as_array().expect("repaired").len(), 0);

    let rel = format!("{}/{id}/db/postgres/{}.sql.zst.pgp", s.host, pg.name);
    let local = s.path(&format!("offsite/{rel}"));
    let stored = s.path(&format!("store/{rel}"));
    let good = sha256(&stored);
    flip(&local);
    assert_ne!(sha256(&local), good);

    let run = s
        .offsite_with(&office, &["--json", "verify", "--scrub"], &[])
        .expect(0);
    assert!(run.stderr.contains("1 repaired"), "{}", run.stderr);
    let fixed = json(&run);
    assert_eq!(fixed["repaired"][0]["key"], rel.as_str(), "{fixed}");
    assert_eq!(fixed["lost"].as_array().expect("lost").len(), 0);
    assert_eq!(sha256(&local), good, "the good copy is back in place");
    // No temporary file is left beside it.
    let dir = local.parent().expect("dir");
    let leftovers: Vec<_> = fs::read_dir(dir)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // And the snapshot restores again: verify restores the database into a scratch one.
    let v = s
        .offsite_with(&office, &["--json", "verify", "--host", &s.host], &[])
        .expect(0);
    assert_eq!(json(&v)[0]["Ok"]["ok"], true, "{}", v.stdout);
    // The report lists the repair as a warning and shows the scrub's coverage.
    let r = report(&s, &office);
    let repaired = warnings(&r, "repaired");
    assert!(
        repaired.len() == 1 && repaired[0].contains(&rel),
        "{repaired:?}"
    );
    assert_eq!(r["scrub"]["coverage_percent"], 100.0, "{}", r["scrub"]);
    let md = fs::read_to_string(s.path("offsite/reports/report.md")).expect("report.md");
    assert!(
        md.contains("Coverage: 100% of objects checked within 1 day"),
        "{md}"
    );

    // Rotten here and in the store: nothing can repair it. The scrub names it and fails.
    let vol = format!("{}/{id}/files/www/vol-00001.tar.zst.pgp", s.host);
    flip(&s.path(&format!("offsite/{vol}")));
    flip(&s.path(&format!("store/{vol}")));
    let lost = s
        .offsite_with(&office, &["--json", "verify", "--scrub"], &[])
        .expect(1);
    assert!(
        lost.stderr.contains(&format!("LOST {vol}")),
        "{}",
        lost.stderr
    );
    let r = json(&lost);
    assert_eq!(r["lost"][0]["key"], vol.as_str(), "{r}");
    assert_eq!(r["ok"], false);
    assert_eq!(scrub_record(&s)["lost"][0]["key"], vol.as_str());
    let r = report(&s, &office);
    let lost = warnings(&r, "lost");
    assert!(lost.len() == 1 && lost[0].contains(&vol), "{lost:?}");
    assert_eq!(
        r["warnings"][0]["kind"], "lost",
        "lost data is listed first"
    );
    let html = fs::read_to_string(s.path("offsite/reports/report.html")).expect("report.html");
    assert!(html.contains("Scrub of the offsite copy"), "{html}");
}

/// With N snapshots and scrub_days 3, three nightly runs check everything, each about a third, and
/// the record shows full coverage; an object checked 3 days ago is checked again.
#[test]
fn successive_scrubs_cover_every_object_within_scrub_days() {
    let s = Setup::new("scrub-cov");
    let src = s.path("src");
    s.config(&format!(
        "trees: [{{ name: www, path: '{}', volume_size: 1MiB }}]",
        src.display()
    ));
    for i in 0..4u8 {
        write(
            &src,
            &format!("f{i}.bin"),
            &vec![i; 300_000 + i as usize * 1000],
        );
        settle();
        push(&s);
    }
    let office = office_config(&s, "  scrub_days: 3");
    s.offsite_with(&office, &["pull"], &[]).expect(0);

    let t0 = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let at = |days: i64| {
        (t0 + time::Duration::days(days))
            .format(&time::format_description::well_known::Rfc3339)
            .expect("format")
    };
    let scrub = |days: i64| {
        let now = at(days);
        json(
            &s.offsite_with(
                &office,
                &["--json", "verify", "--scrub"],
                &[("OFFSITE_NOW", now.as_str())],
            )
            .expect(0),
        )
    };
    let first = scrub(0);
    let objects = first["objects"].as_u64().expect("objects");
    assert!(
        objects >= 8,
        "4 snapshots, an index and a volume each: {first}"
    );
    let checked = first["checked_objects"].as_u64().expect("checked");
    assert!(checked > 0 && checked < objects, "about a third: {first}");
    assert!(first["coverage_percent"].as_f64().expect("coverage") < 100.0);
    assert_eq!(first["never_checked"].as_u64(), Some(objects - checked));
    // Each run reads at least a third of the bytes.
    let total = first["bytes"].as_u64().expect("bytes");
    assert!(
        first["checked_bytes"].as_u64().expect("bytes") * 3 >= total,
        "{first}"
    );

    let second = scrub(1);
    let third = scrub(2);
    assert_eq!(third["never_checked"], 0, "{third}");
    assert_eq!(third["coverage_percent"], 100.0, "{third}");
    assert_eq!(third["covered_objects"].as_u64(), Some(objects));
    let oldest = third["oldest_check_hours"].as_f64().expect("oldest");
    assert!(
        (47.0..=49.0).contains(&oldest),
        "checked two days ago: {third}"
    );
    let sum: u64 = [&first, &second, &third]
        .iter()
        .map(|r| r["checked_objects"].as_u64().expect("checked"))
        .sum();
    assert!(sum >= objects, "{first}\n{second}\n{third}");
    assert_eq!(scrub_record(&s)["coverage_percent"], 100.0);
    let state: serde_json::Value = serde_json::from_slice(
        &fs::read(s.path("offsite/reports/scrub/state.json")).expect("state"),
    )
    .expect("JSON");
    assert_eq!(
        state["checked"].as_object().expect("checked").len() as u64,
        objects
    );

    // Three days after the first run, what it checked is due again, whatever the budget.
    let fourth = scrub(3);
    assert!(
        fourth["checked_objects"].as_u64() >= first["checked_objects"].as_u64(),
        "{fourth}"
    );
    assert_eq!(fourth["coverage_percent"], 100.0, "{fourth}");
    // Long unattended: everything is overdue, so one run checks it all.
    let late = scrub(30);
    assert_eq!(late["checked_objects"].as_u64(), Some(objects), "{late}");
}

fn s3_yaml(bucket: &str) -> String {
    format!(
        "store:\n  s3: {{ bucket: {bucket}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: test, secret_access_key: test }}",
        endpoint()
    )
}

fn s3_get(bucket: &TestBucket, key: &str) -> Vec<u8> {
    runtime().block_on(async {
        let o = bucket
            .client()
            .get_object()
            .bucket(&bucket.name)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
        o.body.collect().await.expect("body").into_bytes().to_vec()
    })
}

fn s3_put(bucket: &TestBucket, key: &str, data: Vec<u8>) {
    runtime()
        .block_on(
            bucket
                .client()
                .put_object()
                .bucket(&bucket.name)
                .key(key)
                .body(data.into())
                .send(),
        )
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

/// The same on S3: the offsite copy of a header-only volume rots, verify names it, the scrub
/// fetches the good copy from S3; then S3's copy rots and `verify --from-s3` names it.
#[test]
fn on_s3_a_rotten_header_only_volume_is_named_and_fetched_again() {
    let bucket = TestBucket::new("scrub-s3");
    let s = Setup::new("scrub-s3");
    let src = s.path("src");
    write(&src, "a.txt", b"alpha\n");
    write(&src, "d/b.txt", b"bravo\n");
    s.config_with_store(
        &s3_yaml(&bucket.name),
        &format!("trees: [{{ name: www, path: '{}' }}]", src.display()),
    );
    settle();
    push(&s);
    let inc = push(&s);
    let office = s.write(
        "office.yaml",
        &format!(
            "host: office\n{}\noffice:\n  offsite_dir: offsite\n  decryption_key: keys/office.secret.asc\n  hosts: {{ {h}: keys/{h}.cert.asc }}\n  scrub_days: 1\n",
            s3_yaml(&bucket.name),
            h = s.host
        ),
    );
    s.offsite_with(&office, &["pull"], &[]).expect(0);
    let rel = format!("{}/{inc}/files/www/vol-00001.tar.zst.pgp", s.host);
    let local = s.path(&format!("offsite/{rel}"));
    let good = s3_get(&bucket, &format!("prod/{rel}"));

    flip(&local);
    let bad = s.offsite_with(&office, &["verify", "--host", &s.host], &[]);
    let bad = bad.expect(1);
    assert!(bad.stderr.contains(&rel), "names {rel}: {}", bad.stderr);

    let run = s
        .offsite_with(&office, &["--json", "verify", "--scrub"], &[])
        .expect(0);
    assert_eq!(
        json(&run)["repaired"][0]["key"],
        rel.as_str(),
        "{}",
        run.stdout
    );
    assert_eq!(fs::read(&local).expect("local copy"), good);
    s.offsite_with(&office, &["verify", "--host", &s.host], &[])
        .expect(0);

    let mut rotten = good.clone();
    let mid = rotten.len() / 2;
    rotten[mid] ^= 0x01;
    s3_put(&bucket, &format!("prod/{rel}"), rotten);
    let bad = s.offsite_with(
        &office,
        &["verify", "--from-s3", "--host", &s.host, &inc],
        &[],
    );
    let bad = bad.expect(1);
    assert!(bad.stderr.contains(&rel), "names {rel}: {}", bad.stderr);
}

/// A rotten manifest in the offsite copy hides every object of its snapshot from the scrub: it is
/// fetched again from the store (signature checked) and the snapshot is scrubbed as usual.
#[test]
fn scrub_fetches_a_rotten_manifest_again() {
    let s = Setup::new("scrub-man");
    let src = s.path("src");
    write(&src, "a.txt", b"alpha\n");
    s.config(&format!(
        "trees: [{{ name: www, path: '{}' }}]",
        src.display()
    ));
    let id = push(&s);
    let office = office_config(&s, "  scrub_days: 1");
    s.offsite_with(&office, &["pull"], &[]).expect(0);
    let rel = format!("{}/{id}/manifest.json.pgp", s.host);
    let local = s.path(&format!("offsite/{rel}"));
    flip(&local);

    let run = s
        .offsite_with(&office, &["--json", "verify", "--scrub"], &[])
        .expect(0);
    let r = json(&run);
    assert_eq!(r["repaired"][0]["key"], rel.as_str(), "{r}");
    assert_eq!(
        r["objects"], r["checked_objects"],
        "its objects are scrubbed too: {r}"
    );
    assert_eq!(sha256(&local), sha256(&s.path(&format!("store/{rel}"))));
    s.offsite_with(&office, &["verify"], &[]).expect(0);
}
