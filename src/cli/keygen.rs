use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::Cli;

#[derive(clap::Args)]
pub struct Args {
    /// Key name: `office`, or the production host's name. Becomes NAME.secret.asc / NAME.cert.asc.
    pub name: String,
    /// Directory to write the two files into (created if missing; existing files are never replaced).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let files = offsite::crypto::keys::generate(&a.name, &a.out)?;
    if cli.json {
        println!(
            "{}",
            serde_json::json!({
                "secret": files.secret, "cert": files.cert, "fingerprint": files.fingerprint,
            })
        );
    } else {
        println!(
            "secret key:  {} (mode 0600: keep it where it belongs)",
            files.secret.display()
        );
        println!("certificate: {}", files.cert.display());
        println!("fingerprint: {}", files.fingerprint);
    }
    Ok(ExitCode::SUCCESS)
}
