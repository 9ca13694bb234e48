//! `b2m merge`: the server's journaled rows carried onto the bucket's newer version.

use crate::common::*;
use rusqlite::Connection;

/// A dev and a server on `ipm-db` v1: `t(id, v, deleted_at)` with rows 'row 0'..'row 3'.
pub(crate) fn shop(bucket: &Bucket) -> (Project, Project) {
    let dev = Project::new(bucket);
    let conn = Connection::open(dev.db("ipm-db-v1.db")).expect("db");
    conn.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, deleted_at TEXT);
         INSERT INTO t(v) VALUES ('row 0'), ('row 1'), ('row 2'), ('row 3');
         CREATE TABLE plain(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO plain(v) VALUES ('p');",
    )
    .expect("schema");
    drop(conn);
    dev.add_entry("ipmdb", "ipm-db-v1.db");
    dev.b2m(&["upload", "ipm-db"]).ok();
    let server = Project::new(bucket);
    server.b2m(&["fetch-db-toml"]).ok();
    server.b2m(&["download", "ipm-db"]).ok();
    (dev, server)
}

/// What the server did: run `journal` on its file and append it to the journal beside it.
fn server_writes(server: &Project, journal: &str) {
    Connection::open(server.db("ipm-db-v1.db")).expect("db").execute_batch(journal).expect("server writes");
    let path = server.db("ipm-db-v1.sql");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(journal);
    std::fs::write(path, text).expect("journal");
}

fn table(path: &std::path::Path) -> Vec<(i64, String, bool)> {
    let conn = Connection::open(path).expect("db");
    let mut stmt = conn.prepare("SELECT id, v, deleted_at IS NOT NULL FROM t ORDER BY id").expect("select");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).expect("rows").map(|r| r.expect("row")).collect()
}

both_backends!(a_journal_is_replayed_onto_the_newer_version_with_soft_deletes, |backend| {
    let bucket = Bucket::new(backend);
    let (dev, server) = shop(&bucket);
    dev.insert_row("ipm-db-v1.db", "INSERT INTO t(v) VALUES ('dev row')");
    dev.b2m(&["upload", "ipm-db"]).ok();
    server_writes(
        &server,
        "INSERT INTO t(v) VALUES ('server row; with a semicolon');\n\
         UPDATE t SET v = 'updated' WHERE id = 1;\n\
         DELETE FROM t WHERE id = 2;\n\
         DELETE FROM t WHERE id IN (SELECT id FROM t WHERE v = 'row 3');\n",
    );
    let row = server.status_row("ipm-db");
    assert_eq!((row["status"].as_str(), row["local_changes"].as_bool()), (Some("outdated_db"), Some(true)), "{row}");
    // The server runs, with its db open; [server] lets b2m stop it for the tail and the swap.
    let process = DbHolder::start(&server.db("ipm-db-v1.db"), &[], false);
    server.append_config(&process.server_config());
    let run = server.b2m(&["merge", "ipm-db", "--json"]);
    run.ok();
    assert!(run.stderr.contains("stopping the server") && run.stderr.contains("starting the server"), "{}", run.stderr);
    let merged: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!((merged["onto"].as_u64(), merged["version"].as_u64(), merged["statements"].as_u64()), (Some(2), Some(3), Some(4)));
    assert_eq!(merged["soft_deleted"], 2);
    // v3: the newer version's rows plus the server's; deleted rows kept, marked.
    let expected = vec![
        (1, "updated".to_string(), false),
        (2, "row 1".to_string(), true),
        (3, "row 2".to_string(), false),
        (4, "row 3".to_string(), true),
        (5, "dev row".to_string(), false),
        (6, "server row; with a semicolon".to_string(), false),
    ];
    assert_eq!(table(&server.db("ipm-db-v3.db")), expected);
    assert_eq!(bucket.current_meta("ipm-db")["made_by"], "merge");
    // The journal moved into the working folder with the version it was replayed onto.
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v3.db"]);
    let work = std::path::PathBuf::from(merged["workdir"].as_str().expect("workdir"));
    assert!(work.join("ipm-db-v1.sql").is_file() && work.join("ipm-db-v2.db").is_file(), "{}", work.display());
    assert_eq!(server.status_of("ipm-db"), "up_to_date");
    dev.b2m(&["download", "ipm-db"]).ok();
    assert_eq!(table(&dev.db("ipm-db-v3.db")), expected);
});

#[test]
fn a_failing_merge_leaves_the_server_on_its_file_with_its_journal() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = shop(&bucket);
    dev.insert_row("ipm-db-v1.db", "INSERT INTO t(v) VALUES ('dev row')");
    dev.b2m(&["upload", "ipm-db"]).ok();
    // The server's db had a table the newer version dropped: its statement fails on v2.
    Connection::open(server.db("ipm-db-v1.db")).expect("db").execute_batch("CREATE TABLE extra(x);").expect("extra");
    server_writes(&server, "INSERT INTO t(v) VALUES ('ok');\n\nINSERT INTO extra VALUES (1);\n");
    let keys = bucket.keys();
    server.b2m(&["merge", "ipm-db"]).fails(1, "line 3");
    assert_eq!(bucket.keys(), keys, "nothing published");
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v1.db", "ipm-db-v1.sql"]);
    assert!(server.manifest_text().contains("ipmdb = \"ipm-db-v1.db\""));
    // A DELETE on a table without the soft-delete column is named, and changes nothing.
    std::fs::write(server.db("ipm-db-v1.sql"), "DELETE FROM plain WHERE id = 1;\n").expect("journal");
    server.b2m(&["merge", "ipm-db"]).fails(1, "plain");
    assert_eq!(bucket.keys(), keys);
    // No journal: said so.
    std::fs::remove_file(server.db("ipm-db-v1.sql")).expect("rm");
    server.b2m(&["merge", "ipm-db"]).fails(1, "no journal");
    // Nothing to merge.
    let clean = Project::new(&bucket);
    clean.b2m(&["fetch-db-toml"]).ok();
    clean.b2m(&["download", "ipm-db"]).ok();
    clean.b2m(&["merge", "ipm-db"]).fails(1, "nothing to merge");
}
