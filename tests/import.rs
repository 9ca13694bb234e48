//! `b2m import`: a project and bucket of the original b2m (HexmosTech/FreeDevTools, `b2-manager/`)
//! moved into b2m's layout. Each test builds the original's bucket byte for byte as the original's
//! Go code writes it (see [`Original`]), on both stores: the local folder and S3 (s3s-fs).

use std::collections::BTreeMap;

use crate::common::*;

/// The original's `discord` in these tests: a port nobody listens on (an announcement is a warning).
const HOOK: &str = "http://127.0.0.1:9/discord-hook";

/// The original b2m's bucket, written as its code writes it under its `rootbucket` (here the test
/// bucket's root):
///
/// - a database: `core/rclone.go` `UploadDatabase` runs `rclone copy db/all_dbs/<file>.db
///   <rootbucket>`, so the file's bytes are the object `<root>/<file>.db`;
/// - its metadata: `core/metadata.go` `UploadMetadata` writes `json.MarshalIndent(meta, "", "  ")`
///   to `<root>/version/<file without .db>.metadata.json` (`rclone copyto`), where `model/types.go`
///   has `type Metadata struct { FileID string `json:"file_id"`; Hash string `json:"hash"`;
///   Timestamp int64 `json:"timestamp"`; SizeBytes int64 `json:"size_bytes"`; Uploader string
///   `json:"uploader"`; Hostname string `json:"hostname"`; Platform string `json:"platform"`;
///   ToolVersion string `json:"tool_version"`; UploadDurationSec float64
///   `json:"upload_duration_sec"`; Datetime string `json:"datetime"`; Status string
///   `json:"status"`; Events []MetaEvent `json:"events"` }` and `type MetaEvent struct {
///   SequenceID int `json:"sequence_id"`; Datetime string `json:"datetime"`; Timestamp int64
///   `json:"timestamp"`; Hash string `json:"hash"`; SizeBytes int64 `json:"size_bytes"`; Uploader
///   string `json:"uploader"`; Hostname string `json:"hostname"`; Platform string
///   `json:"platform"`; ToolVersion string `json:"tool_version"`; UploadDurationSec float64
///   `json:"upload_duration_sec"`; Status string `json:"status"` }`; `AppendEventToMetadata`
///   appends one event per upload (`sequence_id` = count + 1) and the top-level fields are the
///   last upload's (`datetime` and `timestamp` are the file's modification time);
/// - a lock: `core/helpers.go` `LockDatabase` copies a file holding the intent (`upload-flow`) to
///   `<root>/lock/` + `fmt.Sprintf("%s.%s.%s.lock", dbName, owner, host)`;
/// - the project's `b2m.toml`: `config/config.go` reads `rootbucket` (`toml:"rootbucket"`, an
///   rclone remote such as `b2:bucket/path/`, or a folder) and `discord` (`toml:"discord"`).
struct Original<'a> {
    bucket: &'a Bucket,
}

/// One upload of the original: who, on which host, when (the file's modification time).
struct Upload {
    user: &'static str,
    host: &'static str,
    datetime: &'static str,
    timestamp: i64,
}

const ALICE: Upload = Upload { user: "alice", host: "laptop", datetime: "2026-01-28 10:00:00 UTC", timestamp: 1769594400 };
const BOB: Upload = Upload { user: "bob", host: "desk", datetime: "2026-01-29 11:30:00 UTC", timestamp: 1769686200 };

