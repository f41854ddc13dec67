//! The office trusts nothing production claims. Each test does what an attacker holding a hacked
//! host's signing key and put credential would do, with stock gpg, and then checks what a user
//! would check: which snapshots still exist, and that they restore.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::cli::{Run, Setup};
use crate::common::db::{fixture, MyDb, PgDb, MY_RESTORE_URL, MY_URL, PG_RESTORE_URL, PG_URL};
use crate::common::s3::{endpoint, runtime, TestBucket, LIBFAKETIME};
use time::macros::format_description;
use time::OffsetDateTime;

const HOST: &str = "web1";

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr))
}

/// One config for both roles (push gets it without `office:`): a tree `www`, the given store, and
/// an office section with `office_extra` lines.
fn config(s: &Setup, store: &str, office_extra: &str) {
    s.write(
        "config.yaml",
        &format!(
            "host: {HOST}\n{store}\nstate_dir: state\nencryption: {{ recipients: [keys/office.cert.asc], signing_key: keys/{HOST}.secret.asc }}\ntrees:\n  - {{ name: www, path: tree }}\noffice:\n  offsite_dir: offsite\n  decryption_key: keys/office.secret.asc\n  hosts: {{ {HOST}: keys/{HOST}.cert.asc }}\n{office_extra}\n"
        ),
    );
}

fn s3_store(bucket: &str) -> String {
    format!(
        "store:\n  s3: {{ bucket: {bucket}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: test, secret_access_key: test }}",
        endpoint()
    )
}

/// The id of the snapshot a `--json push` made.
fn snapshot_id(run: &Run) -> String {
    json(run)["snapshot"]
        .as_str()
        .unwrap_or_else(|| panic!("no snapshot id in {}", run.stdout))
        .to_string()
}

/// Pushes a full snapshot of `tree/` after writing `content` into tree/page.html; returns its id.
fn push(s: &Setup, content: &str, env: &[(&str, &str)]) -> String {
    s.write("tree/page.html", content);
    snapshot_id(&s.offsite_env(&["--json", "push", "--full"], env).expect(0))
}

trait RestoreTo {
    fn expect_restore(&self, id: &str, to: &Path) -> Run;
}

impl RestoreTo for Setup {
    fn expect_restore(&self, id: &str, to: &Path) -> Run {
        let to = to.to_string_lossy().into_owned();
        self.offsite(&["restore", "--snapshot", id, "--tree", "www", "--to", &to])
    }
}

fn page_of(s: &Setup, id: &str) -> String {
    let to = s.path(&format!("restored-{id}"));
    s.expect_restore(id, &to).expect(0);
    std::fs::read_to_string(to.join("page.html")).expect("restored page.html")
}

/// The attacker's kit: stock gpg holding the host's signing key (a hacked host has it) and the
/// office's public certificate. `manifest` is the plaintext the host itself wrote; the result is
/// sealed exactly as offsite seals a manifest: signed by the host, encrypted to the office.
fn seal_as(s: &Setup, signer: &str, manifest: &[u8], out: &Path) {
    let home = s.gnupg_home_with(
        &format!("attacker-{signer}"),
        &format!("keys/{signer}.secret.asc"),
    );
    let plain = s.path("forged-manifest.json");
    std::fs::write(&plain, manifest).expect("writing the forged manifest");
    let out_status = Command::new("gpg")
        .env("GNUPGHOME", &home)
        .args([
            "--batch",
            "--yes",
            "--trust-model",
            "always",
            // offsite writes no compressed packets and reads none (no decompression bombs): the
            // attacker mimics what push writes.
            "--compress-algo",
            "none",
            "--sign",
            "--encrypt",
        ])
        .arg("--recipient-file")
        .arg(s.path("keys/office.cert.asc"))
        .arg("--output")
        .arg(out)
        .arg(&plain)
        .output()
        .expect("gpg --sign --encrypt");
    assert!(
        out_status.status.success(),
        "gpg: {}",
        String::from_utf8_lossy(&out_status.stderr)
    );
}

