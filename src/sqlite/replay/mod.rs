//! Journal replay: a server's SQL journal run into a copy of its database in one transaction,
//! statements split where SQLite splits them, every DELETE turned into a soft delete.
//!
//! The journal is read in chunks, so memory does not grow with its size. Each statement ends
//! where `sqlite3_complete` (the routine the `sqlite3` shell uses to cut its input) says it does:
//! at a `;` outside strings, quoted names, comments and `CREATE TRIGGER … END`; SQLite's own
//! parser then prepares and runs it. A statement not yet ended by its `;` is left for the next
//! call: the server may still be writing it.
//!
//! Deletes are made soft by TEMP triggers on every table of the database, living only in the
//! replay's connection and dropped before the commit. `BEFORE DELETE` sets the soft-delete column,
//! records the row in a TEMP table and answers `RAISE(IGNORE)`, so the row stays, whatever shape
//! the DELETE had. `BEFORE INSERT` revives a row this replay soft-deleted when an insert collides
//! with it. A table without the column gets a `BEFORE DELETE` trigger that aborts, naming it.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Batch, Connection, OpenFlags, TransactionBehavior};

use crate::error::{Error, Result};

mod soft;
mod split;

use soft::Guard;
use split::{Kind, Scan, classify, next_statement};

/// Bytes read from the journal at a time.
const CHUNK: usize = 4 << 20;

pub use crate::settings::SoftDelete;

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Statements run (empty ones, a lone `;`, not counted).
    pub statements: u64,
    /// Rows deleted by the journal and kept with the soft-delete column set. A row this replay had
    /// already soft-deleted is gone as far as the journal knows: deleting it again does nothing.
    pub soft_deleted: u64,
    /// Rows this replay soft-deleted and an insert then brought back.
    pub revived: u64,
    /// The byte just after the last complete statement: where the next call starts.
    pub end_offset: u64,
    /// The line `end_offset` is on (the first line is 1).
    pub end_line: u64,
}

/// Replays the journal from byte `from` (0, or a statement boundary a previous call returned as
/// `end_offset`) to the end of its last complete statement, into the database at `db`, in one
/// transaction (`BEGIN IMMEDIATE` … `COMMIT`). Any failure rolls back everything this call did and
/// returns an error naming the journal's line and the start of the statement. A trailing
/// statement not yet ended by its `;` (the server is still appending) is left for the next call:
/// `end_offset` points before it.
///
/// Statements run as written, with these exceptions and choices:
/// - every DELETE keeps its rows and sets `soft.column` to `soft.value` instead (see the module
///   notes); a table without that column is an error naming it, if the journal deletes any of its
///   rows. A virtual table cannot carry triggers: a DELETE that removes its rows is an error.
///   Rows of SQLite's own `sqlite_*` tables (`sqlite_sequence`…) are deleted for real.
/// - an INSERT (or REPLACE, or upsert) colliding on the primary key (the rowid when there is no
///   declared key) with a row this call soft-deleted revives that row: it takes the inserted
///   values — so the soft-delete column gets the insert's value for it, NULL unless the insert or
///   the column's default says otherwise — rather than failing. Collisions with any other row, and
///   on other UNIQUE constraints, fail as SQLite says. Only rows soft-deleted by this call are
///   known: a later call does not revive rows an earlier one soft-deleted ([`replay_with_tail`]
///   replays the journal and its tail in one transaction, which does).
/// - a soft delete and a revival are UPDATEs of the kept row: the table's own UPDATE triggers run
///   for them, its DELETE and INSERT triggers do not. An UPDATE in the journal whose WHERE matches
///   a row this replay soft-deleted changes that row too (on the server it was gone).
/// - refused before they run, naming the line: `BEGIN`, `COMMIT`, `END`, `ROLLBACK` (but not
///   `ROLLBACK TO`; `SAVEPOINT` and `RELEASE` are fine), `VACUUM`, `ATTACH`, `DETACH`, statements
///   with parameters, and the PRAGMAs that would change how the database file is kept or break
///   what the replay relies on: `wal_checkpoint` in any form, and setting `auto_vacuum`,
///   `encoding`, `journal_mode`, `locking_mode`, `page_size`, `query_only`, `recursive_triggers`,
///   `schema_version`, `temp_store`, `temp_store_directory`, `data_store_directory` or
///   `writable_schema`. Other PRAGMAs run (most only read; `user_version` is data).
/// - SELECTs run and their rows are ignored.
/// - foreign keys are enforced (SQLite's `PRAGMA foreign_keys` cannot change inside the
///   transaction), so ON UPDATE actions happen as on a server that enforces them; no ON DELETE
///   action runs, as no row is deleted.
/// - CREATE, ALTER and DROP statements re-install the triggers, so tables the journal creates
///   are covered too.
pub fn replay(db: &Path, journal: &Path, from: u64, soft: &SoftDelete) -> Result<Replayed> {
    let parts = replay_in_chunks(db, &[], journal, from, soft, CHUNK, None::<fn(&Replayed) -> Result<()>>)?;
    Ok(parts[0])
}

