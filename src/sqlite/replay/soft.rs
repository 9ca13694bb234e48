//! Soft deletes: TEMP triggers on every table of the database, living only in the replay's
//! connection and dropped before the commit. `BEFORE DELETE` sets the soft-delete column, records
//! the row in a TEMP table and answers `RAISE(IGNORE)`; `BEFORE INSERT` revives a row this replay
//! soft-deleted when an insert collides with it.

use std::path::Path;

use rusqlite::Connection;

use super::split::{Scan, next_statement};
use super::{At, SoftDelete, message, preview};
use crate::error::{Error, Result};

/// Set by the trigger of a table without the soft-delete column, followed by the table's name.
pub(super) const NO_COLUMN: &str = "b2m replay: no soft-delete column in table ";

/// The TEMP tables: the rows this replay soft-deleted (`k` is the rowid, or for a WITHOUT ROWID
/// table the quoted primary key), and the counts.
pub(super) const SETUP: &str = "
CREATE TEMP TABLE b2m_replay_soft (tbl TEXT NOT NULL, k NOT NULL, PRIMARY KEY (tbl, k)) WITHOUT ROWID;
CREATE TEMP TABLE b2m_replay_stats (revived INTEGER NOT NULL);
INSERT INTO temp.b2m_replay_stats VALUES (0);";

pub(super) const TEARDOWN: &str = "
DROP TABLE temp.b2m_replay_soft;
DROP TABLE temp.b2m_replay_stats;";

/// The soft-delete triggers of one replay.
pub(super) struct Guard<'a> {
    pub(super) db: &'a Path,
    pub(super) soft: &'a SoftDelete,
    /// Names of the triggers installed on the database's tables.
    pub(super) triggers: Vec<String>,
}

impl<'a> Guard<'a> {
    /// Checks the soft-delete settings, creates the TEMP tables and installs the triggers.
    pub(super) fn new(conn: &Connection, db: &'a Path, soft: &'a SoftDelete) -> Result<Self> {
        let hint = "set `soft_delete_column` and `soft_delete_value` in db.toml, e.g. `deleted_at` and `CURRENT_TIMESTAMP`";
        if soft.column.is_empty() {
            return Err(Error::config_hint("the soft-delete column is empty", hint));
        }
        // One expression: nothing in it may end the statement or comment out what follows.
        let probe = format!("SELECT ({});", soft.value);
        let checked = match next_statement(probe.as_bytes()) {
            Scan::Complete { len, .. } if len == probe.len() => conn.prepare(&probe).map(drop).map_err(|e| message(&e)),
            _ => Err("it is not one expression".to_string()),
        };
        if let Err(why) = checked {
            return Err(Error::config_hint(format!("the soft-delete value `{}` is not an SQL expression: {why}", soft.value), hint));
        }
        conn.execute_batch(SETUP).map_err(|e| Error::sqlite(db, e))?;
        let mut guard = Guard { db, soft, triggers: Vec::new() };
        guard.install(conn).map_err(|why| Error::refused(format!("cannot prepare `{}` for the replay: {why}", db.display()), hint))?;
        Ok(guard)
    }

    /// Installs a delete trigger on every table, and a revive trigger on those with the column.
    pub(super) fn install(&mut self, conn: &Connection) -> std::result::Result<(), String> {
        let tables = tables(conn).map_err(|e| message(&e))?;
        let hidden = temp_tables(conn).map_err(|e| message(&e))?;
        for (i, table) in tables.iter().enumerate() {
            // Trigger bodies cannot name `main.t`: a TEMP `t` would be the one they change.
            if hidden.iter().any(|t| t.eq_ignore_ascii_case(&table.name)) {
                return Err(format!("a TEMP table `{}` hides the database's table of that name from the replay's triggers", table.name));
            }
            for (name, sql) in table.triggers(i, self.soft) {
                conn.execute_batch(&sql).map_err(|e| format!("cannot install a trigger on `{}`: {}", table.name, message(&e)))?;
                self.triggers.push(name);
            }
        }
        Ok(())
    }

    /// Drops the triggers on the database's tables.
    pub(super) fn remove(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        for name in self.triggers.drain(..) {
            conn.execute_batch(&format!("DROP TRIGGER IF EXISTS temp.{}", ident(&name)))?;
        }
        Ok(())
    }

