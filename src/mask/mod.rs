//! Masking (anonymizing) a dump on the stream, so real values never reach a dev server.
//!
//! refresh with `mask: true` (and `offsite mask` as a plain filter) rewrites the rows of the tables
//! `office.masking.tables` names as the dump streams from the verified snapshot to the server:
//! PostgreSQL COPY data ([`pg`]), MariaDB/MySQL INSERT tuples ([`mysql`]). The dev server's data
//! files, WAL and binlog only ever see masked values. Each column's rule is a [`Transform`],
//! deterministic under the masking secret ([`transform`] says how and what stays unique).
//!
//! Rules are keyed `engine/database:table` (`postgres/shop:public.customers`, `mysql/crm:contacts`),
//! then column. A rule naming a table or column the dump does not have fails the restore: a typo
//! must not leave a column unmasked.

pub mod coverage;
mod mysql;
mod names;
mod pg;
pub mod transform;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context, Result};

use crate::snapshot::manifest::Engine;
pub use transform::{Key, Transform};

/// The rules for one database of a dump.
pub struct DbMask {
    /// `postgres/shop`, for messages.
    pub source: String,
    pub key: Arc<Key>,
    /// Table (`public.customers`; MariaDB: `customers`) -> (column, rule), unquoted names.
    pub tables: BTreeMap<String, Vec<(String, Transform)>>,
    /// Every table's columns are checked against the rules as the dump streams past.
    pub coverage: Arc<coverage::Coverage>,
}

impl DbMask {
    /// The transformer a rule gives `table.column`, by name.
    pub fn rule_of(&self, table: &str, column: &str) -> Option<String> {
        self.tables
            .get(table)?
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, t)| t.name().to_string())
    }

    /// The same rules with a coverage that lists every column and refuses none (`masking check`).
    pub fn listing(&self) -> Self {
        Self {
            source: self.source.clone(),
            key: self.key.clone(),
            tables: self.tables.clone(),
            coverage: Arc::default(),
        }
    }

    /// Only looks at the columns (`masking check`): no rules, a throwaway key.
    pub fn observer(source: &str) -> Self {
        Self {
            source: source.to_string(),
            key: Arc::new(Key::ephemeral()),
            tables: BTreeMap::new(),
            coverage: Arc::new(coverage::Coverage::default()),
        }
    }
}

impl std::fmt::Debug for DbMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbMask")
            .field("source", &self.source)
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .field("strict", &self.coverage.strict)
            .finish()
    }
}

/// Where the masking secret comes from, read when a mask is first needed: a production host that
/// shares the config file never needs the office's masking secret.
pub type SecretLoader = Box<dyn Fn() -> Result<Vec<u8>> + Send + Sync>;

/// `office.masking`: the secret and every database's rules.
pub struct Masking {
    /// Source (`postgres/shop`) -> table -> (column, rule).
    rules: BTreeMap<String, BTreeMap<String, Vec<(String, Transform)>>>,
    secret: SecretLoader,
    key: OnceLock<Arc<Key>>,
    /// A refresh refuses a dump with a personal-looking column no rule covers.
    pub strict: bool,
}

impl std::fmt::Debug for Masking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.rules.iter()).finish()
    }
}

impl Masking {
    /// From the config: `tables` maps `engine/db:table` to a map of column -> rule. The rules are
    /// checked now; the secret is read at the first [`Masking::for_source`].
    pub fn new(
        secret: SecretLoader,
        strict: bool,
        tables: &BTreeMap<String, BTreeMap<String, serde_norway::Value>>,
    ) -> Result<Self> {
        let mut rules: BTreeMap<String, BTreeMap<String, Vec<(String, Transform)>>> =
            BTreeMap::new();
        for (name, cols) in tables {
            let what = format!("office.masking.tables.{name:?}");
            let Some((source, table)) = name.split_once(':') else {
                bail!("{what}: expected ENGINE/DATABASE:TABLE (postgres/shop:public.customers, mysql/crm:contacts)");
            };
            let (engine, db) = source.split_once('/').unwrap_or(("", ""));
            if !matches!(engine, "postgres" | "mysql") || db.is_empty() || table.is_empty() {
                bail!("{what}: expected ENGINE/DATABASE:TABLE with ENGINE postgres or mysql");
            }
            if engine == "postgres" && !table.contains('.') {
                bail!("{what}: a PostgreSQL table is named with its schema (public.{table})");
            }
            let mut cols_rules = Vec::new();
            for (col, rule) in cols {
                let t = Transform::parse(rule).with_context(|| format!("{what}.{col}"))?;
                cols_rules.push((col.clone(), t));
            }
            rules
                .entry(source.to_string())
                .or_default()
                .insert(table.to_string(), cols_rules);
        }
        Ok(Self {
            rules,
            secret,
            key: OnceLock::new(),
            strict,
        })
    }

    pub fn has_rules(&self, source: &str) -> bool {
        self.rules.contains_key(source)
    }

    /// The rules for `source` (`postgres/shop`) with the key; None when it has none (its dump
    /// passes unchanged). Reads the secret the first time.
    pub fn for_source(&self, source: &str) -> Result<Option<Arc<DbMask>>> {
        let Some(tables) = self.rules.get(source) else {
            return Ok(None);
        };
        let key = match self.key.get() {
            Some(k) => k.clone(),
            None => {
                let secret = (self.secret)()?;
                let k = Arc::new(Key::new(&secret).context("office.masking.secret")?);
                self.key.get_or_init(|| k).clone()
            }
        };
        Ok(Some(Arc::new(DbMask {
            source: source.to_string(),
            key,
            tables: tables.clone(),
            coverage: Arc::new(coverage::Coverage {
                strict: self.strict,
                ..Default::default()
            }),
        })))
    }
}

/// Wraps a dump stream of `engine` so that `mask`'s tables come out masked.
pub fn stream(
    engine: Engine,
    reader: Box<dyn Read + Send>,
    mask: Arc<DbMask>,
) -> Box<dyn Read + Send> {
    match engine {
        Engine::Postgres => Box::new(pg::pg_mask(reader, mask)),
        Engine::Mysql => Box::new(mysql::mysql_mask(reader, mask)),
    }
}

/// Checks that every table with rules is in the snapshot (its manifest's row counts name every
/// table the dump holds), before anything is restored.
pub fn check_tables(mask: &DbMask, dump_tables: &BTreeMap<String, u64>) -> Result<()> {
    let have: Vec<String> = dump_tables
        .keys()
        .map(|t| pg::unquote_qualified(t))
        .collect();
    let missing: Vec<&str> = mask
        .tables
        .keys()
        .filter(|t| !have.iter().any(|h| h == *t))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        bail!(
            "office.masking names {} in {}, which the snapshot's dump does not have (it has: {})",
            missing.join(", "),
            mask.source,
            have.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
