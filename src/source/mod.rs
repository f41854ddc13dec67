//! Sources of backup data: database dumps run as child processes, and file trees.

pub mod dump;
pub mod mysql;
pub mod postgres;
pub mod tree;

use anyhow::Result;

use crate::config::{Databases, DbServer};
use crate::error::usage;

pub use crate::db::CONNECT_TIMEOUT;
/// How long push's questions to a server before dumping (version, databases, table engines) may take
/// in all. They are catalog lookups of milliseconds; a server that takes minutes is stuck, and a
/// statement timeout on the server would not help when the server is the one that stopped.
pub const PLAN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5 * 60);

fn plan_timed_out(engine: &str, url: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{engine} at {url} did not answer push's questions (version, databases) within {}; is the server overloaded or stopped?",
        crate::config::human_duration(PLAN_TIMEOUT)
    )
}

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
