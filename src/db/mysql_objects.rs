//! The parts of a MariaDB/MySQL database that `RENAME TABLE` does not carry from one database to
//! another: triggers (a table with triggers cannot move at all: "Trigger in wrong schema"), views
//! (they cannot change database), stored routines and events (they belong to the database, not to
//! a table). [`capture`] reads their definitions with `SHOW CREATE ...`, [`create`] replays one into
//! another database with the `sql_mode`, collation and time zone it was defined under.

use anyhow::{anyhow, bail, Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};

/// Backquotes a MariaDB identifier.
pub use super::quote::my as q;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    // Declaration order is creation order: views may call functions, package bodies need packages.
    Package,
    PackageBody,
    Function,
    Procedure,
    View,
    Trigger,
    Event,
}

impl Kind {
    pub fn sql(self) -> &'static str {
        match self {
            Kind::Package => "PACKAGE",
            Kind::PackageBody => "PACKAGE BODY",
            Kind::Function => "FUNCTION",
            Kind::Procedure => "PROCEDURE",
            Kind::View => "VIEW",
            Kind::Trigger => "TRIGGER",
            Kind::Event => "EVENT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Kind::Package,
            Kind::PackageBody,
            Kind::Function,
            Kind::Procedure,
            Kind::View,
            Kind::Trigger,
            Kind::Event,
        ]
        .into_iter()
        .find(|k| k.sql() == s)
    }
}

/// One definition, ready to replay.
#[derive(Debug, Clone)]
pub struct Object {
    pub kind: Kind,
    pub name: String,
    /// For a trigger: its table.
    pub table: Option<String>,
    pub sql_mode: Option<String>,
    pub time_zone: Option<String>,
    pub collation: Option<String>,
    pub create: String,
}

pub fn text(row: &Row, i: usize) -> Option<String> {
    match row.as_ref(i)? {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        v => Some(v.as_sql(true)),
    }
}

async fn names(c: &mut Conn, sql: &str, db: &str) -> Result<Vec<Row>> {
    c.exec(sql, (db,))
        .await
        .with_context(|| format!("listing the objects of {db}"))
}

/// The triggers of `db`, in the order they fire (recreating them in this order keeps it).
pub async fn triggers(c: &mut Conn, db: &str) -> Result<Vec<Object>> {
    let rows = names(
        c,
        "SELECT trigger_name, event_object_table FROM information_schema.triggers \
         WHERE trigger_schema = ? \
         ORDER BY event_object_table, action_timing, event_manipulation, action_order",
        db,
    )
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let (Some(name), table) = (text(&r, 0), text(&r, 1)) else {
            continue;
        };
        // Trigger, sql_mode, SQL Original Statement, character_set_client, collation_connection
        let row = show(c, &format!("SHOW CREATE TRIGGER {}.{}", q(db), q(&name))).await?;
        out.push(Object {
            kind: Kind::Trigger,
            table,
            sql_mode: text(&row, 1),
            time_zone: None,
            collation: text(&row, 4),
            create: required(&row, 2, &format!("{db}.{name}"))?,
            name,
        });
    }
    Ok(out)
}

/// Views, routines and events of `db`. View definitions name their database (`` `db`.`t` ``);
/// they are rewritten to `into`, where they will be created.
pub async fn others(c: &mut Conn, db: &str, into: &str) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    let views = names(
        c,
        "SELECT table_name FROM information_schema.tables \
         WHERE table_schema = ? AND table_type = 'VIEW' ORDER BY table_name",
        db,
    )
    .await?;
    let (from, to) = (format!("{}.", q(db)), format!("{}.", q(into)));
    for r in views {
        let Some(name) = text(&r, 0) else { continue };
        // View, Create View, character_set_client, collation_connection
        let row = show(c, &format!("SHOW CREATE VIEW {}.{}", q(db), q(&name))).await?;
        out.push(Object {
            kind: Kind::View,
            table: None,
            sql_mode: None,
            time_zone: None,
            collation: text(&row, 3),
            create: required(&row, 1, &format!("{db}.{name}"))?.replace(&from, &to),
            name,
        });
    }
    let routines = names(
        c,
        "SELECT routine_name, routine_type FROM information_schema.routines \
         WHERE routine_schema = ? ORDER BY routine_name",
        db,
    )
    .await?;
    for r in routines {
        let (Some(name), Some(kind)) = (text(&r, 0), text(&r, 1).as_deref().and_then(Kind::parse))
        else {
            continue;
        };
        // Name, sql_mode, Create ..., character_set_client, collation_connection
        let row = show(
            c,
            &format!("SHOW CREATE {} {}.{}", kind.sql(), q(db), q(&name)),
        )
        .await?;
        let create = match required(&row, 2, &format!("{db}.{name}")) {
            Ok(c) => c,
            Err(e) => {
                // Who defined it and who we are: what the operator needs to fix the grant.
                let who: Option<(Option<String>, Option<String>)> = c
                    .exec_first(
                        "SELECT (SELECT definer FROM information_schema.routines \
                         WHERE routine_schema = ? AND routine_name = ? LIMIT 1), CURRENT_USER()",
                        (db, &name),
                    )
                    .await
                    .ok()
                    .flatten();
                let (definer, me) = who.unwrap_or_default();
                return Err(e.context(format!(
                    "{name} is defined by {}; offsite connects as {}",
                    definer.as_deref().unwrap_or("?"),
                    me.as_deref().unwrap_or("?")
                )));
            }
        };
        out.push(Object {
            kind,
            table: None,
            sql_mode: text(&row, 1),
            time_zone: None,
            collation: text(&row, 4),
            create,
            name,
        });
    }
    let events = names(
        c,
        "SELECT event_name FROM information_schema.events WHERE event_schema = ? ORDER BY event_name",
        db,
    )
    .await?;
    for r in events {
        let Some(name) = text(&r, 0) else { continue };
        // Event, sql_mode, time_zone, Create Event, character_set_client, collation_connection
        let row = show(c, &format!("SHOW CREATE EVENT {}.{}", q(db), q(&name))).await?;
        out.push(Object {
            kind: Kind::Event,
            table: None,
            sql_mode: text(&row, 1),
            time_zone: text(&row, 2),
            collation: text(&row, 5),
            create: required(&row, 3, &format!("{db}.{name}"))?,
            name,
        });
    }
    out.sort_by_key(|o| o.kind);
    Ok(out)
}

