//! Masking a mariadb-dump/mysqldump on the stream: the INSERT tuples of each table with rules.
//!
//! mariadb-dump writes each table's `CREATE TABLE` with one column per line, then its rows as
//! `INSERT INTO `t` VALUES (...),(...);` lines (strings escaped, so a row never spans lines). The
//! column order comes from the CREATE TABLE (or from the INSERT's own column list, with
//! `--complete-insert`). Each INSERT of a masked table is parsed value by value (quotes, backslash
//! escapes, `_binary`/`_utf8mb4` introducers, hex and bit literals, NULL, numbers); the masked
//! values are replaced and every other byte is copied as it was. A statement that does not parse,
//! or a tuple whose width is not the table's, fails the stream.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read};
use std::sync::Arc;

use anyhow::{bail, Result};
use memchr::memchr;

use super::transform::Transform;
use super::DbMask;
use crate::sql::filter::{ChunkFilter, Filtered};

/// A MariaDB/MySQL dump with the rows of `mask`'s tables masked.
pub fn mysql_mask<R: Read + Send>(inner: R, mask: Arc<DbMask>) -> impl Read + Send {
    Filtered::new(
        inner,
        MyMask {
            mask,
            columns: HashMap::new(),
            creating: None,
            seen: BTreeSet::new(),
            out: Vec::new(),
            line: Vec::new(),
            passing: false,
            insert: None,
        },
    )
}

/// A table's columns with their types, as its CREATE TABLE gives them.
type Columns = Vec<(String, Option<String>)>;

struct MyMask {
    mask: Arc<DbMask>,
    /// Column names by table, from the dump's CREATE TABLE statements.
    columns: HashMap<String, Vec<String>>,
    /// The CREATE TABLE being read: its table and columns (with their types) so far.
    creating: Option<(String, Columns)>,
    seen: BTreeSet<String>,
    /// What `process` wrote, handed to the adapter after each chunk.
    out: Vec<u8>,
    /// The current line (or INSERT statement, when a raw newline sits inside one of its strings).
    line: Vec<u8>,
    /// The rest of the current line goes through unread.
    passing: bool,
    /// The INSERT of a masked table being rewritten.
    insert: Option<Insert>,
}

const INSERT: &[u8] = b"INSERT INTO `";
/// What mysqldump writes instead with --insert-ignore and --replace.
const INSERT_KINDS: [&[u8]; 3] = [INSERT, b"INSERT IGNORE INTO `", b"REPLACE INTO `"];
const CREATE: &[u8] = b"CREATE TABLE `";

impl ChunkFilter for MyMask {
    fn process(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let r = self.rewrite(chunk);
        out.append(&mut self.out);
        r
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if !INSERT_KINDS.iter().any(|k| self.line.starts_with(k)) {
            // A last line without a newline.
            out.append(&mut self.line);
        }
        out.append(&mut self.out);
        self.check_end()
    }
}

