use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::Cli;
use offsite::error::usage;
use offsite::snapshot::manifest::Engine;

#[derive(clap::Args)]
#[command(after_help = "\
Reads a plain dump on stdin and writes it to stdout with the rows of the tables that
office.masking.tables names for ENGINE/DATABASE masked, the same way refresh's `mask: true` does
(same secret, same output). Everything else passes unchanged; memory stays flat.

Examples:
  pg_dump shop | offsite mask --engine postgres --database shop | psql shop_dev
  mariadb-dump crm | offsite mask --engine mysql --database crm | mariadb crm_dev

Exit codes:
  0  the whole dump was written
  1  the dump could not be masked (a rule names a column the dump does not have, a malformed row)
  2  usage or config error (no office.masking, no rules for this database)")]
pub struct Args {
    /// The dump's format: postgres (plain pg_dump) or mysql (mariadb-dump, mysqldump).
    #[arg(long, value_parser = ["postgres", "mysql"])]
    pub engine: String,
    /// The database the dump is of: rules are keyed ENGINE/DATABASE:TABLE.
    #[arg(long)]
    pub database: String,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let cfg = cli.load_config()?;
    let masking = cfg
        .office
        .as_ref()
        .and_then(|o| o.masking.clone())
        .ok_or_else(|| {
            usage("offsite mask needs office.masking in the config (its secret and rules)")
        })?;
    let source = format!("{}/{}", a.engine, a.database);
    let mask = masking.for_source(&source)?.ok_or_else(|| {
        usage(format!(
            "office.masking.tables has no rules for {source} (keys like \"{source}:TABLE\")"
        ))
    })?;
    let engine = if a.engine == "postgres" {
        Engine::Postgres
    } else {
        Engine::Mysql
    };
    let mut reader = offsite::mask::stream(engine, Box::new(std::io::stdin()), mask);
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut reader, &mut out).with_context(|| format!("masking {source}"))?;
    out.flush().context("writing the masked dump")?;
    Ok(ExitCode::SUCCESS)
}
