//! `offsite audit` against moto with IAM enforcement: the README's push policy passes; a credential
//! that may delete fails naming DeleteObject; the canary never shows up as a snapshot.
//!
//! moto enforces identity policies but not bucket policies, so the README's deny-overwrite bucket
//! policy cannot be shown here; a versioned bucket is what keeps an overwritten object on this
//! server, and the audit reports the overwrite as a warning there and as a failure on an
//! unversioned bucket.

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};

use crate::common::cli::Setup;
use crate::common::db::{fixture, PgDb, PG_URL};
use crate::common::s3::{raw_client, runtime, PrivateMoto, ACCESS_KEY, SECRET_KEY};

/// The README's push policy ("S3 permissions for the push user").
fn push_policy(bucket: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Sid": "OffsitePushWriteOnce", "Effect": "Allow",
              "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
              "Resource": format!("arn:aws:s3:::{bucket}/prod/*") },
            { "Sid": "OffsitePushList", "Effect": "Allow", "Action": ["s3:ListBucket"],
              "Resource": format!("arn:aws:s3:::{bucket}") }
        ]
    })
}

fn store_yaml(moto: &PrivateMoto, bucket: &str, key: &str, secret: &str) -> String {
    format!(
        "store:\n  s3: {{ bucket: {bucket}, prefix: prod, region: us-east-1, endpoint: '{}', path_style: true, access_key_id: '{key}', secret_access_key: '{secret}' }}",
        moto.endpoint
    )
}

fn bucket(moto: &PrivateMoto, name: &str, versioned: bool) {
    let admin = raw_client(&moto.endpoint, ACCESS_KEY, SECRET_KEY);
    runtime()
        .block_on(admin.create_bucket().bucket(name).send())
        .expect("create bucket");
    if versioned {
        runtime()
            .block_on(
                admin
                    .put_bucket_versioning()
                    .bucket(name)
                    .versioning_configuration(
                        VersioningConfiguration::builder()
                            .status(BucketVersioningStatus::Enabled)
                            .build(),
                    )
                    .send(),
            )
            .expect("enable versioning");
    }
}

fn rows(json: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(json).expect("audit --json");
    v["probes"].as_array().expect("probes").clone()
}

fn row<'a>(rows: &'a [serde_json::Value], action: &str, check_part: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["action"] == action && r["check"].as_str().unwrap_or("").contains(check_part))
        .unwrap_or_else(|| panic!("no row {action} {check_part}: {rows:?}"))
}

