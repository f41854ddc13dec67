//! Restoring a dump as the restoring role: ownership and privileges are mapped to it, on the stream.
//!
//! verify and refresh restore with a least-privilege role ([`crate::db::privilege`]), which cannot
//! give objects to other roles or create them in another user's name. pg_dump writes `ALTER ...
//! OWNER TO role;`, `GRANT`/`REVOKE` and `ALTER DEFAULT PRIVILEGES` lines, mariadb-dump writes
//! `DEFINER=`user`@`host`` into views, triggers, routines and events. Restored as they are, the
//! first such line fails the restore. So the restore stream goes through a filter that does what
//! `pg_restore --no-owner --no-privileges` (and mydumper's `--skip-definer`) do: the owner and
//! privilege statements are left out, a DEFINER becomes `CURRENT_USER`, and everything is owned by
//! the restoring role. The counts go to the verification record, so the report says so.
//!
//! Neither filter is a security boundary (the role's rights are): a statement a filter misses
//! fails, and one it drops wrongly can only make the restore differ, which the row counts and
//! checks then show. Only whole lines are dropped, and for PostgreSQL only where psql's own lexer
//! ([`PgCounter`]) says a statement starts and ends, so a line of a function body or of COPY data
//! that looks like a GRANT is never touched.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use memchr::{memchr, memmem};

use super::filter::{ChunkFilter, Filtered};
use super::PgCounter;

/// How many statements the filter changed, for the verification record.
#[derive(Debug, Default)]
pub struct Mapped {
    /// `ALTER ... OWNER TO` statements left out.
    pub owner: AtomicU64,
    /// `GRANT`, `REVOKE`, `ALTER DEFAULT PRIVILEGES` statements left out.
    pub privileges: AtomicU64,
    /// `DEFINER=` clauses made `CURRENT_USER`.
    pub definers: AtomicU64,
}

impl Mapped {
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.owner.load(Ordering::Relaxed),
            self.privileges.load(Ordering::Relaxed),
            self.definers.load(Ordering::Relaxed),
        )
    }
}

/// A line is looked at whole only up to this length; an owner or privilege statement is far
/// shorter, and a longer line goes through unchanged.
const HOLD_MAX: usize = 64 * 1024;
/// A held line grows by at most this much before the policy looks at it again.
const HOLD_STEP: usize = 4096;

/// What a filter does with lines.
trait LinePolicy {
    /// A line starts: hold it back to look at it, or let it through.
    fn hold(&mut self) -> bool;
    /// The first bytes of a held line: still worth holding?
    fn keep_holding(&self, held: &[u8]) -> bool;
    /// Bytes that go through unchanged.
    fn pass(&mut self, bytes: &[u8]);
    /// A held line ends (`complete`: with its newline) or is no longer held: what goes out.
    fn release(&mut self, held: &[u8], complete: bool, out: &mut Vec<u8>);
}

