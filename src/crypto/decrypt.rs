//! Decryption of objects (streaming) and of signed documents (the manifest).

use std::io::Read;
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageLayer, MessageStructure, VerificationError,
    VerificationHelper,
};
use openpgp::parse::Parse;
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Cert, KeyHandle};
use sequoia_openpgp as openpgp;

use super::policy;
use crate::error::usage;

/// The secret keys that may decrypt (the office key, or an escrow key).
#[derive(Clone)]
pub struct DecryptionKeys {
    certs: Vec<Cert>,
}

impl DecryptionKeys {
    pub fn new(certs: Vec<Cert>) -> Result<Self> {
        for cert in &certs {
            if !super::keys::has_secret(cert) {
                return Err(usage(format!(
                    "decryption key {} has no secret key material (this is a .cert.asc; offsite needs the .secret.asc)",
                    cert.fingerprint()
                )));
            }
        }
        Ok(Self { certs })
    }

    pub fn fingerprints(&self) -> Vec<String> {
        self.certs
            .iter()
            .map(|c| c.fingerprint().to_hex())
            .collect()
    }
}

/// Lets a `Send`-only reader satisfy sequoia's `Send + Sync` bound; it is only ever used by one thread.
struct SyncRead(Mutex<Box<dyn Read + Send>>);

impl Read for SyncRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0
            .get_mut()
            .map_err(|_| std::io::Error::other("reader lock poisoned"))?
            .read(buf)
    }
}

struct Helper {
    keys: DecryptionKeys,
    signers: Vec<Cert>,
    require_signature: bool,
    signed_by: std::sync::Arc<Mutex<Option<String>>>,
    /// Why each signature that did not count was refused, for the error.
    rejected: Vec<String>,
}

/// Why a signature does not count, with its time: a key checked at the signature's creation time
/// (sequoia's rule) refuses a signature made after the key expired and accepts one made before.
fn rejected(e: &VerificationError) -> String {
    let made = |sig: &openpgp::packet::Signature| {
        sig.signature_creation_time()
            .map(super::expiry::date)
            .unwrap_or_else(|| "at an unknown time".into())
    };
    match e {
        VerificationError::BadKey { sig, ka, error } => {
            let expired = super::expiry::cert_expiry(ka.cert(), true)
                .filter(|t| sig.signature_creation_time().is_some_and(|s| s >= *t));
            match expired {
                Some(t) => format!(
                    "the signature made {} by key {} does not count: the key expired on {}, before \
                     it was made (signatures made while it was valid stay valid)",
                    made(sig),
                    ka.cert().fingerprint(),
                    super::expiry::date(t)
                ),
                None => format!(
                    "the signature made {} by key {} does not count: {error}",
                    made(sig),
                    ka.cert().fingerprint()
                ),
            }
        }
        VerificationError::UnboundKey { sig, cert, error } => format!(
            "the signature made {} by certificate {} does not count: {error}",
            made(sig),
            cert.fingerprint()
        ),
        VerificationError::MissingKey { sig } => format!(
            "the signature made {} is by a key that is not among the host's certificates ({})",
            made(sig),
            sig.get_issuers()
                .iter()
                .map(|h| h.to_hex())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

impl VerificationHelper for Helper {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.signers.clone())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let mut encrypted = false;
        for layer in structure.into_iter() {
            match layer {
                MessageLayer::Encryption { .. } => encrypted = true,
                MessageLayer::Compression { .. } => {}
                MessageLayer::SignatureGroup { results } => {
                    if let Some(good) = results.iter().flatten().next() {
                        let fpr = good.ka.cert().fingerprint().to_hex();
                        if let Ok(mut g) = self.signed_by.lock() {
                            *g = Some(fpr);
                        }
                    }
                    self.rejected.extend(
                        results
                            .iter()
                            .filter_map(|r| r.as_ref().err())
                            .map(rejected),
                    );
                }
            }
        }
        if !encrypted {
            return Err(anyhow!("the data is not encrypted"));
        }
        let signed = self.signed_by.lock().map(|g| g.is_some()).unwrap_or(false);
        if self.require_signature && !signed {
            if self.rejected.is_empty() {
                return Err(anyhow!("no valid signature from an expected signer"));
            }
            return Err(anyhow!(
                "no valid signature from an expected signer: {}",
                self.rejected.join("; ")
            ));
        }
        Ok(())
    }
}

impl DecryptionHelper for Helper {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &openpgp::crypto::SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        for pkesk in pkesks {
            for cert in &self.keys.certs {
                let Ok(valid) = cert.with_policy(policy(), None) else {
                    continue;
                };
                for ka in valid
                    .keys()
                    .secret()
                    .for_storage_encryption()
                    .key_handles(pkesk.recipient())
                {
                    let key = ka.key().clone();
                    if key.secret().is_encrypted() {
                        continue;
                    }
                    let Ok(mut pair) = key.into_keypair() else {
                        continue;
                    };
                    if pkesk
                        .decrypt(&mut pair, sym_algo)
                        .map(|(algo, sk)| decrypt(algo, &sk))
                        .unwrap_or(false)
                    {
                        return Ok(Some(cert.clone()));
                    }
                }
            }
        }
        let recipients: Vec<String> = pkesks
            .iter()
            .map(|p| match p.recipient() {
                Some(h) => h.to_hex(),
                None => "an anonymous recipient".into(),
            })
            .collect();
        Err(anyhow!(
            "none of the decryption keys ({}) can decrypt this: it is encrypted to key id(s) {}; \
             if that is an older office key, list its .secret.asc in office.decryption_key too",
            self.keys.fingerprints().join(", "),
            recipients.join(", ")
        ))
    }
}

