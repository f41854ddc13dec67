//! `report.md`: the report as GitHub-flavoured Markdown tables, to paste into a ticket or an email.
//! Names come from production databases and can hold anything, so every one goes through [`code`]
//! or [`text`]: nothing in a name can open a link, an HTML tag or a new table cell.

use std::fmt::Write;

use super::display_order;
use super::fmt::*;
use super::model::*;
use crate::config::human;

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let icon = if r.ok { "\u{2705}" } else { "\u{274c}" };
    let _ = writeln!(o, "# offsite restore verification\n");
    let _ = writeln!(
        o,
        "{icon} **{}** \u{b7} generated {}{}\n",
        banner(r),
        short_time(&r.generated_at),
        match &r.pull {
            Some(p) if p.ok => format!(" \u{b7} last pull {}", short_time(&p.ran_at)),
            Some(p) => format!(" \u{b7} last pull {} **failed**", short_time(&p.ran_at)),
            None => String::new(),
        }
    );

    o.push_str("| Host | Status | Newest snapshot | Taken | Age | Plain size | Restore time | Warnings |\n");
    o.push_str("|---|---|---|---|---:|---:|---:|---:|\n");
    for (_, h) in display_order(r) {
        let n = r.warnings.iter().filter(|w| w.host == h.host).count();
        let age = h
            .newest_complete
            .as_ref()
            .map(|n| human_secs(n.age_hours * 3600.0))
            .unwrap_or_else(|| "\u{2013}".into());
        match &h.latest {
            Some(v) => row(
                &mut o,
                &[
                    code(&h.host),
                    status(h.status),
                    code(&v.snapshot),
                    short_time(&v.snapshot_time),
                    age,
                    human(v.plain_bytes),
                    human_secs(v.restore_seconds),
                    n.to_string(),
                ],
            ),
            None => row(
                &mut o,
                &[
                    code(&h.host),
                    status(h.status),
                    "\u{2013}".into(),
                    "\u{2013}".into(),
                    age,
                    "\u{2013}".into(),
                    "\u{2013}".into(),
                    n.to_string(),
                ],
            ),
        }
    }

    if !r.warnings.is_empty() {
        o.push_str("\n## Warnings\n\n");
        for w in &r.warnings {
            let _ = writeln!(
                o,
                "- **{}** {}: {}",
                w.kind.label(),
                code(&w.host),
                text(&w.message)
            );
        }
    }

    if let Some(sc) = &r.scrub {
        scrub(&mut o, sc);
    }

    for (_, h) in display_order(r) {
        host(&mut o, h);
    }
    o
}

/// The scrub's coverage and age: how recently every object of the offsite copy was re-hashed.
fn scrub(o: &mut String, s: &ScrubSummary) {
    let _ = writeln!(
        o,
        "\n## Scrub of the offsite copy\n\nEvery object is re-hashed against its signed manifest at least every {}.  ",
        days(s.scrub_days)
    );
    let _ = writeln!(
        o,
        "Last run {} ({} ago): {} objects ({}) of {} ({}) checked, {} repaired, {} lost.  ",
        short_time(&s.ran_at),
        human_secs(s.age_hours.max(0.0) * 3600.0),
        grouped(s.checked_objects),
        human(s.checked_bytes),
        grouped(s.objects),
        human(s.bytes),
        s.repaired.len(),
        if s.lost.is_empty() {
            "0".to_string()
        } else {
            format!("**{}**", s.lost.len())
        }
    );
    let _ = writeln!(
        o,
        "Coverage: {:.0}% of objects checked within {}{}{}.",
        s.coverage_percent,
        days(s.scrub_days),
        match s.oldest_check_hours {
            Some(h) => format!(", oldest check {} old", human_secs(h * 3600.0)),
            None => String::new(),
        },
        match s.never_checked {
            0 => String::new(),
            n => format!(", {} not checked yet", grouped(n)),
        }
    );
    for e in &s.errors {
        let _ = writeln!(o, "\n> **Error:** {}", text(e));
    }
}

