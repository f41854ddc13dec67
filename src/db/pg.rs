//! PostgreSQL connections: offsite's own (tokio-postgres, with TLS as libpq would do it, see
//! [`super::pg_tls`]) and the connection strings pg_dump and psql get. Every part of offsite that
//! talks to a PostgreSQL server goes through here.
//!
//! The URL is the user's, libpq syntax: `postgres://user@host:5432/db?sslmode=verify-full&sslrootcert=/ca.pem`.
//! offsite takes the TLS parameters out before tokio-postgres parses the rest (it knows only
//! disable/prefer/require); pg_dump and psql get the URL as it is, and libpq reads them itself.

use std::process::Command;

use anyhow::{Context, Result};

use super::pg_tls::{CertificateRejected, SslMode, TlsParams, TlsSettings, PARAMS};
use super::CONNECT_TIMEOUT;
use crate::config::Secret;
use crate::error::usage;

/// The URL split into what tokio-postgres is given and the TLS settings offsite applies itself.
pub fn parse(url: &str) -> Result<(tokio_postgres::Config, TlsSettings)> {
    let mut u = url::Url::parse(url).with_context(|| format!("invalid PostgreSQL URL {url}"))?;
    let mut tls = TlsParams::default();
    let mut rest = Vec::new();
    for (k, v) in u.query_pairs().into_owned() {
        if PARAMS.contains(&k.as_str()) {
            tls.set(&k, v);
        } else {
            rest.push((k, v));
        }
    }
    if rest.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(rest);
    }
    let cfg: tokio_postgres::Config = u
        .as_str()
        .parse()
        .with_context(|| format!("invalid PostgreSQL URL {url}"))?;
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let settings = tls
        .with_env(&|k| std::env::var(k).ok())
        .resolve(home.as_deref())
        .with_context(|| format!("PostgreSQL URL {url}"))?;
    Ok((cfg, settings))
}

/// Connects to a server with tokio-postgres. `database` replaces the URL's database.
pub async fn connect(
    url: &str,
    password: Option<&Secret>,
    database: Option<&str>,
) -> Result<tokio_postgres::Client> {
    let (mut cfg, tls) = parse(url)?;
    if let Some(p) = password {
        cfg.password(p.expose());
    }
    if let Some(db) = database {
        cfg.dbname(db);
    } else if cfg.get_dbname().is_none() {
        cfg.dbname("postgres");
    }
    if cfg.get_user().is_none() {
        cfg.user("postgres");
    }
    // libpq does no TLS over Unix sockets, whatever sslmode says.
    let unix_only = cfg
        .get_hosts()
        .iter()
        .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
    cfg.ssl_mode(if unix_only && !cfg.get_hosts().is_empty() {
        tokio_postgres::config::SslMode::Disable
    } else {
        tls.mode.negotiation()
    });
    let connector = tls
        .connector()
        .with_context(|| format!("PostgreSQL URL {url}"))?;
    // A server that accepts the TCP connection and then says nothing (stopped, overloaded, a
    // half-open firewall) would otherwise hold the push for ever.
    let (client, conn) = tokio::time::timeout(CONNECT_TIMEOUT, cfg.connect(connector))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "connecting to PostgreSQL at {url}: no answer in {}s; is the server up and reachable?",
                CONNECT_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| explain(url, &tls, e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

/// A connection error with what the user can do about it. A certificate that fails verification
/// and a server that refuses plaintext are configuration errors (exit 2).
fn explain(url: &str, tls: &TlsSettings, e: tokio_postgres::Error) -> anyhow::Error {
    let rejected = std::iter::successors(std::error::Error::source(&e), |s| s.source())
        .find_map(|s| s.downcast_ref::<CertificateRejected>());
    if let Some(r) = rejected {
        use rustls::CertificateError as C;
        let hint = match &r.0 {
            rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                "the certificate does not name the host of the URL: connect by a name it carries (or use sslmode=verify-ca, which checks only the chain)"
            }
            rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
                "sslrootcert does not hold the CA that signed the server's certificate"
            }
            rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. }) => {
                "the certificate is outside its validity period (or this machine's clock is wrong)"
            }
            _ => "check sslrootcert and the server's certificate",
        };
        return usage(format!(
            "connecting to PostgreSQL at {url}: the server's TLS certificate failed verification ({}): {}; {hint}",
            tls.describe(),
            r.0,
        ));
    }
    if let Some(db) = e.as_db_error() {
        if tls.mode == SslMode::Disable && db.message().contains("no encryption") {
            return usage(format!(
                "connecting to PostgreSQL at {url}: the server refuses unencrypted connections ({}); remove sslmode=disable, production should use sslmode=verify-full with sslrootcert",
                db.message()
            ));
        }
    }
    anyhow::Error::new(e).context(format!(
        "connecting to PostgreSQL at {url} ({})",
        tls.describe()
    ))
}

