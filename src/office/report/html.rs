//! `report.html`: one self-contained page (inline CSS and SVG; no script, font, image or link to
//! fetch), so it survives being mailed, attached to a ticket or opened offline. Every string from a
//! record goes through [`esc`]: database, table and host names can contain anything.

use std::fmt::Write;

use super::display_order;
use super::fmt::*;
use super::html_host::host;
use super::markdown::banner;
use super::model::*;
use crate::config::human;

const CSS: &str = include_str!("report.css");
pub(super) const DASH: &str = "\u{2013}";

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

pub fn render(r: &Report) -> String {
    let mut o = String::with_capacity(64 << 10);
    let title = format!("offsite: {}", banner(r));
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body><main>",
        esc(&title)
    );
    let pull = match &r.pull {
        Some(p) if p.ok => format!(" \u{b7} last pull {}", esc(&short_time(&p.ran_at))),
        Some(p) => format!(
            " \u{b7} <span class=\"bad\">last pull {} failed</span>",
            esc(&short_time(&p.ran_at))
        ),
        None => String::new(),
    };
    let _ = write!(
        o,
        "<header class=\"top\"><div><div class=\"brand\">offsite</div><h1>Restore verification report</h1></div>\
         <div class=\"muted right\">generated {}{pull}<br>max snapshot age {}</div></header>",
        esc(&short_time(&r.generated_at)),
        esc(&human_secs(r.max_age_hours * 3600.0))
    );
    let (cls, icon) = if r.ok {
        ("ok", "\u{2713}")
    } else {
        ("bad", "\u{2715}")
    };
    let sub = match r.summary.warnings {
        0 => "no warnings".to_string(),
        1 => "1 warning".to_string(),
        n => format!("{n} warnings"),
    };
    let failing: Vec<&str> = r
        .hosts
        .iter()
        .filter(|h| !h.ok)
        .map(|h| h.host.as_str())
        .collect();
    let detail = if failing.is_empty() {
        format!("newest snapshots restored and checked \u{b7} {sub}")
    } else {
        format!(
            "failing: {} \u{b7} {} passing \u{b7} {sub}",
            failing.join(", "),
            r.summary.passing
        )
    };
    let _ = write!(
        o,
        "<section class=\"banner {cls}\"><div class=\"icon\">{icon}</div><div><strong>{}</strong>\
         <span>{}</span></div></section>",
        esc(&banner(r)),
        esc(&detail)
    );

    overview(&mut o, r);
    if !r.warnings.is_empty() {
        o.push_str("<section class=\"card warnings\"><h2>Warnings</h2><ul>");
        for w in &r.warnings {
            warning(&mut o, w, true);
        }
        o.push_str("</ul></section>");
    }
    if let Some(sc) = &r.scrub {
        scrub(&mut o, sc);
    }
    for (i, h) in display_order(r) {
        host(&mut o, i, h, r);
    }
    let _ = writeln!(
        o,
        "<footer class=\"muted\">{} v{} \u{b7} machine-readable: report.json \u{b7} rows are counted in the dump at push time and again after the restore</footer></main></body></html>",
        esc(&r.format),
        r.version
    );
    o
}

pub(super) fn pill(ok: bool) -> &'static str {
    if ok {
        "<span class=\"pill pass\">PASS</span>"
    } else {
        "<span class=\"pill fail\">FAIL</span>"
    }
}

pub(super) fn status_pill(s: Status) -> String {
    match s {
        Status::Pass => pill(true).into(),
        _ => format!("<span class=\"pill fail\">{}</span>", s.label()),
    }
}

