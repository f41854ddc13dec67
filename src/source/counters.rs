//! Row counters that read the dump as it streams past, so the manifest records what the dump itself
//! contains (not what the server said before the dump started), and the end-of-dump marker that proves
//! the dump tool reached its end.
//!
//! A database user controls text that the dump tool copies verbatim: string literals, quoted names,
//! function, trigger and procedure bodies. That text can hold lines that look exactly like dump
//! structure (`COPY ... FROM stdin;`, `-- PostgreSQL database dump complete`, `INSERT INTO ...`,
//! `DELIMITER ;`). So neither counter reads lines: each follows the dump the way its restore client
//! will (psql, mariadb), with the client's lexical rules, and takes structure only where that client
//! would act on it: outside every literal and comment, between statements, at a line start.
//!
//! Both run in O(1) memory (only a statement's or a comment line's first bytes are kept, never a row
//! or a body) and give the same result however the input is chunked.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use anyhow::{bail, Result};
use memchr::{memchr, memchr2, memchr3, memmem, memrchr};

/// The last comment pg_dump writes.
pub const PG_END_MARKER: &[u8] = b"-- PostgreSQL database dump complete";
/// How mysqldump and mariadb-dump's last line starts (` on <date>` follows without --skip-dump-date).
pub const MYSQL_END_MARKER: &[u8] = b"-- Dump completed";

/// A statement's first bytes kept: a COPY header's table name (at most two quoted 63-byte names) or
/// a SET fits many times over.
const PG_HEAD_KEEP: usize = 4096;
/// Enough of a statement's last bytes to see ` FROM stdin` before its `;`.
const PG_TAIL_KEEP: usize = 16;
/// A comment or psql meta-command line is only ever compared with short texts.
const PG_LINE_KEEP: usize = 64;
/// A statement's first bytes kept: the longest `SET sql_mode = '...'` mariadb-dump writes fits.
const MY_HEAD_KEEP: usize = 2048;
/// A comment line's first bytes kept: `-- Dumping data for table ` and a 64-character name, every
/// byte a doubled backtick or 4-byte character, fit.
const MY_LINE_KEEP: usize = 2048;
/// A data section's name longer than this is not one mariadb-dump wrote.
const MY_NAME_MAX: usize = 1024;

// ---------------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------------

/// Where psql's lexer is (psqlscan.l), plus COPY data: after a `COPY ... FROM stdin;` psql sends the
/// following lines to the server as data, unlexed, up to a `\.` line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pg {
    Normal,
    /// After a `-` or `/`: the next byte tells a comment from an operator.
    Dash,
    Slash,
    LineComment,
    /// psql's block comments nest; `prev` is a `*` or `/` that may pair with the next byte.
    BlockComment {
        depth: u32,
        prev: u8,
    },
    /// Inside '...'; `esc`: backslash escapes apply (E'...', or standard_conforming_strings off).
    Quote {
        esc: bool,
    },
    QuoteEsc,
    /// Just after the closing quote of an escaping string: a `'` right away (doubled quote) or after
    /// whitespace holding a newline (SQL's string continuation) reopens the same kind of string.
    AfterQuote {
        ws: bool,
        newline: bool,
    },
    /// Inside "..." (a quoted identifier).
    Ident,
    /// After a `$` that starts a token: reading a possible `$tag$`.
    DollarOpen {
        hash: u64,
        len: u64,
        first: u8,
    },
    /// Inside a dollar-quoted string.
    Dollar,
    /// Inside a dollar-quoted string, after a `$`: reading a candidate closing tag.
    DollarClose {
        hash: u64,
        len: u64,
    },
    /// A psql backslash command, which runs to the end of its line.
    Meta,
    /// COPY data lines, up to a line that is exactly `\.`.
    Copy,
}

/// The SQL token the lexer is in, for the rules that depend on the bytes before: `e'` starts an
/// escaping string only as a token of its own, `$` continues an identifier but starts a dollar quote
/// elsewhere, and psql counts identifiers to find `CREATE FUNCTION ... BEGIN ATOMIC ... END` bodies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tok {
    None,
    Ident,
    Number,
    /// `u&`, which a quote turns into a Unicode-escape literal.
    UAmp,
    Other,
}

/// Counts the data lines of each `COPY ... FROM stdin;` block of a plain-format pg_dump, and sees the
/// end marker, both only where psql would see them.
pub struct PgCounter {
    /// Rows per table, keyed by the table's name as pg_dump quoted it in the COPY header.
    pub tables: BTreeMap<String, u64>,
    /// The end marker is the last meaningful line so far.
    pub end_marker: bool,
    st: Pg,
    tok: Tok,
    ident_len: u64,
    ident_first: u8,
    /// The current identifier, lower-cased, while it is short enough to be a keyword psql looks for.
    kw: [u8; 9],
    kw_len: usize,
    /// psql's statement-end rule: a `;` ends a statement only outside parentheses and outside the
    /// BEGIN ... END of a CREATE FUNCTION/PROCEDURE (counted with psql's own identifier heuristic).
    paren: u32,
    begin: u32,
    ids: [u8; 4],
    id_count: u32,
    std_strings: bool,
    /// No token since the last statement-ending `;` (psql's query buffer is empty).
    boundary: bool,
    line_start: bool,
    pend_line_start: bool,
    /// The start of the current statement is being kept (it may be a COPY header or a SET).
    capturing: bool,
    head: Vec<u8>,
    tail: Vec<u8>,
    head_line_start: bool,
    line: Vec<u8>,
    line_capture: bool,
    /// A COPY header just ended with its `;`: COPY data starts after the newline that must follow.
    /// The inner None: a table name that cannot be a manifest key.
    pending_copy: Option<Option<String>>,
    copy_table: Option<String>,
    copy_rows: u64,
    /// Position in the current COPY data line: 0 at its start, 1 after `\`, 2 after `\.`, 3 other.
    copy_pos: u8,
    tag_hash: u64,
    tag_len: u64,
    /// Dollar-quote tags are compared by length and a polynomial hash with this per-process random
    /// base: a tag can be as long as the body it quotes (pg_dump grows it until it is not found in
    /// the body), so it is never stored, and a body cannot be crafted to collide with a tag.
    base: u64,
    error: Option<String>,
}

/// 2^61 - 1, a prime: the modulus of the dollar-quote tag hash.
const TAG_P: u64 = (1 << 61) - 1;

/// A line that is exactly `\.` after a newline: the end of COPY data.
static COPY_END: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\n\\.\n"));

impl Default for PgCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl PgCounter {
    pub fn new() -> Self {
        Self {
            tables: BTreeMap::new(),
            end_marker: false,
            st: Pg::Normal,
            tok: Tok::None,
            ident_len: 0,
            ident_first: 0,
            kw: [0; 9],
            kw_len: 0,
            paren: 0,
            begin: 0,
            ids: [0; 4],
            id_count: 0,
            // pg_dump sets it on in its header (and says so if the server made it write `off`).
            std_strings: true,
            boundary: true,
            line_start: true,
            pend_line_start: false,
            capturing: false,
            head: Vec::new(),
            tail: Vec::new(),
            head_line_start: false,
            line: Vec::new(),
            line_capture: false,
            pending_copy: None,
            copy_table: None,
            copy_rows: 0,
            copy_pos: 0,
            tag_hash: 0,
            tag_len: 0,
            base: 2 + rand::random::<u64>() % (TAG_P - 3),
            error: None,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            i += self.step(&data[i..]);
        }
    }

    /// Settles the end of the stream. Fails when the dump cannot be complete whatever its marker
    /// says: it ends inside COPY data, or it holds structure psql would follow differently.
    pub fn finish(&mut self) -> Result<()> {
        match self.st {
            // A trailing `-` or `/` is an operator: a meaningful last line.
            Pg::Dash | Pg::Slash => self.end_marker = false,
            Pg::Meta => self.meta_done(),
            Pg::Copy => {
                self.end_marker = false;
                let t = self.copy_table.as_deref().unwrap_or("?");
                bail!("it ends inside the COPY data of table {t}");
            }
            _ => {}
        }
        if self.pending_copy.is_some() {
            self.end_marker = false;
            bail!("it ends right after a COPY header");
        }
        if let Some(e) = &self.error {
            self.end_marker = false;
            bail!("{e}");
        }
        Ok(())
    }

