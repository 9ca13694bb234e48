//! The sync engine end to end: status, upload, download, on the local-folder store and on a real
//! S3 server.

use crate::common::*;

both_backends!(whole_flow_from_new_local_to_second_version, |backend| {
    let bucket = Bucket::new(backend);
    let dev = Project::new(&bucket);
    dev.create_db("ipmdb", "ipm-db-v1.db", 3);
    assert_eq!(dev.status_of("ipm-db"), "new_local");

    dev.b2m(&["upload", "ipm-db"]).ok();
    assert_eq!(dev.status_of("ipm-db"), "up_to_date");
    let v1 = bucket.current_object("ipm-db");
    assert!(v1.starts_with("dbs/ipm-db/ipm-db-v1.") && v1.ends_with(".db"), "{v1}");
    // Stored as pages: its recipe and one pack (a base), the metadata, and FORMAT.md.
    let keys = bucket.keys();
    let packs = keys.iter().filter(|k| k.starts_with("dbs/ipm-db/packs/") && k.ends_with(".pack")).count();
    assert_eq!((keys.len(), packs), (5, 1), "{keys:?}");
    for key in ["FORMAT.md".to_string(), "db.toml".to_string(), recipe_key_of(&v1), meta_key_of(&v1)] {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    let meta = bucket.current_meta("ipm-db");
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["parent"], serde_json::Value::Null);
    assert_eq!(meta["made_by"], "upload");
    assert_eq!(meta["recipe"].as_str(), Some(recipe_key_of(&v1).as_str()), "the metadata names the recipe");
    let object = bucket.version_bytes(&v1).expect("object");
    assert_eq!(meta["size"].as_u64(), Some(object.len() as u64));
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(&object));
    assert_eq!(meta["sha256"].as_str(), Some(sha.as_str()));
    assert!(v1.contains(&sha), "the key names the bytes: {v1}");
    assert_eq!(meta["content_sha256"], meta["sha256"], "a published object's header is canonical: its sha256 is its content hash");
    assert!(meta["created_by"].as_str().is_some_and(|s| s.contains('@')));
    assert!(bucket.manifest().contains(&format!("[b2m.sha256]\nipmdb = \"{sha}\"")), "{}", bucket.manifest());
    assert!(dev.manifest_text().contains(&format!("ipmdb = \"{sha}\"")), "the local db.toml pins it too: {}", dev.manifest_text());

    // Another folder fetches.
    let server = Project::new(&bucket);
    server.b2m(&["fetch-db-toml"]).ok();
    assert!(server.manifest_text().contains("ipmdb = \"ipm-db-v1.db\""));
    assert_eq!(server.status_of("ipm-db"), "missing_local");
    server.b2m(&["download", "ipm-db"]).ok();
    assert_eq!(server.status_of("ipm-db"), "up_to_date");
    assert_eq!(server.rows("ipm-db-v1.db"), vec!["row 0", "row 1", "row 2"]);

    // New data on the developer's side.
    dev.insert("ipm-db-v1.db", "new row");
    assert_eq!(dev.status_of("ipm-db"), "ready_to_upload");
    dev.b2m(&["upload", "ipmdb"]).ok();
    assert_eq!(dev.files(), vec!["db.toml", "ipm-db-v2.db"], "the file takes the new version's name");
    let text = dev.manifest_text();
    assert!(text.contains("ipmdb = \"ipm-db-v2.db\""), "{text}");
    assert!(text.starts_with("# the server reads this\n"), "comments kept: {text}");
    assert!(text.contains("path = \"/frontend/db/all_dbs/\" # where they live"), "{text}");
    assert_eq!(dev.status_of("ipm-db"), "up_to_date");
    let bucket_manifest = bucket.manifest();
    assert!(bucket_manifest.contains("ipmdb = \"ipm-db-v2.db\""), "{bucket_manifest}");
    let meta = bucket.current_meta("ipm-db");
    assert_eq!((meta["version"].as_u64(), meta["parent"]["version"].as_u64()), (Some(2), Some(1)));
    assert_eq!(meta["parent"]["sha256"].as_str(), Some(sha.as_str()));

    // The server is behind, with no local changes; download brings it level.
    let row = server.status_row("ipm-db");
    assert_eq!(row["status"], "outdated_db");
    assert_eq!(row["local_changes"], false);
    assert_eq!((row["local_version"].as_u64(), row["remote_version"].as_u64()), (Some(1), Some(2)));
    server.b2m(&["download", "ipm-db-v1.db"]).ok();
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v2.db"], "old file removed after db.toml moved on");
    assert!(server.manifest_text().contains("ipmdb = \"ipm-db-v2.db\""));
    assert_eq!(server.rows("ipm-db-v2.db").last().map(String::as_str), Some("new row"));
    assert_eq!(server.status_of("ipm-db"), "up_to_date");
});

