//! Telling people: a JSON POST to a webhook and/or a command given the report's path.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::config::Notify;

/// Sends `summary` to the webhook and runs the command. Both are attempted; the first error is returned.
pub fn notify(cfg: &Notify, summary: &serde_json::Value, report_json: &Path) -> Result<()> {
    let mut first_err = None;
    if let Some(url) = &cfg.webhook {
        if let Err(e) = post(url, summary) {
            tracing::error!("{e:#}");
            first_err.get_or_insert(e);
        }
    }
    if let Some(cmd) = &cfg.command {
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{cmd} \"$1\""))
            .arg("offsite-notify")
            .arg(report_json)
            .stdin(std::process::Stdio::null());
        // Registered, so that SIGINT/SIGTERM stops it too.
        let status = crate::interrupt::spawn("the notify command", &mut command)
            .and_then(|mut child| crate::interrupt::wait(&mut child))
            .with_context(|| format!("running the notify command {cmd:?}"));
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                let e = anyhow!("the notify command {cmd:?} failed ({s})");
                tracing::error!("{e}");
                first_err.get_or_insert(e);
            }
            Err(e) => {
                tracing::error!("{e:#}");
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn post(url: &str, body: &serde_json::Value) -> Result<()> {
    // One TLS stack for the whole binary: the AWS SDK's aws-lc-rs. Installing it twice is harmless.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    // The URL may carry a token: name only its scheme and host in errors.
    let shown = crate::ping::redacted(url);
    agent
        .post(url)
        .send_json(body)
        .map_err(|e| anyhow!("notifying {shown}: {e}"))?;
    Ok(())
}