    /// Consumes some bytes of `d` (none when the state changed and the byte is to be read again).
    fn step(&mut self, d: &[u8]) -> usize {
        match self.st {
            Pg::Normal => {
                let mut n = 0;
                while n < d.len() && self.st == Pg::Normal {
                    if self.tok == Tok::Ident && is_dolq_cont(d[n]) {
                        // The rest of an identifier, at once: schemas are mostly names.
                        let run = d[n..].iter().take_while(|&&c| is_dolq_cont(c)).count();
                        // Only whether it is longer than a keyword matters past the kept bytes.
                        let keep = (self.kw.len() + 1).saturating_sub(self.kw_len).min(run);
                        for &c in &d[n..n + keep] {
                            self.kw_push(c);
                        }
                        self.kw_len = self.kw_len.saturating_add(run - keep);
                        self.ident_len += run as u64;
                        self.cap(&d[n..n + run]);
                        n += run;
                        continue;
                    }
                    self.normal(d[n]);
                    n += 1;
                }
                n
            }
            Pg::Copy => self.copy_data(d),
            Pg::Dash => {
                if d[0] == b'-' {
                    self.st = Pg::LineComment;
                    self.line_capture = self.pend_line_start && self.boundary;
                    self.line.clear();
                    self.line.extend_from_slice(b"--");
                    1
                } else {
                    self.st = Pg::Normal;
                    self.tok = Tok::Other;
                    self.significant(b'-', self.pend_line_start);
                    0
                }
            }
            Pg::Slash => {
                if d[0] == b'*' {
                    self.st = Pg::BlockComment { depth: 0, prev: 0 };
                    // Not blank and not a `--` line: it makes an earlier marker not the last line.
                    self.end_marker = false;
                    1
                } else {
                    self.st = Pg::Normal;
                    self.tok = Tok::Other;
                    self.significant(b'/', self.pend_line_start);
                    0
                }
            }
            Pg::LineComment => match memchr2(b'\n', b'\r', d) {
                None => {
                    if self.line_capture {
                        self.line_push(d);
                    }
                    d.len()
                }
                Some(j) => {
                    if self.line_capture {
                        self.line_push(&d[..j]);
                        if d[j] == b'\n' && self.line == PG_END_MARKER {
                            self.end_marker = true;
                        }
                    }
                    // psql ends a `--` comment at \r too; Normal reads the newline itself.
                    self.st = Pg::Normal;
                    j
                }
            },
            Pg::BlockComment { depth, prev } => {
                let b = d[0];
                if prev == b'*' && b == b'/' {
                    self.st = if depth == 0 {
                        self.tok = Tok::None;
                        Pg::Normal
                    } else {
                        Pg::BlockComment {
                            depth: depth - 1,
                            prev: 0,
                        }
                    };
                    return 1;
                }
                if prev == b'/' && b == b'*' {
                    self.st = Pg::BlockComment {
                        depth: depth.saturating_add(1),
                        prev: 0,
                    };
                    return 1;
                }
                match memchr2(b'*', b'/', d) {
                    None => {
                        self.st = Pg::BlockComment { depth, prev: 0 };
                        d.len()
                    }
                    Some(j) => {
                        self.st = Pg::BlockComment { depth, prev: d[j] };
                        j + 1
                    }
                }
            }
            Pg::Quote { esc: false } => match memchr(b'\'', d) {
                None => {
                    self.cap(d);
                    d.len()
                }
                Some(j) => {
                    self.cap(&d[..=j]);
                    self.st = Pg::Normal;
                    self.tok = Tok::Other;
                    j + 1
                }
            },
            Pg::Quote { esc: true } => match memchr2(b'\'', b'\\', d) {
                None => {
                    self.cap(d);
                    d.len()
                }
                Some(j) => {
                    self.cap(&d[..=j]);
                    self.st = if d[j] == b'\\' {
                        Pg::QuoteEsc
                    } else {
                        Pg::AfterQuote {
                            ws: false,
                            newline: false,
                        }
                    };
                    j + 1
                }
            },
            Pg::QuoteEsc => {
                self.cap(&d[..1]);
                self.st = Pg::Quote { esc: true };
                1
            }
            Pg::AfterQuote { ws, newline } => {
                let b = d[0];
                match b {
                    b'\'' if !ws || newline => {
                        self.st = Pg::Quote { esc: true };
                        self.line_start = false;
                    }
                    b' ' | b'\t' | 0x0c => {
                        self.st = Pg::AfterQuote { ws: true, newline };
                        self.line_start = false;
                    }
                    b'\n' | b'\r' => {
                        self.st = Pg::AfterQuote {
                            ws: true,
                            newline: true,
                        };
                        self.line_start = b == b'\n';
                    }
                    _ => {
                        self.st = Pg::Normal;
                        self.tok = Tok::Other;
                        return 0;
                    }
                }
                self.cap(&d[..1]);
                1
            }
            Pg::Ident => match memchr(b'"', d) {
                None => {
                    self.cap(d);
                    d.len()
                }
                Some(j) => {
                    self.cap(&d[..=j]);
                    self.st = Pg::Normal;
                    self.tok = Tok::Other;
                    j + 1
                }
            },
            Pg::DollarOpen { hash, len, first } => {
                let b = d[0];
                if b == b'$' {
                    self.tag_hash = hash;
                    self.tag_len = len;
                    self.st = Pg::Dollar;
                    self.cap(&d[..1]);
                    return 1;
                }
                let in_tag = if len == 0 {
                    is_dolq_start(b)
                } else {
                    is_dolq_cont(b)
                };
                if in_tag {
                    self.kw_push(b);
                    self.st = Pg::DollarOpen {
                        hash: self.mix(hash, b),
                        len: len + 1,
                        first: if len == 0 { b } else { first },
                    };
                    self.cap(&d[..1]);
                    return 1;
                }
                // Not a delimiter: psql keeps the `$` alone and reads the tag again as an identifier.
                if len > 0 {
                    self.tok = Tok::Ident;
                    self.ident_len = len;
                    self.ident_first = first;
                } else {
                    self.tok = Tok::Other;
                }
                self.st = Pg::Normal;
                0
            }
            Pg::Dollar => match memchr(b'$', d) {
                None => {
                    self.cap(d);
                    d.len()
                }
                Some(j) => {
                    self.cap(&d[..=j]);
                    self.st = Pg::DollarClose { hash: 0, len: 0 };
                    j + 1
                }
            },
            Pg::DollarClose { hash, len } => {
                let b = d[0];
                self.cap(&d[..1]);
                if b == b'$' {
                    if len == self.tag_len && hash == self.tag_hash {
                        self.st = Pg::Normal;
                        self.tok = Tok::Other;
                    } else {
                        // Not the opening tag; this `$` may start it ($a$...$junk$a$).
                        self.st = Pg::DollarClose { hash: 0, len: 0 };
                    }
                    return 1;
                }
                let in_tag = if len == 0 {
                    is_dolq_start(b)
                } else {
                    is_dolq_cont(b)
                };
                self.st = if in_tag {
                    Pg::DollarClose {
                        hash: if len < self.tag_len {
                            self.mix(hash, b)
                        } else {
                            hash
                        },
                        len: len.saturating_add(1),
                    }
                } else {
                    Pg::Dollar
                };
                1
            }
            Pg::Meta => match memchr(b'\n', d) {
                None => {
                    self.line_push(d);
                    d.len()
                }
                Some(j) => {
                    self.line_push(&d[..j]);
                    self.meta_done();
                    self.st = Pg::Normal;
                    j
                }
            },
        }
    }

    fn normal(&mut self, b: u8) {
        if let Some(name) = self.pending_copy.take() {
            if b == b'\n' {
                self.st = Pg::Copy;
                self.copy_table = name;
                self.copy_rows = 0;
                self.copy_pos = 0;
                self.line_start = true;
                return;
            }
            // psql would still read COPY data from the next line on; the dump is not pg_dump's.
            self.error
                .get_or_insert_with(|| "a COPY header is not followed by a newline".into());
        }
        let at = self.line_start;
        self.line_start = false;
        match b {
            b'\n' => {
                self.end_tok();
                self.line_start = true;
            }
            b' ' | b'\t' | b'\r' | 0x0c => {
                self.end_tok();
                if !self.boundary {
                    self.cap(&[b]);
                }
            }
            b'-' | b'/' => {
                self.end_tok();
                self.pend_line_start = at;
                self.st = if b == b'-' { Pg::Dash } else { Pg::Slash };
            }
            b'\'' => {
                let prefix = match self.tok {
                    Tok::Ident if self.ident_len == 1 => match self.ident_first {
                        b'e' | b'E' => Some(true),
                        b'b' | b'B' | b'x' | b'X' => Some(false),
                        b'n' | b'N' => Some(!self.std_strings),
                        _ => None,
                    },
                    Tok::UAmp => Some(false),
                    _ => None,
                };
                let esc = match prefix {
                    // The letter belongs to the literal, not an identifier psql would count.
                    Some(esc) => {
                        self.tok = Tok::None;
                        esc
                    }
                    None => {
                        self.end_tok();
                        !self.std_strings
                    }
                };
                self.significant(b, at);
                self.st = Pg::Quote { esc };
            }
            b'"' => {
                if self.tok == Tok::UAmp {
                    self.tok = Tok::None;
                } else {
                    self.end_tok();
                }
                self.significant(b, at);
                self.st = Pg::Ident;
            }
            b'$' => {
                if self.tok == Tok::Ident {
                    self.ident_push(b);
                    self.significant(b, at);
                } else {
                    self.end_tok();
                    self.significant(b, at);
                    self.kw_len = 0;
                    self.st = Pg::DollarOpen {
                        hash: 0,
                        len: 0,
                        first: 0,
                    };
                }
            }
            b'\\' => {
                self.end_tok();
                self.line.clear();
                self.line.push(b);
                self.st = Pg::Meta;
            }
            b';' => {
                self.end_tok();
                if self.paren == 0 && self.begin == 0 {
                    self.statement_end();
                } else {
                    self.significant(b, at);
                }
            }
            b'(' => {
                self.end_tok();
                self.significant(b, at);
                self.paren = self.paren.saturating_add(1);
            }
            b')' => {
                self.end_tok();
                self.significant(b, at);
                self.paren = self.paren.saturating_sub(1);
            }
            b'&' => {
                if self.tok == Tok::Ident
                    && self.ident_len == 1
                    && matches!(self.ident_first, b'u' | b'U')
                {
                    self.tok = Tok::UAmp;
                } else {
                    self.end_tok();
                    self.tok = Tok::Other;
                }
                self.significant(b, at);
            }
            b'0'..=b'9' => {
                if self.tok == Tok::Ident {
                    self.ident_push(b);
                } else if self.tok != Tok::Number {
                    self.end_tok();
                    self.tok = Tok::Number;
                }
                self.significant(b, at);
            }
            _ if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 => {
                if self.tok != Tok::Ident {
                    self.end_tok();
                    self.tok = Tok::Ident;
                    self.ident_len = 0;
                    self.ident_first = b;
                    self.kw_len = 0;
                }
                self.ident_push(b);
                self.significant(b, at);
            }
            _ => {
                self.end_tok();
                self.tok = Tok::Other;
                self.significant(b, at);
            }
        }
    }

    /// A byte that psql adds to the query buffer (not whitespace, not a comment).
    fn significant(&mut self, b: u8, at_line_start: bool) {
        if self.boundary {
            self.boundary = false;
            self.head_line_start = at_line_start;
            self.capturing = matches!(b, b'C' | b'c' | b'S' | b's');
            self.head.clear();
            self.tail.clear();
        }
        self.end_marker = false;
        self.cap(&[b]);
    }

    fn statement_end(&mut self) {
        // Even an empty statement makes a line meaningful.
        self.end_marker = false;
        let was_stmt = !self.boundary;
        self.boundary = true;
        self.id_count = 0;
        if !was_stmt || !self.capturing {
            return;
        }
        self.capturing = false;
        let head = &self.head;
        if starts_with_ci(head, b"COPY ") && ends_with_ci(&self.tail, b" FROM stdin") {
            if !self.head_line_start {
                self.error.get_or_insert_with(|| {
                    "a COPY ... FROM stdin statement does not start a line".into()
                });
            }
            self.pending_copy = Some(match pg_copy_table(&head[5..]) {
                Some(name) => String::from_utf8(name.to_vec()).ok(),
                None => {
                    let shown = String::from_utf8_lossy(&head[..head.len().min(200)]).into_owned();
                    self.error.get_or_insert_with(|| {
                        format!("a COPY header names its table in a way pg_dump does not: {shown}")
                    });
                    None
                }
            });
        } else if starts_with_ci(head, b"SET ") {
            if let Some(on) = pg_std_strings(head) {
                self.std_strings = on;
            }
        }
    }

