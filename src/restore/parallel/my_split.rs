//! Cutting a mariadb-dump/mysqldump into units at the section titles it writes, where the mariadb
//! client's own parser ([`MysqlCounter`]) sees them.
//!
//! mariadb-dump writes each table as one run: `-- Table structure for table `t`` (DROP, CREATE,
//! the character set it saved and puts back), `-- Dumping data for table `t`` (LOCK TABLES, the
//! INSERTs, UNLOCK TABLES), then the table's triggers, each wrapped in the session settings it
//! saves and puts back. That run is one unit: it touches its table, and the tables its CREATE
//! TABLE's foreign keys reference (foreign key checks are off for the load, as the dump's header
//! sets, but two tables that reference each other are still not created at once). A view's
//! placeholder (`-- Temporary table structure for view`) is a unit of its own. The header (the
//! session settings every connection needs: `SET NAMES`, `FOREIGN_KEY_CHECKS=0`, ...) is replayed
//! on each connection; the final views, routines and events run alone at the end, in order.

use anyhow::{bail, Context, Result};
use memchr::{memchr, memmem};

use super::{Feeder, Splitter};
use crate::sql::MysqlCounter;

/// A line longer than this cannot be a section title: it goes on without being held.
const LINE_HOLD: usize = 4096;
/// A CREATE TABLE is held up to this to find the tables its foreign keys reference; a longer
/// structure section makes its unit wait for everything before it.
const STRUCTURE_HOLD: usize = 256 * 1024;
/// The header a dump tool writes is a dozen SET statements; a bigger one loads as one stream.
const HEADER_MAX: usize = 64 * 1024;

enum Section {
    /// Before the first title: the session settings.
    Header,
    /// A table's structure, held until its foreign keys are known.
    Structure { table: String },
    /// A unit that has started.
    Running { table: Option<String> },
}

pub struct MySplit {
    lex: MysqlCounter,
    titles: u64,
    /// The current line, held until it is known whether it is a title.
    line: Vec<u8>,
    line_held: bool,
    section: Section,
    held: Vec<u8>,
    one_stream: bool,
}

impl MySplit {
    pub fn new() -> Self {
        Self {
            lex: MysqlCounter::new(),
            titles: 0,
            line: Vec::new(),
            line_held: true,
            section: Section::Header,
            held: Vec::new(),
            one_stream: false,
        }
    }

    /// Bytes of the current section, held or sent on.
    fn put(&mut self, bytes: &[u8], to: &mut Feeder) -> Result<()> {
        match &self.section {
            Section::Running { .. } => to.data(bytes),
            Section::Header => {
                self.held.extend_from_slice(bytes);
                if self.held.len() > HEADER_MAX {
                    self.one_stream = true;
                    self.start(to, Vec::new(), || "the dump's header".into())?;
                    self.section = Section::Running { table: None };
                }
                Ok(())
            }
            Section::Structure { table } => {
                self.held.extend_from_slice(bytes);
                if self.held.len() > STRUCTURE_HOLD {
                    let table = table.clone();
                    self.start(to, Vec::new(), || format!("table {table}"))?;
                    self.section = Section::Running { table: None };
                }
                Ok(())
            }
        }
    }

    /// Starts a unit with what was held.
    fn start(
        &mut self,
        to: &mut Feeder,
        keys: Vec<String>,
        label: impl FnOnce() -> String,
    ) -> Result<()> {
        let keys = if self.one_stream { Vec::new() } else { keys };
        to.start(label, keys)?;
        let held = std::mem::take(&mut self.held);
        to.data(&held)
    }

    /// Ends the current section: a held one starts its unit.
    fn end_section(&mut self, to: &mut Feeder) -> Result<()> {
        match std::mem::replace(&mut self.section, Section::Running { table: None }) {
            Section::Header => {
                let header = (!self.one_stream).then(|| self.held.clone());
                self.start(to, Vec::new(), || "the dump's header".into())?;
                if let Some(h) = header {
                    // Every other connection runs the header before its first unit.
                    to.session(h);
                }
                Ok(())
            }
            Section::Structure { table } => {
                let mut keys = vec![table.clone()];
                for r in references(&self.held) {
                    if !keys.contains(&r) {
                        keys.push(r);
                    }
                }
                self.start(to, keys, || format!("table {table}"))?;
                self.section = Section::Running { table: Some(table) };
                Ok(())
            }
            running => {
                self.section = running;
                Ok(())
            }
        }
    }

