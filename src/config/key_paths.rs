//! Key files a config entry names: one path, or a list when keys are rotated
//! (`decryption_key: [keys/office-2027.secret.asc, keys/office.secret.asc]`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize, Serializer};

/// `entry: FILE` or `entry: [FILE, FILE]` as the YAML says it.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawKeyPaths {
    One(String),
    Many(Vec<String>),
}

impl RawKeyPaths {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            RawKeyPaths::One(p) => vec![p],
            RawKeyPaths::Many(v) => v,
        }
    }
}

/// The resolved files, in the config's order (the newest key first, by convention). Shown the way
/// it is usually written: one path alone, several as a list, none as null.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPaths(pub Vec<PathBuf>);

impl std::ops::Deref for KeyPaths {
    type Target = [PathBuf];
    fn deref(&self) -> &[PathBuf] {
        &self.0
    }
}

impl Serialize for KeyPaths {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [] => s.serialize_none(),
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }
}

impl KeyPaths {
    /// `a.secret.asc, b.secret.asc`, for messages.
    pub fn display(&self) -> String {
        self.0
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
