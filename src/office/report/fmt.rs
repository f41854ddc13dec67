//! Numbers and times as people read them, shared by the Markdown and HTML renderers. Every function
//! takes whatever a record may hold (negative, huge, unparsable) and still returns text.

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use crate::config::{human, human_duration};

/// `1,234,567`
pub fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `+1,234` / `−56` / `0`
pub fn signed_rows(d: i64) -> String {
    format!("{}{}", sign(d), grouped(d.unsigned_abs()))
}

/// `+1.5 MiB` / `−200 B`
pub fn signed_bytes(d: i64) -> String {
    format!("{}{}", sign(d), human(d.unsigned_abs()))
}

fn sign(d: i64) -> &'static str {
    match d {
        0 => "",
        d if d > 0 => "+",
        _ => "\u{2212}",
    }
}

/// `−42.0%`; `n/a` when there is nothing to compare with.
pub fn pct(p: Option<f64>) -> String {
    match p {
        Some(p) if p.is_finite() => {
            let s = if p > 0.0 {
                "+"
            } else if p < 0.0 {
                "\u{2212}"
            } else {
                ""
            };
            format!("{s}{:.1}%", p.abs())
        }
        _ => "n/a".into(),
    }
}

/// `0.4s`, `12s`, `5m`, `3h`, `2d 4h`: sub-minute values keep a decimal, restores are often that fast.
pub fn human_secs(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "?".into();
    }
    if s < 10.0 {
        return format!("{s:.1}s");
    }
    Duration::try_from_secs_f64(s).map_or_else(|_| "?".into(), human_duration)
}

/// `2026-11-23 02:15 UTC`, or the text as given when it is not RFC 3339.
pub fn short_time(rfc3339: &str) -> String {
    match OffsetDateTime::parse(rfc3339, &Rfc3339) {
        Ok(t) => t
            .to_offset(UtcOffset::UTC)
            .format(format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .unwrap_or_else(|_| rfc3339.to_string()),
        Err(_) => rfc3339.to_string(),
    }
}

/// `11-23 02:15`, for chart labels where space is short.
pub fn tiny_time(rfc3339: &str) -> String {
    match OffsetDateTime::parse(rfc3339, &Rfc3339) {
        Ok(t) => t
            .to_offset(UtcOffset::UTC)
            .format(format_description!("[month]-[day] [hour]:[minute]"))
            .unwrap_or_else(|_| rfc3339.to_string()),
        Err(_) => rfc3339.to_string(),
    }
}

/// `1 day`, `30 days`.
pub fn days(n: u32) -> String {
    if n == 1 {
        "1 day".into()
    } else {
        format!("{n} days")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(signed_rows(-1500), "\u{2212}1,500");
        assert_eq!(signed_rows(i64::MIN), "\u{2212}9,223,372,036,854,775,808");
        assert_eq!(pct(Some(-42.04)), "\u{2212}42.0%");
        assert_eq!(pct(None), "n/a");
        assert_eq!(human_secs(0.42), "0.4s");
        assert_eq!(human_secs(-1.0), "?");
        assert_eq!(human_secs(f64::INFINITY), "?");
        assert_eq!(human_secs(1e300), "?");
        assert_eq!(human_secs(90_000.0), "25h");
        assert_eq!(short_time("2026-11-23T02:15:00Z"), "2026-11-23 02:15 UTC");
        assert_eq!(
            short_time("2026-11-23T03:15:00+01:00"),
            "2026-11-23 02:15 UTC"
        );
        assert_eq!(short_time("yesterday"), "yesterday");
    }
}
