//! Database operations shared by refresh and restore: replacing a database safely.
//!
//! [`swap_pg`] and [`swap_mysql`] restore into a new database next to the target and swap it in
//! only once it is complete (and post_sql ran), under a per-target lock on the server, repairing
//! first what a killed earlier run left. `offsite refresh` and `offsite restore --replace` both go
//! through them: there is one way to replace a database, and it never leaves the target missing
//! or half-loaded.

pub mod my;
mod mysql_journal;
mod mysql_objects;
pub mod privilege;
pub mod quote;
pub mod session;
pub mod swap_mysql;
pub mod swap_pg;

// PostgreSQL connections (offsite's own, with TLS, and pg_dump/psql's connection strings).
pub mod pg;
mod pg_tls;

use std::path::PathBuf;

use anyhow::Result;

use crate::config::Secret;

/// How long offsite's own connections to a database server (listing databases, versions, restores)
/// may take to be established, TCP, TLS and login together. A healthy server answers in
/// milliseconds; a busy one in seconds.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Every name we derive from a target gets this many characters more: `_offsite_new_1a2b`.
pub const SUFFIX_LEN: usize = "_offsite_new_0000".len();
/// PostgreSQL truncates identifiers to 63 bytes (MariaDB allows 64): longer derived names would
/// silently collide.
pub const MAX_TARGET_LEN: usize = 63 - SUFFIX_LEN;

/// What an engine module needs to know about the target.
pub struct Target<'a> {
    pub url: &'a str,
    pub password: Option<&'a Secret>,
    pub database: &'a str,
    pub post_sql: &'a [PathBuf],
}

/// What an engine module reports back.
#[derive(Debug, Default)]
pub struct Swapped {
    pub bytes: u64,
    pub restore_seconds: f64,
    pub post_sql_seconds: f64,
    pub replaced: bool,
}

/// Restores the dump into the named new database (the engine module picks the name).
pub type RestoreInto<'a> = dyn Fn(&str) -> Result<u64> + 'a;

/// The role or user a server URL logs in as, the way offsite's own connections read it (with the
/// same defaults when it names none).
pub fn role_in_url(engine: crate::snapshot::manifest::Engine, url: &str) -> String {
    match engine {
        crate::snapshot::manifest::Engine::Postgres => pg::parse(url)
            .ok()
            .and_then(|(cfg, _)| cfg.get_user().map(str::to_string))
            .unwrap_or_else(|| "postgres".into()),
        crate::snapshot::manifest::Engine::Mysql => my::Conn::from_server(url, None)
            .map(|c| c.user)
            .unwrap_or_else(|_| "root".into()),
    }
}

pub fn new_name(target: &str, hex: &str) -> String {
    format!("{target}_offsite_new_{hex}")
}

pub fn old_name(target: &str, hex: &str) -> String {
    format!("{target}_offsite_old_{hex}")
}

/// The `<hex>` of `name` if it is `<target>_offsite_<kind>_<4 hex>`: only names we made.
pub fn derived_hex<'n>(name: &'n str, target: &str, kind: &str) -> Option<&'n str> {
    let hex = name
        .strip_prefix(target)?
        .strip_prefix("_offsite_")?
        .strip_prefix(kind)?
        .strip_prefix('_')?;
    (hex.len() == 4 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

pub fn random_hex() -> String {
    format!("{:04x}", rand::random::<u16>())
}

/// Test hook: `OFFSITE_TEST_KILL_AT=<point>` sends SIGKILL to this process at that point, so the
/// tests can show exactly what a kill there leaves behind instead of racing a timer.
pub(crate) fn kill_point(point: &str) {
    if std::env::var("OFFSITE_TEST_KILL_AT").is_ok_and(|v| v == point) {
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::manifest::Engine;

    #[test]
    fn derived_names_are_recognized_exactly() {
        let n = new_name("shop_dev", "1a2b");
        assert_eq!(n, "shop_dev_offsite_new_1a2b");
        assert_eq!(derived_hex(&n, "shop_dev", "new"), Some("1a2b"));
        assert_eq!(derived_hex(&n, "shop_dev", "old"), None);
        assert_eq!(derived_hex(&n, "shop", "new"), None);
        assert_eq!(
            derived_hex("shop_dev_offsite_new_1a2bc", "shop_dev", "new"),
            None
        );
        assert_eq!(
            derived_hex("shop_dev_offsite_new_1A2B", "shop_dev", "new"),
            None
        );
        assert_eq!(SUFFIX_LEN, 17);
        assert_eq!(MAX_TARGET_LEN, 46);
    }

    #[test]
    fn the_role_is_read_as_the_connections_read_it() {
        assert_eq!(
            role_in_url(Engine::Postgres, "postgres://offsite%5Frestore@h:5432/"),
            "offsite_restore"
        );
        assert_eq!(role_in_url(Engine::Postgres, "postgres://h/"), "postgres");
        assert_eq!(
            role_in_url(Engine::Mysql, "mysql://offsite_restore@h:3306"),
            "offsite_restore"
        );
        assert_eq!(role_in_url(Engine::Mysql, "mysql://h:3306"), "root");
    }
}
