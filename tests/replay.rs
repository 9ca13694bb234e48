//! Journal replay (`b2m::sqlite::replay`): a real database file and journal in a temp dir, the
//! rows checked after each replay.

use std::io::Write;
use std::path::{Path, PathBuf};

use b2m::sqlite::replay::{Replayed, SoftDelete, replay, replay_with_tail};
use rusqlite::Connection;

const SCHEMA: &str = "
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, deleted_at);
CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER, total REAL, deleted_at);
CREATE TABLE tags (name TEXT COLLATE NOCASE, kind TEXT, note TEXT, deleted_at, PRIMARY KEY (name, kind)) WITHOUT ROWID;
CREATE TABLE plain (id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO users VALUES (1, 'ann', NULL), (2, 'bob', NULL), (3, 'cy', NULL);
INSERT INTO orders VALUES (10, 1, 5.0, NULL), (11, 2, 7.5, NULL), (12, 2, 1.0, NULL), (13, 3, 2.0, NULL);
INSERT INTO tags VALUES ('red', 'color', 'r', NULL), ('blue', 'color', 'b', NULL), ('big', 'size', 's', NULL);
INSERT INTO plain VALUES (1, 'p');
";

/// A database with [`SCHEMA`] and a journal beside it, in a temp dir.
struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    journal: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("ipm-db-v2.db");
        let journal = dir.path().join("ipm-db-v1.sql");
        Connection::open(&db).expect("create db").execute_batch(SCHEMA).expect("schema");
        std::fs::write(&journal, "").expect("journal");
        Fixture { _dir: dir, db, journal }
    }

    /// A fixture whose journal holds `text`.
    fn with(text: &str) -> Self {
        let fixture = Fixture::new();
        fixture.append(text);
        fixture
    }

    fn append(&self, text: &str) {
        let mut file = std::fs::OpenOptions::new().append(true).open(&self.journal).expect("open journal");
        file.write_all(text.as_bytes()).expect("append");
    }

    fn replay(&self, from: u64, value: &str) -> b2m::error::Result<Replayed> {
        replay(&self.db, &self.journal, from, &SoftDelete { column: "deleted_at".into(), value: value.into() })
    }

    fn ok(&self, value: &str) -> Replayed {
        self.replay(0, value).unwrap_or_else(|e| panic!("replay failed: {e}"))
    }

    /// The replay's error, as printed: message and hint.
    fn err(&self) -> String {
        match self.replay(0, "1") {
            Ok(r) => panic!("replay should have failed, did {r:?}"),
            Err(e) => format!("{e} (hint: {})", e.hint().unwrap_or_default()),
        }
    }

    /// `sql`'s rows, each one line of `|`-separated values (NULL as `∅`).
    fn rows(&self, sql: &str) -> Vec<String> {
        let conn = Connection::open(&self.db).expect("open db");
        let mut stmt = conn.prepare(sql).expect("prepare");
        let n = stmt.column_count();
        let rows = stmt.query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => "∅".to_string(),
                        rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                        rusqlite::types::ValueRef::Real(v) => v.to_string(),
                        rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                        rusqlite::types::ValueRef::Blob(b) => format!("{b:?}"),
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
                .map(|v| v.join("|"))
        });
        rows.expect("query").collect::<rusqlite::Result<_>>().expect("rows")
    }

    /// Every row of every table.
    fn dump(&self) -> Vec<String> {
        ["users", "orders", "tags", "plain"].iter().flat_map(|t| self.rows(&format!("SELECT '{t}', * FROM {t} ORDER BY 2, 3"))).collect()
    }
}

fn journal_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("journal").len()
}

