//! Sources of backup data: database dumps run as child processes, and file trees.

pub mod counters;
pub mod dump;
pub mod mysql;
pub mod postgres;
pub mod process;
pub mod tree;

use anyhow::Result;

use crate::config::{Databases, DbServer};
use crate::error::usage;

/// How long offsite's own connections to a database server (listing databases, versions, restores)
/// may take to be established, TCP, TLS and login together. A healthy server answers in
/// milliseconds; a busy one in seconds.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The databases of `server` to dump: `all` (less `exclude` and the server's own `system` schemas),
/// or the configured list, every one of which must exist. Names must be usable in object keys.
pub fn select_databases(
    server: &DbServer,
    existing: &[String],
    system: &[&str],
) -> Result<Vec<String>> {
    let names: Vec<String> = match &server.databases {
        Databases::All => existing
            .iter()
            .filter(|d| !system.contains(&d.as_str()) && !server.exclude.contains(d))
            .cloned()
            .collect(),
        Databases::List(list) => {
            if let Some(missing) = list.iter().find(|d| !existing.contains(d)) {
                return Err(usage(format!(
                    "database {missing:?} does not exist on {} (it has: {})",
                    server.url,
                    existing.join(", ")
                )));
            }
            list.clone()
        }
    };
    for d in &names {
        crate::config::check_name(&format!("database on {}", server.url), d)?;
    }
    Ok(names)
}
