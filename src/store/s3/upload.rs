//! Writing one object: one PutObject for a small object, a bounded multipart upload otherwise.
//!
//! Memory: a writer has a budget of `parts_in_flight` × `part_size_min` bytes, as permits of a
//! per-writer semaphore, one permit per `part_size_min` bytes. Every part buffer, including the one
//! being filled, holds the permits for its size until its upload has finished; when they are all
//! taken, `write` blocks until a part is done. So as parts grow, fewer are in flight, and memory stays
//! at the budget (64 MiB by default) up to ~80 GB objects. Beyond that a part alone can outgrow half
//! the budget; a part then takes at most half the permits, so two parts (one filling, one uploading)
//! still overlap: a 1 TB dump with 512 MiB parts holds about 1 GiB.
//!
//! Part size: S3 allows 10,000 parts, and the size of a dump is unknown when it starts, so parts
//! start at `part_size_min` and double every 950 parts (capped at 5 GiB). 950 rather than a round
//! 1,000 so that even 5 MiB parts cover more than 5 TiB in 10,000 parts (1,000: only 4.9 TiB).

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::upload_part::UploadPartError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, ObjectLockMode,
    ServerSideEncryption,
};
use base64::Engine;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::{describe, http_status, stall, Shared, MAX_PART_SIZE};
use crate::config::human_duration;
use crate::store::ObjectWriter;

const MAX_PARTS: i32 = 10_000;
/// The longest an abort after a failure may take (less when `stall_timeout` is shorter): the push
/// has failed already and should say so soon; an upload left behind is named in the error.
const ABORT_WAIT: Duration = Duration::from_secs(10);
const PARTS_PER_DOUBLING: i32 = 950;

/// Size of part `number` (1-based).
pub(super) fn part_size(min: u64, number: i32) -> u64 {
    let doublings = ((number.max(1) - 1) / PARTS_PER_DOUBLING).min(32) as u32;
    (min << doublings).min(MAX_PART_SIZE)
}

/// Permits a part of `bytes` takes from a budget of `budget` permits of `min` bytes each: its size in
/// permits, but never more than half the budget, so that one part can fill while another uploads.
pub(super) fn permits_for(bytes: u64, min: u64, budget: usize) -> u32 {
    let want = bytes.div_ceil(min.max(1)).max(1);
    let cap = (budget / 2).max(1) as u64;
    want.min(cap).min(u32::MAX as u64) as u32
}

/// The base64 CRC32C that S3 expects in `x-amz-checksum-crc32c`. CRC32C rather than SHA-256: the
/// pipeline already hashes every byte with SHA-256, and this check only guards the transfer.
fn crc32c(data: &[u8]) -> String {
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32;
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// The hex MD5 of `data`: what S3 reports as the ETag of an object or part it stored unencrypted or
/// under SSE-S3.
fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

/// How many times a part goes out when S3 keeps storing other bytes than were sent.
const PART_SENDS: u32 = 3;

/// The ETag S3 gave what it stored, when that proves it stored other bytes than those whose MD5 is
/// `sent_md5`; `None` when they match or the ETag proves nothing.
///
/// S3 checks the `x-amz-checksum-crc32c` push sends and refuses a body that does not match it. Not
/// every S3-compatible server does (moto stores whatever arrives, and echoes the sender's checksum
/// back), and a byte changed on the way (a faulty NIC, a middlebox, RAM) would then be committed,
/// found only when the office verifies the snapshot. The ETag is computed by the server from the
/// bytes it stored: an MD5, except under SSE-KMS or SSE-C, and except for servers whose ETags are
/// no hex MD5 at all; those prove nothing.
fn stored_other_bytes(
    etag: Option<&str>,
    sse: Option<&ServerSideEncryption>,
    sse_customer: Option<&str>,
    sent_md5: &str,
) -> Option<String> {
    if sse_customer.is_some() || sse.is_some_and(|m| *m != ServerSideEncryption::Aes256) {
        return None;
    }
    let etag = etag?.trim_matches('"');
    let is_md5 = etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit());
    (is_md5 && !etag.eq_ignore_ascii_case(sent_md5)).then(|| etag.to_string())
}