#[test]
fn inserts_updates_and_replaces_run_as_written() {
    let f = Fixture::with(
        "INSERT INTO users (id, name) VALUES (4, 'dee');\n\
         UPDATE users SET name = upper(name) WHERE id IN (1, 3);\n\
         REPLACE INTO users (id, name) VALUES (2, 'bob2');\n\
         INSERT OR REPLACE INTO orders VALUES (11, 2, 99.5, NULL);\n\
         INSERT INTO users (name) VALUES ('eve');\n\
         UPDATE tags SET note = note || '!' WHERE kind = 'color';\n",
    );
    let r = f.ok("1");
    assert_eq!((r.statements, r.soft_deleted, r.revived), (6, 0, 0));
    assert_eq!(f.rows("SELECT * FROM users ORDER BY id"), ["1|ANN|∅", "2|bob2|∅", "3|CY|∅", "4|dee|∅", "5|eve|∅"]);
    assert_eq!(f.rows("SELECT total FROM orders WHERE id = 11"), ["99.5"]);
    assert_eq!(f.rows("SELECT note FROM tags ORDER BY name"), ["s", "b!", "r!"]);
}

#[test]
fn every_delete_keeps_its_rows_with_the_timestamp_set() {
    let f = Fixture::with(
        "DELETE FROM users WHERE id = 1;\n\
         DELETE FROM orders WHERE user_id IN (SELECT id FROM users WHERE name = 'bob');\n\
         WITH old(id) AS (SELECT id FROM orders WHERE total < 3) DELETE FROM orders WHERE id IN (SELECT id FROM old);\n\
         DELETE FROM tags WHERE kind = 'color' AND name = 'RED';\n\
         DELETE FROM users WHERE id = 1;\n",
    );
    let before = f.rows("SELECT count(*) FROM users UNION ALL SELECT count(*) FROM orders UNION ALL SELECT count(*) FROM tags");
    let r = f.ok("CURRENT_TIMESTAMP");
    // orders 11 and 12 (bob's), then 13 (12 again is already gone for the journal); the second
    // delete of user 1 finds it gone too.
    assert_eq!((r.statements, r.soft_deleted, r.revived), (5, 5, 0));
    let after = f.rows("SELECT count(*) FROM users UNION ALL SELECT count(*) FROM orders UNION ALL SELECT count(*) FROM tags");
    assert_eq!(after, before, "no row was deleted for real");
    let stamped = |t: &str| {
        f.rows(&format!("SELECT length(deleted_at), deleted_at LIKE '2___-__-__ __:__:__' FROM {t} WHERE deleted_at IS NOT NULL"))
    };
    assert_eq!(stamped("users"), ["19|1"]);
    assert_eq!(stamped("orders"), ["19|1", "19|1", "19|1"]);
    assert_eq!(stamped("tags"), ["19|1"]);
    assert_eq!(f.rows("SELECT id FROM orders WHERE deleted_at IS NULL"), ["10"]);
    assert_eq!(f.rows("SELECT name, kind FROM tags WHERE deleted_at IS NOT NULL"), ["red|color"]);
}

#[test]
fn a_delete_without_where_and_on_a_without_rowid_table_sets_the_flag() {
    let f = Fixture::with("DELETE FROM orders;\nDELETE FROM tags WHERE (name, kind) IN (SELECT 'big', 'size');\n");
    let r = f.ok("1");
    assert_eq!((r.statements, r.soft_deleted), (2, 5));
    assert_eq!(f.rows("SELECT id, deleted_at FROM orders ORDER BY id"), ["10|1", "11|1", "12|1", "13|1"]);
    assert_eq!(f.rows("SELECT name, deleted_at FROM tags ORDER BY name"), ["big|1", "blue|∅", "red|∅"]);
}

#[test]
fn semicolons_in_strings_and_trigger_bodies_do_not_split_statements() {
    let f = Fixture::with(
        "INSERT INTO users (id, name) VALUES (4, 'a;b'), (5, 'c'';d'), (6, \"e;f\");\n\
         CREATE TABLE audit (what TEXT);\n\
         CREATE TRIGGER users_ai AFTER INSERT ON users BEGIN\n\
           INSERT INTO audit VALUES ('new;' || NEW.name);\n\
           UPDATE users SET name = name || CASE WHEN NEW.id > 6 THEN '+' ELSE '-' END WHERE id = NEW.id;\n\
         END;\n\
         INSERT INTO users (id, name) VALUES (7, 'g');\n",
    );
    let r = f.ok("1");
    assert_eq!(r.statements, 4);
    assert_eq!(f.rows("SELECT name FROM users WHERE id > 3 ORDER BY id"), ["a;b", "c';d", "e;f", "g+"]);
    assert_eq!(f.rows("SELECT what FROM audit"), ["new;g"]);
}