#[test]
fn the_readme_push_policy_passes_and_a_deleting_credential_fails() {
    let moto = PrivateMoto::start();
    bucket(&moto, "offsite-audit-v", true);
    bucket(&moto, "offsite-audit-plain", false);
    let (push_key, push_secret) = moto.iam_user("push", &push_policy("offsite-audit-v"));
    let (plain_key, plain_secret) =
        moto.iam_user("push-plain", &push_policy("offsite-audit-plain"));
    let (all_key, all_secret) = moto.iam_user(
        "too-strong",
        &serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::offsite-audit-v", "arn:aws:s3:::offsite-audit-v/*"]}]}),
    );
    moto.enforce_iam();

    let pg = PgDb::new("audit");
    pg.load(&fixture("postgres/shop.sql"));
    let sources = format!(
        "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]",
        pg.name
    );

    // The README's policy on a versioned bucket: exit 0, every row as expected.
    let s = Setup::new("web1");
    s.config_with_store(
        &store_yaml(&moto, "offsite-audit-v", &push_key, &push_secret),
        &sources,
    );
    s.offsite(&["push"]).expect(0);
    let run = s.offsite(&["audit", "--json"]).expect(0);
    let r = rows(&run.stdout);
    for (action, part, verdict) in [
        ("s3:PutObject", "new object", "ok"),
        ("s3:GetObject", "read", "ok"),
        ("s3:ListBucket", "list", "ok"),
        ("If-None-Match", "create-only", "ok"),
        ("s3:PutObject", "overwrite", "warn"),
        ("s3:DeleteObject", "delete", "ok"),
        ("s3:DeleteObjectVersion", "version", "ok"),
        ("s3:PutBucketPolicy", "policy", "ok"),
        ("s3:PutBucketVersioning", "versioning", "ok"),
        ("s3:PutLifecycleConfiguration", "lifecycle", "ok"),
        ("s3:PutBucketObjectLockConfiguration", "Object Lock", "ok"),
    ] {
        assert_eq!(
            row(&r, action, part)["verdict"],
            verdict,
            "{action} {part}: {}",
            run.stdout
        );
    }
    assert!(
        row(&r, "If-None-Match", "create-only")["result"]
            .as_str()
            .unwrap()
            .contains("412"),
        "{}",
        run.stdout
    );
    // The table a person reads says the same.
    let table = s.offsite(&["audit"]).expect(0);
    println!("{}", table.stdout);
    assert!(
        table
            .stdout
            .contains("cannot delete or reconfigure anything"),
        "{}",
        table.stdout
    );

    // The canaries (two audits, nothing deleted) are not snapshots.
    let listed = s.offsite(&["snapshots", "--json"]).expect(0);
    let snaps: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{}", listed.stdout);
    assert_eq!(snaps[0]["complete"], true);
    let back = PgDb::named(&format!("{}_back", pg.name));
    s.offsite(&[
        "restore",
        "latest",
        "--db",
        &format!("postgres/{}", pg.name),
        "--into",
        &back.name,
    ])
    .expect(0);
    assert_eq!(back.dump(), pg.dump());

    // A credential that may delete: exit 1, naming DeleteObject and the statement that fixes it.
    let strong = Setup::new("web1");
    strong.config_with_store(
        &store_yaml(&moto, "offsite-audit-v", &all_key, &all_secret),
        &sources,
    );
    let run = strong.offsite(&["audit"]).expect(1);
    let fail_line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains("s3:DeleteObject "))
        .unwrap_or_else(|| panic!("no FAIL row for DeleteObject:\n{}", run.stdout));
    assert!(fail_line.contains("allowed"), "{fail_line}");
    assert!(
        run.stdout
            .contains("\"Effect\": \"Deny\", \"Action\": [\"s3:DeleteObject\""),
        "{}",
        run.stdout
    );
    // The office's half, with an office config: a credential that may delete passes, push's fails.
    let office_cfg = |key: &str, secret: &str| {
        let o = Setup::new("web1");
        o.config_with_store(&store_yaml(&moto, "offsite-audit-v", key, secret), "");
        o
    };
    let audit_with = |o: &Setup| {
        let out = std::process::Command::new(crate::common::cli::bin())
            .arg("-c")
            .arg(o.config_path())
            .arg("audit")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = audit_with(&office_cfg(&all_key, &all_secret));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("The office's credential can delete"),
        "{text}"
    );
    let (code, text) = audit_with(&office_cfg(&push_key, &push_secret));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("cannot delete: prune cannot apply retention"),
        "{text}"
    );

    // The audit harmed nothing: the snapshot pushed earlier is still there and valid.
    let listed = s.offsite(&["snapshots", "--json"]).expect(0);
    let snaps: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{}", listed.stdout);
    assert_eq!(snaps[0]["signature"], "valid", "{}", listed.stdout);

    // Unversioned, and (on this server) no bucket policy to refuse it: the overwrite is a failure.
    let plain = Setup::new("web1");
    plain.config_with_store(
        &store_yaml(&moto, "offsite-audit-plain", &plain_key, &plain_secret),
        &sources,
    );
    let run = plain.offsite(&["audit", "--json"]).expect(1);
    let r = rows(&run.stdout);
    let over = row(&r, "s3:PutObject", "overwrite");
    assert_eq!(over["verdict"], "fail", "{}", run.stdout);
    assert!(
        over["fix"].as_str().unwrap().contains("s3:if-none-match"),
        "{over}"
    );
    assert_eq!(row(&r, "s3:DeleteObject", "delete")["verdict"], "ok");
}

#[test]
fn a_local_store_is_reported_unprotected() {
    let s = Setup::new("web1");
    s.config("");
    let run = s.offsite(&["audit"]).expect(1);
    assert!(run.stderr.contains("local directory"), "{}", run.stderr);
}

/// moto stores retention changes without enforcing Object Lock: a store like that must not pass.
#[test]
fn a_store_that_lets_a_compliance_lock_be_shortened_is_caught() {
    let moto = PrivateMoto::start();
    let admin = raw_client(&moto.endpoint, ACCESS_KEY, SECRET_KEY);
    runtime()
        .block_on(
            admin
                .create_bucket()
                .bucket("offsite-audit-lock")
                .object_lock_enabled_for_bucket(true)
                .send(),
        )
        .expect("create a locked bucket");
    let (key, secret) = moto.iam_user("push", &push_policy("offsite-audit-lock"));
    moto.enforce_iam();
    let s = Setup::new("web1");
    let store = store_yaml(&moto, "offsite-audit-lock", &key, &secret)
        .replace(" }", ", object_lock: { mode: compliance, days: 3 } }");
    s.config_with_store(&store, "");
    let run = s.offsite(&["audit", "--json"]).expect(1);
    let r = rows(&run.stdout);
    let shorten = row(&r, "s3:PutObjectRetention", "shorten");
    assert_eq!(shorten["verdict"], "fail", "{}", run.stdout);
    assert!(
        shorten["fix"]
            .as_str()
            .unwrap()
            .contains("does not enforce Object Lock"),
        "{shorten}"
    );
    // Lengthening destroys nothing: a warning, with the bucket policy that caps it.
    let longer = row(&r, "s3:PutObjectRetention", "lengthen");
    assert_eq!(longer["verdict"], "warn", "{}", run.stdout);
    assert!(
        longer["fix"]
            .as_str()
            .unwrap()
            .contains("s3:object-lock-remaining-retention-days"),
        "{longer}"
    );
    // The canary's write was locked, so the overwrite only added a version.
    assert_eq!(row(&r, "s3:PutObject", "overwrite")["verdict"], "warn");
}
