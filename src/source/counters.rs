//! Row counters that read the dump as it streams past, so the manifest records what the dump itself
//! contains (not what the server said before the dump started), and the end-of-dump marker that proves
//! the dump tool reached its end.
//!
//! Both run in O(1) memory per line: only a line's first bytes are kept, never a whole row.

use std::collections::BTreeMap;

use memchr::{memchr, memchr2, memchr3};

const HEAD_KEEP: usize = 8192;

/// Counts the lines of each `COPY ... FROM stdin;` block of a plain-format pg_dump.
#[derive(Default)]
pub struct PgCounter {
    head: Vec<u8>,
    tail: Vec<u8>,
    line_len: usize,
    copy: Option<(String, u64)>,
    pub tables: BTreeMap<String, u64>,
    pub end_marker: bool,
}

pub const PG_END_MARKER: &[u8] = b"-- PostgreSQL database dump complete";

impl PgCounter {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let (line, rest, complete) = match memchr(b'\n', data) {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            if self.head.len() < HEAD_KEEP {
                let take = line.len().min(HEAD_KEEP - self.head.len());
                self.head.extend_from_slice(&line[..take]);
            }
            // The last bytes of a line tell a COPY header ("... FROM stdin;") however long its column list.
            self.tail
                .extend_from_slice(&line[line.len().saturating_sub(16)..]);
            if self.tail.len() > 16 {
                self.tail.drain(..self.tail.len() - 16);
            }
            self.line_len += line.len();
            if complete {
                self.end_line();
            }
            data = rest;
        }
    }

    fn end_line(&mut self) {
        let line = &self.head[..];
        match &mut self.copy {
            Some((table, rows)) => {
                if line == b"\\." {
                    let (table, rows) = (std::mem::take(table), *rows);
                    *self.tables.entry(table).or_default() += rows;
                    self.copy = None;
                } else {
                    *rows += 1;
                }
            }
            None => {
                if line.starts_with(b"COPY ") && self.tail.ends_with(b" FROM stdin;") {
                    if let Some(name) = pg_copy_table(&line[5..]) {
                        self.copy = Some((name, 0));
                    }
                } else if line == PG_END_MARKER {
                    self.end_marker = true;
                }
            }
        }
        self.head.clear();
        self.tail.clear();
        self.line_len = 0;
    }
}

/// The qualified table name at the start of a COPY header, as pg_dump quoted it.
fn pg_copy_table(s: &[u8]) -> Option<String> {
    let mut i = 0;
    let mut in_quote = false;
    while i < s.len() {
        match (s[i], in_quote) {
            (b'"', false) => in_quote = true,
            (b'"', true) if s.get(i + 1) == Some(&b'"') => i += 1,
            (b'"', true) => in_quote = false,
            (b' ', false) => break,
            _ => {}
        }
        i += 1;
    }
    if i == 0 || in_quote {
        return None;
    }
    String::from_utf8(s[..i].to_vec()).ok()
}

/// Counts the tuples of each `INSERT INTO `t` VALUES (...),(...);` line of mysqldump/mariadb-dump.
#[derive(Default)]
pub struct MysqlCounter {
    state: MyState,
    head: Vec<u8>,
    table: String,
    pub tables: BTreeMap<String, u64>,
    pub end_marker: bool,
}

pub const MYSQL_END_MARKER: &[u8] = b"-- Dump completed";

#[derive(Default, PartialEq, Eq, Clone, Copy)]
enum MyState {
    /// Collecting the start of a line (up to HEAD_KEEP bytes) to see what it is.
    #[default]
    Head,
    /// In the VALUES list of an INSERT, outside a string literal.
    Values,
    /// Inside a '...' string literal; `escaped` after a backslash.
    Str { escaped: bool },
    /// A line that is neither, until its end.
    Skip,
}