    /// The error for a statement that failed, telling a table without the column from the rest.
    pub(super) fn failure(&self, at: &At, statement: &str, e: &rusqlite::Error) -> Error {
        let why = message(e);
        match why.strip_prefix(NO_COLUMN) {
            Some(table) => Error::refused(
                format!(
                    "`{}` line {}: `{}` deletes rows of `{table}`, which has no `{}` column to keep them as deleted; the replay was rolled back",
                    at.journal.display(),
                    at.line,
                    preview(statement),
                    self.soft.column
                ),
                format!(
                    "add the column where the journal is replayed (`ALTER TABLE {table} ADD COLUMN {}`, e.g. in a changeset), then replay again",
                    self.soft.column
                ),
            ),
            None => at.failed(statement, &why),
        }
    }

    /// Rows soft-deleted and revived so far.
    pub(super) fn counts(&self, conn: &Connection) -> Result<(u64, u64)> {
        // Each revive takes its row out of `b2m_replay_soft`: every soft delete is still there or
        // was revived.
        let counts =
            conn.query_row("SELECT (SELECT count(*) FROM temp.b2m_replay_soft) + revived, revived FROM temp.b2m_replay_stats", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            });
        counts.map_err(|e| Error::sqlite(self.db, e))
    }

    /// Drops every TEMP object of the replay.
    pub(super) fn finish(mut self, conn: &Connection) -> Result<()> {
        self.remove(conn).map_err(|e| Error::sqlite(self.db, e))?;
        conn.execute_batch(TEARDOWN).map_err(|e| Error::sqlite(self.db, e))
    }
}

/// A table of the database, as its triggers need it.
pub(super) struct Table {
    pub(super) name: String,
    pub(super) without_rowid: bool,
    /// Columns that can be set (not generated), in order.
    pub(super) columns: Vec<String>,
    /// The primary key's columns, in key order.
    pub(super) key: Vec<String>,
    /// A name for the rowid no column hides (`rowid`, `_rowid_` or `oid`).
    pub(super) rowid: Option<&'static str>,
    /// The primary key's one column when it is the rowid itself (an `INTEGER PRIMARY KEY`).
    pub(super) rowid_key: Option<String>,
}

/// The database's own tables (not views, virtual tables or their shadow tables, nor `sqlite_*`).
pub(super) fn tables(conn: &Connection) -> rusqlite::Result<Vec<Table>> {
    let mut list = conn.prepare(
        "SELECT name, wr FROM pragma_table_list WHERE schema = 'main' AND type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )?;
    let names = list.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))?.collect::<rusqlite::Result<Vec<_>>>()?;
    let mut info = conn.prepare("SELECT name, pk, hidden FROM pragma_table_xinfo(?1, 'main') ORDER BY cid")?;
    let mut pk_index = conn.prepare("SELECT 1 FROM pragma_index_list(?1, 'main') WHERE origin = 'pk'")?;
    let mut tables = Vec::with_capacity(names.len());
    for (name, without_rowid) in names {
        let columns = info
            .query_map([&name], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut key: Vec<_> = columns.iter().filter(|c| c.1 > 0).collect();
        key.sort_by_key(|c| c.1);
        let rowid = ["rowid", "_rowid_", "oid"].into_iter().find(|r| !columns.iter().any(|c| c.0.eq_ignore_ascii_case(r)));
        // A one-column primary key of a rowid table is the rowid unless SQLite made an index for it.
        let rowid_key = match key.as_slice() {
            [only] if !without_rowid && !pk_index.exists([&name])? => Some(only.0.clone()),
            _ => None,
        };
        tables.push(Table {
            rowid_key,
            key: key.into_iter().map(|c| c.0.clone()).collect(),
            columns: columns.iter().filter(|c| c.2 == 0).map(|c| c.0.clone()).collect(),
            name,
            without_rowid,
            rowid,
        });
    }
    Ok(tables)
}

