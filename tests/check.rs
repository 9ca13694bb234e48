//! `b2m check [--offline] [--deep]`, the CI check: db.toml, changeset scripts, the bucket's
//! db.toml, the pinned versions and the ledger agree. One drift per test, each asserted by its
//! level, its key and what the message tells the user to run.

use std::path::PathBuf;

use crate::common::*;
use serde_json::Value;

/// `b2m check --json` with `args`; the exit code and the parsed result.
fn check(p: &Project, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["check", "--json"];
    all.extend_from_slice(args);
    let run = p.b2m(&all);
    assert!(run.code == 0 || run.code == 1, "check itself failed: {run:?}");
    let checked: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run:?}"));
    assert_eq!(checked["ok"], run.code == 0, "`ok` agrees with the exit code: {checked}");
    (run.code, checked)
}

fn findings(checked: &Value) -> Vec<(String, String, String)> {
    checked["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_else(|| panic!("`{k}` in {f}")).to_string();
            (s("level"), s("key"), s("message"))
        })
        .collect()
}

/// The one finding of `level` about `key`; its message must contain every needle.
#[track_caller]
fn assert_finding(checked: &Value, level: &str, key: &str, needles: &[&str]) {
    let all = findings(checked);
    let matching: Vec<&(String, String, String)> = all.iter().filter(|(l, k, _)| l == level && k == key).collect();
    assert_eq!(matching.len(), 1, "expected one {level} about `{key}`: {checked:#}");
    for needle in needles {
        assert!(matching[0].2.contains(needle), "the {level} about `{key}` lacks {needle:?}: {}", matching[0].2);
    }
}

/// Passes with no finding at all.
#[track_caller]
fn assert_clean(p: &Project, args: &[&str]) {
    let (code, checked) = check(p, args);
    assert_eq!((code, findings(&checked)), (0, vec![]), "{checked:#}");
}

/// A SQL changeset on `ipm-db` made in `p`: its name and script path.
fn sql_changeset(p: &Project, phrase: &str) -> (String, PathBuf) {
    let run = p.b2m(&["create-changeset", phrase, "--kind", "sql", "--json"]);
    run.ok();
    let created: Value = serde_json::from_str(&run.stdout).expect("json");
    let path = PathBuf::from(created["path"].as_str().expect("path"));
    std::fs::write(&path, "-- b2m: db = ipm-db\nINSERT INTO t(v) VALUES ('x');\n").expect("script");
    (created["name"].as_str().expect("name").to_string(), path)
}

fn scripts_dir(p: &Project) -> PathBuf {
    p.path().join("changeset/scripts")
}

/// Replaces `"field": "old"` in the JSON object at `key` in the bucket.
fn edit_json(bucket: &Bucket, key: &str, field: &str, value: &str) {
    let path = bucket.object_path(key);
    let mut json: Value = serde_json::from_slice(&std::fs::read(&path).expect("object")).expect("json");
    json[field] = Value::from(value);
    std::fs::write(&path, serde_json::to_vec_pretty(&json).expect("json")).expect("write");
}

/// Bucket requests the command made, from `-v`'s last line.
fn requests(run: &Run) -> u64 {
    let at = run.stderr.rfind("requests=").unwrap_or_else(|| panic!("no request count in: {}", run.stderr));
    run.stderr[at + "requests=".len()..].split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).expect("a count")
}