impl MysqlCounter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                MyState::Head => {
                    let rest = &data[i..];
                    let end = memchr(b'\n', rest).unwrap_or(rest.len());
                    let take = end.min(HEAD_KEEP.saturating_sub(self.head.len()));
                    self.head.extend_from_slice(&rest[..take]);
                    let at_eol = end < rest.len();
                    if let Some(values_at) = self.insert_values_start(at_eol) {
                        // Continue right after "VALUES" inside what this chunk gave us.
                        let consumed_before = self.head.len() - take;
                        let into_chunk = values_at.saturating_sub(consumed_before).min(rest.len());
                        self.head.clear();
                        self.state = MyState::Values;
                        i += into_chunk;
                        continue;
                    }
                    if at_eol {
                        self.finish_head_line();
                        i += end + 1;
                    } else if self.head.len() >= HEAD_KEEP {
                        self.state = MyState::Skip;
                        i = data.len();
                    } else {
                        i = data.len();
                    }
                }
                MyState::Values => {
                    let rest = &data[i..];
                    // The statement ends at ';' outside a string; MariaDB puts one tuple per line.
                    match memchr3(b'(', b'\'', b';', rest) {
                        None => i = data.len(),
                        Some(j) => {
                            match rest[j] {
                                b'(' => *self.tables.entry(self.table.clone()).or_default() += 1,
                                b'\'' => self.state = MyState::Str { escaped: false },
                                _ => self.new_line(),
                            }
                            i += j + 1;
                        }
                    }
                }
                MyState::Str { escaped: true } => {
                    self.state = MyState::Str { escaped: false };
                    i += 1;
                }
                MyState::Str { escaped: false } => {
                    let rest = &data[i..];
                    match memchr2(b'\'', b'\\', rest) {
                        None => i = data.len(),
                        Some(j) => {
                            self.state = if rest[j] == b'\\' {
                                MyState::Str { escaped: true }
                            } else {
                                MyState::Values
                            };
                            i += j + 1;
                        }
                    }
                }
                MyState::Skip => match memchr(b'\n', &data[i..]) {
                    None => i = data.len(),
                    Some(j) => {
                        self.new_line();
                        i += j + 1;
                    }
                },
            }
        }
    }

    fn new_line(&mut self) {
        self.state = MyState::Head;
        self.head.clear();
    }

    fn finish_head_line(&mut self) {
        if self.head.starts_with(MYSQL_END_MARKER) {
            self.end_marker = true;
        }
        self.new_line();
    }

    /// If the collected head is `INSERT INTO `name` [(cols)] VALUES ` (tuples follow on the same line)
    /// or ends in ` VALUES` at the end of the line (MariaDB: one tuple per line), sets the table and
    /// returns the offset in the head just past "VALUES".
    fn insert_values_start(&mut self, at_eol: bool) -> Option<usize> {
        let h = &self.head;
        let rest = h.strip_prefix(b"INSERT INTO `")?;
        // The name ends at a backtick not doubled.
        let mut k = 0;
        let mut name = Vec::new();
        loop {
            let b = *rest.get(k)?;
            if b == b'`' {
                if rest.get(k + 1) == Some(&b'`') {
                    name.push(b'`');
                    k += 2;
                    continue;
                }
                break;
            }
            name.push(b);
            k += 1;
        }
        let after = &rest[k + 1..];
        // Optional column list (generated columns make mariadb-dump name the columns).
        let mut m = 0;
        if after.starts_with(b" (") {
            let mut in_tick = false;
            m = 2;
            loop {
                let b = *after.get(m)?;
                match (b, in_tick) {
                    (b'`', _) => in_tick = !in_tick,
                    (b')', false) => break,
                    _ => {}
                }
                m += 1;
            }
            m += 1;
        }
        let tail = &after[m..];
        let inline = tail.starts_with(b" VALUES ");
        let own_line = at_eol && tail == b" VALUES";
        if !inline && !own_line {
            return None;
        }
        self.table = String::from_utf8_lossy(&name).into_owned();
        Some(13 + k + 1 + m + 7)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_in_pieces<F: FnMut(&[u8])>(data: &[u8], piece: usize, mut f: F) {
        for c in data.chunks(piece) {
            f(c);
        }
    }

    const PG: &[u8] = b"SET x = 1;\nCOPY public.orders (id, note) FROM stdin;\n1\ta\\tb\n2\t\\N\n\\.\n\nCOPY \"Odd Schema\".\"we ird\" (x) FROM stdin;\n\\.\nCOPY public.orders (id, note) FROM stdin;\n3\tc\n\\.\n-- PostgreSQL database dump complete\n\n";

    #[test]
    fn pg_counts_rows_whatever_the_chunking() {
        for piece in [1, 2, 3, 7, 64, 4096] {
            let mut c = PgCounter::default();
            feed_in_pieces(PG, piece, |d| c.feed(d));
            assert_eq!(c.tables.get("public.orders"), Some(&3), "piece {piece}");
            assert_eq!(c.tables.get("\"Odd Schema\".\"we ird\""), Some(&0));
            assert!(c.end_marker);
        }
        let mut c = PgCounter::default();
        c.feed(&PG[..PG.len() - 40]);
        assert!(!c.end_marker, "a truncated dump has no marker");
    }

    const MY: &[u8] = b"-- MariaDB dump\nINSERT INTO `t` VALUES (1,'a(b'),(2,'it\\'s (x'),(3,NULL);\nINSERT INTO `m` VALUES\n(1,'x;y'),\n(2,'(');\nINSERT INTO `we``ird name` (`a`, `b)`) VALUES (1,0x00FF),(2,'\\\\');\nINSERT INTO `t` VALUES (4,'');\n-- Dump completed on 2026-11-23 10:00:00\n";

    #[test]
    fn mysql_counts_tuples_not_parens_in_strings() {
        for piece in [1, 2, 5, 11, 4096] {
            let mut c = MysqlCounter::new();
            feed_in_pieces(MY, piece, |d| c.feed(d));
            assert_eq!(c.tables.get("t"), Some(&4), "piece {piece}");
            assert_eq!(c.tables.get("we`ird name"), Some(&2), "piece {piece}");
            assert_eq!(c.tables.get("m"), Some(&2), "piece {piece}");
            assert!(c.end_marker, "piece {piece}");
        }
    }
}