/// The manifest the host wrote, read back with the office key (the host knows it: it wrote it),
/// changed by `edit`.
fn manifest_edited(s: &Setup, sealed: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let run = s.sh(&format!(
        "gpg --batch --quiet --skip-verify --decrypt '{}'",
        sealed.display()
    ));
    assert_eq!(run.code, 0, "gpg --decrypt: {}", run.stderr);
    let mut m: serde_json::Value = serde_json::from_str(&run.stdout).expect("manifest JSON");
    edit(&mut m);
    serde_json::to_vec(&m).expect("manifest JSON")
}

/// The manifest the host wrote, with its `snapshot` field replaced.
fn manifest_renamed(s: &Setup, sealed: &Path, to_id: &str) -> Vec<u8> {
    manifest_edited(s, sealed, |m| {
        m["snapshot"] = serde_json::Value::String(to_id.to_string())
    })
}

/// Every file under `dir`, relative to it.
fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn s3_keys(bucket: &TestBucket, prefix: &str) -> Vec<String> {
    let out = runtime()
        .block_on(
            bucket
                .client()
                .list_objects_v2()
                .bucket(&bucket.name)
                .prefix(prefix)
                .send(),
        )
        .expect("list_objects_v2");
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
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
            .expect("get_object");
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
                .body(aws_sdk_s3::primitives::ByteStream::from(data))
                .send(),
        )
        .expect("put_object");
}

/// Snapshot ids of HOST in the offsite copy, with whether each is complete.
fn offsite_ids(s: &Setup) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(s.path("offsite").join(HOST))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn s3_ids(bucket: &TestBucket) -> Vec<String> {
    let mut ids: Vec<String> = s3_keys(bucket, &format!("prod/{HOST}/"))
        .iter()
        .filter_map(|k| k.split('/').nth(2).map(str::to_string))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[test]
fn forged_future_ids_cannot_cost_a_real_snapshot() {
    let bucket = TestBucket::new("trust-forged");
    let s = Setup::new(HOST);
    config(&s, &s3_store(&bucket.name), "  retention: { keep_last: 3 }");
    let real: Vec<String> = (1..=3)
        .map(|n| push(&s, &format!("night {n}"), &[]))
        .collect();

    // The attack: copies of the newest real snapshot re-sealed under ids dated next December,
    // each manifest's `snapshot` edited, signed with the host's key, encrypted to the office.
    let sealed = s.path("real-manifest.pgp");
    std::fs::write(
        &sealed,
        s3_get(
            &bucket,
            &format!("prod/{HOST}/{}/manifest.json.pgp", real[2]),
        ),
    )
    .expect("saving the real manifest");
    let forged: Vec<String> = (1..=3)
        .map(|d| format!("202712{d:02}T020000Z-000{d}"))
        .collect();
    for id in &forged {
        for key in s3_keys(&bucket, &format!("prod/{HOST}/{}/", real[2])) {
            if key.ends_with("manifest.json.pgp") {
                continue;
            }
            let rel = key.splitn(4, '/').nth(3).expect("object key");
            s3_put(
                &bucket,
                &format!("prod/{HOST}/{id}/{rel}"),
                s3_get(&bucket, &key),
            );
        }
        let out = s.path(&format!("forged-{id}.pgp"));
        seal_as(&s, HOST, &manifest_renamed(&s, &sealed, id), &out);
        s3_put(
            &bucket,
            &format!("prod/{HOST}/{id}/manifest.json.pgp"),
            std::fs::read(&out).expect("forged manifest"),
        );
    }

    let office = s.offsite(&["office", "--no-refresh"]);
    assert_eq!(
        office.code, 1,
        "a quarantine must fail the office run\n{}",
        office.stderr
    );
    for id in &forged {
        assert!(
            office.stderr.contains(&format!("{HOST}/{id}: QUARANTINED")),
            "{id} not reported:\n{}",
            office.stderr
        );
    }
    // verify proved the real newest snapshot, not a forgery.
    let record = s
        .path("offsite/reports/verify")
        .join(HOST)
        .join(format!("{}.json", real[2]));
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).expect("verify record of the real newest"))
            .expect("record JSON");
    assert_eq!(rec["ok"], true, "{rec}");
    for id in &forged {
        assert!(!s
            .path(&format!("offsite/reports/verify/{HOST}/{id}.json"))
            .exists());
    }

    // Every real snapshot survives in both places and restores; the forgeries are kept as evidence.
    for (n, id) in real.iter().enumerate() {
        assert!(s3_ids(&bucket).contains(id), "{id} was deleted from S3");
        assert!(offsite_ids(&s).contains(id), "{id} was deleted offsite");
        assert_eq!(page_of(&s, id), format!("night {}", n + 1));
    }
    for id in &forged {
        assert!(s3_ids(&bucket).contains(id));
    }
    let latest = s.path("restored-latest");
    let run = s
        .offsite(&["restore", "--tree", "www", "--to", latest.to_str().unwrap()])
        .expect(0);
    assert_eq!(
        std::fs::read_to_string(latest.join("page.html")).unwrap(),
        "night 3",
        "{}",
        run.stderr
    );

    // What a person sees.
    let snaps = s.offsite(&["snapshots"]).expect(1);
    for id in &forged {
        let line = snaps
            .stdout
            .lines()
            .find(|l| l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not listed:\n{}", snaps.stdout));
        assert!(line.contains("QUARANTINED"), "{line}");
    }
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.path("offsite/reports/report.json")).expect("report.json"),
    )
    .expect("report JSON");
    let quarantined = report["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter(|w| w["kind"] == "quarantined")
        .count();
    assert_eq!(quarantined, 3, "{}", report["warnings"]);

    // A second night changes nothing: prune still counts only the real snapshots.
    s.offsite(&["office", "--no-refresh"]).expect(1);
    for id in &real {
        assert!(s3_ids(&bucket).contains(id) && offsite_ids(&s).contains(id));
    }

    // A person deletes the evidence once done with it; the real snapshots stay.
    let refused = s.offsite(&["prune", "--quarantined"]).expect(2);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    s.offsite(&["prune", "--quarantined", "--yes"]).expect(0);
    assert_eq!(s3_ids(&bucket), real);
    assert_eq!(offsite_ids(&s), real);
    s.offsite(&["snapshots"]).expect(0);
}