#[test]
fn multi_line_statements_and_comments_are_one_statement_each_and_lines_are_counted() {
    let f = Fixture::with(
        "-- the server's journal; it starts with a comment\n\
         /* a block comment;\n   over two lines */\n\
         INSERT INTO users (id, name)\n  -- a comment inside; with a semicolon\n  VALUES (4,\n  'multi\nline');\n\
         UPDATE users /* ; */ SET name = 'x' WHERE id = 1; -- trailing; comment\n\
         \n\
         INSERT INTO nope VALUES (1);\n",
    );
    let err = f.err();
    assert!(err.contains("line 11:") && err.contains("`INSERT INTO nope VALUES (1)`") && err.contains("no such table: nope"), "{err}");
    std::fs::write(&f.journal, std::fs::read_to_string(&f.journal).expect("read").replace("INSERT INTO nope VALUES (1);\n", ""))
        .expect("fix");
    let r = f.ok("1");
    assert_eq!((r.statements, r.end_line), (2, 9));
    assert_eq!(f.rows("SELECT name FROM users WHERE id IN (1, 4) ORDER BY id"), ["x", "multi\nline"]);
}

#[test]
fn a_failing_statement_rolls_back_everything_of_the_call_and_names_its_line() {
    let f = Fixture::with(
        "INSERT INTO users (id, name) VALUES (4, 'dee');\n\
         DELETE FROM orders WHERE id = 10;\n\
         UPDATE tags SET note = 'changed';\n\
         CREATE TABLE extra (x);\n\
         INSERT INTO users (id, name) VALUES (5, 'ann');\n\
         INSERT INTO users (id, name) VALUES (6, 'never');\n",
    );
    let before = f.dump();
    let err = f.err();
    assert!(err.contains("ipm-db-v1.sql` line 5:") && err.contains("UNIQUE constraint failed: users.name"), "{err}");
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(f.dump(), before);
    assert!(f.rows("SELECT name FROM sqlite_master WHERE name = 'extra'").is_empty(), "the CREATE TABLE was rolled back too");
}

#[test]
fn a_delete_from_a_table_without_the_column_names_it_and_changes_nothing() {
    let f = Fixture::with("UPDATE users SET name = 'x' WHERE id = 1;\n\nDELETE FROM plain WHERE id = 1;\n");
    let before = f.dump();
    let err = f.err();
    assert!(err.contains("line 3:") && err.contains("`plain`") && err.contains("no `deleted_at` column"), "{err}");
    assert!(err.contains("ALTER TABLE plain ADD COLUMN deleted_at"), "{err}");
    assert_eq!(f.dump(), before);
}

#[test]
fn transaction_control_and_file_statements_are_refused_naming_the_line() {
    for bad in [
        "BEGIN;",
        "begin immediate transaction;",
        "COMMIT;",
        "END;",
        "ROLLBACK;",
        "/* c */ VACUUM;",
        "ATTACH DATABASE 'other.db' AS other;",
        "DETACH other;",
        "PRAGMA journal_mode = WAL;",
        "PRAGMA wal_checkpoint(TRUNCATE);",
    ] {
        let f = Fixture::with(&format!(
            "INSERT INTO users (id, name) VALUES (4, 'dee');\n{bad}\nINSERT INTO users (id, name) VALUES (5, 'eve');\n"
        ));
        let before = f.dump();
        let err = f.err();
        let shown = bad.trim_start_matches("/* c */ ").trim_end_matches(';');
        assert!(err.contains("line 2:") && err.contains(&format!("`{shown}` cannot be replayed")), "{bad}: {err}");
        assert_eq!(f.dump(), before, "{bad}");
    }
    let f = Fixture::with(
        "SAVEPOINT s;\nINSERT INTO users (id, name) VALUES (4, 'dee');\nROLLBACK TO s;\nRELEASE s;\n\
         PRAGMA user_version = 7;\nSELECT * FROM users;\nINSERT INTO users (id, name) VALUES (5, 'eve');\n",
    );
    assert_eq!(f.ok("1").statements, 7);
    assert_eq!(f.rows("SELECT id FROM users WHERE id > 3 UNION ALL SELECT user_version FROM pragma_user_version"), ["5", "7"]);
}

