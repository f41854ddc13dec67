//! Office side against real servers: snapshots pushed to S3 (moto) are pulled into the offsite copy
//! and proven restorable in scratch databases; tampering, forgery and interruptions are caught.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::cli::{bin, Setup};
use crate::common::db::{
    fixture, psql, MyDb, PgDb, MY_RESTORE_URL, MY_URL, PG_RESTORE_URL, PG_URL,
};
use crate::common::s3::{endpoint, runtime, TestBucket};

fn s3_yaml(bucket: &str) -> String {
    format!(
        "store:\n  s3: {{ bucket: {bucket}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: test, secret_access_key: test, part_size: 5MiB }}\n",
        endpoint()
    )
}

/// A push config for `host`, signing with `signer`'s key.
fn push_config(
    s: &Setup,
    bucket: &str,
    host: &str,
    signer: &str,
    sources: &str,
) -> std::path::PathBuf {
    s.write(
        &format!("{host}.yaml"),
        &format!(
            "host: {host}\n{}state_dir: state-{host}\nencryption: {{ recipients: [keys/office.cert.asc], signing_key: keys/{signer}.secret.asc }}\n{sources}\n",
            s3_yaml(bucket)
        ),
    )
}

/// The office config: offsite copy in `offsite/`, scratch servers, the given hosts and extra lines.
fn office_config(s: &Setup, bucket: &str, hosts: &[&str], extra: &str) -> std::path::PathBuf {
    let hosts: Vec<String> = hosts
        .iter()
        .map(|h| format!("{h}: keys/{h}.cert.asc"))
        .collect();
    s.write(
        "office.yaml",
        &format!(
            "host: office\n{}office:\n  offsite_dir: offsite\n  decryption_key: keys/office.secret.asc\n  hosts: {{ {} }}\n  scratch: {{ postgres: '{PG_RESTORE_URL}', mysql: '{MY_RESTORE_URL}' }}\n  parallel_downloads: 2\n{extra}\n",
            s3_yaml(bucket),
            hosts.join(", ")
        ),
    )
}

fn json(run: &crate::common::cli::Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr))
}

