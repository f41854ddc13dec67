//! The `offsite` binary: parse, set up logging, run, map errors to exit codes.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "info,offsite=debug",
        (false, _) => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OFFSITE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        // stderr, and a copy of the last lines for the pings (notify.ping).
        .with_writer(offsite::logtail::Tee)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let result = cli::run(cli);
    if let Some(sig) = offsite::interrupt::received() {
        return interrupted(sig, result);
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(if offsite::error::is_usage(&e) {
                cli::EXIT_USAGE
            } else {
                cli::EXIT_FAILED
            })
        }
    }
}

/// The end of a run that SIGINT or SIGTERM stopped ([`offsite::interrupt`]): the last-resort
/// clean-ups run, and the command's error becomes one line and exit code 130 or 143. A command
/// that finished its work although the signal came (it arrived while a commit was under way)
/// keeps its own exit code.
fn interrupted(sig: offsite::interrupt::Signal, result: anyhow::Result<ExitCode>) -> ExitCode {
    let left = offsite::interrupt::leftovers(true);
    let left = if left.is_empty() {
        String::new()
    } else {
        format!("; left behind: {}", left.join("; "))
    };
    match result {
        Ok(code) => {
            if !left.is_empty() {
                eprintln!("warning: {sig} arrived after the work was done{left}");
            }
            code
        }
        Err(e) => {
            let msg = format!("{e:#}");
            if msg.contains(&format!("interrupted by {sig}")) {
                eprintln!("error: {msg}{left}");
            } else {
                eprintln!("error: interrupted by {sig}: {msg}{left}");
            }
            ExitCode::from(sig.exit_code())
        }
    }
}
