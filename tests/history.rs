//! `b2m history`: every published version, newest first, from the parent chain.

use crate::common::*;

both_backends!(history_lists_every_published_version_newest_first, |backend| {
    let bucket = Bucket::new(backend);
    let (dev, server) = published_pair(&bucket, 1);
    dev.publish_row("ipm-db-v1.db", "second");
    dev.insert_row("ipm-db-v2.db", "CREATE TABLE extra(x)");
    dev.b2m(&["upload", "ipm-db"]).ok();
    // An upload that never committed leaves an orphan: not history.
    let orphan = format!("dbs/ipm-db/ipm-db-v4.{}.db", "ab".repeat(32));
    std::fs::write(bucket.object_path(&orphan), b"half").expect("orphan");
    let run = server.b2m(&["history", "ipm-db", "--json"]);
    run.ok();
    let history: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let versions: Vec<u64> = history["versions"].as_array().expect("versions").iter().filter_map(|v| v["version"].as_u64()).collect();
    assert_eq!(versions, vec![3, 2, 1]);
    assert_eq!(history["versions"][0]["current"], true);
    assert_eq!(history["versions"][0]["schema_changed"], true, "{history}");
    assert_eq!(history["versions"][1]["schema_changed"], false);
    assert_eq!(history["versions"][0]["parent"], 2);
    assert_eq!(history["versions"][2]["parent"], serde_json::Value::Null);
    assert_eq!(history["orphans"], 1);
    assert_eq!(history["complete"], true);
    let table = server.b2m(&["history", "ipmdb"]);
    table.ok();
    assert!(table.stdout.contains("v3 *") && table.stdout.contains("schema changed"), "{}", table.stdout);
    server.b2m(&["history", "nope"]).fails(2, "unknown database");
});

both_backends!(rollback_republishes_an_earlier_version_as_the_next_one, |backend| {
    let bucket = Bucket::new(backend);
    let (dev, server) = published_pair(&bucket, 1);
    dev.publish_row("ipm-db-v1.db", "second");
    dev.publish_row("ipm-db-v2.db", "bad data");
    // Back to v3's parent (v2): published as v4, same bytes as v2.
    let run = dev.b2m(&["rollback", "ipm-db", "--json"]);
    run.ok();
    let done: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!((done["from"].as_u64(), done["to"].as_u64(), done["version"].as_u64()), (Some(3), Some(2), Some(4)), "{done}");
    let meta = bucket.current_meta("ipm-db");
    assert_eq!(
        (meta["made_by"].as_str(), meta["rollback_to"].as_u64(), meta["parent"]["version"].as_u64()),
        (Some("rollback"), Some(2), Some(3))
    );
    let v4 = bucket.current_object("ipm-db");
    assert!(v4.starts_with("dbs/ipm-db/ipm-db-v4."), "{v4}");
    let v2_key = v4.replace("ipm-db-v4.", "ipm-db-v2.");
    assert_eq!(bucket.version_bytes(&v4), bucket.version_bytes(&v2_key), "the same bytes as v2");
    assert_eq!(dev.rows("ipm-db-v4.db"), vec!["row 0", "second"], "this machine followed");
    // Any server takes it at its next preflight; older versions stay in the history.
    server.b2m(&["preflight"]).ok();
    assert_eq!(server.rows("ipm-db-v4.db"), vec!["row 0", "second"]);
    dev.b2m(&["rollback", "ipm-db", "--to", "1"]).ok();
    assert_eq!(dev.rows("ipm-db-v5.db"), vec!["row 0"]);
    let history = server.b2m(&["history", "ipm-db", "--json"]);
    history.ok();
    let versions: serde_json::Value = serde_json::from_str(&history.stdout).expect("json");
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(5));
    // A version whose object (or the packs of its pages) is damaged is refused, and nothing is
    // published.
    let v3 = bucket.keys().into_iter().find(|k| k.starts_with("dbs/ipm-db/ipm-db-v3.") && k.ends_with(".json")).expect("v3");
    let v3 = format!("{}.db", v3.strip_suffix(".json").expect("metadata"));
    for key in bucket.version_storage(&v3).into_iter().filter(|k| !k.ends_with(".recipe")) {
        let mut bytes = bucket.read(&key).expect("v3");
        let at = bytes.len() - 10;
        bytes[at] ^= 0xff;
        std::fs::write(bucket.object_path(&key), bytes).expect("damage");
    }
    let keys = bucket.keys();
    let refused = dev.b2m(&["rollback", "ipm-db", "--to", "3"]);
    refused.fails(1, "");
    assert!(refused.stderr.contains("does not match its sha256") || refused.stderr.contains("damaged"), "{}", refused.stderr);
    assert_eq!(bucket.keys(), keys);
    dev.b2m(&["rollback", "ipm-db", "--to", "9"]).fails(2, "is not earlier");
});

