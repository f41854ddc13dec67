//! S3 faults between push and the store: a response lost on the way back, a key someone else wrote.
//!
//! A TCP proxy ([`crate::faults::proxy`]) sits between push and a moto server of the test's own and, for the
//! one request the test picks, either swallows moto's response after moto has acted on the request
//! (a response lost on the network), or first writes other bytes at the request's key itself
//! (another writer got there first).

use crate::common::cli::Setup;
use crate::common::s3::{raw_client, runtime, PrivateMoto, ACCESS_KEY, SECRET_KEY};
use crate::common::tree::{assert_same, describe};
use crate::faults::proxy::{Fault, Proxy};

/// A moto server with a bucket, a host set up to push a small tree to it through a proxy.
struct Rig {
    moto: PrivateMoto,
    proxy: Proxy,
    setup: Setup,
    tree: std::path::PathBuf,
}

const BUCKET: &str = "offsite-faults";

/// The fault hits the first PutObject whose key contains `key_contains`.
fn rig(host: &str, fault: Fault, key_contains: &'static str) -> Rig {
    let moto = PrivateMoto::start();
    let admin = raw_client(&moto.endpoint, ACCESS_KEY, SECRET_KEY);
    runtime()
        .block_on(admin.create_bucket().bucket(BUCKET).send())
        .expect("create bucket");
    let proxy = Proxy::start(&moto.endpoint, BUCKET, fault, move |r| {
        r.is_put_object() && r.key.contains(key_contains)
    });
    let setup = Setup::new(host);
    let tree = setup.path("www");
    std::fs::create_dir_all(tree.join("html")).unwrap();
    std::fs::write(tree.join("html/index.html"), "<h1>hello</h1>\n").unwrap();
    std::fs::write(tree.join("robots.txt"), "User-agent: *\n").unwrap();
    setup.config_with_store(
        &format!(
            "store:\n  s3: {{ bucket: {BUCKET}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: '{ACCESS_KEY}', secret_access_key: '{SECRET_KEY}' }}",
            proxy.endpoint
        ),
        &format!("trees: [{{ name: www, path: '{}' }}]", tree.display()),
    );
    Rig {
        moto,
        proxy,
        setup,
        tree,
    }
}

fn snapshots(s: &Setup) -> Vec<serde_json::Value> {
    let listed = s.offsite(&["snapshots", "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("snapshots --json");
    v.as_array().cloned().unwrap_or_default()
}

#[test]
fn a_lost_response_to_the_manifest_put_is_not_a_failure() {
    let r = rig("lost-host", Fault::LoseResponse, "manifest.json.pgp");
    let s = &r.setup;
    s.offsite(&["push"]).expect(0);

    // The fault happened as meant: moto stored the manifest, push never heard, and its retry was
    // refused because the key existed.
    let seen = r.proxy.seen();
    assert!(
        seen.len() >= 2
            && seen[0].contains("manifest.json.pgp")
            && seen[0].ends_with(" 200 OK")
            && seen[1].contains(" 412 "),
        "{seen:#?}"
    );

    let listed = snapshots(s);
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["complete"], true, "{listed:#?}");
    assert_eq!(listed[0]["signature"], "valid", "{listed:#?}");

    let to = s.path("back");
    s.offsite(&["restore", "--tree", "www", "--to", to.to_str().unwrap()])
        .expect(0);
    assert_same(&describe(&r.tree), &describe(&to), "restored tree");
    drop(r.moto);
}

#[test]
fn another_object_at_the_key_still_fails_the_push_naming_the_key() {
    let r = rig("taken-host", Fault::WriteFirst, "/files/");
    let s = &r.setup;
    let run = s.offsite(&["push"]).expect(1);

    let seen = r.proxy.seen();
    assert!(
        seen.first().is_some_and(|l| l.contains(" 412 ")),
        "{seen:#?}"
    );
    let key = seen[0]
        .strip_prefix(&format!("PUT /{BUCKET}/prod/"))
        .and_then(|l| l.split(['?', ' ']).next())
        .expect("the key in the request line")
        .to_string();
    assert!(run.stderr.contains(&key), "names {key}: {}", run.stderr);
    assert!(
        run.stderr.contains("already exists") && run.stderr.contains("never overwrites"),
        "{}",
        run.stderr
    );

    // The snapshot push gave up on is there only as incomplete.
    let listed = snapshots(s);
    assert!(
        listed.iter().all(|snap| snap["complete"] == false),
        "{listed:#?}"
    );
    drop(r.moto);
}