#[test]
fn an_insert_colliding_with_a_row_this_replay_deleted_revives_it() {
    let f = Fixture::with(
        "DELETE FROM users WHERE id = 2;\n\
         INSERT INTO users (id, name) VALUES (2, 'bob');\n\
         DELETE FROM tags WHERE name = 'red';\n\
         INSERT INTO tags (name, kind, note) VALUES ('RED', 'color', 'again');\n\
         DELETE FROM orders WHERE id = 13;\n\
         INSERT OR REPLACE INTO orders VALUES (13, 3, 9.0, NULL);\n\
         DELETE FROM orders WHERE id = 12;\n",
    );
    let r = f.ok("CURRENT_TIMESTAMP");
    assert_eq!((r.statements, r.soft_deleted, r.revived), (7, 4, 3));
    assert_eq!(f.rows("SELECT * FROM users WHERE id = 2"), ["2|bob|∅"]);
    assert_eq!(f.rows("SELECT * FROM tags WHERE kind = 'color' ORDER BY name"), ["blue|color|b|∅", "RED|color|again|∅"]);
    assert_eq!(f.rows("SELECT id, total, deleted_at IS NULL FROM orders WHERE id IN (12, 13)"), ["12|1|0", "13|9|1"]);
}

#[test]
fn an_insert_colliding_with_a_live_row_or_one_deleted_before_the_replay_fails() {
    let f = Fixture::with("DELETE FROM users WHERE id = 2;\nINSERT INTO users (id, name) VALUES (1, 'ann2');\n");
    let err = f.err();
    assert!(err.contains("line 2:") && err.contains("UNIQUE constraint failed: users.id"), "{err}");
    assert_eq!(f.rows("SELECT count(*) FROM users WHERE deleted_at IS NOT NULL"), ["0"]);

    let f = Fixture::with("INSERT INTO users (id, name) VALUES (3, 'cy2');\n");
    Connection::open(&f.db).expect("db").execute_batch("UPDATE users SET deleted_at = 'earlier' WHERE id = 3").expect("soft-delete");
    let err = f.err();
    assert!(err.contains("line 1:") && err.contains("UNIQUE constraint failed: users.id"), "{err}");
}

#[test]
fn an_incremental_replay_runs_only_the_new_complete_statements() {
    let f = Fixture::with("INSERT INTO users (id, name) VALUES (4, 'dee');\nDELETE FROM users WHERE id = 1;\n");
    let first = f.ok("1");
    assert_eq!((first.statements, first.soft_deleted, first.end_offset, first.end_line), (2, 1, journal_len(&f.journal) - 1, 2));

    f.append("UPDATE users SET name = 'DEE' WHERE id = 4;\n-- more to come\nINSERT INTO users (id, name) VALUES (5, 'half");
    let second = f.replay(first.end_offset, "1").expect("second replay");
    assert_eq!((second.statements, second.soft_deleted), (1, 0));
    assert_eq!(second.end_line, 3);
    let text = std::fs::read_to_string(&f.journal).expect("journal");
    assert_eq!(second.end_offset as usize, text.find("\n-- more to come").expect("comment"));
    assert_eq!(f.rows("SELECT id, name FROM users WHERE id > 3"), ["4|DEE"]);

    f.append(" done');\n");
    let third = f.replay(second.end_offset, "1").expect("third replay");
    assert_eq!((third.statements, third.end_offset, third.end_line), (1, journal_len(&f.journal) - 1, 5));
    assert_eq!(f.rows("SELECT id, name FROM users WHERE id > 3"), ["4|DEE", "5|half done"]);
    assert_eq!(f.rows("SELECT id FROM users WHERE deleted_at IS NOT NULL"), ["1"], "the first call's delete ran once");

    let nothing = f.replay(third.end_offset, "1").expect("nothing new");
    assert_eq!((nothing.statements, nothing.end_offset, nothing.end_line), (0, third.end_offset, 5));
    let err = f.replay(journal_len(&f.journal) + 1, "1").expect_err("past the end").to_string();
    assert!(err.contains("shorter than the offset"), "{err}");
}