/// [`replay`] from the start in two parts and ONE transaction: everything the journal holds now;
/// then `between` runs (stop the server there, so that nothing more is appended) and the
/// statements appended meanwhile are replayed too, and all is committed. Returns what each part
/// did. The second part is read to the journal's end: with the server stopped, its last statement
/// needs no `;` (a complete one runs, an incomplete one is refused naming its line), so the
/// second's `end_offset` is the journal's length.
///
/// Unlike two calls of [`replay`], an insert in the second part revives a row the first part
/// soft-deleted. If `between` or the second part fails, nothing of either part is kept.
pub fn replay_with_tail(
    db: &Path,
    journal: &Path,
    soft: &SoftDelete,
    between: impl FnOnce(&Replayed) -> Result<()>,
) -> Result<[Replayed; 2]> {
    replay_journals_with_tail(db, &[], journal, soft, between)
}

/// [`replay_with_tail`] after `earlier` journals, replayed whole and in order at the start of the
/// first part, in the same transaction: the journals a server wrote beside older files of the
/// database, which nothing appends to any more. `current`, the journal of the file the server has
/// open, may not exist yet (the second part reads it if the server made it meanwhile).
pub fn replay_journals_with_tail(
    db: &Path,
    earlier: &[&Path],
    current: &Path,
    soft: &SoftDelete,
    between: impl FnOnce(&Replayed) -> Result<()>,
) -> Result<[Replayed; 2]> {
    let parts = replay_in_chunks(db, earlier, current, 0, soft, CHUNK, Some(between))?;
    Ok([parts[0], parts[1]])
}

/// [`replay`], reading `chunk` bytes at a time, after the `earlier` journals whole; with
/// `between`, [`replay_journals_with_tail`]. Returns what each part did.
fn replay_in_chunks(
    db: &Path,
    earlier: &[&Path],
    journal: &Path,
    from: u64,
    soft: &SoftDelete,
    chunk: usize,
    mut between: Option<impl FnOnce(&Replayed) -> Result<()>>,
) -> Result<Vec<Replayed>> {
    let with_tail = between.is_some();
    // With a tail to come, the current journal may not exist yet.
    let mut reader = Journal::open(journal, from, chunk, with_tail)?;
    super::db::check_header(db)?;
    let mut conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| Error::sqlite(db, e))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(|e| Error::sqlite(db, e))?;
    // TEMP objects in memory; recursive triggers off so that REPLACE's own deletes stay real
    // deletes, as they were on the server (the journal may not turn it on).
    // A page cache of 32 MiB: a long transaction's working set stays in memory rather than being
    // spilled to the file and read back (the default is 2 MiB).
    conn.execute_batch(
        "PRAGMA temp_store = MEMORY; PRAGMA recursive_triggers = OFF; PRAGMA foreign_keys = ON; PRAGMA cache_size = -32768;",
    )
    .map_err(|e| Error::sqlite(db, e))?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| Error::sqlite(db, e))?;
    let mut guard = Guard::new(&tx, db, soft)?;
    let mut parts: Vec<Replayed> = Vec::with_capacity(2);
    let mut statements = 0;
    for path in earlier {
        statements += drain(&tx, &mut guard, &mut Journal::open(path, 0, chunk, false)?, true)?;
    }
    loop {
        // The tail is read with the server stopped: nothing more will be appended.
        let tail = with_tail && parts.len() == 1;
        if tail {
            reader.open_if_made()?;
        }
        statements += drain(&tx, &mut guard, &mut reader, tail)?;
        let (soft_deleted, revived) = guard.counts(&tx)?;
        let (before_deleted, before_revived) = parts.iter().fold((0, 0), |(d, r), p| (d + p.soft_deleted, r + p.revived));
        parts.push(Replayed {
            statements,
            // Saturating: a `ROLLBACK TO` in the tail may undo counts of the first part.
            soft_deleted: soft_deleted.saturating_sub(before_deleted),
            revived: revived.saturating_sub(before_revived),
            end_offset: reader.base + reader.pos as u64,
            end_line: reader.line,
        });
        statements = 0;
        match between.take() {
            Some(between) => between(&parts[0])?,
            None => break,
        }
    }
    guard.finish(&tx)?;
    tx.commit().map_err(|e| Error::sqlite(db, e))?;
    Ok(parts)
}

