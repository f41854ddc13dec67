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

pub use mysql::{MysqlCounter, MYSQL_END_MARKER};
pub use pg::{PgCounter, PG_END_MARKER};

#[cfg(test)]
mod tests;