    /// COPY data: counts lines, ends at a line that is exactly `\.`. Returns the bytes consumed.
    fn copy_data(&mut self, d: &[u8]) -> usize {
        let mut i = 0;
        while i < d.len() {
            if self.copy_pos == 3 {
                let rest = &d[i..];
                if let Some(j) = COPY_END.find(rest) {
                    self.copy_rows += count_lines(&rest[..=j]);
                    self.copy_done();
                    return i + j + 4;
                }
                match memrchr(b'\n', rest) {
                    None => return d.len(),
                    Some(j) => {
                        self.copy_rows += count_lines(&rest[..=j]);
                        self.copy_pos = 0;
                        i += j + 1;
                    }
                }
            } else {
                // A line's first bytes, one by one: they may be a `\.` split across chunks.
                let b = d[i];
                i += 1;
                match (self.copy_pos, b) {
                    (2, b'\n') => {
                        self.copy_done();
                        return i;
                    }
                    (_, b'\n') => {
                        self.copy_rows += 1;
                        self.copy_pos = 0;
                    }
                    (0, b'\\') => self.copy_pos = 1,
                    (1, b'.') => self.copy_pos = 2,
                    _ => self.copy_pos = 3,
                }
            }
        }
        d.len()
    }

    fn copy_done(&mut self) {
        if let Some(t) = self.copy_table.take() {
            *self.tables.entry(t).or_insert(0) += self.copy_rows;
        }
        self.copy_rows = 0;
        self.st = Pg::Normal;
        self.tok = Tok::None;
        self.line_start = true;
    }

    /// A psql backslash command line ended: only `\unrestrict` may follow the end marker.
    fn meta_done(&mut self) {
        let l = &self.line;
        let unrestrict =
            l.starts_with(b"\\unrestrict") && matches!(l.get(11), None | Some(b' ') | Some(b'\t'));
        if !unrestrict {
            self.end_marker = false;
        }
    }

    fn end_tok(&mut self) {
        if self.tok == Tok::Ident {
            self.psql_identifier();
        }
        self.tok = Tok::None;
    }

    /// psql's heuristic (psqlscan.l, the {identifier} rule) for the BEGIN ... END of a function or
    /// procedure body written in SQL, whose `;` do not end the CREATE statement.
    fn psql_identifier(&mut self) {
        let word: &[u8] = if self.kw_len <= self.kw.len() {
            &self.kw[..self.kw_len]
        } else {
            b""
        };
        if self.id_count == 0 {
            self.ids = [0; 4];
        }
        if matches!(
            word,
            b"create" | b"function" | b"procedure" | b"or" | b"replace"
        ) {
            if let Some(slot) = self.ids.get_mut(self.id_count as usize) {
                *slot = word[0];
            }
        }
        self.id_count = self.id_count.saturating_add(1);
        let ids = self.ids;
        let create_routine = ids[0] == b'c'
            && (ids[1] == b'f'
                || ids[1] == b'p'
                || (ids[1] == b'o' && ids[2] == b'r' && (ids[3] == b'f' || ids[3] == b'p')));
        if create_routine && self.paren == 0 {
            match word {
                b"begin" => self.begin = self.begin.saturating_add(1),
                b"case" if self.begin >= 1 => self.begin = self.begin.saturating_add(1),
                b"end" => self.begin = self.begin.saturating_sub(1),
                _ => {}
            }
        }
    }

    fn ident_push(&mut self, b: u8) {
        self.ident_len += 1;
        self.kw_push(b);
    }

    fn kw_push(&mut self, b: u8) {
        if self.kw_len < self.kw.len() {
            self.kw[self.kw_len] = b.to_ascii_lowercase();
        }
        self.kw_len = self.kw_len.saturating_add(1);
    }

    fn mix(&self, h: u64, b: u8) -> u64 {
        ((h as u128 * self.base as u128 + b as u128 + 1) % TAG_P as u128) as u64
    }

    /// Keeps bytes of the statement being captured.
    fn cap(&mut self, s: &[u8]) {
        if !self.capturing {
            return;
        }
        if self.head.len() < PG_HEAD_KEEP {
            let take = s.len().min(PG_HEAD_KEEP - self.head.len());
            self.head.extend_from_slice(&s[..take]);
        }
        if s.len() >= PG_TAIL_KEEP {
            self.tail.clear();
            self.tail.extend_from_slice(&s[s.len() - PG_TAIL_KEEP..]);
        } else {
            self.tail.extend_from_slice(s);
            if self.tail.len() > PG_TAIL_KEEP {
                self.tail.drain(..self.tail.len() - PG_TAIL_KEEP);
            }
        }
        let h = &self.head;
        if h.len() >= 5 && !starts_with_ci(h, b"COPY ") && !starts_with_ci(h, b"SET ") {
            self.capturing = false;
        }
    }

    fn line_push(&mut self, s: &[u8]) {
        let take = s.len().min(PG_LINE_KEEP.saturating_sub(self.line.len()));
        self.line.extend_from_slice(&s[..take]);
    }
}

fn is_dolq_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_dolq_cont(b: u8) -> bool {
    is_dolq_start(b) || b.is_ascii_digit()
}

