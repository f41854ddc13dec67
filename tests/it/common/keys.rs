//! An office key pair in a temporary directory and a pipeline that writes a snapshot to a local store
//! encrypted to it.
//!
//! ```ignore
//! mod common;
//! let env = common::keys::LocalEnv::new()?;
//! let sink = env.pipeline.create("files/t/x", ObjectKind::TreeVolume, "tree/t")?;
//! open_object(env.store.as_ref(), &env.pipeline.snapshot_dir, &entry, &env.keys)?;
//! ```
#![allow(dead_code)] // every test crate that says `mod common;` uses a different subset

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use offsite::crypto::{self, DecryptionKeys, Encryption};
use offsite::pipeline::{Compression, Pipeline};
use offsite::store::local::LocalStore;

pub struct LocalEnv {
    /// Holds the keys and the store; removed on drop.
    pub dir: tempfile::TempDir,
    /// The office secret key (armored), for `gpg --import`.
    pub secret: PathBuf,
    pub cert: PathBuf,
    pub store: Arc<LocalStore>,
    pub pipeline: Pipeline,
    pub keys: DecryptionKeys,
}

impl LocalEnv {
    pub fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let files = crypto::generate("office", &dir.path().join("keys"))?;
        let store = Arc::new(LocalStore::new(dir.path().join("store"))?);
        let pipeline = Pipeline {
            store: store.clone(),
            encryption: Encryption::new(crypto::load_certs(&files.cert)?)?,
            compression: Compression::default(),
            snapshot_dir: "testhost/20260101T000000Z-0001/".to_string(),
        };
        let keys = DecryptionKeys::new(crypto::load_certs(&files.secret)?)?;
        Ok(Self {
            secret: files.secret,
            cert: files.cert,
            dir,
            store,
            pipeline,
            keys,
        })
    }

    /// The same store and keys, writing into another snapshot.
    pub fn pipeline_for(&self, snapshot: &str) -> Pipeline {
        Pipeline {
            snapshot_dir: format!("testhost/{snapshot}/"),
            ..self.pipeline.clone()
        }
    }

    /// Where an object of the pipeline's snapshot lives on disk.
    pub fn object_path(&self, snapshot_dir: &str, key: &str) -> PathBuf {
        self.store.root().join(format!("{snapshot_dir}{key}"))
    }
}