both_backends!(a_consistent_project_passes_online_and_offline_in_few_requests, |backend| {
    let bucket = Bucket::new(backend);
    let (dev, _server) = published_pair(&bucket, 2);
    let (name, _) = sql_changeset(&dev, "add-row");
    dev.b2m(&["execute-changeset", &name]).ok();
    assert_clean(&dev, &[]);
    assert_clean(&dev, &["--offline"]);
    let (code, checked) = check(&dev, &[]);
    assert_eq!((code, checked["databases"].as_u64()), (0, Some(1)));
    let human = dev.b2m(&["check"]);
    human.ok();
    assert!(human.stdout.lines().last().is_some_and(|l| l.starts_with("ok ")), "{}", human.stdout);
    // GET db.toml, LIST dbs/ipm-db/, GET the pinned metadata, LIST changesets/, GET its one entry.
    let counted = dev.b2m(&["check", "-v"]);
    counted.ok();
    assert_eq!(requests(&counted), 5, "{}", counted.stderr);
    // --deep rebuilds the one pinned version besides, from the bucket alone (no page lent by the
    // local file, which would hide a damaged pack): v2's recipe, v1's (the chain down to its
    // base), and v2's pack, which holds every page of so small a db.
    let deep = dev.b2m(&["check", "--deep", "-v"]);
    deep.ok();
    assert_eq!(requests(&deep), 8, "{}", deep.stderr);
    dev.b2m(&["check", "--offline", "--deep"]).fails(2, "cannot be used with");
});

#[test]
fn a_local_pin_that_diverged_from_the_bucket_fails() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = published_pair(&bucket, 1);
    dev.publish_row("ipm-db-v1.db", "new");
    let pin = pinned_object(&dev.manifest_text(), "ipm-db").expect("pinned");
    let sha = pin.rsplit('.').nth(1).expect("sha in the key").to_string();
    // A db.toml pinning a v2 the bucket never committed (another bucket's, or a lost branch's).
    std::fs::write(dev.manifest(), dev.manifest_text().replace(&sha, &"ab".repeat(32))).expect("db.toml");
    let (code, checked) = check(&dev, &[]);
    assert_eq!(code, 1);
    assert_finding(&checked, "error", "ipmdb", &["diverged", "`b2m fetch-db-toml`"]);
    dev.b2m(&["check", "--offline"]).ok(); // offline cannot see it
    dev.b2m(&["fetch-db-toml"]).ok();
    assert_clean(&dev, &[]);
    // A database named in one db.toml and not the other.
    dev.create_db("emojidb", "emoji-db-v1.db", 1);
    let (code, checked) = check(&dev, &[]);
    assert_eq!(code, 1);
    assert_finding(&checked, "error", "emojidb", &["`b2m upload emoji-db`"]);
    dev.b2m(&["upload", "emoji-db"]).ok();
    assert_clean(&dev, &[]);
    server.b2m(&["fetch-db-toml"]).ok();
    let text = server.manifest_text();
    let without: String = text.lines().filter(|l| !l.starts_with("emojidb")).map(|l| format!("{l}\n")).collect();
    std::fs::write(server.manifest(), without).expect("db.toml");
    let (code, checked) = check(&server, &[]);
    assert_eq!(code, 1);
    assert_finding(&checked, "error", "emojidb", &["does not name", "`b2m fetch-db-toml`"]);
}

both_backends!(a_local_pin_behind_the_bucket_only_warns, |backend| {
    let bucket = Bucket::new(backend);
    let (dev, server) = published_pair(&bucket, 1);
    for (file, row) in [("ipm-db-v1.db", "for v2"), ("ipm-db-v2.db", "for v3")] {
        dev.publish_row(file, row);
    }
    assert!(bucket.current_object("ipm-db").contains("-v3."));
    // The server pins v1, two versions back along the parent chain.
    let (code, checked) = check(&server, &[]);
    assert_eq!(code, 0, "{checked:#}");
    assert_finding(&checked, "warning", "ipmdb", &["behind the bucket's v3", "`b2m fetch-db-toml`"]);
    assert_eq!(findings(&checked).len(), 1, "{checked:#}");
    server.b2m(&["fetch-db-toml"]).ok();
    server.b2m(&["download", "ipm-db"]).ok();
    assert_clean(&server, &[]);
});

#[test]
fn a_pinned_object_deleted_from_the_bucket_fails() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, _server) = published_pair(&bucket, 1);
    let object = bucket.current_object("ipm-db");
    let recipe = recipe_key_of(&object);
    std::fs::remove_file(bucket.object_path(&recipe)).expect("delete");
    let (code, checked) = check(&dev, &[]);
    assert_eq!(code, 1);
    // Named as the metadata says the version was stored: as pages.
    assert_finding(&checked, "error", "ipmdb", &["its recipe", &recipe, "missing", "`b2m status`"]);
    assert_eq!(check(&dev, &["--deep"]).0, 1, "--deep does not trip over the missing object");
    assert_eq!(check(&dev, &["--offline"]).0, 0);
}