// The snapshot starts beside the judge: an upload that publishes nothing gives it up and leaves
// no copy behind.
both_backends!(an_upload_that_publishes_nothing_leaves_no_snapshot, |backend| {
    let bucket = Bucket::new(backend);
    let dev = Project::new(&bucket);
    dev.create_big_db("ipmdb", "ipm-db-v1.db", 16 * 256);
    dev.b2m(&["upload", "ipm-db"]).ok();
    let snapshots = || -> Vec<String> {
        let tmp = dev.path().join(".b2m").join("tmp");
        let names = std::fs::read_dir(tmp).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect());
        names.unwrap_or_default()
    };
    let run = dev.b2m(&["upload", "ipm-db"]);
    run.ok();
    assert!(run.stderr.contains("up to date; nothing to upload"), "{}", run.stderr);
    assert_eq!(snapshots(), Vec::<String>::new());

    let other = Project::new(&bucket);
    other.b2m(&["fetch-db-toml"]).ok();
    other.b2m(&["download", "ipm-db"]).ok();
    other.publish_row("ipm-db-v1.db", "other row");
    dev.insert("ipm-db-v1.db", "dev row");
    dev.b2m(&["upload", "ipm-db"]).fails(1, "outdated_db");
    assert_eq!(snapshots(), Vec::<String>::new());
    assert_eq!(bucket.version_objects("ipm-db").len(), 2, "nothing more was sent");
    assert_eq!(dev.rows("ipm-db-v1.db").last().map(String::as_str), Some("dev row"), "the local change is kept");
});

both_backends!(local_changes_block_a_download, |backend| {
    let bucket = Bucket::new(backend);
    let (dev, server) = published_pair(&bucket, 1);
    dev.publish_row("ipm-db-v1.db", "dev row");

    server.insert("ipm-db-v1.db", "server row");
    let row = server.status_row("ipm-db");
    assert_eq!((row["status"].as_str(), row["local_changes"].as_bool()), (Some("outdated_db"), Some(true)));
    let before = server.manifest_text();
    server.b2m(&["download", "ipm-db"]).fails(1, "local changes");
    assert_eq!(server.manifest_text(), before);
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v1.db"]);
    assert_eq!(server.rows("ipm-db-v1.db"), vec!["row 0", "server row"]);

    // --force keeps a backup first and says where.
    let run = server.b2m(&["download", "ipm-db", "--force"]);
    run.ok();
    assert!(run.stderr.contains(".b2m/backups/"), "{}", run.stderr);
    let backups: Vec<_> = std::fs::read_dir(server.path().join(".b2m/backups")).expect("backups").flatten().collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(rows_of(&backups[0].path()), vec!["row 0", "server row"]);
    assert_eq!(server.rows("ipm-db-v2.db"), vec!["row 0", "dev row"]);
});

