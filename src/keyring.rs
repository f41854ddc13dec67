//! Loading the keys each mode needs from the config, with the checks that keep the roles apart.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Result;
use sequoia_openpgp::Cert;

use crate::config::Config;
use crate::crypto::expiry::{refuse_expired, KeyExpiry, KeyRole};
use crate::crypto::keys::{has_secret, load_certs};
use crate::crypto::{DecryptionKeys, Encryption, Signing};
use crate::error::usage;

/// What push holds: the recipients' public certificates and its own signing key.
pub struct PushKeys {
    pub encryption: Encryption,
    pub signing: Signing,
}

/// Loads push's keys and refuses any keyring that could decrypt what push writes: if production can
/// read its own output, a thief on production can read every old backup.
pub fn push_keys(cfg: &Config) -> Result<PushKeys> {
    let enc = cfg.encryption.as_ref().ok_or_else(|| {
        usage(format!(
            "{}: encryption: (recipients, signing_key) is required for push",
            cfg.path.display()
        ))
    })?;
    let signing_path = enc.signing_key.as_ref().ok_or_else(|| {
        usage(format!(
            "{}: encryption.signing_key is required for push",
            cfg.path.display()
        ))
    })?;
    if let Some(keys) = cfg
        .office
        .as_ref()
        .map(|o| &o.decryption_key)
        .filter(|k| !k.is_empty())
    {
        return Err(usage(format!(
            "{} names office.decryption_key ({}): the key that reads every backup must never be on a production host. \
             Keep the office: section in the office's own config; push needs only encryption.recipients and signing_key",
            cfg.path.display(),
            keys.display()
        )));
    }
    let now = SystemTime::now();
    let mut recipients = Vec::new();
    for path in &enc.recipients {
        for cert in load_certs(path)? {
            if has_secret(&cert) {
                return Err(usage(format!(
                    "recipient file {} contains a SECRET key ({}): production must hold only the office's public certificate (the .cert.asc); refusing to push",
                    path.display(),
                    cert.fingerprint()
                )));
            }
            refuse_expired(&KeyExpiry::of(KeyRole::Recipient, path.clone(), &cert), now)?;
            recipients.push(cert);
        }
    }
    let in_file = load_certs(signing_path)?;
    for cert in &in_file {
        refuse_decryptable(&recipients, cert, signing_path)?;
    }
    let mut signers: Vec<&Cert> = in_file.iter().filter(|c| has_secret(c)).collect();
    let signer = match signers.len() {
        1 => signers.remove(0),
        0 => {
            return Err(usage(format!(
                "signing key file {} has no usable secret signing key (is this the .cert.asc instead of the .secret.asc?)",
                signing_path.display()
            )))
        }
        n => {
            return Err(usage(format!(
                "signing key file {} holds {n} secret keys; it must hold exactly this host's",
                signing_path.display()
            )))
        }
    };
    refuse_expired(
        &KeyExpiry::of(KeyRole::SigningKey, signing_path.clone(), signer),
        now,
    )?;
    Ok(PushKeys {
        encryption: Encryption::new(recipients)?,
        signing: Signing::from_cert(signer)?,
    })
}

fn refuse_decryptable(recipients: &[Cert], signer: &Cert, signing_path: &Path) -> Result<()> {
    let secret: HashSet<_> = signer
        .keys()
        .secret()
        .map(|k| k.key().fingerprint())
        .collect();
    for r in recipients {
        if r.keys().any(|k| secret.contains(&k.key().fingerprint())) {
            return Err(usage(format!(
                "the signing key file {} holds the secret key of recipient {}: production could decrypt its own backups; refusing to push",
                signing_path.display(),
                r.fingerprint()
            )));
        }
    }
    Ok(())
}

/// What reading a snapshot needs: a secret key to decrypt, and the certificates of the hosts whose
/// signatures we accept.
pub struct ReadKeys {
    pub decryption: DecryptionKeys,
    pub signers: Vec<Cert>,
}