#[test]
fn pinned_metadata_deleted_or_edited_fails() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, _server) = published_pair(&bucket, 1);
    let meta = meta_key_of(&bucket.current_object("ipm-db"));
    let original = bucket.read(&meta).expect("metadata");
    std::fs::remove_file(bucket.object_path(&meta)).expect("delete");
    let (code, checked) = check(&dev, &[]);
    assert_eq!(code, 1);
    assert_finding(&checked, "error", "ipmdb", &[&meta, "missing"]);
    // Back, but with another sha256 in it.
    std::fs::write(bucket.object_path(&meta), &original).expect("restore");
    assert_clean(&dev, &[]);
    edit_json(&bucket, &meta, "sha256", &"cd".repeat(32));
    let (code, checked) = check(&dev, &[]);
    assert_eq!(code, 1);
    assert_finding(&checked, "error", "ipmdb", &[&meta, "not the pinned v1"]);
    // A bucket db.toml that is not TOML any more is a finding too, not a crash of the check.
    std::fs::write(bucket.object_path("db.toml"), "[db\n").expect("damage");
    let (code, checked) = check(&dev, &[]);
    assert_eq!(code, 1);
    assert_finding(&checked, "error", "db.toml", &["the bucket's db.toml is unusable"]);
}

both_backends!(a_done_changeset_whose_script_changed_fails_but_line_endings_do_not_count, |backend| {
    let bucket = Bucket::new(backend);
    let (dev, _server) = published_pair(&bucket, 1);
    let (name, script) = sql_changeset(&dev, "add-row");
    dev.b2m(&["execute-changeset", &name]).ok();
    assert_clean(&dev, &[]);
    std::fs::write(&script, "-- b2m: db = ipm-db\r\nINSERT INTO t(v) VALUES ('x');\r\n").expect("CRLF");
    assert_clean(&dev, &[]);
    std::fs::write(&script, "-- b2m: db = ipm-db\nINSERT INTO t(v) VALUES ('y');\n").expect("edit");
    let (code, checked) = check(&dev, &[]);
    assert_eq!(code, 1);
    assert_finding(&checked, "error", &name, &["changed after it ran", "`b2m create-changeset PHRASE`"]);
    assert_eq!(check(&dev, &["--offline"]).0, 0, "the ledger is in the bucket");
});

#[test]
fn a_failed_or_interrupted_changeset_fails_naming_the_host_and_retry() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, _server) = published_pair(&bucket, 1);
    let (name, script) = sql_changeset(&dev, "broken");
    std::fs::write(&script, "-- b2m: db = ipm-db\nINSERT INTO nope VALUES (1);\n").expect("script");
    dev.b2m(&["execute-changeset", &name]).fails(1, "nope");
    let host = serde_json::from_slice::<Value>(&bucket.read(&format!("changesets/{name}.json")).expect("ledger")).expect("json")["host"]
        .as_str()
        .expect("host")
        .to_string();
    let retry = format!("`b2m execute-changeset {name} --retry`");
    let (code, checked) = check(&dev, &[]);
    assert_eq!(code, 1);
    assert_finding(&checked, "error", &name, &["failed on", &host, &retry]);
    // Left `running` by a runner that died: its claim lease is gone.
    edit_json(&bucket, &format!("changesets/{name}.json"), "state", "running");
    let (code, checked) = check(&dev, &[]);
    assert_eq!(code, 1);
    assert_finding(&checked, "error", &name, &["interrupted", &host, &retry]);
    // While a live claim lease exists it is running, not interrupted.
    let lease = format!("locks/changeset-{name}/20990101T000000.000000Z-test.json");
    let now = chrono::Utc::now();
    let info = serde_json::json!({
        "id": "20990101T000000.000000Z-test", "owner": "ci@elsewhere", "host": "elsewhere", "machine": "", "pid": 1,
        "operation": "changeset", "state": "held", "acquired_at": now.to_rfc3339(),
        "expires_at": (now + chrono::Duration::hours(1)).to_rfc3339(),
    });
    let lease_path = bucket.object_path(&lease);
    std::fs::create_dir_all(lease_path.parent().expect("parent")).expect("locks folder");
    std::fs::write(&lease_path, serde_json::to_vec(&info).expect("json")).expect("lease");
    let (code, checked) = check(&dev, &[]);
    assert_eq!(code, 0, "{checked:#}");
    assert_finding(&checked, "warning", &name, &["is running now", "ci@elsewhere"]);
    // Fixed and retried once the claim is gone: clean.
    std::fs::remove_file(&lease_path).expect("lease gone");
    std::fs::write(&script, "-- b2m: db = ipm-db\nINSERT INTO t(v) VALUES ('x');\n").expect("fix");
    dev.b2m(&["execute-changeset", &name, "--retry"]).ok();
    assert_clean(&dev, &[]);
}