both_backends!(an_upload_from_a_stale_base_is_refused_and_changes_nothing, |backend| {
    let bucket = Bucket::new(backend);
    let (a, b) = published_pair(&bucket, 1);
    a.publish_row("ipm-db-v1.db", "a");

    b.insert("ipm-db-v1.db", "b");
    let keys = bucket.keys();
    let manifest = bucket.read("db.toml");
    b.b2m(&["upload", "ipm-db"]).fails(1, "outdated_db");
    assert_eq!(bucket.keys(), keys);
    assert_eq!(bucket.read("db.toml"), manifest);
    assert_eq!(b.files(), vec!["db.toml", "ipm-db-v1.db"]);
    assert_eq!(b.status_of("ipm-db"), "outdated_db");
});

/// A version whose stored bytes are damaged (`pages`: a byte of its pack, whose frames then do
/// not decompress; else a byte of its `.db`, a bucket from before pages): the download fails
/// saying `error`, leaves no file, and the status is `conflict`, naming the version.
fn a_damaged_version_fails_the_download(backend: Backend, pages: bool, error: &str) {
    let bucket = Bucket::new(backend);
    let mut dev = Project::new(&bucket);
    if !pages {
        dev.env.push(("B2M_PAGES".into(), "0".into()));
    }
    dev.create_db("ipmdb", "ipm-db-v1.db", 50);
    dev.b2m(&["upload", "ipm-db"]).ok();
    let key = bucket.current_object("ipm-db");
    let damaged = bucket.version_storage(&key).into_iter().find(|k| k.ends_with(if pages { ".pack" } else { ".db" })).expect("stored");
    let object = bucket.object_path(&damaged);
    let mut bytes = std::fs::read(&object).expect("object");
    let at = bytes.len() - 100;
    bytes[at] ^= 0xff;
    std::fs::write(&object, bytes).expect("damage");

    let server = Project::new(&bucket);
    server.b2m(&["fetch-db-toml"]).ok();
    let before = server.manifest_text();
    server.b2m(&["download", "ipm-db"]).fails(1, error);
    assert_eq!(server.files(), vec!["db.toml"], "no partial or temp file left");
    assert_eq!(server.manifest_text(), before);
    let row = server.status_row("ipm-db");
    assert_eq!(row["status"], "conflict", "{row}");
    let named = if pages { key.trim_end_matches(".db") } else { key.as_str() };
    assert!(row["detail"].as_str().is_some_and(|d| d.contains(named)), "{row}");
}

both_backends!(a_corrupted_bucket_object_fails_the_download_and_leaves_no_file, |backend| {
    a_damaged_version_fails_the_download(backend, true, "conflict:");
});

both_backends!(a_corrupted_whole_object_fails_the_download_and_leaves_no_file, |backend| {
    a_damaged_version_fails_the_download(backend, false, "does not match its sha256");
});

both_backends!(rows_still_in_the_wal_are_in_the_published_object, |backend| {
    let bucket = Bucket::new(backend);
    let dev = Project::new(&bucket);
    dev.create_db("ipmdb", "ipm-db-v1.db", 0);
    // A server process keeps the db open; its rows are committed but still only in the -wal.
    let server = DbHolder::start(&dev.db("ipm-db-v1.db"), &["INSERT INTO t(v) VALUES ('in the wal')"], false);
    assert!(std::fs::metadata(dev.db("ipm-db-v1.db-wal")).expect("wal").len() > 32);
    assert_eq!(dev.status_of("ipm-db"), "new_local");
    // A first upload keeps the file's name: nothing is swapped under the server.
    dev.b2m(&["upload", "ipm-db"]).ok();
    let published = tempfile::tempdir().expect("dir");
    std::fs::write(published.path().join("x.db"), bucket.current_bytes("ipm-db")).expect("copy");
    assert_eq!(rows_of(&published.path().join("x.db")), vec!["in the wal"]);
    assert_eq!(dev.status_of("ipm-db"), "up_to_date");
    // More rows: the next version renames the file, which the server has open.
    drop(server);
    let server = DbHolder::start(&dev.db("ipm-db-v1.db"), &["INSERT INTO t(v) VALUES ('more in the wal')"], false);
    assert_eq!(dev.status_of("ipm-db"), "ready_to_upload");
    let keys = bucket.keys();
    dev.b2m(&["upload", "ipm-db"]).fails(1, &format!("pid {}", server.pid()));
    assert_eq!(bucket.keys(), keys, "refused before anything was sent");
    // With [server], b2m publishes, stops the server for the rename, and starts it again.
    dev.append_config(&server.server_config());
    let run = dev.b2m(&["upload", "ipm-db"]);
    run.ok();
    assert!(run.stderr.contains("stopping the server") && run.stderr.contains("starting the server"), "{}", run.stderr);
    assert_eq!(dev.files(), vec!["db.toml", "ipm-db-v2.db"]);
    assert_eq!(dev.rows("ipm-db-v2.db"), vec!["in the wal", "more in the wal"]);
    assert_eq!(dev.status_of("ipm-db"), "up_to_date", "a checkpoint by another process changes nothing logical");
});

