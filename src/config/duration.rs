//! Durations written the way people write them: `26h`, `14d`, `2w`, `30m`, `90s`, and duplicity's
//! capital forms `3D`, `2W`, `1M` (month = 30 days), `1Y` (year = 365 days). Lower-case `m` is minutes.

use std::time::Duration;

use anyhow::{anyhow, Result};

pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("{s:?} is not a duration (e.g. 26h, 14d, 2w)"))?;
    let secs: u64 = match unit.trim() {
        "s" | "S" => 1,
        "m" | "min" => 60,
        "h" | "H" => 3600,
        "d" | "D" => 86_400,
        "w" | "W" => 7 * 86_400,
        "M" => 30 * 86_400,
        "y" | "Y" => 365 * 86_400,
        "" => return Err(anyhow!("{s:?} needs a unit: s, m, h, d, w, M, y")),
        other => {
            return Err(anyhow!(
                "{s:?}: unknown duration unit {other:?} (use s, m, h, d, w, M, y)"
            ))
        }
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| anyhow!("{s:?} is too long"))
}

/// `26h`, `3d 4h`: for messages.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        _ if s % 86_400 == 0 => format!("{}d", s / 86_400),
        172_800.. => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
        _ if s % 3600 == 0 || s >= 7200 => format!("{}h", s / 3600),
        _ => format!("{}m", s / 60),
    }
}

/// Serializes a duration the way the config writes it (`30d`, `26h`), for `config check`.
pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&human_duration(*d))
}

pub fn serialize_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => serialize(d, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("26h").unwrap(),
            Duration::from_secs(26 * 3600)
        );
        assert_eq!(
            parse_duration("3D").unwrap(),
            Duration::from_secs(3 * 86_400)
        );
        assert_eq!(
            parse_duration("2W").unwrap(),
            Duration::from_secs(14 * 86_400)
        );
        assert_eq!(
            parse_duration("1M").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert!(parse_duration("12").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(human_duration(Duration::from_secs(26 * 3600)), "26h");
        assert_eq!(human_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(human_duration(Duration::from_secs(1800)), "30m");
        assert_eq!(human_duration(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(human_duration(Duration::from_secs(50 * 3600)), "2d 2h");
    }
}
