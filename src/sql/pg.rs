//! PostgreSQL: psql's lexer (psqlscan.l) followed over a plain pg_dump, with its COPY data.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use anyhow::{bail, Result};
use memchr::{memchr, memchr2, memmem, memrchr};

/// The last comment pg_dump writes.
pub const PG_END_MARKER: &[u8] = b"-- PostgreSQL database dump complete";

/// A statement's first bytes kept: a COPY header with its column list (1600 columns of up to 63
/// bytes, quoted, as masking needs them) or a SET fits.
const PG_HEAD_KEEP: usize = 256 * 1024;
/// The longest `schema.table` pg_dump can write: two identifiers of at most 63 bytes, each quoted
/// with every byte a doubled quote at worst, and the dot.
const PG_COPY_NAME_MAX: usize = 2 * (2 * 63 + 2) + 1;
/// Enough of a statement's last bytes to see ` FROM stdin` before its `;`.
const PG_TAIL_KEEP: usize = 16;
/// A comment or psql meta-command line is only ever compared with short texts.
const PG_LINE_KEEP: usize = 64;

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
    /// What `tables` holds, in bytes (names plus a fixed cost per table): the office bounds it,
    /// since a hostile dump can name a new table every few dozen bytes.
    pub names_bytes: u64,
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
    /// The column list of the COPY header just read, and of the COPY data being read.
    pending_columns: Vec<String>,
    copy_columns: Vec<String>,
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
    /// Statements ended so far (each `;` that ends a non-empty statement, where psql ends it).
    statements: u64,
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
            names_bytes: 0,
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
            pending_columns: Vec::new(),
            copy_columns: Vec::new(),
            copy_table: None,
            copy_rows: 0,
            copy_pos: 0,
            tag_hash: 0,
            tag_len: 0,
            base: 2 + rand::random::<u64>() % (TAG_P - 3),
            error: None,
            statements: 0,
        }
    }

    /// How many statements have ended so far.
    pub fn statements(&self) -> u64 {
        self.statements
    }

    /// Inside the data lines of a `COPY ... FROM stdin` block.
    pub fn in_copy(&self) -> bool {
        self.st == Pg::Copy
    }

    /// In COPY data: consumes `d` up to and including the block's closing `\.` line (then the
    /// lexer is back at a statement start) or all of it. Outside COPY data it consumes nothing.
    pub fn feed_copy(&mut self, d: &[u8]) -> usize {
        if self.st == Pg::Copy {
            self.copy_data(d)
        } else {
            0
        }
    }

    /// At the start of a COPY data line (a row, or the closing `\.`): the table as pg_dump quoted it
    /// and the header's column names, unquoted.
    pub fn copy_line_start(&self) -> Option<(&str, &[String])> {
        match (self.st, self.copy_pos, &self.copy_table) {
            (Pg::Copy, 0, Some(t)) => Some((t.as_str(), &self.copy_columns)),
            _ => None,
        }
    }

    /// psql's query buffer is empty and the lexer is outside every literal, comment and COPY
    /// data: the next byte starts a new statement.
    pub fn at_statement_start(&self) -> bool {
        self.st == Pg::Normal && self.boundary && self.pending_copy.is_none()
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
                self.copy_columns = std::mem::take(&mut self.pending_columns);
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
        if was_stmt {
            self.statements += 1;
        }
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
                Some(name) if name.len() > PG_COPY_NAME_MAX => {
                    self.error.get_or_insert_with(|| {
                        format!(
                            "a COPY header names a table of {} bytes, longer than PostgreSQL allows",
                            name.len()
                        )
                    });
                    None
                }
                Some(name) => {
                    self.pending_columns =
                        pg_copy_columns(&head[5 + name.len()..]).unwrap_or_default();
                    String::from_utf8(name.to_vec()).ok()
                }
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
            super::add_rows(&mut self.tables, &mut self.names_bytes, t, self.copy_rows);
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

/// The column names of a COPY header after its table name: ` (a, "B c", d) FROM stdin`, unquoted.
fn pg_copy_columns(s: &[u8]) -> Option<Vec<String>> {
    let mut s = s.strip_prefix(b" (")?;
    let mut cols = Vec::new();
    loop {
        let (name, rest) = if s.first() == Some(&b'"') {
            let mut name = Vec::new();
            let mut i = 1;
            loop {
                match *s.get(i)? {
                    b'"' if s.get(i + 1) == Some(&b'"') => {
                        name.push(b'"');
                        i += 2;
                    }
                    b'"' => break,
                    b => {
                        name.push(b);
                        i += 1;
                    }
                }
            }
            (name, &s[i + 1..])
        } else {
            let n = s.iter().take_while(|b| !matches!(b, b',' | b')')).count();
            (s[..n].to_vec(), &s[n..])
        };
        cols.push(String::from_utf8(name).ok()?);
        match rest.first()? {
            b',' => s = rest[1..].strip_prefix(b" ").unwrap_or(&rest[1..]),
            b')' => return Some(cols),
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
