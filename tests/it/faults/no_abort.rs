//! Faults: a push credential that may not abort multipart uploads (a policy written before
//! README's, or trimmed by hand). A push that fails mid-upload cannot clean up after itself then:
//! it must still fail cleanly, commit nothing, and name the upload it leaves (key and upload id)
//! so that the office can remove it; the next push must commit as usual.

use std::io::Read;

use crate::common::cli::Setup;
use crate::common::s3::{raw_client, runtime, PrivateMoto, ACCESS_KEY, SECRET_KEY};
use crate::common::tree::{assert_same, describe};
use crate::faults::proxy::{Fault, Proxy};

const BUCKET: &str = "offsite-noabort";

/// README's push policy less `s3:AbortMultipartUpload` (and, as there, no delete of any kind).
fn policy_without_abort() -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts"],
              "Resource": [format!("arn:aws:s3:::{BUCKET}/prod/*")] },
            { "Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
              "Resource": [format!("arn:aws:s3:::{BUCKET}")] }
        ]
    })
}

fn uploads(admin: &aws_sdk_s3::Client) -> Vec<(String, String)> {
    let listed = runtime()
        .block_on(admin.list_multipart_uploads().bucket(BUCKET).send())
        .expect("listing multipart uploads");
    listed
        .uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap_or_default().to_string(),
                u.upload_id().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn complete_ids(s: &Setup) -> Vec<String> {
    let listed = s.offsite(&["snapshots", "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("snapshots --json");
    v.as_array()
        .expect("a list")
        .iter()
        .filter(|snap| snap["complete"] == true)
        .map(|snap| snap["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn a_credential_that_cannot_abort_fails_the_push_naming_the_upload_left_for_the_office() {
    let moto = PrivateMoto::start();
    runtime()
        .block_on(
            raw_client(&moto.endpoint, ACCESS_KEY, SECRET_KEY)
                .create_bucket()
                .bucket(BUCKET)
                .send(),
        )
        .expect("create bucket");
    let (key_id, secret) = moto.iam_user("push-noabort", &policy_without_abort());
    // Made before enforcement: after it, the test credentials are unknown to moto.
    let (admin_id, admin_secret) = moto.iam_user(
        "office-admin",
        &serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]}]}),
    );
    moto.enforce_iam();
    let admin = raw_client(&moto.endpoint, &admin_id, &admin_secret);

    // S3 failing every part after the first, with a 500 each time (after the SDK's retries):
    // the upload has begun, and push must give up on it.
    let proxy = Proxy::start(&moto.endpoint, BUCKET, Fault::Error500, |r| {
        r.is_upload_part() && r.part_number().is_some_and(|n| n >= 2)
    });
    proxy.disarm();
    let s = Setup::new("noabort-host");
    s.write("www/index.html", "<h1>hello</h1>\n");
    s.config_with_store(
        &format!(
            "store:\n  s3: {{ bucket: {BUCKET}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: '{key_id}', secret_access_key: '{secret}', part_size: 5MiB, parts_in_flight: 3 }}",
            proxy.endpoint
        ),
        "trees: [{ name: www, path: www }]",
    );
    s.offsite(&["push"]).expect(0);
    let before = describe(&s.path("www"));
    let first = complete_ids(&s);
    assert_eq!(first.len(), 1, "{first:?}");

    // Random bytes do not compress: the new volume is a multipart upload of four parts.
    let mut data = vec![0u8; 16 << 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .expect("random bytes");
    std::fs::write(s.path("www/big.bin"), &data).unwrap();
    proxy.arm();
    let run = s.offsite(&["push"]).expect(1);
    let err = &run.stderr;

    assert!(
        proxy
            .seen()
            .iter()
            .any(|l| l.ends_with(" 500 Internal Server Error")),
        "{:#?}",
        proxy.seen()
    );
    // The abort really was refused: the upload is still there, and it is the one push named.
    let left = uploads(&admin);
    assert_eq!(left.len(), 1, "{left:?}");
    let (key, upload_id) = &left[0];
    assert!(
        err.contains(upload_id) && err.contains(key),
        "names the upload left behind ({upload_id} of {key}): {err}"
    );
    assert!(err.contains("could not be aborted"), "{err}");
    assert!(err.contains("AccessDenied"), "says why: {err}");
    assert!(
        err.contains("s3:AbortMultipartUpload"),
        "says what the credential lacks: {err}"
    );
    assert!(
        err.contains(&format!(
            "aws s3api abort-multipart-upload --bucket {BUCKET} --key {key} --upload-id {upload_id}"
        )),
        "says how the office removes it: {err}"
    );
    assert!(err.contains("no snapshot was committed"), "{err}");
    assert_eq!(complete_ids(&s), first);

    let to = s.path("back-first");
    s.offsite(&[
        "restore",
        "--snapshot",
        &first[0],
        "--tree",
        "www",
        "--to",
        to.to_str().unwrap(),
    ])
    .expect(0);
    assert_same(
        &before,
        &describe(&to),
        "the snapshot before the failed push",
    );

    // S3 answers again: the next push commits, and restores the tree as it is now.
    proxy.disarm();
    s.offsite(&["push"]).expect(0);
    assert_eq!(complete_ids(&s).len(), 2);
    let to = s.path("back-latest");
    s.offsite(&["restore", "--tree", "www", "--to", to.to_str().unwrap()])
        .expect(0);
    assert_same(
        &describe(&s.path("www")),
        &describe(&to),
        "the latest snapshot",
    );
    // The upload of the failed push is the office's to remove; push never touched it again.
    assert_eq!(uploads(&admin), left);
    drop(moto);
}
