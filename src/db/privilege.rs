//! The role verify and refresh restore with must not reach the database server's files or programs.
//!
//! Every dump the office restores is signed by a production host, and a hacked production host
//! signs whatever it likes: the dump is untrusted SQL. psql's `\restrict` and `mariadb --sandbox`
//! stop the client-side commands, but the SQL itself runs with the restoring role's rights on the
//! server. With a PostgreSQL superuser, `COPY ... TO PROGRAM` runs shell commands as the server's OS
//! user; with MariaDB's FILE privilege, `SELECT ... INTO OUTFILE` writes files. So before the first
//! byte is restored, the role is checked, and a role with such rights is refused (exit 2, with the
//! statements that create a proper role) unless its server entry says `allow_privileged: true`.
//!
//! The check is a convenience for the operator, not the boundary: the boundary is the role's rights,
//! which the server enforces on every statement of the dump.

use anyhow::{Context, Result};

use crate::config::Server;
use crate::error::usage;
use crate::snapshot::manifest::Engine;

/// PostgreSQL roles whose members read or write the server's files or run its programs.
const PG_SERVER_ROLES: &[&str] = &[
    "pg_execute_server_program",
    "pg_write_server_files",
    "pg_read_server_files",
];

/// MariaDB/MySQL global privileges a hostile dump could use against the server: FILE (`INTO
/// OUTFILE`, `LOAD DATA INFILE`, `LOAD_FILE()`), SUPER, and SET USER (a routine with another
/// user's DEFINER runs with that user's rights, FILE included).
const MY_SERVER_PRIVILEGES: &[&str] = &["ALL PRIVILEGES", "ALL", "FILE", "SUPER", "SET USER"];

/// The statements the refusal suggests. The README's least-privilege section has the same.
pub const PG_GRANTS: &str = "CREATE ROLE offsite_restore LOGIN CREATEDB;\n\
     GRANT pg_signal_backend TO offsite_restore;  -- refresh: end sessions on the dev database\n\
     ALTER DATABASE <each refresh target> OWNER TO offsite_restore;  -- refresh: an existing target";
pub const MY_GRANTS: &str = "CREATE USER 'offsite_restore'@'<office host>' IDENTIFIED BY '...';\n\
     GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES, CREATE TEMPORARY TABLES,\n\
     \x20     LOCK TABLES, CREATE VIEW, SHOW VIEW, TRIGGER, CREATE ROUTINE, ALTER ROUTINE, EXECUTE, EVENT\n\
     \x20     ON `offsite\\_verify\\_%`.* TO 'offsite_restore'@'<office host>';  -- verify's scratch databases\n\
     GRANT <the same list> ON `shop\\_dev%`.* TO 'offsite_restore'@'<office host>';  -- refresh: each target and its work databases\n\
     GRANT PROCESS, CONNECTION ADMIN ON *.* TO 'offsite_restore'@'<office host>';  -- refresh: end sessions on the dev database";

/// Refuses a restoring role with server-level rights (a config error, exit 2), unless
/// `server.allow_privileged`. `what` names the config entry (`office.scratch.postgres`).
pub fn require(
    rt: &tokio::runtime::Handle,
    engine: Engine,
    server: &Server,
    what: &str,
) -> Result<()> {
    match refusal(rt, engine, server, what)? {
        Some(why) => Err(usage(why)),
        None => Ok(()),
    }
}

/// Why the role of `server` may not restore untrusted dumps; None when it may. `Err`: the rights
/// could not be read (the server is down, the login fails).
pub fn refusal(
    rt: &tokio::runtime::Handle,
    engine: Engine,
    server: &Server,
    what: &str,
) -> Result<Option<String>> {
    if server.allow_privileged {
        return Ok(None);
    }
    let (role, rights) = match engine {
        Engine::Postgres => rt.block_on(pg_rights(server))?,
        Engine::Mysql => rt.block_on(my_rights(server))?,
    };
    if rights.is_empty() {
        return Ok(None);
    }
    let (danger, grants) = match engine {
        Engine::Postgres => (
            "a dump's `COPY ... TO PROGRAM` would run shell commands on that server",
            PG_GRANTS,
        ),
        Engine::Mysql => (
            "a dump's `SELECT ... INTO OUTFILE` would write files on that server",
            MY_GRANTS,
        ),
    };
    Ok(Some(format!(
        "{what}: the role {role} on {} has {}; the dumps restored there are signed by production hosts, \
         which an attacker may control, and with this role {danger}. Restore with a role without such rights:\n\n{grants}\n\n\
         and name it in the URL, or set `allow_privileged: true` on this server entry to accept the risk",
        server.url,
        rights.join(", ")
    )))
}

