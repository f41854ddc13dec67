//! The swap journal: a table in `O` that holds what a MariaDB swap needs to be finished or undone
//! by the next refresh if this one is killed. It is written before the first change to `T` and goes
//! when `O` is dropped at the end.

use anyhow::{bail, Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::mysql_objects::{q, text, Kind, Object};

/// Its name in `O`; a target with a table of this name is refused.
pub const JOURNAL: &str = "offsite_swap_journal";

/// Everything needed to finish or undo a swap, kept in `O` until the swap is complete.
#[derive(Debug, Default)]
pub struct Journal {
    pub old_tables: Vec<String>,
    pub new_tables: Vec<String>,
    pub old_triggers: Vec<Object>,
    pub new_objects: Vec<Object>,
}

pub async fn write_journal(c: &mut Conn, old: &str, j: &Journal) -> Result<()> {
    c.query_drop(format!(
        "CREATE TABLE {}.{} (seq INT NOT NULL PRIMARY KEY, side VARCHAR(3) NOT NULL, \
         kind VARCHAR(16) NOT NULL, name VARCHAR(64) NOT NULL, tbl VARCHAR(64) NULL, \
         sql_mode TEXT NULL, time_zone VARCHAR(64) NULL, coll VARCHAR(64) NULL, body LONGTEXT NULL) \
         ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
        q(old),
        q(JOURNAL)
    ))
    .await
    .context("creating the swap journal")?;
    type JournalRow = (
        usize,
        &'static str,
        &'static str,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let mut rows: Vec<JournalRow> = Vec::new();
    let table = |side, name: &String| (side, "TABLE", name.clone(), None, None, None, None, None);
    let object = |side, o: &Object| {
        (
            side,
            o.kind.sql(),
            o.name.clone(),
            o.table.clone(),
            o.sql_mode.clone(),
            o.time_zone.clone(),
            o.collation.clone(),
            Some(o.create.clone()),
        )
    };
    let all = j
        .old_tables
        .iter()
        .map(|t| table("old", t))
        .chain(j.new_tables.iter().map(|t| table("new", t)))
        .chain(j.old_triggers.iter().map(|o| object("old", o)))
        .chain(j.new_objects.iter().map(|o| object("new", o)));
    for (seq, (side, kind, name, tbl, mode, tz, coll, body)) in all.enumerate() {
        rows.push((seq, side, kind, name, tbl, mode, tz, coll, body));
    }
    c.exec_batch(
        format!(
            "INSERT INTO {}.{} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            q(old),
            q(JOURNAL)
        ),
        rows,
    )
    .await
    .context("writing the swap journal")
}

pub async fn read_journal(c: &mut Conn, old: &str) -> Result<Journal> {
    let rows: Vec<Row> = c
        .query(format!(
            "SELECT side, kind, name, tbl, sql_mode, time_zone, coll, body FROM {}.{} ORDER BY seq",
            q(old),
            q(JOURNAL)
        ))
        .await
        .with_context(|| format!("reading {old}.{JOURNAL}"))?;
    let mut j = Journal::default();
    for r in rows {
        let (side, kind, name) = (text(&r, 0), text(&r, 1), text(&r, 2));
        let (Some(side), Some(kind), Some(name)) = (side, kind, name) else {
            bail!("{old}.{JOURNAL} has an incomplete row");
        };
        match (side.as_str(), kind.as_str()) {
            ("old", "TABLE") => j.old_tables.push(name),
            ("new", "TABLE") => j.new_tables.push(name),
            (side, kind) => {
                let Some(kind) = Kind::parse(kind) else {
                    bail!("{old}.{JOURNAL} has an object of unknown kind {kind}");
                };
                let o = Object {
                    kind,
                    name,
                    table: text(&r, 3),
                    sql_mode: text(&r, 4),
                    time_zone: text(&r, 5),
                    collation: text(&r, 6),
                    create: text(&r, 7).unwrap_or_default(),
                };
                if side == "old" {
                    j.old_triggers.push(o);
                } else {
                    j.new_objects.push(o);
                }
            }
        }
    }
    Ok(j)
}
