//! MariaDB/MySQL connections: offsite's own (mysql_async) and the arguments for the command-line
//! clients (mariadb-dump, mariadb). Every MariaDB/MySQL connection push, restore, verify and refresh
//! make goes through [`Conn`].
//!
//! TLS is configured the way MySQL users already write it, as query parameters of the server URL:
//! `mysql://backup@db:3306/?ssl-mode=VERIFY_IDENTITY&ssl-ca=/etc/ssl/db-ca.pem` (also `ssl_mode`,
//! `ssl_ca`, ...; `ssl-cert` and `ssl-key` for a client certificate). The modes mean what they
//! mean to the `mysql` client:
//!
//! - `DISABLED`: plain TCP.
//! - `PREFERRED` (the default): TLS when the server offers it, the certificate not checked.
//! - `REQUIRED`: TLS or no connection, the certificate not checked.
//! - `VERIFY_CA`: TLS with a certificate signed by `ssl-ca` (needed), any name.
//! - `VERIFY_IDENTITY`: as VERIFY_CA, and the certificate names the host of the URL; without
//!   `ssl-ca`, the well-known public roots. The setting for production.
//!
//! `ssl-ca` without `ssl-mode` means VERIFY_CA. A certificate that fails the check, or a server
//! without TLS where TLS is required, is a configuration error (exit code 2) naming the server and
//! the mode.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::config::Secret;
use crate::error::usage;

/// `ssl-mode` of the server URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disabled,
    #[default]
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disabled => "DISABLED",
            SslMode::Preferred => "PREFERRED",
            SslMode::Required => "REQUIRED",
            SslMode::VerifyCa => "VERIFY_CA",
            SslMode::VerifyIdentity => "VERIFY_IDENTITY",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "DISABLED" => SslMode::Disabled,
            "PREFERRED" => SslMode::Preferred,
            "REQUIRED" => SslMode::Required,
            "VERIFY_CA" => SslMode::VerifyCa,
            "VERIFY_IDENTITY" => SslMode::VerifyIdentity,
            _ => return None,
        })
    }

    fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyIdentity)
    }
}

