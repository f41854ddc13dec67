//! The retention policy as a pure function: which of a host's complete snapshots a [`Retention`]
//! keeps, and by which rules. No store, no clock: the caller passes the snapshot times and "now".
//!
//! Semantics are restic's `forget` policy, in UTC:
//! - `keep_last N`: the N newest snapshots.
//! - `keep_hourly/daily/weekly/monthly/yearly N`: walking from the newest snapshot back, the newest
//!   snapshot of each hour/day/ISO week/month/year that has one, for the N most recent such periods.
//!   Periods without a snapshot are skipped, not counted: after a two-week outage `keep_daily 7`
//!   still keeps seven snapshots.
//! - `keep_within D`: every snapshot younger than D. Unlike restic, which measures from the newest
//!   snapshot, this measures from `now`: "keep two weeks" then means two weeks of calendar time. A
//!   policy of only `keep_within` could so keep nothing once pushes stop; the caller's plan keeps the
//!   newest complete snapshot regardless (see `mod.rs`), which is what restic's reading gives.
//! - A snapshot kept by any rule is kept, and every rule that keeps it is reported.

use serde::Serialize;
use time::{OffsetDateTime, UtcOffset};

use crate::config::Retention;

/// A rule of the policy, named as in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    KeepLast,
    KeepHourly,
    KeepDaily,
    KeepWeekly,
    KeepMonthly,
    KeepYearly,
    KeepWithin,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::KeepLast => "keep_last",
            Rule::KeepHourly => "keep_hourly",
            Rule::KeepDaily => "keep_daily",
            Rule::KeepWeekly => "keep_weekly",
            Rule::KeepMonthly => "keep_monthly",
            Rule::KeepYearly => "keep_yearly",
            Rule::KeepWithin => "keep_within",
        }
    }
}

/// For each snapshot (same order as `snaps`), the rules that keep it; an empty list means the policy
/// lets it go. `snaps` holds (id, time) of complete snapshots of one host, in any order.
pub fn apply(
    ret: &Retention,
    snaps: &[(String, OffsetDateTime)],
    now: OffsetDateTime,
) -> Vec<Vec<Rule>> {
    let utc: Vec<OffsetDateTime> = snaps
        .iter()
        .map(|(_, t)| t.to_offset(UtcOffset::UTC))
        .collect();
    // Newest first. Equal times are ordered by id so that the result does not depend on the order
    // the store listed them in.
    let mut order: Vec<usize> = (0..snaps.len()).collect();
    order.sort_by(|&a, &b| {
        utc[b]
            .cmp(&utc[a])
            .then_with(|| snaps[b].0.cmp(&snaps[a].0))
    });

    let mut kept: Vec<Vec<Rule>> = vec![Vec::new(); snaps.len()];
    for &i in order.iter().take(ret.keep_last as usize) {
        kept[i].push(Rule::KeepLast);
    }

    let buckets: [(Rule, u32, Bucket); 5] = [
        (Rule::KeepHourly, ret.keep_hourly, hour_bucket),
        (Rule::KeepDaily, ret.keep_daily, day_bucket),
        (Rule::KeepWeekly, ret.keep_weekly, week_bucket),
        (Rule::KeepMonthly, ret.keep_monthly, month_bucket),
        (Rule::KeepYearly, ret.keep_yearly, year_bucket),
    ];
    for (rule, count, bucket) in buckets {
        let mut left = count;
        let mut last: Option<i64> = None;
        for &i in &order {
            if left == 0 {
                break;
            }
            // Newest first, so the first snapshot seen in a period is that period's newest.
            let b = bucket(utc[i]);
            if last != Some(b) {
                kept[i].push(rule);
                last = Some(b);
                left -= 1;
            }
        }
    }

    if let Some(within) = ret.keep_within {
        // A duration too large for `time` keeps everything, as it would if it fit.
        let within = time::Duration::try_from(within).unwrap_or(time::Duration::MAX);
        for (i, t) in utc.iter().enumerate() {
            if now - *t < within {
                kept[i].push(Rule::KeepWithin);
            }
        }
    }
    for k in &mut kept {
        k.sort();
    }
    kept
}

