//! Snapshot ids sort by time: `20261123T020000Z-1a2b`. The random suffix keeps two runs started in the
//! same second from ever writing to the same keys.

use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, Result};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId(String);

impl SnapshotId {
    pub fn new(at: OffsetDateTime) -> Self {
        let at = at.to_offset(time::UtcOffset::UTC);
        let stamp = at
            .format(FORMAT)
            .unwrap_or_else(|_| "19700101T000000Z".into());
        // The suffix sorts by the millisecond within the second (its top 10 bits), so two runs in
        // the same second still sort by time and `latest` is the newer one; the low 6 bits are
        // random, and a clash in the same millisecond is refused by the store (keys are never
        // overwritten).
        let ms = at.millisecond().min(999);
        let suffix = (ms << 6) | (rand::random::<u16>() & 0x3f);
        Self(format!("{stamp}-{suffix:04x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The time encoded in the id.
    pub fn time(&self) -> Result<OffsetDateTime> {
        let stamp = self.0.split('-').next().unwrap_or_default();
        let t = PrimitiveDateTime::parse(stamp, FORMAT)
            .map_err(|e| anyhow!("snapshot id {:?} has no valid time: {e}", self.0))?;
        Ok(t.assume_utc())
    }
}

impl FromStr for SnapshotId {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let ok = s.len() == 21
            && s.as_bytes()[16] == b'-'
            && s[17..].chars().all(|c| c.is_ascii_hexdigit())
            && PrimitiveDateTime::parse(&s[..16], FORMAT).is_ok();
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(anyhow!(
                "{s:?} is not a snapshot id (expected e.g. 20261123T020000Z-1a2b)"
            ))
        }
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let a = SnapshotId::new(time::macros::datetime!(2026-11-23 02:00:00 UTC));
        let b = SnapshotId::new(time::macros::datetime!(2026-11-24 01:00:00 UTC));
        assert!(a.as_str().starts_with("20261123T020000Z-"));
        assert!(a < b);
        let parsed: SnapshotId = a.as_str().parse().unwrap();
        assert_eq!(parsed, a);
        assert_eq!(
            parsed.time().unwrap(),
            time::macros::datetime!(2026-11-23 02:00:00 UTC)
        );
        let early = SnapshotId::new(time::macros::datetime!(2026-11-23 02:00:00.001 UTC));
        let late = SnapshotId::new(time::macros::datetime!(2026-11-23 02:00:00.999 UTC));
        assert!(
            early < late,
            "{early} < {late}: the same second sorts by millisecond"
        );
        assert!("latest".parse::<SnapshotId>().is_err());
        assert!("20261123T020000Z-zzzz".parse::<SnapshotId>().is_err());
    }
}