/// The names of the TEMP tables and views the journal made.
pub(super) fn temp_tables(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn
        .prepare("SELECT name FROM temp.sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'b2m\\_replay\\_%' ESCAPE '\\'")?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

/// `name` as an SQL identifier.
pub(super) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as an SQL string literal.
pub(super) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Table {
    /// The `(name, CREATE TEMP TRIGGER …)` pairs for the table, the `i`th.
    pub(super) fn triggers(&self, i: usize, soft: &SoftDelete) -> Vec<(String, String)> {
        let table = ident(&self.name);
        let delete = format!("b2m_replay_delete_{i}");
        let Some(column) = self.columns.iter().find(|c| c.eq_ignore_ascii_case(&soft.column)) else {
            let abort = literal(&format!("{NO_COLUMN}{}", self.name));
            let sql = format!("CREATE TEMP TRIGGER {delete} BEFORE DELETE ON main.{table} BEGIN SELECT RAISE(ABORT, {abort}); END");
            return vec![(delete, sql)];
        };
        if !self.without_rowid && self.rowid.is_none() {
            let abort = literal(&format!("{NO_COLUMN}{} (its columns hide the rowid)", self.name));
            let sql = format!("CREATE TEMP TRIGGER {delete} BEFORE DELETE ON main.{table} BEGIN SELECT RAISE(ABORT, {abort}); END");
            return vec![(delete, sql)];
        }
        let tbl = literal(&self.name);
        let soft_delete = format!(
            "CREATE TEMP TRIGGER {delete} BEFORE DELETE ON main.{table} BEGIN
  UPDATE {table} SET {column} = ({value}) WHERE {old} AND NOT EXISTS (SELECT 1 FROM b2m_replay_soft WHERE tbl = {tbl} AND k = {key});
  INSERT OR IGNORE INTO b2m_replay_soft (tbl, k) VALUES ({tbl}, {key});
  SELECT RAISE(IGNORE);
END",
            column = ident(column),
            value = soft.value,
            old = self.same_row("", "OLD"),
            key = self.row_key("OLD"),
        );
        // An insert collides with the row that has its primary key, or its rowid if it has none.
        let collides = |row: &str| if self.key.is_empty() { self.same_row(row, "NEW") } else { self.same_key(row, "NEW") };
        let revive = format!("b2m_replay_revive_{i}");
        let revive_sql = format!(
            "CREATE TEMP TRIGGER {revive} BEFORE INSERT ON main.{table}
WHEN {soft_collision}
BEGIN
  DELETE FROM b2m_replay_soft WHERE tbl = {tbl} AND k = (SELECT {r_key} FROM {table} AS r WHERE {r_collides});
  UPDATE {table} SET {set} WHERE {collides};
  UPDATE b2m_replay_stats SET revived = revived + 1;
  SELECT RAISE(IGNORE);
END",
            soft_collision = match (&self.rowid_key, self.rowid) {
                // The key is the rowid: one search of the (small) table of soft-deleted rows.
                (Some(key), Some(_)) => format!("EXISTS (SELECT 1 FROM b2m_replay_soft WHERE tbl = {tbl} AND k = +NEW.{})", ident(key)),
                _ => format!(
                    "EXISTS (SELECT 1 FROM {table} AS r JOIN b2m_replay_soft AS s ON s.tbl = {tbl} AND s.k = {} WHERE {})",
                    self.row_key("r"),
                    collides("r")
                ),
            },
            r_key = self.row_key("r"),
            r_collides = collides("r"),
            collides = collides(""),
            set = self.columns.iter().map(|c| format!("{0} = NEW.{0}", ident(c))).collect::<Vec<_>>().join(", "),
        );
        vec![(delete, soft_delete), (revive, revive_sql)]
    }

    /// The condition that `row` (a table alias, or "" for the table being updated) is `other`.
    pub(super) fn same_row(&self, row: &str, other: &str) -> String {
        match self.rowid {
            Some(rowid) if !self.without_rowid => format!("{}{rowid} = {other}.{rowid}", prefix(row)),
            _ => self.same_key(row, other),
        }
    }

    /// The condition that `row` has `other`'s primary key (compared as the table compares it).
    pub(super) fn same_key(&self, row: &str, other: &str) -> String {
        let p = prefix(row);
        self.key.iter().map(|c| format!("{p}{0} = {other}.{0}", ident(c))).collect::<Vec<_>>().join(" AND ")
    }

    /// What identifies `row` in `b2m_replay_soft`: its rowid, or its primary key quoted. Neither
    /// has an affinity (the unary `+` drops the rowid's), so that `k = …` searches the primary key
    /// of `b2m_replay_soft` instead of scanning it.
    pub(super) fn row_key(&self, row: &str) -> String {
        match self.rowid {
            Some(rowid) if !self.without_rowid => format!("+{row}.{rowid}"),
            _ => self.key.iter().map(|c| format!("quote({row}.{})", ident(c))).collect::<Vec<_>>().join(" || ',' || "),
        }
    }
}

pub(super) fn prefix(row: &str) -> String {
    if row.is_empty() { String::new() } else { format!("{row}.") }
}
