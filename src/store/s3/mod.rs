//! An S3 bucket (AWS or any S3-compatible service) as a store.
//!
//! The [`Store`] trait is synchronous because the pipeline is (zstd, sequoia); the SDK is async. The
//! store holds a handle to a multi-threaded tokio runtime and bridges each call with
//! [`tokio::task::block_in_place`] + [`Handle::block_on`]. Callers are plain threads (std threads or
//! `spawn_blocking`), where that is a plain block; on a runtime worker thread `block_in_place` first
//! hands the worker's queue to another thread, so a mistaken call from async code stalls one worker
//! instead of panicking. A current-thread runtime cannot work: nobody would drive its IO.
//!
//! No delete is reachable from here, on purpose (see [`super`]); write-once is enforced by S3 itself
//! with `If-None-Match: *` on PutObject and CompleteMultipartUpload, so it also holds against a
//! concurrent writer and needs no read-then-write check.

mod admin;
pub mod audit;
mod clock;
mod stall;
mod unfinished;
mod upload;
mod versions;

use std::fmt;
use std::future::Future;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, ObjectLockMode};
use aws_sdk_s3::Client;
use bytes::Bytes;
use time::OffsetDateTime;
use tokio::runtime::Handle;

use super::{check_key, ClockReading, ObjectInfo, ObjectWriter, Store};

const MIB: u64 = 1 << 20;
/// S3 rejects smaller parts (except the last one).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3 rejects larger parts.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;

/// Object Lock retention mode for objects that push writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockMode {
    /// Nobody, not even the account root, can delete or shorten the retention before it ends.
    #[default]
    Compliance,
    /// Principals with `s3:BypassGovernanceRetention` can still delete: useful for tests and trials.
    Governance,
}

/// Where and how to reach the bucket. Secrets are only ever passed to the SDK's credential provider.
#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Keys become `prefix/key`; empty for the bucket's root.
    pub prefix: String,
    /// When `None`, the standard AWS chain decides (`AWS_REGION`, profile, ...).
    pub region: Option<String>,
    /// For S3-compatible services (MinIO, Ceph, moto, ...).
    pub endpoint: Option<String>,
    pub path_style: bool,
    /// When no keys are given, the standard AWS chain provides credentials (env, profile, IMDS, ...).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Size of the first parts of a multipart upload; objects smaller than this go as one PutObject.
    pub part_size_min: u64,
    /// Part buffers per object, counting the one being filled: memory per writer is at most this
    /// many times the current part size.
    pub parts_in_flight: usize,
    /// Retain every written object this many days with S3 Object Lock (the bucket must have it on).
    pub object_lock_days: Option<u32>,
    pub object_lock_mode: LockMode,
    /// A request that sends and receives no byte for this long fails (see [`stall`]).
    pub stall_timeout: Duration,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: String::new(),
            region: None,
            endpoint: None,
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            part_size_min: 8 * MIB,
            parts_in_flight: 8,
            object_lock_days: None,
            object_lock_mode: LockMode::default(),
            stall_timeout: Duration::from_secs(60),
        }
    }
}

// Hand-written so that a `{:?}` of the config can never print a secret.
impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redact(&self.secret_access_key))
            .field("session_token", &redact(&self.session_token))
            .field("part_size_min", &self.part_size_min)
            .field("parts_in_flight", &self.parts_in_flight)
            .field("object_lock_days", &self.object_lock_days)
            .field("object_lock_mode", &self.object_lock_mode)
            .field("stall_timeout", &self.stall_timeout)
            .finish()
    }
}

pub struct S3Store {
    shared: Arc<Shared>,
}

/// What a store and its writers and readers share.
struct Shared {
    client: Client,
    handle: Handle,
    bucket: String,
    /// Normalized: no leading or trailing '/'; empty for the bucket's root.
    prefix: String,
    part_size_min: u64,
    parts_in_flight: usize,
    object_lock: Option<(LockMode, u32)>,
    /// The server's clock from the last response (see [`clock`]).
    clock: clock::ClockWatch,
    /// No byte of progress for this long ends a request (see [`stall`]).
    stall_timeout: Duration,
}

