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
//!
//! One module per dialect ([`pg`], [`mysql`]): the lexers are shared by push's counters and, next,
//! by transformers that rewrite a dump on the stream.

pub mod filter;
mod mysql;
pub mod ownership;
mod pg;
pub mod tally;

use std::collections::BTreeMap;

use anyhow::Result;

use crate::snapshot::manifest::Engine;

pub use mysql::{MysqlCounter, MYSQL_END_MARKER};
pub use pg::{PgCounter, PG_END_MARKER};

/// What a counter learns from a dump's bytes: push's view of what it stores, the office's of what
/// it restores.
pub trait DumpCounter: Send {
    fn feed(&mut self, data: &[u8]);
    /// Called once, after the last byte: fails when the stream cannot be a complete dump whatever
    /// its marker says (it ends inside COPY data, or holds structure the restore client would read
    /// differently from the counter).
    fn finish(&mut self) -> Result<()>;
    fn end_marker_seen(&self) -> bool;
    /// Rows per table so far, taken out.
    fn take_tables(&mut self) -> BTreeMap<String, u64>;
    /// What the table map holds, in bytes ([`PgCounter::names_bytes`]).
    fn names_bytes(&self) -> u64;
}

/// The counter for a dump of `engine`.
pub fn counter(engine: Engine) -> Box<dyn DumpCounter> {
    match engine {
        Engine::Postgres => Box::new(PgCounter::new()),
        Engine::Mysql => Box::new(MysqlCounter::new()),
    }
}

macro_rules! dump_counter {
    ($t:ty) => {
        impl DumpCounter for $t {
            fn feed(&mut self, data: &[u8]) {
                <$t>::feed(self, data)
            }
            fn finish(&mut self) -> Result<()> {
                <$t>::finish(self)
            }
            fn end_marker_seen(&self) -> bool {
                self.end_marker
            }
            fn take_tables(&mut self) -> BTreeMap<String, u64> {
                std::mem::take(&mut self.tables)
            }
            fn names_bytes(&self) -> u64 {
                self.names_bytes
            }
        }
    };
}
dump_counter!(PgCounter);
dump_counter!(MysqlCounter);

/// What one table costs in a counter's map beyond its name, for [`PgCounter::names_bytes`] and
/// [`MysqlCounter::names_bytes`]: about what a `BTreeMap` entry takes.
const ENTRY_COST: u64 = 32;

/// Adds `rows` to `key`'s count, charging a table seen for the first time to `names_bytes`.
fn add_rows(tables: &mut BTreeMap<String, u64>, names_bytes: &mut u64, key: String, rows: u64) {
    let cost = key.len() as u64 + ENTRY_COST;
    let n = tables.entry(key).or_insert_with(|| {
        *names_bytes += cost;
        0
    });
    *n += rows;
}

#[cfg(test)]
mod tests;
