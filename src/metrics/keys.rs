//! `offsite_key_expiry_timestamp_seconds{key, role, file}`: when each key the config names expires.
//!
//! push writes its recipients and signing key, the office's report its decryption keys and the
//! hosts' certificates; each replaces only the roles it writes, so both may share one file. A key
//! that never expires has no sample: there is nothing to alert on. Of the office's decryption keys
//! and of each host's certificates only the longest-lived counts, as for the warnings.

use std::path::Path;

use anyhow::Result;

use super::{label, Family, Metrics};
use crate::crypto::expiry::KeyExpiry;

pub const KEY_EXPIRY: &str = "offsite_key_expiry_timestamp_seconds";

/// Records `keys` in `path`, replacing the samples of the roles named in `roles`
/// (`encryption.recipients`, `office.hosts.web1`, ...: [`crate::crypto::expiry::KeyRole::entry`]).
pub fn record(path: &Path, keys: &[KeyExpiry], owns: impl Fn(&str) -> bool) -> Result<()> {
    let mut f = Family::gauge(
        KEY_EXPIRY,
        "When this key expires (Unix time); after that push refuses to encrypt or sign with it.",
    );
    // A rotated set keeps its old keys to read old snapshots: only the longest-lived one of a
    // set is exported, or an alert on the old one would fire for good.
    for k in crate::crypto::expiry::that_matter(keys) {
        let Some(t) = k.expires else { continue };
        let secs = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let role = k.role.entry();
        let file = k.path.display().to_string();
        f.set(
            &[
                ("key", k.fingerprint.as_str()),
                ("role", role.as_str()),
                ("file", file.as_str()),
            ],
            secs,
        );
    }
    super::update(path, |m: &mut Metrics| {
        m.replace(f, |l| label(l, "role").is_some_and(&owns));
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::crypto::expiry::KeyRole;

    fn key(role: KeyRole, fpr: &str, expires: Option<SystemTime>) -> KeyExpiry {
        KeyExpiry {
            role,
            path: PathBuf::from(format!("/k/{fpr}.asc")),
            fingerprint: fpr.into(),
            expires,
        }
    }

    /// After a rotation the office keeps its old, expired key to read old snapshots: exporting
    /// it would keep the expiry alert firing. The set's longest-lived key is what counts.
    #[test]
    fn a_rotated_set_exports_its_longest_lived_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsite.prom");
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let keys = [
            // Listed first on purpose: the choice is by expiry, not by order.
            key(KeyRole::DecryptionKey, "OLD", Some(now - 10 * day)),
            key(KeyRole::DecryptionKey, "NEW", Some(now + 700 * day)),
            key(KeyRole::HostCert("web1".into()), "HOSTOLD", Some(now - day)),
            key(KeyRole::HostCert("web1".into()), "HOSTNEW", None),
            key(KeyRole::Recipient, "R", Some(now + 5 * day)),
        ];
        record(&path, &keys, |_| true).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let has = |fpr: &str| text.contains(&format!("key=\"{fpr}\""));
        assert!(has("NEW") && has("R"), "{text}");
        assert!(!has("OLD") && !has("HOSTOLD") && !has("HOSTNEW"), "{text}");
    }
}