async fn show(c: &mut Conn, sql: &str) -> Result<Row> {
    c.query_first(sql)
        .await
        .with_context(|| sql.to_string())?
        .ok_or_else(|| anyhow!("{sql} returned nothing"))
}

fn required(row: &Row, i: usize, name: &str) -> Result<String> {
    text(row, i).ok_or_else(|| {
        anyhow!("the definition of {name} is not readable (the refresh account needs SHOW_ROUTINE / SELECT on mysql.proc or to be the definer)")
    })
}

/// Creates `o` in `db` (the connection's current database becomes `db`).
pub async fn create(c: &mut Conn, db: &str, o: &Object) -> Result<()> {
    c.query_drop(format!("USE {}", q(db))).await?;
    match &o.sql_mode {
        Some(m) => c.exec_drop("SET SESSION sql_mode = ?", (m,)).await?,
        None => c.query_drop("SET SESSION sql_mode = DEFAULT").await?,
    }
    match o.collation.as_deref().filter(|k| k.starts_with("utf8mb4_")) {
        Some(k) => {
            c.query_drop(format!("SET NAMES utf8mb4 COLLATE {}", q(k)))
                .await?
        }
        None => c.query_drop("SET NAMES utf8mb4").await?,
    }
    if let Some(tz) = &o.time_zone {
        c.exec_drop("SET SESSION time_zone = ?", (tz,)).await?;
    }
    let result = c.query_drop(&o.create).await;
    c.query_drop("SET SESSION sql_mode = DEFAULT, time_zone = DEFAULT")
        .await?;
    result.with_context(|| format!("creating {} {} in {db}", o.kind.sql(), o.name))
}

/// Creates every object in `db`. Views are retried until no more succeed: one view may select from
/// another, and the names do not say which comes first.
pub async fn create_all(c: &mut Conn, db: &str, objects: &[Object]) -> Result<()> {
    let mut sorted: Vec<&Object> = objects.iter().collect();
    sorted.sort_by_key(|o| o.kind);
    let mut pending_views: Vec<&Object> = Vec::new();
    for o in sorted {
        if o.kind == Kind::View {
            pending_views.push(o);
            continue;
        }
        if !pending_views.is_empty() {
            create_views(c, db, std::mem::take(&mut pending_views)).await?;
        }
        create(c, db, o).await?;
    }
    create_views(c, db, pending_views).await
}

async fn create_views(c: &mut Conn, db: &str, mut pending: Vec<&Object>) -> Result<()> {
    while !pending.is_empty() {
        let mut failed = Vec::new();
        let mut last_error = None;
        let before = pending.len();
        for v in pending {
            if let Err(e) = create(c, db, v).await {
                failed.push(v);
                last_error = Some(e);
            }
        }
        if failed.len() == before {
            if let Some(e) = last_error {
                return Err(e);
            }
        }
        pending = failed;
    }
    Ok(())
}

/// Drops every trigger, view, routine and event of `db` (not its tables).
pub async fn drop_all(c: &mut Conn, db: &str) -> Result<()> {
    let existing_triggers = triggers_of(c, db).await?;
    for t in existing_triggers {
        c.query_drop(format!("DROP TRIGGER IF EXISTS {}.{}", q(db), q(&t)))
            .await?;
    }
    let listing: [(&str, &str); 3] = [
        (
            "SELECT 'VIEW', table_name FROM information_schema.tables \
             WHERE table_schema = ? AND table_type = 'VIEW'",
            "views",
        ),
        (
            // Bodies before their packages.
            "SELECT routine_type, routine_name FROM information_schema.routines \
             WHERE routine_schema = ? ORDER BY routine_type = 'PACKAGE'",
            "routines",
        ),
        (
            "SELECT 'EVENT', event_name FROM information_schema.events WHERE event_schema = ?",
            "events",
        ),
    ];
    for (sql, what) in listing {
        let rows: Vec<Row> = c
            .exec(sql, (db,))
            .await
            .with_context(|| format!("listing the {what} of {db}"))?;
        for r in rows {
            let (Some(kind), Some(name)) = (text(&r, 0), text(&r, 1)) else {
                continue;
            };
            if Kind::parse(&kind).is_none() {
                bail!("{db} has a {kind} {name}, which refresh does not know how to replace");
            }
            c.query_drop(format!("DROP {kind} IF EXISTS {}.{}", q(db), q(&name)))
                .await
                .with_context(|| format!("dropping {kind} {name} in {db}"))?;
        }
    }
    Ok(())
}

pub async fn triggers_of(c: &mut Conn, db: &str) -> Result<Vec<String>> {
    let rows: Vec<Row> = names(
        c,
        "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = ?",
        db,
    )
    .await?;
    Ok(rows.iter().filter_map(|r| text(r, 0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_order_for_creation() {
        for k in [Kind::PackageBody, Kind::Trigger, Kind::Event, Kind::View] {
            assert_eq!(Kind::parse(k.sql()), Some(k));
        }
        assert!(Kind::Package < Kind::PackageBody);
        assert!(Kind::Function < Kind::View);
        assert_eq!(q("we`ird"), "`we``ird`");
    }
}