/// `20261204T153000Z-0abc` for the current time.
fn id_now(suffix: u16) -> String {
    let stamp = OffsetDateTime::now_utc()
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .expect("formatting an id");
    format!("{stamp}-{suffix:04x}")
}

#[test]
fn a_newer_snapshot_signed_by_another_key_never_blocks_latest() {
    let s = Setup::new(HOST);
    config(
        &s,
        "store: { local: store }",
        "  retention: { keep_last: 2 }\n  max_prune_fraction: 1",
    );
    s.add_host_key("mallory");
    let real: Vec<String> = (1..=2)
        .map(|n| push(&s, &format!("night {n}"), &[]))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1100));

    // Anyone with put access writes a newer snapshot, sealed with a key that is not the host's.
    let forged = id_now(0x0bad);
    let real_dir = s.path("store").join(HOST).join(&real[1]);
    let forged_dir = s.path("store").join(HOST).join(&forged);
    for rel in files(&real_dir) {
        if rel.ends_with("manifest.json.pgp") {
            continue;
        }
        let to = forged_dir.join(&rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(real_dir.join(&rel), &to).unwrap();
    }
    let manifest = manifest_renamed(&s, &real_dir.join("manifest.json.pgp"), &forged);
    seal_as(
        &s,
        "mallory",
        &manifest,
        &forged_dir.join("manifest.json.pgp"),
    );

    let to = s.path("restored");
    let run = s
        .offsite(&["restore", "--tree", "www", "--to", to.to_str().unwrap()])
        .expect(0);
    assert_eq!(
        std::fs::read_to_string(to.join("page.html")).unwrap(),
        "night 2"
    );
    assert!(
        run.stderr.contains(&format!("skipped {HOST}/{forged}")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&real[1]), "{}", run.stderr);

    let snaps = s.offsite(&["snapshots"]).expect(1);
    assert!(snaps.stdout.contains("INVALID"), "{}", snaps.stdout);

    // The office neither pulls it nor lets it block verify.
    let pull = s.offsite(&["pull"]).expect(1);
    assert!(
        pull.stderr
            .contains(&format!("{HOST}/{forged}: not pulled")),
        "{}",
        pull.stderr
    );
    assert!(!s.path("offsite").join(HOST).join(&forged).exists());
    let verify = s.offsite(&["--json", "verify"]);
    let v = json(&verify);
    assert_eq!(
        v[0]["Ok"]["snapshot"],
        real[1].as_str(),
        "{}",
        verify.stderr
    );
    assert_eq!(v[0]["Ok"]["ok"], true, "{}", verify.stderr);

    // Nor does retention count it: keep_last 2 keeps both real snapshots in the store.
    let prune = s.offsite(&["prune"]).expect(0);
    let left: Vec<String> = s.local_snapshots().into_iter().map(|(id, _)| id).collect();
    assert!(
        real.iter().all(|id| left.contains(id)) && left.contains(&forged),
        "{left:?}\n{}",
        prune.stdout
    );
}