/// Runs the journal's complete statements from where `reader` is; with `closed` (nothing more will
/// be appended), what follows the last `;` is its last statement: a complete one runs, an
/// incomplete one (cut off mid-write) is refused, never left unreplayed behind an archived journal.
/// Returns the statements run.
fn drain(tx: &Connection, guard: &mut Guard, reader: &mut Journal, closed: bool) -> Result<u64> {
    let journal = reader.path;
    let mut statements = 0;
    loop {
        match next_statement(&reader.buf[reader.pos..]) {
            Scan::Complete { len, first } => {
                let text = &reader.buf[reader.pos..reader.pos + len];
                if let Some(first) = first {
                    let at = At { journal, line: reader.line + newlines(&text[..first]) };
                    statements += run(tx, guard, text, first, &at)?;
                }
                reader.line += newlines(text);
                reader.pos += len;
            }
            Scan::Incomplete => {
                if !reader.fill()? {
                    break;
                }
            }
        }
    }
    if closed {
        let rest = &reader.buf[reader.pos..];
        let mut whole = rest.to_vec();
        whole.extend_from_slice(b"\n;");
        match next_statement(&whole) {
            Scan::Complete { len, first: Some(first) } if len == whole.len() => {
                let at = At { journal, line: reader.line + newlines(&rest[..first.min(rest.len())]) };
                statements += run(tx, guard, &whole, first, &at)?;
            }
            Scan::Complete { first: None, .. } => {}
            _ if rest.iter().all(u8::is_ascii_whitespace) => {}
            _ => {
                let first = rest.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(0);
                let at = At { journal, line: reader.line + newlines(&rest[..first]) };
                return Err(at.refused(&String::from_utf8_lossy(rest), "the journal's last statement is incomplete"));
            }
        }
        reader.line += newlines(rest);
        reader.pos = reader.buf.len();
    }
    Ok(statements)
}

/// The journal, read a chunk at a time from a statement boundary.
struct Journal<'p> {
    /// `None` while a journal that may be made later does not exist yet.
    file: Option<File>,
    path: &'p Path,
    chunk: usize,
    /// Bytes read and not yet dropped; `buf[0]` is the file's byte `base`.
    buf: Vec<u8>,
    base: u64,
    /// Where the next statement starts in `buf`, and its line.
    pos: usize,
    line: u64,
}