fn count_lines(s: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', s).count() as u64
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn ends_with_ci(s: &[u8], suffix: &[u8]) -> bool {
    s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// The qualified table name at the start of a COPY header, exactly as pg_dump quotes names: dotted
/// parts, each a plain lower-case identifier or "..." with "" for a quote, then a space.
fn pg_copy_table(s: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    loop {
        if s.get(i) == Some(&b'"') {
            let start = i;
            i += 1;
            loop {
                match *s.get(i)? {
                    b'"' if s.get(i + 1) == Some(&b'"') => i += 2,
                    b'"' => {
                        i += 1;
                        break;
                    }
                    _ => i += 1,
                }
            }
            if i - start == 2 {
                return None;
            }
        } else {
            match s.get(i) {
                Some(b) if b.is_ascii_lowercase() || *b == b'_' => i += 1,
                _ => return None,
            }
            while matches!(s.get(i), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
            {
                i += 1;
            }
        }
        match *s.get(i)? {
            b'.' => i += 1,
            b' ' => return Some(&s[..i]),
            _ => return None,
        }
    }
}

/// `SET standard_conforming_strings = on|off`, as pg_dump writes it.
fn pg_std_strings(head: &[u8]) -> Option<bool> {
    let text = std::str::from_utf8(head).ok()?.to_ascii_lowercase();
    let text = text.replace('=', " = ");
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["set", "standard_conforming_strings", "=" | "to", value] => {
            match value.trim_matches('\'') {
                "on" | "true" => Some(true),
                "off" | "false" => Some(false),
                _ => None,
            }
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------------
// MySQL / MariaDB
// ---------------------------------------------------------------------------------------------------

/// Where the mysql/mariadb command-line client's line parser (client/mysql.cc, add_line) is, plus
/// the states of the fast paths for the INSERTs of a data section.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum My {
    Normal,
    /// After `-`, `--`: a comment if whitespace follows (or the statement is still empty).
    Dash1,
    Dash2,
    /// After `/`, `/*`, `/*M`: a comment unless it is a `/*!` or `/*M!` versioned comment, which
    /// the client sends to the server as statement text.
    Slash1,
    Slash2,
    Slash3M,
    LineComment,
    /// `p`: the last byte may start `*/` (STAR) or `/*!` (SLASH, SLASH_STAR).
    MlComment {
        p: u8,
    },
    Str {
        q: u8,
    },
    StrEsc {
        q: u8,
    },
    /// After `\` outside strings: a client command letter follows.
    Backslash,
    /// The rest of a DELIMITER command line.
    DelimArg,
    /// Reading `INSERT INTO `name` [(`cols`)] VALUES` of a data section, byte by byte.
    InsKw {
        k: u8,
    },
    InsName {
        idx: usize,
        ok: bool,
    },
    InsNameQ {
        idx: usize,
        ok: bool,
    },
    InsAfter {
        k: u8,
        ok: bool,
    },
    InsCols {
        ok: bool,
    },
    InsColName {
        ok: bool,
    },
    InsColQ {
        ok: bool,
    },
    /// The VALUES list of a counted INSERT: one `(` outside strings per row. Only `(`, `'` and `;`
    /// matter here because the dump tool writes every value as a number, NULL, 0x... or a '...'
    /// string with backslash escapes: user data is never outside a string here.
    Values,
    VStr,
    VEsc,
}

const P_NONE: u8 = 0;
const P_SLASH: u8 = 1;
const P_SLASH_STAR: u8 = 2;
const P_STAR: u8 = 3;

const INSERT_INTO: &[u8] = b"INSERT INTO `";
const VALUES_KW: &[u8] = b" VALUES";

/// What a finished line was, for the comment blocks mariadb-dump writes: a section title comes after
/// a `--` line, the end marker after a blank one. A quoted name with newlines in a comment continues
/// on lines that start with `-- ` right after it, so neither rule can be met by such a line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LineKind {
    Blank,
    DashDash,
    Other,
}

/// The sql_mode flags that change how the client reads strings.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct Mode {
    no_backslash_escapes: bool,
    ansi_quotes: bool,
}

impl Mode {
    fn parse(modes: &str) -> Self {
        let mut m = Mode::default();
        for item in modes.split(',') {
            match item.trim().to_ascii_uppercase().as_str() {
                "NO_BACKSLASH_ESCAPES" => m.no_backslash_escapes = true,
                // ANSI_QUOTES and the combination modes that include it.
                "ANSI_QUOTES" | "ANSI" | "DB2" | "MAXDB" | "MSSQL" | "ORACLE" | "POSTGRESQL" => {
                    m.ansi_quotes = true
                }
                _ => {}
            }
        }
        m
    }
}

/// A `-- Dumping data for table `t`` section.
struct Section {
    name: Vec<u8>,
    rows: u64,
    /// The closing backtick of the name was read.
    named: bool,
    valid: bool,
}

/// Counts the rows of each table's data section of a mysqldump/mariadb-dump, and sees the end
/// marker, both only where the mysql client would see them.
pub struct MysqlCounter {
    /// Rows per table (the table's name unquoted), every data section listed, empty ones as 0.
    pub tables: BTreeMap<String, u64>,
    /// The end marker is the last meaningful line so far.
    pub end_marker: bool,
    st: My,
    /// The client's delimiter, a run of this many `;` (mariadb-dump uses `;` and `;;`).
    delim: u8,
    semis: u8,
    mode: Mode,
    saved_mode: Mode,
    old_mode: Mode,
    /// The client's statement buffer is empty.
    boundary: bool,
    /// At column 0.
    line_start: bool,
    /// Only whitespace so far on a line that began with an empty statement buffer: where the client
    /// looks for a DELIMITER command.
    line_head: bool,
    prev_star: bool,
    /// The client's per-line flag for being inside a `/*!` comment, in which `*/` does not end a
    /// `/* */` comment started there.
    ss: bool,
    pend_col0: bool,
    cur_line: LineKind,
    prev_line: LineKind,
    head: Vec<u8>,
    head_full: bool,
    capturing: bool,
    stmt_line_head: bool,
    line: Vec<u8>,
    line_full: bool,
    line_capture: bool,
    sec: Option<Section>,
    /// The data section's name is still open at the end of its comment line.
    name_cont: bool,
    ins_rows: u64,
    arg: Vec<u8>,
    error: Option<String>,
}

impl Default for MysqlCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl MysqlCounter {
    pub fn new() -> Self {
        Self {
            tables: BTreeMap::new(),
            end_marker: false,
            st: My::Normal,
            delim: 1,
            semis: 0,
            mode: Mode::default(),
            saved_mode: Mode::default(),
            old_mode: Mode::default(),
            boundary: true,
            line_start: true,
            line_head: true,
            prev_star: false,
            ss: false,
            pend_col0: false,
            cur_line: LineKind::Blank,
            prev_line: LineKind::Blank,
            head: Vec::new(),
            head_full: false,
            capturing: false,
            stmt_line_head: false,
            line: Vec::new(),
            line_full: false,
            line_capture: false,
            sec: None,
            name_cont: false,
            ins_rows: 0,
            arg: Vec::new(),
            error: None,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            i += self.step(&data[i..]);
        }
    }

    /// Settles the end of the stream: records the last data section. Fails when the dump holds
    /// client commands this counter does not follow (no dump tool writes them).
    pub fn finish(&mut self) -> Result<()> {
        let trailing = self.semis > 0
            || matches!(
                self.st,
                My::Dash1 | My::Slash1 | My::Slash2 | My::Slash3M | My::Backslash | My::DelimArg
            );
        if trailing {
            self.end_marker = false;
        }
        self.close_section();
        if let Some(e) = &self.error {
            self.end_marker = false;
            bail!("{e}");
        }
        Ok(())
    }

    fn step(&mut self, d: &[u8]) -> usize {
        match self.st {
            My::Normal => {
                let mut n = 0;
                while n < d.len() && self.st == My::Normal {
                    if !self.boundary && self.semis == 0 && is_my_ordinary(d[n]) {
                        // Statement text that changes no state, at once.
                        let run = d[n..].iter().take_while(|&&c| is_my_ordinary(c)).count();
                        self.line_start = false;
                        self.line_head = false;
                        self.prev_star = false;
                        self.cur_line = LineKind::Other;
                        if self.capturing {
                            self.capture(&d[n..n + run]);
                        }
                        n += run;
                        continue;
                    }
                    self.normal(d[n]);
                    n += 1;
                }
                n
            }
            My::Values => match memchr3(b'(', b'\'', b';', d) {
                None => d.len(),
                Some(j) => {
                    match d[j] {
                        b'(' => self.ins_rows += 1,
                        b'\'' => self.st = My::VStr,
                        _ => {
                            if let Some(s) = self.sec.as_mut() {
                                s.rows += self.ins_rows;
                            }
                            self.ins_rows = 0;
                            self.st = My::Normal;
                            self.statement_end();
                        }
                    }
                    j + 1
                }
            },
            My::VStr => match memchr2(b'\'', b'\\', d) {
                None => d.len(),
                Some(j) => {
                    self.st = if d[j] == b'\\' { My::VEsc } else { My::Values };
                    j + 1
                }
            },
            My::VEsc => {
                self.st = My::VStr;
                1
            }
            My::Str { q } => {
                let escapes = q != b'`'
                    && !(q == b'"' && self.mode.ansi_quotes)
                    && !self.mode.no_backslash_escapes;
                let found = if escapes {
                    memchr2(q, b'\\', d)
                } else {
                    memchr(q, d)
                };
                match found {
                    None => {
                        self.str_bytes(d);
                        d.len()
                    }
                    Some(j) => {
                        self.str_bytes(&d[..=j]);
                        self.st = if d[j] == q {
                            My::Normal
                        } else {
                            My::StrEsc { q }
                        };
                        j + 1
                    }
                }
            }
            My::StrEsc { q } => {
                self.str_bytes(&d[..1]);
                self.st = My::Str { q };
                1
            }
            My::Dash1 => {
                if d[0] == b'-' {
                    self.st = My::Dash2;
                    1
                } else {
                    self.plain(b'-');
                    self.st = My::Normal;
                    0
                }
            }
            My::Dash2 => {
                let b = d[0];
                if is_my_space(b) || self.boundary {
                    self.line_capture = self.pend_col0;
                    self.line.clear();
                    self.line.extend_from_slice(b"--");
                    self.line_full = false;
                    self.cur_line = LineKind::Other;
                    self.st = My::LineComment;
                    0
                } else if b == b'-' {
                    // `---`: the client tries again from the second dash.
                    self.plain(b'-');
                    self.pend_col0 = false;
                    1
                } else {
                    self.plain(b'-');
                    self.plain(b'-');
                    self.st = My::Normal;
                    0
                }
            }
            My::Slash1 => {
                if d[0] == b'*' {
                    self.st = My::Slash2;
                    1
                } else {
                    self.plain(b'/');
                    self.st = My::Normal;
                    0
                }
            }
            My::Slash2 => match d[0] {
                b'!' => {
                    for &c in b"/*!" {
                        self.plain(c);
                    }
                    self.ss = true;
                    self.prev_star = false;
                    self.st = My::Normal;
                    1
                }
                b'M' => {
                    self.st = My::Slash3M;
                    1
                }
                _ => {
                    self.start_ml();
                    0
                }
            },
            My::Slash3M => {
                if d[0] == b'!' {
                    for &c in b"/*M!" {
                        self.plain(c);
                    }
                    self.prev_star = false;
                    self.st = My::Normal;
                    1
                } else {
                    self.start_ml();
                    0
                }
            }
            My::LineComment => match memchr(b'\n', d) {
                None => {
                    if self.line_capture {
                        self.line_push(d);
                    }
                    d.len()
                }
                Some(j) => {
                    if self.line_capture {
                        self.line_push(&d[..j]);
                        self.comment_line();
                    }
                    self.st = My::Normal;
                    j
                }
            },
            My::MlComment { p } => {
                let b = d[0];
                match (p, b) {
                    (P_STAR, b'/') => {
                        if self.ss {
                            self.ss = false;
                            self.st = My::MlComment { p: P_SLASH };
                        } else {
                            self.st = My::Normal;
                            self.prev_star = false;
                        }
                        return 1;
                    }
                    (P_SLASH, b'*') => {
                        self.st = My::MlComment { p: P_SLASH_STAR };
                        return 1;
                    }
                    (P_SLASH_STAR, b'!') => {
                        self.ss = true;
                        self.st = My::MlComment { p: P_NONE };
                        return 1;
                    }
                    _ => {}
                }
                match b {
                    b'*' => {
                        self.st = My::MlComment { p: P_STAR };
                        1
                    }
                    b'/' => {
                        self.st = My::MlComment { p: P_SLASH };
                        1
                    }
                    b'\n' => {
                        self.ss = false;
                        self.prev_line = self.cur_line;
                        self.cur_line = LineKind::Other;
                        self.st = My::MlComment { p: P_NONE };
                        1
                    }
                    _ => {
                        self.st = My::MlComment { p: P_NONE };
                        memchr3(b'*', b'/', b'\n', d).unwrap_or(d.len()).max(1)
                    }
                }
            }
            My::Backslash => {
                let b = d[0];
                if b == b'\n' {
                    // A backslash ending a line is dropped.
                    self.st = My::Normal;
                    return 0;
                }
                match b {
                    b'N' => {
                        self.plain(b'\\');
                        self.plain(b'N');
                    }
                    // `\-`: sandbox mode (mariadb-dump's first line), nothing for the buffer.
                    b'-' => {}
                    _ => {
                        self.error.get_or_insert_with(|| {
                            format!(
                                "the dump holds the client command \\{}, which no dump tool writes",
                                b.escape_ascii()
                            )
                        });
                        self.plain(b'\\');
                        self.plain(b);
                    }
                }
                self.st = My::Normal;
                1
            }
            My::DelimArg => match memchr(b'\n', d) {
                None => {
                    self.arg_push(d);
                    d.len()
                }
                Some(j) => {
                    self.arg_push(&d[..j]);
                    self.apply_delimiter();
                    self.st = My::Normal;
                    j
                }
            },
            My::InsKw { k } => {
                let b = d[0];
                if INSERT_INTO.get(k as usize) == Some(&b) {
                    self.plain(b);
                    self.st = if k as usize + 1 == INSERT_INTO.len() {
                        My::InsName { idx: 0, ok: true }
                    } else {
                        My::InsKw { k: k + 1 }
                    };
                    1
                } else {
                    self.st = My::Normal;
                    0
                }
            }
            My::InsName { idx, ok } => {
                let j = memchr(b'`', d).unwrap_or(d.len());
                let ok = ok && self.sec_name().get(idx..idx + j) == Some(&d[..j]);
                if j == d.len() {
                    self.st = My::InsName { idx: idx + j, ok };
                    return j;
                }
                self.st = My::InsNameQ { idx: idx + j, ok };
                j + 1
            }
            My::InsNameQ { idx, ok } => {
                if d[0] == b'`' {
                    let ok = ok && self.sec_name().get(idx) == Some(&b'`');
                    self.st = My::InsName { idx: idx + 1, ok };
                    1
                } else {
                    let ok = ok && idx == self.sec_name().len();
                    self.st = My::InsAfter { k: 0, ok };
                    0
                }
            }
            My::InsAfter { k, ok } => {
                let b = d[0];
                let k = k as usize;
                if k == 1 && b == b'(' {
                    self.plain(b);
                    self.st = My::InsCols { ok };
                    return 1;
                }
                if let Some(&want) = VALUES_KW.get(k) {
                    if b == want {
                        self.plain(b);
                        self.st = My::InsAfter { k: k as u8 + 1, ok };
                        return 1;
                    }
                } else if ok && (b == b' ' || b == b'\n') {
                    self.ins_rows = 0;
                    self.st = My::Values;
                    return 1;
                }
                self.st = My::Normal;
                0
            }
            My::InsCols { ok } => {
                let b = d[0];
                match b {
                    b'`' => self.st = My::InsColName { ok },
                    b')' => self.st = My::InsAfter { k: 0, ok },
                    b',' | b' ' => {}
                    _ => {
                        self.st = My::Normal;
                        return 0;
                    }
                }
                self.plain(b);
                1
            }
            My::InsColName { ok } => match memchr(b'`', d) {
                None => d.len(),
                Some(j) => {
                    self.st = My::InsColQ { ok };
                    j + 1
                }
            },
            My::InsColQ { ok } => {
                if d[0] == b'`' {
                    self.st = My::InsColName { ok };
                    1
                } else {
                    self.st = My::InsCols { ok };
                    0
                }
            }
        }
    }

    fn normal(&mut self, b: u8) {
        if self.semis > 0 && b != b';' {
            // A run of `;` shorter than the delimiter is statement text.
            for _ in 0..std::mem::take(&mut self.semis) {
                self.plain(b';');
            }
        }
        let was_star = std::mem::replace(&mut self.prev_star, b == b'*');
        match b {
            b';' => {
                self.semis += 1;
                if self.semis >= self.delim {
                    self.semis = 0;
                    self.statement_end();
                }
            }
            b'\n' => self.newline(),
            b' ' | b'\t' | b'\r' | 0x0b | 0x0c => {
                self.line_start = false;
                if self.boundary {
                    return;
                }
                if self.stmt_line_head && self.head.eq_ignore_ascii_case(b"delimiter") {
                    // The client takes the whole line as its DELIMITER command.
                    self.boundary = true;
                    self.capturing = false;
                    self.arg.clear();
                    self.st = My::DelimArg;
                } else {
                    self.plain(b);
                }
            }
            b'-' => {
                self.pend_col0 = self.line_start && self.boundary;
                self.line_start = false;
                self.line_head = false;
                self.st = My::Dash1;
            }
            b'/' => {
                if was_star && self.ss {
                    self.ss = false;
                }
                self.line_start = false;
                self.line_head = false;
                self.st = My::Slash1;
            }
            b'#' => {
                self.end_marker = false;
                self.line_start = false;
                self.line_head = false;
                self.cur_line = LineKind::Other;
                self.line_capture = false;
                self.st = My::LineComment;
            }
            b'\'' | b'"' | b'`' => {
                self.plain(b);
                self.st = My::Str { q: b };
            }
            b'\\' => {
                self.line_start = false;
                self.line_head = false;
                self.st = My::Backslash;
            }
            _ => {
                let starts = self.boundary;
                self.plain(b);
                if starts && b == b'I' && self.can_count() {
                    self.st = My::InsKw { k: 1 };
                }
            }
        }
    }

    fn newline(&mut self) {
        if !self.boundary && self.stmt_line_head && self.head.eq_ignore_ascii_case(b"delimiter") {
            // DELIMITER without an argument: the client complains and drops the line.
            self.boundary = true;
            self.capturing = false;
        }
        self.ss = false;
        self.prev_line = self.cur_line;
        self.cur_line = LineKind::Blank;
        self.line_start = true;
        self.line_head = self.boundary;
    }

    /// A byte the client adds to its statement buffer.
    fn plain(&mut self, b: u8) {
        if self.boundary {
            self.boundary = false;
            self.stmt_line_head = self.line_head;
            self.head.clear();
            self.head_full = false;
            self.capturing = true;
        }
        self.line_start = false;
        self.line_head = false;
        self.cur_line = LineKind::Other;
        self.end_marker = false;
        if self.capturing {
            self.capture(&[b]);
        }
    }

    fn statement_end(&mut self) {
        self.end_marker = false;
        self.cur_line = LineKind::Other;
        self.line_start = false;
        self.line_head = false;
        if !self.boundary && !self.head_full {
            if self
                .head
                .trim_ascii()
                .eq_ignore_ascii_case(b"UNLOCK TABLES")
            {
                self.close_section();
            } else if contains_ci(&self.head, b"sql_mode") {
                self.apply_set();
            }
        }
        self.boundary = true;
        self.capturing = false;
    }

    fn start_ml(&mut self) {
        self.end_marker = false;
        self.cur_line = LineKind::Other;
        self.line_head = false;
        self.st = My::MlComment { p: P_NONE };
    }

    fn str_bytes(&mut self, s: &[u8]) {
        if self.capturing {
            self.capture(s);
        }
        if self.ss && memchr(b'\n', s).is_some() {
            self.ss = false;
        }
    }

    fn capture(&mut self, s: &[u8]) {
        let room = MY_HEAD_KEEP.saturating_sub(self.head.len());
        if s.len() > room {
            self.head_full = true;
            self.capturing = false;
        } else {
            self.head.extend_from_slice(s);
        }
    }

    fn line_push(&mut self, s: &[u8]) {
        let room = MY_LINE_KEEP.saturating_sub(self.line.len());
        if s.len() > room {
            self.line_full = true;
        }
        self.line.extend_from_slice(&s[..s.len().min(room)]);
    }

    fn arg_push(&mut self, s: &[u8]) {
        let room = 64usize.saturating_sub(self.arg.len());
        self.arg.extend_from_slice(&s[..s.len().min(room)]);
    }

    fn apply_delimiter(&mut self) {
        let arg = self
            .arg
            .trim_ascii()
            .split(|b| b.is_ascii_whitespace())
            .next()
            .unwrap_or_default();
        if arg.is_empty() {
            return;
        }
        if arg.len() <= 4 && arg.iter().all(|&b| b == b';') {
            self.delim = arg.len() as u8;
            self.semis = 0;
        } else {
            let shown = String::from_utf8_lossy(arg).into_owned();
            self.error.get_or_insert_with(|| {
                format!("the dump sets the client delimiter to {shown:?}, which no dump tool does")
            });
        }
    }

    /// A `--` comment line at column 0 between statements ended (its text is in `line`).
    fn comment_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        if line == b"--" {
            if self.name_cont {
                self.bad_section_name();
            }
            self.cur_line = LineKind::DashDash;
        } else if self.name_cont {
            match line.strip_prefix(b"-- ") {
                Some(rest) if !self.line_full => {
                    if let Some(s) = self.sec.as_mut() {
                        s.name.push(b'\n');
                    }
                    self.section_name(rest);
                }
                _ => self.bad_section_name(),
            }
        } else if self.prev_line == LineKind::Blank
            && self.delim == 1
            && line.starts_with(MYSQL_END_MARKER)
        {
            self.close_section();
            self.end_marker = true;
        } else if self.prev_line == LineKind::DashDash && line.starts_with(b"-- ") {
            // A section title: whatever section was open has ended.
            self.close_section();
            if let Some(rest) = line.strip_prefix(b"-- Dumping data for table `") {
                if self.delim == 1 {
                    self.sec = Some(Section {
                        name: Vec::new(),
                        rows: 0,
                        named: false,
                        valid: !self.line_full,
                    });
                    self.section_name(rest);
                }
            }
        }
        self.line = line;
        self.line.clear();
    }

    /// Reads a quoted name up to its closing backtick; mariadb-dump's comments write a newline in a
    /// name as a newline and `-- `, so an unclosed name continues on the next comment line.
    fn section_name(&mut self, rest: &[u8]) {
        let Some(s) = self.sec.as_mut() else {
            return;
        };
        let mut i = 0;
        while i < rest.len() {
            if rest[i] == b'`' {
                if rest.get(i + 1) == Some(&b'`') {
                    s.name.push(b'`');
                    i += 2;
                    continue;
                }
                s.named = true;
                s.valid &= i + 1 == rest.len();
                self.name_cont = false;
                return;
            }
            s.name.push(rest[i]);
            i += 1;
        }
        self.name_cont = s.valid && s.name.len() <= MY_NAME_MAX;
        if !self.name_cont {
            s.valid = false;
        }
    }

    fn bad_section_name(&mut self) {
        self.name_cont = false;
        if let Some(s) = self.sec.as_mut() {
            s.valid = false;
        }
    }

    fn close_section(&mut self) {
        self.name_cont = false;
        if let Some(s) = self.sec.take() {
            if s.named && s.valid {
                let key = match String::from_utf8(s.name) {
                    Ok(k) => k,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                };
                *self.tables.entry(key).or_insert(0) += s.rows;
            }
        }
    }

    fn sec_name(&self) -> &[u8] {
        self.sec.as_ref().map_or(&[][..], |s| &s.name[..])
    }

    /// INSERTs are counted inside a named data section, with the client delimiter `;` (trigger and
    /// routine bodies are dumped with `;;`), and when strings have backslash escapes (as
    /// mariadb-dump writes data).
    fn can_count(&self) -> bool {
        self.delim == 1
            && !self.mode.no_backslash_escapes
            && self.sec.as_ref().is_some_and(|s| s.named && s.valid)
    }

    /// Follows the `SET sql_mode = ...` statements around routines and triggers: a body written
    /// under NO_BACKSLASH_ESCAPES or ANSI_QUOTES is read by the client without backslash escapes.
    fn apply_set(&mut self) {
        let Ok(text) = std::str::from_utf8(&self.head) else {
            return;
        };
        let mut t = text.trim();
        if let Some(r) = t.strip_prefix("/*!").or_else(|| t.strip_prefix("/*M!")) {
            t = r.trim_start_matches(|c: char| c.is_ascii_digit());
            t = t.trim();
            t = t.strip_suffix("*/").unwrap_or(t).trim();
        }
        if !t.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("set ")) {
            return;
        }
        for assignment in split_outside_quotes(&t[4..]) {
            let Some((lhs, rhs)) = assignment.split_once('=') else {
                continue;
            };
            let lhs = lhs.trim().to_ascii_lowercase();
            let rhs = rhs.trim();
            let value = match rhs.strip_prefix('\'') {
                Some(lit) => Some(Mode::parse(lit.strip_suffix('\'').unwrap_or(lit))),
                None => match rhs.to_ascii_lowercase().as_str() {
                    "@saved_sql_mode" => Some(self.saved_mode),
                    "@old_sql_mode" => Some(self.old_mode),
                    "@@sql_mode" | "@@session.sql_mode" => Some(self.mode),
                    _ => None,
                },
            };
            let Some(value) = value else {
                continue;
            };
            match lhs.as_str() {
                "sql_mode" | "@@sql_mode" | "@@session.sql_mode" | "session sql_mode"
                | "@@local.sql_mode" | "local sql_mode" => self.mode = value,
                "@saved_sql_mode" => self.saved_mode = value,
                "@old_sql_mode" => self.old_mode = value,
                _ => {}
            }
        }
    }
}