#[test]
fn two_scripts_with_one_timestamp_fail_offline() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, _server) = published_pair(&bucket, 1);
    let (name, script) = sql_changeset(&dev, "first");
    assert_clean(&dev, &["--offline"]);
    let twin = format!("{}_second.sql", &name[..19]);
    std::fs::copy(&script, scripts_dir(&dev).join(&twin)).expect("copy");
    let (code, checked) = check(&dev, &["--offline"]);
    assert_eq!(code, 1);
    assert_finding(&checked, "error", &name, &[&twin, &name[..19], "`b2m create-changeset PHRASE`"]);
    assert_eq!(check(&dev, &[]).0, 1, "online too");
}

#[test]
fn script_names_and_sql_targets_are_checked_offline() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, _server) = published_pair(&bucket, 1);
    let (name, script) = sql_changeset(&dev, "no-target");
    std::fs::write(&script, "INSERT INTO t(v) VALUES ('x');\n").expect("script");
    std::fs::write(scripts_dir(&dev).join("add-index.sql"), "-- b2m: db = ipm-db\nSELECT 1;\n").expect("misnamed");
    std::fs::write(scripts_dir(&dev).join(".gitkeep"), "").expect("dotfile");
    let (code, checked) = check(&dev, &["--offline"]);
    assert_eq!(code, 1);
    assert_finding(&checked, "error", &name, &["`-- b2m: db = <stem>`"]);
    assert_finding(&checked, "warning", "add-index.sql", &["never runs", "`b2m create-changeset PHRASE`"]);
    assert_eq!(findings(&checked).len(), 2, "the dotfile is not a script: {checked:#}");
    let human = dev.b2m(&["check", "--offline"]);
    assert_eq!(human.code, 1);
    assert!(human.stdout.contains(&format!("FAIL {name}")), "{}", human.stdout);
    assert!(human.stdout.contains("warn add-index.sql"), "{}", human.stdout);
    assert!(human.stdout.lines().last().is_some_and(|l| l.starts_with("FAILED ")), "{}", human.stdout);
    // A db.toml that is not TOML is a configuration error (exit 2) naming the line, as everywhere.
    std::fs::write(dev.manifest(), "[db]\nipmdb = \"ipm-db-v1.db\"\nx = = 1\n").expect("db.toml");
    dev.b2m(&["check", "--offline"]).fails(2, "is not valid TOML at line 3");
}

#[test]
fn a_new_script_that_sorts_before_one_that_ran_warns() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, _server) = published_pair(&bucket, 1);
    let (name, script) = sql_changeset(&dev, "later");
    dev.b2m(&["execute-changeset", &name]).ok();
    let earlier: u64 = name[..19].parse::<u64>().expect("timestamp") - 1;
    let early = format!("{earlier:019}_earlier");
    std::fs::copy(&script, scripts_dir(&dev).join(format!("{early}.sql"))).expect("copy");
    let (code, checked) = check(&dev, &[]);
    assert_eq!(code, 0, "{checked:#}");
    assert_finding(&checked, "warning", &early, &[&name, "out of order"]);
    assert_eq!(findings(&checked).len(), 1, "{checked:#}");
    assert_clean(&dev, &["--offline"]);
}