/// What a writer sent, to recognise its own object when S3 answers that the key already exists.
#[derive(Debug, PartialEq)]
struct Sent {
    size: u64,
    /// Base64 CRC32C: of the whole object for a PutObject; for a multipart upload S3's composite
    /// checksum, the CRC32C of the parts' CRC32Cs one after another. Empty when a part had none.
    crc32c: String,
    /// Parts of a multipart upload; `None` for a PutObject.
    parts: Option<usize>,
    /// A multipart upload's ETag as S3 builds it, `<MD5 of the parts' binary MD5s>-<parts>`, from
    /// the ETags S3 gave our parts; `None` for a PutObject, or when a part's ETag is not 32 hex
    /// digits. (Under SSE-KMS a part's ETag is no MD5: this then never matches, and the CRC32C
    /// decides.)
    etag: Option<String>,
}

impl Sent {
    fn multipart(parts: &[CompletedPart], size: u64) -> Self {
        let decode = |b64: &str| base64::engine::general_purpose::STANDARD.decode(b64).ok();
        let crcs: Option<Vec<u8>> = parts
            .iter()
            .map(|p| p.checksum_crc32_c().and_then(decode))
            .collect::<Option<Vec<_>>>()
            .map(|v| v.concat());
        let md5s: Option<Vec<u8>> = parts
            .iter()
            .map(|p| {
                let tag = p.e_tag()?.trim_matches('"');
                hex::decode(tag).ok().filter(|d| d.len() == 16)
            })
            .collect::<Option<Vec<_>>>()
            .map(|v| v.concat());
        Self {
            size,
            crc32c: crcs.map(|c| crc32c(&c)).unwrap_or_default(),
            parts: Some(parts.len()),
            etag: md5s.map(|m| {
                use md5::Digest;
                format!("{}-{}", hex::encode(md5::Md5::digest(&m)), parts.len())
            }),
        }
    }

    /// Whether a HEAD's size, and its CRC32C or (multipart) its ETag, are exactly this.
    ///
    /// Either digest alone identifies the bytes: the CRC32C is the one we computed, the ETag is
    /// built from the MD5s S3 computed of our parts. Both are kept because neither always works: a
    /// part's ETag is no MD5 under SSE-KMS, and some S3-compatible servers compute a composite
    /// CRC32C wrong (moto without its optional crc32c module uses CRC32).
    fn matches(&self, size: Option<i64>, crc32c: Option<&str>, etag: Option<&str>) -> bool {
        let etag_ok = matches!(
            (&self.etag, etag),
            (Some(ours), Some(theirs)) if ours == theirs.trim_matches('"')
        );
        size.and_then(|n| u64::try_from(n).ok()) == Some(self.size)
            && (etag_ok || self.crc32c_matches(crc32c))
    }

    /// S3 writes a composite checksum as `<base64>-<parts>`; some S3-compatible servers (moto) leave
    /// the suffix off.
    fn crc32c_matches(&self, crc32c: Option<&str>) -> bool {
        let Some(crc) = crc32c else {
            return false;
        };
        if self.crc32c.is_empty() {
            return false;
        }
        // '-' is not in the base64 alphabet, so the split is unambiguous.
        let (value, parts) = match crc.rsplit_once('-') {
            Some((v, n)) => (v, n.parse::<usize>().ok()),
            None => (crc, None),
        };
        let parts_ok = match parts {
            Some(n) => self.parts == Some(n),
            None => !crc.contains('-'),
        };
        value == self.crc32c && parts_ok
    }
}

pub(super) struct S3Writer {
    shared: Arc<Shared>,
    key: String,
    full_key: String,
    /// Fixed when the writer is created, so every part of one object has the same retention.
    lock: Option<(ObjectLockMode, aws_smithy_types::DateTime)>,
    slots: Arc<Semaphore>,
    filling: Option<Filling>,
    upload: Option<Multipart>,
    next_part: i32,
    /// Bytes handed to part uploads so far.
    sent_bytes: u64,
    /// Set by the first failed write; the object can then only be abandoned.
    failed: Option<String>,
}

