//! Helpers for tests that talk to an S3 test server: moto, started by `scripts/s3-test-server`
//! (`make test` does that first) at `OFFSITE_TEST_S3_ENDPOINT`, default `http://127.0.0.1:5055`.
//!
//! From any integration test file:
//! ```ignore
//! mod common;
//! use common::s3::TestBucket;
//!
//! let bucket = TestBucket::new("restore");           // a fresh bucket, emptied and removed on drop
//! let store = bucket.store();                         // S3Store on it: test creds, 5 MiB parts
//! let locked = bucket.store_with(|c| c.prefix = "p".into());
//! bucket.client();                                    // raw SDK client, for what a Store cannot do
//! ```
//! Each test uses its own bucket (random suffix), so tests run in parallel against one server. The
//! server accepts any credentials (moto's IAM checks are off), except a [`PrivateMoto`], which a
//! test starts for itself when it needs to turn IAM enforcement on.
#![allow(dead_code)] // every test crate that says `mod common;` uses a different subset

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::Client;
use offsite::store::s3::{S3Config, S3Store};
use tokio::runtime::Runtime;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:5055";
pub const ACCESS_KEY: &str = "test";
pub const SECRET_KEY: &str = "test";
pub const REGION: &str = "us-east-1";
/// S3's minimum, so that tests reach multipart uploads with little data.
pub const PART_SIZE: u64 = 5 << 20;

pub fn endpoint() -> String {
    std::env::var("OFFSITE_TEST_S3_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.to_string())
}

/// One multi-threaded runtime for the whole test binary: S3Store needs one that outlives it, and
/// test threads are plain threads, which is where S3Store may block on it.
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("building the test runtime")
    })
}

/// A bucket name no other test (or earlier run) uses: `offsite-<tag>-<16 hex>`.
pub fn unique_bucket(tag: &str) -> String {
    let tag: String = tag
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(30)
        .collect();
    format!("offsite-{tag}-{:016x}", rand::random::<u64>())
}

/// Store config for `bucket` on the server at `endpoint` with the given keys.
pub fn config_at(endpoint: &str, bucket: &str, access_key: &str, secret_key: &str) -> S3Config {
    S3Config {
        bucket: bucket.to_string(),
        region: Some(REGION.to_string()),
        endpoint: Some(endpoint.to_string()),
        path_style: true,
        access_key_id: Some(access_key.to_string()),
        secret_access_key: Some(secret_key.to_string()),
        part_size_min: PART_SIZE,
        parts_in_flight: 4,
        ..S3Config::default()
    }
}

/// Store config for `bucket` on the shared test server with the test credentials.
pub fn config(bucket: &str) -> S3Config {
    config_at(&endpoint(), bucket, ACCESS_KEY, SECRET_KEY)
}

pub fn store(cfg: S3Config) -> S3Store {
    S3Store::new(cfg, runtime().handle().clone()).expect("building the S3 store")
}

/// A plain SDK client, for what the Store trait deliberately cannot do (delete, list uploads).
pub fn raw_client(endpoint: &str, access_key: &str, secret_key: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "test"))
        .build();
    Client::from_conf(conf)
}

/// Removes every object version, pending multipart upload and then the bucket. Best effort: a
/// leftover bucket on a throwaway server is no reason to fail a test.
pub fn delete_bucket(client: &Client, bucket: &str) {
    let res: Result<(), String> = runtime().block_on(async {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let uploads = client
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| err(&e))?;
        for u in uploads.uploads() {
            let _ = client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(u.key().unwrap_or_default())
                .upload_id(u.upload_id().unwrap_or_default())
                .send()
                .await;
        }
        let versions = client
            .list_object_versions()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| err(&e))?;
        let all = versions
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(
                versions
                    .delete_markers()
                    .iter()
                    .map(|m| (m.key(), m.version_id())),
            );
        for (key, version) in all {
            let _ = client
                .delete_object()
                .bucket(bucket)
                .key(key.unwrap_or_default())
                .set_version_id(version.map(str::to_string))
                .bypass_governance_retention(true)
                .send()
                .await;
        }
        client
            .delete_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| err(&e))?;
        Ok(())
    });
    if let Err(e) = res {
        eprintln!("note: could not remove test bucket {bucket}: {e}");
    }
}

/// A fresh bucket on the shared test server, removed with everything in it on drop.
pub struct TestBucket {
    pub name: String,
    client: Client,
}

impl TestBucket {
    pub fn new(tag: &str) -> Self {
        Self::create(tag, |_| {})
    }

    /// A bucket with Object Lock enabled (and so versioning).
    pub fn with_object_lock(tag: &str) -> Self {
        Self::create(tag, |c| c.object_lock_days = Some(1))
    }

    fn create(tag: &str, adjust: impl FnOnce(&mut S3Config)) -> Self {
        let name = unique_bucket(tag);
        let mut cfg = config(&name);
        adjust(&mut cfg);
        store(cfg).ensure_bucket().unwrap_or_else(|e| {
            panic!("creating test bucket {name} at {}: {e:#}\n(is the S3 test server running? scripts/s3-test-server)", endpoint())
        });
        Self {
            client: raw_client(&endpoint(), ACCESS_KEY, SECRET_KEY),
            name,
        }
    }

    pub fn config(&self) -> S3Config {
        config(&self.name)
    }

    pub fn store(&self) -> S3Store {
        store(self.config())
    }

