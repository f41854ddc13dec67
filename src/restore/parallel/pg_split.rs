//! Cutting a plain pg_dump into units, where psql's lexer says its statements start and end.
//!
//! What may run beside other units (pg_restore's parallel items, as pg_dump writes them):
//! - a table's `COPY ... FROM stdin;` block: the table;
//! - `CREATE [UNIQUE] INDEX name ON [ONLY] table ...`: the table;
//! - `ALTER TABLE ONLY table ADD CONSTRAINT name PRIMARY KEY | UNIQUE | EXCLUDE | CHECK ...`: the
//!   table; `... FOREIGN KEY (...) REFERENCES other(...)`: both tables;
//! - `SELECT pg_catalog.setval('sequence', ...)`: the sequence.
//!
//! Everything else is a barrier: the schema before the data, views, triggers, rules, comments,
//! large objects, `ALTER INDEX ... ATTACH PARTITION`, `REFRESH MATERIALIZED VIEW`, and anything
//! offsite does not recognise. `SET` statements go to every connection. Two statements on one line,
//! a `SET` inside a transaction, or too many `SET`s make the rest of the dump one stream: offsite
//! never guesses.

use anyhow::{bail, Context, Result};
use memchr::memchr;

use super::{Feeder, Splitter};
use crate::sql::PgCounter;

/// A statement's first bytes are kept to classify it; a longer one is streamed as a barrier.
const HEAD_MAX: usize = 256 * 1024;
/// More SET statements than this (pg_dump writes a dozen) and the dump loads as one stream.
const SESSION_MAX: usize = 1000;

#[derive(PartialEq, Eq)]
enum State {
    /// Between statements: the next one's comments and first bytes are held to classify it.
    Pending,
    /// Inside a unit that has started: its bytes go straight on.
    Streaming,
}

pub struct PgSplit {
    lex: PgCounter,
    state: State,
    held: Vec<u8>,
    stmts_at_start: u64,
    /// Inside BEGIN ... COMMIT: one connection's transaction.
    in_transaction: bool,
    /// Everything from here on is a barrier.
    one_stream: bool,
    /// The COPY block being read, when it may be cut into parts: its header, its table, the
    /// bytes of its current part, and the part's number.
    copy: Option<CopyParts>,
    part_size: usize,
}

/// A big table's data is cut into parts, each a COPY of its own with the block's header, that
/// load on several connections at once (they hold the table shared): otherwise the biggest table
/// is the restore's critical path. Rows are lines, so a part ends at a line end.
struct CopyParts {
    header: Vec<u8>,
    table: String,
    bytes: usize,
    part: u32,
}

/// A COPY block is cut into parts of about this size.
const COPY_PART: usize = 32 * 1024 * 1024;

impl PgSplit {
    pub fn new() -> Self {
        Self {
            lex: PgCounter::new(),
            state: State::Pending,
            held: Vec::new(),
            stmts_at_start: 0,
            in_transaction: false,
            one_stream: false,
            copy: None,
            part_size: COPY_PART,
        }
    }

    fn release(&mut self, to: &mut Feeder) -> Result<()> {
        let held = std::mem::take(&mut self.held);
        to.data(&held)?;
        self.held = held;
        self.held.clear();
        Ok(())
    }

    /// A held statement is complete (`copy`: it is a COPY header and its data follows).
    fn classify(&mut self, to: &mut Feeder, copy: bool) -> Result<()> {
        let count = self.lex.statements() - self.stmts_at_start;
        let text = statement_text(&self.held);
        if count > 1 {
            tracing::debug!("two statements on one line: the rest of the dump loads as one stream");
            self.one_stream = true;
        }
        let single = count == 1 && !self.one_stream;
        let mut session = None;
        let keys = if !single {
            Vec::new()
        } else if copy {
            match self.lex.copy_line_start() {
                Some((table, _)) if !self.in_transaction => vec![table.to_string()],
                _ => Vec::new(),
            }
        } else if self.in_transaction {
            if ends_transaction(text) {
                self.in_transaction = false;
            } else if is_session(text) {
                self.one_stream = true;
            }
            Vec::new()
        } else if starts_transaction(text) {
            self.in_transaction = true;
            Vec::new()
        } else if is_session(text) {
            if to.session_len() >= SESSION_MAX {
                self.one_stream = true;
            } else {
                session = Some(self.held.clone());
            }
            Vec::new()
        } else {
            parallel_keys(text)
        };
        let label = match keys.first() {
            None => format!("the statements from `{}`", shorten(text)),
            Some(table) if copy => format!("the data of {table}"),
            Some(_) => format!("`{}`", shorten(text)),
        };
        self.copy = match keys.first() {
            Some(table) if copy => Some(CopyParts {
                header: text.to_vec(),
                table: table.clone(),
                bytes: 0,
                part: 1,
            }),
            _ => None,
        };
        if self.copy.is_some() {
            to.start_shared(label, keys)?;
        } else {
            to.start(|| label, keys)?;
        }
        if let Some(stmt) = session {
            // After the unit that holds it: the first connection runs it there, the others
            // replay it before their next unit.
            to.session(stmt);
        }
        self.release(to)
    }
}

