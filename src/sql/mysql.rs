//! MySQL/MariaDB: the mysql/mariadb client's line parser followed over a mariadb-dump/mysqldump.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use memchr::{memchr, memchr2, memchr3};

/// How mysqldump and mariadb-dump's last line starts (` on <date>` follows without --skip-dump-date).
pub const MYSQL_END_MARKER: &[u8] = b"-- Dump completed";

/// A statement's first bytes kept: the longest `SET sql_mode = '...'` mariadb-dump writes fits.
const MY_HEAD_KEEP: usize = 2048;
/// A comment line's first bytes kept: `-- Dumping data for table ` and a 64-character name, every
/// byte a doubled backtick or 4-byte character, fit.
const MY_LINE_KEEP: usize = 2048;
/// A data section's name longer than this is not one mariadb-dump wrote.
const MY_NAME_MAX: usize = 1024;

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
    /// What `tables` holds, in bytes ([`crate::sql::PgCounter::names_bytes`]).
    pub names_bytes: u64,
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
    /// Section titles seen (`-- Table structure for table `t``, after a `--` line, with the
    /// delimiter `;`), and the last one's line.
    titles: u64,
    title: Vec<u8>,
    /// Statements ended so far (empty ones too).
    statements: u64,
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
            names_bytes: 0,
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
            titles: 0,
            title: Vec::new(),
            statements: 0,
        }
    }

    /// How many section titles have ended so far.
    pub fn titles(&self) -> u64 {
        self.titles
    }

    /// The last section title's line (`-- Dumping data for table `t``), as far as it was kept.
    pub fn title(&self) -> &[u8] {
        &self.title
    }

    /// How many statements have ended so far, where the client ends them.
    pub fn statements(&self) -> u64 {
        self.statements
    }

    /// The client's statement buffer is empty, outside every comment and string, with the
    /// delimiter `;`: what follows is a new statement the client reads as a dump tool wrote it.
    pub fn at_statement_start(&self) -> bool {
        self.st == My::Normal && self.boundary && self.delim == 1 && self.semis == 0
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
        self.statements += 1;
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
            if self.delim == 1 && !self.line_full {
                self.titles += 1;
                self.title.clear();
                self.title.extend_from_slice(&line);
            }
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
                super::add_rows(&mut self.tables, &mut self.names_bytes, key, s.rows);
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
