//! Everything an office command needs, loaded and checked once: the config's office section, the
//! offsite directory as a store, the office key, and the certificate of every accepted host.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use sequoia_openpgp::Cert;

use crate::config::{Config, OfficeConfig};
use crate::crypto::keys::load_certs;
use crate::crypto::DecryptionKeys;
use crate::error::usage;
use crate::store::local::LocalStore;

pub struct Office {
    pub cfg: Config,
    pub office: OfficeConfig,
    pub offsite_dir: PathBuf,
    /// The local copy, same layout as S3.
    pub offsite: Arc<LocalStore>,
    pub decryption: DecryptionKeys,
    signers: BTreeMap<String, Vec<Cert>>,
}

impl Office {
    pub fn load(cfg: Config) -> Result<Self> {
        let office = cfg.office()?.clone();
        let offsite_dir = office.offsite_dir.clone().ok_or_else(|| {
            usage(format!(
                "{}: office.offsite_dir is required (the local copy of every snapshot)",
                cfg.path.display()
            ))
        })?;
        let key = office.decryption_key.clone().ok_or_else(|| {
            usage(format!(
                "{}: office.decryption_key is required (the office .secret.asc)",
                cfg.path.display()
            ))
        })?;
        if office.hosts.is_empty() {
            return Err(usage(format!(
                "{}: office.hosts is empty: list each host whose snapshots you accept, with its .cert.asc",
                cfg.path.display()
            )));
        }
        let decryption = DecryptionKeys::new(load_certs(&key)?)?;
        let mut signers = BTreeMap::new();
        for (host, cert) in &office.hosts {
            signers.insert(host.clone(), load_certs(cert)?);
        }
        let offsite = Arc::new(LocalStore::new(&offsite_dir)?);
        Ok(Self {
            cfg,
            office,
            offsite_dir,
            offsite,
            decryption,
            signers,
        })
    }

    /// How verify and refresh load a database: `office.restore_jobs` connections, spooling under
    /// the offsite directory (beside the reports, outside the snapshots).
    pub fn load_options(&self) -> crate::restore::parallel::LoadOptions {
        crate::restore::parallel::LoadOptions {
            jobs: self.office.restore_jobs,
            spool_dir: super::record::reports_dir(&self.offsite_dir).join("spool"),
            spool_limit: self.office.spool_limit,
        }
    }

    /// The hosts to work on: one named on the command line (it must be configured), or all.
    pub fn hosts(&self, only: Option<&str>) -> Result<Vec<String>> {
        match only {
            Some(h) if self.signers.contains_key(h) => Ok(vec![h.to_string()]),
            Some(h) => Err(usage(format!(
                "host {h} is not in office.hosts (configured: {})",
                self.signers.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
            None => Ok(self.signers.keys().cloned().collect()),
        }
    }

    /// Takes the offsite directory's lock for the rest of the process's life (or until the guard is
    /// dropped): two office runs on one copy would delete each other's partial downloads and scratch
    /// databases. Fails at once, rather than queueing behind a run that may take hours.
    pub fn lock(&self) -> Result<OfficeLock> {
        let path = self.offsite_dir.join(".offsite.lock");
        match crate::lock::try_lock(&path)? {
            Some(held) => Ok(held),
            None => Err(anyhow::anyhow!(
                "another offsite office command is running on {} ({}); it holds {}: wait for it to finish",
                self.offsite_dir.display(),
                crate::lock::holder(&path),
                path.display()
            )),
        }
    }

    /// Assesses listings of `origin` with what the ledger recorded of every configured host.
    pub fn judge(
        &self,
        origin: crate::snapshot::trust::Origin,
    ) -> Result<crate::snapshot::trust::Judge> {
        let hosts: Vec<String> = self.signers.keys().cloned().collect();
        super::ledger::judge(
            &self.offsite_dir,
            &hosts,
            origin,
            self.office.clock_tolerance,
        )
    }

    /// The certificates whose signatures count for `host`.
    pub fn signers(&self, host: &str) -> Result<&[Cert]> {
        self.signers
            .get(host)
            .map(|v| v.as_slice())
            .ok_or_else(|| usage(format!("host {host} is not in office.hosts")))
    }
}

/// Held while an office command works on the offsite directory; released on drop (or process exit).
pub type OfficeLock = crate::lock::Held;
