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
        let (listed, ids) = match super::versions::list(s, &full, Some(&full)) {
            Ok(v) => (
                true,
                v.into_iter()
                    .filter(|v| v.key == full)
                    .filter_map(|v| v.id)
                    .collect::<Vec<_>>(),
            ),
            Err(e) if matches!(http_status(&*e), Some(403 | 501)) => {
                // Without the listing a versioned bucket keeps the bytes behind a delete marker:
                // said once per run, so that a restricted office credential is noticed.
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "{}: object versions cannot be listed ({}): deletes are plain, and on a versioned bucket the bytes stay as older versions; give the office s3:ListBucketVersions and s3:DeleteObjectVersion",
                        self.location(),
                        describe(&e)
                    )
                });
                (false, Vec::new())
            }
            Err(e) => {
                return Err(anyhow!(
                    "listing the versions of {key} in {} before deleting it: {}",
                    self.location(),
                    describe(&e)
                ))
            }
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
