//! push to S3 (moto): with a credential that cannot delete, with dumps larger than several parts, and
//! with the server dying mid-upload.

use crate::common::cli::Setup;
use crate::common::db::{fixture, PgDb, PG_URL};
use crate::common::s3::{
    endpoint, raw_client, runtime, PrivateMoto, TestBucket, ACCESS_KEY, SECRET_KEY,
};

fn s3_store_yaml(endpoint: &str, bucket: &str, key: &str, secret: &str) -> String {
    format!(
        "store:\n  s3: {{ bucket: {bucket}, prefix: prod, region: us-east-1, endpoint: '{endpoint}', path_style: true, access_key_id: '{key}', secret_access_key: '{secret}', part_size: 5MiB, parts_in_flight: 3 }}"
    )
}

/// The policy README.md gives the push user: put, get, list; no delete.
fn push_policy(bucket: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
              "Resource": [format!("arn:aws:s3:::{bucket}/prod/*")] },
            { "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [format!("arn:aws:s3:::{bucket}")] }
        ]
    })
}

#[test]
fn push_works_with_a_credential_that_cannot_delete() {
    let moto = PrivateMoto::start();
    let bucket = "offsite-iam-push";
    let admin = raw_client(&moto.endpoint, ACCESS_KEY, SECRET_KEY);
    runtime()
        .block_on(admin.create_bucket().bucket(bucket).send())
        .expect("create bucket");
    let (key, secret) = moto.iam_user("push-web1", &push_policy(bucket));
    // A read-only auditor, made before enforcement (after it, the test credentials are unknown).
    let (audit_key, audit_secret) = moto.iam_user(
        "auditor",
        &serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["*"]}]}),
    );
    moto.enforce_iam();

    let pg = PgDb::new("iam");
    pg.load(&fixture("postgres/shop.sql"));
    let s = Setup::new("iam-host");
    s.config_with_store(
        &s3_store_yaml(&moto.endpoint, bucket, &key, &secret),
        &format!(
            "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]",
            pg.name
        ),
    );
    s.offsite(&["push"]).expect(0);
    let listed = s.offsite(&["snapshots", "--json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(v[0]["complete"], true, "{}", listed.stdout);
    assert_eq!(v[0]["signature"], "valid");
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

    // The same credential cannot delete what it wrote.
    let push_client = raw_client(&moto.endpoint, &key, &secret);
    let id = v[0]["id"].as_str().unwrap();
    let victim = format!("prod/iam-host/{id}/manifest.json.pgp");
    let denied = runtime().block_on(
        push_client
            .delete_object()
            .bucket(bucket)
            .key(&victim)
            .send(),
    );
    assert!(
        denied.is_err(),
        "the push credential must not be able to delete"
    );
    let auditor = raw_client(&moto.endpoint, &audit_key, &audit_secret);
    let still = runtime().block_on(auditor.get_object().bucket(bucket).key(&victim).send());
    assert!(still.is_ok(), "the manifest is still there");
}

#[test]
fn a_dump_larger_than_several_parts_round_trips() {
    let bucket = TestBucket::new("bigdump");
    let pg = PgDb::new("big");
    // ~40 MB of random hex: about 20 MB stored, four 5 MiB parts and more.
    pg.exec(
        "CREATE TABLE big AS SELECT g AS id, md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) AS t FROM generate_series(1, 300000) g",
    );
    let s = Setup::new("big-host");
    s.config_with_store(
        &s3_store_yaml(&endpoint(), &bucket.name, ACCESS_KEY, SECRET_KEY),
        &format!(
            "postgres: [{{ url: '{PG_URL}', databases: [{}] }}]",
            pg.name
        ),
    );
    let run = s.offsite(&["push", "--json"]).expect(0);
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        summary["stored_bytes"].as_u64().unwrap() > 15 << 20,
        "{summary}"
    );
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
    assert_eq!(
        back.exec("SELECT count(*), md5(string_agg(t, '' ORDER BY id)) FROM big"),
        pg.exec("SELECT count(*), md5(string_agg(t, '' ORDER BY id)) FROM big")
    );
}

#[test]
fn s3_server_stopped_mid_upload_fails_without_a_manifest() {
    let moto = PrivateMoto::start();
    let bucket = "offsite-dies";
    let admin = raw_client(&moto.endpoint, ACCESS_KEY, SECRET_KEY);
    runtime()
        .block_on(admin.create_bucket().bucket(bucket).send())
        .expect("create bucket");
    let pg = PgDb::new("dies");
    pg.exec("CREATE TABLE big AS SELECT g AS id, md5(random()::text) || md5(random()::text) AS t FROM generate_series(1, 200000) g");
    let s = Setup::new("dies-host");
    // pg_dump stand-in: after 12 MB of dump, the S3 server is stopped (by its PID); the dump goes on.
    let fake = s.path("fake-pg_dump");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/bash\nif [ \"$1\" = --version ]; then exec pg_dump --version; fi\npg_dump \"$@\" | {{ head -c 12000000; kill {}; cat; }}\n",
            moto.pid()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    s.config_with_store(
        &s3_store_yaml(&moto.endpoint, bucket, ACCESS_KEY, SECRET_KEY),
        &format!(
            "postgres: [{{ url: '{PG_URL}', databases: [{}], pg_dump: '{}' }}]",
            pg.name,
            fake.display()
        ),
    );
    let run = s.offsite(&["push"]).expect(1);
    assert!(
        run.stderr.contains("no snapshot was committed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("s3://offsite-dies/prod"),
        "the message names the store: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("committed to"), "{}", run.stderr);
}
