//! Deleting from S3 and extending Object Lock: office-side retention only. push never gets an
//! `AdminStore`.

use anyhow::{anyhow, Result};
use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};
use time::OffsetDateTime;

use super::{describe, http_status, LockMode, S3Store};
use crate::store::{check_key, AdminStore, Store, Unfinished};

impl AdminStore for S3Store {
    /// On a versioned bucket a plain DELETE only hides the object behind a delete marker, and the
    /// bytes stay (billed, and restorable by whoever can list versions). So every version of the
    /// key, the `null` one of a bucket versioned later included, and any delete marker, is removed
    /// by its version id. A store that does not implement version listing, or a credential that
    /// may not list versions, gets the plain DELETE.
    fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let s = &self.shared;
        let full = s.full_key(key);
        let mut ids: Vec<String> = Vec::new();
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        let listed = loop {
            let page = s.block_on(
                s.client
                    .list_object_versions()
                    .bucket(&s.bucket)
                    .prefix(&full)
                    .set_key_marker(key_marker.take())
                    .set_version_id_marker(version_marker.take())
                    .send(),
            );
            let page = match page {
                Ok(p) => p,
                Err(e) if http_status(&e) == Some(403) || http_status(&e) == Some(501) => {
                    break false;
                }
                Err(e) => {
                    return Err(anyhow!(
                        "listing the versions of {key} in {} before deleting it: {}",
                        self.location(),
                        describe(&e)
                    ))
                }
            };
            let exact = |k: Option<&str>| k == Some(full.as_str());
            ids.extend(
                page.versions()
                    .iter()
                    .filter(|v| exact(v.key()))
                    .filter_map(|v| v.version_id().map(str::to_string))
                    .chain(
                        page.delete_markers()
                            .iter()
                            .filter(|m| exact(m.key()))
                            .filter_map(|m| m.version_id().map(str::to_string)),
                    ),
            );
            // Keys sort, so once the listing has passed the key, nothing more is its.
            let next = page.next_key_marker().map(str::to_string);
            if page.is_truncated() != Some(true)
                || next.as_deref().is_none_or(|n| n > full.as_str())
            {
                break true;
            }
            key_marker = next;
            version_marker = page.next_version_id_marker().map(str::to_string);
        };
        // An unversioned bucket lists its objects with the version id "null", which deletes them
        // just as well; on a versioned bucket a plain DELETE of such an object would only hide it.
        if !listed || ids.is_empty() {
            let req = s.client.delete_object().bucket(&s.bucket).key(&full).send();
            s.block_on(req).map_err(|e| {
                anyhow!("deleting {key} from {}: {}", self.location(), describe(&e))
            })?;
            return Ok(());
        }
        for id in ids {
            let req = s
                .client
                .delete_object()
                .bucket(&s.bucket)
                .key(&full)
                .version_id(&id)
                .send();
            s.block_on(req).map_err(|e| {
                anyhow!(
                    "deleting version {id} of {key} from {}: {}",
                    self.location(),
                    describe(&e)
                )
            })?;
        }
        Ok(())
    }

    fn discard(&self, write: &Unfinished) -> Result<()> {
        check_key(&write.key)?;
        super::unfinished::abort(&self.shared, write)
    }

    fn as_store(&self) -> &dyn Store {
        self
    }

    fn extend_lock(&self, key: &str, until: OffsetDateTime) -> Result<()> {
        // As listed, like `delete`.
        if key.is_empty() {
            return Err(anyhow!("locking in {}: empty key", self.location()));
        }
        let s = &self.shared;
        let Some((mode, _)) = s.object_lock else {
            return Err(anyhow!(
                "{}: cannot lock {key}: store.s3.object_lock is not set",
                self.location()
            ));
        };
        let mode = match mode {
            LockMode::Compliance => ObjectLockRetentionMode::Compliance,
            LockMode::Governance => ObjectLockRetentionMode::Governance,
        };
        let req = s
            .client
            .put_object_retention()
            .bucket(&s.bucket)
            .key(s.full_key(key))
            .retention(
                ObjectLockRetention::builder()
                    .mode(mode)
                    .retain_until_date(aws_smithy_types::DateTime::from_secs(
                        until.unix_timestamp(),
                    ))
                    .build(),
            )
            .send();
        s.block_on(req).map_err(|e| {
            anyhow!(
                "extending the Object Lock of {key} in {} to {until}: {}",
                self.location(),
                describe(&e)
            )
        })?;
        Ok(())
    }
}