#[test]
fn a_journal_bigger_than_a_chunk_replays_as_sqlite_runs_it() {
    // Over 4 MiB (the chunk), with a statement holding a 1 MiB string full of `;` and `--` across
    // the 4 MiB mark, and a trigger after it (the unit tests cut trigger bodies at every byte).
    let mut journal = String::from("CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT, deleted_at);\n");
    let mut id = 0;
    let mut row = |journal: &mut String, v: &str| {
        id += 1;
        journal.push_str(&format!("INSERT INTO big (id, v) VALUES ({id}, '{v}');\n"));
    };
    while journal.len() < 3_800_000 {
        row(&mut journal, "some row text; with -- and /* inside");
    }
    row(&mut journal, &"x;-- ';'; ".replace('\'', "''").repeat(100_000));
    journal.push_str("CREATE TRIGGER big_au AFTER UPDATE ON big BEGIN\n");
    journal.push_str(&"  UPDATE big SET v = v || '.' WHERE id = NEW.id AND 0;\n".repeat(400));
    journal.push_str("END;\nUPDATE big SET v = 'last;' WHERE id = 1;\n");
    while journal.len() < 5_300_000 {
        row(&mut journal, "tail");
    }
    assert!((4 << 20) + 10_000 < journal.len());

    let f = Fixture::with(&journal);
    let r = f.ok("1");
    assert_eq!(r.statements, id + 3);
    assert_eq!((r.end_offset, r.end_line), (journal.len() as u64 - 1, id + 404));

    let reference = Fixture::new();
    let conn = Connection::open(&reference.db).expect("db");
    conn.execute_batch(&format!("BEGIN; {journal} COMMIT;")).expect("sqlite runs it");
    drop(conn);
    let all = "SELECT id, length(v), v, deleted_at FROM big ORDER BY id";
    assert_eq!(f.rows(all), reference.rows(all));
    assert_eq!(f.rows("SELECT max(length(v)) FROM big"), ["1000000"]);
}

#[test]
fn tables_the_journal_creates_or_alters_get_soft_deletes_and_temp_tables_real_ones() {
    let f = Fixture::with(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, deleted_at);\n\
         INSERT INTO notes VALUES (1, 'n', NULL);\n\
         DELETE FROM notes;\n\
         ALTER TABLE plain ADD COLUMN deleted_at;\n\
         DELETE FROM plain WHERE id = 1;\n\
         CREATE TEMP TABLE scratch (x);\n\
         INSERT INTO scratch VALUES (1), (2);\n\
         DELETE FROM scratch WHERE x = 1;\n\
         INSERT INTO users (id, name) SELECT x + 10, 's' || x FROM scratch;\n",
    );
    let r = f.ok("1");
    assert_eq!((r.statements, r.soft_deleted), (9, 2));
    assert_eq!(f.rows("SELECT * FROM notes"), ["1|n|1"]);
    assert_eq!(f.rows("SELECT * FROM plain"), ["1|p|1"]);
    assert_eq!(f.rows("SELECT id, name FROM users WHERE id > 10"), ["12|s2"]);
}

#[test]
fn a_delete_from_a_virtual_table_is_refused() {
    let f = Fixture::with("CREATE VIRTUAL TABLE docs USING fts5 (body);\nINSERT INTO docs VALUES ('hello');\nDELETE FROM docs;\n");
    let err = f.err();
    assert!(err.contains("line 3:") && err.contains("`docs` for real"), "{err}");
    assert!(f.rows("SELECT name FROM sqlite_master WHERE name = 'docs'").is_empty());
}

#[test]
fn a_soft_delete_value_that_is_not_one_expression_is_refused() {
    let f = Fixture::with("DELETE FROM users;\n");
    for bad in ["1); DROP TABLE users; SELECT (1", "1 -- x", "", "no_such_column"] {
        let err = f.replay(0, bad).expect_err(bad).to_string();
        assert!(err.contains("is not an SQL expression"), "{bad}: {err}");
    }
    assert_eq!(f.rows("SELECT count(*) FROM users WHERE deleted_at IS NULL"), ["3"]);
}

