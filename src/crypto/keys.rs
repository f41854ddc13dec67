//! Key generation and loading.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use openpgp::cert::prelude::*;
use openpgp::parse::Parse;
use openpgp::serialize::SerializeInto;
use openpgp::types::Features;
use openpgp::Cert;
use sequoia_openpgp as openpgp;

use crate::error::usage;

/// The two files `keygen` writes.
pub struct KeyFiles {
    pub secret: PathBuf,
    pub cert: PathBuf,
    pub fingerprint: String,
    /// When the key stops being valid for new encryptions and signatures (`None`: never).
    pub expires: Option<SystemTime>,
}

/// Generates a v4 key (Ed25519 primary for signing, Cv25519 subkey for encryption) that GnuPG 2.2 can
/// import, and writes `NAME.secret.asc` (mode 0600, created exclusively) and `NAME.cert.asc`. The key
/// never expires.
pub fn generate(name: &str, out: &Path) -> Result<KeyFiles> {
    generate_with(name, out, SystemTime::now(), None)
}

/// [`generate`] with a creation time and a validity period: the key and its subkey expire `validity`
/// after `created` (`None`: never). Tests make keys that expired already by creating them in the past.
pub fn generate_with(
    name: &str,
    out: &Path,
    created: SystemTime,
    validity: Option<Duration>,
) -> Result<KeyFiles> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(usage(format!(
            "key name {name:?} must be letters, digits, '-', '_' or '.'; it becomes a file name"
        )));
    }
    if let Some(v) = validity {
        // A v4 key's expiry is 32-bit seconds after its creation; zero would mean "never".
        if v.as_secs() == 0 || v.as_secs() > u64::from(u32::MAX) {
            return Err(usage(format!(
                "a key's validity must be between 1 second and 136 years, not {}",
                crate::config::duration::human_duration(v)
            )));
        }
    }
    // OpenPGP keeps whole seconds: round here so that `expires` is exactly what the key says.
    let created = UNIX_EPOCH
        + Duration::from_secs(
            created
                .duration_since(UNIX_EPOCH)
                .map_err(|_| usage("a key cannot be created before 1970"))?
                .as_secs(),
        );
    let (cert, _revocation) = CertBuilder::general_purpose(Some(format!("offsite {name}")))
        .set_profile(openpgp::Profile::RFC4880)?
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_features(Features::empty().set_seipdv1())?
        .set_creation_time(created)
        // The subkey inherits the primary's period: both expire together, as gpg shows them.
        .set_validity_period(validity)
        .generate()
        .context("generating the key")?;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let secret = out.join(format!("{name}.secret.asc"));
    let cert_path = out.join(format!("{name}.cert.asc"));
    for p in [&secret, &cert_path] {
        if p.exists() {
            return Err(usage(format!(
                "{} exists already; keygen never overwrites a key",
                p.display()
            )));
        }
    }
    write_new(&secret, &cert.as_tsk().armored().to_vec()?, 0o600)?;
    write_new(&cert_path, &cert.armored().to_vec()?, 0o644)?;
    Ok(KeyFiles {
        secret,
        cert: cert_path,
        fingerprint: cert.fingerprint().to_hex(),
        expires: validity.map(|v| created + v),
    })
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("fsync {}", path.display()))?;
    Ok(())
}

/// Loads every certificate (or key) in an armored or binary OpenPGP file.
pub fn load_certs(path: &Path) -> Result<Vec<Cert>> {
    let data = fs::read(path).map_err(|e| {
        usage(format!(
            "cannot read OpenPGP key file {}: {e}",
            path.display()
        ))
    })?;
    let certs: Vec<Cert> = CertParser::from_bytes(&data)
        .and_then(|p| p.collect::<openpgp::Result<Vec<Cert>>>())
        .map_err(|e| {
            usage(format!(
                "{} is not an OpenPGP key or certificate: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(usage(format!(
            "{} holds no OpenPGP certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Loads exactly one certificate, with its secret parts if the file has them.
pub fn load_one(path: &Path) -> Result<Cert> {
    let mut certs = load_certs(path)?;
    if certs.len() != 1 {
        return Err(usage(format!(
            "{} holds {} certificates; expected exactly one",
            path.display(),
            certs.len()
        )));
    }
    Ok(certs.remove(0))
}

/// True when `cert` carries unencrypted or encrypted secret material for any of its keys.
pub fn has_secret(cert: &Cert) -> bool {
    cert.keys().secret().next().is_some()
}
