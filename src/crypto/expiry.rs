//! When keys expire, and what to say before and after.
//!
//! A key's expiry is the earliest of its primary key's and that of the last of its keys for the use
//! that matters (encryption for recipients and decryption keys, signing for signing keys and host
//! certificates): with `keygen --expires` both expire together. Expiry stops *new* encryptions and
//! signatures only. Decrypting with an expired key still works, and a signature stays valid when the
//! key was alive at the signature's creation time: sequoia checks the key at that time, so snapshots
//! signed before a host key expired keep verifying and those signed after are refused.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;

use openpgp::Cert;
use sequoia_openpgp as openpgp;

use super::policy;

/// How long before a key expires config check, push and the office report warn.
pub const WARN_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// What a key is for, by the config entry that names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyRole {
    /// `encryption.recipients`: push encrypts to it.
    Recipient,
    /// `encryption.signing_key`: push signs manifests with it.
    SigningKey,
    /// `office.decryption_key`: the office decrypts with it.
    DecryptionKey,
    /// `office.hosts.HOST`: the office checks HOST's signatures with it.
    HostCert(String),
}

impl KeyRole {
    /// The config entry: `encryption.recipients`, `office.hosts.web1`...
    pub fn entry(&self) -> String {
        match self {
            KeyRole::Recipient => "encryption.recipients".into(),
            KeyRole::SigningKey => "encryption.signing_key".into(),
            KeyRole::DecryptionKey => "office.decryption_key".into(),
            KeyRole::HostCert(h) => format!("office.hosts.{h}"),
        }
    }

    fn for_signing(&self) -> bool {
        matches!(self, KeyRole::SigningKey | KeyRole::HostCert(_))
    }
}

/// One certificate named by the config, and when it expires.
#[derive(Debug, Clone)]
pub struct KeyExpiry {
    pub role: KeyRole,
    /// The file that holds it.
    pub path: PathBuf,
    pub fingerprint: String,
    /// `None`: never.
    pub expires: Option<SystemTime>,
}

impl KeyExpiry {
    pub fn of(role: KeyRole, path: PathBuf, cert: &Cert) -> Self {
        let expires = cert_expiry(cert, role.for_signing());
        Self {
            role,
            path,
            fingerprint: cert.fingerprint().to_hex(),
            expires,
        }
    }

    /// Expired at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|t| t <= now)
    }

    /// `encryption.recipients keys/office.cert.asc (key 0123...)`: which key, for messages.
    pub fn name(&self) -> String {
        format!(
            "{} {} (key {})",
            self.role.entry(),
            self.path.display(),
            self.fingerprint
        )
    }
}

/// When `cert` stops being usable for signing (`signing`) or encryption, under the policy.
pub fn cert_expiry(cert: &Cert, signing: bool) -> Option<SystemTime> {
    // The binding signatures as of now: an expired key still has them, it is only not alive.
    let Ok(valid) = cert.with_policy(policy(), None) else {
        return None;
    };
    let primary = valid.primary_key().key_expiration_time();
    let keys = valid.keys().revoked(false);
    let usable: Vec<Option<SystemTime>> = if signing {
        keys.for_signing()
            .map(|ka| ka.key_expiration_time())
            .collect()
    } else {
        keys.for_storage_encryption()
            .map(|ka| ka.key_expiration_time())
            .collect()
    };
    // The last key for the use to expire (a key that never expires outlives every other).
    let last = if usable.is_empty() || usable.iter().any(|t| t.is_none()) {
        None
    } else {
        usable.into_iter().flatten().max()
    };
    match (primary, last) {
        (Some(p), Some(l)) => Some(p.min(l)),
        (p, l) => p.or(l),
    }
}

/// RFC 3339 in UTC, to the second: how messages and JSON show an expiry.
pub fn date(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{secs} seconds after 1970"))
}

/// "in 10 days", "3 days ago".
fn distance(t: SystemTime, now: SystemTime) -> String {
    let days = |d: Duration| {
        // Rounded: a key made with `--expires 10d` a minute ago expires "in 10 days".
        let n = (d.as_secs() + 43_200) / 86_400;
        if n == 1 {
            "1 day".to_string()
        } else if n == 0 {
            "less than a day".to_string()
        } else {
            format!("{n} days")
        }
    };
    match t.duration_since(now) {
        Ok(ahead) => format!("in {}", days(ahead)),
        Err(e) => format!("{} ago", days(e.duration())),
    }
}

/// What to do about a key of `role` that expires: the rotation, in a sentence.
fn remedy(role: &KeyRole) -> String {
    match role {
        KeyRole::Recipient | KeyRole::DecryptionKey => "make a new office key at the office \
             (`offsite keygen office-NEXT --expires 2y`), put its .cert.asc in every host's \
             encryption.recipients and list its .secret.asc first in office.decryption_key, keeping \
             the old one after it (README: Rotating keys)"
            .into(),
        KeyRole::SigningKey => "make a new signing key for this host (`offsite keygen HOST-NEXT \
             --expires 2y`), set encryption.signing_key to its .secret.asc and add its .cert.asc to \
             the office's office.hosts entry for this host (README: Rotating keys)"
            .into(),
        KeyRole::HostCert(h) => format!(
            "give {h} a new signing key (`offsite keygen {h}-NEXT --expires 2y`) and add its \
             .cert.asc to office.hosts.{h}, keeping the old one (README: Rotating keys)"
        ),
    }
}