both_backends!(gc_keep_removes_committed_versions_beyond_the_newest_n_and_old_working_folders, |backend| {
    let bucket = Bucket::new(backend);
    let (dev, _server) = published_pair(&bucket, 1);
    for (i, file) in ["ipm-db-v1.db", "ipm-db-v2.db", "ipm-db-v3.db"].iter().enumerate() {
        dev.publish_row(file, &format!("more {i}"));
    }
    assert_eq!(bucket.version_objects("ipm-db").len(), 4);
    // Without --keep every committed version stays.
    dev.b2m_env(&["gc"], &[("B2M_ORPHAN_AGE_SECS", "0")]).ok();
    assert_eq!(bucket.version_objects("ipm-db").len(), 4);
    let run = dev.b2m(&["gc", "--keep", "2", "--dry-run", "--json"]);
    run.ok();
    let listed: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(listed["removed"].as_array().map(Vec::len), Some(4), "v1 and v2, object and metadata: {listed}");
    assert_eq!(bucket.version_objects("ipm-db").len(), 4, "--dry-run changes nothing");
    dev.b2m(&["gc", "--keep", "2"]).ok();
    let left: Vec<String> = bucket.version_objects("ipm-db");
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().any(|k| k.contains("ipm-db-v4.")) && left.iter().any(|k| k.contains("ipm-db-v3.")), "{left:?}");
    // The trimmed history is whole: a later gc still collects orphans.
    let orphan = format!("dbs/ipm-db/ipm-db-v5.{}.db", "cd".repeat(32));
    std::fs::write(bucket.object_path(&orphan), b"half").expect("orphan");
    dev.b2m_env(&["gc"], &[("B2M_ORPHAN_AGE_SECS", "0")]).ok();
    assert!(!bucket.keys().contains(&orphan));
    dev.b2m(&["gc", "--keep", "1"]).ok();
    // The pinned one always stays, with whatever its pages are read from (the recipes of its
    // chain down to a base); the history is the pinned one alone.
    let metadata: Vec<String> =
        bucket.keys().into_iter().filter(|k| k.starts_with("dbs/ipm-db/ipm-db-v") && k.ends_with(".json")).collect();
    assert_eq!(metadata.len(), 1, "{metadata:?}");
    assert!(bucket.version_bytes(&bucket.current_object("ipm-db")).is_some(), "the pinned one rebuilds");
    assert_eq!(dev.status_of("ipm-db"), "up_to_date");
    dev.b2m(&["gc", "--keep", "0"]).fails(2, "0");
});

#[test]
fn gc_keep_removes_working_folders_beyond_the_newest_n() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 1);
    for phrase in ["one", "two", "three"] {
        let run = server.b2m(&["create-changeset", phrase, "--kind", "sql", "--json"]);
        run.ok();
        let created: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
        std::fs::write(created["path"].as_str().expect("path"), format!("-- b2m: db = ipm-db\nINSERT INTO t(v) VALUES ('{phrase}');\n"))
            .expect("script");
        server.b2m(&["execute-changeset", created["name"].as_str().expect("name")]).ok();
    }
    let folders = || std::fs::read_dir(server.path().join("changeset/dbs")).expect("dbs").count();
    assert_eq!(folders(), 6, "each run's working folder, and each replaced file's");
    server.b2m(&["gc", "--keep", "2"]).ok();
    assert_eq!(folders(), 2);
}

#[test]
fn the_fleet_view_shows_each_server_and_flags_one_left_behind() {
    let bucket = Bucket::new(Backend::Local);
    let dev = Project::new(&bucket);
    dev.create_db("ipmdb", "ipm-db-v1.db", 1);
    dev.b2m(&["upload", "ipm-db"]).ok();
    let servers: Vec<Project> = (0..3).map(|_| Project::new(&bucket)).collect();
    for (i, s) in servers.iter().enumerate() {
        s.append_config(&format!("[server]\nname = \"web-{i}\"\n"));
        s.b2m(&["preflight"]).ok();
    }
    // A no-op preflight the same day writes nothing more: one request.
    let again = servers[0].b2m(&["preflight", "--json"]);
    again.ok();
    assert!(again.stdout.contains("\"requests\": 1"), "{}", again.stdout);
    // A new version; two servers take it, one is left behind.
    dev.publish_row("ipm-db-v1.db", "x");
    servers[0].b2m(&["preflight"]).ok();
    servers[1].b2m(&["preflight"]).ok();
    let run = dev.b2m(&["fleet", "--json"]);
    run.ok();
    let fleet: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let rows = fleet.as_array().expect("servers");
    assert_eq!(rows.len(), 3, "{fleet}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["name"], format!("web-{i}"));
        let (version, behind) = if i < 2 { (2, 0) } else { (1, 1) };
        assert_eq!(row["dbs"][0]["version"], version, "{row}");
        assert_eq!(row["behind"][0][1], behind, "{row}");
    }
    let table = dev.b2m(&["fleet"]);
    assert!(table.stdout.contains("web-2") && table.stdout.contains("BEHIND 1"), "{}", table.stdout);
}

#[test]
fn a_replaced_file_is_kept_in_a_working_folder_until_gc() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = published_pair(&bucket, 1);
    server.insert_row("ipm-db-v1.db", "PRAGMA user_version = 7");
    dev.publish_row("ipm-db-v1.db", "x");
    server.b2m(&["download", "ipm-db", "--force"]).ok();
    let kept: Vec<std::path::PathBuf> = std::fs::read_dir(server.path().join("changeset/dbs"))
        .expect("dbs")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().ends_with("_replaced-ipm-db")))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(rows_of(&kept[0].join("ipm-db-v1.db")), vec!["row 0"], "the file from before the upgrade");
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v2.db"]);
    server.b2m(&["gc", "--keep", "1"]).ok();
    server.b2m(&["gc", "--keep", "1"]).ok();
}
