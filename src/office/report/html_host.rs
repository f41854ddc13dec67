//! The HTML section of one host: facts, databases with their tables and checks, trees and
//! incomplete snapshots; the history charts come from [`super::svg`].

use std::fmt::Write;

use super::fmt::*;
use super::html::{esc, fact, pill, status_pill, warning, DASH};
use super::model::*;
use super::svg::history;
use super::SHRINK_PERCENT;
use crate::config::human;

pub(super) fn host(o: &mut String, i: usize, h: &HostReport, r: &Report) {
    let _ = write!(
        o,
        "<section class=\"card host {}\" id=\"host-{i}\"><div class=\"host-head\"><h2>{}</h2>{}",
        if h.ok { "" } else { "failing" },
        esc(&h.host),
        status_pill(h.status)
    );
    let Some(v) = &h.latest else {
        o.push_str("</div><p class=\"err\">No verification recorded for this host. Run <code>offsite verify</code> (or <code>offsite office</code>) and check that its snapshots reach the offsite directory.</p>");
        incomplete(o, h);
        host_warnings(o, h, r);
        o.push_str("</section>");
        return;
    };
    let _ = write!(
        o,
        "<span class=\"muted\">snapshot <code>{}</code></span></div><div class=\"facts\">",
        esc(&v.snapshot)
    );
    fact(o, "Snapshot taken", &esc(&short_time(&v.snapshot_time)));
    fact(
        o,
        "Verified",
        &format!(
            "{} <span class=\"muted\">from {}</span>",
            esc(&short_time(&v.verified_at)),
            esc(&v.verified_from)
        ),
    );
    let fresh = match &h.newest_complete {
        Some(n) => format!(
            "<span class=\"{}\">{} old</span> <span class=\"muted\">max {}</span>",
            if n.fresh { "good" } else { "bad" },
            esc(&human_secs(n.age_hours * 3600.0)),
            esc(&human_secs(r.max_age_hours * 3600.0))
        ),
        None => DASH.into(),
    };
    fact(o, "Newest snapshot", &fresh);
    fact(
        o,
        "Verification took",
        &format!(
            "{} <span class=\"muted\">restore {}</span>",
            esc(&human_secs(v.seconds)),
            esc(&human_secs(v.restore_seconds))
        ),
    );
    fact(
        o,
        "Size",
        &format!(
            "{} <span class=\"muted\">stored {}</span>",
            esc(&human(v.plain_bytes)),
            esc(&human(v.stored_bytes))
        ),
    );
    fact(
        o,
        "Freshness at verify",
        &format!(
            "{} {} <span class=\"muted\">max {}</span>",
            pill(v.freshness.ok),
            esc(&human_secs(v.freshness.age_hours * 3600.0)),
            esc(&human_secs(v.freshness.max_age_hours * 3600.0))
        ),
    );
    fact(o, "Signed by", &esc(&v.signer));
    if let Some(until) = &v.locked_until {
        fact(o, "Object Lock until", &esc(&short_time(until)));
    }
    fact(
        o,
        "Compared with",
        &match &h.previous {
            Some(p) => format!("<code>{}</code>", esc(&p.snapshot)),
            None => "<span class=\"muted\">no earlier snapshot</span>".into(),
        },
    );
    o.push_str("</div>");
    for e in &v.errors {
        let _ = write!(o, "<p class=\"err\">{}</p>", esc(e));
    }
    host_warnings(o, h, r);
    databases(o, v, h.previous.is_some());
    trees(o, v);
    incomplete(o, h);
    history(o, h);
    o.push_str("</section>");
}

fn host_warnings(o: &mut String, h: &HostReport, r: &Report) {
    let mine: Vec<&Warning> = r.warnings.iter().filter(|w| w.host == h.host).collect();
    if mine.is_empty() {
        return;
    }
    o.push_str("<ul class=\"hostwarn\">");
    for w in mine {
        warning(o, w, false);
    }
    o.push_str("</ul>");
}

/// `compared`: there is a previous snapshot, so a database without a change is new in this one.
fn databases(o: &mut String, v: &Verification, compared: bool) {
    if v.databases.is_empty() {
        return;
    }
    o.push_str(
        "<h3>Databases</h3><table><thead><tr><th>Status</th><th>Database</th><th>Engine</th>\
         <th class=\"num\">Restore</th><th class=\"num\">Stored</th><th class=\"num\">Plain</th>\
         <th class=\"num\">\u{394} plain vs previous</th><th class=\"num\">Tables</th><th class=\"num\">Checks</th></tr></thead><tbody>",
    );
    for d in &v.databases {
        let change = match &d.change {
            Some(c) => {
                let shrink = c
                    .delta_percent
                    .is_some_and(|p| p < -(SHRINK_PERCENT as f64));
                format!(
                    "<span class=\"{}\">{} ({})</span>",
                    if shrink { "bad strong" } else { "" },
                    esc(&signed_bytes(c.delta_bytes)),
                    esc(&pct(c.delta_percent))
                )
            }
            None if compared => "<span class=\"muted\">new</span>".into(),
            None => DASH.into(),
        };
        let tables_ok = d.tables.iter().filter(|t| t.ok).count();
        let checks_ok = d.checks.iter().filter(|c| c.ok).count();
        let _ = write!(
            o,
            "<tr class=\"{}\"><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{change}</td>\
             <td class=\"num\">{tables_ok}/{}</td><td class=\"num\">{checks_ok}/{}</td></tr>",
            if d.ok { "" } else { "failrow" },
            pill(d.ok),
            esc(&d.source),
            esc(&d.engine),
            esc(&human_secs(d.restore_seconds)),
            esc(&human(d.stored_bytes)),
            esc(&human(d.plain_bytes)),
            d.tables.len(),
            d.checks.len()
        );
        if let Some(e) = &d.error {
            let _ = write!(
                o,
                "<tr class=\"failrow\"><td></td><td colspan=\"8\" class=\"errtext\">{}</td></tr>",
                esc(e)
            );
        }
    }
    o.push_str("</tbody></table>");
    for d in &v.databases {
        tables(o, d);
        checks(o, d);
        if let Some(r) = &d.restored_as {
            let _ = write!(
                o,
                "<p class=\"muted\"><code>{}</code> {}.</p>",
                esc(&d.source),
                esc(&r.describe())
            );
        }
    }
}