/// What happens when a key of `role` has expired.
fn consequence(role: &KeyRole) -> String {
    match role {
        KeyRole::Recipient => "push refuses to encrypt to it".into(),
        KeyRole::SigningKey => "push refuses to sign with it".into(),
        KeyRole::DecryptionKey => {
            "hosts can no longer encrypt to it (it still decrypts the snapshots made before)".into()
        }
        KeyRole::HostCert(h) => format!(
            "{h}'s snapshots signed after that are refused (those signed before stay valid)"
        ),
    }
}

/// One line about a key that has expired or expires within [`WARN_BEFORE`] of `now`, or `None`.
pub fn warning(k: &KeyExpiry, now: SystemTime) -> Option<String> {
    let t = k.expires?;
    if t > now + WARN_BEFORE {
        return None;
    }
    let when = format!("{} ({})", date(t), distance(t, now));
    Some(if t <= now {
        format!(
            "{} expired on {when}: {}; {}",
            k.name(),
            consequence(&k.role),
            remedy(&k.role)
        )
    } else {
        format!(
            "{} expires on {when}; after that {}: {}",
            k.name(),
            consequence(&k.role),
            remedy(&k.role)
        )
    })
}

/// The error push stops with (exit 2, before anything is written) when its key `k` has expired.
pub fn refuse_expired(k: &KeyExpiry, now: SystemTime) -> anyhow::Result<()> {
    match k.expires {
        Some(t) if t <= now => Err(crate::error::usage(format!(
            "{} expired on {} ({}): {}; nothing was written. To go on, {}",
            k.name(),
            date(t),
            distance(t, now),
            consequence(&k.role),
            remedy(&k.role)
        ))),
        _ => Ok(()),
    }
}

/// Warnings for a config's keys: each recipient and the signing key on its own; the office's
/// decryption keys and each host's certificates as a group, about the one that lives longest (a
/// rotated set keeps its old, expired keys to read old snapshots, and that is no news).
pub fn warnings(keys: &[KeyExpiry], now: SystemTime) -> Vec<String> {
    warned(keys, now).into_iter().map(|(_, w)| w).collect()
}

/// [`warnings`], each with the key it is about.
pub fn warned(keys: &[KeyExpiry], now: SystemTime) -> Vec<(&KeyExpiry, String)> {
    that_matter(keys)
        .into_iter()
        .filter_map(|k| warning(k, now).map(|w| (k, w)))
        .collect()
}