struct Filling {
    data: Vec<u8>,
    size: usize,
    permit: OwnedSemaphorePermit,
}

struct Multipart {
    /// Names the upload if the process has to exit before it is completed or aborted.
    _pending: crate::interrupt::Pending,
    id: String,
    running: JoinSet<Result<CompletedPart>>,
    finished: Vec<CompletedPart>,
}

impl S3Writer {
    pub(super) fn new(shared: Arc<Shared>, key: &str) -> Self {
        Self {
            full_key: shared.full_key(key),
            key: key.to_string(),
            lock: shared.lock_until(),
            slots: Arc::new(Semaphore::new(shared.parts_in_flight)),
            shared,
            filling: None,
            upload: None,
            next_part: 1,
            sent_bytes: 0,
            failed: None,
        }
    }

    fn write_some(&mut self, data: &[u8]) -> Result<usize> {
        // After SIGINT/SIGTERM: fail, so that the upload is aborted (by `write`, naming an abort
        // that fails).
        crate::interrupt::check()?;
        let filling = match &mut self.filling {
            Some(f) => f,
            None => {
                let f = self.start_part()?;
                self.filling.insert(f)
            }
        };
        let n = data.len().min(filling.size - filling.data.len());
        filling.data.extend_from_slice(&data[..n]);
        if filling.data.len() == filling.size {
            self.send_part()?;
        }
        Ok(n)
    }

    /// Takes the budget for the next part buffer, blocking while the writer's budget is in use.
    fn start_part(&mut self) -> Result<Filling> {
        let bytes = part_size(self.shared.part_size_min, self.next_part);
        let permits = permits_for(
            bytes,
            self.shared.part_size_min,
            self.shared.parts_in_flight,
        );
        // A signal ends the wait for a slot: the parts in flight are cancelled by the abort.
        let permit = self
            .shared
            .block_on(crate::interrupt::interruptible(
                self.slots.clone().acquire_many_owned(permits),
            ))?
            .context("the upload's part slots were closed")?;
        // A part that failed while we waited should stop the upload now, not after the whole dump.
        self.reap()?;
        let size =
            usize::try_from(bytes).context("part size does not fit in memory on this platform")?;
        Ok(Filling {
            data: Vec::with_capacity(size),
            size,
            permit,
        })
    }

    /// Collects parts whose upload has ended, failing on the first failed one.
    fn reap(&mut self) -> Result<()> {
        let Some(up) = &mut self.upload else {
            return Ok(());
        };
        while let Some(res) = up.running.try_join_next() {
            up.finished
                .push(res.map_err(|e| anyhow!("part upload of {} stopped: {e}", self.key))??);
        }
        Ok(())
    }