/// The period a time falls in, as a number that differs between periods.
type Bucket = fn(OffsetDateTime) -> i64;

/// Whether `t`'s period for a calendar rule (hourly .. yearly) is still going on at `now`: until it
/// closes, a newer snapshot may still become that period's representative. `keep_last` and
/// `keep_within` have no period: `false`.
pub fn period_open(rule: Rule, t: OffsetDateTime, now: OffsetDateTime) -> bool {
    let bucket: Bucket = match rule {
        Rule::KeepHourly => hour_bucket,
        Rule::KeepDaily => day_bucket,
        Rule::KeepWeekly => week_bucket,
        Rule::KeepMonthly => month_bucket,
        Rule::KeepYearly => year_bucket,
        Rule::KeepLast | Rule::KeepWithin => return false,
    };
    let (t, now) = (t.to_offset(UtcOffset::UTC), now.to_offset(UtcOffset::UTC));
    bucket(t) >= bucket(now)
}

fn day_bucket(t: OffsetDateTime) -> i64 {
    i64::from(t.date().to_julian_day())
}

fn hour_bucket(t: OffsetDateTime) -> i64 {
    day_bucket(t) * 24 + i64::from(t.hour())
}

/// ISO 8601 weeks start on Monday, and the first days of January can belong to the previous year's
/// last week: the week-numbering year, not the calendar year, goes into the key.
fn week_bucket(t: OffsetDateTime) -> i64 {
    let (year, week, _) = t.date().to_iso_week_date();
    i64::from(year) * 100 + i64::from(week)
}

fn month_bucket(t: OffsetDateTime) -> i64 {
    i64::from(t.year()) * 12 + i64::from(u8::from(t.month()))
}

