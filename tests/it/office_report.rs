//! `offsite report`: verify and pull records (built here, saved where the real commands save them)
//! rendered to JSON, Markdown and HTML by the real binary. The JSON is checked against the published
//! schema with Python's jsonschema, and the HTML is rendered by headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::office::*;
use offsite::office::record::VerifyRecord;
use serde_json::Value;

const SERVICES: &str = "run `make services` (it installs chromium and jsonschema)";

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn report_json(o: &OfficeSetup) -> Value {
    serde_json::from_str(&read(&o.reports_dir().join("report.json"))).expect("report.json")
}

/// To look at a test's report: `OFFSITE_REPORT_KEEP=DIR cargo test --test office_report` copies
/// it (and the screenshot, if any) to DIR/NAME/.
fn keep(o: &OfficeSetup, name: &str) {
    let Some(dir) = std::env::var_os("OFFSITE_REPORT_KEEP") else {
        return;
    };
    let dir = PathBuf::from(dir).join(name);
    let _ = std::fs::create_dir_all(&dir);
    for f in ["report.html", "report.md", "report.json"] {
        let _ = std::fs::copy(o.reports_dir().join(f), dir.join(f));
    }
    let _ = std::fs::copy(o.setup.path("shot.png"), dir.join("shot.png"));
}

fn assert_valid(o: &OfficeSetup) {
    let errors = schema_errors(&o.reports_dir().join("report.json"));
    assert!(
        errors.is_empty(),
        "report.json violates the schema:\n{}",
        errors.join("\n")
    );
}

/// Nightly records for `host`, oldest first: `nights` snapshots, the newest `newest_hours` old.
fn nightly(
    o: &OfficeSetup,
    host: &str,
    nights: u16,
    newest_hours: f64,
    make: impl Fn(u16) -> VerifyRecord,
) {
    for i in 0..nights {
        let mut r = make(i);
        let hours = newest_hours + f64::from(nights - 1 - i) * 24.0;
        let fresh = record(host, hours, i, Vec::new(), Vec::new());
        r.snapshot = fresh.snapshot;
        r.snapshot_time = fresh.snapshot_time;
        r.verified_at = fresh.verified_at;
        o.save(&r);
    }
}

fn healthy_web1(i: u16) -> VerifyRecord {
    let grow = u64::from(i);
    let mut shop = db(
        "postgres/shop",
        (180 << 20) + grow * (2 << 20),
        &[
            ("public.orders", 120_000 + grow * 900),
            ("public.customers", 8_200 + grow * 40),
            ("public.order_lines", 410_000 + grow * 3000),
        ],
    );
    shop.checks = vec![check(
        "select max(created_at) > now() - interval '26 hours' from orders",
        "true",
        "t",
        true,
    )];
    record(
        "web1",
        0.0,
        i,
        vec![shop, db("mysql/crm", 64 << 20, &[("crm.contacts", 5_000)])],
        vec![tree("www", 18_412, 2 << 30)],
    )
}

fn healthy_db1(i: u16) -> VerifyRecord {
    record(
        "db1",
        0.0,
        i,
        vec![db(
            "postgres/ledger",
            (1 << 30) + u64::from(i) * (8 << 20),
            &[("public.entries", 9_000_000 + u64::from(i) * 20_000)],
        )],
        Vec::new(),
    )
}

