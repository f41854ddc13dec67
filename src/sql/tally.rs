//! The office's own count of each table's rows, read off the dump as it streams into the restore.
//!
//! The manifest's row counts come from the host that pushed the snapshot, and a hacked host signs
//! whatever manifest it likes: one that lists no tables at all would make "the restore has the rows
//! the manifest claims" true of any restore. So verify counts with the same lexers push uses
//! ([`PgCounter`], [`MysqlCounter`]), on the bytes the restore client reads, and holds the restore to
//! that count and the manifest to it too. The lexers follow the clients' rules, so a COPY row or an
//! INSERT tuple counts exactly where psql or mariadb would load it.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::{Arc, OnceLock};

use super::{counter, DumpCounter};
use crate::snapshot::list::MAX_MANIFEST_BYTES;
use crate::snapshot::manifest::Engine;

/// Rows per table, keyed as the manifest keys them; set once the whole dump was read.
#[derive(Debug, Default)]
pub struct Tally(OnceLock<BTreeMap<String, u64>>);

impl Tally {
    /// The counts, or None when the dump was not read to its end.
    pub fn rows(&self) -> Option<BTreeMap<String, u64>> {
        self.0.get().cloned()
    }
}

/// `inner`, unchanged, counted into `tally`. At its end a stream that cannot be a whole dump (it
/// ends inside COPY data, or holds structure the client would read differently) is a read error,
/// so the restore fails rather than count what it cannot.
pub fn tallied<R: Read>(engine: Engine, inner: R, tally: Arc<Tally>) -> Tallied<R> {
    Tallied {
        inner,
        lex: Some(counter(engine)),
        tally,
        limit: MAX_MANIFEST_BYTES,
    }
}

pub struct Tallied<R> {
    inner: R,
    /// None once the end was counted.
    lex: Option<Box<dyn DumpCounter>>,
    tally: Arc<Tally>,
    /// The most the table names may take ([`bounded`]).
    limit: u64,
}

impl<R: Read> Read for Tallied<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let Some(lex) = self.lex.as_mut() else {
            return Ok(n);
        };
        if n > 0 {
            lex.feed(&buf[..n]);
            return bounded(lex.names_bytes(), self.limit).map(|()| n);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        // The end: counted once, and only when the stream was a whole dump.
        let finished = lex.finish().map(|()| lex.take_tables());
        self.lex = None;
        // One tally per restore: a second stream counted into it would be a mix-up, never a sum.
        self.tally
            .0
            .set(finished.map_err(invalid)?)
            .map_err(|_| io::Error::other("the dump's rows were already counted once"))?;
        Ok(0)
    }
}

/// Every table the dump loads must be in the manifest, which the office reads only up to
/// [`MAX_MANIFEST_BYTES`]: a dump naming more than that can never verify, and counting on would
/// let its names fill the office's memory.
fn bounded(names_bytes: u64, limit: u64) -> io::Result<()> {
    if names_bytes > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the dump cannot be counted: it names more tables than a manifest of {} can list",
                crate::config::human(limit)
            ),
        ));
    }
    Ok(())
}

fn invalid(e: anyhow::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the dump cannot be counted: {e:#}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(engine: Engine, dump: &str) -> io::Result<Option<BTreeMap<String, u64>>> {
        let tally = Arc::new(Tally::default());
        let mut out = Vec::new();
        tallied(engine, dump.as_bytes(), tally.clone()).read_to_end(&mut out)?;
        assert_eq!(out, dump.as_bytes(), "the stream goes through unchanged");
        Ok(tally.rows())
    }

    #[test]
    fn rows_are_counted_where_the_client_loads_them() {
        let pg = "CREATE TABLE public.t (a text);\nCOPY public.t (a) FROM stdin;\nx\n\\.\nSELECT '\nCOPY public.u (a) FROM stdin;\ny\n\\.\n';\nCOPY public.t (a) FROM stdin;\nz\n\\.\n-- PostgreSQL database dump complete\n";
        let got = count(Engine::Postgres, pg).unwrap().unwrap();
        // The COPY inside a string literal is text to psql, not a table's rows.
        assert_eq!(got, BTreeMap::from([("public.t".to_string(), 2)]));
        let my = "--\n-- Dumping data for table `t`\n--\n\nINSERT INTO `t` VALUES (1,'(x)'),(2,'y');\nINSERT INTO `t` VALUES (3);\n\n--\n-- Dumping data for table `u`\n--\n\n-- Dump completed on 2026-01-01  1:00:00\n";
        let got = count(Engine::Mysql, my).unwrap().unwrap();
        let want = BTreeMap::from([("t".to_string(), 3), ("u".to_string(), 0)]);
        assert_eq!(got, want);
    }

    #[test]
    fn a_dump_naming_more_tables_than_a_manifest_can_list_stops_being_counted() {
        // Empty data sections cost a hostile host 40 bytes each and the server nothing.
        struct Sections(u64);
        impl Read for Sections {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let s = format!("--\n-- Dumping data for table `t{}`\n--\n\n", self.0);
                self.0 += 1;
                buf[..s.len()].copy_from_slice(s.as_bytes());
                Ok(s.len())
            }
        }
        let tally = Arc::new(Tally::default());
        let mut r = tallied(Engine::Mysql, Sections(0), tally.clone());
        r.limit = 64 * 1024;
        let mut buf = [0u8; 256];
        let err = loop {
            if let Err(e) = r.read(&mut buf) {
                break e;
            }
        };
        assert!(
            err.to_string().contains("more tables than a manifest"),
            "{err}"
        );
        assert_eq!(tally.rows(), None);
    }

    #[test]
    fn a_dump_that_ends_inside_copy_data_is_a_read_error_and_counts_nothing() {
        let tally = Arc::new(Tally::default());
        let dump = "COPY public.t (a) FROM stdin;\nx\n";
        let err = tallied(Engine::Postgres, dump.as_bytes(), tally.clone())
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("public.t"), "{err}");
        assert_eq!(tally.rows(), None);
    }
}