impl Splitter for PgSplit {
    fn feed(&mut self, mut data: &[u8], to: &mut Feeder) -> Result<()> {
        while !data.is_empty() {
            if self.lex.in_copy() {
                // Past a part's size, one line at a time, to end the part at a row's end.
                let due = self
                    .copy
                    .as_ref()
                    .is_some_and(|c| c.bytes >= self.part_size);
                let take = match memchr(b'\n', data) {
                    Some(i) if due => i + 1,
                    _ => data.len(),
                };
                let n = self.lex.feed_copy(&data[..take]);
                to.data(&data[..n])?;
                data = &data[n..];
                if !self.lex.in_copy() {
                    self.state = State::Pending;
                    self.stmts_at_start = self.lex.statements();
                    self.copy = None;
                } else if let Some(c) = self.copy.as_mut() {
                    c.bytes += n;
                    if c.bytes >= self.part_size && self.lex.copy_line_start().is_some() {
                        c.bytes = 0;
                        c.part += 1;
                        to.data(b"\\.\n")?;
                        to.start_shared(
                            format!("the data of {} (part {})", c.table, c.part),
                            vec![c.table.clone()],
                        )?;
                        to.data(&c.header)?;
                    }
                }
                continue;
            }
            let end = memchr(b'\n', data).map_or(data.len(), |i| i + 1);
            let line = &data[..end];
            data = &data[end..];
            self.lex.feed(line);
            let complete = line.ends_with(b"\n");
            match self.state {
                State::Streaming => {
                    to.data(line)?;
                    if complete && !self.lex.in_copy() && self.lex.at_statement_start() {
                        self.state = State::Pending;
                        self.stmts_at_start = self.lex.statements();
                    }
                }
                State::Pending => {
                    self.held.extend_from_slice(line);
                    if complete && self.lex.in_copy() {
                        self.classify(to, true)?;
                        self.state = State::Streaming;
                    } else if complete && self.lex.at_statement_start() {
                        if self.lex.statements() > self.stmts_at_start {
                            self.classify(to, false)?;
                            self.stmts_at_start = self.lex.statements();
                        }
                    } else if self.held.len() > HEAD_MAX {
                        to.start(
                            || format!("the statements from `{}`", shorten(&self.held)),
                            Vec::new(),
                        )?;
                        self.release(to)?;
                        self.state = State::Streaming;
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, to: &mut Feeder) -> Result<()> {
        if !self.held.is_empty() {
            // Comments after the last statement, or an unfinished one: in order, alone.
            to.start(|| "the end of the dump".into(), Vec::new())?;
            self.release(to)?;
        }
        self.lex
            .finish()
            .context("the dump is not a complete plain pg_dump")?;
        if !self.lex.at_statement_start() {
            bail!("the dump ends inside a statement");
        }
        Ok(())
    }
}

/// The statement without the comment lines and blank space pg_dump writes before it.
fn statement_text(held: &[u8]) -> &[u8] {
    let mut s = held;
    loop {
        let t = s.trim_ascii_start();
        if t.starts_with(b"--") {
            s = match memchr(b'\n', t) {
                Some(i) => &t[i + 1..],
                None => &[],
            };
        } else {
            return t;
        }
    }
}

fn shorten(text: &[u8]) -> String {
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let s = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
    if line.len() > 80 {
        format!("{s}...")
    } else {
        s
    }
}

/// Words of a statement, for matching its start: whitespace runs count as one space.
struct Words<'a> {
    rest: &'a [u8],
}

impl<'a> Words<'a> {
    fn new(s: &'a [u8]) -> Self {
        Self { rest: s }
    }

    /// The next bytes are `word` (case-insensitive), followed by whitespace.
    fn keyword(&mut self, word: &str) -> bool {
        let r = self.rest.trim_ascii_start();
        let w = word.as_bytes();
        if r.len() > w.len()
            && r[..w.len()].eq_ignore_ascii_case(w)
            && r[w.len()].is_ascii_whitespace()
        {
            self.rest = &r[w.len()..];
            true
        } else {
            false
        }
    }

    /// A possibly schema-qualified name as pg_dump writes it (`public.t`, `"My"."T"`).
    fn name(&mut self) -> Option<String> {
        let r = self.rest.trim_ascii_start();
        let mut i = 0;
        loop {
            if r.get(i) == Some(&b'"') {
                i += 1;
                loop {
                    match r.get(i) {
                        Some(b'"') if r.get(i + 1) == Some(&b'"') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                        None => return None,
                    }
                }
            } else {
                let n = r[i..]
                    .iter()
                    .take_while(|&&b| {
                        b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
                    })
                    .count();
                if n == 0 {
                    return None;
                }
                i += n;
            }
            if r.get(i) == Some(&b'.') {
                i += 1;
            } else {
                break;
            }
        }
        let name = String::from_utf8(r[..i].to_vec()).ok()?;
        self.rest = &r[i..];
        Some(name)
    }
}

fn is_session(text: &[u8]) -> bool {
    let mut w = Words::new(text);
    w.keyword("SET") || text.starts_with(b"SELECT pg_catalog.set_config(")
}

fn starts_transaction(text: &[u8]) -> bool {
    let t = text.strip_suffix(b";").unwrap_or(text).trim_ascii();
    t.eq_ignore_ascii_case(b"BEGIN")
        || Words::new(text).keyword("START")
        || Words::new(text).keyword("BEGIN")
}

fn ends_transaction(text: &[u8]) -> bool {
    let t = text.trim_ascii_end();
    let t = t.strip_suffix(b";").unwrap_or(t).trim_ascii();
    let first = t
        .split(|b| b.is_ascii_whitespace())
        .next()
        .unwrap_or_default();
    ["COMMIT", "END", "ROLLBACK", "ABORT"]
        .iter()
        .any(|k| first.eq_ignore_ascii_case(k.as_bytes()))
}

/// The tables a statement that may run beside others touches; none: a barrier.
fn parallel_keys(text: &[u8]) -> Vec<String> {
    let mut w = Words::new(text);
    if w.keyword("CREATE") {
        w.keyword("UNIQUE");
        if !w.keyword("INDEX") || w.name().is_none() || !w.keyword("ON") {
            return Vec::new();
        }
        w.keyword("ONLY");
        return w.name().into_iter().collect();
    }
    if w.keyword("ALTER") && w.keyword("TABLE") && w.keyword("ONLY") {
        let Some(table) = w.name() else {
            return Vec::new();
        };
        if !(w.keyword("ADD") && w.keyword("CONSTRAINT") && w.name().is_some()) {
            return Vec::new();
        }
        if w.keyword("PRIMARY") || w.keyword("UNIQUE") || w.keyword("EXCLUDE") || w.keyword("CHECK")
        {
            return vec![table];
        }
        let r = w.rest.trim_ascii_start();
        if r.len() >= 7 && r[..7].eq_ignore_ascii_case(b"FOREIGN") {
            let Some(at) = memchr::memmem::find(r, b" REFERENCES ") else {
                return Vec::new();
            };
            let mut after = Words::new(&r[at + 12..]);
            return match after.name() {
                Some(other) if other == table => vec![table],
                Some(other) => vec![table, other],
                None => Vec::new(),
            };
        }
        return Vec::new();
    }
    if let Some(rest) = text.strip_prefix(b"SELECT pg_catalog.setval('") {
        if let Some(end) = memchr(b'\'', rest) {
            return vec![format!(
                "sequence {}",
                String::from_utf8_lossy(&rest[..end])
            )];
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_what_pg_dump_writes() {
        let k = |s: &str| parallel_keys(s.as_bytes());
        assert_eq!(
            k("CREATE INDEX t_a_idx ON public.t USING btree (a);"),
            vec!["public.t"]
        );
        assert_eq!(
            k("CREATE UNIQUE INDEX \"X y\" ON ONLY \"My\".\"T\"\"q\" USING btree (a);"),
            vec!["\"My\".\"T\"\"q\""]
        );
        assert_eq!(
            k("ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);"),
            vec!["public.t"]
        );
        assert_eq!(
            k("ALTER TABLE ONLY public.a\n    ADD CONSTRAINT a_b_fkey FOREIGN KEY (b) REFERENCES public.b(id) DEFERRABLE;"),
            vec!["public.a", "public.b"]
        );
        assert_eq!(
            k("ALTER TABLE ONLY public.a\n    ADD CONSTRAINT self FOREIGN KEY (p) REFERENCES public.a(id);"),
            vec!["public.a"]
        );
        assert_eq!(
            k("SELECT pg_catalog.setval('public.t_id_seq', 42, true);"),
            vec!["sequence public.t_id_seq"]
        );
        for barrier in [
            "ALTER TABLE public.p ADD CONSTRAINT p_fk FOREIGN KEY (a) REFERENCES public.b(id);",
            "ALTER INDEX public.p_pkey ATTACH PARTITION public.c_pkey;",
            "CREATE TRIGGER tr AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.f();",
            "CREATE VIEW public.v AS SELECT 1;",
            "REFRESH MATERIALIZED VIEW public.mv;",
            "CREATE INDEX CONCURRENTLY i ON public.t (a);",
            "ALTER TABLE ONLY public.t ALTER COLUMN id SET DEFAULT nextval('s'::regclass);",
            "CREATE INDEXES",
        ] {
            assert!(k(barrier).is_empty(), "{barrier}");
        }
        assert!(is_session(b"SET search_path = public;"));
        assert!(is_session(
            b"SELECT pg_catalog.set_config('search_path', '', false);"
        ));
        assert!(!is_session(b"SETUP;"));
        assert!(starts_transaction(b"BEGIN;"));
        assert!(ends_transaction(b"COMMIT;"));
    }

    /// The units a dump is cut into: keys, shared, body.
    fn units(dump: &[u8], part_size: usize) -> Vec<(Vec<String>, bool, String)> {
        let mut split = PgSplit::new();
        split.part_size = part_size;
        super::super::cut_units(&mut split, dump)
    }

    #[test]
    fn a_big_copy_block_is_cut_into_parts_at_row_ends() {
        let dump = "SET search_path = '';\nCREATE TABLE public.t (a text);\n\n--\n-- Data\n--\n\n\
                    COPY public.t (a) FROM stdin;\nrow one\nrow\\ntwo\nrow three\nrow four\n\\.\n\n\
                    CREATE INDEX t_a ON public.t USING btree (a);\n";
        let got = units(dump.as_bytes(), 10);
        let parts: Vec<&str> = got
            .iter()
            .filter(|(_, shared, _)| *shared)
            .map(|(k, _, body)| {
                assert_eq!(k, &vec!["public.t".to_string()]);
                body.as_str()
            })
            .collect();
        assert!(parts.len() >= 2, "{got:?}");
        let mut rows = Vec::new();
        for body in &parts {
            let copy = &body[body.find("COPY ").unwrap()..];
            let data = copy
                .strip_prefix("COPY public.t (a) FROM stdin;\n")
                .unwrap_or_else(|| panic!("{body:?}"));
            let data = data.trim_end_matches('\n');
            let data = data
                .strip_suffix("\\.")
                .unwrap_or_else(|| panic!("{body:?}"));
            rows.extend(data.lines().map(str::to_string));
        }
        assert_eq!(rows, ["row one", "row\\ntwo", "row three", "row four"]);
        assert_eq!(got.first().unwrap().0, Vec::<String>::new());
        let last = got.last().unwrap();
        assert!(!last.1 && last.2.contains("CREATE INDEX t_a"), "{got:?}");
        // Without a part size reached, one unit holds the block.
        assert_eq!(units(dump.as_bytes(), 1 << 20).len(), 3);
    }

    #[test]
    fn comments_before_a_statement_are_not_its_text() {
        assert_eq!(
            statement_text(b"\n--\n-- Name: t; Type: TABLE\n--\n\nCREATE TABLE t ();\n"),
            b"CREATE TABLE t ();\n"
        );
    }
}