fn tables(o: &mut String, d: &DatabaseReport) {
    if d.tables.is_empty() {
        return;
    }
    let bad = d.tables.iter().filter(|t| !t.ok).count();
    let _ = write!(
        o,
        "<details open><summary>Tables of <code>{}</code> <span class=\"muted\">{} \u{b7} {}</span></summary>\
         <table class=\"compact\"><thead><tr><th>Table</th><th class=\"num\">Expected rows</th>\
         <th class=\"num\">Restored rows</th><th class=\"num\">Previous</th><th class=\"num\">\u{394} rows</th></tr></thead><tbody>",
        esc(&d.source),
        if d.tables.len() == 1 {
            "1 table".to_string()
        } else {
            format!("{} tables", d.tables.len())
        },
        if bad == 0 {
            "all row counts match".to_string()
        } else {
            format!(
                "<span class=\"bad\">{bad} {}</span>",
                if bad == 1 { "differs" } else { "differ" }
            )
        }
    );
    for t in &d.tables {
        let restored = match t.restored {
            Some(n) => esc(&grouped(n)),
            None => "<span class=\"bad\">not restored</span>".into(),
        };
        let delta = match (t.delta_rows, t.previous) {
            (Some(dr), Some(p)) => {
                let shrink = super::changes::percent(p, t.expected)
                    .is_some_and(|x| x < -(SHRINK_PERCENT as f64));
                format!(
                    "<span class=\"{}\">{}</span>",
                    if shrink { "bad strong" } else { "" },
                    esc(&signed_rows(dr))
                )
            }
            _ => DASH.into(),
        };
        // The manifest's claim, and beside it what verify counted in the dump when that differs.
        let expected = match t.dump_differs() {
            Some(d) => format!(
                "{} <span class=\"bad\">(dump: {})</span>",
                esc(&grouped(t.expected)),
                esc(&grouped(d))
            ),
            _ => esc(&grouped(t.expected)),
        };
        let _ = write!(
            o,
            "<tr class=\"{}\"><td><code>{}</code></td><td class=\"num\">{expected}</td><td class=\"num\">{restored}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{delta}</td></tr>",
            if t.ok { "" } else { "failrow" },
            esc(&t.name),
            t.previous.map_or_else(|| DASH.into(), |p| esc(&grouped(p))),
        );
    }
    o.push_str("</tbody></table></details>");
}

fn checks(o: &mut String, d: &DatabaseReport) {
    if d.checks.is_empty() {
        return;
    }
    let _ = write!(
        o,
        "<details open><summary>Checks on <code>{}</code></summary><table class=\"compact\"><thead><tr>\
         <th>Status</th><th>SQL</th><th>Expect</th><th>Value</th><th>Error</th></tr></thead><tbody>",
        esc(&d.source)
    );
    for c in &d.checks {
        let _ = write!(
            o,
            "<tr class=\"{}\"><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td class=\"errtext\">{}</td></tr>",
            if c.ok { "" } else { "failrow" },
            pill(c.ok),
            esc(&c.sql),
            esc(&c.expect),
            c.value
                .as_deref()
                .map_or_else(|| DASH.into(), |v| format!("<code>{}</code>", esc(v))),
            c.error.as_deref().map(esc).unwrap_or_default()
        );
    }
    o.push_str("</tbody></table></details>");
}

fn trees(o: &mut String, v: &Verification) {
    if v.trees.is_empty() {
        return;
    }
    o.push_str(
        "<h3>File trees</h3><table><thead><tr><th>Status</th><th>Tree</th><th class=\"num\">Files</th>\
         <th class=\"num\">Bytes</th><th class=\"num\">Time</th><th>Error</th></tr></thead><tbody>",
    );
    for t in &v.trees {
        let _ = write!(
            o,
            "<tr class=\"{}\"><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"errtext\">{}</td></tr>",
            if t.ok { "" } else { "failrow" },
            pill(t.ok),
            esc(&t.name),
            esc(&grouped(t.files)),
            esc(&human(t.bytes)),
            esc(&human_secs(t.seconds)),
            t.error.as_deref().map(esc).unwrap_or_default()
        );
    }
    o.push_str("</tbody></table>");
}

fn incomplete(o: &mut String, h: &HostReport) {
    if h.incomplete.is_empty() {
        return;
    }
    o.push_str(
        "<h3>Incomplete snapshots</h3><table class=\"compact\"><thead><tr><th>Snapshot</th>\
         <th class=\"num\">Age</th><th>State</th></tr></thead><tbody>",
    );
    for i in &h.incomplete {
        let _ = write!(
            o,
            "<tr><td><code>{}</code></td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&i.snapshot),
            esc(&human_secs(i.age_hours * 3600.0)),
            if i.abandoned {
                "<span class=\"pill warn\">ABANDONED</span>"
            } else {
                "<span class=\"muted\">in progress?</span>"
            }
        );
    }
    o.push_str("</tbody></table>");
}