impl<'p> Journal<'p> {
    /// Opens the journal and counts the lines before `from` (reading that much of it again: the
    /// line numbers in messages are the file's). With `may_be_missing`, a journal not made yet
    /// reads as empty until [`Journal::open_if_made`] finds it.
    fn open(path: &'p Path, from: u64, chunk: usize, may_be_missing: bool) -> Result<Self> {
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(e) if may_be_missing && from == 0 && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Journal { file: None, path, chunk: chunk.max(1), buf: Vec::new(), base: 0, pos: 0, line: 1 });
            }
            Err(e) => return Err(Error::io("cannot open", path, e)),
        };
        let len = file.metadata().map_err(|e| Error::io("cannot read", path, e))?.len();
        if from > len {
            return Err(Error::refused(
                format!("`{}` is {len} bytes, shorter than the offset {from} an earlier replay stopped at", path.display()),
                "the journal was truncated or replaced since; replay it from the start into a fresh copy of the database",
            ));
        }
        let mut line = 1;
        let mut buf = vec![0; chunk.clamp(1, CHUNK)];
        let mut prefix = Read::by_ref(&mut file).take(from);
        loop {
            match prefix.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => line += newlines(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("cannot read", path, e)),
            }
        }
        Ok(Journal { file: Some(file), path, chunk: chunk.max(1), buf: Vec::new(), base: from, pos: 0, line })
    }

    /// Opens a journal that did not exist when this was made, if it exists now.
    fn open_if_made(&mut self) -> Result<()> {
        if self.file.is_none() {
            match File::open(self.path) {
                Ok(file) => self.file = Some(file),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("cannot open", self.path, e)),
            }
        }
        Ok(())
    }

    /// Drops what was replayed and reads another chunk after the rest; false at the end of the
    /// file (as it is now: the server may append more for a later call).
    fn fill(&mut self) -> Result<bool> {
        self.buf.drain(..self.pos);
        self.base += self.pos as u64;
        self.pos = 0;
        let Some(file) = self.file.as_mut() else { return Ok(false) };
        let read = Read::by_ref(file).take(self.chunk as u64).read_to_end(&mut self.buf);
        Ok(read.map_err(|e| Error::io("cannot read", self.path, e))? > 0)
    }
}

fn newlines(text: &[u8]) -> u64 {
    text.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Where a statement is, for messages.
struct At<'a> {
    journal: &'a Path,
    line: u64,
}

impl At<'_> {
    /// A statement the replay will not run.
    fn refused(&self, statement: &str, why: &str) -> Error {
        Error::refused(
            format!(
                "`{}` line {}: `{}` cannot be replayed: {why}; the replay was rolled back",
                self.journal.display(),
                self.line,
                preview(statement)
            ),
            format!("remove that statement from `{}`, then replay again", self.journal.display()),
        )
    }

    /// A statement that failed.
    fn failed(&self, statement: &str, why: &str) -> Error {
        Error::refused(
            format!("`{}` line {}: `{}` failed: {why}; the replay was rolled back", self.journal.display(), self.line, preview(statement)),
            format!(
                "fix or remove that statement in `{}`, or resolve the conflict in the database it is replayed into, then replay again",
                self.journal.display()
            ),
        )
    }
}

/// The start of a statement, on one line.
fn preview(statement: &str) -> String {
    const MAX: usize = 60;
    let flat = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = flat.trim_end_matches(';').trim_end();
    match flat.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat.to_string(),
    }
}

/// What SQLite said, without the statement rusqlite appends.
fn message(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(_, Some(msg)) | rusqlite::Error::SqlInputError { msg, .. } => msg.clone(),
        other => other.to_string(),
    }
}