impl MyMask {
    fn rewrite(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let end = memchr(b'\n', data).map_or(data.len(), |i| i + 1);
            let (piece, rest) = data.split_at(end);
            data = rest;
            let complete = piece.last() == Some(&b'\n');
            if self.passing {
                self.out.extend_from_slice(piece);
                self.passing = !complete;
                continue;
            }
            if let Some(ins) = &mut self.insert {
                ins.buf.extend_from_slice(piece);
                if complete {
                    self.step_insert().map_err(|e| {
                        io::Error::other(format!("masking {}: {e:#}", self.mask.source))
                    })?;
                }
                continue;
            }
            self.line.extend_from_slice(piece);
            if !complete {
                // A line that can be neither an INSERT nor a table's definition goes straight on.
                if self.creating.is_none() && !could_matter(&self.line) {
                    self.out.append(&mut self.line);
                    self.passing = true;
                }
                continue;
            }
            let line = std::mem::take(&mut self.line);
            match self.on_line(&line) {
                Ok(true) => {}
                Ok(false) => self.line = line,
                Err(e) => {
                    return Err(match e.downcast::<super::coverage::Uncovered>() {
                        Ok(u) => io::Error::other(u),
                        Err(e) => io::Error::other(format!("masking {}: {e:#}", self.mask.source)),
                    })
                }
            }
        }
        Ok(())
    }

    /// A whole line (or statement). Ok(false): an INSERT whose string runs on; keep reading.
    fn on_line(&mut self, line: &[u8]) -> Result<bool> {
        if let Some((table, mut cols)) = self.creating.take() {
            if line.starts_with(b")") {
                let mask = self.mask.clone();
                self.mask
                    .coverage
                    .table(&table, &cols, &|c| mask.rule_of(&table, c))?;
                self.columns
                    .insert(table, cols.into_iter().map(|(c, _)| c).collect());
            } else {
                if let Some(rest) = line.strip_prefix(b"  `") {
                    if let Some((name, after)) = ident(rest) {
                        let ty = String::from_utf8_lossy(after)
                            .split_whitespace()
                            .next()
                            .map(str::to_string);
                        cols.push((name, ty));
                    }
                }
                self.creating = Some((table, cols));
            }
            self.out.extend_from_slice(line);
            return Ok(true);
        }
        if let Some(rest) = line.strip_prefix(CREATE) {
            if let Some((name, _)) = ident(rest) {
                self.creating = Some((name, Vec::new()));
            }
            self.out.extend_from_slice(line);
            return Ok(true);
        }
        if let Some(rest) = INSERT_KINDS.iter().find_map(|k| line.strip_prefix(*k)) {
            let Some((table, after)) = ident(rest) else {
                self.out.extend_from_slice(line);
                return Ok(true);
            };
            let Some(rules) = self.mask.tables.get(&table) else {
                self.out.extend_from_slice(line);
                return Ok(true);
            };
            let columns = self.columns.get(&table).cloned().unwrap_or_default();
            let Some((header, plan, body)) = insert_header(after, &table, &columns, rules)? else {
                // The header runs on to the next line.
                return Ok(false);
            };
            self.out
                .extend_from_slice(&line[..line.len() - after.len()]);
            self.out.extend_from_slice(header);
            self.seen.insert(table.clone());
            self.insert = Some(Insert {
                table,
                plan,
                after_tuple: false,
                buf: body.to_vec(),
            });
            self.step_insert()?;
            return Ok(true);
        }
        self.out.extend_from_slice(line);
        Ok(true)
    }

    /// Rewrites what the INSERT under way has complete; at its `;`, the rest goes out as it is.
    fn step_insert(&mut self) -> Result<()> {
        let Some(ins) = &mut self.insert else {
            return Ok(());
        };
        if ins.step(&self.mask, &mut self.out)? {
            // Only the line's end may follow: a second statement there would go on unmasked.
            if !ins.buf.iter().all(u8::is_ascii_whitespace) {
                bail!(
                    "INSERT INTO `{}`: more text follows its `;` on the same line",
                    ins.table
                );
            }
            self.out.extend_from_slice(&ins.buf);
            self.insert = None;
        }
        Ok(())
    }

    fn check_end(&mut self) -> io::Result<()> {
        if self.insert.is_some() || INSERT_KINDS.iter().any(|k| self.line.starts_with(k)) {
            return Err(io::Error::other(format!(
                "masking {}: the dump ends inside an INSERT",
                self.mask.source
            )));
        }
        let missing: Vec<&str> = self
            .mask
            .tables
            .keys()
            .filter(|t| !self.seen.contains(*t) && !self.columns.contains_key(*t))
            .map(|s| s.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(io::Error::other(format!(
                "masking {}: the dump has no table {} named by office.masking.tables",
                self.mask.source,
                missing.join(", ")
            )));
        }
        Ok(())
    }
}

/// Whether a line starting with `h` may still be an INSERT or a CREATE TABLE.
fn could_matter(h: &[u8]) -> bool {
    INSERT_KINDS.iter().chain([&CREATE]).any(|p| {
        let n = h.len().min(p.len());
        h[..n] == p[..n]
    })
}

/// A backquoted name at the start of `s` (its opening quote already read): the name and the rest
/// after the closing quote.
fn ident(s: &[u8]) -> Option<(String, &[u8])> {
    let mut name = Vec::new();
    let mut i = 0;
    loop {
        match *s.get(i)? {
            b'`' if s.get(i + 1) == Some(&b'`') => {
                name.push(b'`');
                i += 2;
            }
            b'`' => return Some((String::from_utf8(name).ok()?, &s[i + 1..])),
            b => {
                name.push(b);
                i += 1;
            }
        }
    }
}

/// One value of a tuple.
enum Value {
    Null,
    /// A quoted string (with any introducer), decoded.
    Str(Vec<u8>),
    /// 0x... or X'...', decoded.
    Hex(Vec<u8>),
    /// Anything else (numbers, bit literals), as written.
    Raw,
}

/// An INSERT of a masked table being rewritten, tuple by tuple as its lines come (mariadb-dump
/// writes one tuple per line; a statement may be megabytes long).
struct Insert {
    table: String,
    plan: Vec<Option<Transform>>,
    after_tuple: bool,
    /// Bytes read but not yet rewritten: at most a tuple's worth.
    buf: Vec<u8>,
}