fn scratch_dbs(host: &str) -> Vec<String> {
    let out = psql("postgres")
        .args([
            "-At",
            "-c",
            &format!(
                "SELECT datname FROM pg_database WHERE datname LIKE 'offsite_verify_{}%'",
                host.replace('-', "_")
            ),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn pulled_snapshots_are_proven_restorable() {
    let bucket = TestBucket::new("office-e2e");
    let pg = PgDb::new("off");
    pg.load(&fixture("postgres/shop.sql"));
    let my = MyDb::new("off");
    my.load(&fixture("mysql/shop.sql"));
    let s = Setup::new("pv-a");
    let sources = format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]\nmysql: [{{ url: '{MY_URL}', databases: [{}] }}]\ntrees: [{{ name: www, path: '{}' }}]",
        pg.name,
        my.name,
        fixture("www").display()
    );
    let push = push_config(&s, &bucket.name, "pv-a", "pv-a", &sources);
    assert_eq!(
        s.offsite_with(&push, &["push"], &[]).code,
        3,
        "MyISAM warning: committed"
    );

    let checks = format!(
        "  checks:\n    - {{ host: pv-a, database: postgres/{}, sql: 'select count(*) from sales.orders', expect: '= 300' }}\n    - {{ host: pv-a, database: mysql/{}, sql: 'select count(*) from customers', expect: '> 0' }}",
        pg.name, my.name
    );
    let office = office_config(&s, &bucket.name, &["pv-a"], &checks);
    let pulled = s.offsite_with(&office, &["--json", "pull"], &[]).expect(0);
    let p = json(&pulled);
    assert_eq!(p["hosts"][0]["pulled"].as_array().unwrap().len(), 1, "{p}");
    assert!(p["hosts"][0]["objects"].as_u64().unwrap() >= 4);

    let verified = s
        .offsite_with(&office, &["--json", "verify"], &[])
        .expect(0);
    let v = json(&verified);
    let r = &v[0]["Ok"];
    assert_eq!(r["ok"], true, "{v}");
    let dbs = r["databases"].as_array().unwrap();
    assert_eq!(dbs.len(), 2);
    for d in dbs {
        assert_eq!(d["ok"], true, "{d}");
        for (table, rows) in d["tables"].as_object().unwrap() {
            assert_eq!(rows["restored"], rows["expected"], "{table}");
        }
        assert_eq!(d["checks"][0]["ok"], true, "{d}");
    }
    let pgr = dbs.iter().find(|d| d["engine"] == "postgres").unwrap();
    assert_eq!(pgr["tables"]["sales.orders"]["restored"], 300);
    assert_eq!(pgr["checks"][0]["value"], "300");
    assert_eq!(r["trees"][0]["ok"], true);
    assert!(r["trees"][0]["files"].as_u64().unwrap() >= 5);
    assert!(
        scratch_dbs("pv-a").is_empty(),
        "scratch databases are dropped: {:?}",
        scratch_dbs("pv-a")
    );
    // The record is on disk for report, prune and refresh.
    let id = r["snapshot"].as_str().unwrap();
    assert!(s
        .path(&format!("offsite/reports/verify/pv-a/{id}.json"))
        .exists());

    // A second pull has nothing new to copy.
    let again = json(&s.offsite_with(&office, &["--json", "pull"], &[]).expect(0));
    assert_eq!(again["hosts"][0]["pulled"].as_array().unwrap().len(), 0);

    // A failing check fails verify, and says which.
    let failing = format!(
        "  checks:\n    - {{ host: pv-a, database: postgres/{}, sql: 'select count(*) from sales.orders', expect: '> 1000' }}",
        pg.name
    );
    let office = office_config(&s, &bucket.name, &["pv-a"], &failing);
    let run = s.offsite_with(&office, &["verify"], &[]).expect(1);
    assert!(run.stderr.contains("FAIL"), "{}", run.stderr);
}

#[test]
fn a_flipped_byte_on_s3_fails_pull_naming_the_object() {
    let bucket = TestBucket::new("office-flip");
    let pg = PgDb::new("flip_off");
    pg.load(&fixture("postgres/shop.sql"));
    let s = Setup::new("flip-a");
    let push = push_config(
        &s,
        &bucket.name,
        "flip-a",
        "flip-a",
        &format!(
            "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]",
            pg.name
        ),
    );
    s.offsite_with(&push, &["push"], &[]).expect(0);
    let key = {
        let out = runtime()
            .block_on(
                bucket
                    .client()
                    .list_objects_v2()
                    .bucket(&bucket.name)
                    .send(),
            )
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key())
            .find(|k| k.ends_with(".sql.zst.pgp"))
            .unwrap()
            .to_string()
    };
    let body = runtime().block_on(async {
        let o = bucket
            .client()
            .get_object()
            .bucket(&bucket.name)
            .key(&key)
            .send()
            .await
            .unwrap();
        o.body.collect().await.unwrap().into_bytes().to_vec()
    });
    let mut bad = body.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x20;
    runtime()
        .block_on(
            bucket
                .client()
                .put_object()
                .bucket(&bucket.name)
                .key(&key)
                .body(bad.into())
                .send(),
        )
        .unwrap();

    let office = office_config(&s, &bucket.name, &["flip-a"], "");
    let run = s.offsite_with(&office, &["pull"], &[]).expect(1);
    let short = key.trim_start_matches("prod/");
    assert!(
        run.stderr.contains(short),
        "names the object {short}: {}",
        run.stderr
    );
    assert!(run.stderr.contains("corrupt"), "{}", run.stderr);
    // Nothing of that snapshot counts as pulled: no manifest in the offsite copy, so verify (and so
    // refresh) has no snapshot to use.
    let verify = s.offsite_with(&office, &["verify"], &[]).expect(1);
    assert!(
        verify.stderr.contains("no complete snapshot"),
        "{}",
        verify.stderr
    );
}