impl Shared {
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        tokio::task::block_in_place(|| self.handle.block_on(f))
    }

    /// GetObject of `key`, or of bytes `start..end` of it; the error says which, and where.
    fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<(String, GetObjectOutput)> {
        check_key(key)?;
        let full_key = self.full_key(key);
        let req = self.client.get_object().bucket(&self.bucket).key(&full_key);
        let req = match range {
            Some((start, end)) => req.range(format!("bytes={start}-{}", end - 1)),
            None => req,
        };
        let out = self.block_on(req.send()).map_err(|e| {
            if e.code() == Some("NoSuchKey") || http_status(&e) == Some(404) {
                anyhow!("object {key} not found in {}", self.location())
            } else {
                let what = match range {
                    Some((start, end)) => format!("bytes {start}-{} of {key}", end - 1),
                    None => key.to_string(),
                };
                anyhow!("opening {what} in {}: {}", self.location(), describe(&e))
            }
        })?;
        Ok((full_key, out))
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// Lock settings for an object written now; `None` when Object Lock is off.
    fn lock_until(&self) -> Option<(ObjectLockMode, aws_smithy_types::DateTime)> {
        let (mode, days) = self.object_lock?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let until = now.saturating_add(u64::from(days) * 86_400);
        let mode = match mode {
            LockMode::Compliance => ObjectLockMode::Compliance,
            LockMode::Governance => ObjectLockMode::Governance,
        };
        Some((
            mode,
            aws_smithy_types::DateTime::from_secs(i64::try_from(until).unwrap_or(i64::MAX)),
        ))
    }
}

impl S3Store {
    /// Builds the client; makes no request. `handle` must belong to a multi-threaded runtime that
    /// outlives the store.
    pub fn new(cfg: S3Config, handle: Handle) -> Result<Self> {
        // Handle::block_on from a plain thread cannot drive a current-thread runtime's IO: every
        // request would hang.
        if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
            bail!("S3 store: needs a multi-threaded tokio runtime");
        }
        if cfg.bucket.is_empty() {
            bail!("S3 store: the bucket name is empty");
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&cfg.part_size_min) {
            bail!(
                "S3 store s3://{}: part_size_min {} is outside S3's limits (5 MiB to 5 GiB)",
                cfg.bucket,
                cfg.part_size_min
            );
        }
        if cfg.parts_in_flight == 0 {
            bail!(
                "S3 store s3://{}: parts_in_flight must be at least 1",
                cfg.bucket
            );
        }
        if cfg.stall_timeout.is_zero() {
            bail!(
                "S3 store s3://{}: stall_timeout must be at least 1s",
                cfg.bucket
            );
        }
        if cfg.object_lock_days == Some(0) {
            bail!(
                "S3 store s3://{}: object_lock_days must be at least 1",
                cfg.bucket
            );
        }
        let prefix = cfg.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            check_key(&prefix)
                .map_err(|e| anyhow!("S3 store s3://{}: bad prefix: {e}", cfg.bucket))?;
        }

        // Five attempts with the SDK's exponential backoff and jitter ride out throttling (503
        // SlowDown) and short network drops; anything still failing after that is final for this run.
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(5));
        if let Some(region) = &cfg.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &cfg.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        match (&cfg.access_key_id, &cfg.secret_access_key) {
            (Some(id), Some(secret)) => {
                let creds = Credentials::new(
                    id,
                    secret,
                    cfg.session_token.clone(),
                    None,
                    "offsite-config",
                );
                loader = loader.credentials_provider(creds);
            }
            (None, None) => {}
            _ => bail!(
                "S3 store s3://{}: give both access_key_id and secret_access_key, or neither",
                cfg.bucket
            ),
        }
        let sdk_config = tokio::task::block_in_place(|| handle.block_on(loader.load()));
        if sdk_config.region().is_none() {
            bail!(
                "S3 store s3://{}: no region; set it in the config or with AWS_REGION",
                cfg.bucket
            );
        }
        let clock = clock::ClockWatch::default();
        let s3_config = aws_sdk_s3::config::Builder::from(&sdk_config)
            .force_path_style(cfg.path_style)
            .interceptor(clock.clone())
            .timeout_config(timeouts(cfg.stall_timeout))
            // The stall detector watches both directions of every request with one clock; the
            // SDK's own stalled-stream protection would retry a stalled part (its error is
            // retryable) and so wait out the same stall several times before failing the push.
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            // Every byte read back is checked against the sha256 in the signed manifest, which
            // S3 cannot vouch for. The SDK's own check of a GET computes a CRC over the whole
            // body for nothing, and of an object uploaded in parts (whose checksum is of the
            // parts) it can only log a warning on every pull.
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .http_client(stall::StallClient::new(
                stall::default_client(),
                cfg.stall_timeout,
            ))
            .build();
        Ok(Self {
            shared: Arc::new(Shared {
                client: Client::from_conf(s3_config),
                handle,
                bucket: cfg.bucket,
                prefix,
                part_size_min: cfg.part_size_min,
                parts_in_flight: cfg.parts_in_flight,
                object_lock: cfg.object_lock_days.map(|d| (cfg.object_lock_mode, d)),
                clock,
                stall_timeout: cfg.stall_timeout,
            }),
        })
    }

    /// Creates the bucket if it does not exist (with Object Lock on when the config asks for it).
    /// For tests and the demo: production buckets are made by an admin, with their policies.
    pub fn ensure_bucket(&self) -> Result<()> {
        let s = &self.shared;
        let loc = format!("s3://{}", s.bucket);
        s.block_on(async {
            match s.client.head_bucket().bucket(&s.bucket).send().await {
                Ok(_) => return Ok(()),
                Err(e) if http_status(&e) == Some(404) => {}
                Err(e) => bail!("checking bucket {loc}: {}", describe(&e)),
            }
            let mut req = s.client.create_bucket().bucket(&s.bucket);
            // us-east-1 is the one region that rejects an explicit location constraint.
            if let Some(region) = s.client.config().region().map(|r| r.as_ref()) {
                if region != "us-east-1" {
                    req = req.create_bucket_configuration(
                        CreateBucketConfiguration::builder()
                            .location_constraint(BucketLocationConstraint::from(region))
                            .build(),
                    );
                }
            }
            if s.object_lock.is_some() {
                req = req.object_lock_enabled_for_bucket(true);
            }
            match req.send().await {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
                Err(e) => bail!("creating bucket {loc}: {}", describe(&e)),
            }
        })
    }
}

