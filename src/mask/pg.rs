//! Masking a plain pg_dump on the stream: the rows of each COPY block of a table with rules.
//!
//! psql's lexer ([`PgCounter`]) follows the dump, so a row is only ever a line of COPY data, never
//! text in a function body that looks like one. A row is held whole (one row, never a table),
//! split at its tabs (a tab inside a value is written `\t`), and each masked field is decoded from
//! COPY's text format (`\N`, backslash escapes), transformed and encoded again. Everything else
//! passes through unchanged. A row whose field count is not the header's, or a rule naming a
//! column the COPY header does not have, fails the stream: nothing unmasked goes on.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read};
use std::sync::Arc;

use memchr::memchr;

use super::transform::Transform;
use super::DbMask;
use crate::sql::filter::{ChunkFilter, Filtered};
use crate::sql::PgCounter;

/// A plain pg_dump with the rows of `mask`'s tables masked.
pub fn pg_mask<R: Read + Send>(inner: R, mask: Arc<DbMask>) -> impl Read + Send {
    Filtered::new(
        inner,
        PgMask {
            lex: PgCounter::new(),
            mask,
            plans: HashMap::new(),
            seen: BTreeSet::new(),
            out: Vec::new(),
            line: Vec::new(),
            state: Line::Start,
            types: HashMap::new(),
            head: Vec::new(),
            head_at_start: false,
            creating: None,
        },
    )
}

/// Per column of a COPY block: its rule, if any.
type Plan = Arc<Vec<Option<Transform>>>;

struct PgMask {
    lex: PgCounter,
    mask: Arc<DbMask>,
    /// By table, as pg_dump quoted it: None for a table without rules.
    plans: HashMap<String, Option<Plan>>,
    /// Tables with rules whose data was seen (unquoted).
    seen: BTreeSet<String>,
    /// What `process` wrote, handed to the adapter after each chunk.
    out: Vec<u8>,
    line: Vec<u8>,
    state: Line,
    /// Column types from the dump's CREATE TABLE statements (table -> column -> type), for the
    /// coverage check: an `inet` column or one of an `email` domain looks personal by its type.
    types: HashMap<String, HashMap<String, String>>,
    /// The first bytes of the current passing line, and whether it began a statement.
    head: Vec<u8>,
    head_at_start: bool,
    /// The CREATE TABLE being read.
    creating: Option<String>,
}

/// A CREATE TABLE line's first bytes kept: a column's name and type fit.
const HEAD_KEEP: usize = 512;

enum Line {
    Start,
    Pass,
    Row(Plan),
}

impl ChunkFilter for PgMask {
    fn process(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let r = self.rewrite(chunk);
        out.append(&mut self.out);
        r
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        out.append(&mut self.out);
        self.check_end()
    }
}

