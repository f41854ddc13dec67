//! Streaming encryption to the recipients, and signing for the manifest.

use std::io::Write;

use anyhow::{Context, Result};
use openpgp::crypto::KeyPair;
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message, Recipient, Signer};
use openpgp::types::Features;
use openpgp::{Cert, KeyHandle};
use sequoia_openpgp as openpgp;

use super::policy;
use crate::error::usage;

/// The recipients every object is encrypted to.
///
/// The certificates are leaked into `'static` storage once per process: sequoia's writer stack borrows
/// the recipient keys for its whole lifetime, and a handful of certificates loaded once at start-up is
/// cheaper than making every pipeline self-referential.
#[derive(Clone)]
pub struct Encryption {
    certs: &'static [Cert],
}

impl Encryption {
    /// Checks that every cert can receive encrypted data today and keeps it.
    pub fn new(certs: Vec<Cert>) -> Result<Self> {
        if certs.is_empty() {
            return Err(usage(
                "no recipients: encryption.recipients must name at least one certificate",
            ));
        }
        for cert in &certs {
            let n = cert
                .keys()
                .with_policy(policy(), None)
                .supported()
                .alive()
                .revoked(false)
                .for_storage_encryption()
                .count();
            if n == 0 {
                return Err(usage(format!(
                    "recipient {} has no valid encryption key (expired, revoked or signing-only)",
                    cert.fingerprint()
                )));
            }
        }
        Ok(Self {
            certs: Box::leak(certs.into_boxed_slice()),
        })
    }

    pub fn certs(&self) -> &'static [Cert] {
        self.certs
    }

    /// Fingerprints of the recipients, for the manifest.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certs
            .iter()
            .map(|c| c.fingerprint().to_hex())
            .collect()
    }

    fn recipients(&self) -> Vec<Recipient<'static>> {
        let p = policy();
        let mut out = Vec::new();
        for cert in self.certs {
            for ka in cert
                .keys()
                .with_policy(p, None)
                .supported()
                .alive()
                .revoked(false)
                .for_storage_encryption()
            {
                // Force SEIPDv1 + MDC: GnuPG 2.2 cannot read SEIPDv2 (AEAD).
                let key = ka.key();
                out.push(Recipient::new(
                    Features::empty().set_seipdv1(),
                    KeyHandle::from(key.keyid()),
                    key,
                ));
            }
        }
        out
    }

    /// Wraps `sink` so that what is written is encrypted to every recipient. Finish with
    /// `Message::finalize`.
    pub fn writer<W: Write + Send + Sync + 'static>(
        &self,
        sink: W,
        signer: Option<&Signing>,
    ) -> Result<Message<'static>> {
        let message = Message::new(sink);
        let message = Encryptor::for_recipients(message, self.recipients())
            .build()
            .context("starting OpenPGP encryption")?;
        let message = match signer {
            Some(s) => Signer::new(message, s.keypair.clone())?
                .build()
                .context("starting OpenPGP signature")?,
            None => message,
        };
        LiteralWriter::new(message)
            .build()
            .context("starting OpenPGP literal data")
    }

    /// Signs and encrypts a small document (the manifest) in memory.
    pub fn seal(&self, data: &[u8], signer: &Signing) -> Result<Vec<u8>> {
        let buf = crate::shared_writer::Shared::new(Vec::new());
        let mut w = self.writer(buf.clone(), Some(signer))?;
        w.write_all(data)?;
        w.finalize()
            .context("finishing the signed and encrypted document")?;
        Ok(buf.take()?)
    }
}

/// The host's signing key.
#[derive(Clone)]
pub struct Signing {
    keypair: KeyPair,
    fingerprint: String,
}

impl Signing {
    /// Picks the cert's valid, unencrypted signing key.
    pub fn from_cert(cert: &Cert) -> Result<Self> {
        let ka = cert
            .keys()
            .with_policy(policy(), None)
            .supported()
            .alive()
            .revoked(false)
            .for_signing()
            .secret()
            .next()
            .ok_or_else(|| {
                usage(format!(
                    "signing key {} has no usable secret signing key (is this the .cert.asc instead of the .secret.asc?)",
                    cert.fingerprint()
                ))
            })?;
        let key = ka.key().clone();
        if key.secret().is_encrypted() {
            return Err(usage(format!(
                "signing key {} is protected by a passphrase; offsite needs an unprotected signing key (keep it mode 0600)",
                cert.fingerprint()
            )));
        }
        let keypair = key.into_keypair().context("loading the signing key")?;
        Ok(Self {
            keypair,
            fingerprint: cert.fingerprint().to_hex(),
        })
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}
