//! A host's history in the HTML report: inline SVG bar charts (one bar per verification run, oldest
//! on the left, green for a pass and red for a failure) and the table of runs. Plain SVG elements
//! styled by the page's CSS, with a `<title>` per bar for the hover text, so the charts need no
//! script, font or file of their own.

use std::fmt::Write;

use super::fmt::{human_secs, short_time, tiny_time};
use super::html::{esc, pill};
use super::markdown;
use super::model::{HistoryEntry, HostReport};
use crate::config::human;

struct Bar {
    value: f64,
    ok: bool,
    /// Hover text.
    title: String,
}

const W: f64 = 520.0;
const H: f64 = 150.0;
const TOP: f64 = 18.0;
const BOTTOM: f64 = 20.0;
const LEFT: f64 = 4.0;
const RIGHT: f64 = 4.0;
/// Fewer runs than this still get bars of a sensible width instead of a few wide slabs.
const MIN_SLOTS: usize = 14;

/// `bars` oldest first; `label` formats a value for the scale; `first`/`last` label the time axis.
fn bar_chart(
    aria: &str,
    bars: &[Bar],
    label: impl Fn(f64) -> String,
    first: &str,
    last: &str,
) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
        esc(aria)
    );
    let max = bars
        .iter()
        .map(|b| b.value)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let plot_h = H - TOP - BOTTOM;
    let base = H - BOTTOM;
    let _ = write!(
        o,
        r#"<line class="grid" x1="{LEFT}" y1="{TOP}" x2="{x2}" y2="{TOP}"/><line class="grid" x1="{LEFT}" y1="{mid}" x2="{x2}" y2="{mid}"/><line class="axis" x1="{LEFT}" y1="{base}" x2="{x2}" y2="{base}"/>"#,
        x2 = W - RIGHT,
        mid = TOP + plot_h / 2.0,
    );
    let _ = write!(
        o,
        r#"<text x="{LEFT}" y="{y}">{}</text>"#,
        esc(&label(max)),
        y = TOP - 5.0
    );
    let slots = bars.len().max(MIN_SLOTS) as f64;
    let slot = (W - LEFT - RIGHT) / slots;
    let bar_w = (slot * 0.7).max(1.0);
    for (i, b) in bars.iter().enumerate() {
        let v = if b.value.is_finite() && b.value > 0.0 {
            b.value
        } else {
            0.0
        };
        // A run that restored nothing (a bad signature) still gets a visible stub.
        let h = if max > 0.0 { v / max * plot_h } else { 0.0 }.max(3.0);
        let x = LEFT + i as f64 * slot + (slot - bar_w) / 2.0;
        let _ = write!(
            o,
            r#"<rect class="bar {cls}" x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}" rx="2"><title>{}</title></rect>"#,
            esc(&b.title),
            cls = if b.ok { "pass" } else { "fail" },
            y = base - h,
        );
    }
    if !bars.is_empty() {
        // The newest run's label always shows; the oldest one only where the two cannot collide
        // (labels are about 6 px a character at this size).
        let y = H - 5.0;
        let centre = LEFT + (bars.len() as f64 - 0.5) * slot;
        let half = last.len() as f64 * 3.0;
        let (x, anchor, left_edge) = if centre + half > W - RIGHT {
            (W - RIGHT, "end", W - RIGHT - 2.0 * half)
        } else if centre - half < LEFT {
            (LEFT, "start", LEFT)
        } else {
            (centre, "middle", centre - half)
        };
        let _ = write!(
            o,
            r#"<text x="{x:.1}" y="{y}" text-anchor="{anchor}">{}</text>"#,
            esc(last)
        );
        if bars.len() > 1 && LEFT + first.len() as f64 * 6.0 + 12.0 < left_edge {
            let _ = write!(o, r#"<text x="{LEFT}" y="{y}">{}</text>"#, esc(first));
        }
    }
    o.push_str("</svg>");
    o
}

pub(super) fn history(o: &mut String, h: &HostReport) {
    if h.history.is_empty() {
        return;
    }
    let runs: Vec<&HistoryEntry> = h.history.iter().rev().collect();
    let title = |e: &HistoryEntry| {
        format!(
            "{} \u{b7} {} \u{b7} restore {} \u{b7} {}",
            e.snapshot,
            if e.ok { "PASS" } else { "FAIL" },
            human_secs(e.restore_seconds),
            human(e.plain_bytes)
        )
    };
    let bars = |value: &dyn Fn(&HistoryEntry) -> f64| -> Vec<Bar> {
        runs.iter()
            .map(|e| Bar {
                value: value(e),
                ok: e.ok,
                title: title(e),
            })
            .collect()
    };
    let first = runs
        .first()
        .map(|e| tiny_time(&e.snapshot_time))
        .unwrap_or_default();
    let last = runs
        .last()
        .map(|e| tiny_time(&e.snapshot_time))
        .unwrap_or_default();
    let failed = runs.iter().filter(|e| !e.ok).count();
    let _ = write!(
        o,
        "<h3>History <span class=\"muted\">{} \u{b7} {} failed</span></h3><div class=\"charts\">",
        markdown::runs(runs.len()),
        failed
    );
    let _ = write!(
        o,
        "<figure><figcaption>Restore time</figcaption>{}</figure>",
        bar_chart(
            "restore time per run",
            &bars(&|e| e.restore_seconds),
            human_secs,
            &first,
            &last
        )
    );
    let _ = write!(
        o,
        "<figure><figcaption>Plain size</figcaption>{}</figure></div>",
        bar_chart(
            "plain size per run",
            &bars(&|e| e.plain_bytes as f64),
            |v| human(v as u64),
            &first,
            &last
        )
    );
    o.push_str(
        "<details><summary>Runs</summary><table class=\"compact\"><thead><tr><th>Snapshot</th><th>Taken</th>\
         <th>Verified</th><th>Status</th><th class=\"num\">Plain size</th><th class=\"num\">Restore time</th></tr></thead><tbody>",
    );
    for e in &h.history {
        let _ = write!(
            o,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&e.snapshot),
            esc(&short_time(&e.snapshot_time)),
            esc(&short_time(&e.verified_at)),
            pill(e.ok),
            esc(&human(e.plain_bytes)),
            esc(&human_secs(e.restore_seconds))
        );
    }
    o.push_str("</tbody></table></details>");
}