/// The TLS settings of a server URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    pub mode: SslMode,
    /// PEM file of the CA(s) the server certificate must be signed by (VERIFY_CA/VERIFY_IDENTITY).
    pub ca: Option<PathBuf>,
    /// Client certificate and its key (PEM), sent when the server asks for one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl Tls {
    /// Reads `ssl-mode`, `ssl-ca`, `ssl-cert`, `ssl-key` (or with `_`) from the URL's query. Any
    /// other `ssl` parameter is refused rather than ignored: a typo must not turn TLS checks off.
    pub fn from_url(u: &url::Url) -> Result<Self> {
        let url = u.as_str();
        let mut mode = None;
        let mut tls = Tls::default();
        for (k, v) in u.query_pairs() {
            let key = k.to_ascii_lowercase().replace('_', "-");
            if !key.starts_with("ssl") {
                continue;
            }
            let path = || -> Result<Option<PathBuf>> {
                if v.is_empty() {
                    return Err(usage(format!("{url}: {k} is empty")));
                }
                Ok(Some(PathBuf::from(v.as_ref())))
            };
            match key.as_str() {
                "ssl-mode" => {
                    mode = Some(SslMode::parse(&v).ok_or_else(|| {
                        usage(format!(
                            "{url}: {k}={v} is not a MySQL ssl-mode (DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY)"
                        ))
                    })?)
                }
                "ssl-ca" => tls.ca = path()?,
                "ssl-cert" => tls.cert = path()?,
                "ssl-key" => tls.key = path()?,
                _ => {
                    return Err(usage(format!(
                        "{url}: unknown TLS parameter {k} (offsite reads ssl-mode, ssl-ca, ssl-cert, ssl-key)"
                    )))
                }
            }
        }
        tls.mode = match (mode, &tls.ca) {
            (Some(m), _) => m,
            (None, Some(_)) => SslMode::VerifyCa,
            (None, None) => SslMode::Preferred,
        };
        if tls.mode == SslMode::VerifyCa && tls.ca.is_none() {
            return Err(usage(format!(
                "{url}: ssl-mode=VERIFY_CA needs ssl-ca, the CA certificate the server's must be signed by"
            )));
        }
        if tls.cert.is_some() != tls.key.is_some() {
            return Err(usage(format!(
                "{url}: ssl-cert and ssl-key go together (the client certificate and its key)"
            )));
        }
        Ok(tls)
    }

    /// The files named must be readable now: a missing CA is a config error, not a TLS failure.
    fn check_files(&self, url: &str) -> Result<()> {
        for (what, p) in [
            ("ssl-ca", &self.ca),
            ("ssl-cert", &self.cert),
            ("ssl-key", &self.key),
        ] {
            if let Some(p) = p {
                std::fs::File::open(p)
                    .map_err(|e| usage(format!("{url}: {what} {}: {e}", p.display())))?;
            }
        }
        Ok(())
    }

    /// mysql_async's settings; `None` for a plain connection.
    fn ssl_opts(&self) -> Option<mysql_async::SslOpts> {
        if self.mode == SslMode::Disabled {
            return None;
        }
        let mut o = mysql_async::SslOpts::default().with_client_identity(
            self.cert
                .as_ref()
                .zip(self.key.as_ref())
                .map(|(c, k)| mysql_async::ClientIdentity::new(c.clone().into(), k.clone().into())),
        );
        if self.mode.verifies() {
            if let Some(ca) = &self.ca {
                o = o
                    .with_root_certs(vec![ca.clone().into()])
                    .with_disable_built_in_roots(true);
            }
            o = o.with_danger_skip_domain_validation(self.mode == SslMode::VerifyCa);
        } else {
            // PREFERRED and REQUIRED encrypt but do not check who answers.
            o = o.with_danger_accept_invalid_certs(true);
        }
        Some(o)
    }

    /// Options for the MariaDB command-line clients (mariadb-dump, mariadb; 10.x and 11.x).
    /// Verification is always said explicitly: 11.4 and later verify by default.
    pub fn mariadb_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if self.mode == SslMode::Disabled {
            a.push("--skip-ssl".to_string());
            return a;
        }
        a.push("--ssl".into());
        if self.mode.verifies() {
            // With a CA the client checks the chain; --ssl-verify-server-cert adds the name.
            if let Some(ca) = &self.ca {
                a.push(format!("--ssl-ca={}", ca.display()));
            }
        }
        if let (Some(c), Some(k)) = (&self.cert, &self.key) {
            a.push(format!("--ssl-cert={}", c.display()));
            a.push(format!("--ssl-key={}", k.display()));
        }
        a.push(
            if self.mode == SslMode::VerifyIdentity {
                "--ssl-verify-server-cert"
            } else {
                "--skip-ssl-verify-server-cert"
            }
            .into(),
        );
        a
    }

    /// Options for Oracle MySQL's clients (mysqldump 5.7/8.x), which take `--ssl-mode`.
    pub fn mysql_args(&self) -> Vec<String> {
        let mut a = vec![format!("--ssl-mode={}", self.mode.as_str())];
        if self.mode == SslMode::Disabled {
            return a;
        }
        if self.mode.verifies() {
            if let Some(ca) = &self.ca {
                a.push(format!("--ssl-ca={}", ca.display()));
            }
        }
        if let (Some(c), Some(k)) = (&self.cert, &self.key) {
            a.push(format!("--ssl-cert={}", c.display()));
            a.push(format!("--ssl-key={}", k.display()));
        }
        a
    }
}

/// Checks the TLS parameters of a MariaDB/MySQL server URL of the config (`what` names the key):
/// the URL must already be clean of its password, which an error would show.
pub fn check_url(what: &str, url: &str) -> Result<()> {
    let u = url::Url::parse(url).map_err(|e| usage(format!("{what}.url {url}: {e}")))?;
    Tls::from_url(&u)
        .map(|_| ())
        .map_err(|e| usage(format!("{what}.url: {e:#}")))
}

/// The first name a certificate presents, from rustls' "not valid for name" error: `DnsName("db")`
/// or `IpAddress(10.0.0.5)`. `None` for any other error.
fn presented_name(e: &mysql_async::Error) -> Option<String> {
    let mysql_async::Error::Io(mysql_async::IoError::Io(io)) = e else {
        return None;
    };
    let msg = io.to_string();
    let names = msg
        .split_once("certificate not valid for name")?
        .1
        .split_once("is only valid for ")?
        .1;
    if let Some(rest) = names.split_once("DnsName(\"").map(|(_, r)| r) {
        return rest.split_once('"').map(|(n, _)| n.to_string());
    }
    let rest = names.split_once("IpAddress(")?.1;
    let ip = rest.split_once(')')?.0;
    ip.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_string())
}

