//! Faults: one byte of what push sends changed on the way to S3 (a faulty NIC, a middlebox, RAM),
//! the length unchanged. push sends a CRC32C with every part and every PutObject, and S3 refuses a
//! body that does not match it. moto (5.2.5, which the tests pin) checks nothing: it stores the
//! changed bytes, answers 200 and echoes the sender's CRC32C back. What must hold either way: no
//! committed snapshot holds an object whose bytes differ from what push sent. push compares the
//! ETag (the MD5 of what the server stored) with the MD5 of what it sent: a part that arrived
//! changed goes out again; a PutObject cannot be written again (create-only), so the push fails.
//! The manifest is such a PutObject: one that arrived changed stays in the store, and must never be
//! taken for a snapshot.

use std::collections::BTreeMap;
use std::io::Read;

use crate::common::cli::Setup;
use crate::common::s3::{raw_client, runtime, PrivateMoto, ACCESS_KEY, SECRET_KEY};
use crate::common::tree::{assert_same, describe};
use crate::faults::proxy::{Fault, Proxy, Request};

const BUCKET: &str = "offsite-flip";

struct Rig {
    moto: PrivateMoto,
    proxy: Proxy,
    setup: Setup,
}

/// A moto server, a proxy to it (disarmed) with the byte-flip fault for the first request `pick`
/// accepts once armed, and a host pushing the tree `www` through it in 5 MiB parts.
fn rig(host: &str, pick: impl Fn(&Request) -> bool + Send + Sync + 'static) -> Rig {
    let moto = PrivateMoto::start();
    let admin = raw_client(&moto.endpoint, ACCESS_KEY, SECRET_KEY);
    runtime()
        .block_on(admin.create_bucket().bucket(BUCKET).send())
        .expect("create bucket");
    let proxy = Proxy::start(&moto.endpoint, BUCKET, Fault::FlipByte, pick);
    proxy.disarm();
    let setup = Setup::new(host);
    setup.write("www/index.html", "<h1>hello</h1>\n");
    setup.write("www/robots.txt", "User-agent: *\n");
    setup.config_with_store(
        &format!(
            "store:\n  s3: {{ bucket: {BUCKET}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: '{ACCESS_KEY}', secret_access_key: '{SECRET_KEY}', part_size: 5MiB, parts_in_flight: 3 }}",
            proxy.endpoint
        ),
        "trees: [{ name: www, path: www }]",
    );
    Rig { moto, proxy, setup }
}