fn overview(o: &mut String, r: &Report) {
    o.push_str(
        "<section class=\"card\"><h2>Hosts</h2><table><thead><tr><th>Host</th><th>Status</th>\
         <th>Verified snapshot</th><th>Taken</th><th class=\"num\">Age</th>\
         <th class=\"num\">Databases</th><th class=\"num\">Trees</th><th class=\"num\">Plain size</th>\
         <th class=\"num\">Restore</th><th class=\"num\">Warnings</th></tr></thead><tbody>",
    );
    for (i, h) in display_order(r) {
        let warnings = r.warnings.iter().filter(|w| w.host == h.host).count();
        let age = match &h.newest_complete {
            Some(n) => format!(
                "<span class=\"{}\">{}</span>",
                if n.fresh { "" } else { "bad strong" },
                esc(&human_secs(n.age_hours * 3600.0))
            ),
            None => DASH.into(),
        };
        let _ = write!(
            o,
            "<tr class=\"{}\"><td><a href=\"#host-{i}\"><strong>{}</strong></a></td><td>{}</td>",
            if h.ok { "" } else { "failrow" },
            esc(&h.host),
            status_pill(h.status)
        );
        match &h.latest {
            Some(v) => {
                let dbs_ok = v.databases.iter().filter(|d| d.ok).count();
                let trees_ok = v.trees.iter().filter(|t| t.ok).count();
                let _ = write!(
                    o,
                    "<td><code>{}</code></td><td>{}</td><td class=\"num\">{age}</td>\
                     <td class=\"num\">{dbs_ok}/{}</td><td class=\"num\">{trees_ok}/{}</td>\
                     <td class=\"num\">{}</td><td class=\"num\">{}</td>",
                    esc(&v.snapshot),
                    esc(&short_time(&v.snapshot_time)),
                    v.databases.len(),
                    v.trees.len(),
                    esc(&human(v.plain_bytes)),
                    esc(&human_secs(v.restore_seconds))
                );
            }
            None => {
                let _ = write!(
                    o,
                    "<td colspan=\"2\" class=\"muted\">never verified</td><td class=\"num\">{age}</td>\
                     <td class=\"num\">{DASH}</td><td class=\"num\">{DASH}</td><td class=\"num\">{DASH}</td><td class=\"num\">{DASH}</td>"
                );
            }
        }
        let _ = write!(
            o,
            "<td class=\"num\">{}</td></tr>",
            if warnings > 0 {
                format!("<span class=\"pill warn\">{warnings}</span>")
            } else {
                "0".into()
            }
        );
    }
    o.push_str("</tbody></table></section>");
}

/// The scrub's coverage and age, as facts.
fn scrub(o: &mut String, s: &ScrubSummary) {
    let _ = write!(
        o,
        "<section class=\"card{}\"><h2>Scrub of the offsite copy</h2>\
         <p class=\"muted\">Every object is re-hashed against its signed manifest at least every {}.</p><div class=\"facts\">",
        if s.ok { "" } else { " failing" },
        days(s.scrub_days)
    );
    fact(
        o,
        "Last run",
        &format!(
            "{} ({} ago)",
            esc(&short_time(&s.ran_at)),
            esc(&human_secs(s.age_hours.max(0.0) * 3600.0))
        ),
    );
    fact(
        o,
        "Coverage",
        &format!(
            "<span class=\"{}\">{:.0}%</span> of {} objects within {}",
            if s.coverage_percent < 100.0 {
                "bad"
            } else {
                ""
            },
            s.coverage_percent,
            esc(&grouped(s.objects)),
            days(s.scrub_days)
        ),
    );
    fact(
        o,
        "Oldest check",
        &match s.oldest_check_hours {
            Some(h) => format!("{} ago", esc(&human_secs(h * 3600.0))),
            None => DASH.into(),
        },
    );
    fact(
        o,
        "Last run checked",
        &format!(
            "{} objects, {} \u{b7} {} repaired \u{b7} <span class=\"{}\">{} lost</span>",
            esc(&grouped(s.checked_objects)),
            esc(&human(s.checked_bytes)),
            s.repaired.len(),
            if s.lost.is_empty() { "" } else { "bad strong" },
            s.lost.len()
        ),
    );
    o.push_str("</div>");
    for e in &s.errors {
        let _ = write!(o, "<p class=\"bad\">Error: {}</p>", esc(e));
    }
    o.push_str("</section>");
}

pub(super) fn warning(o: &mut String, w: &Warning, with_host: bool) {
    let _ = write!(
        o,
        "<li><span class=\"tag {}\">{}</span>{}<span>{}</span></li>",
        match w.kind {
            WarningKind::Record | WarningKind::Pull => "soft",
            _ => "",
        },
        esc(w.kind.label()),
        if with_host {
            format!("<strong class=\"who\">{}</strong>", esc(&w.host))
        } else {
            String::new()
        },
        esc(&w.message)
    );
}

pub(super) fn fact(o: &mut String, k: &str, v: &str) {
    let _ = write!(
        o,
        "<div class=\"fact\"><div class=\"k\">{}</div><div class=\"v\">{v}</div></div>",
        esc(k)
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(
            super::esc("<script>alert(\"x\" & 'y')</script>"),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
    }
}
