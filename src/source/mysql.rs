//! MySQL/MariaDB: pre-flight with mysql_async, dump with mariadb-dump or mysqldump, rows counted from
//! the INSERT tuples.

use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use mysql_async::prelude::Queryable;

use super::dump::stream_dump;
use crate::config::DbServer;
use crate::db::my::Conn;
use crate::pipeline::Pipeline;
use crate::process::{output, Child};
use crate::snapshot::manifest::{DatabaseEntry, Engine, ObjectEntry, ObjectKind};
use crate::sql::MysqlCounter;

/// A consistent InnoDB snapshot without locking, with everything that is not a table, binary data as
/// hex so the SQL stays valid text whatever the bytes.
pub const DUMP_OPTIONS: &[&str] = &[
    "--single-transaction",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
    "--default-character-set=utf8mb4",
    "--quick",
    "--skip-dump-date",
    // The client's own default (16 MiB, older tools 24 MiB) fails on a bigger row; the server's
    // max_allowed_packet still bounds what it sends.
    "--max-allowed-packet=1G",
];

/// Schemas that belong to the server, not to the user; never part of `databases: all`.
const SYSTEM_SCHEMAS: &[&str] = &["information_schema", "performance_schema", "sys", "mysql"];

#[derive(Debug, Clone)]
pub struct MysqlJob {
    pub database: String,
    pub conn: Conn,
    pub dump_command: String,
    pub dump_version: String,
    pub server_version: String,
    /// `table (engine)` of every table that is not InnoDB: --single-transaction cannot make those
    /// consistent.
    pub non_innodb: Vec<String>,
    /// The dump is killed when it writes nothing for this long.
    pub stall_timeout: std::time::Duration,
}

/// The dump client: the configured one, else mariadb-dump, else mysqldump.
fn dump_command(server: &DbServer) -> String {
    if let Some(c) = &server.dump_command {
        return c.clone();
    }
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
            .unwrap_or(false)
    };
    if on_path("mariadb-dump") {
        "mariadb-dump".into()
    } else {
        "mysqldump".into()
    }
}

/// Lists the databases of a server to dump, and their tables that are not InnoDB.
pub async fn plan(server: &DbServer) -> Result<Vec<MysqlJob>> {
    tokio::time::timeout(super::PLAN_TIMEOUT, plan_now(server))
        .await
        .map_err(|_| super::plan_timed_out("MySQL/MariaDB", &server.url))?
}

async fn plan_now(server: &DbServer) -> Result<Vec<MysqlJob>> {
    let conn = Conn::from_server(&server.url, server.password.as_ref())?;
    let mut c = conn.connect(None).await?;
    let server_version: String = c
        .query_first("SELECT VERSION()")
        .await
        .context("asking the server version")?
        .unwrap_or_default();
    let existing: Vec<String> = c
        .query("SHOW DATABASES")
        .await
        .context("listing databases")?;
    let names = super::select_databases(server, &existing, SYSTEM_SCHEMAS)?;
    let tool = dump_command(server);
    let mut cmd = Command::new(&tool);
    cmd.arg("--version");
    let dump_version = output(&tool, cmd)?;
    let mut jobs = Vec::new();
    for database in names {
        let non_innodb: Vec<(String, String)> = c
            .exec(
                "SELECT table_name, engine FROM information_schema.tables \
                 WHERE table_schema = ? AND table_type = 'BASE TABLE' AND engine <> 'InnoDB' ORDER BY 1",
                (database.clone(),),
            )
            .await
            .with_context(|| format!("checking table engines of {database}"))?;
        jobs.push(MysqlJob {
            database,
            conn: conn.clone(),
            dump_command: tool.clone(),
            dump_version: dump_version.clone(),
            server_version: server_version.clone(),
            stall_timeout: server.dump_stall_timeout,
            non_innodb: non_innodb
                .into_iter()
                .map(|(t, e)| format!("{t} ({e})"))
                .collect(),
        });
    }
    c.disconnect().await.ok();
    Ok(jobs)
}

pub fn dump(
    job: &MysqlJob,
    pipeline: &Pipeline,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<(ObjectEntry, DatabaseEntry)> {
    let source = format!("mysql/{}", job.database);
    let client = crate::db::my::Client::from_version(&job.dump_version);
    let (args, _defaults) = job.conn.client_args_for(client)?;
    let mut cmd = Command::new(&job.dump_command);
    cmd.args(&args)
        .args(DUMP_OPTIONS)
        .arg("--")
        .arg(&job.database);
    let name = format!("{} of {}", job.dump_command, job.database);
    let child = Child::spawn(name.clone(), cmd, Stdio::null())?;
    let sink = pipeline.create(&format!("db/{source}.sql"), ObjectKind::MysqlDump, &source)?;
    let mut counter = MysqlCounter::new();
    let (object, stderr) = stream_dump(
        &name,
        child,
        sink,
        &mut counter,
        job.stall_timeout,
        on_bytes,
    )?;
    let mut warnings: Vec<String> = job
        .non_innodb
        .iter()
        .map(|t| {
            format!("table {t} is not InnoDB: --single-transaction cannot make its dump consistent")
        })
        .collect();
    warnings.extend(
        stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("{}: {l}", job.dump_command)),
    );
    let db = DatabaseEntry {
        engine: Engine::Mysql,
        name: job.database.clone(),
        source,
        object: object.key.clone(),
        server_version: job.server_version.clone(),
        dump_tool: job.dump_version.clone(),
        dump_options: DUMP_OPTIONS.iter().map(|s| s.to_string()).collect(),
        tables: counter.tables,
        end_marker_seen: counter.end_marker,
        warnings,
    };
    Ok((object, db))
}