    pub fn store_with(&self, adjust: impl FnOnce(&mut S3Config)) -> S3Store {
        let mut cfg = self.config();
        adjust(&mut cfg);
        store(cfg)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Drop for TestBucket {
    fn drop(&mut self) {
        delete_bucket(&self.client, &self.name);
    }
}

/// A moto server of this test's own, on a free port, killed (by its pid) on drop.
///
/// moto turns IAM enforcement on with `POST /moto-api/reset-auth`, and that switch is global for
/// the whole server: every request after it must be signed by a known IAM user's key. Flipping it on
/// the shared server would break every test running in parallel with the test credentials, and
/// giving every test its own IAM user would make all of them depend on moto's IAM emulation. So a
/// test that needs IAM gets a server nobody else talks to.
pub struct PrivateMoto {
    pub endpoint: String,
    child: Child,
    /// The file libfaketime reads the server's clock from, for [`PrivateMoto::start_with_clock`].
    clock: Option<tempfile::NamedTempFile>,
}

/// Debian's `faketime` package.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

impl PrivateMoto {
    pub fn start() -> Self {
        Self::spawn(None)
    }

    /// A server whose clock the test sets ([`PrivateMoto::set_clock`]), through libfaketime: the
    /// store's own time (`LastModified`) of what a test writes is then whatever the test says,
    /// the way a store that received those pushes on those days would report it.
    pub fn start_with_clock(t: time::OffsetDateTime) -> Self {
        assert!(
            std::path::Path::new(LIBFAKETIME).exists(),
            "{LIBFAKETIME} is missing: run scripts/services (it installs faketime)"
        );
        let clock = tempfile::NamedTempFile::new().expect("clock file");
        write_clock(clock.path(), t);
        Self::spawn(Some(clock))
    }

    /// Sets the server's clock (frozen at `t` until set again).
    pub fn set_clock(&self, t: time::OffsetDateTime) {
        let clock = self
            .clock
            .as_ref()
            .expect("a server started with start_with_clock");
        write_clock(clock.path(), t);
    }

    fn spawn(clock: Option<tempfile::NamedTempFile>) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let moto = root.join(".venv-moto/bin/moto_server");
        assert!(
            moto.exists(),
            "{} is missing: run scripts/s3-test-server once to install moto",
            moto.display()
        );
        // Port 0 lets the kernel pick a free port; the tiny window before moto binds it is harmless
        // on a test machine and avoids clashing with a concurrent `cargo test` of another checkout.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("finding a free port")
            .port();
        let log = std::fs::File::create(root.join(format!("target/moto-private-{port}.log")))
            .expect("creating the private moto log");
        let mut cmd = Command::new(&moto);
        if let Some(c) = &clock {
            // Frozen wall clock read from the file on every call; the monotonic clock stays real,
            // so the server's own timeouts keep working.
            cmd.env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME_TIMESTAMP_FILE", c.path())
                .env("FAKETIME_NO_CACHE", "1")
                .env("DONT_FAKE_MONOTONIC", "1")
                .env("TZ", "UTC");
        }
        let child = cmd
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("starting a private moto server");
        let me = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            clock,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !me.answers() {
            assert!(
                Instant::now() < deadline,
                "private moto on port {port} did not start in 30 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        me
    }

    fn answers(&self) -> bool {
        Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "--max-time", "2"])
            .arg(format!("{}/moto-api/", self.endpoint))
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Calls the IAM query API (before enforcement is on, any signature will do) and returns the
    /// response body. `params` are form fields besides `Action` and `Version`.
    pub fn iam(&self, action: &str, params: &[(&str, &str)]) -> String {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--fail-with-body",
            "--aws-sigv4",
            "aws:amz:us-east-1:iam",
        ])
        .args(["-u", &format!("{ACCESS_KEY}:{SECRET_KEY}")])
        .args(["--data-urlencode", &format!("Action={action}")])
        .args(["--data-urlencode", "Version=2010-05-08"]);
        for (k, v) in params {
            cmd.args(["--data-urlencode", &format!("{k}={v}")]);
        }
        let out = cmd
            .arg(format!("{}/", self.endpoint))
            .output()
            .expect("running curl");
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "IAM {action} failed: {body}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        body
    }

    /// Creates an IAM user with one inline policy and returns its (access key id, secret key).
    pub fn iam_user(&self, name: &str, policy: &serde_json::Value) -> (String, String) {
        self.iam("CreateUser", &[("UserName", name)]);
        self.iam(
            "PutUserPolicy",
            &[
                ("UserName", name),
                ("PolicyName", "offsite-test"),
                ("PolicyDocument", &policy.to_string()),
            ],
        );
        let body = self.iam("CreateAccessKey", &[("UserName", name)]);
        (
            xml_field(&body, "AccessKeyId"),
            xml_field(&body, "SecretAccessKey"),
        )
    }

    /// From now on every request must be signed by an IAM user's key and allowed by its policy.
    pub fn enforce_iam(&self) {
        let status = Command::new("curl")
            .args([
                "-sSf",
                "-o",
                "/dev/null",
                "-X",
                "POST",
                "-H",
                "Content-Type: text/plain",
                "--data",
                "0",
            ])
            .arg(format!("{}/moto-api/reset-auth", self.endpoint))
            .status()
            .expect("running curl");
        assert!(status.success(), "moto reset-auth failed");
    }
}

impl Drop for PrivateMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// libfaketime's absolute format: `2026-11-13 02:00:00`, UTC (the server runs with TZ=UTC).
fn write_clock(path: &std::path::Path, t: time::OffsetDateTime) {
    let t = t.to_offset(time::UtcOffset::UTC);
    let text = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}\n",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    std::fs::write(path, text).expect("writing the fake clock");
}

fn xml_field(body: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = body.find(&open).map(|i| i + open.len());
    let end = body.find(&format!("</{name}>"));
    match (start, end) {
        (Some(s), Some(e)) if s <= e => body[s..e].to_string(),
        _ => panic!("no <{name}> in IAM response: {body}"),
    }
}

impl PrivateMoto {
    /// The server's process id, for tests that stop the server mid-run (kill by PID only).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}
