use std::process::ExitCode;

use anyhow::Result;

use super::Cli;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_cli: &Cli, _a: &Args) -> Result<ExitCode> {
    Err(anyhow::anyhow!("offsite prune is not implemented yet"))
}