/// Applies a [`LinePolicy`] with bounded memory.
struct LineFilter<P> {
    policy: P,
    held: Vec<u8>,
    state: Line,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Line {
    Start,
    Held,
    Pass,
}

impl<P: LinePolicy> LineFilter<P> {
    fn new(policy: P) -> Self {
        Self {
            policy,
            held: Vec::new(),
            state: Line::Start,
        }
    }
}

impl<P: LinePolicy> ChunkFilter for LineFilter<P> {
    fn process(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        while !data.is_empty() {
            match self.state {
                Line::Start => {
                    self.state = if self.policy.hold() {
                        self.held.clear();
                        Line::Held
                    } else {
                        Line::Pass
                    };
                }
                Line::Pass => {
                    let end = memchr(b'\n', data).map_or(data.len(), |i| i + 1);
                    self.policy.pass(&data[..end]);
                    out.extend_from_slice(&data[..end]);
                    if data[end - 1] == b'\n' {
                        self.state = Line::Start;
                    }
                    data = &data[end..];
                }
                Line::Held => {
                    let end = memchr(b'\n', data).map_or(data.len(), |i| i + 1);
                    let take = end.min(HOLD_STEP);
                    self.held.extend_from_slice(&data[..take]);
                    let complete = data[take - 1] == b'\n';
                    data = &data[take..];
                    if complete {
                        self.policy.release(&self.held, true, out);
                        self.state = Line::Start;
                    } else if self.held.len() > HOLD_MAX || !self.policy.keep_holding(&self.held) {
                        self.policy.release(&self.held, false, out);
                        self.state = Line::Pass;
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if self.state == Line::Held {
            self.state = Line::Pass;
            let held = std::mem::take(&mut self.held);
            self.policy.release(&held, false, out);
        }
        Ok(())
    }
}

/// A plain pg_dump without its owner and privilege statements (`--no-owner --no-privileges`).
pub fn pg_no_owner<R: Read + Send>(inner: R, mapped: Arc<Mapped>) -> impl Read + Send {
    Filtered::new(
        inner,
        LineFilter::new(PgPolicy {
            lex: PgCounter::new(),
            mapped,
        }),
    )
}

struct PgPolicy {
    lex: PgCounter,
    mapped: Arc<Mapped>,
}

const PG_STARTS: [&[u8]; 3] = [b"ALTER ", b"GRANT ", b"REVOKE "];

#[derive(Debug, PartialEq, Eq)]
enum PgKind {
    Owner,
    Privileges,
}

/// An owner or privilege statement, as pg_dump writes them: one line each.
fn pg_kind(line: &[u8]) -> Option<PgKind> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.ends_with(b";") {
        return None;
    }
    if line.starts_with(b"GRANT ")
        || line.starts_with(b"REVOKE ")
        || line.starts_with(b"ALTER DEFAULT PRIVILEGES ")
    {
        return Some(PgKind::Privileges);
    }
    if line.starts_with(b"ALTER ") && memmem::find(line, b" OWNER TO ").is_some() {
        return Some(PgKind::Owner);
    }
    None
}

impl LinePolicy for PgPolicy {
    fn hold(&mut self) -> bool {
        self.lex.at_statement_start()
    }

    fn keep_holding(&self, held: &[u8]) -> bool {
        PG_STARTS
            .iter()
            .any(|s| s.starts_with(&held[..held.len().min(s.len())]))
    }

    fn pass(&mut self, bytes: &[u8]) {
        self.lex.feed(bytes);
    }

    fn release(&mut self, held: &[u8], complete: bool, out: &mut Vec<u8>) {
        self.lex.feed(held);
        // The statement must also end with this line, where psql would end it.
        if complete && self.lex.at_statement_start() {
            match pg_kind(held) {
                Some(PgKind::Owner) => {
                    self.mapped.owner.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(PgKind::Privileges) => {
                    self.mapped.privileges.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                None => {}
            }
        }
        out.extend_from_slice(held);
    }
}

/// A mariadb-dump/mysqldump with every `DEFINER=user@host` made `DEFINER=CURRENT_USER`.
pub fn mysql_no_definer<R: Read + Send>(inner: R, mapped: Arc<Mapped>) -> impl Read + Send {
    Filtered::new(inner, LineFilter::new(MyPolicy { mapped }))
}

struct MyPolicy {
    mapped: Arc<Mapped>,
}

/// Data lines: every INSERT of a data section is one line, and holds no DEFINER to rewrite.
const MY_DATA: &[u8] = b"INSERT INTO ";

impl LinePolicy for MyPolicy {
    fn hold(&mut self) -> bool {
        true
    }

    fn keep_holding(&self, held: &[u8]) -> bool {
        !held.starts_with(MY_DATA)
    }

    fn pass(&mut self, _bytes: &[u8]) {}

    fn release(&mut self, held: &[u8], _complete: bool, out: &mut Vec<u8>) {
        if held.starts_with(MY_DATA) {
            out.extend_from_slice(held);
            return;
        }
        let n = rewrite_definers(held, out);
        self.mapped.definers.fetch_add(n, Ordering::Relaxed);
    }
}

const DEFINER: &[u8] = b"DEFINER=";
const CURRENT_USER: &[u8] = b"CURRENT_USER";

/// Copies `line` to `out` with each `DEFINER=`u`@`h`` (or `'u'@'h'`, or a role's `DEFINER=`r``)
/// replaced by `DEFINER=CURRENT_USER`. Returns how many it replaced.
fn rewrite_definers(line: &[u8], out: &mut Vec<u8>) -> u64 {
    let mut n = 0;
    let mut rest = line;
    while let Some(i) = memmem::find(rest, DEFINER) {
        let after = &rest[i + DEFINER.len()..];
        out.extend_from_slice(&rest[..i + DEFINER.len()]);
        match account_len(after) {
            Some(len) if !after.starts_with(CURRENT_USER) => {
                out.extend_from_slice(CURRENT_USER);
                rest = &after[len..];
                n += 1;
            }
            _ => rest = after,
        }
    }
    out.extend_from_slice(rest);
    n
}

/// The length of `user@host` (each quoted with backticks or single quotes) or of a quoted role.
fn account_len(s: &[u8]) -> Option<usize> {
    let user = quoted_len(s)?;
    match s.get(user) {
        Some(b'@') => Some(user + 1 + quoted_len(&s[user + 1..])?),
        _ => Some(user),
    }
}

/// The length of a backtick- or single-quoted name at the start of `s` (doubled quotes inside).
fn quoted_len(s: &[u8]) -> Option<usize> {
    let q = *s.first()?;
    if q != b'`' && q != b'\'' {
        return None;
    }
    let mut i = 1;
    while i < s.len() {
        if s[i] == b'\\' && q == b'\'' {
            i += 2;
            continue;
        }
        if s[i] == q {
            if s.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        input: &[u8],
        piece: usize,
        f: impl Fn(Pieces, Arc<Mapped>) -> Box<dyn Read + '_>,
    ) -> (String, (u64, u64, u64)) {
        let mapped = Arc::new(Mapped::default());
        let mut out = Vec::new();
        f(Pieces(input, piece), mapped.clone())
            .read_to_end(&mut out)
            .unwrap();
        (String::from_utf8(out).unwrap(), mapped.counts())
    }

    struct Pieces<'a>(&'a [u8], usize);
    impl Read for Pieces<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    const PG: &str = "--\n-- Name: t; Type: TABLE; Schema: public; Owner: app\n--\n\nCREATE TABLE public.t (\n    a text\n);\n\n\nALTER TABLE public.t OWNER TO app;\n\nCREATE FUNCTION public.f() RETURNS void\n    LANGUAGE sql\n    AS $$\nGRANT SELECT ON public.t TO app;\n$$;\n\n\nALTER FUNCTION public.f() OWNER TO \"odd role\";\n\nCOPY public.t (a) FROM stdin;\nGRANT as data;\nALTER TABLE x OWNER TO y;\n\\.\n\n\nREVOKE ALL ON TABLE public.t FROM PUBLIC;\nGRANT SELECT ON TABLE public.t TO reader;\nALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT SELECT ON TABLES TO reader;\nGRANT SELECT\n  ON public.t TO reader;\n\n-- PostgreSQL database dump complete\n\n";

    #[test]
    fn pg_owner_and_privilege_statements_are_left_out_only_where_psql_sees_statements() {
        for piece in [1, 2, 3, 7, 64, 1 << 20] {
            let (out, counts) = run(PG.as_bytes(), piece, |r, m| Box::new(pg_no_owner(r, m)));
            assert_eq!(counts, (2, 3, 0), "piece {piece}");
            assert!(!out.contains("OWNER TO app;"), "{out}");
            assert!(!out.contains("OWNER TO \"odd role\""), "{out}");
            assert!(!out.contains("REVOKE ALL"), "{out}");
            assert!(!out.contains("DEFAULT PRIVILEGES"), "{out}");
            // A function body and COPY data are not statements; a statement over two lines is
            // left for the server to refuse (pg_dump never writes one).
            assert!(
                out.contains("$$\nGRANT SELECT ON public.t TO app;\n$$;"),
                "{out}"
            );
            assert!(
                out.contains("GRANT as data;\nALTER TABLE x OWNER TO y;\n\\.\n"),
                "{out}"
            );
            assert!(
                out.contains("GRANT SELECT\n  ON public.t TO reader;"),
                "{out}"
            );
            assert!(out.ends_with("-- PostgreSQL database dump complete\n\n"));
        }
    }

    #[test]
    fn pg_lines_longer_than_held_go_through_unchanged() {
        let long = format!(
            "ALTER TABLE public.t ADD CONSTRAINT c CHECK (a <> '{}');\n",
            "x".repeat(HOLD_MAX * 2)
        );
        let (out, counts) = run(long.as_bytes(), 5000, |r, m| Box::new(pg_no_owner(r, m)));
        assert_eq!(out, long);
        assert_eq!(counts, (0, 0, 0));
    }

    const MY: &str = "/*!50001 CREATE ALGORITHM=UNDEFINED */\n/*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */\n/*!50001 VIEW `v` AS select 1 AS `1` */;\nINSERT INTO `t` VALUES (1,'DEFINER=`root`@`x`');\n/*!50003 CREATE*/ /*!50017 DEFINER=`a``b`@`%`*/ /*!50003 TRIGGER `tr` BEFORE INSERT ON `t` FOR EACH ROW SET NEW.a = 1 */;;\nCREATE DEFINER='app'@'10.0.0.%' PROCEDURE `p`()\nCREATE DEFINER=`role1` FUNCTION `f`() RETURNS int\nCREATE DEFINER=CURRENT_USER PROCEDURE `q`()\n";

    #[test]
    fn mysql_definers_become_the_restoring_user_outside_data() {
        for piece in [1, 3, 11, 1 << 20] {
            let (out, counts) = run(MY.as_bytes(), piece, |r, m| {
                Box::new(mysql_no_definer(r, m))
            });
            assert_eq!(counts, (0, 0, 4), "piece {piece}: {out}");
            assert!(out.contains("/*!50013 DEFINER=CURRENT_USER SQL SECURITY DEFINER */"));
            assert!(out.contains("/*!50017 DEFINER=CURRENT_USER*/ /*!50003 TRIGGER"));
            assert!(out.contains("CREATE DEFINER=CURRENT_USER PROCEDURE `p`()"));
            assert!(out.contains("CREATE DEFINER=CURRENT_USER FUNCTION `f`()"));
            assert!(out.contains("INSERT INTO `t` VALUES (1,'DEFINER=`root`@`x`');"));
            assert_eq!(out.lines().count(), MY.lines().count());
        }
    }
}
