//! Pings in the healthchecks.io way (`notify.ping` for push, `office.notify.ping` for the office):
//! `URL/start` when a run starts, `URL` when it succeeds, `URL/fail` when it fails, the last two
//! with the end of the run's log as their body. A monitor that hears nothing by the expected time
//! alerts, so a run that never happened is noticed too.
//!
//! A ping is news about the backup, never part of it: one that fails (the monitor down, 10 s
//! without an answer) is a warning in the log, and the run goes on with its own exit code.

use std::time::Duration;

use anyhow::{anyhow, Result};

/// How long one ping may take, connecting included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The body's size limit: the log tail, and the run's closing lines.
const MAX_BODY: usize = 16 * 1024;

/// The pings of one run; does nothing without a URL.
pub struct Ping {
    url: Option<String>,
    /// The config key it came from, for the warning.
    key: &'static str,
}

impl Ping {
    pub fn new(url: Option<&str>, key: &'static str) -> Self {
        Self {
            url: url.map(str::to_string),
            key,
        }
    }

    /// `URL/start`: the run began (the monitor then also measures how long it takes).
    pub fn start(&self) {
        self.send("/start", "");
    }

    /// `URL` or `URL/fail`, with `body` (the log's tail and the outcome).
    pub fn finish(&self, ok: bool, body: &str) {
        self.send(if ok { "" } else { "/fail" }, body);
    }

    fn send(&self, suffix: &str, body: &str) {
        let Some(url) = &self.url else {
            return;
        };
        if let Err(e) = post(url, self.key, suffix, body) {
            tracing::warn!("{e:#}; the run goes on");
        }
    }
}

/// The URL with `suffix` added to its path (a query string stays at the end).
fn with_suffix(url: &str, suffix: &str) -> Result<String> {
    let mut u = url::Url::parse(url).map_err(|e| anyhow!("{}: {e}", redacted(url)))?;
    if !suffix.is_empty() {
        let path = format!("{}{suffix}", u.path().trim_end_matches('/'));
        u.set_path(&path);
    }
    Ok(u.into())
}

fn post(url: &str, key: &str, suffix: &str, body: &str) -> Result<()> {
    let target = with_suffix(url, suffix)?;
    let what = format!(
        "ping {}{suffix} ({key}) failed",
        redacted(url).trim_end_matches("/***")
    );
    // One TLS stack for the whole binary: the AWS SDK's aws-lc-rs. Installing it twice is harmless.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    let mut body = body.to_string();
    if body.len() > MAX_BODY {
        let mut cut = body.len() - MAX_BODY;
        while !body.is_char_boundary(cut) {
            cut += 1;
        }
        body.drain(..cut);
    }
    agent
        .post(&target)
        .header("Content-Type", "text/plain; charset=utf-8")
        .send(body.as_bytes())
        .map_err(|e| anyhow!("{what}: {}", scrub(&e.to_string(), url)))?;
    Ok(())
}

/// A URL as logs and `config check` may show it: scheme and host, the rest (which may carry a
/// token) replaced by `***`.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}/***",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "the ping URL".into(),
    }
}

/// An error message without the URL in it, should the HTTP client quote it.
fn scrub(msg: &str, url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.path().len() > 1 => msg.replace(u.path().trim_start_matches('/'), "***"),
        _ => msg.to_string(),
    }
}

/// Checks a ping URL at config time: http or https, with a host.
pub fn check_url(what: &str, url: &str) -> Result<()> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        Ok(_) => Err(crate::error::usage(format!(
            "{what}: {} is not an http(s) URL",
            redacted(url)
        ))),
        Err(e) => Err(crate::error::usage(format!("{what}: not a URL ({e})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_go_on_the_path_and_the_token_is_never_shown() {
        let u = "https://hc.example/ping/abc-token?rid=1";
        assert_eq!(
            with_suffix(u, "/fail").unwrap(),
            "https://hc.example/ping/abc-token/fail?rid=1"
        );
        assert_eq!(
            with_suffix("http://h:8/x/", "/start").unwrap(),
            "http://h:8/x/start"
        );
        assert_eq!(redacted(u), "https://hc.example/***");
        assert!(!scrub("error at /ping/abc-token/fail", u).contains("abc-token"));
        assert!(check_url("notify.ping", "ftp://h/x").is_err());
        assert!(check_url("notify.ping", "https://h/x").is_ok());
    }
}
