//! Running a dump through psql without letting the dump run psql meta-commands.
//!
//! A snapshot is signed by its production host, and a hacked production host can sign anything: a
//! dump with `\! rm -rf ~` would run on the office machine, which holds the key that decrypts every
//! backup. psql's `\restrict KEY` (PostgreSQL 13.22, 14.19, 15.14, 16.10, 17.6 and later) refuses every
//! meta-command until `\unrestrict KEY`. offsite starts psql's input with its own `\restrict` and a
//! random key the dump cannot know, so a meta-command anywhere in the dump aborts the restore. The
//! security does not depend on parsing the dump: [`PsqlGuard`] only removes pg_dump's own
//! `\restrict`/`\unrestrict` lines, which psql would otherwise reject. If it misses one, psql fails
//! closed.

use std::io::{self, Read};

use anyhow::{bail, Result};
use memchr::memchr;

/// The first line psql reads.
pub fn restrict_line() -> Vec<u8> {
    let key: String = (0..32)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect();
    format!("\\restrict {key}\n").into_bytes()
}

/// Refuses a psql that cannot restrict meta-commands (`psql (PostgreSQL) 15.20 (Debian ...)`).
pub fn check_psql_version(version: &str) -> Result<()> {
    let v = version
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .unwrap_or("");
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let ok = match major {
        0..=12 => false,
        13 => minor >= 22,
        14 => minor >= 19,
        15 => minor >= 14,
        16 => minor >= 10,
        17 => minor >= 6,
        _ => true,
    };
    if !ok {
        bail!(
            "{version:?} cannot restrict meta-commands (\\restrict), so a hostile dump could run shell commands here; \
             install a current postgresql-client (13.22, 14.19, 15.14, 16.10, 17.6 or later)"
        );
    }
    Ok(())
}

const RESTRICT: &[u8] = b"\\restrict ";
const UNRESTRICT: &[u8] = b"\\unrestrict ";

/// Passes a plain pg_dump through, without pg_dump's own `\restrict` line (before the first COPY)
/// and its `\unrestrict` lines (which never start a COPY data line: pg_dump does not emit `\u`).
pub struct PsqlGuard<R> {
    inner: R,
    buf: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    head: Vec<u8>,
    /// The first bytes of the current line, whatever happened to them: to notice COPY headers.
    prefix: Vec<u8>,
    line_start: bool,
    dropping: bool,
    seen_copy: bool,
}

impl<R: Read> PsqlGuard<R> {
    pub fn new(inner: R, preamble: Vec<u8>) -> Self {
        Self {
            inner,
            buf: vec![0; 256 * 1024],
            out: preamble,
            pos: 0,
            head: Vec::new(),
            prefix: Vec::new(),
            line_start: true,
            dropping: false,
            seen_copy: false,
        }
    }

    fn note_prefix(&mut self, bytes: &[u8]) {
        let room = 5usize.saturating_sub(self.prefix.len());
        self.prefix
            .extend_from_slice(&bytes[..room.min(bytes.len())]);
    }

    fn end_line(&mut self) {
        if self.prefix.starts_with(b"COPY ") {
            self.seen_copy = true;
        }
        self.prefix.clear();
        self.line_start = true;
    }

    fn process(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.dropping {
                match memchr(b'\n', data) {
                    Some(i) => {
                        data = &data[i + 1..];
                        self.dropping = false;
                        self.prefix.clear();
                        self.line_start = true;
                    }
                    None => return,
                }
                continue;
            }
            if self.line_start {
                // Hold back the start of the line until it can no longer be a line to drop.
                let end = memchr(b'\n', data).map(|i| i + 1).unwrap_or(data.len());
                let take = end.min(UNRESTRICT.len().saturating_sub(self.head.len()).max(1));
                self.head.extend_from_slice(&data[..take]);
                let taken = &data[..take];
                data = &data[take..];
                let room = 5usize.saturating_sub(self.prefix.len());
                self.prefix
                    .extend_from_slice(&taken[..room.min(taken.len())]);
                let h = &self.head[..];
                let complete_line = h.last() == Some(&b'\n');
                let could_be = |p: &[u8]| p.starts_with(&h[..h.len().min(p.len())]);
                if h.starts_with(UNRESTRICT) || (!self.seen_copy && h.starts_with(RESTRICT)) {
                    self.head.clear();
                    if complete_line {
                        self.prefix.clear();
                        self.line_start = true;
                    } else {
                        self.dropping = true;
                        self.line_start = false;
                    }
                    continue;
                }
                if !complete_line
                    && (could_be(UNRESTRICT) || (!self.seen_copy && could_be(RESTRICT)))
                    && h.len() < UNRESTRICT.len()
                {
                    continue;
                }
                self.out.extend_from_slice(&self.head);
                self.head.clear();
                if complete_line {
                    self.end_line();
                } else {
                    self.line_start = false;
                }
                continue;
            }
            match memchr(b'\n', data) {
                Some(i) => {
                    self.note_prefix(&data[..i]);
                    self.out.extend_from_slice(&data[..=i]);
                    data = &data[i + 1..];
                    self.end_line();
                }
                None => {
                    self.note_prefix(data);
                    self.out.extend_from_slice(data);
                    return;
                }
            }
        }
    }
}

impl<R: Read> Read for PsqlGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            self.out.clear();
            self.pos = 0;
            let n = self.inner.read(&mut self.buf)?;
            if n == 0 {
                // A line start held back at the very end (no newline) goes out as it is.
                let head = std::mem::take(&mut self.head);
                self.out.extend_from_slice(&head);
                if self.out.is_empty() {
                    return Ok(0);
                }
                break;
            }
            let chunk = std::mem::take(&mut self.buf);
            self.process(&chunk[..n]);
            self.buf = chunk;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], piece: usize) -> Vec<u8> {
        struct Pieces<'a>(&'a [u8], usize);
        impl Read for Pieces<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        PsqlGuard::new(Pieces(input, piece), b"\\restrict OURS\n".to_vec())
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn drops_pg_dumps_own_restrict_lines_only() {
        let dump = b"--\n\\restrict abc\nSET x = 1;\nCOPY t (a) FROM stdin;\n\\restrict as data\n\\r\n\\.\n-- PostgreSQL database dump complete\n\n\\unrestrict abc\n";
        let want = b"\\restrict OURS\n--\nSET x = 1;\nCOPY t (a) FROM stdin;\n\\restrict as data\n\\r\n\\.\n-- PostgreSQL database dump complete\n\n";
        for piece in [1, 2, 3, 5, 13, 4096] {
            assert_eq!(
                String::from_utf8_lossy(&run(dump, piece)),
                String::from_utf8_lossy(want),
                "piece {piece}"
            );
        }
    }

    #[test]
    fn meta_commands_pass_through_for_psql_to_refuse() {
        let dump = b"SELECT 1;\n\\! touch /tmp/x\n\\unrestrict OURS\n";
        let out = run(dump, 7);
        assert!(out.windows(4).any(|w| w == b"\\! t"));
        assert!(
            !out.windows(17).any(|w| w == b"\\unrestrict OURS\n"),
            "a dump cannot lift our restriction"
        );
    }

    #[test]
    fn psql_versions() {
        assert!(check_psql_version("psql (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)").is_ok());
        assert!(check_psql_version("psql (PostgreSQL) 15.13").is_err());
        assert!(check_psql_version("psql (PostgreSQL) 18.1").is_ok());
        assert!(check_psql_version("psql (PostgreSQL) 12.22").is_err());
    }
}