/// `key` / `signer` override the config's `office.decryption_key` / `office.hosts[host]`.
pub fn read_keys(
    cfg: Option<&Config>,
    host: &str,
    key: Option<&Path>,
    signer: Option<&Path>,
) -> Result<ReadKeys> {
    let office = cfg.and_then(|c| c.office.as_ref());
    let key_paths: Vec<PathBuf> = match (key, office.map(|o| &o.decryption_key)) {
        (Some(k), _) => vec![k.to_path_buf()],
        (None, Some(k)) if !k.is_empty() => k.to_vec(),
        (None, _) => {
            return Err(usage(
                "no decryption key: pass --key FILE (the office .secret.asc) or set office.decryption_key in the config",
            ))
        }
    };
    let signer_paths: Vec<PathBuf> = match (signer, office.and_then(|o| o.hosts.get(host))) {
        (Some(s), _) => vec![s.to_path_buf()],
        (None, Some(s)) => s.to_vec(),
        (None, None) => {
            return Err(usage(format!(
                "no certificate to check host {host}'s signature: pass --signer FILE or list the host under office.hosts"
            )))
        }
    };
    Ok(ReadKeys {
        decryption: decryption_keys(&key_paths)?,
        signers: certs_of(&signer_paths)?,
    })
}

/// The office's secret keys from every file of `office.decryption_key`, in order.
pub fn decryption_keys(paths: &[PathBuf]) -> Result<DecryptionKeys> {
    DecryptionKeys::new(certs_of(paths)?)
}

/// Every certificate of every file.
pub fn certs_of(paths: &[PathBuf]) -> Result<Vec<Cert>> {
    let mut out = Vec::new();
    for p in paths {
        out.extend(load_certs(p)?);
    }
    Ok(out)
}

/// Every key the config names, and when it expires: push's recipients and signing key, the office's
/// decryption keys and each host's certificates. A file that cannot be read is left out (the command
/// that uses it says why); config check, push and the office report warn from this list.
pub fn key_expiries(cfg: &Config) -> Vec<KeyExpiry> {
    let mut files: Vec<(KeyRole, &PathBuf)> = Vec::new();
    if let Some(enc) = &cfg.encryption {
        files.extend(enc.recipients.iter().map(|p| (KeyRole::Recipient, p)));
        files.extend(enc.signing_key.iter().map(|p| (KeyRole::SigningKey, p)));
    }
    if let Some(o) = &cfg.office {
        files.extend(o.decryption_key.iter().map(|p| (KeyRole::DecryptionKey, p)));
        for (host, paths) in &o.hosts {
            files.extend(paths.iter().map(|p| (KeyRole::HostCert(host.clone()), p)));
        }
    }
    let mut out = Vec::new();
    for (role, path) in files {
        match load_certs(path) {
            Ok(certs) => out.extend(
                certs
                    .iter()
                    .map(|c| KeyExpiry::of(role.clone(), path.clone(), c)),
            ),
            // Its command says why when it uses the file; a key left out here has no expiry
            // warning and no metric, so say it here too.
            Err(e) => tracing::warn!("{}: its expiry is unknown: {e:#}", role.entry()),
        }
    }
    out
}

/// One line per key of the config that expired or expires within 30 days (see
/// [`crate::crypto::expiry::warnings`]).
pub fn expiry_warnings(cfg: &Config) -> Vec<String> {
    crate::crypto::expiry::warnings(&key_expiries(cfg), SystemTime::now())
}

/// push's warnings: its recipients and signing key that expire within 30 days. Expired ones are not
/// warnings but push's error ([`push_keys`]); the office's keys are none of push's business.
pub fn push_expiry_warnings(cfg: &Config) -> Vec<String> {
    let now = SystemTime::now();
    let mine: Vec<KeyExpiry> = key_expiries(cfg)
        .into_iter()
        .filter(|k| matches!(k.role, KeyRole::Recipient | KeyRole::SigningKey) && !k.expired(now))
        .collect();
    crate::crypto::expiry::warnings(&mine, now)
}
