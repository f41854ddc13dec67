//! One connection to a database server of either engine, for what restore, verify and the scratch
//! registry ask of a server: does a database exist, create it, drop it, count a table's rows, read
//! the first value of a user's query. Identifiers are quoted here ([`super::quote`]) and nowhere
//! else; table names read from a dump (which a hacked host writes) are re-quoted part by part.

use anyhow::{Context, Result};
use mysql_async::prelude::Queryable;

use super::quote;
use crate::config::Secret;
use crate::snapshot::manifest::Engine;

pub enum Session {
    Pg(tokio_postgres::Client),
    My(mysql_async::Conn),
}

impl Session {
    /// Connects to `url` (TLS as it says); `database` replaces the URL's.
    pub async fn open(
        engine: Engine,
        url: &str,
        password: Option<&Secret>,
        database: Option<&str>,
    ) -> Result<Self> {
        Ok(match engine {
            Engine::Postgres => Self::Pg(super::pg::connect(url, password, database).await?),
            Engine::Mysql => Self::My(
                super::my::Conn::from_server(url, password)?
                    .connect(database)
                    .await?,
            ),
        })
    }

    pub async fn database_exists(&mut self, name: &str) -> Result<bool> {
        Ok(match self {
            Self::Pg(c) => c
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await?
                .is_some(),
            Self::My(c) => c
                .exec_first::<String, _, _>(
                    "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?",
                    (name,),
                )
                .await?
                .is_some(),
        })
    }

    /// Creates an empty database (MariaDB: utf8mb4, the character set dumps are loaded in).
    pub async fn create_database(&mut self, name: &str) -> Result<()> {
        match self {
            Self::Pg(c) => {
                c.batch_execute(&format!("CREATE DATABASE {}", quote::pg(name)))
                    .await?
            }
            Self::My(c) => {
                c.query_drop(format!(
                    "CREATE DATABASE {} CHARACTER SET utf8mb4",
                    quote::my(name)
                ))
                .await?
            }
        }
        Ok(())
    }

    /// Drops a database if it exists; on PostgreSQL its sessions are ended first (`WITH (FORCE)`).
    pub async fn drop_database(&mut self, name: &str) -> Result<()> {
        match self {
            Self::Pg(c) => {
                c.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote::pg(name)
                ))
                .await?
            }
            Self::My(c) => {
                c.query_drop(format!("DROP DATABASE IF EXISTS {}", quote::my(name)))
                    .await?
            }
        }
        Ok(())
    }

    /// Rows of `table` as a dump names it (`schema.table` for PostgreSQL, `table` for MariaDB).
    pub async fn count_rows(&mut self, table: &str) -> Result<u64> {
        match self {
            Self::Pg(c) => {
                let quoted = quote::pg_qualified(table).with_context(|| {
                    format!("the dump names a table {table:?}, which is not a table name pg_dump writes")
                })?;
                // The table's own rows, as its COPY block holds them: pg_dump copies an
                // inheritance parent's rows apart from its children's. A partitioned table holds
                // none itself, so it is counted whole (a dump made with
                // --load-via-partition-root copies every partition's rows into it).
                let partitioned: bool = c
                    .query_one(
                        "SELECT relkind = 'p' FROM pg_class WHERE oid = $1::text::regclass",
                        &[&quoted],
                    )
                    .await
                    .with_context(|| format!("finding table {table}"))?
                    .get(0);
                let only = if partitioned { "" } else { "ONLY " };
                let n: i64 = c
                    .query_one(&format!("SELECT count(*) FROM {only}{quoted}"), &[])
                    .await
                    .with_context(|| format!("counting rows of {table}"))?
                    .get(0);
                Ok(n as u64)
            }
            Self::My(c) => {
                let n: Option<u64> = c
                    .query_first(format!("SELECT count(*) FROM {}", quote::my(table)))
                    .await
                    .with_context(|| format!("counting rows of {table}"))?;
                // No row is no count: never read it as an empty table that matches.
                n.with_context(|| format!("counting rows of {table}: the server returned no row"))
            }
        }
    }

    /// The first column of the first row of a query, as text (None: no row, or NULL).
    pub async fn first_value(&mut self, sql: &str) -> Result<Option<String>> {
        match self {
            Self::Pg(c) => {
                for msg in c.simple_query(sql).await? {
                    if let tokio_postgres::SimpleQueryMessage::Row(row) = msg {
                        return Ok(row.get(0).map(str::to_string));
                    }
                }
                Ok(None)
            }
            // The text protocol returns every value as text, which is what an expectation reads.
            Self::My(c) => Ok(c
                .query_first::<mysql_async::Row, _>(sql)
                .await?
                .and_then(|r| r.get_opt::<Option<String>, _>(0).and_then(|v| v.ok()))
                .flatten()),
        }
    }

    pub async fn close(self) {
        if let Self::My(c) = self {
            c.disconnect().await.ok();
        }
    }
}
