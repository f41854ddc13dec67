//! Nothing left behind: what a push killed mid-write leaves in a local store (temporary files
//! beside the objects they were to become) is listed by `snapshots`, reported by pull, and removed
//! by the office's prune once `office.abandon_after` has passed without progress, while every
//! complete snapshot stays and restores.

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::cli::Setup;
use crate::common::db::{PgDb, PG_RESTORE_URL, PG_URL};
use crate::common::s3::{endpoint, runtime, TestBucket, ACCESS_KEY, SECRET_KEY};
use crate::common::tree::{assert_same, describe};
use crate::faults::{dumps_started, held_pg_dump, push_config, spawn, wait_exit, wait_for};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Temporary files anywhere in the store.
fn partials(s: &Setup) -> Vec<String> {
    s.store_files()
        .into_iter()
        .map(|p| p.display().to_string())
        .filter(|p| p.contains(".partial-"))
        .collect()
}

#[test]
fn a_killed_push_leaves_temporary_files_that_are_listed_reported_and_pruned_after_abandon_after() {
    let pg = PgDb::new("fault_left");
    pg.exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2), (3)");
    let s = Setup::new("fault-left");
    let host = s.host.clone();
    let fake = held_pg_dump(&s);
    let push = push_config(
        &s,
        &format!(
            "postgres: [{{ url: '{PG_URL}', databases: [{}], pg_dump: '{fake}' }}]",
            pg.name
        ),
    );
    let office = s.write(
        "office.yaml",
        &format!(
            "host: {host}\nstore: {{ local: store }}\nstate_dir: state\nencryption: {{ recipients: [keys/office.cert.asc] }}\noffice:\n  offsite_dir: offsite\n  decryption_key: keys/office.secret.asc\n  hosts: {{ {host}: keys/{host}.cert.asc }}\n  retention: {{ keep_last: 3 }}\n  scratch: {{ postgres: '{PG_RESTORE_URL}' }}\n"
        ),
    );
    let office_run = |args: &[&str]| s.offsite_with(&office, args, &[]);

    // A first night that worked.
    std::fs::write(s.path("release"), "").expect("release");
    s.offsite_with(&push, &["push"], &[]).expect(0);
    std::fs::remove_file(s.path("release")).expect("hold the next dump");
    let good: Vec<String> = s.local_snapshots().into_iter().map(|(id, _)| id).collect();
    assert_eq!(good.len(), 1, "{good:?}");

    // The next night's push is killed while its dump's object is being written.
    let mut p = spawn(&s, &push, &["push"], "killed");
    wait_for(60, "the second dump to start", || dumps_started(&s) == 2);
    wait_for(30, "the dump's temporary file", || !partials(&s).is_empty());
    p.child.kill().expect("SIGKILL");
    assert_eq!(wait_exit(&mut p.child, 10).expect("killed").code(), None);
    std::fs::write(s.path("release"), "").expect("let the held pg_dump go");
    let left = partials(&s);
    assert_eq!(left.len(), 1, "{left:?}");

    // snapshots: the killed push's snapshot is there, incomplete, with its unfinished write.
    let listed = office_run(&["--json", "snapshots", "--all"]).expect(0);
    let rows = json(&listed.stdout);
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let dead = rows
        .iter()
        .find(|r| r["complete"] == false)
        .unwrap_or_else(|| panic!("no incomplete snapshot listed: {rows:#?}"));
    assert_eq!(dead["unfinished_writes"], 1, "{dead:#}");
    let write = &dead["unfinished"][0];
    assert_eq!(write["kind"], "temporary file", "{dead:#}");
    assert!(
        left[0].ends_with(write["handle"].as_str().unwrap_or("?")),
        "{left:?} {write}"
    );
    assert!(
        write["key"]
            .as_str()
            .is_some_and(|k| k.ends_with(&format!("db/postgres/{}.sql.zst.pgp", pg.name))),
        "{write}"
    );
    let table = office_run(&["snapshots"]).expect(0);
    assert!(
        table.stdout.contains("1 unfinished write(s)") && table.stdout.contains("incomplete"),
        "{}",
        table.stdout
    );
    let all = office_run(&["snapshots", "--all"]).expect(0);
    assert!(
        all.stdout.contains("unfinished temporary file"),
        "{}",
        all.stdout
    );

    // pull reports it, still young: maybe a push in progress.
    let pulled = office_run(&["--json", "pull"]).expect(0);
    let record = json(&pulled.stdout);
    let incomplete = &record["hosts"][0]["incomplete"];
    assert_eq!(incomplete.as_array().map(Vec::len), Some(1), "{record:#}");
    assert_eq!(incomplete[0]["unfinished_writes"], 1, "{record:#}");
    assert_eq!(incomplete[0]["abandoned"], false, "{record:#}");

    // prune leaves a young one alone: its push may still be running.
    office_run(&["prune"]).expect(0);
    assert_eq!(partials(&s), left);

    // Three days without progress: abandoned, and prune removes it whole.
    let ok = Command::new("touch")
        .args(["-d", "3 days ago"])
        .arg(s.path("store").join(&left[0]))
        .status()
        .is_ok_and(|st| st.success());
    assert!(ok, "touch");
    let pulled = json(&office_run(&["--json", "pull"]).expect(0).stdout);
    assert_eq!(
        pulled["hosts"][0]["incomplete"][0]["abandoned"], true,
        "{pulled:#}"
    );
    let pruned = office_run(&["--json", "prune"]).expect(0);
    let report = json(&pruned.stdout);
    let removed = &report["stores"][0]["hosts"][0]["unfinished"];
    assert_eq!(removed[0]["status"], "deleted", "{report:#}");
    assert_eq!(partials(&s), Vec::<String>::new(), "{:?}", s.store_files());
    let snaps: Vec<(String, bool)> = s.local_snapshots();
    assert_eq!(
        snaps,
        vec![(good[0].clone(), true)],
        "only the good night is left"
    );

    // And it still restores.
    let verified = json(&office_run(&["--json", "verify"]).expect(0).stdout);
    assert_eq!(
        verified[0]["Ok"]["snapshot"],
        good[0].as_str(),
        "{verified:#}"
    );
    assert_eq!(verified[0]["Ok"]["ok"], true, "{verified:#}");
    let listed = json(
        &office_run(&["--json", "snapshots", "--all"])
            .expect(0)
            .stdout,
    );
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed:#}");
}