pub fn banner(r: &Report) -> String {
    let s = &r.summary;
    let noun = if s.hosts == 1 { "host" } else { "hosts" };
    if s.failing == 0 {
        format!("All {} {noun} verified", s.hosts)
    } else {
        format!("{} of {} {noun} failing", s.failing, s.hosts)
    }
}

fn host(o: &mut String, h: &HostReport) {
    let _ = writeln!(o, "\n## {} \u{2014} {}\n", code(&h.host), status(h.status));
    let Some(v) = &h.latest else {
        o.push_str("No verification recorded for this host: run `offsite verify`.\n");
        incomplete(o, h);
        return;
    };
    let _ = writeln!(
        o,
        "Snapshot {} taken {}, verified {} from {} in {}, signed by {}.  ",
        code(&v.snapshot),
        short_time(&v.snapshot_time),
        short_time(&v.verified_at),
        text(&v.verified_from),
        human_secs(v.seconds),
        text(&v.signer)
    );
    if let Some(until) = &v.locked_until {
        let _ = writeln!(o, "Object Lock until {}.  ", short_time(until));
    }
    let _ = writeln!(
        o,
        "Freshness at verification: {} old (max {}) \u{2014} {}.  ",
        human_secs(v.freshness.age_hours * 3600.0),
        human_secs(v.freshness.max_age_hours * 3600.0),
        if v.freshness.ok { "ok" } else { "**too old**" }
    );
    let _ = writeln!(
        o,
        "Size: {} stored, {} plain.{}",
        human(v.stored_bytes),
        human(v.plain_bytes),
        match &h.previous {
            Some(p) => format!(" Changes are against {}.", code(&p.snapshot)),
            None => " No earlier snapshot to compare with.".into(),
        }
    );
    for e in &v.errors {
        let _ = writeln!(o, "\n> **Error:** {}", text(e));
    }

    if !v.databases.is_empty() {
        o.push_str("\n### Databases\n\n| Status | Database | Engine | Restore | Stored | Plain | \u{394} plain | Error |\n|---|---|---|---:|---:|---:|---:|---|\n");
        for d in &v.databases {
            let change = d.change.as_ref().map_or_else(
                || {
                    if h.previous.is_some() {
                        "new"
                    } else {
                        "\u{2013}"
                    }
                    .into()
                },
                |c| format!("{} ({})", signed_bytes(c.delta_bytes), pct(c.delta_percent)),
            );
            row(
                o,
                &[
                    pass(d.ok),
                    code(&d.source),
                    text(&d.engine),
                    human_secs(d.restore_seconds),
                    human(d.stored_bytes),
                    human(d.plain_bytes),
                    change,
                    d.error.as_deref().map(text).unwrap_or_default(),
                ],
            );
        }
        for d in v.databases.iter().filter(|d| !d.tables.is_empty()) {
            let _ = writeln!(
                o,
                "\n#### Tables of {}\n\n| Table | Expected rows | Restored rows | Previous | \u{394} rows |\n|---|---:|---:|---:|---:|",
                code(&d.source)
            );
            for t in &d.tables {
                let restored = match t.restored {
                    Some(n) if t.ok => grouped(n),
                    Some(n) => format!("**{}** \u{274c}", grouped(n)),
                    None => "\u{274c} not restored".into(),
                };
                row(
                    o,
                    &[
                        code(&t.name),
                        // The office's own count beside the host's claim, where they differ.
                        match t.dump_differs() {
                            Some(d) => {
                                format!("{} (dump: **{}**)", grouped(t.expected), grouped(d))
                            }
                            None => grouped(t.expected),
                        },
                        restored,
                        t.previous.map(grouped).unwrap_or_else(|| "\u{2013}".into()),
                        t.delta_rows
                            .map(signed_rows)
                            .unwrap_or_else(|| "\u{2013}".into()),
                    ],
                );
            }
            if let Some(r) = &d.restored_as {
                let _ = writeln!(o, "\n{} {}.", code(&d.source), text(&r.describe()));
            }
        }
        let checks: Vec<_> = v
            .databases
            .iter()
            .flat_map(|d| d.checks.iter().map(move |c| (d, c)))
            .collect();
        if !checks.is_empty() {
            o.push_str("\n### Checks\n\n| Status | Database | SQL | Expect | Value | Error |\n|---|---|---|---|---|---|\n");
            for (d, c) in checks {
                row(
                    o,
                    &[
                        pass(c.ok),
                        code(&d.source),
                        code(&c.sql),
                        code(&c.expect),
                        c.value
                            .as_deref()
                            .map(code)
                            .unwrap_or_else(|| "\u{2013}".into()),
                        c.error.as_deref().map(text).unwrap_or_default(),
                    ],
                );
            }
        }
    }

    if !v.trees.is_empty() {
        o.push_str("\n### File trees\n\n| Status | Tree | Files | Bytes | Time | Error |\n|---|---|---:|---:|---:|---|\n");
        for t in &v.trees {
            row(
                o,
                &[
                    pass(t.ok),
                    code(&t.name),
                    grouped(t.files),
                    human(t.bytes),
                    human_secs(t.seconds),
                    t.error.as_deref().map(text).unwrap_or_default(),
                ],
            );
        }
    }
    incomplete(o, h);

    if !h.history.is_empty() {
        let _ = writeln!(
            o,
            "\n### History ({})\n\n| Snapshot | Taken | Verified | Status | Plain size | Restore time |\n|---|---|---|---|---:|---:|",
            runs(h.history.len())
        );
        for e in &h.history {
            row(
                o,
                &[
                    code(&e.snapshot),
                    short_time(&e.snapshot_time),
                    short_time(&e.verified_at),
                    pass(e.ok),
                    human(e.plain_bytes),
                    human_secs(e.restore_seconds),
                ],
            );
        }
    }
}

