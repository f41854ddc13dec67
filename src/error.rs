//! Error policy.
//!
//! Library code returns `anyhow::Result` and adds context at every layer: what was being done, to which
//! object, and where it helps, what to do about it. Errors that are the user's to fix (a bad config, a bad
//! argument, a missing key file, a refused target) are raised with [`usage`], which tags them with
//! [`UsageError`]; the CLI maps a tagged chain to exit code 2 and everything else to exit code 1.
//! Secrets never go into an error message: config types hold them in [`crate::config::Secret`], whose
//! `Display` and `Debug` print a redaction.

/// A failure the user can fix by changing the command line, the config or the key files.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Builds an error that exits with code 2 (usage or config error).
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// True when any error in the chain is a [`UsageError`].
pub fn is_usage(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<UsageError>())
}