#[test]
fn a_manifest_signed_by_an_unknown_key_is_rejected_before_any_download() {
    let bucket = TestBucket::new("office-forged");
    let pg = PgDb::new("forged");
    pg.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let s = Setup::new("forge-a");
    s.add_host_key("mallory");
    // Someone with S3 write access but not forge-a's key pushes under forge-a's name.
    let push = push_config(
        &s,
        &bucket.name,
        "forge-a",
        "mallory",
        &format!(
            "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]",
            pg.name
        ),
    );
    s.offsite_with(&push, &["push"], &[]).expect(0);
    let office = office_config(&s, &bucket.name, &["forge-a"], "");
    let run = s.offsite_with(&office, &["pull"], &[]).expect(1);
    assert!(run.stderr.contains("signature"), "{}", run.stderr);
    let copied: Vec<_> = walkdir(&s.path("offsite/forge-a"));
    assert!(copied.is_empty(), "nothing downloaded: {copied:?}");
}

#[test]
fn a_missing_manifest_is_reported_incomplete_then_abandoned() {
    let bucket = TestBucket::new("office-incomplete");
    let pg = PgDb::new("incomplete");
    pg.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let s = Setup::new("inc-a");
    let push = push_config(
        &s,
        &bucket.name,
        "inc-a",
        "inc-a",
        &format!(
            "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]",
            pg.name
        ),
    );
    s.offsite_with(&push, &["push"], &[]).expect(0);
    // As if push had died before its last write: the manifest is not there.
    let manifest = {
        let out = runtime()
            .block_on(
                bucket
                    .client()
                    .list_objects_v2()
                    .bucket(&bucket.name)
                    .send(),
            )
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key())
            .find(|k| k.ends_with("manifest.json.pgp"))
            .unwrap()
            .to_string()
    };
    runtime()
        .block_on(
            bucket
                .client()
                .delete_object()
                .bucket(&bucket.name)
                .key(&manifest)
                .send(),
        )
        .unwrap();

    let office = office_config(&s, &bucket.name, &["inc-a"], "");
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let p = json(
        &s.offsite_with(&office, &["--json", "pull"], &[("OFFSITE_NOW", &fmt(now))])
            .expect(0),
    );
    assert_eq!(p["hosts"][0]["incomplete"][0]["abandoned"], false, "{p}");
    // office.abandon_after (48h by default) decides, the same time after which prune removes it.
    let short = office_config(&s, &bucket.name, &["inc-a"], "  abandon_after: 2h");
    let p = json(
        &s.offsite_with(
            &short,
            &["--json", "pull"],
            &[("OFFSITE_NOW", &fmt(now + time::Duration::hours(3)))],
        )
        .expect(0),
    );
    assert_eq!(p["hosts"][0]["incomplete"][0]["abandoned"], true, "{p}");
    let office = office_config(&s, &bucket.name, &["inc-a"], "");
    let p = json(
        &s.offsite_with(
            &office,
            &["--json", "pull"],
            &[("OFFSITE_NOW", &fmt(now + time::Duration::hours(47)))],
        )
        .expect(0),
    );
    assert_eq!(p["hosts"][0]["incomplete"][0]["abandoned"], false, "{p}");
    let later = now + time::Duration::hours(49);
    let run = s
        .offsite_with(&office, &["pull"], &[("OFFSITE_NOW", &fmt(later))])
        .expect(0);
    assert!(run.stderr.contains("ABANDONED"), "{}", run.stderr);
    let verify = s.offsite_with(&office, &["verify"], &[]).expect(1);
    assert!(
        verify.stderr.contains("no complete snapshot"),
        "never restored as if complete: {}",
        verify.stderr
    );
}

