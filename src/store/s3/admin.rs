//! Deleting from S3: office-side retention only. push never gets an `AdminStore`.

use anyhow::{anyhow, Result};

use super::{describe, S3Store};
use crate::store::{check_key, AdminStore, Store, Unfinished};

impl AdminStore for S3Store {
    fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let full = self.shared.full_key(key);
        let req = self
            .shared
            .client
            .delete_object()
            .bucket(&self.shared.bucket)
            .key(&full)
            .send();
        self.shared
            .block_on(req)
            .map_err(|e| anyhow!("deleting {key} from {}: {}", self.location(), describe(&e)))?;
        Ok(())
    }

    fn discard(&self, write: &Unfinished) -> Result<()> {
        check_key(&write.key)?;
        super::unfinished::abort(&self.shared, write)
    }

    fn as_store(&self) -> &dyn Store {
        self
    }
}