impl Store for S3Store {
    fn location(&self) -> String {
        self.shared.location()
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        check_key(key)?;
        Ok(Box::new(upload::S3Writer::new(self.shared.clone(), key)))
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let (full_key, out) = self.shared.get(key, None)?;
        Ok(Box::new(S3Reader::new(
            &self.shared,
            key,
            full_key,
            out,
            0,
            None,
        )))
    }

    fn open_range(&self, key: &str, offset: u64, len: u64) -> Result<Box<dyn Read + Send>> {
        let Some(end) = offset.checked_add(len).filter(|_| len > 0) else {
            check_key(key)?;
            return Ok(Box::new(io::empty()));
        };
        let s = &self.shared;
        let (full_key, out) = s.get(key, Some((offset, end)))?;
        // A server that ignores Range answers 200 with the whole object: its bytes would land at
        // the wrong offsets. Only the range asked for is accepted.
        let want = format!("bytes {offset}-{}/", end - 1);
        let whole = offset == 0 && out.content_length == i64::try_from(len).ok();
        let ranged = out
            .content_range
            .as_deref()
            .is_some_and(|r| r.starts_with(&want));
        if !(ranged || whole) {
            bail!(
                "opening bytes {offset}-{} of {key} in {}: the server answered with {} instead of that range",
                end - 1,
                s.location(),
                out.content_range
                    .as_deref()
                    .map_or_else(|| "the whole object".to_string(), |r| format!("the range {r}"))
            );
        }
        Ok(Box::new(S3Reader::new(
            s,
            key,
            full_key,
            out,
            offset,
            Some(end),
        )))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let s = &self.shared;
        let root = if s.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", s.prefix)
        };
        let full_prefix = format!("{root}{prefix}");
        let mut out = Vec::new();
        s.block_on(async {
            let mut pages = s
                .client
                .list_objects_v2()
                .bucket(&s.bucket)
                .prefix(&full_prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    anyhow!(
                        "listing {} under {prefix:?}: {}",
                        s.location(),
                        describe(&e)
                    )
                })?;
                for obj in page.contents() {
                    let Some(key) = obj.key().and_then(|k| k.strip_prefix(&root)) else {
                        continue;
                    };
                    out.push(ObjectInfo {
                        key: key.to_string(),
                        size: obj.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                        modified: obj.last_modified().and_then(|t| {
                            OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).ok()
                        }),
                    });
                }
            }
            anyhow::Ok(())
        })?;
        // S3 lists in UTF-8 binary order already; sorting keeps the contract whatever the service.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn clock(&self) -> Option<ClockReading> {
        self.shared.clock.last()
    }

    fn unfinished(&self, prefix: &str) -> Result<Vec<super::Unfinished>> {
        unfinished::list(&self.shared, prefix)
    }

    fn unfinished_kind(&self) -> &'static str {
        "multipart upload"
    }

    fn delete_markers(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let s = &self.shared;
        let root = s.full_key("");
        let versions = versions::list(s, &s.full_key(prefix), None).map_err(|e| {
            anyhow!(
                "listing the object versions of {} under {prefix:?}: {}",
                s.location(),
                describe(&e)
            )
        })?;
        Ok(versions
            .into_iter()
            .filter(|v| v.marker && v.latest)
            .filter_map(|v| {
                Some(ObjectInfo {
                    key: v.key.strip_prefix(root.as_str())?.to_string(),
                    size: 0,
                    modified: v.modified,
                })
            })
            .collect())
    }

    fn lock_until(&self, key: &str) -> Result<Option<OffsetDateTime>> {
        // As listed, like `AdminStore::delete`: an S3 key is a name, not a path.
        if key.is_empty() {
            bail!("reading a lock in {}: empty key", self.location());
        }
        let s = &self.shared;
        if s.object_lock.is_none() {
            return Ok(None);
        }
        // HeadObject carries the retention (to a caller allowed s3:GetObjectRetention), and
        // more S3-compatible servers answer it than GetObjectRetention.
        let req = s
            .client
            .head_object()
            .bucket(&s.bucket)
            .key(s.full_key(key))
            .send();
        match s.block_on(req) {
            Ok(out) => Ok(out
                .object_lock_retain_until_date()
                .and_then(|d| OffsetDateTime::from_unix_timestamp(d.secs()).ok())),
            Err(e) => Err(anyhow!(
                "reading the Object Lock of {key} in {}: {}",
                self.location(),
                describe(&e)
            )),
        }
    }
}