pub fn runs(n: usize) -> String {
    if n == 1 {
        "1 run".into()
    } else {
        format!("last {n} runs")
    }
}

fn incomplete(o: &mut String, h: &HostReport) {
    if h.incomplete.is_empty() {
        return;
    }
    o.push_str("\n### Incomplete snapshots\n\n| Snapshot | Age | State |\n|---|---:|---|\n");
    for i in &h.incomplete {
        row(
            o,
            &[
                code(&i.snapshot),
                human_secs(i.age_hours * 3600.0),
                if i.abandoned {
                    "**abandoned**".into()
                } else {
                    "in progress?".into()
                },
            ],
        );
    }
}

fn row(o: &mut String, cells: &[String]) {
    o.push('|');
    for c in cells {
        o.push(' ');
        o.push_str(c);
        o.push_str(" |");
    }
    o.push('\n');
}

fn status(s: Status) -> String {
    match s {
        Status::Pass => "\u{2705} PASS".into(),
        Status::Fail => "\u{274c} **FAIL**".into(),
        Status::Unverified => "\u{274c} **NO VERIFICATION**".into(),
    }
}

fn pass(ok: bool) -> String {
    status(if ok { Status::Pass } else { Status::Fail })
}

/// A code span that holds any text: the fence is longer than any backtick run inside, and `|` is
/// escaped because GFM splits table cells before it parses code spans.
pub fn code(s: &str) -> String {
    let s = one_line(s).replace('|', "\\|");
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    // A space on each side keeps a leading or trailing backtick off the fence; CommonMark strips it.
    let pad = if s.starts_with('`') || s.ends_with('`') || s.is_empty() {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// Plain text with every character escaped that could start markup in mid-line (text never starts
/// a line here, so `#` and list markers are inert; `(` only matters after an escaped `]`).
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in one_line(s).chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '&' | '~'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Table rows are single lines; error messages often are not.
fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(code("shop"), "`shop`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
        assert_eq!(code("a|b"), "`a\\|b`");
        assert_eq!(text("<script>|*x*"), "\\<script\\>\\|\\*x\\*");
        assert_eq!(text("line1\nline2"), "line1 line2");
    }
}
