//! Deleting from S3 and extending Object Lock: office-side retention only. push never gets an
//! `AdminStore`.

use anyhow::{anyhow, Result};
use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};
use time::OffsetDateTime;

use super::{describe, LockMode, S3Store};
use crate::store::{check_key, AdminStore, Store, Unfinished};

impl AdminStore for S3Store {
    /// On a versioned bucket a plain DELETE only hides the object behind a delete marker, and the
    /// bytes stay (billed, and restorable by whoever can list versions). So every version of the
    /// key, and any delete marker, is removed by its version id; a bucket that cannot list
    /// versions gets the plain DELETE.
    fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let s = &self.shared;
        let full = s.full_key(key);
        let versions = s.block_on(
            s.client
                .list_object_versions()
                .bucket(&s.bucket)
                .prefix(&full)
                .send(),
        );
        let ids: Vec<String> = match &versions {
            Ok(v) => v
                .versions()
                .iter()
                .filter(|x| x.key() == Some(full.as_str()))
                .filter_map(|x| x.version_id())
                .chain(
                    v.delete_markers()
                        .iter()
                        .filter(|x| x.key() == Some(full.as_str()))
                        .filter_map(|x| x.version_id()),
                )
                .filter(|id| *id != "null")
                .map(str::to_string)
                .collect(),
            Err(_) => Vec::new(),
        };
        if ids.is_empty() {
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
        check_key(key)?;
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
