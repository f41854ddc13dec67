//! `offsite_key_expiry_timestamp_seconds{key, role, file}`: when each key the config names expires.
//!
//! push writes its recipients and signing key, the office's report its decryption keys and the
//! hosts' certificates; each replaces only the roles it writes, so both may share one file. A key
//! that never expires has no sample: there is nothing to alert on.

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
    for k in keys {
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