async fn pg_rights(server: &Server) -> Result<(String, Vec<String>)> {
    let c = super::pg::connect(&server.url, server.password.as_ref(), None).await?;
    let row = c
        .query_one(
            "SELECT current_user::text, r.rolsuper, r.rolcreaterole, \
                    current_setting('server_version_num')::int, \
                    ARRAY(SELECT g FROM unnest($1::text[]) g \
                          WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g) \
                            AND pg_has_role(current_user, g, 'MEMBER')) \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[&PG_SERVER_ROLES],
        )
        .await
        .with_context(|| format!("reading the rights of the role on {}", server.url))?;
    let role: String = row.get(0);
    let superuser: bool = row.get(1);
    let createrole: bool = row.get(2);
    let version: i32 = row.get(3);
    let member_of: Vec<String> = row.get(4);
    if superuser {
        return Ok((role, vec!["SUPERUSER".into()]));
    }
    let mut rights: Vec<String> = member_of
        .into_iter()
        .map(|g| format!("membership in {g}"))
        .collect();
    // Before 16, CREATEROLE may grant any non-superuser role, pg_execute_server_program included.
    if createrole && version < 160000 {
        rights.push("CREATEROLE (before PostgreSQL 16 it can grant itself the roles above)".into());
    }
    Ok((role, rights))
}

async fn my_rights(server: &Server) -> Result<(String, Vec<String>)> {
    use mysql_async::prelude::Queryable;
    let conn = super::my::Conn::from_server(&server.url, server.password.as_ref())?;
    let mut c = conn.connect(None).await?;
    let role: Option<String> = c
        .query_first("SELECT CURRENT_USER()")
        .await
        .with_context(|| format!("reading the current user on {}", server.url))?;
    // SHOW GRANTS: the user's own grants and those of its active role.
    let grants: Vec<String> = c
        .query("SHOW GRANTS")
        .await
        .with_context(|| format!("reading the grants of the user on {}", server.url))?;
    c.disconnect().await.ok();
    Ok((role.unwrap_or_default(), dangerous_grants(&grants)))
}

/// The server-level privileges among `SHOW GRANTS` lines (`GRANT FILE, PROCESS ON *.* TO ...`).
fn dangerous_grants(lines: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for line in lines {
        let Some(rest) = line.strip_prefix("GRANT ") else {
            continue;
        };
        let Some((privs, _)) = rest.split_once(" ON *.* TO ") else {
            continue;
        };
        for p in privs.split(',').map(str::trim) {
            if MY_SERVER_PRIVILEGES
                .iter()
                .any(|d| d.eq_ignore_ascii_case(p))
                && !found.iter().any(|f: &String| f.eq_ignore_ascii_case(p))
            {
                found.push(p.to_string());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_level_grants_are_found_in_show_grants() {
        let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            dangerous_grants(&lines(&[
                "GRANT ALL PRIVILEGES ON *.* TO `root`@`127.0.0.1` WITH GRANT OPTION"
            ])),
            vec!["ALL PRIVILEGES"]
        );
        assert_eq!(
            dangerous_grants(&lines(&[
                "GRANT PROCESS, FILE, CONNECTION ADMIN ON *.* TO `r`@`%`",
                "GRANT SET USER ON *.* TO `r`@`%`",
            ])),
            vec!["FILE", "SET USER"]
        );
        // Database-level grants cannot include FILE or SUPER, and an ALL there is harmless.
        assert!(dangerous_grants(&lines(&[
            "GRANT USAGE ON *.* TO `offsite_restore`@`%`",
            "GRANT PROCESS, CONNECTION ADMIN ON *.* TO `offsite_restore`@`%`",
            "GRANT ALL PRIVILEGES ON `offsite\\_verify\\_%`.* TO `offsite_restore`@`%`",
        ]))
        .is_empty());
    }
}
