use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Result;

use super::Cli;

#[derive(clap::Args)]
pub struct Args {
    /// Key name: `office`, or the production host's name. Becomes NAME.secret.asc / NAME.cert.asc.
    pub name: String,
    /// Directory to write the two files into (created if missing; existing files are never replaced).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Make the key expire this long from now (`30d`, `8w`, `13M`, `2y`; M = 30 days, y = 365 days).
    /// Default: it never expires. config check, push and the office report warn 30 days before;
    /// push refuses an expired key (README: Rotating keys).
    #[arg(long, value_name = "DURATION", value_parser = parse_expires)]
    pub expires: Option<Duration>,
}

fn parse_expires(s: &str) -> Result<Duration, String> {
    offsite::config::duration::parse_duration(s).map_err(|e| format!("{e:#}"))
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let files =
        offsite::crypto::keys::generate_with(&a.name, &a.out, SystemTime::now(), a.expires)?;
    let expires = files.expires.map(offsite::crypto::expiry::date);
    if cli.json {
        println!(
            "{}",
            serde_json::json!({
                "secret": files.secret, "cert": files.cert, "fingerprint": files.fingerprint,
                "expires": expires,
            })
        );
    } else {
        println!(
            "secret key:  {} (mode 0600: keep it where it belongs)",
            files.secret.display()
        );
        println!("certificate: {}", files.cert.display());
        println!("fingerprint: {}", files.fingerprint);
        println!("expires:     {}", expires.as_deref().unwrap_or("never"));
    }
    Ok(ExitCode::SUCCESS)
}