    /// A section title line ended (it is in `self.line`, not yet sent).
    fn title(&mut self, to: &mut Feeder) -> Result<()> {
        let (kind, name) = parse_title(self.lex.title());
        match (kind, name) {
            (Title::Data, Some(t)) if matches!(&self.section, Section::Structure { table } | Section::Running { table: Some(table) } if *table == t) =>
            {
                // The data of the table whose structure came just before: the same unit.
                self.end_section(to)
            }
            (Title::Structure | Title::Data, Some(t)) => {
                self.end_section(to)?;
                self.section = Section::Structure { table: t };
                Ok(())
            }
            (Title::View, Some(v)) => {
                self.end_section(to)?;
                self.start(to, vec![format!("view {v}")], || format!("view {v}"))?;
                self.section = Section::Running { table: None };
                Ok(())
            }
            _ => {
                self.end_section(to)?;
                let label = String::from_utf8_lossy(self.lex.title()).into_owned();
                self.start(to, Vec::new(), || label)?;
                self.section = Section::Running { table: None };
                Ok(())
            }
        }
    }
}

impl Splitter for MySplit {
    fn feed(&mut self, mut data: &[u8], to: &mut Feeder) -> Result<()> {
        while !data.is_empty() {
            let end = memchr(b'\n', data).map_or(data.len(), |i| i + 1);
            let piece = &data[..end];
            data = &data[end..];
            self.lex.feed(piece);
            let complete = piece.ends_with(b"\n");
            if self.line_held {
                self.line.extend_from_slice(piece);
                if !complete && self.line.len() > LINE_HOLD {
                    let line = std::mem::take(&mut self.line);
                    self.put(&line, to)?;
                    self.line_held = false;
                }
            } else {
                self.put(piece, to)?;
            }
            if complete {
                let titled = self.lex.titles() > self.titles;
                self.titles = self.lex.titles();
                if titled && self.line_held {
                    self.title(to)?;
                }
                let line = std::mem::take(&mut self.line);
                self.put(&line, to)?;
                self.line = line;
                self.line.clear();
                self.line_held = true;
            }
        }
        Ok(())
    }

    fn finish(&mut self, to: &mut Feeder) -> Result<()> {
        let line = std::mem::take(&mut self.line);
        self.put(&line, to)?;
        if matches!(self.section, Section::Header) {
            // No title at all: one stream, and nothing to replay.
            self.one_stream = true;
        }
        self.end_section(to)?;
        self.lex
            .finish()
            .context("the dump is not a complete mariadb-dump")?;
        if !self.lex.at_statement_start() {
            bail!("the dump ends inside a statement (or with a delimiter other than `;`)");
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Title {
    Structure,
    Data,
    View,
    Other,
}

/// `-- Table structure for table `a``b`` -> (Structure, Some("a`b")).
fn parse_title(line: &[u8]) -> (Title, Option<String>) {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    for (prefix, kind) in [
        (&b"-- Table structure for table `"[..], Title::Structure),
        (b"-- Dumping data for table `", Title::Data),
        (b"-- Temporary table structure for view `", Title::View),
    ] {
        if let Some(rest) = line.strip_prefix(prefix) {
            return match unquote(rest) {
                Some(name) => (kind, Some(name)),
                None => (Title::Other, None),
            };
        }
    }
    (Title::Other, None)
}

/// A backtick-quoted name's body up to its closing backtick, which must end the text.
fn unquote(rest: &[u8]) -> Option<String> {
    let (name, used) = backtick_name(rest)?;
    (used == rest.len()).then_some(name)
}

/// The name at the start of `rest` (after its opening backtick), with doubled backticks made single,
/// and how many bytes it took with its closing backtick; None when it is not closed or not UTF-8.
fn backtick_name(rest: &[u8]) -> Option<(String, usize)> {
    let mut name = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        if rest[i] == b'`' {
            if rest.get(i + 1) == Some(&b'`') {
                name.push(b'`');
                i += 2;
                continue;
            }
            return String::from_utf8(name).ok().map(|n| (n, i + 1));
        }
        name.push(rest[i]);
        i += 1;
    }
    None
}

/// The tables a CREATE TABLE's foreign keys reference (`REFERENCES `t``).
fn references(text: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = memmem::find(rest, b"REFERENCES `") {
        rest = &rest[i + 12..];
        match backtick_name(rest) {
            Some((name, used)) => {
                out.push(name);
                rest = &rest[used..];
            }
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_and_references() {
        assert_eq!(
            parse_title(b"-- Table structure for table `we``ird`\n"),
            (Title::Structure, Some("we`ird".into()))
        );
        assert_eq!(
            parse_title(b"-- Dumping data for table `order details`"),
            (Title::Data, Some("order details".into()))
        );
        assert_eq!(
            parse_title(b"-- Temporary table structure for view `v`"),
            (Title::View, Some("v".into()))
        );
        assert_eq!(
            parse_title(b"-- Dumping data for table `t` and more"),
            (Title::Other, None)
        );
        assert_eq!(
            parse_title(b"-- Dumping routines for database 'x'"),
            (Title::Other, None)
        );
        assert_eq!(
            references(b"CONSTRAINT `a` FOREIGN KEY (`x`) REFERENCES `customers` (`id`),\n  CONSTRAINT `b` FOREIGN KEY (`y`) REFERENCES `p``q` (`sku`)"),
            vec!["customers".to_string(), "p`q".to_string()]
        );
    }
}