/// Streams a GetObject body chunk by chunk; never holds more than one network chunk.
struct S3Reader {
    shared: Arc<Shared>,
    key: String,
    full_key: String,
    etag: Option<String>,
    body: ByteStream,
    chunk: Bytes,
    /// The object's byte the next read returns.
    pos: u64,
    /// A ranged read's end (exclusive); `None` reads to the object's end.
    end: Option<u64>,
    /// The body broke after a read that still returned bytes: the next read resumes.
    broken: Option<String>,
    resumes: u32,
}

/// A connection that drops mid-body is not retried by the SDK (the response had started); a pull of
/// a large dump should not fail for that, so the reader resumes from where it stopped.
const MAX_RESUMES: u32 = 3;

impl S3Reader {
    fn new(
        shared: &Arc<Shared>,
        key: &str,
        full_key: String,
        out: GetObjectOutput,
        pos: u64,
        end: Option<u64>,
    ) -> Self {
        Self {
            shared: shared.clone(),
            key: key.to_string(),
            full_key,
            etag: out.e_tag,
            body: out.body,
            chunk: Bytes::new(),
            pos,
            end,
            broken: None,
            resumes: 0,
        }
    }

    fn resume(&mut self, cause: impl fmt::Display) -> io::Result<()> {
        let range = match self.end {
            Some(end) => format!("bytes={}-{}", self.pos, end - 1),
            None => format!("bytes={}-", self.pos),
        };
        let s = &self.shared;
        if self.resumes >= MAX_RESUMES || self.end == Some(self.pos) {
            return Err(io::Error::other(format!(
                "reading {} from {} at byte {}: {cause}",
                self.key,
                s.location(),
                self.pos
            )));
        }
        self.resumes += 1;
        tracing::warn!(
            "reading {} from {} broke at byte {} ({cause}); resuming",
            self.key,
            s.location(),
            self.pos
        );
        let mut req = s
            .client
            .get_object()
            .bucket(&s.bucket)
            .key(&self.full_key)
            .range(range);
        // If-Match makes sure the rest comes from the same object, not a replaced one.
        if let Some(etag) = &self.etag {
            req = req.if_match(etag);
        }
        let out = s.block_on(req.send()).map_err(|e| {
            io::Error::other(format!(
                "resuming {} from {} at byte {}: {}",
                self.key,
                s.location(),
                self.pos,
                describe(&e)
            ))
        })?;
        self.body = out.body;
        Ok(())
    }
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(cause) = self.broken.take() {
                self.resume(cause)?;
            }
            // Every network chunk (often 16 KiB) the buffer has room for, in one block_on: a
            // block_on is a hand-off between this thread and the runtime's, and one per chunk
            // cost pull a third of its throughput. Only awaited chunks are taken, so the stall
            // detector never counts time this thread spends elsewhere.
            let shared = self.shared.clone();
            let (body, chunk) = (&mut self.body, &mut self.chunk);
            let (filled, outcome) = shared.block_on(async {
                let mut filled = 0;
                while filled < buf.len() {
                    if chunk.is_empty() {
                        match body.next().await {
                            None => return (filled, Some(None)),
                            Some(Ok(c)) => *chunk = c,
                            Some(Err(e)) => return (filled, Some(Some(chain(&e)))),
                        }
                        continue;
                    }
                    let n = (buf.len() - filled).min(chunk.len());
                    buf[filled..filled + n].copy_from_slice(&chunk.split_to(n));
                    filled += n;
                }
                (filled, None)
            });
            self.pos += filled as u64;
            if let Some(end) = self.end.filter(|&e| self.pos > e) {
                return Err(io::Error::other(format!(
                    "reading {} from {}: more bytes than the range up to byte {end} asked for",
                    self.key,
                    self.shared.location()
                )));
            }
            match outcome {
                Some(Some(cause)) if filled > 0 => {
                    self.broken = Some(cause);
                    return Ok(filled);
                }
                Some(Some(cause)) => self.broken = Some(cause),
                // A ranged body that ends before its range did not arrive whole (the response
                // said how long it is; a proxy may cut it): the rest is asked for again.
                Some(None) if self.end.is_some_and(|e| self.pos < e) && filled == 0 => {
                    self.broken = Some("the answer ended early".into());
                }
                _ => return Ok(filled),
            }
        }
    }
}

