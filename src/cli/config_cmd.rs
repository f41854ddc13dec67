use std::process::ExitCode;

use anyhow::Result;

use super::Cli;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate the config and print the resolved version (secrets shown as ***).
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
            Ok(ExitCode::SUCCESS)
        }
    }
}