/// Runs one complete statement (`text`, its first token at `first`); returns how many statements
/// SQLite found in it (one, or none for only a `;`).
fn run(conn: &Connection, guard: &mut Guard, text: &[u8], first: usize, at: &At) -> Result<u64> {
    let statement = String::from_utf8_lossy(&text[first..]);
    let sql = std::str::from_utf8(text).map_err(|_| at.refused(&statement, "it is not UTF-8 text"))?;
    if text.contains(&0) {
        return Err(at.refused(&statement, "it holds a NUL byte"));
    }
    let kind = classify(&text[first..]);
    match &kind {
        Kind::Refused(why) => return Err(at.refused(&statement, why)),
        // Triggers would stand in the way of ALTER TABLE's rewriting of the schema.
        Kind::Schema => guard.remove(conn).map_err(|e| at.failed(&statement, &message(&e)))?,
        Kind::Plain | Kind::Delete(_) => {}
    }
    let mut ran = 0;
    let mut batch = Batch::new(conn, sql);
    while let Some(mut stmt) = batch.next().map_err(|e| guard.failure(at, &statement, &e))? {
        if stmt.parameter_count() > 0 {
            return Err(at.refused(&statement, "it has a parameter (`?`, `:name`…) and a journal holds statements with their values"));
        }
        let mut rows = stmt.raw_query();
        while rows.next().map_err(|e| guard.failure(at, &statement, &e))?.is_some() {}
        ran += 1;
    }
    match &kind {
        Kind::Schema => guard.install(conn).map_err(|why| at.failed(&statement, &why))?,
        Kind::Delete(target) => {
            let removed = conn.changes();
            if removed > 0 && !target.as_ref().is_some_and(|t| t.is_temp_or_internal(conn)) {
                let table = target.as_ref().map_or("its table".to_string(), |t| format!("`{}`", t.table));
                let rows = if removed == 1 { "row" } else { "rows" };
                let why = format!(
                    "it deleted {removed} {rows} of {table} for real (a virtual table cannot carry the trigger that keeps deleted rows)"
                );
                return Err(at.failed(&statement, &why));
            }
        }
        Kind::Plain | Kind::Refused(_) => {}
    }
    if conn.is_autocommit() {
        return Err(at.refused(&statement, "it ended the replay's transaction"));
    }
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::split::*;
    use super::*;

    fn split(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Scan::Complete { len, first } = next_statement(&s.as_bytes()[at..]) {
            if let Some(first) = first {
                out.push(s[at + first..at + len].trim_end());
            }
            at += len;
        }
        out
    }

    #[test]
    fn statements_end_where_sqlite_ends_them() {
        let journal = "INSERT INTO t VALUES ('a;b', \"c;\", [d;], `e;`, 'it''s;');\n\
            -- a comment; with a semicolon\n/* another; */ UPDATE t SET v = 1;;\n\
            CREATE TEMP TRIGGER g AFTER INSERT ON t BEGIN UPDATE t SET v = CASE WHEN 1 THEN 2 ELSE 3 END; DELETE FROM t; END;\n\
            EXPLAIN CREATE TRIGGER h BEFORE DELETE ON t BEGIN SELECT 1; END;\n\
            SELECT 'unfinished;";
        assert_eq!(
            split(journal),
            vec![
                "INSERT INTO t VALUES ('a;b', \"c;\", [d;], `e;`, 'it''s;');",
                "UPDATE t SET v = 1;",
                "CREATE TEMP TRIGGER g AFTER INSERT ON t BEGIN UPDATE t SET v = CASE WHEN 1 THEN 2 ELSE 3 END; DELETE FROM t; END;",
                "EXPLAIN CREATE TRIGGER h BEFORE DELETE ON t BEGIN SELECT 1; END;",
            ]
        );
        for unfinished in
            ["INSERT INTO t VALUES (1)", "SELECT 'a;", "SELECT 1 /* ;", "CREATE TRIGGER g AFTER INSERT ON t BEGIN SELECT 1;", "-- c;", "  "]
        {
            assert_eq!(next_statement(unfinished.as_bytes()), Scan::Incomplete, "{unfinished}");
        }
        assert_eq!(next_statement(b" ;"), Scan::Complete { len: 2, first: None });
    }

    #[test]
    fn leading_keywords_decide_what_is_refused_or_watched() {
        let refused = [
            "BEGIN",
            "begin immediate",
            "COMMIT",
            "END TRANSACTION",
            "ROLLBACK",
            "rollback transaction",
            "VACUUM",
            "ATTACH 'x' AS x",
            "DETACH x",
        ];
        for sql in refused.into_iter().chain([
            "PRAGMA journal_mode = WAL",
            "PRAGMA main.journal_mode(delete)",
            "PRAGMA wal_checkpoint",
            "pragma \"writable_schema\"=1",
            "PRAGMA temp_store=2",
        ]) {
            assert!(matches!(classify(sql.as_bytes()), Kind::Refused(_)), "{sql}");
        }
        for sql in [
            "ROLLBACK TO s",
            "rollback transaction to savepoint s",
            "SAVEPOINT s",
            "RELEASE s",
            "PRAGMA journal_mode",
            "PRAGMA user_version = 3",
            "SELECT 1",
            "EXPLAIN BEGIN",
            "WITH x AS (DELETE) SELECT 1",
        ] {
            assert_eq!(classify(sql.as_bytes()), Kind::Plain, "{sql}");
        }
        let t = |schema: Option<&str>, table: &str| Kind::Delete(Some(Target { schema: schema.map(Into::into), table: table.into() }));
        assert_eq!(classify(b"DELETE FROM t WHERE 1"), t(None, "t"));
        assert_eq!(classify(b"delete from \"my \"\"t\"\"\".[x]"), t(Some("my \"t\""), "x"));
        assert_eq!(
            classify(b"WITH d(id) AS (SELECT 1), e AS MATERIALIZED (SELECT 2) DELETE FROM temp.t WHERE id IN d"),
            t(Some("temp"), "t")
        );
        assert_eq!(classify(b"CREATE TABLE u(x)"), Kind::Schema);
    }

    #[test]
    fn soft_deletes_and_inserts_cost_the_same_however_many_rows_were_soft_deleted() {
        let conn = Connection::open_in_memory().expect("db");
        conn.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, deleted_at);
             CREATE TABLE w(a TEXT, b INT, deleted_at, PRIMARY KEY (a, b)) WITHOUT ROWID;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO t SELECT i, 'v', NULL FROM n;
             INSERT INTO w SELECT 'a', id, NULL FROM t;",
        )
        .expect("rows");
        let soft = SoftDelete { column: "deleted_at".into(), value: "1".into() };
        let _guard = Guard::new(&conn, Path::new(":memory:"), &soft).expect("triggers");
        // The VM steps of a statement, its triggers' included: a scan of the soft-deleted rows
        // would make them grow with their number.
        let steps = |sql: &str| {
            let mut stmt = conn.prepare(sql).expect("prepare");
            stmt.raw_execute().expect("run");
            stmt.get_status(rusqlite::StatementStatus::VmStep)
        };
        let few = [
            steps("DELETE FROM t WHERE id = 1"),
            steps("DELETE FROM w WHERE a = 'a' AND b = 1"),
            steps("INSERT INTO t VALUES (5001, 'x', NULL)"),
        ];
        steps("DELETE FROM t WHERE id < 2999");
        steps("DELETE FROM w WHERE b < 2999");
        let many = [
            steps("DELETE FROM t WHERE id = 2999"),
            steps("DELETE FROM w WHERE a = 'a' AND b = 2999"),
            steps("INSERT INTO t VALUES (5002, 'x', NULL)"),
        ];
        assert_eq!(few, many);
    }

    #[test]
    fn a_reinserted_key_revives_its_soft_deleted_row_whatever_the_key_is() {
        // The rowid itself (one search), a one-column key that is not the rowid (`TEXT`, `DESC`:
        // SQLite indexes them), and a WITHOUT ROWID table.
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("k.db");
        Connection::open(&db)
            .expect("db")
            .execute_batch(
                "CREATE TABLE a(id INTEGER PRIMARY KEY, v, deleted_at);
                 CREATE TABLE b(code TEXT PRIMARY KEY, v, deleted_at);
                 CREATE TABLE c(id INTEGER PRIMARY KEY DESC, v, deleted_at);
                 CREATE TABLE d(x, y, v, deleted_at, PRIMARY KEY (x, y)) WITHOUT ROWID;
                 INSERT INTO a VALUES (1, 'old', NULL), (2, 'kept', NULL);
                 INSERT INTO b VALUES ('k1', 'old', NULL), ('k2', 'kept', NULL);
                 INSERT INTO c VALUES (1, 'old', NULL), (2, 'kept', NULL);
                 INSERT INTO d VALUES (1, 1, 'old', NULL), (2, 2, 'kept', NULL);",
            )
            .expect("schema");
        let journal = dir.path().join("j.sql");
        std::fs::write(
            &journal,
            "DELETE FROM a WHERE id = 1; INSERT INTO a(id, v) VALUES (1, 'new'); INSERT INTO a(v) VALUES ('auto');
             DELETE FROM b WHERE code = 'k1'; INSERT INTO b(code, v) VALUES ('k1', 'new');
             DELETE FROM c WHERE id = 1; INSERT INTO c(id, v) VALUES (1, 'new');
             DELETE FROM d WHERE x = 1; INSERT INTO d(x, y, v) VALUES (1, 1, 'new');
             DELETE FROM a WHERE id = 2; DELETE FROM b WHERE code = 'k2';
",
        )
        .expect("journal");
        let soft = SoftDelete { column: "deleted_at".into(), value: "'gone'".into() };
        let replayed = replay(&db, &journal, 0, &soft).expect("replay");
        assert_eq!((replayed.soft_deleted, replayed.revived), (6, 4));
        let conn = Connection::open(&db).expect("open");
        for table in ["a", "b", "c", "d"] {
            let rows: Vec<(String, Option<String>)> = conn
                .prepare(&format!("SELECT v, deleted_at FROM {table} ORDER BY v"))
                .expect("query")
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("rows")
                .collect::<rusqlite::Result<_>>()
                .expect("rows");
            let kept = if matches!(table, "a" | "b") { Some("gone".to_string()) } else { None };
            let mut expected = vec![("kept".to_string(), kept), ("new".to_string(), None)];
            if table == "a" {
                expected.insert(0, ("auto".to_string(), None));
            }
            assert_eq!(rows, expected, "table {table}");
        }
    }

    fn dump(db: &Path) -> Vec<String> {
        let conn = Connection::open(db).expect("open");
        let mut stmt =
            conn.prepare("SELECT id || ':' || coalesce(v, '') || ':' || coalesce(deleted_at, '') FROM t ORDER BY id").expect("dump");
        stmt.query_map([], |r| r.get(0)).expect("rows").collect::<rusqlite::Result<_>>().expect("dump")
    }

    #[test]
    fn any_chunk_size_replays_the_same() {
        let dir = tempfile::tempdir().expect("dir");
        let journal = dir.path().join("j.sql");
        let text = "INSERT INTO t VALUES (1, 'a;b', NULL);\n-- note; ünïcödé\nINSERT INTO t(id, v) VALUES\n (2, 'x''y;'), (3, 'z');\n\
            /* c */ UPDATE t SET v = v || '!' WHERE id = 2;\n\
            CREATE TRIGGER g AFTER UPDATE OF v ON t BEGIN\n  UPDATE t SET v = upper(v) WHERE id = NEW.id AND v <> upper(v);\n  SELECT 1;\nEND;\n\
            DELETE FROM t WHERE id IN (SELECT id FROM t WHERE v LIKE 'z%');\nINSERT INTO t(id, v) VALUES (3, 'back');\n\
            UPDATE t SET v = 'é;' WHERE id = 1;\nINSERT INTO t VALUES (4, 'half";
        std::fs::write(&journal, text).expect("journal");
        let soft = SoftDelete { column: "deleted_at".into(), value: "'gone'".into() };
        let mut seen = None;
        for chunk in [1, 2, 3, 5, 8, 13, 64, CHUNK] {
            let db = dir.path().join(format!("{chunk}.db"));
            Connection::open(&db).expect("db").execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, deleted_at)").expect("schema");
            let replayed = replay_in_chunks(&db, &[], &journal, 0, &soft, chunk, None::<fn(&Replayed) -> Result<()>>).expect("replay")[0];
            let result = (replayed, dump(&db));
            assert_eq!(result.0.end_offset, text.rfind("INSERT INTO t VALUES (4").expect("tail") as u64 - 1, "chunk {chunk}");
            match &seen {
                None => {
                    assert_eq!((replayed.statements, replayed.soft_deleted, replayed.revived, replayed.end_line), (7, 1, 1, 12));
                    // The revival is an UPDATE: the table's UPDATE trigger `g` runs on it.
                    assert_eq!(result.1, ["1:é;:", "2:x'y;!:", "3:BACK:"]);
                    seen = Some(result);
                }
                Some(first) => assert_eq!(&result, first, "chunk {chunk}"),
            }
        }
    }
}