/// The start of an INSERT after `INSERT INTO `t``: ` [(cols)] VALUES`. Returns the header as
/// written, the plan (the rule per column) and the bytes after VALUES. None: the header is not
/// complete yet.
#[allow(clippy::type_complexity)]
fn insert_header<'a>(
    s: &'a [u8],
    table: &str,
    columns: &[String],
    rules: &[(String, Transform)],
) -> Result<Option<(&'a [u8], Vec<Option<Transform>>, &'a [u8])>> {
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && s[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    // An explicit column list (mysqldump --complete-insert).
    let mut own_cols = Vec::new();
    if s.get(i) == Some(&b'(') {
        i += 1;
        loop {
            skip_ws(&mut i);
            match s.get(i) {
                None => return Ok(None),
                Some(b'`') => {}
                Some(_) => {
                    bail!("INSERT INTO `{table}`: a column list that is not backquoted names")
                }
            }
            let Some((name, rest)) = ident(&s[i + 1..]) else {
                return Ok(None);
            };
            own_cols.push(name);
            i = s.len() - rest.len();
            skip_ws(&mut i);
            match s.get(i) {
                Some(b',') => i += 1,
                Some(b')') => {
                    i += 1;
                    break;
                }
                None => return Ok(None),
                _ => bail!("INSERT INTO `{table}`: a column list that does not close"),
            }
        }
    }
    let cols: &[String] = if own_cols.is_empty() {
        columns
    } else {
        &own_cols
    };
    if cols.is_empty() {
        bail!("INSERT INTO `{table}` comes before its CREATE TABLE: its columns are unknown, so its rows cannot be masked");
    }
    let mut plan = vec![None; cols.len()];
    for (col, t) in rules {
        match cols.iter().position(|c| c == col) {
            Some(p) => plan[p] = Some(t.clone()),
            None => bail!(
                "office.masking names {table}.{col}, but table {table} has no such column (it has: {})",
                cols.join(", ")
            ),
        }
    }
    skip_ws(&mut i);
    if s.len() < i + 6 {
        return Ok(None);
    }
    if !s[i..].starts_with(b"VALUES") {
        bail!("INSERT INTO `{table}`: no VALUES where expected");
    }
    i += 6;
    Ok(Some((&s[..i], plan, &s[i..])))
}

impl Insert {
    /// Rewrites every complete tuple in `buf` into `out`. Ok(true): the statement's `;` was
    /// written, and what followed it stays in `buf`.
    fn step(&mut self, mask: &DbMask, out: &mut Vec<u8>) -> Result<bool> {
        let s = &self.buf;
        let mut i = 0;
        let finished = loop {
            let ws = i;
            while i < s.len() && s[i].is_ascii_whitespace() {
                i += 1;
            }
            out.extend_from_slice(&s[ws..i]);
            let Some(&b) = s.get(i) else { break false };
            if self.after_tuple {
                match b {
                    b',' => {
                        out.push(b',');
                        i += 1;
                        self.after_tuple = false;
                    }
                    b';' => {
                        out.push(b';');
                        i += 1;
                        break true;
                    }
                    _ => bail!(
                        "INSERT INTO `{}`: a tuple is not followed by , or ;",
                        self.table
                    ),
                }
            } else {
                if b != b'(' {
                    bail!(
                        "INSERT INTO `{}`: a tuple does not start with (",
                        self.table
                    );
                }
                match tuple(s, i, &self.table, &self.plan, mask, out)? {
                    None => break false,
                    Some(end) => {
                        i = end;
                        self.after_tuple = true;
                    }
                }
            }
        };
        self.buf.drain(..i);
        Ok(finished)
    }
}

/// Writes the tuple at `s[start]` (a `(`) to `out`, rewritten, and returns where it ends. None: it
/// is not complete yet (and `out` is as it was).
fn tuple(
    s: &[u8],
    start: usize,
    table: &str,
    plan: &[Option<Transform>],
    mask: &DbMask,
    out: &mut Vec<u8>,
) -> Result<Option<usize>> {
    let mark = out.len();
    let r = tuple_into(s, start, table, plan, mask, out);
    if !matches!(r, Ok(Some(_))) {
        out.truncate(mark);
    }
    r
}

fn tuple_into(
    s: &[u8],
    start: usize,
    table: &str,
    plan: &[Option<Transform>],
    mask: &DbMask,
    out: &mut Vec<u8>,
) -> Result<Option<usize>> {
    out.push(b'(');
    let mut i = start + 1;
    let mut n = 0;
    loop {
        let ws = i;
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        out.extend_from_slice(&s[ws..i]);
        let vstart = i;
        let decode = matches!(plan.get(n), Some(Some(_)));
        let Some(value) = scan_value(s, &mut i, decode)? else {
            return Ok(None);
        };
        match plan.get(n) {
            None => bail!(
                "INSERT INTO `{table}`: a tuple has more values than the table's {} columns",
                plan.len()
            ),
            Some(None) => out.extend_from_slice(&s[vstart..i]),
            Some(Some(t)) => {
                let (text, was_number) = match &value {
                    Value::Null => (None, false),
                    Value::Str(b) | Value::Hex(b) => {
                        (Some(String::from_utf8_lossy(b).into_owned()), false)
                    }
                    Value::Raw => (
                        Some(String::from_utf8_lossy(&s[vstart..i]).into_owned()),
                        true,
                    ),
                };
                match t.apply(&mask.key, text.as_deref())? {
                    None => out.extend_from_slice(b"NULL"),
                    Some(v) if was_number && v.parse::<f64>().is_ok() => {
                        out.extend_from_slice(v.as_bytes())
                    }
                    Some(v) => quote(&v, out),
                }
            }
        }
        n += 1;
        let ws = i;
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        out.extend_from_slice(&s[ws..i]);
        match s.get(i) {
            Some(b',') => {
                out.push(b',');
                i += 1;
            }
            Some(b')') => {
                out.push(b')');
                i += 1;
                break;
            }
            None => return Ok(None),
            Some(_) => bail!("INSERT INTO `{table}`: a value is not followed by , or )"),
        }
    }
    if n != plan.len() {
        bail!(
            "INSERT INTO `{table}`: a tuple has {n} values where the table has {} columns",
            plan.len()
        );
    }
    Ok(Some(i))
}

/// Reads one value at `*i`; a string's text is decoded only when `decode` (a masked column).
/// None: the input ends inside it.
fn scan_value(s: &[u8], i: &mut usize, decode: bool) -> Result<Option<Value>> {
    let rest = &s[*i..];
    if rest.len() >= 4 && rest[..4].eq_ignore_ascii_case(b"NULL") {
        *i += 4;
        return Ok(Some(Value::Null));
    }
    // A charset introducer: _binary '...', _utf8mb4'...'.
    if rest.first() == Some(&b'_') {
        let n = rest
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count();
        *i += n;
        while *i < s.len() && s[*i] == b' ' {
            *i += 1;
        }
        if s.get(*i) != Some(&b'\'') {
            bail!("a charset introducer is not followed by a string");
        }
    }
    match s.get(*i) {
        None => Ok(None),
        Some(b'\'') | Some(b'"') => {
            let q = s[*i];
            *i += 1;
            let mut v = Vec::new();
            loop {
                // Runs of plain bytes at once: only a quote or a backslash needs a look.
                let Some(k) = memchr::memchr2(q, b'\\', &s[*i..]) else {
                    return Ok(None);
                };
                if decode {
                    v.extend_from_slice(&s[*i..*i + k]);
                }
                *i += k + 1;
                if s[*i - 1] == b'\\' {
                    let Some(&c) = s.get(*i) else {
                        return Ok(None);
                    };
                    *i += 1;
                    if decode {
                        v.push(match c {
                            b'0' => 0,
                            b'b' => 8,
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'Z' => 26,
                            other => other,
                        });
                    }
                } else if s.get(*i) == Some(&q) {
                    if decode {
                        v.push(q);
                    }
                    *i += 1;
                } else if *i == s.len() {
                    // The closing quote may yet be doubled by what comes next.
                    return Ok(None);
                } else {
                    return Ok(Some(Value::Str(v)));
                }
            }
        }
        Some(b'0') if matches!(s.get(*i + 1), Some(b'x') | Some(b'X')) => {
            let start = *i + 2;
            let n = s[start..]
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            *i = start + n;
            // Decoded only for a masked column: an unmasked blob is copied as it is.
            let bytes = if decode {
                hex::decode(&s[start..start + n]).unwrap_or_default()
            } else {
                Vec::new()
            };
            Ok(Some(Value::Hex(bytes)))
        }
        Some(_) => {
            let n = s[*i..]
                .iter()
                .take_while(|b| !matches!(b, b',' | b')') && !b.is_ascii_whitespace())
                .count();
            if *i + n == s.len() {
                return Ok(None);
            }
            *i += n;
            Ok(Some(Value::Raw))
        }
    }
}

/// A string literal the mariadb client and server read back as `v`.
fn quote(v: &str, out: &mut Vec<u8>) {
    out.push(b'\'');
    let bytes = v.as_bytes();
    if !bytes
        .iter()
        .any(|&b| matches!(b, 0 | b'\'' | b'\\' | b'\n' | b'\r' | 26))
    {
        out.extend_from_slice(bytes);
        out.push(b'\'');
        return;
    }
    for &b in bytes {
        match b {
            0 => out.extend_from_slice(b"\\0"),
            b'\'' => out.extend_from_slice(b"\\'"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            26 => out.extend_from_slice(b"\\Z"),
            b => out.push(b),
        }
    }
    out.push(b'\'');
}