both_backends!(a_fresh_copy_equal_to_the_bucket_is_adopted_without_state, |backend| {
    let bucket = Bucket::new(backend);
    let dev = Project::new(&bucket);
    dev.create_db("ipmdb", "ipm-db-v1.db", 2);
    dev.b2m(&["upload", "ipm-db"]).ok();
    // A server that got the file by hand (or lost .b2m/ in a crash).
    let server = Project::new(&bucket);
    server.b2m(&["fetch-db-toml"]).ok();
    std::fs::write(server.db("ipm-db-v1.db"), bucket.current_bytes("ipm-db")).expect("copy");
    assert_eq!(server.status_of("ipm-db"), "up_to_date");
    // A file that differs with no known base is a conflict.
    std::fs::remove_dir_all(dev.path().join(".b2m")).expect("drop state");
    dev.insert("ipm-db-v1.db", "x");
    assert_eq!(dev.status_of("ipm-db"), "conflict");
    dev.b2m(&["upload", "ipm-db"]).fails(1, "conflict");
});

#[test]
fn status_json_has_the_documented_shape() {
    let bucket = Bucket::new(Backend::Local);
    let dev = Project::new(&bucket);
    dev.create_db("ipmdb", "ipm-db-v1.db", 1);
    let s = dev.status();
    let row = &s["dbs"][0];
    for key in ["name", "key", "status", "local_version", "remote_version", "local_changes", "locked_by"] {
        assert!(row.get(key).is_some(), "missing {key}: {row}");
    }
    assert_eq!(row["name"], "ipm-db");
    assert_eq!(row["key"], "ipmdb");
    assert_eq!(row["local_version"], 1);
    assert_eq!(row["remote_version"], serde_json::Value::Null);
    let run = dev.b2m(&["status", "--exit-code"]);
    assert_eq!(run.code, 1, "not up to date");
    assert!(run.stdout.contains("new_local"));
    dev.b2m(&["upload", "ipm-db", "-q"]).ok();
    dev.b2m(&["status", "--exit-code"]).ok();
}

#[test]
fn the_seed_flag_spellings_still_work() {
    let bucket = Bucket::new(Backend::Local);
    let dev = Project::new(&bucket);
    dev.create_db("ipmdb", "ipm-db-v1.db", 1);
    dev.b2m(&["--upload", "ipm-db"]).ok();
    let run = dev.b2m(&["--json", "--status", "ipm-db"]);
    run.ok();
    assert!(run.stdout.contains("\"up_to_date\""));
    let server = Project::new(&bucket);
    server.b2m(&["--fetch-db-toml"]).ok();
    server.b2m(&["--download", "ipm-db"]).ok();
    assert_eq!(server.rows("ipm-db-v1.db"), vec!["row 0"]);
}