both_backends!(an_orphan_object_warns_naming_gc, |backend| {
    let bucket = Bucket::new(backend);
    let (dev, _server) = published_pair(&bucket, 1);
    dev.publish_row("ipm-db-v1.db", "v2");
    let current = bucket.current_object("ipm-db");
    assert_clean(&dev, &[]);
    // What an interrupted upload of v3 leaves, and a second v1 that no commit named: the chain
    // must be walked to tell the real v1 from it.
    let body = bucket.current_bytes("ipm-db");
    let v3 = format!("dbs/ipm-db/ipm-db-v3.{}.db", "e1".repeat(32));
    let v1 = format!("dbs/ipm-db/ipm-db-v1.{}.db", "f2".repeat(32));
    let meta_v1 = meta_key_of(&v1);
    // Both stores keep objects as files (s3s-fs lists its folder), so this is what a crash leaves.
    for (key, bytes) in [(&v3, &body), (&v1, &body), (&meta_v1, &b"{}".to_vec())] {
        std::fs::write(bucket.object_path(key), bytes).expect("orphan");
    }
    let (code, checked) = check(&dev, &[]);
    assert_eq!(code, 0, "{checked:#}");
    let orphans: Vec<String> =
        findings(&checked).into_iter().filter(|(l, k, _)| l == "warning" && k == "ipmdb").map(|(_, _, m)| m).collect();
    assert_eq!(orphans.len(), 2, "{checked:#}");
    assert!(orphans.iter().any(|m| m.contains(&v3) && m.contains("`b2m gc`")), "{orphans:?}");
    assert!(orphans.iter().any(|m| m.contains(&v1)), "{orphans:?}");
    assert!(!orphans.iter().any(|m| m.contains(&current)), "{orphans:?}");
});

/// A version stored whole (a bucket from before versions were stored as pages).
#[test]
fn deep_finds_an_object_whose_bytes_were_flipped() {
    let bucket = Bucket::new(Backend::Local);
    let mut dev = Project::new(&bucket);
    dev.env.push(("B2M_PAGES".into(), "0".into()));
    dev.create_db("ipmdb", "ipm-db-v1.db", 50);
    dev.b2m(&["upload", "ipm-db"]).ok();
    let object = bucket.current_object("ipm-db");
    let path = bucket.object_path(&object);
    let mut bytes = std::fs::read(&path).expect("object");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).expect("flip");
    assert_clean(&dev, &[]); // same size, same keys: only the bytes can tell
    let (code, checked) = check(&dev, &["--deep"]);
    assert_eq!(code, 1);
    assert_finding(&checked, "error", "ipmdb", &[&object, "does not match its sha256"]);
    // A truncated object shows without downloading it: its listed size is not the recorded one.
    std::fs::write(&path, &bytes[..middle]).expect("truncate");
    let (code, checked) = check(&dev, &[]);
    assert_eq!(code, 1);
    assert_finding(&checked, "error", "ipmdb", &[&object, "bytes but its metadata says"]);
}

/// A version stored as pages: a byte flipped in its pack fails `--deep`, naming the version.
#[test]
fn deep_finds_a_pack_whose_bytes_were_flipped() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, _server) = published_pair(&bucket, 50);
    let object = bucket.current_object("ipm-db");
    let pack = bucket.version_storage(&object).into_iter().find(|k| k.ends_with(".pack")).expect("a pack");
    let path = bucket.object_path(&pack);
    let mut bytes = std::fs::read(&path).expect("pack");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).expect("flip");
    assert_clean(&dev, &[]);
    let (code, checked) = check(&dev, &["--deep"]);
    assert_eq!(code, 1);
    assert_finding(&checked, "error", "ipmdb", &[&object, "fails verification"]);
}