/// Which command-line client the arguments are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// mariadb, mariadb-dump, and MariaDB's mysqldump.
    Mariadb,
    /// Oracle MySQL's mysqldump.
    Mysql,
}

impl Client {
    /// From the tool's `--version` line: MariaDB's say `MariaDB`.
    pub fn from_version(version: &str) -> Self {
        if version.contains("MariaDB") {
            Client::Mariadb
        } else {
            Client::Mysql
        }
    }
}

/// Connection parameters, split out of the URL for the command-line clients.
#[derive(Debug, Clone)]
pub struct Conn {
    pub url: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    pub tls: Tls,
}

impl Conn {
    pub fn from_server(url: &str, password: Option<&Secret>) -> Result<Self> {
        let u = url::Url::parse(url).with_context(|| format!("invalid MySQL URL {url}"))?;
        let user = if u.username().is_empty() {
            "root".to_string()
        } else {
            u.username().to_string()
        };
        let tls = Tls::from_url(&u)?;
        tls.check_files(url)?;
        Ok(Self {
            url: url.to_string(),
            host: u.host_str().unwrap_or("127.0.0.1").to_string(),
            port: u.port().unwrap_or(3306),
            user,
            password: password.cloned(),
            tls,
        })
    }

    pub async fn connect(&self, database: Option<&str>) -> Result<mysql_async::Conn> {
        let connected = match self.connect_with(database, self.tls.ssl_opts()).await? {
            // PREFERRED: a server without TLS is talked to in plain text, as the mysql client does.
            Err(mysql_async::Error::Driver(
                mysql_async::DriverError::NoClientSslFlagFromServer,
            )) if self.tls.mode == SslMode::Preferred => self.connect_with(database, None).await?,
            // VERIFY_CA: mysql_async's "skip domain validation" looks for a rustls message that
            // rustls 0.23.x no longer writes, so a certificate from the right CA for another name
            // fails. The chain did pass: check it again against a name the certificate presents.
            Err(e) if self.tls.mode == SslMode::VerifyCa => match presented_name(&e) {
                Some(name) => {
                    let ssl = self
                        .tls
                        .ssl_opts()
                        .map(|o| o.with_danger_tls_hostname_override(Some(name)));
                    self.connect_with(database, ssl).await?
                }
                None => Err(e),
            },
            r => r,
        };
        connected.map_err(|e| self.connect_error(e))
    }