/// Streams the plaintext of an encrypted object. The data is not signed (the manifest, which is,
/// carries the sha256 of every object); integrity is checked by the caller against the manifest.
pub fn decrypt_reader(
    reader: Box<dyn Read + Send>,
    keys: &DecryptionKeys,
) -> Result<Box<dyn Read + Send + Sync>> {
    let helper = Helper {
        keys: keys.clone(),
        signers: Vec::new(),
        require_signature: false,
        signed_by: Default::default(),
        rejected: Vec::new(),
    };
    let dec = DecryptorBuilder::from_reader(SyncRead(Mutex::new(reader)))
        .context("reading the OpenPGP message")?
        // Objects are not signed, so there is nothing to gain from sequoia holding data back.
        .buffer_size(256 * 1024)
        .with_policy(policy(), None, helper)
        .map_err(|e| anyhow!("cannot decrypt: {e}"))?;
    Ok(Box::new(dec))
}

/// Decrypts a small signed document and checks that one of `signers` signed it. Returns the plaintext
/// and the fingerprint of the signer.
pub fn open_signed(
    data: &[u8],
    keys: &DecryptionKeys,
    signers: &[Cert],
) -> Result<(Vec<u8>, String)> {
    if signers.is_empty() {
        bail!("no signer certificate to check the signature against");
    }
    let signed_by = std::sync::Arc::new(Mutex::new(None));
    let helper = Helper {
        keys: keys.clone(),
        signers: signers.to_vec(),
        require_signature: true,
        signed_by: signed_by.clone(),
        rejected: Vec::new(),
    };
    let mut dec = DecryptorBuilder::from_bytes(data)?
        .with_policy(policy(), None, helper)
        .map_err(|e| anyhow!("{e}"))?;
    let mut out = Vec::new();
    dec.read_to_end(&mut out)?;
    if !dec.message_processed() {
        bail!("the signed document is truncated");
    }
    let signer = signed_by
        .lock()
        .ok()
        .and_then(|g| g.clone())
        .ok_or_else(|| anyhow!("no valid signature from an expected signer"))?;
    Ok((out, signer))
}