/// Connects once to find configuration errors (TLS settings, certificates) before any work
/// starts: those fail here, as usage errors. Anything else (a server that is down) is left to the
/// step that needs the server, which reports it in its own way.
pub async fn check_config(url: &str, password: Option<&Secret>) -> Result<()> {
    match connect(url, password, None).await {
        Ok(_) => Ok(()),
        Err(e) if crate::error::is_usage(&e) => Err(e),
        Err(e) => {
            tracing::debug!("pre-flight connection to {url}: {e:#}");
            Ok(())
        }
    }
}

/// The URL with its database set (for pg_dump/psql's --dbname). The query, with the TLS
/// parameters, stays: libpq reads them.
pub fn url_with_db(url: &str, db: &str) -> Result<String> {
    let mut u = url::Url::parse(url).with_context(|| format!("invalid URL {url}"))?;
    u.set_path(&format!(
        "/{}",
        percent_encoding::utf8_percent_encode(db, percent_encoding::NON_ALPHANUMERIC)
    ));
    Ok(u.to_string())
}

/// A libpq client (`pg_dump`, `psql`) connected to `db`: `--dbname=<URL>` (TLS parameters and
/// all) and the password in its environment, never in argv.
pub fn client_command(
    program: &str,
    url: &str,
    password: Option<&Secret>,
    db: &str,
) -> Result<Command> {
    let mut cmd = Command::new(program);
    cmd.arg(format!("--dbname={}", url_with_db(url, db)?));
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p.expose());
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_offsite_s_and_stay_in_the_url_for_libpq() {
        let url = "postgres://u@db.example:5433/shop?sslmode=disable&application_name=x&sslrootcert=%2Ftmp%2Fca.pem";
        let (cfg, tls) = parse(url).unwrap();
        assert_eq!(cfg.get_application_name(), Some("x"));
        assert_eq!(cfg.get_dbname(), Some("shop"));
        assert_eq!(tls.mode, SslMode::Disable);
        let with_db = url_with_db(url, "other db").unwrap();
        assert_eq!(
            with_db,
            "postgres://u@db.example:5433/other%20db?sslmode=disable&application_name=x&sslrootcert=%2Ftmp%2Fca.pem"
        );
        // What tokio-postgres would reject (verify-full, sslrootcert) is not given to it.
        let err = parse("postgres://u@h/?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .unwrap_err();
        assert!(crate::error::is_usage(&err), "{err:#}");
        assert!(
            format!("{err:#}").contains("/nonexistent/ca.pem"),
            "{err:#}"
        );
    }

    #[test]
    fn clients_get_the_password_in_the_environment() {
        let pw = Secret::new("s3cret");
        let cmd =
            client_command("psql", "postgres://u@h/?sslmode=require", Some(&pw), "d").unwrap();
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["--dbname=postgres://u@h/d?sslmode=require"]);
        assert!(cmd
            .get_envs()
            .any(|(k, v)| k == "PGPASSWORD" && v == Some("s3cret".as_ref())));
    }
}