/// The keys whose expiry matters: each recipient and the signing key; of the office's decryption
/// keys and of each host's certificates, the one that lives longest (none when one never
/// expires). What warns, and what the metrics export for alerting.
pub fn that_matter(keys: &[KeyExpiry]) -> Vec<&KeyExpiry> {
    let mut out = Vec::new();
    let mut groups: std::collections::BTreeMap<KeyRole, Vec<&KeyExpiry>> = Default::default();
    for k in keys {
        match k.role {
            KeyRole::Recipient | KeyRole::SigningKey => out.push(k),
            _ => groups.entry(k.role.clone()).or_default().push(k),
        }
    }
    for group in groups.values() {
        // `None` (never) sorts below every time: look for it first.
        let longest = group
            .iter()
            .find(|k| k.expires.is_none())
            .or_else(|| group.iter().max_by_key(|k| k.expires));
        out.extend(longest.copied());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message, Recipient, Signer};
    use openpgp::types::Features;

    use super::*;
    use crate::crypto::keys::{generate_with, load_one};
    use crate::crypto::{open_signed, DecryptionKeys};

    const DAY: Duration = Duration::from_secs(86_400);

    fn key(dir: &std::path::Path, name: &str, ago: Duration, valid: Option<Duration>) -> Cert {
        let files = generate_with(name, dir, SystemTime::now() - ago, valid).unwrap();
        load_one(&files.secret).unwrap()
    }

    /// A document encrypted to `office` and signed by `host` with a signature made at `at`.
    fn sealed(office: &Cert, host: &Cert, at: SystemTime) -> Vec<u8> {
        let signing = host
            .keys()
            .with_policy(policy(), at)
            .for_signing()
            .secret()
            .next()
            .unwrap()
            .key()
            .clone()
            .into_keypair()
            .unwrap();
        let recipients: Vec<Recipient> = office
            .keys()
            .with_policy(policy(), None)
            .for_storage_encryption()
            .map(|ka| {
                Recipient::new(
                    Features::empty().set_seipdv1(),
                    openpgp::KeyHandle::from(ka.key().keyid()),
                    ka.key(),
                )
            })
            .collect();
        let mut out = Vec::new();
        let m = Message::new(&mut out);
        let m = Encryptor::for_recipients(m, recipients).build().unwrap();
        let m = Signer::new(m, signing)
            .unwrap()
            .creation_time(at)
            .build()
            .unwrap();
        let mut w = LiteralWriter::new(m).build().unwrap();
        w.write_all(b"manifest").unwrap();
        w.finalize().unwrap();
        out
    }

    #[test]
    fn a_key_made_with_a_validity_expires_then_and_is_warned_of_30_days_before() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let never = key(dir.path(), "never", Duration::ZERO, None);
        assert_eq!(cert_expiry(&never, false), None);
        let soon = key(dir.path(), "soon", Duration::ZERO, Some(10 * DAY));
        let t = cert_expiry(&soon, false).unwrap();
        assert!(t > now + 9 * DAY && t <= now + 10 * DAY + DAY, "{t:?}");
        assert_eq!(cert_expiry(&soon, true), Some(t));
        let later = key(dir.path(), "later", Duration::ZERO, Some(60 * DAY));

        let k = |role: KeyRole, c: &Cert| KeyExpiry::of(role, PathBuf::from("k.asc"), c);
        let w = warnings(&[k(KeyRole::Recipient, &soon)], now);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains(&soon.fingerprint().to_hex()), "{}", w[0]);
        assert!(
            w[0].contains("k.asc") && w[0].contains(&date(t)),
            "{}",
            w[0]
        );
        assert!(
            w[0].contains("in 9 days") || w[0].contains("in 10 days"),
            "{}",
            w[0]
        );
        assert!(warnings(&[k(KeyRole::Recipient, &later)], now).is_empty());
        assert!(warnings(&[k(KeyRole::SigningKey, &never)], now).is_empty());
        // An office that reads with a new key and an old one about to expire has rotated already.
        let rotated = [
            k(KeyRole::DecryptionKey, &later),
            k(KeyRole::DecryptionKey, &soon),
        ];
        assert!(warnings(&rotated, now).is_empty());
        let host = |c: &Cert| k(KeyRole::HostCert("web1".into()), c);
        let w = warnings(&[host(&soon)], now);
        assert!(w.len() == 1 && w[0].contains("office.hosts.web1"), "{w:?}");
    }

    #[test]
    fn push_refuses_an_expired_key_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let old = key(dir.path(), "old", 40 * DAY, Some(30 * DAY));
        let k = KeyExpiry::of(KeyRole::Recipient, PathBuf::from("keys/old.cert.asc"), &old);
        assert!(k.expired(SystemTime::now()));
        let e = format!("{:#}", refuse_expired(&k, SystemTime::now()).unwrap_err());
        assert!(e.contains("keys/old.cert.asc"), "{e}");
        assert!(e.contains(&old.fingerprint().to_hex()), "{e}");
        assert!(
            e.contains("expired on") && e.contains("offsite keygen"),
            "{e}"
        );
        assert!(crate::error::is_usage(
            &refuse_expired(&k, SystemTime::now()).unwrap_err()
        ));
    }

    #[test]
    fn a_signature_made_while_the_host_key_was_valid_stays_valid_after_it_expired() {
        let dir = tempfile::tempdir().unwrap();
        let office = key(dir.path(), "office", Duration::ZERO, None);
        // Made 40 days ago, valid for 30: expired 10 days ago.
        let host = key(dir.path(), "host", 40 * DAY, Some(30 * DAY));
        let keys = DecryptionKeys::new(vec![office.clone()]).unwrap();
        let signers = [host.clone().strip_secret_key_material()];

        let before = sealed(&office, &host, SystemTime::now() - 20 * DAY);
        let (plain, by) = open_signed(&before, &keys, &signers).unwrap();
        assert_eq!(plain, b"manifest");
        assert_eq!(by, host.fingerprint().to_hex());

        let after = sealed(&office, &host, SystemTime::now() - DAY);
        let e = format!("{:#}", open_signed(&after, &keys, &signers).unwrap_err());
        assert!(e.contains("no valid signature"), "{e}");
        assert!(e.contains(&host.fingerprint().to_hex()), "{e}");
        assert!(e.to_lowercase().contains("expired"), "{e}");
    }

    #[test]
    fn an_expired_office_key_still_decrypts() {
        let dir = tempfile::tempdir().unwrap();
        let office = key(dir.path(), "office", 40 * DAY, Some(30 * DAY));
        let host = key(dir.path(), "host", Duration::ZERO, None);
        // Encrypted while the office key was valid (sealed() picks its subkey regardless of time).
        let doc = sealed(&office, &host, SystemTime::now());
        let keys = DecryptionKeys::new(vec![office]).unwrap();
        let (plain, _) = open_signed(&doc, &keys, &[host]).unwrap();
        assert_eq!(plain, b"manifest");
    }
}