    fn send_part(&mut self) -> Result<()> {
        let Some(filling) = self.filling.take() else {
            return Ok(());
        };
        let number = self.next_part;
        if number > MAX_PARTS {
            bail!(
                "object {} in {} needs more than {MAX_PARTS} parts; raise part_size_min",
                self.key,
                self.shared.location()
            );
        }
        if self.upload.is_none() {
            self.upload = Some(self.create_upload()?);
        }
        let Some(up) = &mut self.upload else {
            bail!("multipart upload of {} not started", self.key)
        };
        self.next_part += 1;
        let body = Bytes::from(filling.data);
        self.sent_bytes += body.len() as u64;
        let checksum = crc32c(&body);
        let shared = self.shared.clone();
        let (key, full_key, upload_id) = (self.key.clone(), self.full_key.clone(), up.id.clone());
        let permit = filling.permit;
        up.running.spawn_on(
            async move {
                let s = &shared;
                // Hashed on a blocking thread while the part goes out, not on the writer's thread.
                let digest = {
                    let body = body.clone();
                    tokio::task::spawn_blocking(move || md5_hex(&body))
                };
                let send = || {
                    s.client
                        .upload_part()
                        .bucket(&s.bucket)
                        .key(&full_key)
                        .upload_id(&upload_id)
                        .part_number(number)
                        .body(ByteStream::from(body.clone()))
                        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                        .checksum_crc32_c(&checksum)
                        .send()
                };
                let failed = |e: SdkError<UploadPartError, HttpResponse>| match stall::find(&e) {
                    Some(stalled) => anyhow!(
                        "S3 at {} made no progress for {} uploading {key} (part {number}) to {}; \
                         the upload was stopped",
                        stalled.endpoint(),
                        human_duration(stalled.stall()),
                        s.location()
                    ),
                    None => anyhow!(
                        "uploading part {number} of {key} to {}: {}",
                        s.location(),
                        describe(&e)
                    ),
                };
                let (first, digest) = tokio::join!(send(), digest);
                let md5 = digest.map_err(|e| anyhow!("hashing part {number} of {key}: {e}"))?;
                let mut out = first.map_err(failed)?;
                let mut sends = 1;
                // Sending the part again replaces what S3 stored under its number.
                while let Some(stored) = stored_other_bytes(
                    out.e_tag(),
                    out.server_side_encryption(),
                    out.sse_customer_algorithm(),
                    &md5,
                ) {
                    if sends == PART_SENDS {
                        bail!(
                            "{} stored other bytes than were sent for part {number} of {key}, \
                             {PART_SENDS} times (ETag {stored}, MD5 of the part sent {md5}): \
                             something between this host and S3 changes the data, and the server \
                             does not check the part's CRC32C",
                            s.location()
                        );
                    }
                    tracing::warn!(
                        "{} stored other bytes than were sent for part {number} of {key} (ETag \
                         {stored}, MD5 of the part sent {md5}); sending the part again",
                        s.location()
                    );
                    sends += 1;
                    out = send().await.map_err(failed)?;
                }
                // The part is stored as sent; free its slot for the next part.
                drop(permit);
                let etag = out.e_tag.with_context(|| {
                    format!(
                        "uploading part {number} of {key} to {}: no ETag",
                        s.location()
                    )
                })?;
                Ok(CompletedPart::builder()
                    .part_number(number)
                    .e_tag(etag)
                    .checksum_crc32_c(checksum)
                    .build())
            },
            &self.shared.handle,
        );
        Ok(())
    }

