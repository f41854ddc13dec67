//! Metrics for Prometheus: a file in the text exposition format (`metrics_file`), written for
//! node_exporter's textfile collector by push ([`push`]) and by the office commands ([`office`]).
//!
//! Each writer owns some families and some of their samples (push: the `offsite_push_*` samples of
//! its host). A write reads the previous file, replaces only what the writer owns, and keeps the
//! rest: so push and the office may share one file, and a failed push keeps each source's last
//! *success* from the run that had it (staleness alerts depend on that value never going back).
//!
//! A family is a few lines: `Family::gauge(name, help)` and one `sample` per label set.

pub mod keys;
pub mod office;
pub mod push;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use anyhow::{Context, Result};

/// A family's TYPE line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Untyped,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Untyped => "untyped",
        }
    }

    fn parse(s: &str) -> Kind {
        match s {
            "gauge" => Kind::Gauge,
            "counter" => Kind::Counter,
            _ => Kind::Untyped,
        }
    }
}

/// Label name and value pairs, in the order written.
pub type Labels = Vec<(String, String)>;

/// One metric family: its name, HELP text, TYPE, and samples keyed by their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub samples: BTreeMap<Labels, f64>,
}

impl Family {
    pub fn gauge(name: &str, help: &str) -> Self {
        Self {
            name: name.to_string(),
            help: help.to_string(),
            kind: Kind::Gauge,
            samples: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) the sample with these labels.
    pub fn sample(mut self, labels: &[(&str, &str)], value: f64) -> Self {
        self.set(labels, value);
        self
    }

    pub fn set(&mut self, labels: &[(&str, &str)], value: f64) {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.insert(labels, value);
    }

    /// The value of the sample with these labels.
    pub fn get(&self, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(l, _)| {
                l.len() == labels.len()
                    && l.iter()
                        .zip(labels)
                        .all(|((k, v), (k2, v2))| k == k2 && v == v2)
            })
            .map(|(_, v)| *v)
    }
}

/// The value of `label` in a sample's labels.
pub fn label<'a>(labels: &'a Labels, name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The families of one metrics file, by name.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub families: BTreeMap<String, Family>,
}

impl Metrics {
    /// Puts `new`'s samples in, after dropping the old samples of that family for which `owned`
    /// says yes: those this writer answers for. Other writers' samples stay as they were.
    pub fn replace(&mut self, new: Family, owned: impl Fn(&Labels) -> bool) {
        match self.families.get_mut(&new.name) {
            Some(f) => {
                f.samples.retain(|l, _| !owned(l));
                f.help = new.help;
                f.kind = new.kind;
                f.samples.extend(new.samples);
            }
            None => {
                self.families.insert(new.name.clone(), new);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&Family> {
        self.families.get(name)
    }

    /// The text exposition format: `# HELP`, `# TYPE`, then the samples of each family.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in self.families.values().filter(|f| !f.samples.is_empty()) {
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
            for (labels, value) in &f.samples {
                out.push_str(&f.name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {}", number(*value));
            }
        }
        out
    }

    /// Reads a file this module wrote (any exposition-format file, as far as gauges go). Lines it
    /// cannot read are left out with a warning: the next write starts them afresh.
    pub fn parse(text: &str) -> Self {
        fn family<'a>(m: &'a mut Metrics, name: &str) -> &'a mut Family {
            m.families
                .entry(name.to_string())
                .or_insert_with(|| Family {
                    name: name.to_string(),
                    help: String::new(),
                    kind: Kind::Untyped,
                    samples: BTreeMap::new(),
                })
        }
        let mut m = Metrics::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                family(&mut m, name).help = unescape(help);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                family(&mut m, name).kind = Kind::parse(kind.trim());
            } else if line.starts_with('#') {
                continue;
            } else {
                match parse_sample(line) {
                    Some((name, labels, value)) => {
                        family(&mut m, &name).samples.insert(labels, value);
                    }
                    None => tracing::warn!("metrics file: cannot read the line {line:?}; dropped"),
                }
            }
        }
        m
    }

    /// The previous content of `path`; empty when there is none.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => {
                Err(e).with_context(|| format!("reading the metrics file {}", path.display()))
            }
        }
    }
}