/// The SDK's own timeouts, below the stall detector ([`stall`]).
///
/// Connecting gets 10 s (less when `stall` is shorter): an endpoint that does not accept a connection
/// by then is down, and the SDK's retries try again with backoff. The SDK's read and per-attempt
/// timeouts run from the start of a request, upload included, so no fixed value fits both a
/// `HeadBucket` and a 5 GiB part on a slow line; they are set to what cannot cut an upload that is
/// still moving (an hour per attempt), as a last bound behind the stall detector, which ends any
/// request that moves no byte for `stall`. Retries stay bounded: five attempts, each ended by one of
/// these, and a stall is not retried at all.
fn timeouts(stall: Duration) -> TimeoutConfig {
    let connect = stall.min(Duration::from_secs(10));
    let attempt = stall.max(Duration::from_secs(3600));
    TimeoutConfig::builder()
        .connect_timeout(connect)
        .read_timeout(attempt)
        .operation_attempt_timeout(attempt)
        .build()
}

fn http_status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// One line for an SDK error: S3's error code and message, or the transport failure's causes. Not
/// the SDK's `DisplayErrorContext`, which appends the whole raw response.
fn describe<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match (e.code(), e.message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg} (HTTP {status})"),
                (Some(code), None) => format!("{code} (HTTP {status})"),
                _ => format!("HTTP {status}: {}", chain(service.err())),
            }
        }
        _ => chain(e),
    }
}

/// An error and its sources, joined with ": "; only the stall when there was one, since the SDK's
/// wrappers around it ("dispatch failure: other: ...") say nothing more.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    if let Some(stalled) = stall::find(e) {
        return stalled.to_string();
    }
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