impl Original<'_> {
    fn put(&self, key: &str, bytes: &[u8]) {
        let path = self.bucket.object_path(key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
        std::fs::write(path, bytes).expect("object");
    }

    /// A database of `rows` rows, uploaded as `file`; its bytes.
    fn db(&self, file: &str, rows: i64) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(file);
        let conn = rusqlite::Connection::open(&path).expect("db");
        conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);").expect("schema");
        for i in 0..rows {
            conn.execute("INSERT INTO t(v) VALUES (?1)", [format!("{file} row {i}")]).expect("insert");
        }
        drop(conn);
        let bytes = std::fs::read(&path).expect("bytes");
        self.put(file, &bytes);
        bytes
    }

    /// The metadata of `file` after `uploads`, as `UploadMetadata` marshals it.
    fn metadata(&self, file: &str, uploads: &[Upload]) {
        let size = std::fs::metadata(self.bucket.object_path(file)).map(|m| m.len()).unwrap_or(0);
        let event = |i: usize, u: &Upload| {
            serde_json::json!({
                "sequence_id": i + 1, "datetime": u.datetime, "timestamp": u.timestamp, "hash": format!("{:016x}", i + 7),
                "size_bytes": size, "uploader": u.user, "hostname": u.host, "platform": "linux", "tool_version": "v1.0",
                "upload_duration_sec": 2.5, "status": "success"
            })
        };
        let last = uploads.last().expect("an upload");
        let meta = serde_json::json!({
            "file_id": file.trim_end_matches(".db"), "hash": format!("{:016x}", uploads.len() + 6), "timestamp": last.timestamp,
            "size_bytes": size, "uploader": last.user, "hostname": last.host, "platform": "linux", "tool_version": "v1.0",
            "upload_duration_sec": 2.5, "datetime": last.datetime, "status": "success",
            "events": uploads.iter().enumerate().map(|(i, u)| event(i, u)).collect::<Vec<_>>()
        });
        let key = format!("version/{}.metadata.json", file.trim_end_matches(".db"));
        self.put(&key, serde_json::to_string_pretty(&meta).expect("json").as_bytes());
    }

    /// `user` on `host` holds the lock on `file`.
    fn lock(&self, file: &str, user: &str, host: &str) {
        self.put(&format!("lock/{file}.{user}.{host}.lock"), b"upload-flow");
    }

    /// Every object of the original's (b2m's folder `b2m/` aside), with its bytes.
    fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        self.bucket
            .keys()
            .into_iter()
            .filter(|k| !k.starts_with("b2m/"))
            .map(|k| (k.clone(), self.bucket.read(&k).expect("object")))
            .collect()
    }
}

/// The original's `rootbucket` for the test bucket: an rclone remote on S3, a folder otherwise.
fn rootbucket(bucket: &Bucket) -> String {
    match bucket.backend {
        Backend::S3 => format!("b2:{BUCKET}/{PREFIX}/"),
        Backend::Local => format!("{}/", bucket.object_path("").display().to_string().trim_end_matches('/')),
    }
}

/// b2m's bucket after the import: the folder `b2m` beside the original's objects.
fn b2m_url(bucket: &Bucket) -> String {
    format!("{}/b2m", bucket.url())
}

/// A project of the original b2m: its `b2m.toml` (with `extra` lines), db folder and db.toml.
fn original_project<'a>(bucket: &'a Bucket, extra: &str) -> (Project, Original<'a>) {
    let p = Project::new(bucket);
    let config =
        format!("# the team's settings\nrootbucket = \"{}\" # where the dbs live\ndiscord = \"{HOOK}\"\n{extra}", rootbucket(bucket));
    std::fs::write(p.path().join("b2m.toml"), config).expect("b2m.toml");
    (p, Original { bucket })
}

fn config_text(p: &Project) -> String {
    std::fs::read_to_string(p.path().join("b2m.toml")).expect("b2m.toml")
}

/// `b2m import` (with the S3 server's endpoint: rclone's settings are not read).
fn import(p: &Project, bucket: &Bucket, args: &[&str]) -> Run {
    let endpoint = bucket.endpoint();
    let mut all = vec!["import"];
    if let Some(endpoint) = endpoint.as_deref() {
        all.extend(["--endpoint", endpoint, "--region", "us-west-004"]);
    }
    all.extend(args);
    p.b2m(&all)
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", run.stdout, run.stderr))
}

/// The import's row for the original file `from`.
#[track_caller]
fn row<'a>(report: &'a serde_json::Value, from: &str) -> &'a serde_json::Value {
    report["dbs"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["from"] == from))
        .unwrap_or_else(|| panic!("no row for {from}: {report:#}"))
}

/// b2m's db.toml in the bucket after the import.
fn b2m_manifest(bucket: &Bucket) -> String {
    String::from_utf8(bucket.read("b2m/db.toml").expect("b2m's db.toml")).expect("utf8")
}