impl PgMask {
    /// At the first COPY block: pg_dump writes every CREATE TABLE before any data, so a rule for a
    /// column no table has fails here, before a single row went on.
    fn check_rules_against_schema(&self) -> io::Result<()> {
        for (table, rules) in &self.mask.tables {
            let Some(cols) = self.types.get(table) else {
                continue;
            };
            for (col, _) in rules {
                if !cols.contains_key(col) {
                    let mut have: Vec<&str> = cols.keys().map(String::as_str).collect();
                    have.sort_unstable();
                    return Err(io::Error::other(format!(
                        "masking {}:{table}: the dump's CREATE TABLE {table} has no column {col:?} (it has: {})",
                        self.mask.source,
                        have.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// Rows written as INSERT statements (`pg_dump --inserts`) are not masked: an INSERT into a
    /// table with rules fails the stream before its first byte goes on.
    fn refuse_insert(&self) -> io::Result<()> {
        let Some(rest) = self.head.strip_prefix(b"INSERT INTO ") else {
            return Ok(());
        };
        let Some(end) = insert_target_end(rest) else {
            return Ok(());
        };
        let name = unquote_qualified(&String::from_utf8_lossy(&rest[..end]));
        if self.mask.tables.contains_key(&name) {
            return Err(io::Error::other(format!(
                "masking {}:{name}: the dump writes its rows as INSERT statements (pg_dump --inserts), which masking does not rewrite; dump with COPY (pg_dump's default)",
                self.mask.source
            )));
        }
        Ok(())
    }

    /// Follows pg_dump's CREATE TABLE statements (one column per line) for the columns' types.
    fn schema_line(&mut self) {
        let line = String::from_utf8_lossy(&self.head).into_owned();
        if let Some(table) = self.creating.clone() {
            if line.starts_with(')') {
                self.creating = None;
            } else if let Some(col) = line.strip_prefix("    ") {
                if let Some((name, rest)) = split_ident(col) {
                    let ty = rest.split_whitespace().next().unwrap_or("");
                    let ty = ty.trim_end_matches(',').to_string();
                    self.types.entry(table).or_default().insert(name, ty);
                }
            }
            return;
        }
        if !self.head_at_start {
            return;
        }
        let rest = line
            .strip_prefix("CREATE TABLE ")
            .or_else(|| line.strip_prefix("CREATE UNLOGGED TABLE "));
        if let Some(name) = rest.and_then(|r| r.strip_suffix(" (\n")) {
            self.creating = Some(unquote_qualified(name));
        }
    }

    fn plan(&mut self, table: &str, columns: &[String]) -> io::Result<Option<Plan>> {
        if let Some(p) = self.plans.get(table) {
            return Ok(p.clone());
        }
        if self.plans.is_empty() {
            self.check_rules_against_schema()?;
        }
        let name = unquote_qualified(table);
        let types = self.types.get(&name);
        let cols: Vec<(String, Option<String>)> = columns
            .iter()
            .map(|c| (c.clone(), types.and_then(|t| t.get(c)).cloned()))
            .collect();
        let mask = self.mask.clone();
        self.mask
            .coverage
            .table(&name, &cols, &|c| mask.rule_of(&name, c))
            .map_err(io::Error::other)?;
        let plan = match self.mask.tables.get(&name) {
            None => None,
            Some(rules) => {
                let mut plan = vec![None; columns.len()];
                for (col, t) in rules {
                    let Some(i) = columns.iter().position(|c| c == col) else {
                        return Err(io::Error::other(format!(
                            "masking {}:{name}: the dump's COPY of {name} has no column {col:?} (it has: {})",
                            self.mask.source,
                            columns.join(", ")
                        )));
                    };
                    plan[i] = Some(t.clone());
                }
                self.seen.insert(name);
                Some(Arc::new(plan))
            }
        };
        self.plans.insert(table.to_string(), plan.clone());
        Ok(plan)
    }

    fn rewrite(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if let Line::Start = self.state {
                let target = self
                    .lex
                    .copy_line_start()
                    .map(|(t, c)| (t.to_string(), c.to_vec()));
                self.state = match target {
                    Some((table, columns)) => match self.plan(&table, &columns)? {
                        Some(plan) => Line::Row(plan),
                        None => Line::Pass,
                    },
                    None => Line::Pass,
                };
                self.head.clear();
                self.head_at_start = self.lex.at_statement_start();
            }
            let end = memchr(b'\n', data).map_or(data.len(), |i| i + 1);
            let (piece, rest) = data.split_at(end);
            data = rest;
            let complete = piece.last() == Some(&b'\n');
            match &self.state {
                Line::Start => unreachable!("decided above"),
                Line::Pass => {
                    // Only a statement's first line or a CREATE TABLE's lines are looked at,
                    // never COPY data.
                    if self.head_at_start || self.creating.is_some() {
                        let keep = HEAD_KEEP.saturating_sub(self.head.len()).min(piece.len());
                        self.head.extend_from_slice(&piece[..keep]);
                        if self.head_at_start {
                            self.refuse_insert()?;
                        }
                        if complete {
                            self.schema_line();
                        }
                    }
                    self.lex.feed(piece);
                    self.out.extend_from_slice(piece);
                }
                Line::Row(plan) => {
                    self.line.extend_from_slice(piece);
                    if !complete {
                        continue;
                    }
                    let plan = plan.clone();
                    let line = std::mem::take(&mut self.line);
                    self.lex.feed(&line);
                    if line == b"\\.\n" {
                        self.out.extend_from_slice(&line);
                    } else {
                        mask_row(&line, &plan, &self.mask, &mut self.out).map_err(|e| {
                            io::Error::other(format!("masking {}: {e:#}", self.mask.source))
                        })?;
                    }
                    self.line = line;
                    self.line.clear();
                }
            }
            if complete {
                self.state = Line::Start;
            }
        }
        Ok(())
    }

    /// At the end: every table with rules must have been in the dump.
    fn check_end(&mut self) -> io::Result<()> {
        if !self.line.is_empty() {
            return Err(io::Error::other(format!(
                "masking {}: the dump ends inside a COPY row",
                self.mask.source
            )));
        }
        let missing: Vec<&String> = self
            .mask
            .tables
            .keys()
            .filter(|t| !self.seen.contains(*t))
            .collect();
        if !missing.is_empty() {
            return Err(io::Error::other(format!(
                "masking {}: the dump has no data for {} named by office.masking.tables",
                self.mask.source,
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }
}

/// Where the table name of `INSERT INTO name (...)`/`name VALUES` ends: at the first space or `(`
/// outside quotes. None while it has not ended yet (a long name split across reads).
fn insert_target_end(s: &[u8]) -> Option<usize> {
    let mut quoted = false;
    for (i, &b) in s.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b' ' | b'(' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// A column definition's name (plain or "quoted") and the rest of the line.
fn split_ident(s: &str) -> Option<(String, &str)> {
    if let Some(q) = s.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = q.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if chars.peek().map(|(_, c)| *c) == Some('"') {
                    name.push('"');
                    chars.next();
                } else {
                    return Some((name, &q[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        return None;
    }
    let end = s.find(' ')?;
    Some((s[..end].to_string(), &s[end..]))
}

/// `public."Odd Name"` -> `public.Odd Name`: the names as the config writes them.
pub fn unquote_qualified(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut quoted = false;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                out.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            c => out.push(c),
        }
    }
    out
}

fn mask_row(
    line: &[u8],
    plan: &[Option<Transform>],
    mask: &DbMask,
    out: &mut Vec<u8>,
) -> anyhow::Result<()> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let mut fields = 0;
    for (i, field) in body.split(|&b| b == b'\t').enumerate() {
        fields += 1;
        if i > 0 {
            out.push(b'\t');
        }
        match plan.get(i) {
            None => anyhow::bail!(
                "a COPY row has more fields than the {} columns its header names",
                plan.len()
            ),
            Some(None) => out.extend_from_slice(field),
            Some(Some(t)) => {
                let value = if field == b"\\N" {
                    None
                } else if memchr(b'\\', field).is_none() {
                    // Most values have no escape: no copy to decode them.
                    Some(String::from_utf8_lossy(field))
                } else {
                    Some(std::borrow::Cow::Owned(
                        String::from_utf8_lossy(&decode(field)).into_owned(),
                    ))
                };
                match t.apply(&mask.key, value.as_deref())? {
                    None => out.extend_from_slice(b"\\N"),
                    Some(v) => encode(&v, out),
                }
            }
        }
    }
    if fields != plan.len() {
        anyhow::bail!(
            "a COPY row has {fields} fields where its header names {} columns",
            plan.len()
        );
    }
    out.push(b'\n');
    Ok(())
}

/// COPY text format to bytes: `\b \f \n \r \t \v \\`, octal `\123`, hex `\x4F`; any other
/// backslashed byte stands for itself.
fn decode(f: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(f.len());
    let mut i = 0;
    while i < f.len() {
        let b = f[i];
        if b != b'\\' || i + 1 == f.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let c = f[i + 1];
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                let mut n = 1;
                while n < 3 && i < f.len() && (b'0'..=b'7').contains(&f[i]) {
                    v = v * 8 + u32::from(f[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if i < f.len() && f[i].is_ascii_hexdigit() => {
                let mut v = 0u8;
                let mut n = 0;
                while n < 2 && i < f.len() && f[i].is_ascii_hexdigit() {
                    v = v * 16 + (f[i] as char).to_digit(16).unwrap_or(0) as u8;
                    i += 1;
                    n += 1;
                }
                out.push(v);
            }
            other => out.push(other),
        }
    }
    out
}

fn encode(v: &str, out: &mut Vec<u8>) {
    let bytes = v.as_bytes();
    // Most masked values need no escape at all.
    if !bytes.iter().any(|&b| b == b'\\' || b < 0x20) {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            8 => out.extend_from_slice(b"\\b"),
            12 => out.extend_from_slice(b"\\f"),
            11 => out.extend_from_slice(b"\\v"),
            b => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_round_trips() {
        for v in [
            "plain",
            "tab\there",
            "new\nline",
            "back\\slash",
            "Zoë \u{1F600}",
            "\\N as text",
            "cr\r\u{8}\u{b}\u{c}",
        ] {
            let mut enc = Vec::new();
            encode(v, &mut enc);
            assert!(!enc.contains(&b'\t') && !enc.contains(&b'\n'));
            assert_eq!(decode(&enc), v.as_bytes(), "{v:?}");
        }
        assert_eq!(decode(b"\\101\\x42\\q"), b"ABq");
        assert_eq!(
            unquote_qualified("public.\"Odd \"\"x\"\"\""),
            "public.Odd \"x\""
        );
    }
}