    /// The outer `Err` is the timeout, the inner what the server or TLS said.
    async fn connect_with(
        &self,
        database: Option<&str>,
        ssl: Option<mysql_async::SslOpts>,
    ) -> Result<std::result::Result<mysql_async::Conn, mysql_async::Error>> {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(self.password.as_ref().map(|p| p.expose().to_string()))
            .db_name(database.map(str::to_string))
            // TCP, as the URL says and as the clients offsite runs connect (--protocol=TCP):
            // mysql_async would otherwise switch to the server's Unix socket on a loopback
            // address, which skips TLS and logs in as another account (user@localhost, not
            // user@127.0.0.1), so objects a restore created would not be the connection's own.
            .prefer_socket(false)
            .ssl_opts(ssl);
        // As for PostgreSQL: a server that accepts and then says nothing must not hold the push.
        tokio::time::timeout(super::CONNECT_TIMEOUT, mysql_async::Conn::new(opts))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "connecting to MySQL/MariaDB at {}: no answer in {}s; is the server up and reachable?",
                    self.url,
                    super::CONNECT_TIMEOUT.as_secs()
                )
            })
    }

    /// A TLS failure is the configuration's to fix (the CA, the mode, the server's certificate):
    /// a usage error naming the server and the mode. Anything else keeps its usual context.
    fn connect_error(&self, e: mysql_async::Error) -> anyhow::Error {
        use mysql_async::{DriverError, Error, IoError};
        let mode = self.tls.mode.as_str();
        let tls_failed = match &e {
            Error::Io(IoError::Tls(_)) => true,
            // rustls reports a certificate it refuses (and the server's alerts) as invalid data
            // during the handshake; plain MySQL traffic never errs that way before login.
            Error::Io(IoError::Io(io)) => {
                self.tls.mode != SslMode::Disabled && io.kind() == std::io::ErrorKind::InvalidData
            }
            _ => false,
        };
        if tls_failed {
            let hint = match self.tls.mode {
                SslMode::VerifyCa | SslMode::VerifyIdentity => match &self.tls.ca {
                    Some(ca) => format!(
                        "is the server's certificate signed by the CA in ssl-ca {}{}?",
                        ca.display(),
                        if self.tls.mode == SslMode::VerifyIdentity {
                            format!(" and issued for {}", self.host)
                        } else {
                            String::new()
                        }
                    ),
                    None => format!(
                        "is the server's certificate from a public CA and issued for {}? else set ssl-ca",
                        self.host
                    ),
                },
                _ => "check ssl-cert/ssl-key and the server's TLS setup".into(),
            };
            let why = match &e {
                Error::Io(IoError::Io(io)) => io.to_string(),
                e => e.to_string(),
            };
            return usage(format!(
                "TLS to MySQL/MariaDB at {} failed (ssl-mode={mode}): {why}; {hint}",
                self.url
            ));
        }
        if matches!(e, Error::Driver(DriverError::NoClientSslFlagFromServer)) {
            return usage(format!(
                "MySQL/MariaDB at {} does not offer TLS, which ssl-mode={mode} requires; enable TLS on the server (ssl-cert/ssl-key in its config)",
                self.url
            ));
        }
        if let Error::Server(s) = &e {
            // MariaDB answers a plain connection with require_secure_transport=ON with "access
            // denied" (MySQL with 3159); either way the cause is TLS being off on our side.
            if self.tls.mode == SslMode::Disabled && (s.code == 1045 || s.code == 3159) {
                return usage(format!(
                    "connecting to MySQL/MariaDB at {} without TLS (ssl-mode=DISABLED): {e}; if the server requires secure transport, remove ssl-mode=DISABLED (VERIFY_IDENTITY with ssl-ca is the production setting)",
                    self.url
                ));
            }
        }
        anyhow::Error::new(e).context(format!("connecting to MySQL/MariaDB at {}", self.url))
    }

    /// Connects once and hangs up, to find configuration errors (TLS) before any work: `Err`
    /// only for a usage error. A server that is down or refuses the login is left for the work
    /// itself to report where it belongs.
    pub async fn check_config(&self) -> Result<()> {
        match self.connect(None).await {
            Ok(c) => {
                c.disconnect().await.ok();
                Ok(())
            }
            Err(e) if crate::error::is_usage(&e) => Err(e),
            Err(_) => Ok(()),
        }
    }

    /// Arguments for mariadb/mariadb-dump. The password goes through a private defaults file (mode
    /// 0600, removed when the returned guard drops), never through argv where `ps` would show it.
    pub fn client_args(&self) -> Result<(Vec<String>, Option<tempfile::NamedTempFile>)> {
        self.client_args_for(Client::Mariadb)
    }

    /// As [`Conn::client_args`], with the TLS options spelled the way `client` takes them.
    pub fn client_args_for(
        &self,
        client: Client,
    ) -> Result<(Vec<String>, Option<tempfile::NamedTempFile>)> {
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
        args.extend(match client {
            Client::Mariadb => self.tls.mariadb_args(),
            Client::Mysql => self.tls.mysql_args(),
        });
        Ok((args, guard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(url: &str) -> Result<Tls> {
        Tls::from_url(&url::Url::parse(url).unwrap())
    }

    #[test]
    fn tls_parameters_are_read_from_the_url() {
        assert_eq!(tls("mysql://root@db:3306/").unwrap(), Tls::default());
        let t = tls("mysql://root@db/?ssl-mode=verify_identity&ssl-ca=/etc/ca.pem").unwrap();
        assert_eq!(t.mode, SslMode::VerifyIdentity);
        assert_eq!(t.ca, Some(PathBuf::from("/etc/ca.pem")));
        let t = tls("mysql://db/?ssl_mode=REQUIRED&ssl_cert=/c.pem&ssl_key=/k.pem").unwrap();
        assert_eq!(t.mode, SslMode::Required);
        assert_eq!(t.cert, Some(PathBuf::from("/c.pem")));
        // A CA alone asks for it to be checked.
        assert_eq!(
            tls("mysql://db/?ssl-ca=/ca.pem").unwrap().mode,
            SslMode::VerifyCa
        );
        assert_eq!(
            tls("mysql://db/?ssl-mode=DISABLED").unwrap().mode,
            SslMode::Disabled
        );
        // Other parameters stay someone else's business.
        assert_eq!(tls("mysql://db/?charset=utf8mb4").unwrap(), Tls::default());
    }

    #[test]
    fn bad_tls_parameters_are_usage_errors() {
        for url in [
            "mysql://db/?ssl-mode=VERIFY",
            "mysql://db/?ssl-mode=VERIFY_CA",
            "mysql://db/?ssl-cert=/c.pem",
            "mysql://db/?ssl-mod=REQUIRED",
            "mysql://db/?sslmode=require",
            "mysql://db/?ssl-ca=",
        ] {
            let e = tls(url).unwrap_err();
            assert!(crate::error::is_usage(&e), "{url}: {e:#}");
        }
        let e = Conn::from_server("mysql://db/?ssl-ca=/nonexistent/ca.pem", None).unwrap_err();
        assert!(crate::error::is_usage(&e), "{e:#}");
        assert!(format!("{e}").contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn the_name_a_certificate_presents_is_read_from_the_error() {
        let err = |m: &str| {
            mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                m.to_string(),
            )))
        };
        let name = |m: &str| presented_name(&err(m));
        assert_eq!(
            name("invalid peer certificate: certificate not valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"db.offsite.test\") or IpAddress(10.0.0.5)").as_deref(),
            Some("db.offsite.test")
        );
        assert_eq!(
            name("invalid peer certificate: certificate not valid for name \"db\"; certificate is only valid for IpAddress(10.0.0.5)").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(name("invalid peer certificate: UnknownIssuer"), None);
        assert_eq!(
            name("invalid peer certificate: certificate not valid for name \"db\"; certificate is not valid for any names (according to its subjectAltName extension)"),
            None
        );
    }

    #[test]
    fn the_config_checks_tls_parameters_without_showing_the_password() {
        let parse = |url: &str| {
            crate::config::Config::parse(
                &format!("host: a\nstore: {{ local: /x }}\nmysql: [{{ url: '{url}' }}]\n"),
                std::path::Path::new("/etc/offsite/config.yaml"),
            )
        };
        assert!(parse("mysql://u@db/?ssl-mode=VERIFY_IDENTITY&ssl-ca=/ca.pem").is_ok());
        let e = parse("mysql://u:hunter2@db/?ssl-mode=VERIFY_IDENTIY").unwrap_err();
        let msg = format!("{e:#}");
        assert!(crate::error::is_usage(&e), "{msg}");
        assert!(
            msg.contains("mysql[0].url") && msg.contains("VERIFY_IDENTIY"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn client_options_follow_the_mode() {
        let args = |url: &str, c: Client| {
            let conn = Conn::from_server(url, None).unwrap();
            conn.client_args_for(c).unwrap().0.join(" ")
        };
        let ca = tempfile::NamedTempFile::new().unwrap();
        let ca = ca.path().display().to_string();
        assert!(args("mysql://db/?ssl-mode=DISABLED", Client::Mariadb).ends_with(" --skip-ssl"));
        assert!(
            args("mysql://db/", Client::Mariadb).ends_with(" --ssl --skip-ssl-verify-server-cert")
        );
        assert!(args(
            &format!("mysql://db/?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"),
            Client::Mariadb
        )
        .ends_with(&format!(" --ssl --ssl-ca={ca} --ssl-verify-server-cert")));
        assert!(
            args(&format!("mysql://db/?ssl-ca={ca}"), Client::Mariadb).ends_with(&format!(
                " --ssl --ssl-ca={ca} --skip-ssl-verify-server-cert"
            ))
        );
        assert!(args(
            &format!("mysql://db/?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"),
            Client::Mysql
        )
        .ends_with(&format!(" --ssl-mode=VERIFY_IDENTITY --ssl-ca={ca}")));
        assert!(args("mysql://db/", Client::Mysql).ends_with(" --ssl-mode=PREFERRED"));
        assert_eq!(
            Client::from_version("mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB"),
            Client::Mariadb
        );
        assert_eq!(
            Client::from_version("mysqldump  Ver 8.0.36 for Linux"),
            Client::Mysql
        );
    }
}
