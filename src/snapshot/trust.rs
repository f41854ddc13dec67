//! Trusted time: what the office believes about *when* a snapshot was made.
//!
//! Everything production writes is hostile input once the host is hacked, and that includes the
//! time in a snapshot's id and the manifest's `started_at`/`finished_at`: a host that still holds
//! its signing key can seal a copy of a real snapshot under an id dated next year, and a retention
//! policy that believed it would keep the forgery as "newest" and delete real history. So the
//! office orders and ages snapshots by the **store's own time** of the manifest (S3
//! `LastModified`, a local store's mtime): the moment the store received the commit, which the push
//! credential cannot choose. pull records that time the first time it sees a snapshot (the
//! office's ledger), so the offsite copy keeps it after the store's copy is gone.
//!
//! The claim still matters as evidence: a snapshot whose claimed time does not fit its trusted
//! time is **quarantined**. It is reported, never `latest`, never counted by retention, never the
//! reason to delete anything, and kept until a person deletes it.

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};

use super::list::SnapshotInfo;
use super::SnapshotId;

/// A push takes time: its id is its start, the store's time its commit. A claimed start longer
/// than this before the commit is not a slow push but a claim to look at.
pub const MAX_PUSH_DURATION: Duration = Duration::days(7);

/// Whose listing is being judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The store production writes to: the manifest's store time is the commit time.
    Source,
    /// The office's offsite copy: its files' times are when pull wrote them, so without a ledger
    /// entry they only bound the commit from above.
    Copy,
}

/// What the office recorded when it first saw a snapshot (its ledger).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub time: OffsetDateTime,
    pub quarantine: Option<String>,
    /// The manifest opened with the host's certificate and described itself.
    pub valid: bool,
}

/// Assesses listed snapshots: their trusted time, and whether they are quarantined.
pub struct Judge {
    pub origin: Origin,
    /// `office.clock_tolerance`: how far a claim may be from the store's time.
    pub tolerance: Duration,
    /// Per (host, id): what the ledger says. Wins over the listing.
    pub known: BTreeMap<(String, String), Known>,
    /// Only what the ledger knows as validly signed may count (retention): a complete snapshot
    /// pull has not checked yet is marked `unchecked`, so nobody with put access can slip
    /// snapshots between a pull and a prune and have retention count them.
    pub require_known: bool,
}

/// The time a snapshot's id claims.
pub fn claimed(id: &str) -> Option<OffsetDateTime> {
    id.parse::<SnapshotId>().ok().and_then(|i| i.time().ok())
}

/// Why a claimed start time does not fit the time the store received the commit, if it does not.
pub fn misfit(
    claimed: OffsetDateTime,
    committed: OffsetDateTime,
    tolerance: Duration,
) -> Option<String> {
    if claimed > committed + tolerance {
        Some(format!(
            "its id claims {}, {} after the store received its manifest ({}): forged, or the host's clock was ahead",
            fmt(claimed),
            human(claimed - committed),
            fmt(committed)
        ))
    } else if claimed < committed - MAX_PUSH_DURATION - tolerance {
        Some(format!(
            "its id claims {}, {} before the store received its manifest ({}): no push runs that long; forged, or the host's clock was behind",
            fmt(claimed),
            human(committed - claimed),
            fmt(committed)
        ))
    } else {
        None
    }
}

impl Judge {
    /// A judge that knows nothing recorded: trusts the listing alone.
    pub fn bare(origin: Origin, tolerance: Duration) -> Self {
        Self {
            origin,
            tolerance,
            known: BTreeMap::new(),
            require_known: false,
        }
    }

    /// Fills `trusted` and `quarantine` of every snapshot.
    pub fn assess(&self, snaps: &mut [SnapshotInfo]) {
        for s in snaps {
            let (trusted, quarantine) = self.judge(s);
            s.trusted = trusted;
            s.quarantine = quarantine;
            s.unchecked = self.require_known
                && s.complete
                && !self.known.contains_key(&(s.host.clone(), s.id.clone()));
        }
    }