    fn create_upload(&self) -> Result<Multipart> {
        let s = &self.shared;
        let mut req = s
            .client
            .create_multipart_upload()
            .bucket(&s.bucket)
            .key(&self.full_key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C);
        if let Some((mode, until)) = &self.lock {
            req = req
                .object_lock_mode(mode.clone())
                .object_lock_retain_until_date(*until);
        }
        let out = s.block_on(req.send()).map_err(|e| {
            anyhow!(
                "starting the multipart upload of {} to {}: {}",
                self.key,
                s.location(),
                describe(&e)
            )
        })?;
        let id = out.upload_id.with_context(|| {
            format!(
                "starting the multipart upload of {} to {}: no upload id",
                self.key,
                s.location()
            )
        })?;
        Ok(Multipart {
            _pending: crate::interrupt::Pending::new(format!(
                "the multipart upload {id} of {} in s3://{} (not aborted: aws s3api abort-multipart-upload, or a lifecycle rule for incomplete multipart uploads, removes it)",
                self.full_key, s.bucket
            )),
            id,
            running: JoinSet::new(),
            finished: Vec::new(),
        })
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(msg) = &self.failed {
            bail!("{msg}");
        }
        crate::interrupt::check().with_context(|| format!("not committing {}", self.key))?;
        if self.upload.is_none() {
            let data = self.filling.take().map(|f| f.data).unwrap_or_default();
            return self.put_object(data);
        }
        if self.filling.as_ref().is_some_and(|f| !f.data.is_empty()) {
            self.send_part()?;
        }
        self.filling = None;
        let shared = self.shared.clone();
        let s = &shared;
        let key = &self.key;
        let Some(up) = &mut self.upload else {
            bail!("multipart upload of {key} not started")
        };
        let mut parts = std::mem::take(&mut up.finished);
        s.block_on(crate::interrupt::interruptible(async {
            while let Some(res) = up.running.join_next().await {
                parts.push(res.map_err(|e| anyhow!("part upload of {key} stopped: {e}"))??);
            }
            anyhow::Ok(())
        }))
        .with_context(|| format!("not committing {key}"))??;
        // The last moment a signal stops the commit: CompleteMultipartUpload makes the whole
        // object or nothing.
        crate::interrupt::check().with_context(|| format!("not committing {key}"))?;
        parts.sort_by_key(|p| p.part_number());
        let sent = Sent::multipart(&parts, self.sent_bytes);
        let req = s
            .client
            .complete_multipart_upload()
            .bucket(&s.bucket)
            .key(&self.full_key)
            .upload_id(&up.id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .if_none_match("*");
        match s.block_on(req.send()) {
            Ok(_) => {}
            // NoSuchUpload too: a retried CompleteMultipartUpload whose first answer was lost may
            // find the upload already completed.
            Err(e) if is_precondition_failed(&e) || e.code() == Some("NoSuchUpload") => {
                // Drop still aborts the upload: if it is not the one that made the object, its parts
                // would otherwise stay, billed.
                return self.accept_if_ours(&sent, &describe(&e));
            }
            Err(e) => return Err(self.commit_error(e)),
        }
        // Completed: nothing left for Drop to abort.
        self.upload = None;
        Ok(())
    }

    fn put_object(&mut self, data: Vec<u8>) -> Result<()> {
        let s = &self.shared;
        let checksum = crc32c(&data);
        // Small (under one part), so hashed here.
        let md5 = md5_hex(&data);
        let sent = Sent {
            size: data.len() as u64,
            crc32c: checksum.clone(),
            parts: None,
            etag: None,
        };
        let mut req = s
            .client
            .put_object()
            .bucket(&s.bucket)
            .key(&self.full_key)
            .body(ByteStream::from(Bytes::from(data)))
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .checksum_crc32_c(checksum)
            .if_none_match("*");
        if let Some((mode, until)) = &self.lock {
            req = req
                .object_lock_mode(mode.clone())
                .object_lock_retain_until_date(*until);
        }
        match s.block_on(req.send()) {
            Ok(out) => match stored_other_bytes(
                out.e_tag(),
                out.server_side_encryption(),
                out.sse_customer_algorithm(),
                &md5,
            ) {
                None => Ok(()),
                Some(stored) => bail!(
                    "{loc} stored object {key} with other bytes than this push sent (ETag \
                     {stored}, MD5 of what was sent {md5}): something between this host and S3 \
                     changed the data, and the server did not check its CRC32C; offsite never \
                     overwrites an object: push again",
                    loc = s.location(),
                    key = self.key,
                ),
            },
            Err(e) if is_precondition_failed(&e) => self.accept_if_ours(&sent, &describe(&e)),
            Err(e) => Err(self.commit_error(e)),
        }
    }

    /// S3 refused to create the key because it exists (412). That is what the SDK's retry gets when
    /// the response to a write that succeeded was lost on the way back: the object is then ours, and
    /// failing the push for it would be wrong. So read its size and checksum back and accept it when
    /// they are exactly what this writer sent; otherwise it is someone else's object and stays.
    ///
    /// This does not ask whether a retry happened: an object with the same size and checksum as
    /// ours holds the bytes we meant to write, whoever wrote them, so accepting it is never harmful.
    /// Nobody can make a different object match on purpose: what push writes is encrypted with a
    /// fresh session key, so nobody knows its digests before it is sent. An accidental CRC32C match
    /// (one in four billion, of an object at a key with a random snapshot id) would still be caught
    /// by the sha256 in the signed manifest at pull and verify.
    fn accept_if_ours(&self, sent: &Sent, cause: &str) -> Result<()> {
        let s = &self.shared;
        let (key, loc) = (&self.key, s.location());
        let head = s
            .block_on(
                s.client
                    .head_object()
                    .bucket(&s.bucket)
                    .key(&self.full_key)
                    .checksum_mode(ChecksumMode::Enabled)
                    .send(),
            )
            .map_err(|e| {
                anyhow!(
                    "{loc} refused to create object {key} ({cause}), and reading the object back \
                     to compare it with what this push sent failed: {}; offsite never overwrites an \
                     object: find out what holds this key, then push again",
                    describe(&e)
                )
            })?;
        let (size, crc) = (head.content_length(), head.checksum_crc32_c());
        if sent.matches(size, crc, head.e_tag()) {
            tracing::info!(
                "{key} in {loc}: S3 answered that it exists ({cause}), and it holds exactly what \
                 this push sent (a retry after a lost response); counting it as written"
            );
            return Ok(());
        }
        let shown = |n: Option<i64>| n.map_or_else(|| "unknown".to_string(), |n| n.to_string());
        bail!(
            "object {key} already exists in {loc} with other content ({} bytes, CRC32C {}; this \
             push sent {} bytes, CRC32C {}); offsite never overwrites an object: find out what \
             wrote this key",
            shown(size),
            crc.unwrap_or("none"),
            sent.size,
            sent.crc32c,
        )
    }

    fn commit_error<E>(&self, e: SdkError<E, HttpResponse>) -> anyhow::Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (key, loc) = (&self.key, self.shared.location());
        // 412: the key exists. 409 ConditionalRequestConflict: another writer is committing the same
        // key right now. Either way the object is someone else's and must stay as it is.
        if is_precondition_failed(&e) {
            anyhow!("object {key} already exists in {loc}; offsite never overwrites an object")
        } else if http_status(&e) == Some(409) || e.code() == Some("ConditionalRequestConflict") {
            anyhow!(
                "object {key} in {loc} is being written by another writer at the same time; \
                 offsite never overwrites an object"
            )
        } else {
            anyhow!("writing {key} to {loc}: {}", describe(&e))
        }
    }
}