#[test]
fn the_wrong_office_key_is_a_clear_error() {
    let bucket = TestBucket::new("office-wrongkey");
    let pg = PgDb::new("wrongkey");
    pg.exec("CREATE TABLE t (x int)");
    let s = Setup::new("wk-a");
    let push = push_config(
        &s,
        &bucket.name,
        "wk-a",
        "wk-a",
        &format!(
            "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]",
            pg.name
        ),
    );
    s.offsite_with(&push, &["push"], &[]).expect(0);
    s.add_host_key("other-office");
    let office = office_config(&s, &bucket.name, &["wk-a"], "");
    let text = std::fs::read_to_string(&office)
        .unwrap()
        .replace("keys/office.secret.asc", "keys/other-office.secret.asc");
    std::fs::write(&office, text).unwrap();
    let run = s.offsite_with(&office, &["pull"], &[]).expect(1);
    assert!(
        run.stderr.contains("none of the decryption keys"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_interrupted_pull_resumes_without_downloading_again() {
    let bucket = TestBucket::new("office-resume");
    let s = Setup::new("res-a");
    // A tree of several volumes (1 MiB each) so that the snapshot has many objects.
    let tree = s.path("tree");
    std::fs::create_dir_all(&tree).unwrap();
    for i in 0..6 {
        let data: Vec<u8> = (0..900_000u32)
            .map(|x| (x.wrapping_mul(2654435761).wrapping_add(i) >> 13) as u8)
            .collect();
        std::fs::write(tree.join(format!("f{i}.bin")), data).unwrap();
    }
    let push = push_config(
        &s,
        &bucket.name,
        "res-a",
        "res-a",
        &format!(
            "trees: [{{ name: t, path: '{}', volume_size: 1MiB }}]",
            tree.display()
        ),
    );
    s.offsite_with(&push, &["push"], &[]).expect(0);
    let office = office_config(&s, &bucket.name, &["res-a"], "");

    // A complete pull elsewhere gives us the objects an interrupted pull would have left behind.
    let full = s.write(
        "full.yaml",
        &std::fs::read_to_string(&office)
            .unwrap()
            .replace("offsite_dir: offsite", "offsite_dir: full"),
    );
    s.offsite_with(&full, &["pull"], &[]).expect(0);
    let objects = walkdir(&s.path("full/res-a"));
    let volumes: Vec<_> = objects
        .iter()
        .filter(|p| p.to_string_lossy().contains("vol-"))
        .collect();
    assert!(volumes.len() >= 5, "{objects:?}");
    for v in &volumes[..3] {
        let rel = v.strip_prefix(s.path("full")).unwrap();
        let dst = s.path("offsite").join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(v, &dst).unwrap();
    }
    // And a partial download that a kill left behind.
    let partial = s
        .path("offsite")
        .join(volumes[3].strip_prefix(s.path("full")).unwrap())
        .with_file_name(".vol-00004.tar.zst.pgp.partial-deadbeef");
    std::fs::write(&partial, b"half").unwrap();

    let p = json(&s.offsite_with(&office, &["--json", "pull"], &[]).expect(0));
    let h = &p["hosts"][0];
    assert_eq!(h["skipped_objects"], 3, "{p}");
    assert_eq!(
        h["objects"].as_u64().unwrap() as usize,
        objects.len() - 1 - 3,
        "only the missing objects: {p}"
    );
    assert!(!partial.exists(), "stale partial download removed");
    s.offsite_with(&office, &["verify"], &[]).expect(0);
}

#[test]
fn a_killed_verify_leaves_scratch_that_the_next_run_drops() {
    let bucket = TestBucket::new("office-killverify");
    let pg = PgDb::new("killverify");
    pg.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let s = Setup::new("kv-a");
    let push = push_config(
        &s,
        &bucket.name,
        "kv-a",
        "kv-a",
        &format!(
            "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]",
            pg.name
        ),
    );
    s.offsite_with(&push, &["push"], &[]).expect(0);
    // A check that takes a while keeps the scratch database alive long enough to kill verify.
    let slow = format!("  checks:\n    - {{ host: kv-a, database: postgres/{}, sql: 'select count(*) from pg_sleep(20)', expect: '= 1' }}", pg.name);
    let office = office_config(&s, &bucket.name, &["kv-a"], &slow);
    s.offsite_with(&office, &["pull"], &[]).expect(0);
    let mut child = Command::new(bin())
        .arg("-c")
        .arg(&office)
        .arg("verify")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while scratch_dbs("kv-a").is_empty() {
        assert!(
            Instant::now() < deadline,
            "verify never created its scratch database"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SIGKILL: no chance to clean up.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let left = scratch_dbs("kv-a");
    assert_eq!(left.len(), 1, "{left:?}");

    let quick = office_config(&s, &bucket.name, &["kv-a"], "");
    let run = s.offsite_with(&quick, &["verify"], &[]).expect(0);
    assert!(
        run.stderr
            .contains(&format!("dropped stale scratch database {}", left[0])),
        "{}",
        run.stderr
    );
    assert!(scratch_dbs("kv-a").is_empty());
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walkdir(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