    fn judge(&self, s: &SnapshotInfo) -> (Option<OffsetDateTime>, Option<String>) {
        if !s.complete {
            // A push still writing, or one that died: how long ago the store last heard of it.
            return (s.last_write, None);
        }
        if let Some(k) = self.known.get(&(s.host.clone(), s.id.clone())) {
            // Not the host's: counted by nothing, kept until a person deletes it, like a
            // quarantined one (`snapshots` says INVALID).
            let invalid = (!k.valid).then(|| {
                "its manifest is not validly signed by the host's certificate (see offsite snapshots)"
                    .to_string()
            });
            return (Some(k.time), k.quarantine.clone().or(invalid));
        }
        let Some(claimed) = claimed(&s.id) else {
            return (None, Some("its id carries no readable time".into()));
        };
        let Some(at) = s.committed else {
            return (
                None,
                Some("the store gives no time for its manifest".into()),
            );
        };
        match self.origin {
            Origin::Source => (Some(at), misfit(claimed, at, self.tolerance)),
            // Copied before the office kept a ledger: the copy's time is when pull wrote it, after
            // the commit. A claim after that is impossible; an earlier one cannot be checked, and
            // is the best time there is.
            Origin::Copy if claimed > at + self.tolerance => (
                Some(at),
                Some(format!(
                    "its id claims {}, after the office copied it ({})",
                    fmt(claimed),
                    fmt(at)
                )),
            ),
            Origin::Copy => (Some(claimed), None),
        }
    }
}

/// Complete, not quarantined, checked when required, with a trusted time: what `latest`, `--at`
/// and retention consider.
pub fn countable(s: &SnapshotInfo) -> bool {
    s.complete && s.quarantine.is_none() && !s.unchecked && s.trusted.is_some()
}

fn fmt(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// `3d 4h`, `52m`: a difference between two clocks, for messages.
pub fn human(d: Duration) -> String {
    let s = d.whole_seconds().unsigned_abs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn snap(id: &str, committed: OffsetDateTime) -> SnapshotInfo {
        SnapshotInfo {
            host: "web1".into(),
            id: id.into(),
            complete: true,
            objects: 2,
            stored_bytes: 10,
            has_trees: false,
            needs: Vec::new(),
            committed: Some(committed),
            last_write: Some(committed),
            trusted: None,
            quarantine: None,
            unchecked: false,
            unfinished_writes: 0,
            unfinished_bytes: 0,
        }
    }

    const NOW: OffsetDateTime = datetime!(2026-12-04 02:30:00 UTC);

    #[test]
    fn the_store_time_wins_and_a_claim_that_does_not_fit_is_quarantined() {
        let j = Judge::bare(Origin::Source, Duration::hours(1));
        let mut s = [
            snap("20261204T020000Z-0001", NOW),
            // A three-hour push: started well before its commit, which is fine.
            snap("20261203T233000Z-0002", NOW),
            snap("20271201T000000Z-0003", NOW),
            snap("20261101T000000Z-0004", NOW),
        ];
        j.assess(&mut s);
        assert_eq!(s[0].trusted, Some(NOW));
        assert_eq!(s[0].quarantine, None);
        assert_eq!(s[1].quarantine, None);
        let future = s[2].quarantine.as_deref().unwrap();
        assert!(future.contains("after the store received"), "{future}");
        assert_eq!(s[2].trusted, Some(NOW), "retention would see it as today's");
        assert!(s[3].quarantine.as_deref().unwrap().contains("before"));
        assert!(!countable(&s[2]) && countable(&s[0]));
    }

    #[test]
    fn the_ledger_wins_over_the_listing() {
        let mut j = Judge::bare(Origin::Copy, Duration::hours(1));
        let recorded = datetime!(2026-12-01 02:10:00 UTC);
        j.known.insert(
            ("web1".into(), "20261201T020000Z-0001".into()),
            Known {
                time: recorded,
                quarantine: None,
                valid: true,
            },
        );
        let mut s = [
            snap("20261201T020000Z-0001", NOW),
            // Copied before there was a ledger: its claim is before the copy, so it stands.
            snap("20261202T020000Z-0002", NOW),
            snap("20271202T020000Z-0003", NOW),
        ];
        j.assess(&mut s);
        assert_eq!(s[0].trusted, Some(recorded));
        assert_eq!(s[1].trusted, Some(datetime!(2026-12-02 02:00:00 UTC)));
        assert!(s[2].quarantine.is_some());
    }

    #[test]
    fn an_incomplete_snapshot_ages_by_its_newest_object() {
        let j = Judge::bare(Origin::Source, Duration::hours(1));
        let mut s = [snap("20301201T020000Z-0001", NOW)];
        s[0].complete = false;
        s[0].committed = None;
        j.assess(&mut s);
        assert_eq!(s[0].trusted, Some(NOW));
        assert_eq!(s[0].quarantine, None);
    }
}