/// Runs the real binary under libfaketime at `at` (the clock ticks from there).
fn at_time(s: &Setup, at: OffsetDateTime, args: &[&str]) -> Run {
    let stamp = at
        .format(format_description!(
            "@[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .expect("formatting a time");
    s.offsite_env(
        args,
        &[
            ("LD_PRELOAD", LIBFAKETIME),
            ("FAKETIME", &stamp),
            ("DONT_FAKE_MONOTONIC", "1"),
            ("TZ", "UTC"),
        ],
    )
}

/// Gives every file of a local store's snapshot the store time `t`: the store received it then.
fn received_at(s: &Setup, id: &str, t: OffsetDateTime) {
    let dir = s.path("store").join(HOST).join(id);
    for rel in files(&dir) {
        std::fs::File::options()
            .write(true)
            .open(dir.join(rel))
            .and_then(|f| f.set_modified(std::time::SystemTime::from(t)))
            .expect("setting the store time");
    }
}

#[test]
fn a_flood_of_valid_snapshots_cannot_push_out_history() {
    let s = Setup::new(HOST);
    config(
        &s,
        "store: { local: store }",
        "  retention: { keep_last: 7, keep_daily: 14 }",
    );
    // Keys made before the first backed-up day (a key is not valid before its creation).
    let now = OffsetDateTime::now_utc();
    std::fs::remove_dir_all(s.path("keys")).unwrap();
    for name in ["office", HOST] {
        at_time(
            &s,
            now - time::Duration::days(30),
            &["keygen", name, "--out", s.path("keys").to_str().unwrap()],
        )
        .expect(0);
    }
    // Five nights of history, one snapshot each, received by the store on those nights.
    let mut history = Vec::new();
    for days in (1..=5).rev() {
        let t = now - time::Duration::days(days);
        s.write("tree/page.html", &format!("{days} days ago"));
        let run = at_time(&s, t, &["--json", "push", "--full"]).expect(0);
        let id = json(&run)["snapshot"].as_str().unwrap().to_string();
        received_at(&s, &id, t);
        history.push((id, days));
    }
    // The flood: 20 validly signed snapshots today.
    let flood: Vec<String> = (1..=20)
        .map(|n| push(&s, &format!("flood {n}"), &[]))
        .collect();

    let office = s.offsite(&["office", "--no-refresh"]);
    assert_eq!(office.code, 1, "{}", office.stderr);
    assert!(
        office.stderr.contains("FLOOD: 20 snapshots"),
        "{}",
        office.stderr
    );
    assert!(
        office.stdout.contains("max_prune_fraction"),
        "prune must say why it stopped:\n{}",
        office.stdout
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path("offsite/reports/report.json")).unwrap())
            .unwrap();
    assert!(
        report["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["kind"] == "flood"),
        "{}",
        report["warnings"]
    );

    // keep_last 7 + keep_daily 14 drop 13 of the 25; one run deletes at most half (12), the oldest
    // of the flood first. Every night of history survives, in both places, and restores.
    let left: Vec<String> = s.local_snapshots().into_iter().map(|(id, _)| id).collect();
    assert_eq!(left.len(), 13, "{left:?}\n{}", office.stdout);
    assert_eq!(offsite_ids(&s), left);
    for (id, days) in &history {
        assert!(left.contains(id), "{id} ({days} days old) was deleted");
        assert_eq!(page_of(&s, id), format!("{days} days ago"));
    }
    assert!(left.contains(&flood[19]));
    assert!(!left.contains(&flood[0]));

    // A keep_last-only policy would count only the flood: while the host is flagged, history
    // older than the flood is held, whatever the policy says.
    config(
        &s,
        "store: { local: store }",
        "  retention: { keep_last: 7 }",
    );
    let prune = s.offsite(&["prune"]).expect(0);
    assert!(prune.stdout.contains("flooded on"), "{}", prune.stdout);
    let left: Vec<String> = s.local_snapshots().into_iter().map(|(id, _)| id).collect();
    for (id, days) in &history {
        assert!(
            left.contains(id),
            "{id} ({days} days old) was deleted:\n{}",
            prune.stdout
        );
    }
}

#[test]
fn a_rewritten_manifest_is_quarantined_and_deleting_it_keeps_what_real_snapshots_need() {
    let s = Setup::new(HOST);
    config(
        &s,
        "store: { local: store }",
        "  retention: { keep_last: 5 }",
    );
    s.write("tree/page.html", "full");
    // Older than the racy-file window, so the incremental points into the full for it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let full = snapshot_id(&s.offsite(&["--json", "push"]).expect(0));
    s.offsite(&["pull"]).expect(0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    s.write("tree/other.html", "incremental");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let inc = snapshot_id(&s.offsite(&["--json", "push"]).expect(0));

    // The full's manifest is written again (same bytes: an overwrite a put credential without the
    // If-None-Match deny can do, or a re-creation after prune): not what the office checked.
    let manifest = s
        .path("store")
        .join(HOST)
        .join(&full)
        .join("manifest.json.pgp");
    let bytes = std::fs::read(&manifest).expect("manifest");
    std::fs::write(&manifest, bytes).expect("rewriting the manifest");
    let pull = s.offsite(&["pull"]).expect(1);
    assert!(
        pull.stderr.contains(&format!("{HOST}/{full}: QUARANTINED"))
            && pull.stderr.contains("written again"),
        "{}",
        pull.stderr
    );

    // Deleting the quarantined snapshots keeps the one a real incremental points into.
    let run = s.offsite(&["prune", "--quarantined", "--yes"]).expect(0);
    assert!(run.stdout.contains("needed by"), "{}", run.stdout);
    assert!(s.path("store").join(HOST).join(&full).exists());
    assert!(s.path("offsite").join(HOST).join(&full).exists());
    assert_eq!(page_of(&s, &inc), "full");

    // A ledger the office's disk mangled does not stop a restore (a warning, the listing alone).
    std::fs::write(
        s.path("offsite/reports/ledger")
            .join(format!("{HOST}.json")),
        b"{ not json",
    )
    .expect("mangling the ledger");
    let to = s.path("after-mangling");
    let run = s
        .offsite(&["restore", "--tree", "www", "--to", to.to_str().unwrap()])
        .expect(0);
    assert!(run.stderr.contains("office ledger"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(to.join("page.html")).unwrap(),
        "full"
    );
}

#[test]
fn a_person_can_accept_a_quarantined_snapshot() {
    let s = Setup::new(HOST);
    config(&s, "store: { local: store }", "");
    let id = push(&s, "night 1", &[]);
    s.offsite(&["pull"]).expect(0);
    let manifest = s
        .path("store")
        .join(HOST)
        .join(&id)
        .join("manifest.json.pgp");
    let bytes = std::fs::read(&manifest).expect("manifest");
    std::fs::write(&manifest, bytes).expect("rewriting the manifest");
    s.offsite(&["pull"]).expect(1);
    s.offsite(&["verify"]).expect(1);

    let asked = s.offsite(&["accept", &id, "--host", HOST]).expect(2);
    assert!(asked.stderr.contains("--yes"), "{}", asked.stderr);
    s.offsite(&["accept", &id, "--host", HOST, "--yes"])
        .expect(0);
    s.offsite(&["pull"]).expect(0);
    let listing = s.offsite(&["snapshots"]).expect(0);
    assert!(
        !listing.stdout.contains("QUARANTINED"),
        "{}",
        listing.stdout
    );
    let verify = s.offsite(&["--json", "verify"]).expect(0);
    assert_eq!(json(&verify)[0]["Ok"]["snapshot"], id.as_str());
}

/// The row counts in a manifest are the host's claim; the office counts what the dump restores. A
/// hacked host that claims rows its dump does not hold (to make a truncated dump look whole, or to
/// hide that it is) gets a failed verify naming the table, and refresh refuses to load anything
/// while that newer night fails.
#[test]
fn row_counts_a_forged_manifest_claims_fail_verify_and_refresh_refuses() {
    let src = PgDb::new("claims");
    src.load(&fixture("postgres/shop.sql"));
    let dev = PgDb::named(&format!("{}_dev", src.name));
    let s = Setup::new(HOST);
    s.config(&format!(
        "  offsite_dir: offsite\n  scratch: {{ postgres: '{PG_RESTORE_URL}' }}\n  refresh:\n    - {{ from: '{HOST}:postgres/{db}', server: '{PG_RESTORE_URL}', database: '{dev}' }}\npostgres: [{{ url: '{PG_URL}', databases: [{db}] }}]",
        db = src.name,
        dev = dev.name,
    ));
    let first = snapshot_id(&s.offsite(&["--json", "push"]).expect(0));
    s.offsite(&["pull"]).expect(0);
    s.offsite(&["verify"]).expect(0);

    // The next night the host holds one order more, but its manifest claims ten times as many.
    src.exec("INSERT INTO sales.orders (customer_id, sku, qty) SELECT customer_id, sku, qty FROM sales.orders LIMIT 1");
    let second = snapshot_id(&s.offsite(&["--json", "push"]).expect(0));
    let sealed = s
        .path("store")
        .join(HOST)
        .join(&second)
        .join("manifest.json.pgp");
    let forged = manifest_edited(&s, &sealed, |m| {
        let tables = &mut m["databases"][0]["tables"];
        assert_eq!(tables["sales.orders"], 301, "{tables}");
        tables["sales.orders"] = serde_json::json!(3010);
        // And a table the dump does not have at all.
        tables["sales.ghosts"] = serde_json::json!(5);
    });
    seal_as(&s, HOST, &forged, &sealed);
    s.offsite(&["pull"]).expect(0);

    let run = s.offsite(&["--json", "verify"]).expect(1);
    let v = json(&run);
    let r = v
        .as_array()
        .and_then(|a| a.iter().find(|r| r["Ok"]["snapshot"] == second.as_str()))
        .map(|r| &r["Ok"])
        .unwrap_or_else(|| panic!("no result for {second}: {v}"));
    assert_eq!(r["ok"], false, "{r}");
    let orders = &r["databases"][0]["tables"]["sales.orders"];
    assert_eq!(
        (
            orders["expected"].as_u64(),
            orders["in_dump"].as_u64(),
            orders["restored"].as_u64()
        ),
        (Some(3010), Some(301), Some(301))
    );
    let error = r["databases"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(
            "sales.orders: the manifest says 3010, the dump holds 301, the restore has 301"
        ),
        "{r}"
    );
    assert!(
        error.contains(
            "sales.ghosts: the manifest says 5, the dump has no rows for it, not counted"
        ),
        "{r}"
    );
    // The report shows the claim and, beside it, what the dump held.
    s.offsite(&["report"]).expect(1);
    let html = std::fs::read_to_string(s.path("offsite/reports/report.html")).expect("report");
    assert!(
        html.contains("(dump: 301)"),
        "the report hides the office's count"
    );

    // refresh does not load the forged night, nor fall back quietly past it: it refuses, names
    // the snapshot that failed, and touches no dev database.
    let refused = json(&s.offsite(&["--json", "refresh"]).expect(2));
    let e = &refused["entries"][0];
    assert_eq!(e["rule"], "newer-failed", "{refused}");
    assert!(
        e["error"].as_str().unwrap_or_default().contains(&second),
        "{refused}"
    );
    assert!(!dev.exists(), "a dev database was created");
    // The records say which night proved restorable as claimed.
    for (id, ok) in [(&first, true), (&second, false)] {
        let path = s.path(&format!("offsite/reports/verify/{HOST}/{id}.json"));
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("verify record")).expect("JSON");
        assert_eq!(record["ok"], ok, "{record}");
    }
}

/// A manifest that leaves tables out claims nothing about them, so "the restore holds what the
/// manifest claims" would hold of any restore. verify counts the rows itself as the dump streams
/// into the scratch database: a MariaDB snapshot whose re-sealed manifest lists no tables fails,
/// naming every table the dump loads, while the honest night before it passes with the office's
/// count equal to the host's.
#[test]
fn row_counts_a_manifest_that_lists_no_tables_fails_verify_on_the_dumps_own_count() {
    let src = MyDb::new("omits");
    src.load(&fixture("mysql/shop.sql"));
    let s = Setup::new(HOST);
    s.config(&format!(
        "  offsite_dir: offsite\n  scratch: {{ mysql: '{MY_RESTORE_URL}' }}\nmysql: [{{ url: '{MY_URL}', databases: [{db}] }}]",
        db = src.name,
    ));
    // The fixture's MyISAM table is a warning (exit 3), not a failure.
    let first = snapshot_id(&s.offsite(&["--json", "push"]).expect(3));
    s.offsite(&["pull"]).expect(0);
    let v = json(&s.offsite(&["--json", "verify"]).expect(0));
    let honest = v[0]["Ok"].clone();
    assert_eq!(honest["snapshot"], first.as_str(), "{v}");
    let second = snapshot_id(&s.offsite(&["--json", "push"]).expect(3));
    let sealed = s
        .path("store")
        .join(HOST)
        .join(&second)
        .join("manifest.json.pgp");
    let mut claimed = serde_json::Value::Null;
    let forged = manifest_edited(&s, &sealed, |m| {
        claimed = m["databases"][0]["tables"].take();
        m["databases"][0]["tables"] = serde_json::json!({});
    });
    let claimed = claimed.as_object().cloned().unwrap_or_default();
    assert!(claimed.len() >= 3, "the host's own manifest: {claimed:?}");
    seal_as(&s, HOST, &forged, &sealed);
    s.offsite(&["pull"]).expect(0);

    let v = json(&s.offsite(&["--json", "verify"]).expect(1));
    let forged = v[0]["Ok"].clone();
    assert_eq!(forged["snapshot"], second.as_str(), "{v}");
    assert_eq!(forged["ok"], false, "{forged}");
    let db = &forged["databases"][0];
    let error = db["error"].as_str().unwrap_or_default();
    assert!(error.contains("row counts differ"), "{forged}");
    for (table, rows) in &claimed {
        let (honest_rows, forged_rows) = (
            &honest["databases"][0]["tables"][table],
            &db["tables"][table],
        );
        // The office's count is the host's honest one, and the restore holds it.
        assert_eq!(honest_rows["in_dump"], *rows, "{honest}");
        assert_eq!(honest_rows["restored"], *rows, "{honest}");
        assert_eq!(
            (&forged_rows["expected"], &forged_rows["in_dump"]),
            (&serde_json::json!(0), rows),
            "{forged}"
        );
        // Leaving out an empty table claims nothing false.
        if rows.as_u64() != Some(0) {
            assert!(
                error.contains(&format!(
                    "{table}: the manifest does not list it, the dump holds {rows}, the restore has {rows}"
                )),
                "{table} is not named: {error}"
            );
        }
    }
}