#[test]
fn a_first_upload_of_a_second_db_keeps_the_first_in_the_bucket_manifest() {
    let bucket = Bucket::new(Backend::Local);
    let dev = Project::new(&bucket);
    dev.create_db("ipmdb", "ipm-db-v1.db", 1);
    dev.create_db("emojidb", "emoji-db-v3.db", 1);
    dev.b2m(&["upload", "ipm-db"]).ok();
    let text = bucket.manifest();
    assert!(text.contains("ipmdb") && !text.contains("emojidb"), "only published dbs are named: {text}");
    assert_eq!(dev.status_of("emoji-db"), "new_local");
    dev.b2m(&["upload", "emoji-db"]).ok();
    let text = bucket.manifest();
    assert!(text.contains("ipmdb = \"ipm-db-v1.db\"") && text.contains("emojidb = \"emoji-db-v3.db\""), "{text}");
    assert!(bucket.current_object("emoji-db").starts_with("dbs/emoji-db/emoji-db-v3."), "a first upload keeps its version");
}

#[test]
fn fetch_db_toml_never_points_an_existing_db_at_a_file_that_is_not_here() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = published_pair(&bucket, 1);
    dev.publish_row("ipm-db-v1.db", "x");
    dev.create_db("emojidb", "emoji-db-v1.db", 1);
    dev.b2m(&["upload", "emoji-db"]).ok();

    let run = server.b2m(&["fetch-db-toml"]);
    run.ok();
    assert!(run.stderr.contains("run `b2m download ipm-db`"), "{}", run.stderr);
    let text = server.manifest_text();
    assert!(text.contains("ipmdb = \"ipm-db-v1.db\""), "the file it has: {text}");
    assert!(text.contains("emojidb = \"emoji-db-v1.db\""), "a db new to this server is added: {text}");
    assert!(text.contains("path = \"/frontend/db/all_dbs/\""), "the local path is kept: {text}");
    assert_eq!(server.status_of("ipm-db"), "outdated_db");
    assert_eq!(server.status_of("emoji-db"), "missing_local");
}

both_backends!(a_large_db_goes_up_in_parts_and_comes_back_identical, |backend| {
    let bucket = Bucket::new(backend);
    let mut dev = Project::new(&bucket);
    // Stored whole (as a bucket from before pages keeps it), so that the object is the file.
    dev.env.push(("B2M_PAGES".into(), "0".into()));
    // ~48 MiB: above the 32 MiB multipart threshold, so three 16 MiB parts go up concurrently.
    dev.create_big_db("bigdb", "big-db-v1.db", 12000);
    dev.b2m(&["upload", "big-db"]).ok();
    let object = bucket.read(&bucket.current_object("big-db")).expect("object");
    assert!(object.len() > 40 << 20, "{} bytes", object.len());
    let meta = bucket.current_meta("big-db");
    use sha2::Digest;
    assert_eq!(meta["sha256"].as_str(), Some(hex::encode(sha2::Sha256::digest(&object)).as_str()));
    let server = Project::new(&bucket);
    server.b2m(&["fetch-db-toml"]).ok();
    server.b2m(&["download", "big-db"]).ok();
    assert_eq!(std::fs::read(server.db("big-db-v1.db")).expect("downloaded"), object);
    assert_eq!(server.status_of("big-db"), "up_to_date");
});

#[test]
fn b2m_remote_overrides_the_configured_bucket_and_json_results_stand_alone() {
    let configured = Bucket::new(Backend::Local);
    let other = Bucket::new(Backend::Local);
    let dev = Project::new(&configured);
    dev.create_db("ipmdb", "ipm-db-v1.db", 1);
    let run = dev.b2m_env(&["upload", "ipm-db", "--json"], &[("B2M_REMOTE", &other.url())]);
    run.ok();
    let published: serde_json::Value = serde_json::from_str(&run.stdout).expect("the result alone on stdout");
    assert_eq!(
        (published["name"].as_str(), published["version"].as_u64(), published["uploaded"].as_bool()),
        (Some("ipm-db"), Some(1), Some(true))
    );
    assert!(configured.keys().is_empty(), "{:?}", configured.keys());
    assert_eq!(other.version_objects("ipm-db").len(), 1);
    let run = dev.b2m_env(&["download", "ipm-db", "--json"], &[("B2M_REMOTE", &other.url())]);
    run.ok();
    let fetched: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(fetched["bytes"], 0, "already up to date: {fetched}");
}
