//! MariaDB/MySQL connections: offsite's own (mysql_async) and the arguments for the command-line
//! clients (mariadb-dump, mariadb). Every MariaDB/MySQL connection push, restore, verify and refresh
//! make goes through [`Conn`].

use std::io::Write;

use anyhow::{Context, Result};

use crate::config::Secret;

/// Connection parameters, split out of the URL for the command-line clients.
#[derive(Debug, Clone)]
pub struct Conn {
    pub url: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
}

impl Conn {
    pub fn from_server(url: &str, password: Option<&Secret>) -> Result<Self> {
        let u = url::Url::parse(url).with_context(|| format!("invalid MySQL URL {url}"))?;
        let user = if u.username().is_empty() {
            "root".to_string()
        } else {
            u.username().to_string()
        };
        Ok(Self {
            url: url.to_string(),
            host: u.host_str().unwrap_or("127.0.0.1").to_string(),
            port: u.port().unwrap_or(3306),
            user,
            password: password.cloned(),
        })
    }

    pub async fn connect(&self, database: Option<&str>) -> Result<mysql_async::Conn> {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(self.password.as_ref().map(|p| p.expose().to_string()))
            .db_name(database.map(str::to_string));
        // As for PostgreSQL: a server that accepts and then says nothing must not hold the push.
        tokio::time::timeout(crate::source::CONNECT_TIMEOUT, mysql_async::Conn::new(opts))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "connecting to MySQL/MariaDB at {}: no answer in {}s; is the server up and reachable?",
                    self.url,
                    crate::source::CONNECT_TIMEOUT.as_secs()
                )
            })?
            .with_context(|| format!("connecting to MySQL/MariaDB at {}", self.url))
    }

    /// Arguments for mariadb/mariadb-dump. The password goes through a private defaults file (mode
    /// 0600, removed when the returned guard drops), never through argv where `ps` would show it.
    pub fn client_args(&self) -> Result<(Vec<String>, Option<tempfile::NamedTempFile>)> {
        let mut args = Vec::new();
        let mut guard = None;
        if let Some(p) = &self.password {
            let mut f = tempfile::Builder::new()
                .prefix("offsite-my-")
                .suffix(".cnf")
                .tempfile()
                .context("creating a private MySQL defaults file")?;
            let escaped = p.expose().replace('\\', "\\\\").replace('"', "\\\"");
            writeln!(f, "[client]\npassword=\"{escaped}\"")
                .context("writing the MySQL defaults file")?;
            f.flush()?;
            // --defaults-extra-file must come first.
            args.push(format!("--defaults-extra-file={}", f.path().display()));
            guard = Some(f);
        } else {
            args.push("--no-defaults".into());
        }
        args.push(format!("--host={}", self.host));
        args.push(format!("--port={}", self.port));
        args.push(format!("--user={}", self.user));
        args.push("--protocol=TCP".into());
        Ok((args, guard))
    }
}
