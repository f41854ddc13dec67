use std::process::ExitCode;

use anyhow::Result;

use super::Cli;
use offsite::office::context::Office;
use offsite::office::refresh::coverage;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List the columns of what each refresh entry would restore that look like personal data
    /// (email, phone, name, address, birth date, national id, bank account, card, ip, secrets),
    /// and the rule of office.masking that covers each.
    #[command(after_help = "\
Reads the dump of the newest verified snapshot of each office.refresh entry (nothing is restored)
and matches every column's name (and type, where the dump gives it) against words that personal
data goes by. A column a rule covers shows its transformer; `keep` is how a rule says \"looked at,
not personal\". With office.masking.strict, a refresh with `mask: true` refuses (exit 2, the dev
database untouched) while such a column is uncovered: run this after production's schema changes.

Exit codes:
  0  every personal-looking column is covered by a rule
  1  one is not, or an entry could not be checked
  2  usage or config error")]
    Check {
        /// Only the entry whose target database is DATABASE.
        #[arg(long, value_name = "DATABASE")]
        only: Option<String>,
        /// Every column, not only those that look personal.
        #[arg(long)]
        all: bool,
    },
}

pub fn run(cli: &Cli, command: &Command) -> Result<ExitCode> {
    let Command::Check { only, all } = command;
    let office = Office::load(cli.load_config()?)?;
    let reports = coverage(&office, only.as_deref(), super::now()?);
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            println!(
                "{}:{} -> {} (snapshot {})",
                r.host,
                r.source,
                r.database,
                r.snapshot.as_deref().unwrap_or("-")
            );
            if let Some(e) = &r.error {
                println!("  not checked: {e}");
            }
            for c in r.columns.iter().filter(|c| *all || c.looks_like.is_some()) {
                println!(
                    "  {:<40} {:<14} {}",
                    format!("{}.{}", c.table, c.column),
                    c.looks_like.unwrap_or("-"),
                    match &c.rule {
                        Some(rule) => format!("covered: {rule}"),
                        None if c.looks_like.is_some() => "UNCOVERED".to_string(),
                        None => "-".to_string(),
                    }
                );
            }
        }
    }
    let bad = reports
        .iter()
        .any(|r| r.error.is_some() || r.uncovered().next().is_some());
    Ok(if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
