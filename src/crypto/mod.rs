//! OpenPGP through sequoia: key generation, loading, streaming encryption, decryption and signatures.
//!
//! Everything written is readable by GnuPG 2.2: v4 keys (Cv25519/Ed25519), and SEIPDv1 with MDC for
//! every recipient whatever features its certificate advertises, because sequoia 2 would otherwise
//! choose SEIPDv2 (AEAD) for certs that announce it, and GnuPG 2.2 cannot read that.

pub mod decrypt;
pub mod encrypt;
pub mod expiry;
pub mod keys;

pub use decrypt::{decrypt_reader, open_signed, DecryptionKeys};
pub use encrypt::{Encryption, Signing};
pub use keys::{generate, load_certs};

use sequoia_openpgp::policy::StandardPolicy;

/// The policy every check uses; one place to tighten it.
pub fn policy() -> &'static StandardPolicy<'static> {
    static POLICY: StandardPolicy<'static> = StandardPolicy::new();
    &POLICY
}