#[test]
fn a_soft_deleted_parent_keeps_its_children_and_key_updates_cascade() {
    let f = Fixture::with(
        "CREATE TABLE teams (id INTEGER PRIMARY KEY, name TEXT, deleted_at);\n\
         CREATE TABLE members (id INTEGER PRIMARY KEY, team INTEGER REFERENCES teams (id) ON DELETE CASCADE ON UPDATE CASCADE, deleted_at);\n\
         INSERT INTO teams VALUES (1, 'a', NULL), (2, 'b', NULL);\n\
         INSERT INTO members VALUES (10, 1, NULL), (20, 2, NULL);\n\
         DELETE FROM teams WHERE id = 1;\n\
         UPDATE teams SET id = 3 WHERE id = 2;\n",
    );
    let r = f.ok("1");
    assert_eq!((r.statements, r.soft_deleted), (6, 1));
    assert_eq!(f.rows("SELECT id, deleted_at FROM teams ORDER BY id"), ["1|1", "3|∅"]);
    assert_eq!(f.rows("SELECT id, team, deleted_at FROM members ORDER BY id"), ["10|1|∅", "20|3|∅"]);
}

#[test]
fn a_tail_replayed_in_the_same_transaction_revives_rows_the_first_part_deleted() {
    let first = "DELETE FROM users WHERE id = 2;\nINSERT INTO users (id, name) VALUES (4, 'ha";
    let appended = "lf');\nINSERT INTO users (id, name) VALUES (2, 'bob');\n";
    let soft = SoftDelete { column: "deleted_at".into(), value: "1".into() };

    // Two calls of `replay` do not share what they soft-deleted: the tail's insert collides.
    let apart = Fixture::with(first);
    let r = apart.replay(0, "1").expect("first part");
    apart.append(appended);
    let err = apart.replay(r.end_offset, "1").expect_err("the tail collides").to_string();
    assert!(err.contains("line 3:") && err.contains("UNIQUE constraint failed: users.id"), "{err}");

    let f = Fixture::with(first);
    let mut seen = None;
    let [head, tail] = replay_with_tail(&f.db, &f.journal, &soft, |head| {
        seen = Some(*head);
        f.append(appended);
        Ok(())
    })
    .unwrap_or_else(|e| panic!("replay failed: {e}"));
    assert_eq!(seen, Some(head));
    assert_eq!((head.statements, head.soft_deleted, head.revived, head.end_line), (1, 1, 0, 1));
    assert_eq!((tail.statements, tail.soft_deleted, tail.revived), (2, 0, 1));
    // With the server stopped the tail is read to the journal's end (a last statement needs no `;`).
    assert_eq!((tail.end_offset, tail.end_line), (journal_len(&f.journal), 4));
    assert_eq!(f.rows("SELECT * FROM users WHERE id IN (2, 4) ORDER BY id"), ["2|bob|∅", "4|half|∅"]);
}

#[test]
fn a_failing_tail_or_stop_keeps_nothing_of_either_part() {
    let soft = SoftDelete { column: "deleted_at".into(), value: "1".into() };
    let f = Fixture::with("DELETE FROM users WHERE id = 2;\nUPDATE users SET name = 'x' WHERE id = 1;\n");
    let before = f.dump();
    let err = replay_with_tail(&f.db, &f.journal, &soft, |_| Err(b2m::error::Error::refused("the server did not stop", "stop it")))
        .expect_err("stop");
    assert!(err.to_string().contains("did not stop"), "{err}");
    assert_eq!(f.dump(), before);
    let err = replay_with_tail(&f.db, &f.journal, &soft, |_| {
        f.append("INSERT INTO users (id, name) VALUES (1, 'dup');\n");
        Ok(())
    })
    .expect_err("tail fails")
    .to_string();
    assert!(err.contains("line 3:") && err.contains("UNIQUE"), "{err}");
    assert_eq!(f.dump(), before);
}