#[test]
fn all_hosts_pass_exits_zero_and_json_validates() {
    let o = OfficeSetup::new(&["web1", "db1"]);
    nightly(&o, "web1", 7, 4.0, healthy_web1);
    nightly(&o, "db1", 40, 5.0, healthy_db1);
    o.save_pull(&pull(&[
        ("web1", 4.0, Vec::new()),
        ("db1", 5.0, Vec::new()),
    ]));

    let run = o.offsite(&["report"]).expect(0);
    let files: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(files.len(), 3, "{}", run.stdout);
    for name in ["report.json", "report.md", "report.html"] {
        assert!(o.reports_dir().join(name).is_file(), "{name}");
        assert!(run.stdout.contains(name), "{}", run.stdout);
    }
    assert!(
        run.stderr.contains("all 2 hosts verified"),
        "{}",
        run.stderr
    );
    assert_valid(&o);

    let j = report_json(&o);
    assert_eq!(j["format"], "offsite-report");
    assert_eq!(j["version"], 1);
    assert_eq!(j["ok"], true);
    assert_eq!(j["summary"]["failing"], 0);
    assert_eq!(
        j["warnings"],
        Value::Array(Vec::new()),
        "{:#}",
        j["warnings"]
    );
    let hosts = j["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 2);
    let db1 = &hosts[0];
    assert_eq!(db1["host"], "db1");
    assert_eq!(db1["status"], "pass");
    // 40 runs recorded, the newest 30 kept, newest first.
    let history = db1["history"].as_array().expect("history");
    assert_eq!(history.len(), 30);
    assert_eq!(history[0]["snapshot"], db1["latest"]["snapshot"]);
    assert!(history[0]["snapshot"].as_str() > history[1]["snapshot"].as_str());
    let web1 = &hosts[1];
    let shop = &web1["latest"]["databases"][0];
    assert_eq!(shop["source"], "postgres/shop");
    assert_eq!(shop["change"]["delta_bytes"], 2 << 20);
    assert_eq!(shop["tables"][0]["name"], "public.customers");
    assert_eq!(shop["tables"][0]["delta_rows"], 40);
    assert_eq!(web1["newest_complete"]["source"], "pull");
    assert_eq!(web1["newest_complete"]["fresh"], true);

    // The schema is strict: an unknown key is an error, not silently accepted.
    let mut bad = j.clone();
    bad["hosts"][0]["surprise"] = Value::Bool(true);
    bad["hosts"][1]["latest"]["databases"][0]
        .as_object_mut()
        .expect("db")
        .remove("change");
    let bad_path = o.setup.path("bad.json");
    std::fs::write(&bad_path, serde_json::to_vec(&bad).expect("json")).expect("write");
    let errors = schema_errors(&bad_path);
    assert!(errors.iter().any(|e| e.contains("surprise")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("'change' is a required")),
        "{errors:?}"
    );

    // --out and --json
    let out = o.setup.path("elsewhere");
    let run = o
        .offsite(&["--json", "report", "--out", out.to_str().expect("utf-8")])
        .expect(0);
    let s: Value = serde_json::from_str(&run.stdout).expect("--json output");
    assert_eq!(s["ok"], true);
    assert_eq!(s["status"], "pass");
    assert_eq!(s["html"], out.join("report.html").to_str().expect("utf-8"));
    assert!(out.join("report.md").is_file());
}

fn failing_web1(o: &OfficeSetup) {
    nightly(o, "web1", 3, 4.0, healthy_web1);
    let mut newest = healthy_web1(3);
    let at = record("web1", 1.0, 3, Vec::new(), Vec::new());
    (newest.snapshot, newest.snapshot_time) = (at.snapshot, at.snapshot_time);
    let shop = &mut newest.databases[0];
    shop.ok = false;
    shop.error = Some("psql: ERROR:  relation \"public.orders\" does not exist".into());
    if let Some(t) = shop.tables.get_mut("public.orders") {
        t.restored = None;
    }
    shop.checks[0].ok = false;
    shop.checks[0].value = Some("f".into());
    newest.ok = false;
    o.save(&newest);
}

#[test]
fn newest_verification_failed_exits_one() {
    let o = OfficeSetup::new(&["web1", "db1"]);
    failing_web1(&o);
    nightly(&o, "db1", 3, 5.0, healthy_db1);
    let run = o.offsite(&["report"]).expect(1);
    assert!(run.stderr.contains("FAIL web1"), "{}", run.stderr);
    assert!(
        run.stderr.contains("1 of 2 hosts failing"),
        "{}",
        run.stderr
    );
    assert_valid(&o);
    let j = report_json(&o);
    assert_eq!(j["ok"], false);
    assert_eq!(j["hosts"][0]["status"], "pass");
    assert_eq!(j["hosts"][1]["status"], "fail");
    let shop = &j["hosts"][1]["latest"]["databases"][0];
    assert_eq!(shop["ok"], false);
    assert!(shop["error"]
        .as_str()
        .is_some_and(|e| e.contains("does not exist")));
    assert_eq!(shop["tables"][2]["name"], "public.orders");
    assert_eq!(shop["tables"][2]["restored"], Value::Null);
    assert_eq!(shop["tables"][2]["ok"], false);

    let md = read(&o.reports_dir().join("report.md"));
    assert!(md.contains("**1 of 2 hosts failing**"), "{md}");
    assert!(md.contains("| `web1` | \u{274c} **FAIL** |"), "{md}");
    let html = read(&o.reports_dir().join("report.html"));
    assert!(html.contains("1 of 2 hosts failing"));
    assert!(html.contains("class=\"banner bad\""));

    // A failure in the past does not fail tonight's report once the newest snapshot passes.
    let mut fixed = healthy_web1(4);
    fixed.snapshot = record("web1", 0.5, 9, Vec::new(), Vec::new()).snapshot;
    o.save(&fixed);
    o.offsite(&["report"]).expect(0);
    let j = report_json(&o);
    assert_eq!(j["hosts"][1]["history"][1]["ok"], false);
}

#[test]
fn configured_host_without_verification_exits_one() {
    let o = OfficeSetup::new(&["web1", "db1"]);
    nightly(&o, "web1", 2, 4.0, healthy_web1);
    let run = o.offsite(&["report"]).expect(1);
    assert!(
        run.stderr.contains("FAIL db1: no verification recorded"),
        "{}",
        run.stderr
    );
    assert_valid(&o);
    let j = report_json(&o);
    assert_eq!(j["hosts"][0]["host"], "db1");
    assert_eq!(j["hosts"][0]["status"], "unverified");
    assert_eq!(j["hosts"][0]["latest"], Value::Null);
    assert_eq!(j["summary"]["failing"], 1);

    // --host narrows the report to one host, and the exit code with it.
    o.offsite(&["report", "--host", "web1"]).expect(0);
    assert_eq!(report_json(&o)["hosts"].as_array().map(Vec::len), Some(1));
    o.offsite(&["report", "--host", "nope"]).expect(2);

    // No verify records at all: every host fails, nothing crashes.
    let empty = OfficeSetup::new(&["web1"]);
    empty.offsite(&["report"]).expect(1);
    assert_valid(&empty);
}

#[test]
fn warnings_for_shrinking_stale_abandoned_and_record_warnings() {
    let o = OfficeSetup::new(&["web1", "db1"]);
    o.config("  max_age: 30h");
    let dbs = |shop_mib: u64, crm_mib: u64, orders, sessions, contacts| {
        vec![
            db(
                "postgres/shop",
                shop_mib << 20,
                &[("public.orders", orders), ("public.sessions", sessions)],
            ),
            db("mysql/crm", crm_mib << 20, &[("crm.contacts", contacts)]),
        ]
    };
    let before = dbs(100, 50, 10_000, 1_000, 1_000);
    o.save(&record("web1", 64.0, 1, before, Vec::new()));
    // shop: 100 -> 60 MiB (-40%), orders -60%; sessions -30% exactly (not more: no warning);
    // crm: size -2% (no warning) but contacts -40%.
    let mut after = dbs(60, 49, 4_000, 700, 600);
    after[1].warnings = vec![
        "table crm.legacy is not InnoDB: --single-transaction cannot make its dump consistent"
            .into(),
    ];
    let mut newest = record("web1", 40.0, 2, after, Vec::new());
    newest.warnings = vec!["tree www: /var/www/cache/x changed while it was read".into()];
    o.save(&newest);

    nightly(&o, "db1", 2, 5.0, healthy_db1);
    let mut p = pull(&[(
        "db1",
        5.0,
        vec![incomplete(50.0, true), incomplete(1.5, false)],
    )]);
    p.hosts[0].error = Some("listing s3://backups/db1/: timed out".into());
    o.save_pull(&p);

    // Warnings only: every newest verification passed.
    let run = o.offsite(&["report"]).expect(0);
    assert_valid(&o);
    let j = report_json(&o);
    let warnings = j["warnings"].as_array().expect("warnings");
    let find = |kind: &str, needle: &str| {
        warnings.iter().find(|w| {
            w["kind"] == kind && w["message"].as_str().is_some_and(|m| m.contains(needle))
        })
    };
    let shop = find(
        "database_shrank",
        "postgres/shop shrank from 100.0 MiB to 60.0 MiB",
    )
    .unwrap_or_else(|| panic!("{warnings:#?}"));
    assert_eq!(shop["host"], "web1");
    assert_eq!(shop["database"], "postgres/shop");
    assert!(shop["message"]
        .as_str()
        .is_some_and(|m| m.contains("40.0%")));
    let orders = find("table_shrank", "public.orders").unwrap_or_else(|| panic!("{warnings:#?}"));
    assert_eq!(orders["table"], "public.orders");
    assert!(
        find("table_shrank", "crm.contacts").is_some(),
        "{warnings:#?}"
    );
    assert!(
        find("table_shrank", "sessions").is_none(),
        "30% exactly is not more than 30%"
    );
    assert!(
        find("database_shrank", "mysql/crm").is_none(),
        "{warnings:#?}"
    );
    let stale = find(
        "stale",
        "is 40h old (max 30h): check that push still runs on web1",
    )
    .unwrap_or_else(|| panic!("{warnings:#?}"));
    assert_eq!(stale["host"], "web1");
    assert!(
        find("stale", "db1").is_none()
            && warnings
                .iter()
                .all(|w| w["kind"] != "stale" || w["host"] == "web1")
    );
    let abandoned = find("abandoned", "abandoned").unwrap_or_else(|| panic!("{warnings:#?}"));
    assert_eq!(abandoned["host"], "db1");
    assert_eq!(
        warnings.iter().filter(|w| w["kind"] == "abandoned").count(),
        1
    );
    assert!(find("pull", "pull failed: listing s3://backups/db1/: timed out").is_some());
    // Most urgent first within a host: lost data, then age, then notes passed through.
    let kinds: Vec<&str> = warnings
        .iter()
        .filter(|w| w["host"] == "web1")
        .filter_map(|w| w["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "database_shrank",
            "table_shrank",
            "table_shrank",
            "stale",
            "record",
            "record"
        ]
    );
    let innodb = find("record", "not InnoDB").unwrap_or_else(|| panic!("{warnings:#?}"));
    assert_eq!(innodb["database"], "mysql/crm");
    assert!(find("record", "changed while it was read").is_some());
    assert_eq!(j["summary"]["warnings"], warnings.len());
    assert!(
        run.stderr.contains("warning: web1: postgres/shop shrank"),
        "{}",
        run.stderr
    );

    let web1 = &j["hosts"][1];
    assert_eq!(web1["newest_complete"]["source"], "verify");
    assert_eq!(web1["newest_complete"]["fresh"], false);
    let change = &web1["latest"]["databases"][0]["change"];
    assert_eq!(change["delta_bytes"], -(40 << 20));
    assert!((change["delta_percent"].as_f64().unwrap_or(0.0) + 40.0).abs() < 1e-9);
    let db1 = &j["hosts"][0];
    assert_eq!(db1["incomplete"].as_array().map(Vec::len), Some(2));

    let md = read(&o.reports_dir().join("report.md"));
    for needle in [
        "## Warnings",
        "**shrank**",
        "**rows dropped**",
        "**stale**",
        "**abandoned**",
        "not InnoDB",
        "**abandoned** |",
    ] {
        assert!(md.contains(needle), "{needle:?} missing from\n{md}");
    }
    keep(&o, "warnings");
    let html = read(&o.reports_dir().join("report.html"));
    for needle in [
        "shrank from 100.0 MiB to 60.0 MiB",
        "ABANDONED",
        "not InnoDB",
        "is 40h old",
    ] {
        assert!(html.contains(needle), "{needle:?} missing from the HTML");
    }
}

#[test]
fn html_is_self_contained_and_escapes_names() {
    let o = OfficeSetup::new(&["web1"]);
    let evil = "postgres/<script>alert(1)</script>";
    let mut d = db(evil, 1 << 20, &[("\"q\" & <b>bold</b>", 3), ("t|`x`", 4)]);
    d.checks = vec![check(
        "select '<img onerror=alert(1)>'",
        "= 1",
        "<i>1</i>",
        true,
    )];
    o.save(&record(
        "web1",
        2.0,
        1,
        vec![d],
        vec![tree("<www>", 3, 300)],
    ));
    o.offsite(&["report"]).expect(0);
    assert_valid(&o);

    keep(&o, "escaping");
    let html = read(&o.reports_dir().join("report.html"));
    let lower = html.to_lowercase();
    for bad in [
        "http://", "https://", "src=", "<script", "<link", "@import", "url(", "<img", "<b>", "<i>",
    ] {
        assert!(!lower.contains(bad), "{bad:?} in the HTML");
    }
    assert!(html.contains("postgres/&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&quot;q&quot; &amp; &lt;b&gt;bold&lt;/b&gt;"));
    assert!(html.contains("select &#39;&lt;img onerror=alert(1)&gt;&#39;"));
    assert!(html.contains("&lt;www&gt;"));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<style>") && html.contains("<svg"));

    let md = read(&o.reports_dir().join("report.md"));
    assert!(md.contains("`postgres/<script>alert(1)</script>`"), "{md}");
    assert!(md.contains("| `` t\\|`x` `` |"), "{md}");
    // Every table row keeps its column count: no name opened an extra cell.
    for table in md.split("\n\n").filter(|b| b.starts_with('|')) {
        let cells: Vec<usize> = table
            .lines()
            .map(|l| l.replace("\\|", "").matches('|').count())
            .collect();
        assert!(cells.windows(2).all(|w| w[0] == w[1]), "{table}");
    }
}

fn chromium() -> PathBuf {
    let c = PathBuf::from("/usr/bin/chromium");
    assert!(c.exists(), "/usr/bin/chromium is missing: {SERVICES}");
    c
}

/// Runs headless Chromium on `page` until `done` accepts the result. Under heavy load we have seen
/// it exit 0 having printed or written nothing, so an empty result gets two more tries; a page that
/// renders wrong fails on every try and still fails the test.
fn run_chromium(
    profile: &Path,
    args: &[&str],
    page: &Path,
    done: impl Fn(&std::process::Output) -> bool,
) -> std::process::Output {
    let mut last = None;
    for attempt in 1..=3 {
        let _ = std::fs::remove_dir_all(profile);
        let out = Command::new("timeout")
            .arg("120")
            .arg(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("running chromium");
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if done(&out) {
            return out;
        }
        eprintln!("chromium attempt {attempt} produced nothing; retrying");
        last = Some(out);
    }
    last.expect("at least one attempt")
}

#[test]
fn html_renders_in_headless_chromium() {
    let o = OfficeSetup::new(&["web1", "db1"]);
    failing_web1(&o);
    nightly(&o, "db1", 12, 5.0, healthy_db1);
    o.save_pull(&pull(&[("db1", 5.0, vec![incomplete(50.0, true)])]));
    o.offsite(&["report"]).expect(1);
    let page = o.reports_dir().join("report.html");
    if let Ok(d) = std::env::var("DBG_COPY") {
        let _ = std::fs::copy(&page, d);
    }

    let out = run_chromium(&o.setup.path("profile-dom"), &["--dump-dom"], &page, |o| {
        !o.stdout.is_empty()
    });
    let dom = String::from_utf8_lossy(&out.stdout);
    let show = || {
        format!(
            "--- DOM ({} bytes)\n{}\n--- stderr\n{}",
            dom.len(),
            dom.chars().take(2000).collect::<String>(),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    for needle in [
        "<table",
        "web1",
        "db1",
        "postgres/shop",
        "postgres/ledger",
        "public.order_lines",
        ">PASS<",
        ">FAIL<",
        "1 of 2 hosts failing",
        "<rect class=\"bar pass\"",
    ] {
        assert!(
            dom.contains(needle),
            "{needle:?} not in the rendered DOM\n{}",
            show()
        );
    }

    let shot = o.setup.path("shot.png");
    let arg = format!("--screenshot={}", shot.display());
    run_chromium(
        &o.setup.path("profile-shot"),
        &[&arg, "--window-size=1200,1600"],
        &page,
        |_| shot.is_file(),
    );
    keep(&o, "chromium");
    let png = std::fs::read(&shot).expect("screenshot written");
    let img = png::decode(&png);
    assert_eq!((img.width, img.height), (1200, 1600));
    // Not blank: many colours, the red failure banner and the green PASS pills among them.
    let colours: std::collections::HashSet<[u8; 3]> = img.pixels.iter().copied().collect();
    assert!(colours.len() > 200, "only {} colours", colours.len());
    let count = |f: &dyn Fn(&[u8; 3]) -> bool| img.pixels.iter().filter(|p| f(p)).count();
    let red = count(&|[r, g, b]| *r > 150 && *g < 90 && *b < 90);
    let green = count(&|[r, g, b]| *g > 100 && *r < 80 && *b < 120 && *g > *r + 40);
    assert!(red > 10_000, "{red} red pixels: no failure banner?");
    assert!(green > 200, "{green} green pixels: no PASS pill?");
}

/// A signer with a long unbroken fingerprint stays inside its cell of the fact grid: Chromium lays
/// the page out at a narrow and a wide width, and a script measures every fact's value against its
/// cell and every cell against its neighbour.
#[test]
fn a_long_signer_fingerprint_stays_in_its_fact_cell() {
    let o = OfficeSetup::new(&["web1"]);
    let fingerprint = "0123456789ABCDEF".repeat(5);
    let mut r = healthy_web1(0);
    r.signer = format!("offsite-web1-signing-key<{fingerprint}>");
    o.save(&r);
    o.offsite(&["report"]).expect(0);
    let html = read(&o.reports_dir().join("report.html"));
    assert!(
        html.contains(&fingerprint),
        "the signer is not in the report"
    );
    assert!(
        html.contains(".fact{min-width:0}"),
        "the grid items may not shrink"
    );
    assert!(
        html.contains("overflow-wrap:anywhere"),
        "long values do not break"
    );

    // The report has no script of its own (and must not get one); a copy gets the measuring one.
    let probe = r#"<script>
var bad = [];
var facts = Array.from(document.querySelectorAll('.fact'));
facts.forEach(function (f, i) {
  var c = f.getBoundingClientRect();
  var v = f.querySelector('.v');
  var r = v.getBoundingClientRect();
  if (v.scrollWidth > v.clientWidth + 1 || r.right > c.right + 1) bad.push('value ' + i + ' overflows its cell');
  var n = facts[i + 1];
  if (n && n.parentNode === f.parentNode) {
    var m = n.getBoundingClientRect();
    if (Math.abs(m.top - c.top) < 1 && c.right > m.left + 1) bad.push('cell ' + i + ' overlaps the next');
  }
});
document.body.setAttribute('data-probe', facts.length + ' facts; ' + (bad.join(', ') || 'ok'));
</script></body>"#;
    let page = o.setup.path("probe.html");
    std::fs::write(&page, html.replace("</body>", probe)).expect("writing the probe page");
    for width in ["700,1400", "1200,1400"] {
        let size = format!("--window-size={width}");
        let out = run_chromium(
            &o.setup.path(&format!("profile-{width}")),
            &["--dump-dom", &size],
            &page,
            |o| !o.stdout.is_empty(),
        );
        let dom = String::from_utf8_lossy(&out.stdout);
        let probe = dom
            .split("data-probe=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("the probe did not run at {width}: {dom}"));
        assert!(probe.ends_with("facts; ok"), "at {width}: {probe}");
        assert!(!probe.starts_with("0 facts"), "at {width}: {probe}");
    }
}

/// Just enough PNG decoding to look at a screenshot: 8-bit RGB or RGBA, non-interlaced, every
/// filter type. flate2 is already a dependency; a PNG crate for one test is not worth it.
mod png {
    use std::io::Read;

    pub struct Image {
        pub width: usize,
        pub height: usize,
        pub pixels: Vec<[u8; 3]>,
    }

    pub fn decode(data: &[u8]) -> Image {
        assert!(data.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let (mut width, mut height, mut channels) = (0, 0, 0);
        let mut idat = Vec::new();
        let mut pos = 8;
        while pos + 8 <= data.len() {
            let len = u32::from_be_bytes(data[pos..pos + 4].try_into().expect("len")) as usize;
            let kind = &data[pos + 4..pos + 8];
            let body = &data[pos + 8..pos + 8 + len];
            match kind {
                b"IHDR" => {
                    width = u32::from_be_bytes(body[0..4].try_into().expect("w")) as usize;
                    height = u32::from_be_bytes(body[4..8].try_into().expect("h")) as usize;
                    assert_eq!(body[8], 8, "bit depth");
                    channels = match body[9] {
                        2 => 3,
                        6 => 4,
                        t => panic!("PNG colour type {t}"),
                    };
                    assert_eq!(body[12], 0, "interlaced");
                }
                b"IDAT" => idat.extend_from_slice(body),
                b"IEND" => break,
                _ => {}
            }
            pos += 12 + len;
        }
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&idat[..])
            .read_to_end(&mut raw)
            .expect("inflating IDAT");
        let stride = width * channels;
        assert_eq!(raw.len(), height * (stride + 1), "image data size");
        let mut prev = vec![0u8; stride];
        let mut pixels = Vec::with_capacity(width * height);
        for y in 0..height {
            let line = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
            let mut cur = line[1..].to_vec();
            for i in 0..stride {
                let a = if i >= channels { cur[i - channels] } else { 0 };
                let b = prev[i];
                let c = if i >= channels { prev[i - channels] } else { 0 };
                cur[i] = cur[i].wrapping_add(match line[0] {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                    4 => paeth(a, b, c),
                    f => panic!("PNG filter {f}"),
                });
            }
            pixels.extend(cur.chunks(channels).map(|p| [p[0], p[1], p[2]]));
            prev = cur;
        }
        Image {
            width,
            height,
            pixels,
        }
    }

    fn paeth(a: u8, b: u8, c: u8) -> u8 {
        let p = i16::from(a) + i16::from(b) - i16::from(c);
        let (pa, pb, pc) = (
            (p - i16::from(a)).abs(),
            (p - i16::from(b)).abs(),
            (p - i16::from(c)).abs(),
        );
        if pa <= pb && pa <= pc {
            a
        } else if pb <= pc {
            b
        } else {
            c
        }
    }
}
