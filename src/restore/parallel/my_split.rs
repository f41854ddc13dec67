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
//!
//! A big table's INSERTs are cut into parts that load on several connections at once, as
//! pg_split does with a big COPY block (otherwise the biggest table is the restore's critical
//! path). Only where the dump is exactly what mariadb-dump writes: a structure section that leaves
//! the session as it found it, then `LOCK TABLES t WRITE`, `ALTER TABLE t DISABLE KEYS` and
//! nothing but `INSERT INTO t` statements. The LOCK TABLES is left out (a write lock would make
//! the parts wait for each other; it only speeds up MyISAM key writes, and UNLOCK TABLES without
//! a lock does nothing); DISABLE KEYS stays with the structure, before every part; what follows
//! the INSERTs (ENABLE KEYS, the table's triggers) waits for every part.

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
/// A table's INSERTs are cut into parts of about this size.
const INSERT_PART: u64 = 32 * 1024 * 1024;
/// The comments, LOCK TABLES and DISABLE KEYS between a data title and the first INSERT.
const PRELUDE_MAX: usize = 4096;

/// A table's data section while its INSERTs may still be cut into parts.
struct Cut {
    table: String,
    /// The keys of the table's unit: the table and those its foreign keys reference.
    keys: Vec<String>,
    /// The quoted name as mariadb-dump writes it: `` `a``b` ``.
    quoted: Vec<u8>,
    phase: Phase,
}