fn year_bucket(t: OffsetDateTime) -> i64 {
    i64::from(t.year())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn snaps(times: &[OffsetDateTime]) -> Vec<(String, OffsetDateTime)> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("s{i:03}"), *t))
            .collect()
    }

    /// Indices of the kept snapshots.
    fn kept(ret: &Retention, times: &[OffsetDateTime], now: OffsetDateTime) -> Vec<usize> {
        apply(ret, &snaps(times), now)
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.is_empty())
            .map(|(i, _)| i)
            .collect()
    }

    const NOW: OffsetDateTime = datetime!(2026-11-23 12:00:00 UTC);

    #[test]
    fn keep_last_takes_the_newest_whatever_the_input_order() {
        let times = [
            datetime!(2026-11-20 02:00 UTC),
            datetime!(2026-11-23 02:00 UTC),
            datetime!(2026-11-21 02:00 UTC),
            datetime!(2026-11-22 02:00 UTC),
        ];
        let ret = Retention {
            keep_last: 2,
            ..Default::default()
        };
        assert_eq!(kept(&ret, &times, NOW), vec![1, 3]);
        let all = Retention {
            keep_last: 10,
            ..Default::default()
        };
        assert_eq!(kept(&all, &times, NOW), vec![0, 1, 2, 3]);
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day_and_skips_empty_days() {
        // Three a day on Nov 20, 21, 23 (nothing on the 22nd).
        let mut times = Vec::new();
        for day in [20u8, 21, 23] {
            for hour in [2u8, 10, 18] {
                let d = time::Date::from_calendar_date(2026, time::Month::November, day).unwrap();
                times.push(d.with_hms(hour, 0, 0).unwrap().assume_utc());
            }
        }
        let ret = Retention {
            keep_daily: 3,
            ..Default::default()
        };
        // The 18:00 of each of the three days that have snapshots; the empty 22nd is not a slot.
        assert_eq!(kept(&ret, &times, NOW), vec![2, 5, 8]);
        let two = Retention {
            keep_daily: 2,
            ..Default::default()
        };
        assert_eq!(kept(&two, &times, NOW), vec![5, 8]);
    }

    #[test]
    fn days_are_utc_days() {
        // 23:30 and 00:30 UTC are two days, even though they are one evening in UTC-5.
        let times = [
            datetime!(2026-11-21 23:30 UTC),
            datetime!(2026-11-22 00:30 UTC),
        ];
        let ret = Retention {
            keep_daily: 2,
            ..Default::default()
        };
        assert_eq!(kept(&ret, &times, NOW), vec![0, 1]);
        // The same instants given with an offset: still two UTC days.
        let shifted = [
            datetime!(2026-11-21 18:30 -5),
            datetime!(2026-11-21 19:30 -5),
        ];
        assert_eq!(kept(&ret, &shifted, NOW), vec![0, 1]);
    }

    #[test]
    fn hourly_buckets() {
        let times = [
            datetime!(2026-11-23 09:05 UTC),
            datetime!(2026-11-23 09:55 UTC),
            datetime!(2026-11-23 10:00 UTC),
            datetime!(2026-11-23 10:59:59 UTC),
            datetime!(2026-11-23 11:00 UTC),
        ];
        let ret = Retention {
            keep_hourly: 2,
            ..Default::default()
        };
        assert_eq!(kept(&ret, &times, NOW), vec![3, 4]);
        let three = Retention {
            keep_hourly: 3,
            ..Default::default()
        };
        assert_eq!(kept(&three, &times, NOW), vec![1, 3, 4]);
    }

    #[test]
    fn weekly_buckets_follow_iso_weeks() {
        // 2026-11-22 is a Sunday, 2026-11-23 a Monday: two ISO weeks.
        let times = [
            datetime!(2026-11-16 02:00 UTC), // Monday, week 47
            datetime!(2026-11-22 23:59 UTC), // Sunday, week 47
            datetime!(2026-11-23 00:01 UTC), // Monday, week 48
        ];
        let ret = Retention {
            keep_weekly: 2,
            ..Default::default()
        };
        assert_eq!(kept(&ret, &times, NOW), vec![1, 2]);
    }

    #[test]
    fn iso_week_across_the_new_year() {
        // 2026-12-28 (Mon) to 2027-01-03 (Sun) is ISO week 53 of 2026; 2027-01-04 starts week 1.
        let times = [
            datetime!(2026-12-28 02:00 UTC),
            datetime!(2027-01-01 02:00 UTC),
            datetime!(2027-01-03 02:00 UTC),
            datetime!(2027-01-04 02:00 UTC),
        ];
        let now = datetime!(2027-01-05 00:00 UTC);
        let ret = Retention {
            keep_weekly: 2,
            ..Default::default()
        };
        // One week holds Dec 28 .. Jan 3 whatever the calendar year says.
        assert_eq!(kept(&ret, &times, now), vec![2, 3]);
        let three = Retention {
            keep_weekly: 3,
            ..Default::default()
        };
        assert_eq!(kept(&three, &times, now), vec![2, 3]);
        // 2024-12-30 (Mon) is in ISO week 1 of 2025, with 2025-01-05 (Sun).
        let early = [
            datetime!(2024-12-29 02:00 UTC), // Sunday, week 52 of 2024
            datetime!(2024-12-30 02:00 UTC),
            datetime!(2025-01-05 02:00 UTC),
        ];
        assert_eq!(kept(&three, &early, now), vec![0, 2]);
    }

    #[test]
    fn monthly_and_yearly_buckets() {
        let times = [
            datetime!(2024-12-31 23:00 UTC),
            datetime!(2025-06-01 02:00 UTC),
            datetime!(2025-06-30 02:00 UTC),
            datetime!(2025-07-01 02:00 UTC),
            datetime!(2026-01-01 00:00 UTC),
            datetime!(2026-11-01 02:00 UTC),
        ];
        let monthly = Retention {
            keep_monthly: 4,
            ..Default::default()
        };
        assert_eq!(kept(&monthly, &times, NOW), vec![2, 3, 4, 5]);
        let yearly = Retention {
            keep_yearly: 3,
            ..Default::default()
        };
        assert_eq!(kept(&yearly, &times, NOW), vec![0, 3, 5]);
    }

    #[test]
    fn keep_within_counts_from_now_and_excludes_the_boundary() {
        let times = [
            datetime!(2026-11-09 12:00 UTC), // exactly 14 days old
            datetime!(2026-11-09 12:00:01 UTC),
            datetime!(2026-11-23 11:00 UTC),
            datetime!(2026-11-24 00:00 UTC), // in the future (clock skew): young
        ];
        let ret = Retention {
            keep_within: Some(std::time::Duration::from_secs(14 * 86_400)),
            ..Default::default()
        };
        assert_eq!(kept(&ret, &times, NOW), vec![1, 2, 3]);
        // Pushes stopped a month ago: keep_within alone keeps nothing (the plan's newest-snapshot
        // guard is what saves the last one).
        let later = datetime!(2026-12-31 00:00 UTC);
        assert!(kept(&ret, &times, later).is_empty());
    }

    #[test]
    fn reasons_accumulate() {
        let times = [
            datetime!(2026-11-21 02:00 UTC),
            datetime!(2026-11-22 02:00 UTC),
            datetime!(2026-11-23 02:00 UTC),
        ];
        let ret = Retention {
            keep_last: 1,
            keep_daily: 2,
            keep_monthly: 1,
            keep_within: Some(std::time::Duration::from_secs(86_400)),
            ..Default::default()
        };
        let r = apply(&ret, &snaps(&times), NOW);
        assert_eq!(r[0], Vec::<Rule>::new());
        assert_eq!(r[1], vec![Rule::KeepDaily]);
        assert_eq!(
            r[2],
            vec![
                Rule::KeepLast,
                Rule::KeepDaily,
                Rule::KeepMonthly,
                Rule::KeepWithin
            ]
        );
    }

    #[test]
    fn same_time_ties_are_broken_by_id() {
        let t = datetime!(2026-11-23 02:00 UTC);
        let s = vec![("b".to_string(), t), ("a".to_string(), t)];
        let ret = Retention {
            keep_last: 1,
            ..Default::default()
        };
        assert_eq!(apply(&ret, &s, NOW), vec![vec![Rule::KeepLast], vec![]]);
        let rev: Vec<_> = s.into_iter().rev().collect();
        assert_eq!(apply(&ret, &rev, NOW), vec![vec![], vec![Rule::KeepLast]]);
    }

    #[test]
    fn the_three_a_day_scenario() {
        // 3 a day (02:00, 10:00, 18:00) over Nov 14..23; keep_daily 7 + keep_last 2.
        let mut times = Vec::new();
        for day in 14u8..=23 {
            for hour in [2u8, 10, 18] {
                let d = time::Date::from_calendar_date(2026, time::Month::November, day).unwrap();
                let t = d.with_hms(hour, 0, 0).unwrap().assume_utc();
                if t <= NOW {
                    times.push(t);
                }
            }
        }
        let ret = Retention {
            keep_last: 2,
            keep_daily: 7,
            ..Default::default()
        };
        let got: Vec<OffsetDateTime> = kept(&ret, &times, NOW)
            .into_iter()
            .map(|i| times[i])
            .collect();
        // Nov 23 has only 02:00 and 10:00 before noon: keep_last takes both; daily takes 10:00 of the
        // 23rd and 18:00 of the 22nd .. 17th.
        let mut want = vec![datetime!(2026-11-23 02:00 UTC)];
        for day in 17u8..=22 {
            let d = time::Date::from_calendar_date(2026, time::Month::November, day).unwrap();
            want.push(d.with_hms(18, 0, 0).unwrap().assume_utc());
        }
        want.push(datetime!(2026-11-23 10:00 UTC));
        want.sort();
        assert_eq!(got, want);
    }
}