/// 412: S3 refused a create-only write because the key exists.
fn is_precondition_failed<E>(e: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    http_status(e) == Some(412) || e.code() == Some("PreconditionFailed")
}

impl Write for S3Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(msg) = &self.failed {
            return Err(io::Error::other(msg.clone()));
        }
        if data.is_empty() {
            return Ok(0);
        }
        self.write_some(data).map_err(|e| {
            let mut msg = format!("{e:#}");
            // Abort now rather than when the writer is dropped, so that an upload that could not be
            // aborted is named in the error the push reports, not only in a log line.
            if let Err(orphan) = self.abandon() {
                msg = format!("{msg}; {orphan}");
            }
            self.failed = Some(msg.clone());
            io::Error::other(msg)
        })
    }

    /// Nothing to do: a part goes out when it is full, and a short part in the middle of a multipart
    /// upload would be rejected by S3.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Writer {
    fn commit(mut self: Box<Self>) -> Result<()> {
        // On failure the multipart upload is aborted; one that could not be is named in the error.
        self.finish().map_err(|e| match self.abandon() {
            Ok(()) => e,
            Err(orphan) => anyhow!("{e:#}; {orphan}"),
        })
    }
}

impl S3Writer {
    /// Aborts the multipart upload, if one was started and not completed: best effort, within
    /// `ABORT_WAIT`. `Err` names the upload left behind, for the office to remove.
    fn abandon(&mut self) -> std::result::Result<(), String> {
        self.filling = None;
        let Some(mut up) = self.upload.take() else {
            return Ok(());
        };
        let s = self.shared.clone();
        let wait = s.stall_timeout.min(ABORT_WAIT);
        let res = s.block_on(async {
            // A part still in flight could land after the abort and leave a billed, invisible part.
            up.running.shutdown().await;
            tokio::time::timeout(
                wait,
                s.client
                    .abort_multipart_upload()
                    .bucket(&s.bucket)
                    .key(&self.full_key)
                    .upload_id(&up.id)
                    .send(),
            )
            .await
        });
        let why = match res {
            Ok(Ok(_)) => return Ok(()),
            // Completed after all (a retry whose first answer was lost) or aborted already: either
            // way no parts are left.
            Ok(Err(e)) if e.code() == Some("NoSuchUpload") => return Ok(()),
            // A push policy without the permission: say so, since retrying will not help.
            Ok(Err(e)) if http_status(&e) == Some(403) || e.code() == Some("AccessDenied") => {
                format!(
                    "{}: this credential may not abort multipart uploads; give it \
                     s3:AbortMultipartUpload, as README's push policy does",
                    describe(&e)
                )
            }
            Ok(Err(e)) => describe(&e),
            Err(_) => format!("no answer in {}", human_duration(wait)),
        };
        let (id, key, bucket) = (&up.id, &self.full_key, &s.bucket);
        let orphan = format!(
            "the multipart upload {id} of {key} in s3://{bucket} could not be aborted ({why}); \
             its parts stay, billed and not listed as objects, until the office's prune aborts \
             it after office.abandon_after, a bucket lifecycle rule for incomplete multipart \
             uploads does, or someone runs \
             `aws s3api abort-multipart-upload --bucket {bucket} --key {key} --upload-id {id}`"
        );
        crate::interrupt::left_behind(orphan.clone());
        Err(orphan)
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if let Err(orphan) = self.abandon() {
            tracing::warn!("{orphan}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn memory_budget_holds_as_parts_grow() {
        let (min, budget) = (8 * MIB, 8usize);
        // In flight at once: budget / permits per part; bytes held: that times the part size.
        let held = |part: u64| {
            let p = permits_for(part, min, budget) as u64;
            (budget as u64 / p) * part
        };
        assert_eq!(held(8 * MIB), 64 * MIB);
        assert_eq!(held(16 * MIB), 64 * MIB);
        assert_eq!(held(32 * MIB), 64 * MIB);
        assert_eq!(held(64 * MIB), 128 * MIB, "two parts still overlap");
        assert_eq!(held(512 * MIB), 1024 * MIB);
        assert_eq!(
            permits_for(5 * MIB, 5 * MIB, 1),
            1,
            "a budget of one part still works"
        );
    }
    const TIB: u64 = 1 << 40;

    fn capacity(min: u64) -> u64 {
        (1..=MAX_PARTS).map(|n| part_size(min, n)).sum()
    }

    #[test]
    fn ten_thousand_parts_cover_five_tib() {
        for min in [5 * MIB, 8 * MIB, 64 * MIB] {
            assert!(
                capacity(min) >= 5 * TIB,
                "part_size_min {min}: {}",
                capacity(min)
            );
        }
        assert_eq!(part_size(8 * MIB, 1), 8 * MIB);
        assert_eq!(part_size(8 * MIB, 950), 8 * MIB);
        assert_eq!(part_size(8 * MIB, 951), 16 * MIB);
        assert_eq!(part_size(MAX_PART_SIZE, 9_999), MAX_PART_SIZE);
    }

    fn part(number: i32, data: &[u8], md5: &str) -> CompletedPart {
        CompletedPart::builder()
            .part_number(number)
            .checksum_crc32_c(crc32c(data))
            .e_tag(format!("\"{md5}\""))
            .build()
    }

    #[test]
    fn a_multipart_upload_is_recognised_by_its_composite_crc32c_or_its_etag() {
        // Reference values from a bitwise CRC-32C and Python's hashlib.
        assert_eq!(crc32c(b"hello "), "fmJ+WA==");
        let parts = [
            part(1, b"hello ", "f814893777bcc2295fff05f00e508da6"),
            part(2, b"world", "7d793037a0760186574b0282f2f435e7"),
        ];
        let sent = Sent::multipart(&parts, 11);
        assert_eq!(sent.crc32c, "vUZpoA==");
        assert_eq!(
            sent.etag.as_deref(),
            Some("e09e4fd6265b36115fe3db32df945d84-2")
        );
        let etag = Some("\"e09e4fd6265b36115fe3db32df945d84-2\"");
        // S3 appends the part count to a composite checksum, moto does not; both are ours.
        assert!(sent.matches(Some(11), Some("vUZpoA==-2"), None));
        assert!(sent.matches(Some(11), Some("vUZpoA=="), None));
        assert!(
            sent.matches(Some(11), Some("wrongXX=-2"), etag),
            "the ETag alone"
        );
        assert!(
            !sent.matches(Some(11), Some("vUZpoA==-3"), None),
            "other parts"
        );
        assert!(
            !sent.matches(Some(12), Some("vUZpoA==-2"), etag),
            "other size"
        );
        assert!(
            !sent.matches(
                Some(11),
                None,
                Some("\"e09e4fd6265b36115fe3db32df945d84-3\"")
            ),
            "other ETag"
        );
        assert!(
            !sent.matches(Some(11), None, None),
            "nothing to compare proves nothing"
        );

        // Parts without checksums or with non-MD5 ETags (SSE-KMS) leave nothing to compare.
        let bare = Sent::multipart(
            &[CompletedPart::builder().part_number(1).e_tag("x").build()],
            1,
        );
        assert!(!bare.matches(Some(1), Some(""), Some("x")));
    }

    #[test]
    fn a_put_objects_checksum_must_match_exactly() {
        let sent = Sent {
            size: 5,
            crc32c: crc32c(b"hello"),
            parts: None,
            etag: None,
        };
        assert!(sent.matches(Some(5), Some(&crc32c(b"hello")), None));
        assert!(!sent.matches(Some(5), Some(&crc32c(b"hellp")), None));
        assert!(!sent.matches(None, Some(&crc32c(b"hello")), None));
        assert!(
            !sent.matches(Some(5), Some(&format!("{}-1", crc32c(b"hello"))), None),
            "a multipart object is not our PutObject"
        );
    }

    #[test]
    fn an_etag_proves_other_bytes_only_when_it_is_an_md5_of_unencrypted_bytes() {
        let sent = md5_hex(b"hello");
        assert_eq!(sent, "5d41402abc4b2a76b9719d911017c592");
        let same = "\"5D41402ABC4B2A76B9719D911017C592\"";
        let other = "\"0123456789abcdef0123456789abcdef\"";
        assert_eq!(stored_other_bytes(Some(same), None, None, &sent), None);
        assert_eq!(
            stored_other_bytes(Some(other), None, None, &sent).as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert!(
            stored_other_bytes(
                Some(other),
                Some(&ServerSideEncryption::Aes256),
                None,
                &sent
            )
            .is_some(),
            "under SSE-S3 the ETag is still the MD5"
        );
        for kms in [
            ServerSideEncryption::AwsKms,
            ServerSideEncryption::AwsKmsDsse,
        ] {
            assert_eq!(
                stored_other_bytes(Some(other), Some(&kms), None, &sent),
                None
            );
        }
        assert_eq!(
            stored_other_bytes(Some(other), None, Some("AES256"), &sent),
            None,
            "SSE-C"
        );
        for not_md5 in ["\"abc\"", "\"0123456789abcdef0123456789abcdef-2\"", ""] {
            assert_eq!(stored_other_bytes(Some(not_md5), None, None, &sent), None);
        }
        assert_eq!(stored_other_bytes(None, None, None, &sent), None);
    }

    #[test]
    fn crc32c_matches_the_reference_value() {
        // CRC-32C check value of "123456789" is 0xE3069283.
        let expected =
            base64::engine::general_purpose::STANDARD.encode(0xE306_9283u32.to_be_bytes());
        assert_eq!(crc32c(b"123456789"), expected);
    }
}