enum Phase {
    /// Before the first INSERT: the lines read so far, and whether one of them (at this offset,
    /// this long) is the `LOCK TABLES t WRITE` to leave out.
    Prelude {
        held: Vec<u8>,
        lock: Option<(usize, usize)>,
    },
    /// The INSERTs: the part running and where in the stream it started.
    Parts { part: u32, from: u64 },
}

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
    /// Bytes fed so far.
    fed: u64,
    /// The current line began where a statement may start.
    line_at_start: bool,
    /// Statements ended before the current line.
    line_statements: u64,
    /// The structure section so far is what mariadb-dump writes, and leaves the session as it
    /// found it (the character set it changes is put back).
    plain_structure: bool,
    charset_changed: bool,
    cut: Option<Cut>,
    part_size: u64,
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
            fed: 0,
            line_at_start: true,
            line_statements: 0,
            plain_structure: false,
            charset_changed: false,
            cut: None,
            part_size: INSERT_PART,
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
                let keys = self.structure_keys(&table);
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
        self.settle_cut(to)?;
        let (kind, name) = parse_title(self.lex.title());
        match (kind, name) {
            (Title::Data, Some(t)) if matches!(&self.section, Section::Structure { table } | Section::Running { table: Some(table) } if *table == t) =>
            {
                // The data of the table whose structure came just before: the same unit.
                let fresh = matches!(self.section, Section::Structure { .. });
                let plain = fresh && self.plain_structure && !self.charset_changed;
                let keys = self.structure_keys(&t);
                self.end_section(to)?;
                if plain && !self.one_stream {
                    self.cut = Some(Cut {
                        quoted: quote(&t),
                        table: t,
                        keys,
                        phase: Phase::Prelude {
                            held: Vec::new(),
                            lock: None,
                        },
                    });
                }
                Ok(())
            }
            (Title::Structure | Title::Data, Some(t)) => {
                self.end_section(to)?;
                self.plain_structure = kind_is_structure(&self.lex);
                self.charset_changed = false;
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

impl MySplit {
    /// The keys of a table's unit: the table, and those its held CREATE TABLE references.
    fn structure_keys(&self, table: &str) -> Vec<String> {
        let mut keys = vec![table.to_string()];
        for r in references(&self.held) {
            if !keys.contains(&r) {
                keys.push(r);
            }
        }
        keys
    }

    /// A structure line that starts a statement: is it one mariadb-dump writes there?
    fn check_structure_line(&mut self, line: &[u8]) {
        let text = line.trim_ascii_end();
        if text.is_empty() || text.starts_with(b"--") {
            return;
        }
        if text == b"/*!40101 SET character_set_client = @saved_cs_client */;" {
            self.charset_changed = false;
        } else if text.starts_with(b"/*!40101 SET character_set_client = ") {
            self.charset_changed = true;
        } else if !(text.starts_with(b"DROP TABLE IF EXISTS `")
            || text.starts_with(b"CREATE TABLE `")
            || text == b"/*!40101 SET @saved_cs_client     = @@character_set_client */;")
        {
            self.plain_structure = false;
        }
    }

    /// The next line, as far as it was held (all of it, or its first LINE_HOLD bytes): where a
    /// table's INSERTs may be cut, this decides whether the line starts a part.
    fn put_line(&mut self, line: &[u8], to: &mut Feeder) -> Result<()> {
        if matches!(self.section, Section::Structure { .. }) && self.line_at_start {
            self.check_structure_line(line);
        }
        let Some(cut) = self.cut.as_mut() else {
            return self.put(line, to);
        };
        let insert = self.line_at_start && is_insert(line, &cut.quoted);
        match &mut cut.phase {
            Phase::Prelude { held, lock } => {
                let text = line.trim_ascii_end();
                let lock_line = [&b"LOCK TABLES "[..], &cut.quoted, b" WRITE;"].concat();
                let disable = [
                    &b"/*!40000 ALTER TABLE "[..],
                    &cut.quoted,
                    b" DISABLE KEYS */;",
                ]
                .concat();
                if insert {
                    let mut held = std::mem::take(held);
                    if let Some((at, len)) = *lock {
                        held.drain(at..at + len);
                    }
                    let (label, keys) = (
                        format!("the data of {} (part 1)", cut.table),
                        cut.keys.clone(),
                    );
                    cut.phase = Phase::Parts {
                        part: 1,
                        from: self.fed,
                    };
                    self.put(&held, to)?;
                    to.start_shared(label, keys)?;
                    return self.put(line, to);
                }
                let known = self.line_at_start
                    && line.ends_with(b"\n")
                    && held.len() + line.len() <= PRELUDE_MAX
                    && (text.is_empty()
                        || text.starts_with(b"--")
                        || text == disable.as_slice()
                        || (text == lock_line.as_slice() && lock.is_none()));
                if known {
                    if text == lock_line.as_slice() {
                        *lock = Some((held.len(), line.len()));
                    }
                    held.extend_from_slice(line);
                    return Ok(());
                }
                // Not what mariadb-dump writes here: the table loads as one unit.
                self.settle_cut(to)?;
                self.put(line, to)
            }
            Phase::Parts { part, from } => {
                if insert {
                    if self.fed - *from >= self.part_size {
                        *part += 1;
                        *from = self.fed;
                        let label = format!("the data of {} (part {part})", cut.table);
                        let keys = cut.keys.clone();
                        to.start_shared(label, keys)?;
                    }
                    return self.put(line, to);
                }
                if !self.line_at_start {
                    return self.put(line, to);
                }
                // ENABLE KEYS, UNLOCK TABLES, the triggers: after every part.
                let label = format!("the end of the data of {}", cut.table);
                let keys = cut.keys.clone();
                self.cut = None;
                to.start(|| label, keys)?;
                self.put(line, to)
            }
        }
    }

    /// Ends a data section's cutting where it stands; a prelude still held goes on unchanged.
    fn settle_cut(&mut self, to: &mut Feeder) -> Result<()> {
        if let Some(Cut {
            phase: Phase::Prelude { held, .. },
            ..
        }) = self.cut.take()
        {
            self.put(&held, to)?;
        }
        Ok(())
    }
}

/// `INSERT INTO `t` VALUES` at the start of a line (mariadb-dump's form, with or without rows on
/// the same line).
fn is_insert(line: &[u8], quoted: &[u8]) -> bool {
    line.strip_prefix(&b"INSERT INTO "[..])
        .and_then(|r| r.strip_prefix(quoted))
        .is_some_and(|r| r.starts_with(b" VALUES"))
}

/// A name quoted the way mariadb-dump quotes it.
fn quote(name: &str) -> Vec<u8> {
    format!("`{}`", name.replace('`', "``")).into_bytes()
}

fn kind_is_structure(lex: &MysqlCounter) -> bool {
    parse_title(lex.title()).0 == Title::Structure
}

impl Splitter for MySplit {
    fn feed(&mut self, mut data: &[u8], to: &mut Feeder) -> Result<()> {
        while !data.is_empty() {
            let end = memchr(b'\n', data).map_or(data.len(), |i| i + 1);
            let piece = &data[..end];
            data = &data[end..];
            if self.line_held && self.line.is_empty() {
                self.line_at_start = self.lex.at_statement_start();
                self.line_statements = self.lex.statements();
            }
            self.lex.feed(piece);
            self.fed += piece.len() as u64;
            let complete = piece.ends_with(b"\n");
            if self.line_held {
                self.line.extend_from_slice(piece);
                if !complete && self.line.len() > LINE_HOLD {
                    let line = std::mem::take(&mut self.line);
                    self.put_line(&line, to)?;
                    self.line_held = false;
                }
            } else {
                self.put(piece, to)?;
            }
            if complete {
                let ended = self.lex.statements() - self.line_statements;
                if ended > 1 || (ended == 1 && !self.lex.at_statement_start()) {
                    // Two statements on one line: only the first was looked at.
                    self.plain_structure = false;
                }
                let titled = self.lex.titles() > self.titles;
                self.titles = self.lex.titles();
                let line = std::mem::take(&mut self.line);
                if titled && self.line_held {
                    self.title(to)?;
                    self.put(&line, to)?;
                } else if self.line_held {
                    self.put_line(&line, to)?;
                }
                self.line = line;
                self.line.clear();
                self.line_held = true;
            }
        }
        Ok(())
    }

    fn finish(&mut self, to: &mut Feeder) -> Result<()> {
        self.settle_cut(to)?;
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

    const HEADER: &str = "/*!40101 SET NAMES utf8mb4 */;\n\
        /*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;\n\n";

    /// A table as mariadb-dump writes it: `structure` between DROP and the data title, `data`
    /// between its title and the first INSERT, then three INSERTs of two rows, then triggers.
    fn table(name: &str, structure: &str, data: &str) -> String {
        let name = name.replace('`', "``");
        let mut t = format!(
            "--\n-- Table structure for table `{name}`\n--\n\nDROP TABLE IF EXISTS `{name}`;\n\
             /*!40101 SET @saved_cs_client     = @@character_set_client */;\n\
             /*!40101 SET character_set_client = utf8mb4 */;\n\
             CREATE TABLE `{name}` (\n  `id` int(11) NOT NULL,\n  `p` int(11),\n  PRIMARY KEY (`id`),\n  \
             CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `parent` (`id`)\n) ENGINE=InnoDB;\n\
             {structure}\n--\n-- Dumping data for table `{name}`\n--\n\n{data}"
        );
        for i in 0..3 {
            t += &format!(
                "INSERT INTO `{name}` VALUES\n({},1),\n({},1);\n",
                2 * i,
                2 * i + 1
            );
        }
        t += &format!(
            "/*!40000 ALTER TABLE `{name}` ENABLE KEYS */;\nUNLOCK TABLES;\n\
             /*!50003 SET @saved_sql_mode       = @@sql_mode */ ;\nDELIMITER ;;\n\
             /*!50003 CREATE*/ /*!50003 TRIGGER tr AFTER INSERT ON `{name}` FOR EACH ROW SET @x = 1 */;;\n\
             DELIMITER ;\n/*!50003 SET sql_mode              = @saved_sql_mode */ ;\n"
        );
        t
    }

    const RESTORED: &str = "/*!40101 SET character_set_client = @saved_cs_client */;\n";

    fn lock(name: &str) -> String {
        format!("LOCK TABLES `{name}` WRITE;\n/*!40000 ALTER TABLE `{name}` DISABLE KEYS */;\n")
    }

    fn units(dump: &str, part_size: u64) -> Vec<(Vec<String>, bool, String)> {
        let mut split = MySplit::new();
        split.part_size = part_size;
        super::super::cut_units(&mut split, dump.as_bytes())
    }

    #[test]
    fn a_big_tables_inserts_are_cut_into_parts_between_its_structure_and_its_triggers() {
        let dump = format!(
            "{HEADER}{}-- Dump completed\n",
            table("o`rders", RESTORED, &lock("o``rders"))
        );
        let got = units(&dump, 30);
        let keys = vec!["o`rders".to_string(), "parent".to_string()];
        assert!(got[0].0.is_empty(), "the header first: {got:?}");
        let (k, shared, structure) = &got[1];
        assert!(!shared && *k == keys, "{got:?}");
        assert!(structure.contains("CREATE TABLE") && structure.ends_with("DISABLE KEYS */;\n"));
        let parts: Vec<&String> = got.iter().filter(|u| u.1).map(|u| &u.2).collect();
        assert_eq!(parts.len(), 3, "{got:?}");
        for (i, part) in parts.iter().enumerate() {
            assert_eq!(
                **part,
                format!(
                    "INSERT INTO `o``rders` VALUES\n({},1),\n({},1);\n",
                    2 * i,
                    2 * i + 1
                )
            );
        }
        assert!(got.iter().filter(|u| u.1).all(|u| u.0 == keys));
        let (k, shared, end) = &got[5];
        assert!(!shared && *k == keys);
        assert!(
            end.starts_with("/*!40000 ALTER TABLE `o``rders` ENABLE KEYS */;\nUNLOCK TABLES;\n")
        );
        assert!(
            end.contains("TRIGGER tr"),
            "the triggers after every part: {end}"
        );
        let all: String = got.iter().map(|u| u.2.as_str()).collect();
        assert!(
            !all.contains("LOCK TABLES `o``rders` WRITE"),
            "the write lock is left out"
        );
        assert_eq!(all, dump.replace("LOCK TABLES `o``rders` WRITE;\n", ""));
        // Small enough: one unit, the lock left out all the same.
        let whole = units(&dump, 1 << 20);
        assert_eq!(whole.iter().filter(|u| u.1).count(), 1);
    }

    #[test]
    fn anything_but_what_mariadb_dump_writes_keeps_a_table_in_one_unit() {
        let unchanged = |structure: &str, data: &str| {
            let dump = format!("{HEADER}{}", table("t", structure, data));
            let got = units(&dump, 1);
            assert!(got.iter().all(|u| !u.1), "not cut: {got:?}");
            let all: String = got.iter().map(|u| u.2.as_str()).collect();
            assert_eq!(all, dump, "nothing left out");
        };
        // A character set that is not put back, a statement of its own in the structure, a
        // second statement on a line, a transaction the INSERTs are part of.
        unchanged("", &lock("t"));
        unchanged(&format!("{RESTORED}SET NAMES latin1;\n"), &lock("t"));
        unchanged(
            "/*!40101 SET character_set_client = @saved_cs_client */; SET @a = 1;\n",
            &lock("t"),
        );
        unchanged(RESTORED, &format!("{}set autocommit=0;\n", lock("t")));
        unchanged(RESTORED, "LOCK TABLES `t` WRITE;\nLOCK TABLES `t` WRITE;\n");
    }
}
