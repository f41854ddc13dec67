//! What changed since the previous snapshot, and which changes deserve a warning.

use super::fmt::{grouped, pct};
use super::model::WarningKind;
use super::SHRINK_PERCENT;
use crate::config::human;
use crate::office::record::VerifyRecord;

pub(super) fn delta(before: u64, after: u64) -> i64 {
    let d = i128::from(after) - i128::from(before);
    i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
}

pub(super) fn percent(before: u64, after: u64) -> Option<f64> {
    (before > 0).then(|| (after as f64 - before as f64) / before as f64 * 100.0)
}

/// Fell by more than [`SHRINK_PERCENT`]; integer arithmetic so that 30.0% exactly is not a shrink.
fn shrank(before: u64, after: u64) -> bool {
    u128::from(after) * 100 < u128::from(before) * u128::from(100 - SHRINK_PERCENT)
}

/// Databases and tables that shrank or vanished since the previous snapshot. Both sides come from
/// the manifests (plain size, rows counted in the dump), so a failed restore does not hide a shrink.
pub(super) fn shrinkage(
    cur: &VerifyRecord,
    prev: &VerifyRecord,
) -> Vec<(WarningKind, String, Option<String>, String)> {
    let mut out = Vec::new();
    let since = &prev.snapshot;
    for p in &prev.databases {
        let Some(c) = cur.databases.iter().find(|d| d.source == p.source) else {
            out.push((
                WarningKind::DatabaseShrank,
                p.source.clone(),
                None,
                format!(
                    "{} is missing from snapshot {} (it was {} in {since})",
                    p.source,
                    cur.snapshot,
                    human(p.plain_bytes)
                ),
            ));
            continue;
        };
        if shrank(p.plain_bytes, c.plain_bytes) {
            out.push((
                WarningKind::DatabaseShrank,
                c.source.clone(),
                None,
                format!(
                    "{} shrank from {} to {} ({}) since {since}",
                    c.source,
                    human(p.plain_bytes),
                    human(c.plain_bytes),
                    pct(percent(p.plain_bytes, c.plain_bytes))
                ),
            ));
        }
        for (table, before) in &p.tables {
            match c.tables.get(table) {
                Some(after) if shrank(before.expected, after.expected) => out.push((
                    WarningKind::TableShrank,
                    c.source.clone(),
                    Some(table.clone()),
                    format!(
                        "{} table {table}: rows fell from {} to {} ({}) since {since}",
                        c.source,
                        grouped(before.expected),
                        grouped(after.expected),
                        pct(percent(before.expected, after.expected))
                    ),
                )),
                // A dropped empty table loses no data; a dropped full one does.
                None if before.expected > 0 => out.push((
                    WarningKind::TableShrank,
                    c.source.clone(),
                    Some(table.clone()),
                    format!(
                        "{} table {table} is missing (it had {} rows in {since})",
                        c.source,
                        grouped(before.expected)
                    ),
                )),
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrink_threshold() {
        assert!(!shrank(1000, 700), "exactly 30% is not more than 30%");
        assert!(shrank(1000, 699));
        assert!(!shrank(0, 0));
        assert!(!shrank(10, 20));
        assert!(shrank(u64::MAX, 0));
        assert_eq!(delta(u64::MAX, 0), i64::MIN);
        assert_eq!(delta(5, 3), -2);
        assert_eq!(percent(0, 5), None);
        assert_eq!(percent(200, 100), Some(-50.0));
    }
}