/// Reads `path`, lets `change` replace what this writer owns, and writes the file back
/// atomically: a temporary file in the same folder (never named `*.prom`, so the collector
/// ignores it), fsync, rename. The folder is locked (flock) meanwhile, so push and an office
/// command sharing the file never lose each other's samples.
pub fn update(path: &Path, change: impl FnOnce(&mut Metrics)) -> Result<()> {
    let what = || format!("writing the metrics file {}", path.display());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the folder {} (metrics_file)", dir.display()))
        .with_context(what)?;
    let dir_handle = std::fs::File::open(dir)
        .with_context(|| format!("opening the folder {} (metrics_file)", dir.display()))
        .with_context(what)?;
    // SAFETY: flock on a descriptor we own; released when `dir_handle` is dropped.
    if unsafe { libc::flock(dir_handle.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("locking the folder {}", dir.display()))
            .with_context(what);
    }
    let mut m = Metrics::load(path)?;
    change(&mut m);
    let mut tmp = tempfile::Builder::new()
        .prefix(".offsite-metrics.")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(what)?;
    tmp.write_all(m.render().as_bytes()).with_context(what)?;
    // node_exporter runs as a user of its own: the file is for every reader (it holds no secret).
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(what)?;
    tmp.as_file().sync_all().with_context(what)?;
    tmp.persist(path).with_context(what)?;
    // The rename itself reaches the disk with the folder.
    let _ = dir_handle.sync_all();
    Ok(())
}

/// Seconds since the Unix epoch, as a sample value.
pub fn timestamp(t: time::OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `name{a="x",b="y"} value [timestamp]`.
fn parse_sample(line: &str) -> Option<(String, Labels, f64)> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Labels::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            while chars
                .next_if(|(_, c)| *c == ',' || c.is_whitespace())
                .is_some()
            {}
            match chars.peek() {
                Some((i, '}')) => {
                    rest = &body[i + 1..];
                    break;
                }
                None => return None,
                _ => {}
            }
            let mut key = String::new();
            while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=') {
                key.push(c);
            }
            chars.next(); // '='
            if chars.next().map(|(_, c)| c) != Some('"') {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()? {
                        (_, 'n') => value.push('\n'),
                        (_, c) => value.push(c),
                    },
                    (_, '"') => break,
                    (_, c) => value.push(c),
                }
            }
            labels.push((key.trim().to_string(), value));
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name.to_string(), labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_and_escaped_labels_and_reads_them_back() {
        let mut m = Metrics::default();
        m.replace(
            Family::gauge("offsite_x_seconds", "A \\ help\nline.")
                .sample(&[("host", "web\"1"), ("source", "a\\b\nc")], 1.5)
                .sample(&[("host", "web2"), ("source", "s")], 1733400000.0),
            |_| true,
        );
        let text = m.render();
        assert!(text.contains("# HELP offsite_x_seconds A \\\\ help\\nline.\n"));
        assert!(text.contains("# TYPE offsite_x_seconds gauge\n"));
        assert!(text.contains(r#"offsite_x_seconds{host="web\"1",source="a\\b\nc"} 1.5"#));
        assert!(text.contains(r#"offsite_x_seconds{host="web2",source="s"} 1733400000"#));
        let back = Metrics::parse(&text);
        assert_eq!(back.families, m.families);
    }

    #[test]
    fn replace_keeps_what_the_writer_does_not_own() {
        let mut m = Metrics::default();
        m.replace(
            Family::gauge("f", "h")
                .sample(&[("host", "a")], 1.0)
                .sample(&[("host", "b")], 2.0),
            |_| true,
        );
        m.replace(Family::gauge("f", "h").sample(&[("host", "a")], 3.0), |l| {
            label(l, "host") == Some("a")
        });
        let f = m.get("f").unwrap();
        assert_eq!(f.get(&[("host", "a")]), Some(3.0));
        assert_eq!(f.get(&[("host", "b")]), Some(2.0));
    }

    #[test]
    fn unreadable_lines_are_dropped() {
        let m = Metrics::parse("# TYPE f gauge\nf{host=\"a} 1\nf 2\ng{x=\"1\"} nope\n");
        assert_eq!(m.get("f").unwrap().get(&[]), Some(2.0));
        assert!(m.get("g").is_none_or(|g| g.samples.is_empty()));
    }
}
