use std::process::ExitCode;

use anyhow::Result;

use super::Cli;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate the config and print the resolved version (secrets shown as ***). Warns on stderr
    /// about every key it names that expired or expires within 30 days.
    Check,
}

pub fn run(cli: &Cli, c: &Command) -> Result<ExitCode> {
    match c {
        Command::Check => {
            let cfg = cli.load_config()?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&cfg)?);
            } else {
                println!("# {}: OK", cfg.path.display());
                print!("{}", serde_norway::to_string(&cfg)?);
            }
            // Keys that expire soon are worth knowing now; the config itself is fine (exit 0).
            for w in offsite::keyring::expiry_warnings(&cfg) {
                eprintln!("warning: {w}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
