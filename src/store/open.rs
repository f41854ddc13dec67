//! Opening the store a config names.

use std::sync::Arc;

use anyhow::Result;

use super::local::LocalStore;
use super::s3::{LockMode, S3Config, S3Store};
use super::{AdminStore, Store};
use crate::config::{Config, S3Settings, StoreConfig};

/// The configured store, for reading and create-only writing. There is no delete through it.
pub fn open(cfg: &Config, handle: &tokio::runtime::Handle) -> Result<Arc<dyn Store>> {
    Ok(match &cfg.store {
        StoreConfig::Local(dir) => Arc::new(LocalStore::new(dir)?),
        StoreConfig::S3(s) => Arc::new(s3(s, handle)?),
    })
}

/// The configured store with delete: for office-side retention only.
pub fn open_admin(cfg: &Config, handle: &tokio::runtime::Handle) -> Result<Arc<dyn AdminStore>> {
    Ok(match &cfg.store {
        StoreConfig::Local(dir) => Arc::new(LocalStore::new(dir)?),
        StoreConfig::S3(s) => Arc::new(s3(s, handle)?),
    })
}

fn s3(s: &S3Settings, handle: &tokio::runtime::Handle) -> Result<S3Store> {
    let expose = |s: &Option<crate::config::Secret>| s.as_ref().map(|v| v.expose().to_string());
    let (object_lock_days, object_lock_mode) = match &s.object_lock {
        Some((mode, days)) if mode == "governance" => (Some(*days), LockMode::Governance),
        Some((_, days)) => (Some(*days), LockMode::Compliance),
        None => (None, LockMode::Compliance),
    };
    S3Store::new(
        S3Config {
            bucket: s.bucket.clone(),
            prefix: s.prefix.clone(),
            region: s.region.clone(),
            endpoint: s.endpoint.clone(),
            path_style: s.path_style,
            access_key_id: expose(&s.access_key_id),
            secret_access_key: expose(&s.secret_access_key),
            session_token: expose(&s.session_token),
            part_size_min: s.part_size,
            parts_in_flight: s.parts_in_flight,
            object_lock_days,
            object_lock_mode,
            stall_timeout: s.stall_timeout,
        },
        handle.clone(),
    )
}

/// The configured S3 store as itself, for what only S3 has (`offsite audit`); `None` for a local
/// directory.
pub fn open_s3(cfg: &Config, handle: &tokio::runtime::Handle) -> Result<Option<S3Store>> {
    Ok(match &cfg.store {
        StoreConfig::Local(_) => None,
        StoreConfig::S3(s) => Some(s3(s, handle)?),
    })
}
