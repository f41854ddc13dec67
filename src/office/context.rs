//! Everything an office command needs, loaded and checked once: the config's office section, the
//! offsite directory as a store, the office key, and the certificate of every accepted host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use sequoia_openpgp::Cert;

use crate::config::{Config, OfficeConfig};
use crate::crypto::DecryptionKeys;
use crate::error::usage;
use crate::keyring::{certs_of, decryption_keys};
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
        if office.decryption_key.is_empty() {
            return Err(usage(format!(
                "{}: office.decryption_key is required (the office .secret.asc, or a list of them)",
                cfg.path.display()
            )));
        }
        if office.hosts.is_empty() {
            return Err(usage(format!(
                "{}: office.hosts is empty: list each host whose snapshots you accept, with its .cert.asc",
                cfg.path.display()
            )));
        }
        let decryption = decryption_keys(&office.decryption_key)?;
        let mut signers = BTreeMap::new();
        for (host, certs) in &office.hosts {
            signers.insert(host.clone(), certs_of(certs)?);
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
        let path = self.lock_path();
        match crate::lock::try_lock(&path)? {
            Some(held) => Ok(OfficeLock::Whole(held)),
            None => Err(self.busy(&path)),
        }
    }

    /// The lock for a run over `host` only, or over every host ([`Office::lock`]) when `None`.
    ///
    /// A run for one host holds the directory's lock shared and its host's lock exclusively: runs
    /// for different hosts go on side by side, while a run for every host, or a second run for
    /// the same host, is refused. What such runs share is made safe for that: each host has its
    /// own ledger, verify records and snapshots; scratch databases and spool folders get random
    /// names and a stale-scratch cleanup drops only what a dead process registered; the pull
    /// record and the scrub state are merged, under a lock of their own, with the other hosts'.
    pub fn lock_for(&self, host: Option<&str>) -> Result<OfficeLock> {
        let Some(host) = host else {
            return self.lock();
        };
        self.hosts(Some(host))?;
        let path = self.lock_path();
        let Some(shared) = crate::lock::try_lock_shared(&path)? else {
            return Err(self.busy(&path));
        };
        let host_path = self.host_lock_path(host);
        match crate::lock::try_lock(&host_path)? {
            Some(held) => Ok(OfficeLock::Host {
                _dir: shared,
                _host: held,
            }),
            None => Err(anyhow::anyhow!(
                "another offsite office command for host {host} is running on {} ({}); it holds {}: wait for it to finish",
                self.offsite_dir.display(),
                crate::lock::holder(&host_path),
                host_path.display()
            )),
        }
    }

    fn lock_path(&self) -> PathBuf {
        self.offsite_dir.join(".offsite.lock")
    }

    /// `.offsite.<host>.lock` beside the directory's lock, the host's name kept to safe characters.
    fn host_lock_path(&self, host: &str) -> PathBuf {
        let safe: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.offsite_dir.join(format!(".offsite.{safe}.lock"))
    }

    /// Why the directory's lock at `path` is not free: a run over every host (its pid is in the
    /// file), or runs for single hosts (each one's pid is in its host's file).
    fn busy(&self, path: &Path) -> anyhow::Error {
        let hosts: Vec<String> = self
            .signers
            .keys()
            .filter_map(|h| {
                let p = self.host_lock_path(h);
                crate::lock::held_exclusively(&p)
                    .then(|| format!("{h}: {}", crate::lock::holder(&p)))
            })
            .collect();
        if !hosts.is_empty() && !crate::lock::held_exclusively(path) {
            return anyhow::anyhow!(
                "offsite office commands for single hosts are running on {} ({}); they hold {} shared: wait for them to finish",
                self.offsite_dir.display(),
                hosts.join("; "),
                path.display()
            );
        }
        anyhow::anyhow!(
            "another offsite office command is running on {} ({}); it holds {}: wait for it to finish",
            self.offsite_dir.display(),
            crate::lock::holder(path),
            path.display()
        )
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

/// Held while an office command works on the offsite directory, or on one host of it; released on
/// drop (or process exit).
#[derive(Debug)]
pub enum OfficeLock {
    /// Every host: the directory's lock, exclusively.
    Whole(crate::lock::Held),
    /// One host: the directory's lock shared, and the host's own.
    Host {
        _dir: crate::lock::SharedHeld,
        _host: crate::lock::Held,
    },
}
