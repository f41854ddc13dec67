//! Help that teaches: an `Examples:` block in every subcommand's `--help`, shell completions and
//! man pages, all generated from the one command definition the parser uses ([`command`]).
//!
//! The examples live here in one table rather than beside each command's flags, so that one test
//! can walk clap's command tree and find a subcommand that has none (see the tests below and
//! `tests/it/help.rs`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::Cli;

/// Real invocations for each subcommand, by its path below `offsite` (`"config check"`).
const EXAMPLES: &[(&str, &str)] = &[
    (
        "keygen",
        "offsite keygen office --out /etc/offsite/keys
offsite keygen web1 --out /etc/offsite/keys",
    ),
    ("config", "offsite -c /etc/offsite/config.yaml config check"),
    (
        "config check",
        "offsite -c /etc/offsite/config.yaml config check
offsite config check --json",
    ),
    (
        "audit",
        "offsite -c /etc/offsite/config.yaml audit
offsite audit --json",
    ),
    (
        "push",
        "offsite -c /etc/offsite/config.yaml push --quiet
offsite push --full --wait",
    ),
    (
        "snapshots",
        "offsite snapshots --host web1
offsite snapshots --store /srv/offsite --key office.secret.asc --signer web1.cert.asc
offsite snapshots --all --json",
    ),
    (
        "restore",
        "offsite restore --host web1 --db postgres/shop --into shop_restored
offsite restore --host web1 --at 2026-11-23T02:00:00Z --db mysql/crm --stdout > crm.sql
offsite restore --host web1 --db postgres/shop --into shop_dev --replace --mask
offsite restore --host web1 --tree www --to /tmp/www --path etc/nginx.conf",
    ),
    (
        "pull",
        "offsite pull
offsite pull --host web1",
    ),
    (
        "verify",
        "offsite verify
offsite verify --host web1 --keep-scratch
offsite verify 20261123T021500Z-1a2b --host web1 --from-s3
offsite verify --scrub",
    ),
    (
        "report",
        "offsite report
offsite report --host web1 --out /var/www/offsite",
    ),
    (
        "prune",
        "offsite prune --dry-run
offsite prune --host web1
offsite prune --quarantined --host web1 --yes",
    ),
    (
        "refresh",
        "offsite refresh
offsite refresh --only shop_dev",
    ),
    (
        "status",
        "offsite status
offsite status --host web1 --json",
    ),
    (
        "office",
        "offsite -c /etc/offsite/config.yaml office
offsite office --host web1
offsite office --no-prune --no-refresh",
    ),
    (
        "accept",
        "offsite accept 20261123T021500Z-1a2b --host web1 --yes",
    ),
    (
        "mask",
        "pg_dump shop | offsite mask --engine postgres --database shop | psql shop_dev
mariadb-dump crm | offsite mask --engine mysql --database crm > crm_masked.sql",
    ),
    ("masking", "offsite masking check"),
    (
        "masking check",
        "offsite masking check
offsite masking check --only shop_dev --all",
    ),
    (
        "completions",
        "offsite completions bash > /etc/bash_completion.d/offsite
offsite completions zsh > \"${fpath[1]}/_offsite\"
offsite completions fish > ~/.config/fish/completions/offsite.fish",
    ),
    (
        "man",
        "offsite man | man -l -
offsite man --dir /usr/local/share/man/man1",
    ),
];

/// The examples of the subcommand at `path` (`"config check"`), if it has any.
pub fn examples(path: &str) -> Option<&'static str> {
    EXAMPLES.iter().find(|(p, _)| *p == path).map(|(_, e)| *e)
}

/// The full command definition: the derived one, with every subcommand's examples appended to its
/// after-help. Parsing, completions and man pages all use this.
pub fn command() -> clap::Command {
    with_examples(Cli::command(), "")
}

fn with_examples(mut cmd: clap::Command, path: &str) -> clap::Command {
    if let Some(ex) = examples(path) {
        let indented: Vec<String> = ex.lines().map(|l| format!("  {l}")).collect();
        let block = format!("Examples:\n{}", indented.join("\n"));
        let after = match cmd.get_after_help() {
            Some(text) => format!("{text}\n\n{block}"),
            None => block,
        };
        cmd = cmd.after_help(after);
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        let sub_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path} {name}")
        };
        cmd = cmd.mut_subcommand(&name, |s| with_examples(s, &sub_path));
    }
    cmd
}

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Write offsite.1 and one page per subcommand (offsite-push.1, ...) into DIR, instead of
    /// printing offsite(1) to stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `offsite completions SHELL`: the completion script on stdout. Needs no config.
pub fn completions(a: &CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "offsite", &mut out);
    write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// `offsite man [--dir DIR]`: offsite(1) on stdout, or every page into DIR. Needs no config.
pub fn man(a: &ManArgs) -> Result<ExitCode> {
    let mut cmd = command().disable_help_subcommand(true);
    cmd.build();
    match &a.dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .context("rendering the man page")?;
            write_stdout(&out)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the man page folder {}", dir.display()))?;
            let mut written = Vec::new();
            write_pages(&cmd, dir, &mut written)?;
            for p in written {
                println!("{}", p.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One page for `cmd` and one for each of its subcommands, below it first.
fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)
        .with_context(|| format!("rendering {}", path.display()))?;
    std::fs::write(&path, page).with_context(|| {
        format!(
            "writing {} (is the folder writable by this user?)",
            path.display()
        )
    })?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}

fn write_stdout(data: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(data).and_then(|()| out.flush()) {
        // `offsite man | head` closes the pipe early: nothing went wrong.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand, at every depth, by its path below `offsite`.
    fn paths(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for s in cmd.get_subcommands() {
            let p = if prefix.is_empty() {
                s.get_name().to_string()
            } else {
                format!("{prefix} {}", s.get_name())
            };
            paths(s, &p, out);
            out.push(p);
        }
    }

    #[test]
    fn every_subcommand_has_examples_that_parse() {
        let mut all = Vec::new();
        paths(&Cli::command(), "", &mut all);
        assert!(all.len() > 15, "{all:?}");
        for p in &all {
            let ex = examples(p).unwrap_or_else(|| panic!("`offsite {p}` has no examples"));
            // Each example runs the command it documents, with flags it has: the parser accepts it.
            let mut own = 0;
            for line in ex.lines() {
                let Some(at) = line.find("offsite ") else {
                    panic!("{p}: {line:?} does not run offsite");
                };
                let words: Vec<String> = line[at..]
                    .split(" |")
                    .next()
                    .unwrap_or_default()
                    .split(" >")
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                let parsed = command().try_get_matches_from(&words);
                if let Err(e) = &parsed {
                    if e.kind() != clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                    {
                        panic!("{p}: {line:?} does not parse: {e}");
                    }
                }
                if words.join(" ").contains(&format!("offsite {p}"))
                    || words
                        .windows(p.split(' ').count())
                        .any(|w| w.join(" ") == *p)
                {
                    own += 1;
                }
            }
            assert!(own > 0, "no example of {p} runs `{p}`: {ex}");
        }
        // No example for a command that does not exist.
        for (p, _) in EXAMPLES {
            assert!(all.contains(&p.to_string()), "examples for unknown {p}");
        }
    }

    #[test]
    fn help_shows_the_examples() {
        let mut cmd = command();
        let sub = cmd.find_subcommand_mut("push").expect("push");
        let help = sub.render_long_help().to_string();
        assert!(help.contains("Examples:\n  offsite -c"), "{help}");
    }
}
