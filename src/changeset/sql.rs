//! SQL changesets, run natively: the databases named in `-- b2m: db = <stem>` lines, the first as
//! `main` and the others attached under their stems, one transaction around the whole script.
//! Statements are split by SQLite's own parser; those that would end or escape the transaction
//! (`BEGIN`, `COMMIT`, `END`, `ROLLBACK`, `VACUUM`, `ATTACH`, `DETACH`) are refused before they run,
//! and any failure rolls everything back.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::error::{Error, Result};

/// The database arguments of a script's `-- b2m: db = <stem>` lines, in order.
pub fn targets(script: &str) -> Vec<String> {
    without_bom(script)
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("--")?.trim().strip_prefix("b2m:")?.trim();
            let value = rest.strip_prefix("db")?.trim_start().strip_prefix('=')?.trim();
            (!value.is_empty()).then(|| value.trim_matches('"').to_string())
        })
        .collect()
}

/// A script without the byte-order mark an editor may have put first (SQLite would not read it).
pub fn without_bom(script: &str) -> &str {
    script.strip_prefix('\u{feff}').unwrap_or(script)
}

/// The length of the whitespace and comments before a statement's first token.
fn leading_trivia(sql: &str) -> usize {
    let mut rest = sql;
    loop {
        let trimmed = rest.trim_start();
        if let Some(comment) = trimmed.strip_prefix("--") {
            rest = comment.find('\n').map_or("", |i| &comment[i + 1..]);
        } else if let Some(comment) = trimmed.strip_prefix("/*") {
            rest = comment.find("*/").map_or("", |i| &comment[i + 2..]);
        } else {
            return sql.len() - trimmed.len();
        }
    }
}

/// The keyword a statement may not start with, if it starts with one.
fn forbidden(sql: &str) -> Option<String> {
    let words: Vec<String> =
        sql[leading_trivia(sql)..].split_whitespace().take(3).map(|w| w.trim_end_matches(';').to_ascii_uppercase()).collect();
    let first = words.first()?.as_str();
    let savepoint_rollback = first == "ROLLBACK" && words.iter().skip(1).any(|w| w == "TO");
    matches!(first, "BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "VACUUM" | "ATTACH" | "DETACH")
        .then_some(())
        .filter(|_| !savepoint_rollback)
        .map(|_| first.to_string())
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Runs `script` over the working copies `dbs` (stem, path) in one transaction. Returns the
/// number of statements run.
pub fn apply(dbs: &[(String, PathBuf)], script: &str, script_path: &Path) -> Result<u64> {
    let script = without_bom(script);
    let Some((_, main)) = dbs.first() else {
        return Err(Error::config(format!("`{}` names no database", script_path.display())));
    };
    let conn = Connection::open(main).map_err(|e| Error::sqlite(main, e))?;
    for (stem, path) in &dbs[1..] {
        conn.execute("ATTACH DATABASE ?1 AS ?2", (path.to_string_lossy(), stem)).map_err(|e| Error::sqlite(path, e))?;
    }
    let at = |offset: usize, what: String| {
        Error::refused(
            format!("`{}` line {}: {what}; nothing was published", script_path.display(), line_at(script, offset)),
            format!("fix `{}` and run it again with `--retry`", script_path.display()),
        )
    };
    conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| Error::sqlite(main, e))?;
    let mut batch = rusqlite::Batch::new(&conn, script);
    let mut offset = 0usize;
    let mut statements = 0u64;
    let outcome = loop {
        let mut stmt = match batch.next() {
            Ok(Some(stmt)) => stmt,
            Ok(None) => break Ok(()),
            Err(e) => break Err(at(offset + leading_trivia(&script[offset..]), e.to_string())),
        };
        let text = stmt.expanded_sql().unwrap_or_default();
        let start = offset + leading_trivia(&text);
        offset += text.len();
        if let Some(keyword) = forbidden(&text) {
            break Err(at(start, format!("`{keyword}` cannot run in a changeset (b2m holds one transaction around the whole script)")));
        }
        let ran = if stmt.column_count() > 0 {
            let mut rows = stmt.raw_query();
            loop {
                match rows.next() {
                    Ok(Some(_)) => {}
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        } else {
            stmt.raw_execute().map(|_| ())
        };
        if let Err(e) = ran {
            break Err(at(start, e.to_string()));
        }
        statements += 1;
    };
    match outcome {
        Ok(()) => conn.execute_batch("COMMIT").map_err(|e| Error::sqlite(main, e))?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_name_the_databases() {
        let script = "-- b2m changeset\n-- b2m: db = ipm-db\n--b2m: db=emoji-db\n-- b2m: dbx = no\nSELECT 1;\n";
        assert_eq!(targets(script), vec!["ipm-db", "emoji-db"]);
    }

    #[test]
    fn statements_that_break_the_transaction_are_refused_with_their_line() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("a.db");
        Connection::open(&db).expect("db").execute_batch("CREATE TABLE t(v TEXT);").expect("schema");
        let dbs = vec![("a".to_string(), db.clone())];
        let script =
            "INSERT INTO t VALUES ('x;y');\n-- a comment\nCREATE TRIGGER g AFTER INSERT ON t BEGIN\n  UPDATE t SET v = v;\nEND;\nVACUUM;\n";
        let err = apply(&dbs, script, Path::new("s.sql")).expect_err("VACUUM").to_string();
        assert!(err.contains("line 6") && err.contains("VACUUM"), "{err}");
        let n: i64 = Connection::open(&db).expect("db").query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("count");
        assert_eq!(n, 0, "rolled back");
        for bad in ["COMMIT;", "BEGIN;", "ATTACH 'x.db' AS x;", "  /* c */ rollback;"] {
            assert!(apply(&dbs, &format!("INSERT INTO t VALUES (1);\n{bad}\n"), Path::new("s.sql")).is_err(), "{bad}");
        }
        let ran = apply(
            &dbs,
            "SAVEPOINT s; INSERT INTO t VALUES ('a;b'); ROLLBACK TO s; RELEASE s; INSERT INTO t VALUES (2);",
            Path::new("s.sql"),
        );
        assert_eq!(ran.expect("savepoints are fine"), 5);
        let err = apply(&dbs, "INSERT INTO t VALUES (3);\n\nINSERT INTO nope VALUES (1);\n", Path::new("s.sql"))
            .expect_err("no table")
            .to_string();
        assert!(err.contains("line 3") && err.contains("nope"), "{err}");
    }
}