/// Bytes with no meaning to the client's parser inside a statement.
fn is_my_ordinary(b: u8) -> bool {
    !matches!(
        b,
        b';' | b'\n'
            | b' '
            | b'\t'
            | b'\r'
            | 0x0b
            | 0x0c
            | b'-'
            | b'/'
            | b'#'
            | b'\''
            | b'"'
            | b'`'
            | b'\\'
            | b'*'
    )
}

fn is_my_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Splits at commas that are not inside '...'.
fn split_outside_quotes(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces() -> [usize; 8] {
        [1, 2, 3, 5, 7, 11, 64, 1 << 20]
    }

    fn pg(dump: &[u8], piece: usize) -> (PgCounter, Result<()>) {
        let mut c = PgCounter::default();
        for ch in dump.chunks(piece) {
            c.feed(ch);
        }
        let r = c.finish();
        (c, r)
    }

    fn my(dump: &[u8], piece: usize) -> (MysqlCounter, Result<()>) {
        let mut c = MysqlCounter::new();
        for ch in dump.chunks(piece) {
            c.feed(ch);
        }
        let r = c.finish();
        (c, r)
    }

    /// Every chunking gives the same tables and marker; returns them.
    fn pg_all(dump: &[u8]) -> (BTreeMap<String, u64>, bool, bool) {
        let (c, r) = pg(dump, 1 << 20);
        for piece in pieces() {
            let (c2, r2) = pg(dump, piece);
            assert_eq!(c2.tables, c.tables, "piece {piece}");
            assert_eq!(c2.end_marker, c.end_marker, "piece {piece}");
            assert_eq!(r2.is_ok(), r.is_ok(), "piece {piece}");
        }
        (c.tables, c.end_marker, r.is_ok())
    }

    fn my_all(dump: &[u8]) -> (BTreeMap<String, u64>, bool, bool) {
        let (c, r) = my(dump, 1 << 20);
        for piece in pieces() {
            let (c2, r2) = my(dump, piece);
            assert_eq!(c2.tables, c.tables, "piece {piece}");
            assert_eq!(c2.end_marker, c.end_marker, "piece {piece}");
            assert_eq!(r2.is_ok(), r.is_ok(), "piece {piece}");
        }
        (c.tables, c.end_marker, r.is_ok())
    }

    fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    const PG_HEAD: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\nSET statement_timeout = 0;\nSET standard_conforming_strings = on;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n";
    const PG_FOOT: &str =
        "\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc123\n\n";

    fn pg_dump(body: &str) -> Vec<u8> {
        format!("{PG_HEAD}{body}{PG_FOOT}").into_bytes()
    }

    #[test]
    fn pg_counts_rows_whatever_the_chunking() {
        let dump = pg_dump("COPY public.orders (id, note) FROM stdin;\n1\ta\\tb\n2\t\\N\n\\.\n\nCOPY \"Odd Schema\".\"we ird\" (x) FROM stdin;\n\\.\nCOPY public.orders (id, note) FROM stdin;\n3\tc\n\\.\n");
        let (t, marker, ok) = pg_all(&dump);
        assert_eq!(
            t,
            map(&[("public.orders", 3), ("\"Odd Schema\".\"we ird\"", 0)])
        );
        assert!(marker && ok);
        let (c, _) = pg(&dump[..dump.len() - 40], 7);
        assert!(!c.end_marker, "a truncated dump has no marker");
    }

    #[test]
    fn pg_marker_inside_a_comment_literal_is_not_the_end() {
        // Attack 1: the marker text in a table comment, and the dump cut right after it.
        let full = pg_dump("COMMENT ON TABLE public.t IS 'x\n-- PostgreSQL database dump complete\n';\n\nCOPY public.t (id) FROM stdin;\n1\n\\.\n");
        let cut = b"SET standard_conforming_strings = on;\nCOMMENT ON TABLE public.t IS 'x\n-- PostgreSQL database dump complete\n";
        let (_, marker, _) = pg_all(cut);
        assert!(!marker, "the marker inside a literal counts for nothing");
        let (t, marker, ok) = pg_all(&full);
        assert!(marker && ok);
        assert_eq!(t, map(&[("public.t", 1)]));
        // E'' with an escaped quote before the marker line.
        let cut = b"COMMENT ON TABLE t IS E'it\\'s;\n-- PostgreSQL database dump complete\n";
        assert!(!pg_all(cut).1);
        let d = pg_dump("COMMENT ON TABLE t IS E'a\\';\nCOPY public.t (id) FROM stdin;\n';\n");
        let (t, marker, ok) = pg_all(&d);
        assert!(marker && ok && t.is_empty(), "{t:?}");
        // Standard strings have no backslash escapes: 'a\' ends at the quote after the backslash.
        let d = pg_dump("COMMENT ON TABLE t IS 'a\\';\nCOPY public.t (id) FROM stdin;\n1\n\\.\n");
        assert_eq!(pg_all(&d).0, map(&[("public.t", 1)]));
    }

    #[test]
    fn pg_copy_line_inside_a_literal_does_not_start_copy_data() {
        // Attack 2: a fake COPY header in an index comment, before real data.
        let d = pg_dump("COMMENT ON INDEX public.t_pkey IS 'x\nCOPY public.t (id) FROM stdin;\n';\n\nCOPY public.t (id) FROM stdin;\n1\n2\n\\.\n\nCOPY public.u (id) FROM stdin;\n7\n\\.\n");
        let (t, marker, ok) = pg_all(&d);
        assert!(marker && ok, "the real marker is seen");
        // Attack 3: rows land under their own table.
        assert_eq!(t, map(&[("public.t", 2), ("public.u", 1)]));
    }

    #[test]
    fn pg_fake_structure_in_every_kind_of_literal() {
        // What an attacker writes: end the statement, a COPY block, a fake end marker.
        let payload =
            ";\nCOPY public.t (id) FROM stdin;\n1\n\\.\n;\n-- PostgreSQL database dump complete\n";
        let wrappers = [
            ("COMMENT ON TABLE t IS '", "';"),
            ("COMMENT ON TABLE t IS 'it''s", "';"),
            ("COMMENT ON TABLE t IS E'\\'", "';"),
            ("COMMENT ON TABLE t IS E'\\\\'' ", "';"),
            ("SELECT E'a'\n'\\'", "';"),
            ("CREATE TABLE public.\"a\"\"", "\" (x int);"),
            ("CREATE FUNCTION f() RETURNS int AS $$", "$$ LANGUAGE sql;"),
            ("CREATE FUNCTION f() RETURNS int AS $_$ $$ $a$", "$_$ LANGUAGE sql;"),
            ("SELECT 1 /* outer /* nested */", "*/;"),
            (
                "CREATE FUNCTION h() RETURNS int LANGUAGE sql BEGIN ATOMIC\n SELECT CASE WHEN true THEN 1 END",
                ";\nEND;",
            ),
            (
                "SET standard_conforming_strings = off;\nCOMMENT ON TABLE t IS 'a\\'",
                "';\nSET standard_conforming_strings = on;",
            ),
        ];
        for (open, close) in wrappers {
            let d = pg_dump(&format!("{open}{payload}{close}\n"));
            let (t, marker, ok) = pg_all(&d);
            assert!(marker && ok, "{open}");
            assert!(t.is_empty(), "{open}: {t:?}");
            let cut = format!("{PG_HEAD}{open}{payload}");
            let (_, marker, _) = pg_all(cut.as_bytes());
            assert!(!marker, "{open}: cut after the fake marker");
        }
    }

    #[test]
    fn pg_copy_header_must_start_a_line_between_statements() {
        // A COPY header that continues an unfinished statement is not one.
        let d = pg_dump("SELECT 1 +\nCOPY public.t (id) FROM stdin;\n");
        let (t, _, _) = pg_all(&d);
        assert!(t.is_empty());
        // Inside a BEGIN ATOMIC body, psql does not end the statement at `;`.
        let d = pg_dump("CREATE FUNCTION public.h() RETURNS integer\n    LANGUAGE sql\n    BEGIN ATOMIC\n SELECT 1;\n SELECT CASE WHEN true THEN 2 END;\nEND;\nCOPY public.t (id) FROM stdin;\n5\n\\.\n");
        let (t, marker, ok) = pg_all(&d);
        assert!(marker && ok);
        assert_eq!(t, map(&[("public.t", 1)]));
    }

    #[test]
    fn pg_copy_data_is_not_sql() {
        // `\.` and a COPY line inside data values (escaped by pg_dump), quotes that open nothing.
        let d = pg_dump("COPY public.t (id, note) FROM stdin;\n1\t\\\\.\n2\tCOPY public.t (id) FROM stdin;\n3\t-- PostgreSQL database dump complete\n4\tit's a 'quote $$ /*\n\\.x\n\\\n\\.\nCOPY public.u (id) FROM stdin;\n1\n\\.\n");
        let (t, marker, ok) = pg_all(&d);
        assert!(marker && ok);
        assert_eq!(t, map(&[("public.t", 6), ("public.u", 1)]));
    }

    #[test]
    fn pg_literals_and_comments_of_every_kind() {
        let d = pg_dump(concat!(
            "COMMENT ON TABLE t IS 'it''s'; COMMENT ON TABLE t IS E'\\\\'; COMMENT ON TABLE t IS E'\\'';\n",
            "COMMENT ON TABLE t IS E'\\\\'''; COMMENT ON TABLE t IS '\\';\n",
            "SELECT E'a''b\\'c';\n",
            "SELECT E'first'\n  'continues \\' still';\n",
            "SELECT U&'d\\0061t'; SELECT B'01'; SELECT x'1F'; SELECT e'\\x41';\n",
            "SELECT \"we \"\"ird\"; SELECT $1, a$b$c, $$x$$, $a1$ $a $a1$;\n",
            "CREATE FUNCTION g() RETURNS text LANGUAGE sql AS $_$ SELECT 'a$b$c' || $q$\n$$\n$_ $__$\n$q$ $_$;\n",
            "SELECT 1 -- trailing ' comment\n; SELECT 2 /* ' */;\n",
            "SELECT 3 /* a /* b */ ' still comment */;\n",
            "COPY public.t (id) FROM stdin;\n1\n\\.\n",
        ));
        let (t, marker, ok) = pg_all(&d);
        assert!(ok);
        assert!(marker, "the lexer is back in step at the end");
        assert_eq!(t, map(&[("public.t", 1)]));
    }

    #[test]
    fn pg_dollar_tags_of_any_length() {
        // pg_dump grows the tag until the body does not hold it: a tag longer than any buffer.
        let tag = "_".repeat(100_000);
        let body = format!(
            "COPY public.t (id) FROM stdin;\n$_{}$ $$ $_$",
            &tag[..50_000]
        );
        let d = pg_dump(&format!(
            "CREATE FUNCTION f() RETURNS text AS ${tag}$\n{body}\n${tag}$ LANGUAGE sql;\nCOPY public.t (id) FROM stdin;\n1\n\\.\n"
        ));
        let (t, marker, ok) = pg_all(&d);
        assert!(marker && ok);
        assert_eq!(t, map(&[("public.t", 1)]));
    }

    #[test]
    fn pg_marker_must_be_the_last_meaningful_line() {
        let mut d = pg_dump("");
        assert!(pg_all(&d).1);
        d.extend_from_slice(b"-- another comment\n\n\\unrestrict other\n");
        assert!(pg_all(&d).1, "comments and \\unrestrict may follow");
        let mut e = d.clone();
        e.extend_from_slice(b"SELECT 1;\n");
        assert!(!pg_all(&e).1, "a statement after the marker");
        let mut e = d.clone();
        e.extend_from_slice(b"\\connect other\n");
        assert!(!pg_all(&e).1, "another meta-command after the marker");
        let mut e = d.clone();
        e.extend_from_slice(b"/* x */\n");
        assert!(!pg_all(&e).1);
        // The marker must be the whole comment line, at its start, between statements.
        assert!(!pg_all(b"  -- PostgreSQL database dump complete\n").1);
        assert!(!pg_all(b"-- PostgreSQL database dump completed\n").1);
        assert!(!pg_all(b"SELECT\n-- PostgreSQL database dump complete\n").1);
        assert!(
            !pg_all(b"-- PostgreSQL database dump complete").1,
            "no newline"
        );
    }

    #[test]
    fn pg_dump_ending_in_copy_data_is_an_error() {
        let d = b"COPY public.t (id) FROM stdin;\n1\n2\n";
        let (_, marker, ok) = pg_all(d);
        assert!(!marker && !ok);
        // The hostile comment case: the fake header would swallow the real marker.
        let d = b"COPY public.t (id) FROM stdin;\n1\n-- PostgreSQL database dump complete\n";
        let (_, marker, ok) = pg_all(d);
        assert!(!marker && !ok);
    }

    #[test]
    fn pg_names_with_newlines_and_quotes() {
        let d = pg_dump("COPY public.\"nl\n-- PostgreSQL database dump complete\nCOPY x\" (\"a\nb\") FROM stdin;\n1\n2\n\\.\nCOPY \"S\".\"t\"\"q\" (x) FROM stdin;\n\\.\n");
        let (t, marker, ok) = pg_all(&d);
        assert!(marker && ok);
        assert_eq!(
            t,
            map(&[
                (
                    "public.\"nl\n-- PostgreSQL database dump complete\nCOPY x\"",
                    2
                ),
                ("\"S\".\"t\"\"q\"", 0),
            ])
        );
    }

    #[test]
    fn pg_standard_conforming_strings_off() {
        // Then psql reads '...' with backslash escapes.
        let d = b"SET standard_conforming_strings = off;\nCOMMENT ON TABLE t IS 'a\\'\nCOPY public.t (id) FROM stdin;\n';\nCOPY public.t (id) FROM stdin;\n1\n\\.\n\n-- PostgreSQL database dump complete\n";
        let (t, marker, ok) = pg_all(d);
        assert!(marker && ok);
        assert_eq!(t, map(&[("public.t", 1)]));
    }

    #[test]
    fn pg_unknown_copy_header_shapes_are_errors() {
        let (_, _, ok) = pg_all(b"COPY public.\"\" (x) FROM stdin;\n\\.\n");
        assert!(!ok, "empty quoted name");
        let (_, _, ok) = pg_all(b"SELECT 1; COPY public.t (x) FROM stdin;\n\\.\n");
        assert!(!ok, "not at a line start");
    }

    // ---- MySQL ----------------------------------------------------------------------------------

    const MY_HEAD: &str = "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n--\n-- Host: 127.0.0.1    Database: shop\n-- ------------------------------------------------------\n-- Server version\t10.11.19-MariaDB\n\n/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n/*!40101 SET NAMES utf8mb4 */;\n/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\n\n";
    const MY_FOOT: &str =
        "/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;\n/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;\n\n-- Dump completed\n";

    fn my_dump(body: &str) -> Vec<u8> {
        format!("{MY_HEAD}{body}{MY_FOOT}").into_bytes()
    }

    fn section(table: &str, inserts: &str) -> String {
        format!("--\n-- Table structure for table `{table}`\n--\n\nDROP TABLE IF EXISTS `{table}`;\nCREATE TABLE `{table}` (\n  `id` int(11) DEFAULT NULL\n) ENGINE=InnoDB;\n\n--\n-- Dumping data for table `{table}`\n--\n\nLOCK TABLES `{table}` WRITE;\n/*!40000 ALTER TABLE `{table}` DISABLE KEYS */;\n{inserts}/*!40000 ALTER TABLE `{table}` ENABLE KEYS */;\nUNLOCK TABLES;\n\n")
    }

    #[test]
    fn mysql_counts_tuples_not_parens_in_strings() {
        let body = [
            section("t", "INSERT INTO `t` VALUES (1,'a(b'),(2,'it\\'s (x'),(3,NULL);\nINSERT INTO `t` VALUES (4,'');\n"),
            section("m", "INSERT INTO `m` VALUES\n(1,'x;y'),\n(2,'(');\n"),
            section("we``ird name", "INSERT INTO `we``ird name` (`a`, `b)`) VALUES (1,0x00FF),(2,'\\\\');\n"),
            section("quotes", "INSERT INTO `quotes` VALUES (1,'\\'),(\\''),(2,';'),(3,'\\\\'),(4,'\"'),(5,'`'),(6,'-- x'),(7,'/* y');\n"),
        ]
        .concat();
        let (t, marker, ok) = my_all(&my_dump(&body));
        assert!(marker && ok);
        assert_eq!(
            t,
            map(&[("t", 4), ("m", 2), ("we`ird name", 2), ("quotes", 7)])
        );
    }

    #[test]
    fn mysql_empty_tables_are_listed_with_zero_rows() {
        let body = [
            section("empty", ""),
            section("one", "INSERT INTO `one` VALUES (1);\n"),
        ]
        .concat();
        let (t, marker, ok) = my_all(&my_dump(&body));
        assert!(marker && ok);
        assert_eq!(t, map(&[("empty", 0), ("one", 1)]));
    }

    #[test]
    fn mysql_inserts_in_routines_and_triggers_are_not_rows() {
        // Attack 4: INSERT lines in a trigger and a procedure body, DELIMITER ;; blocks, a stray
        // quote in a body, and the marker text inside a body.
        let trigger = "/*!50003 SET @saved_sql_mode       = @@sql_mode */ ;\n/*!50003 SET sql_mode              = 'STRICT_TRANS_TABLES' */ ;\nDELIMITER ;;\n/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`127.0.0.1`*/ /*!50003 TRIGGER tr AFTER INSERT ON t FOR EACH ROW\nBEGIN\nINSERT INTO `audit` VALUES (NEW.id, 0),(3,4);\nEND */;;\nDELIMITER ;\n/*!50003 SET sql_mode              = @saved_sql_mode */ ;\n";
        let routines = "--\n-- Dumping routines for database 'shop'\n--\nDELIMITER ;;\nCREATE DEFINER=`root`@`127.0.0.1` PROCEDURE `p`()\nBEGIN\nINSERT INTO `audit` VALUES (1, NOW()+0),(2,3);\nSELECT 'it''s';\nSELECT '\n-- Dump completed\nUNLOCK TABLES;\nDELIMITER ;\n-- Dumping data for table `audit`\nINSERT INTO `audit` VALUES (5,5);\n';\nSELECT \"a ' b\";\n-- a comment with ' in it\n# and another '\nEND ;;\nDELIMITER ;\n";
        let body = [
            section("t", "INSERT INTO `t` VALUES (1);\n"),
            trigger.to_string(),
            section("audit", ""),
            routines.to_string(),
        ]
        .concat();
        let (t, marker, ok) = my_all(&my_dump(&body));
        assert!(marker && ok);
        assert_eq!(t, map(&[("t", 1), ("audit", 0)]));
        // Cut inside the procedure body, right after its fake marker: no marker.
        let full = my_dump(&body);
        let text = String::from_utf8(full.clone()).unwrap();
        let at = text.find("-- Dump completed\nUNLOCK").unwrap() + "-- Dump completed\n".len();
        let (_, marker, _) = my_all(&full[..at]);
        assert!(!marker);
    }

    #[test]
    fn mysql_only_inserts_into_the_sections_table_count() {
        let body = section(
            "t",
            "INSERT INTO `t` VALUES (1),(2);\nINSERT INTO `other` VALUES (1),(2),(3);\nINSERT INTO `t` (`a`, `g``x`) VALUES (3);\n",
        );
        let (t, _, _) = my_all(&my_dump(&body));
        assert_eq!(t, map(&[("t", 3)]));
        // Outside any section, nothing counts.
        let (t, _, _) = my_all(&my_dump("INSERT INTO `t` VALUES (1),(2);\n"));
        assert!(t.is_empty());
    }

    #[test]
    fn mysql_no_backslash_escapes_routines_are_read_as_the_client_reads_them() {
        // Under NO_BACKSLASH_ESCAPES, 'a\' is a whole string: a backslash-aware reader would think
        // the string goes on, and see the `;;`, DELIMITER and marker lines that are in fact inside
        // the next string.
        let routine = "/*!50003 SET @saved_sql_mode       = @@sql_mode */ ;\n/*!50003 SET sql_mode              = 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES' */ ;\nDELIMITER ;;\nCREATE DEFINER=\"root\"@\"%\" PROCEDURE \"p2\"()\nBEGIN SELECT 'a\\'; SELECT \"b\\\" FROM dual; SELECT ';;\nDELIMITER ;\n--\n-- Dumping data for table `t`\n--\nINSERT INTO `t` VALUES (9),(9);\n\n-- Dump completed\n'; END\n;;\nDELIMITER ;\n/*!50003 SET sql_mode              = @saved_sql_mode */ ;\n";
        let body = [
            section("t", "INSERT INTO `t` VALUES (1);\n"),
            routine.to_string(),
        ]
        .concat();
        let full = my_dump(&body);
        let (t, marker, ok) = my_all(&full);
        assert!(marker && ok);
        assert_eq!(t, map(&[("t", 1)]));
        let text = String::from_utf8(full.clone()).unwrap();
        let at = text.find("-- Dump completed\n'").unwrap() + "-- Dump completed\n".len();
        assert!(!my_all(&full[..at]).1);
        // Back in the default mode, a backslash escapes again.
        let after = section("u", "INSERT INTO `u` VALUES (1,'x\\'),('),(2,'y');\n");
        let (t, _, _) = my_all(&my_dump(&[body, after].concat()));
        assert_eq!(t, map(&[("t", 1), ("u", 2)]));
    }

    #[test]
    fn mysql_names_with_newlines() {
        // mariadb-dump writes a newline in a name as newline + "-- " in comments, raw in SQL.
        let name = "nl\n-- Dump completed\nx";
        let comment_name = "nl\n-- -- Dump completed\n-- x";
        let body = format!("--\n-- Table structure for table `{comment_name}`\n--\n\nCREATE TABLE `{name}` (\n  `c\nol` int\n);\n\n--\n-- Dumping data for table `{comment_name}`\n--\n\nLOCK TABLES `{name}` WRITE;\nINSERT INTO `{name}` VALUES\n(1),\n(2);\nUNLOCK TABLES;\n\n");
        let full = my_dump(&body);
        let (t, marker, ok) = my_all(&full);
        assert!(marker && ok);
        assert_eq!(t, map(&[(name, 2)]));
        // Cut right after a line that reads "-- Dump completed" inside a quoted name.
        let text = String::from_utf8(full.clone()).unwrap();
        for (at, _) in text.match_indices("-- Dump completed\n") {
            let end = at + "-- Dump completed\n".len();
            if end < full.len() {
                assert!(!my_all(&full[..end]).1, "cut at {end}");
            }
        }
        // A name continuation that reads like the end marker in a comment.
        let sneaky = "--\n-- Table structure for table `x\n-- Dump completed\n-- y`\n--\n";
        let d = format!("{MY_HEAD}{sneaky}");
        let cut = d.find("-- Dump completed\n").unwrap() + "-- Dump completed\n".len();
        assert!(!my_all(&d.as_bytes()[..cut]).1);
    }

    #[test]
    fn mysql_marker_must_be_the_last_meaningful_line() {
        let d = my_dump("");
        assert!(my_all(&d).1);
        let mut e = d.clone();
        e.extend_from_slice(b"\n-- trailing comment\n\n");
        assert!(my_all(&e).1);
        let mut e = d.clone();
        e.extend_from_slice(b"SELECT 1;\n");
        assert!(!my_all(&e).1);
        let mut e = d.clone();
        e.extend_from_slice(b"DELIMITER ;;\n");
        assert!(!my_all(&e).1);
        // With a date, as without --skip-dump-date.
        let e = String::from_utf8(d).unwrap().replace(
            "-- Dump completed\n",
            "-- Dump completed on 2026-11-23 10:00:00\n",
        );
        assert!(my_all(e.as_bytes()).1);
        // Inside a DELIMITER ;; block: not the end.
        let e = format!("{MY_HEAD}DELIMITER ;;\n\n-- Dump completed\n");
        assert!(!my_all(e.as_bytes()).1);
    }

    #[test]
    fn mysql_comments_and_versioned_comments() {
        let body = [
            section("t", "INSERT INTO `t` VALUES (1);\n"),
            "/* plain ' comment */ /*!40000 SELECT ';' */;\n/*!50003 x /* c */ ' */ */ SELECT 1;\n# hash ' comment\n-- dash ' comment\nSELECT 1 --'still a string';\nSELECT 2;-- x '\n".to_string(),
            section("u", "INSERT INTO `u` VALUES (1),(2);\n"),
        ]
        .concat();
        let (t, marker, ok) = my_all(&my_dump(&body));
        assert!(ok);
        assert_eq!(t, map(&[("t", 1), ("u", 2)]));
        assert!(marker);
    }

    #[test]
    fn mysql_unknown_client_commands_and_delimiters_are_errors() {
        let (_, _, ok) = my_all(&my_dump("SELECT 1 \\g\n"));
        assert!(!ok);
        let (_, _, ok) = my_all(&my_dump("DELIMITER //\nSELECT 1//\nDELIMITER ;\n"));
        assert!(!ok);
    }

    // ---- throughput --------------------------------------------------------------------------

    fn pg_synth(mb: usize) -> Vec<u8> {
        let mut d = PG_HEAD.as_bytes().to_vec();
        d.extend_from_slice(b"COPY public.orders (id, note, at, price) FROM stdin;\n");
        let mut i = 0u64;
        while d.len() < mb << 20 {
            d.extend_from_slice(
                format!(
                    "{i}\tsome text value here, with a \\t tab\t2024-01-01 00:00:00+00\t{}.25\n",
                    i % 1000
                )
                .as_bytes(),
            );
            i += 1;
        }
        d.extend_from_slice(b"\\.\n");
        d.extend_from_slice(PG_FOOT.as_bytes());
        d
    }

    fn my_synth(mb: usize) -> Vec<u8> {
        let mut d = MY_HEAD.as_bytes().to_vec();
        d.extend_from_slice(
            b"--\n-- Dumping data for table `orders`\n--\n\nLOCK TABLES `orders` WRITE;\n",
        );
        let mut i = 0u64;
        while d.len() < mb << 20 {
            d.extend_from_slice(b"INSERT INTO `orders` VALUES\n");
            for k in 0..5000 {
                if k > 0 {
                    d.extend_from_slice(b",\n");
                }
                d.extend_from_slice(
                    format!(
                        "({i},'some text value here, it\\'s (x)','2024-01-01 00:00:00',{}.25,NULL)",
                        i % 1000
                    )
                    .as_bytes(),
                );
                i += 1;
            }
            d.extend_from_slice(b";\n");
        }
        d.extend_from_slice(b"UNLOCK TABLES;\n");
        d.extend_from_slice(MY_FOOT.as_bytes());
        d
    }

    /// Schema only: the byte-by-byte lexer, no COPY or INSERT fast path.
    fn ddl_synth(mb: usize, pg: bool) -> Vec<u8> {
        let mut d = Vec::new();
        let mut i = 0u64;
        while d.len() < mb << 20 {
            let s = if pg {
                format!("CREATE TABLE public.t{i} (\n    id integer NOT NULL,\n    note text DEFAULT 'it''s'::text,\n    \"Odd\" numeric(10,2)\n);\nCOMMENT ON TABLE public.t{i} IS 'a comment, with ; and -- inside';\nCREATE FUNCTION public.f{i}() RETURNS text\n    LANGUAGE sql\n    AS $_$ SELECT 'x' $_$;\n\n")
            } else {
                format!("DROP TABLE IF EXISTS `t{i}`;\nCREATE TABLE `t{i}` (\n  `id` int(11) NOT NULL,\n  `note` text DEFAULT 'it\\'s',\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='a comment, with ; and -- inside';\n/*!40101 SET character_set_client = @saved_cs_client */;\n\n")
            };
            d.extend_from_slice(s.as_bytes());
            i += 1;
        }
        d
    }

    /// Best of five runs, MB/s.
    fn best_of<F: FnMut()>(bytes: usize, mut f: F) -> f64 {
        (0..5)
            .map(|_| {
                let t = std::time::Instant::now();
                f();
                bytes as f64 / t.elapsed().as_secs_f64() / 1e6
            })
            .fold(0.0, f64::max)
    }

    /// `cargo test --release --lib counters::tests::throughput -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn throughput() {
        let d = ddl_synth(50, true);
        let r = best_of(d.len(), || PgCounter::default().feed(&d));
        println!("pg    DDL            {r:.0} MB/s");
        let d = ddl_synth(50, false);
        let r = best_of(d.len(), || MysqlCounter::new().feed(&d));
        println!("mysql DDL            {r:.0} MB/s");
        let d = pg_synth(200);
        let r = best_of(d.len(), || {
            let mut c = PgCounter::default();
            for ch in d.chunks(256 * 1024) {
                c.feed(ch);
            }
            assert!(c.finish().is_ok() && c.end_marker);
            assert_eq!(c.tables.len(), 1);
        });
        println!("pg    COPY data      {r:.0} MB/s");
        let d = my_synth(200);
        let r = best_of(d.len(), || {
            let mut c = MysqlCounter::new();
            for ch in d.chunks(256 * 1024) {
                c.feed(ch);
            }
            assert!(c.finish().is_ok() && c.end_marker);
            assert_eq!(c.tables.len(), 1);
        });
        println!("mysql INSERT values  {r:.0} MB/s");
    }
}