fn snapshots(s: &Setup) -> Vec<serde_json::Value> {
    let listed = s.offsite(&["snapshots", "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("snapshots --json");
    v.as_array().cloned().unwrap_or_default()
}

fn complete_ids(s: &Setup) -> Vec<String> {
    snapshots(s)
        .iter()
        .filter(|snap| snap["complete"] == true)
        .map(|snap| snap["id"].as_str().expect("id").to_string())
        .collect()
}

/// Restores tree `www` of snapshot `id` (or the latest) into `back-<tag>` and compares it with `want`.
fn assert_restores(s: &Setup, id: Option<&str>, tag: &str, want: &BTreeMap<Vec<u8>, String>) {
    let to = s.path(&format!("back-{tag}"));
    let to_str = to.to_str().expect("utf-8");
    let mut args = vec!["restore"];
    if let Some(id) = id {
        args.extend(["--snapshot", id]);
    }
    args.extend(["--tree", "www", "--to", to_str]);
    s.offsite(&args).expect(0);
    assert_same(want, &describe(&to), &format!("snapshot {id:?} restored"));
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut data = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .expect("random bytes");
    data
}

#[test]
fn a_part_changed_on_the_way_is_sent_again_and_the_snapshot_restores_exactly() {
    let r = rig("flip-part-host", |req| {
        req.is_upload_part() && req.part_number() == Some(2)
    });
    let s = &r.setup;
    s.offsite(&["push"]).expect(0);
    let before = describe(&s.path("www"));
    let first = complete_ids(s);
    assert_eq!(first.len(), 1, "{first:?}");

    // Random bytes do not compress: the volume is three 5 MiB parts and a short last one.
    std::fs::write(s.path("www/big.bin"), random_bytes(16 << 20)).unwrap();
    r.proxy.arm();
    let run = s.offsite(&["push"]).expect(0);

    // The fault happened as meant: moto took the changed part without a word, and the part went
    // out a second time, unchanged.
    let seen = r.proxy.seen();
    let part2: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("partNumber=2&"))
        .collect();
    assert!(
        part2.len() == 2 && part2.iter().all(|l| l.ends_with(" 200 OK")),
        "part 2 twice, both taken by moto: {seen:#?}"
    );
    let key = r.proxy.key().expect("the fault fired");
    let key = key.strip_prefix("prod/").expect("under the prefix");
    assert!(
        run.stderr.contains(&format!(
            "stored other bytes than were sent for part 2 of {key}"
        )) && run.stderr.contains("sending the part again"),
        "{}",
        run.stderr
    );

    let done = complete_ids(s);
    assert_eq!(done.len(), 2, "{:#?}", snapshots(s));
    assert_restores(s, None, "latest", &describe(&s.path("www")));
    assert_restores(s, Some(&first[0]), "first", &before);
    drop(r.moto);
}

#[test]
fn a_put_object_changed_on_the_way_fails_the_push_naming_the_key() {
    let r = rig("flip-put-host", |req| {
        req.is_put_object() && req.key.contains("/files/")
    });
    let s = &r.setup;
    s.offsite(&["push"]).expect(0);
    let before = describe(&s.path("www"));
    let first = complete_ids(s);
    assert_eq!(first.len(), 1, "{first:?}");

    s.write("www/news.html", "<p>news</p>\n");
    r.proxy.arm();
    let run = s.offsite(&["push"]).expect(1);

    let seen = r.proxy.seen();
    assert!(
        seen.first().is_some_and(|l| l.ends_with(" 200 OK")),
        "moto took the changed object: {seen:#?}"
    );
    let key = r.proxy.key().expect("the fault fired");
    let key = key.strip_prefix("prod/").expect("under the prefix");
    assert!(
        run.stderr.contains(&format!(
            "stored object {key} with other bytes than this push sent"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("no snapshot was committed"),
        "{}",
        run.stderr
    );

    // Nothing of the failed run counts as complete; the snapshot before it still restores.
    assert_eq!(complete_ids(s), first, "{:#?}", snapshots(s));
    assert_restores(s, Some(&first[0]), "first", &before);

    // The next push (the network fixed) commits, and restores the tree as it is now.
    s.offsite(&["push"]).expect(0);
    assert_eq!(complete_ids(s).len(), 2, "{:#?}", snapshots(s));
    assert_restores(s, None, "latest", &describe(&s.path("www")));
    drop(r.moto);
}

/// The manifest is the commit point, and it is a PutObject too: one that arrived changed is in the
/// store, where push cannot take it back. It must never pass for a snapshot: its signature does
/// not verify, so it is listed as INVALID, and restore passes over it.
#[test]
fn a_manifest_changed_on_the_way_fails_the_push_and_is_never_trusted() {
    let r = rig("flip-manifest-host", |req| {
        req.is_put_object() && req.key.ends_with("/manifest.json.pgp")
    });
    let s = &r.setup;
    s.offsite(&["push"]).expect(0);
    let before = describe(&s.path("www"));
    let first = complete_ids(s);

    s.write("www/news.html", "<p>news</p>\n");
    r.proxy.arm();
    let run = s.offsite(&["push"]).expect(1);
    let key = r.proxy.key().expect("the fault fired");
    let key = key.strip_prefix("prod/").expect("under the prefix");
    assert!(
        run.stderr
            .contains(&format!("committing the manifest {key}"))
            && run.stderr.contains(&format!(
                "stored object {key} with other bytes than this push sent"
            )),
        "{}",
        run.stderr
    );

    // `snapshots` shows it, and exits 1 for it: a manifest whose signature does not verify.
    let listed = s.offsite(&["snapshots", "--json"]).expect(1);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("snapshots --json");
    let rows = v.as_array().expect("a list");
    assert_eq!(rows.len(), 2, "{listed:#?}", listed = listed.stdout);
    for row in rows {
        let valid = row["signature"] == "valid";
        let id = row["id"].as_str().expect("id");
        assert_eq!(valid, id == first[0], "{}", listed.stdout);
    }
    // Restore passes over it, to the snapshot before.
    assert_restores(s, None, "passed-over", &before);

    s.offsite(&["push"]).expect(0);
    assert_restores(s, None, "latest", &describe(&s.path("www")));
    drop(r.moto);
}