both_backends!(a_held_original_lock_refuses_naming_whose_and_changes_nothing, |backend| {
    let bucket = Bucket::new(backend);
    let (p, original) = original_project(&bucket, "");
    original.db("ipm-db-v2.db", 3);
    original.metadata("ipm-db-v2.db", &[ALICE]);
    original.lock("ipm-db-v2.db", "alice", "laptop");
    let (keys, config, manifest) = (bucket.keys(), config_text(&p), p.manifest_text());
    let run = import(&p, &bucket, &["--json"]);
    run.fails(1, "the original b2m's lock on `ipm-db-v2.db` is held by `alice` on `laptop`");
    assert!(run.stderr.contains("lock/ipm-db-v2.db.alice.laptop.lock") && run.stderr.contains("run `b2m import` again"), "{}", run.stderr);
    assert_eq!(json(&run)["error"]["kind"], "lease_held");
    assert_eq!(bucket.keys(), keys, "the bucket changed");
    assert_eq!((config_text(&p), p.manifest_text()), (config, manifest), "a local file changed");
    assert!(!p.path().join("b2m.toml.orig").exists());
});

both_backends!(the_original_s_events_become_the_version_s_history, |backend| {
    let bucket = Bucket::new(backend);
    let (p, original) = original_project(&bucket, "");
    original.db("ipm-db-v2.db", 3);
    original.metadata("ipm-db-v2.db", &[ALICE, BOB]);
    let report = json(import(&p, &bucket, &["--json"]).ok());
    let imported = row(&report, "ipm-db-v2.db");
    assert_eq!(
        (imported["outcome"].as_str(), imported["version"].as_u64(), imported["events"].as_u64()),
        (Some("imported"), Some(2), Some(2))
    );
    let history = json(p.b2m(&["history", "ipm-db", "--json"]).ok());
    let v2 = &history["versions"][0];
    assert_eq!((v2["version"].as_u64(), v2["made_by"].as_str()), (Some(2), Some("import")), "{history:#}");
    // Made when and by whom the original's last upload says.
    assert_eq!((v2["created_by"].as_str(), v2["created_at"].as_str()), (Some("bob@desk"), Some("2026-01-29T11:30:00Z")), "{v2:#}");
    let events = v2["imported"]["events"].as_array().expect("events");
    let who: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| (e["uploader"].as_str().unwrap_or(""), e["hostname"].as_str().unwrap_or(""), e["datetime"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(who, vec![("alice", "laptop", ALICE.datetime), ("bob", "desk", BOB.datetime)]);
    assert_eq!(v2["imported"]["from"], "ipm-db-v2.db");
    let table = p.b2m(&["history", "ipm-db"]);
    table.ok();
    for says in [
        "imported from the original b2m's `ipm-db-v2.db`",
        "#1 2026-01-28 10:00:00 UTC alice@laptop success",
        "#2 2026-01-29 11:30:00 UTC bob@desk",
    ] {
        assert!(table.stdout.contains(says), "{says:?} missing:\n{}", table.stdout);
    }
});

both_backends!(a_db_with_no_metadata_and_no_version_is_imported_as_v1_with_notes, |backend| {
    let bucket = Bucket::new(backend);
    let (p, original) = original_project(&bucket, "");
    original.db("banner-db.db", 2);
    let report = json(import(&p, &bucket, &["--json"]).ok());
    let banner = row(&report, "banner-db.db");
    assert_eq!(
        (banner["name"].as_str(), banner["version"].as_u64(), banner["outcome"].as_str()),
        (Some("banner-db"), Some(1), Some("imported"))
    );
    let notes = banner["notes"].to_string();
    assert!(notes.contains("no metadata for `banner-db.db`") && notes.contains("carries no version"), "{notes}");
    assert!(b2m_manifest(&bucket).contains("\"banner-db-v1.db\""), "{}", b2m_manifest(&bucket));
    let history = json(p.b2m(&["history", "banner-db", "--json"]).ok());
    let v1 = &history["versions"][0];
    assert_eq!(v1["imported"]["events"].as_array().map(Vec::len), Some(0), "{v1:#}");
    assert!(v1["imported"]["notes"].to_string().contains("no metadata"), "{v1:#}");
});

both_backends!(a_second_run_publishes_nothing_again, |backend| {
    let bucket = Bucket::new(backend);
    let (p, original) = original_project(&bucket, "");
    original.db("ipm-db-v1.db", 1);
    original.metadata("ipm-db-v1.db", &[ALICE]);
    let v2 = original.db("ipm-db-v2.db", 2);
    original.metadata("ipm-db-v2.db", &[ALICE, BOB]);
    original.db("emoji-db_v3.db", 1);
    std::fs::write(p.db("ipm-db-v2.db"), &v2).expect("local copy");
    p.add_entry("ipmdb", "ipm-db-v2.db");
    import(&p, &bucket, &[]).ok();
    let (keys, manifest, config, local) = (bucket.keys(), b2m_manifest(&bucket), config_text(&p), p.manifest_text());
    let again = import(&p, &bucket, &["--json"]);
    let report = json(again.ok());
    for from in ["ipm-db-v1.db", "ipm-db-v2.db", "emoji-db_v3.db"] {
        assert_eq!(row(&report, from)["outcome"], "already_imported", "{report:#}");
    }
    assert_eq!(report["config"]["translated"], false);
    assert_eq!(bucket.keys(), keys, "a second run wrote to the bucket");
    assert_eq!(b2m_manifest(&bucket), manifest);
    assert_eq!((config_text(&p), p.manifest_text()), (config, local));
    assert_eq!(p.status_of("ipm-db"), "up_to_date");
});

both_backends!(an_underscore_name_is_that_version_and_the_local_copy_ends_up_to_date, |backend| {
    let bucket = Bucket::new(backend);
    let (p, original) = original_project(&bucket, "");
    let bytes = original.db("ipm-db_v2.db", 3);
    original.metadata("ipm-db_v2.db", &[ALICE]);
    std::fs::write(p.db("ipm-db_v2.db"), &bytes).expect("local copy");
    p.add_entry("ipmdb", "ipm-db_v2.db");
    let report = json(import(&p, &bucket, &["--json"]).ok());
    let ipm = row(&report, "ipm-db_v2.db");
    assert_eq!((ipm["name"].as_str(), ipm["version"].as_u64(), ipm["file"].as_str()), (Some("ipm-db"), Some(2), Some("ipm-db-v2.db")));
    let object = pinned_object(&b2m_manifest(&bucket), "ipm-db").expect("pinned");
    assert!(object.starts_with("dbs/ipm-db/ipm-db-v2."), "{object}");
    assert_eq!(p.files(), vec!["db.toml".to_string(), "ipm-db-v2.db".into()]);
    let local = p.manifest_text();
    assert!(local.contains("ipmdb = \"ipm-db-v2.db\"") && local.contains("[b2m.sha256]"), "{local}");
    assert_eq!(report["local"][0]["outcome"], "up_to_date", "{report:#}");
    assert_eq!(p.status_of("ipm-db"), "up_to_date");
});

both_backends!(two_names_for_one_version_are_refused_naming_what_to_rename, |backend| {
    let bucket = Bucket::new(backend);
    let (p, original) = original_project(&bucket, "");
    original.db("ipm-db-v2.db", 1);
    original.db("ipm-db_v2.db", 2);
    original.db("my db.db", 1);
    let (keys, config) = (bucket.keys(), config_text(&p));
    let run = import(&p, &bucket, &[]);
    run.fails(1, "`ipm-db-v2.db` and `ipm-db_v2.db` are both `ipm-db` v2: rename `ipm-db_v2.db` to `ipm-db-v3.db`");
    assert!(
        run.stderr.contains("`my db.db` is not a name b2m can take") && run.stderr.contains("rename it to `my-db-v1.db`"),
        "{}",
        run.stderr
    );
    assert_eq!(bucket.keys(), keys, "the bucket changed");
    assert_eq!(config_text(&p), config);
});

both_backends!(original_objects_are_byte_identical_after_import, |backend| {
    let bucket = Bucket::new(backend);
    let (p, original) = original_project(&bucket, "");
    original.db("ipm-db-v1.db", 2);
    original.metadata("ipm-db-v1.db", &[ALICE]);
    original.db("emoji-db.db", 1);
    original.put("db.toml", b"[db]\nipmdb = \"ipm-db-v1.db\"\nemojidb = \"emoji-db.db\"\n");
    let before = original.objects();
    import(&p, &bucket, &[]).ok();
    assert_eq!(original.objects(), before, "an original object was written, renamed or removed");
    assert!(bucket.keys().iter().any(|k| k == "b2m/db.toml"), "{:?}", bucket.keys());
    // The original bucket's db.toml gave the keys.
    let manifest = b2m_manifest(&bucket);
    assert!(manifest.contains("ipmdb = \"ipm-db-v1.db\"") && manifest.contains("emojidb = \"emoji-db-v1.db\""), "{manifest}");
});

both_backends!(the_config_is_translated_and_the_original_kept, |backend| {
    let bucket = Bucket::new(backend);
    let extra = "rclone_config = \"~/.config/rclone/rclone.conf\"\n\n[server]\n# restart the site\nstop = \"true\"\nstart = \"true\"\n";
    let (p, original) = original_project(&bucket, extra);
    original.db("ipm-db-v1.db", 1);
    let before = config_text(&p);
    let report = json(import(&p, &bucket, &["--json"]).ok());
    assert_eq!(report["config"]["commented_out"], serde_json::json!(["rclone_config"]), "{report:#}");
    assert_eq!(std::fs::read_to_string(p.path().join("b2m.toml.orig")).expect("kept"), before);
    let after = config_text(&p);
    let parsed: toml_edit::DocumentMut = after.parse().expect("TOML");
    assert_eq!(parsed["remote"]["url"].as_str(), Some(b2m_url(&bucket).as_str()), "{after}");
    assert_eq!(parsed["notify"]["webhook"].as_str(), Some(HOOK), "{after}");
    for kept in ["# where the dbs live", "# rclone_config = \"~/.config/rclone/rclone.conf\"", "# restart the site\nstop = \"true\""] {
        assert!(after.contains(kept), "{kept:?} missing:\n{after}");
    }
    assert!(parsed.get("rootbucket").is_none() && parsed.get("rclone_config").is_none(), "{after}");
    p.b2m(&["status"]).ok();
    // A table b2m does not know (a misspelt one) is an error naming it, before anything is written.
    let (q, _) = original_project(&bucket, "[prefligh]\nallow_offline = true\n");
    let before = config_text(&q);
    import(&q, &bucket, &[]).fails(2, "b2m does not know `prefligh`");
    assert_eq!(config_text(&q), before);
    assert!(!q.path().join("b2m.toml.orig").exists());
});

both_backends!(a_non_sqlite_object_fails_alone, |backend| {
    let bucket = Bucket::new(backend);
    let (p, original) = original_project(&bucket, "");
    original.put("notes-db-v1.db", b"these are notes, not a database; they only end in .db\n");
    original.db("ipm-db-v1.db", 2);
    let run = import(&p, &bucket, &["--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let report = json(&run);
    let notes = row(&report, "notes-db-v1.db");
    assert_eq!(notes["outcome"], "failed");
    assert!(notes["error"].as_str().is_some_and(|e| e.contains("notes-db-v1.db` is not a usable SQLite database")), "{notes:#}");
    assert_eq!(row(&report, "ipm-db-v1.db")["outcome"], "imported");
    let failures: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("not imported:")).collect();
    assert_eq!(failures.len(), 1, "{}", run.stderr);
    let manifest = b2m_manifest(&bucket);
    assert!(manifest.contains("ipm-db-v1.db") && !manifest.contains("notes-db"), "{manifest}");
});

both_backends!(a_crash_after_the_commit_leaves_a_differing_local_file_alone, |backend| {
    let bucket = Bucket::new(backend);
    let (p, original) = original_project(&bucket, "");
    original.db("ipm-db-v2.db", 2);
    // The server's own copy took rows the original bucket never got.
    p.create_db("ipmdb", "ipm-db-v2.db", 5);
    let local = std::fs::read(p.db("ipm-db-v2.db")).expect("local db");
    let endpoint = bucket.endpoint();
    let mut args = vec!["import"];
    if let Some(endpoint) = endpoint.as_deref() {
        args.extend(["--endpoint", endpoint, "--region", "us-west-004"]);
    }
    let crashed = p.b2m_env(&args, &[("B2M_FAILPOINT", "import-after-commit")]);
    assert_ne!(crashed.code, 0, "the failpoint did not fire: {crashed:?}");
    assert!(pinned_object(&b2m_manifest(&bucket), "ipm-db").is_some(), "the commit did not land");
    // The next command finishes nothing on the import's behalf: the local rows stay.
    assert_eq!(p.status_of("ipm-db"), "conflict");
    assert_eq!(std::fs::read(p.db("ipm-db-v2.db")).expect("local db"), local, "the local file was replaced");
    let report = json(import(&p, &bucket, &["--json"]).ok());
    assert_eq!(row(&report, "ipm-db-v2.db")["outcome"], "already_imported");
    assert_eq!(report["local"][0]["outcome"], "left_as_it_was", "{report:#}");
    assert_eq!(std::fs::read(p.db("ipm-db-v2.db")).expect("local db"), local);
});

both_backends!(a_later_run_imports_what_the_original_gained_and_refuses_what_it_changed, |backend| {
    let bucket = Bucket::new(backend);
    let (p, original) = original_project(&bucket, "");
    original.db("ipm-db-v1.db", 1);
    original.db("emoji-db-v1.db", 1);
    import(&p, &bucket, &[]).ok();
    let emoji_before = pinned_object(&b2m_manifest(&bucket), "emoji-db");
    // Teammates still on the original b2m: one bumps ipm-db, one uploads emoji-db-v1.db again with new rows.
    original.db("ipm-db-v2.db", 2);
    original.db("emoji-db-v1.db", 4);
    let run = import(&p, &bucket, &["--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let report = json(&run);
    assert_eq!(row(&report, "ipm-db-v1.db")["outcome"], "already_imported");
    let v2 = row(&report, "ipm-db-v2.db");
    assert_eq!((v2["outcome"].as_str(), v2["parent"].as_u64()), (Some("imported"), Some(1)), "{v2:#}");
    let emoji = row(&report, "emoji-db-v1.db");
    assert_eq!(emoji["outcome"], "failed");
    assert!(emoji["error"].as_str().is_some_and(|e| e.contains("differs from b2m's `emoji-db` v1")), "{emoji:#}");
    assert_eq!(pinned_object(&b2m_manifest(&bucket), "emoji-db"), emoji_before, "emoji-db's pin moved");
    let history = json(p.b2m(&["history", "ipm-db", "--json"]).ok());
    let chain: Vec<(Option<u64>, Option<u64>)> =
        history["versions"].as_array().expect("versions").iter().map(|v| (v["version"].as_u64(), v["parent"].as_u64())).collect();
    assert_eq!(chain, vec![(Some(2), Some(1)), (Some(1), None)], "{history:#}");
});

both_backends!(a_version_b2m_has_without_its_metadata_is_not_sent_again, |backend| {
    let bucket = Bucket::new(backend);
    let (p, original) = original_project(&bucket, "");
    original.db("ipm-db-v1.db", 1);
    import(&p, &bucket, &[]).ok();
    let object = format!("b2m/{}", pinned_object(&b2m_manifest(&bucket), "ipm-db").expect("pinned"));
    std::fs::remove_file(bucket.object_path(&meta_key_of(&object))).expect("metadata removed");
    let keys = bucket.keys();
    let report = json(import(&p, &bucket, &["--json"]).ok());
    let v1 = row(&report, "ipm-db-v1.db");
    assert_eq!(v1["outcome"], "skipped", "{v1:#}");
    assert!(v1["error"].as_str().is_some_and(|e| e.contains("its history has no v1")), "{v1:#}");
    assert_eq!(bucket.keys(), keys, "something was sent again");
});
