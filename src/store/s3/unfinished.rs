//! Multipart uploads that were started and never completed nor aborted: a push killed mid-upload,
//! or one whose credential may not abort. Their parts are stored and billed but belong to no
//! object; the office lists them (pull's report, `snapshots --all`) and prune aborts them.

use anyhow::{anyhow, Result};
use time::OffsetDateTime;

use super::{describe, Shared};
use crate::store::Unfinished;

fn time_of(t: Option<&aws_smithy_types::DateTime>) -> Option<OffsetDateTime> {
    t.and_then(|t| OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).ok())
}

/// The multipart uploads under `prefix`, each with the size and time of the parts it holds.
pub(super) fn list(s: &Shared, prefix: &str) -> Result<Vec<Unfinished>> {
    let root = if s.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", s.prefix)
    };
    let full_prefix = format!("{root}{prefix}");
    let failed = |e: String| {
        anyhow!(
            "listing the unfinished multipart uploads of {} under {prefix:?}: {e}",
            s.location()
        )
    };
    let mut out = Vec::new();
    s.block_on(async {
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = s
                .client
                .list_multipart_uploads()
                .bucket(&s.bucket)
                .prefix(&full_prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| failed(describe(&e)))?;
            for u in page.uploads() {
                let (Some(full), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                let Some(key) = full.strip_prefix(&root) else {
                    continue;
                };
                let mut found = Unfinished {
                    key: key.to_string(),
                    handle: id.to_string(),
                    size: None,
                    modified: time_of(u.initiated()),
                };
                // The parts say how much it holds and whether it is still making progress; an
                // upload aborted meanwhile has none to list, which is no error.
                if let Ok(parts) = s
                    .client
                    .list_parts()
                    .bucket(&s.bucket)
                    .key(full)
                    .upload_id(id)
                    .send()
                    .await
                {
                    let mut size = 0u64;
                    for p in parts.parts() {
                        size += p.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
                        let t = time_of(p.last_modified());
                        if t > found.modified {
                            found.modified = t;
                        }
                    }
                    found.size = Some(size);
                }
                out.push(found);
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        anyhow::Ok(())
    })?;
    out.sort_by(|a, b| a.key.cmp(&b.key).then(a.handle.cmp(&b.handle)));
    Ok(out)
}

/// Aborts one upload; one that is gone already (`NoSuchUpload`) is not an error.
pub(super) fn abort(s: &Shared, write: &Unfinished) -> Result<()> {
    let full = s.full_key(&write.key);
    let res = s.block_on(
        s.client
            .abort_multipart_upload()
            .bucket(&s.bucket)
            .key(&full)
            .upload_id(&write.handle)
            .send(),
    );
    match res {
        Ok(_) => Ok(()),
        Err(e) if aws_sdk_s3::error::ProvideErrorMetadata::code(&e) == Some("NoSuchUpload") => {
            Ok(())
        }
        Err(e) => Err(anyhow!(
            "aborting the multipart upload {} of {} in {}: {}",
            write.handle,
            write.key,
            s.location(),
            describe(&e)
        )),
    }
}