/// Pending multipart uploads in the bucket: (key, upload id).
fn uploads(bucket: &TestBucket) -> Vec<(String, String)> {
    let listed = runtime()
        .block_on(
            bucket
                .client()
                .list_multipart_uploads()
                .bucket(&bucket.name)
                .send(),
        )
        .expect("listing multipart uploads");
    listed
        .uploads()
        .iter()
        .filter_map(|u| Some((u.key()?.to_string(), u.upload_id()?.to_string())))
        .collect()
}

#[test]
fn a_push_killed_mid_upload_leaves_a_multipart_upload_the_office_lists_and_aborts_after_abandon_after(
) {
    let bucket = TestBucket::new("fault-left");
    let s = Setup::new("fault-left-s3");
    let store = format!(
        "store:\n  s3: {{ bucket: {}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: '{ACCESS_KEY}', secret_access_key: '{SECRET_KEY}', part_size: 5MiB, parts_in_flight: 2 }}",
        bucket.name,
        endpoint()
    );
    // The office's keys go under its section (config_with_store ends with it), then the tree.
    s.config_with_store(
        &store,
        "  offsite_dir: offsite\n  retention: { keep_last: 3 }\ntrees: [{ name: www, path: www }]",
    );
    let push = s.write(
        "push.yaml",
        &format!(
            "host: {}\n{store}\nstate_dir: state\nencryption:\n  recipients: [keys/office.cert.asc]\n  signing_key: keys/{}.secret.asc\ntrees: [{{ name: www, path: www }}]\n",
            s.host, s.host
        ),
    );
    s.write("www/index.html", "night one\n");
    s.offsite(&["push"]).expect(0);
    let before = describe(&s.path("www"));

    // 48 MiB that zstd cannot shrink: ten parts, so the upload is under way when push dies.
    let mut data = vec![0u8; 48 << 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .expect("random bytes");
    std::fs::write(s.path("big.bin"), &data).expect("writing the big file");
    std::fs::rename(s.path("big.bin"), s.path("www/big.bin")).expect("moving it into the tree");
    let mut p = spawn(&s, &push, &["push"], "killed");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (key, upload_id) = loop {
        if let Some(found) = uploads(&bucket).into_iter().next() {
            break found;
        }
        assert!(
            p.running(),
            "push ended before its upload began:\n{}",
            p.stderr()
        );
        assert!(
            Instant::now() < deadline,
            "no multipart upload began in 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    p.child.kill().expect("SIGKILL");
    assert_eq!(wait_exit(&mut p.child, 10).expect("killed").code(), None);
    assert_eq!(uploads(&bucket), vec![(key.clone(), upload_id.clone())]);

    // The office lists it in the snapshot it belonged to, and pull reports it.
    let listed = json(
        &s.offsite(&["--json", "snapshots", "--all"])
            .expect(0)
            .stdout,
    );
    let dead = listed
        .as_array()
        .and_then(|a| a.iter().find(|r| r["complete"] == false))
        .unwrap_or_else(|| panic!("no incomplete snapshot listed: {listed:#}"));
    assert_eq!(
        dead["unfinished"][0]["kind"], "multipart upload",
        "{dead:#}"
    );
    assert_eq!(
        dead["unfinished"][0]["handle"],
        upload_id.as_str(),
        "{dead:#}"
    );
    assert!(
        key.ends_with(dead["unfinished"][0]["key"].as_str().unwrap_or("?")),
        "{dead:#}"
    );
    let record = json(&s.offsite(&["--json", "pull"]).expect(0).stdout);
    let incomplete = &record["hosts"][0]["incomplete"][0];
    assert_eq!(incomplete["unfinished_writes"], 1, "{record:#}");
    assert_eq!(incomplete["abandoned"], false, "{record:#}");

    // Today's prune leaves it: it may be a push still uploading.
    let today = s.offsite(&["--json", "prune"]).expect(0);
    assert_eq!(uploads(&bucket).len(), 1, "{}", today.stdout);

    // Three days later by the office's clock, prune aborts it; the good night stays.
    let pruned = s
        .offsite_under(&["faketime", "-f", "+3d"], &["--json", "prune"])
        .expect(0);
    assert!(pruned.stdout.contains(&upload_id), "{}", pruned.stdout);
    assert_eq!(uploads(&bucket), Vec::new(), "the upload was aborted");
    let listed = json(
        &s.offsite(&["--json", "snapshots", "--all"])
            .expect(0)
            .stdout,
    );
    let rows = listed.as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{listed:#}");
    assert_eq!(rows[0]["complete"], true, "{listed:#}");
    let to = s.path("back");
    s.offsite(&[
        "restore",
        "latest",
        "--tree",
        "www",
        "--to",
        &to.to_string_lossy(),
    ])
    .expect(0);
    assert_same(
        &before,
        &describe(&to),
        "the first night, restored after the prune",
    );
}
