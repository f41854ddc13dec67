//! Secrets in the config: passwords and S3 keys.
//!
//! A secret is written inline, or (better) taken from the environment, a file or a command's output,
//! so the config file itself can be world-readable. Once resolved it lives in [`Secret`], whose
//! `Display` and `Debug` print `***`: a secret cannot reach a log line or an error message by accident.

use std::fmt;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::usage;

/// How a secret is given in the YAML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum SecretSpec {
    /// `password: hunter2` (discouraged: the file then has to be kept private)
    Inline(String),
    /// `password: { env: PGPASSWORD_SHOP }`
    Env { env: String },
    /// `password: { file: /etc/offsite/pg.pass }` (first line; trailing newline removed)
    File { file: String },
    /// `password: { command: "pass show db/shop" }` (stdout; trailing newline removed)
    Command { command: String },
}

impl SecretSpec {
    /// Resolves the secret; `what` names it in errors (never the value).
    pub fn resolve(&self, what: &str, base: &Path) -> Result<Secret> {
        let value = match self {
            SecretSpec::Inline(s) => s.clone(),
            SecretSpec::Env { env } => std::env::var(env)
                .map_err(|_| usage(format!("{what}: environment variable {env} is not set")))?,
            SecretSpec::File { file } => {
                let path = base.join(file);
                let data = std::fs::read_to_string(&path).map_err(|e| {
                    usage(format!(
                        "{what}: cannot read secret file {}: {e}",
                        path.display()
                    ))
                })?;
                data.lines().next().unwrap_or_default().to_string()
            }
            SecretSpec::Command { command } => {
                let out = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .stderr(std::process::Stdio::inherit())
                    .output()
                    .map_err(|e| usage(format!("{what}: cannot run the secret command: {e}")))?;
                if !out.status.success() {
                    return Err(usage(format!(
                        "{what}: the secret command failed ({})",
                        out.status
                    )));
                }
                String::from_utf8(out.stdout)
                    .map_err(|_| {
                        usage(format!(
                            "{what}: the secret command printed non-UTF-8 output"
                        ))
                    })?
                    .trim_end_matches(['\n', '\r'])
                    .to_string()
            }
        };
        Ok(Secret(value))
    }
}

/// A resolved secret. Prints as `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for handing to a driver or a child's environment. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secrets_from_env_file_command() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "from-file\nignored\n").unwrap();
        let f = SecretSpec::File { file: "pw".into() }
            .resolve("t", dir.path())
            .unwrap();
        assert_eq!(f.expose(), "from-file");
        let c = SecretSpec::Command {
            command: "echo from-command".into(),
        }
        .resolve("t", dir.path())
        .unwrap();
        assert_eq!(c.expose(), "from-command");
        let err = SecretSpec::Env {
            env: "OFFSITE_TEST_SURELY_UNSET_VAR".into(),
        }
        .resolve("postgres[0].password", dir.path())
        .unwrap_err();
        assert!(err
            .to_string()
            .contains("OFFSITE_TEST_SURELY_UNSET_VAR is not set"));
    }
}
