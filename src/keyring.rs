//! Loading the keys each mode needs from the config, with the checks that keep the roles apart.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Result;
use sequoia_openpgp::Cert;

use crate::config::Config;
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
    if let Some(key) = cfg.office.as_ref().and_then(|o| o.decryption_key.as_ref()) {
        return Err(usage(format!(
            "{} names office.decryption_key ({}): the key that reads every backup must never be on a production host. \
             Keep the office: section in the office's own config; push needs only encryption.recipients and signing_key",
            cfg.path.display(),
            key.display()
        )));
    }
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
    let key_path: PathBuf = match (key, office.and_then(|o| o.decryption_key.clone())) {
        (Some(k), _) => k.to_path_buf(),
        (None, Some(k)) => k,
        (None, None) => {
            return Err(usage(
                "no decryption key: pass --key FILE (the office .secret.asc) or set office.decryption_key in the config",
            ))
        }
    };
    let signer_path: PathBuf = match (signer, office.and_then(|o| o.hosts.get(host).cloned())) {
        (Some(s), _) => s.to_path_buf(),
        (None, Some(s)) => s,
        (None, None) => {
            return Err(usage(format!(
                "no certificate to check host {host}'s signature: pass --signer FILE or list the host under office.hosts"
            )))
        }
    };
    Ok(ReadKeys {
        decryption: DecryptionKeys::new(load_certs(&key_path)?)?,
        signers: load_certs(&signer_path)?,
    })
}
