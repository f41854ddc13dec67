//! PostgreSQL: pre-flight with tokio-postgres (connected through [`crate::db::pg`]), dump with
//! pg_dump (plain SQL), rows counted from COPY.

use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use super::dump::stream_dump;
use crate::config::{DbServer, Secret};
use crate::db::pg::{client_command, connect};
use crate::error::usage;
use crate::pipeline::Pipeline;
use crate::process::{output, Child};
use crate::snapshot::manifest::{DatabaseEntry, Engine, ObjectEntry, ObjectKind};
use crate::sql::PgCounter;

/// Options pg_dump gets, recorded in the manifest. Plain SQL so that `psql` restores it.
pub const DUMP_OPTIONS: &[&str] = &["--format=plain", "--no-password"];

/// One database to dump, with what the pre-flight learnt about its server.
#[derive(Debug, Clone)]
pub struct PgJob {
    pub database: String,
    pub url: String,
    pub password: Option<Secret>,
    pub pg_dump: String,
    pub pg_dump_version: String,
    pub server_version: String,
    /// pg_dump is killed when it writes nothing for this long.
    pub stall_timeout: std::time::Duration,
}

/// Major version from `pg_dump (PostgreSQL) 15.20 (Debian ...)`.
fn tool_major(version: &str) -> Option<u32> {
    version
        .split_whitespace()
        .find_map(|w| w.split('.').next()?.parse().ok())
}

/// Lists the databases of a server to dump and checks that pg_dump can dump them.
pub async fn plan(server: &DbServer) -> Result<Vec<PgJob>> {
    tokio::time::timeout(super::PLAN_TIMEOUT, plan_now(server))
        .await
        .map_err(|_| super::plan_timed_out("PostgreSQL", &server.url))?
}

async fn plan_now(server: &DbServer) -> Result<Vec<PgJob>> {
    let client = connect(&server.url, server.password.as_ref(), None).await?;
    let num: String = client
        .query_one("SHOW server_version_num", &[])
        .await
        .context("asking the server version")?
        .get(0);
    let server_version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    let server_major = num.parse::<u32>().unwrap_or(0) / 10000;
    let pg_dump = server
        .dump_command
        .clone()
        .unwrap_or_else(|| "pg_dump".into());
    let mut cmd = Command::new(&pg_dump);
    cmd.arg("--version");
    let pg_dump_version = output(&pg_dump, cmd)?;
    let tool = tool_major(&pg_dump_version).unwrap_or(0);
    if tool < server_major {
        return Err(usage(format!(
            "{pg_dump} is version {tool} but the server at {} is {server_major}: pg_dump must be at least as new as the server. Install postgresql-client-{server_major} and set pg_dump: in the config",
            server.url
        )));
    }
    let existing: Vec<String> = client
        .query(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
            &[],
        )
        .await
        .context("listing databases")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let names = super::select_databases(server, &existing, &[])?;
    Ok(names
        .into_iter()
        .map(|database| PgJob {
            database,
            url: server.url.clone(),
            password: server.password.clone(),
            pg_dump: pg_dump.clone(),
            pg_dump_version: pg_dump_version.clone(),
            server_version: server_version.clone(),
            stall_timeout: server.dump_stall_timeout,
        })
        .collect())
}

/// Dumps one database into the snapshot.
pub fn dump(
    job: &PgJob,
    pipeline: &Pipeline,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<(ObjectEntry, DatabaseEntry)> {
    let source = format!("postgres/{}", job.database);
    let mut cmd = client_command(&job.pg_dump, &job.url, job.password.as_ref(), &job.database)?;
    cmd.args(DUMP_OPTIONS);
    let child = Child::spawn(format!("pg_dump of {}", job.database), cmd, Stdio::null())?;
    let sink = pipeline.create(
        &format!("db/{source}.sql"),
        ObjectKind::PostgresDump,
        &source,
    )?;
    let mut counter = PgCounter::default();
    let (object, stderr) = stream_dump(
        &format!("pg_dump of {}", job.database),
        child,
        sink,
        &mut counter,
        job.stall_timeout,
        on_bytes,
    )?;
    let warnings = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("pg_dump: {l}"))
        .collect();
    let db = DatabaseEntry {
        engine: Engine::Postgres,
        name: job.database.clone(),
        source,
        object: object.key.clone(),
        server_version: job.server_version.clone(),
        dump_tool: job.pg_dump_version.clone(),
        dump_options: DUMP_OPTIONS.iter().map(|s| s.to_string()).collect(),
        tables: counter.tables,
        end_marker_seen: counter.end_marker,
        warnings,
    };
    Ok((object, db))
}
