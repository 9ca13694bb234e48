//! Every entry of `[db]` is managed or reported, never skipped in silence; two keys for one
//! database is a configuration error naming both lines.

use crate::common::*;

/// A published `ipm-db`, plus the kinds of entry b2m cannot manage.
fn project_with_unmanaged_entries() -> (Bucket, Project) {
    let bucket = Bucket::new(Backend::Local);
    let p = Project::new(&bucket);
    p.create_db("ipmdb", "ipm-db-v1.db", 1);
    p.b2m(&["upload", "ipm-db"]).ok();
    // A name from the original b2m (no version), a key that does not end in `db`, a number.
    rusqlite::Connection::open(p.db("legacy.db")).expect("db").execute_batch("CREATE TABLE t(v)").expect("schema");
    p.add_entry("legacydb", "legacy.db");
    p.add_entry("icons", "icons-v2.db");
    let text = p.manifest_text().replacen("[db]\n", "[db]\nretries = 3\n", 1);
    std::fs::write(p.manifest(), text).expect("db.toml");
    (bucket, p)
}

#[test]
fn status_shows_each_entry_it_cannot_manage_as_a_row_saying_why() {
    let (_bucket, p) = project_with_unmanaged_entries();
    let s = p.status();
    let rows = s["dbs"].as_array().expect("dbs");
    let row = |key: &str| rows.iter().find(|r| r["key"] == key).cloned().unwrap_or_else(|| panic!("no row for {key}: {s}"));
    assert_eq!(row("ipmdb")["status"], "up_to_date");
    for (key, says) in [("legacydb", "rename the file to `legacy-v1.db`"), ("icons", "`iconsdb`"), ("retries", "not a file name")] {
        let r = row(key);
        assert_eq!(r["status"], "unmanaged", "{r}");
        assert!(r["detail"].as_str().is_some_and(|d| d.contains(says)), "{key}: {r}");
    }
    let table = p.b2m(&["status"]);
    table.ok();
    assert!(table.stdout.contains("legacydb") && table.stdout.contains("unmanaged"), "{}", table.stdout);
    assert_eq!(p.b2m(&["status", "--exit-code"]).code, 1, "an unmanaged entry is not up to date");
}

#[test]
fn check_offline_fails_on_an_entry_it_cannot_manage() {
    let (_bucket, p) = project_with_unmanaged_entries();
    let run = p.b2m(&["check", "--offline", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let checked: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(checked["ok"], false);
    let keys: Vec<&str> = checked["findings"].as_array().expect("findings").iter().filter_map(|f| f["key"].as_str()).collect();
    for key in ["legacydb", "icons", "retries"] {
        assert!(keys.contains(&key), "{key} not reported: {checked}");
    }
    let human = p.b2m(&["check", "--offline"]);
    assert_eq!(human.code, 1);
    assert!(human.stdout.contains("FAIL legacydb"), "{}", human.stdout);
    // Fixed as the note says, the check passes (online too: db.toml pins what the bucket has).
    let text = p.manifest_text();
    let fixed: String = text
        .lines()
        .filter(|l| !l.starts_with("legacydb") && !l.starts_with("icons") && !l.starts_with("retries"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(p.manifest(), fixed).expect("db.toml");
    p.b2m(&["check", "--offline"]).ok();
    p.b2m(&["check"]).ok();
}

#[test]
fn upload_and_download_of_an_unmanaged_entry_name_it_in_one_line() {
    let (bucket, p) = project_with_unmanaged_entries();
    let keys = bucket.keys();
    p.b2m(&["upload", "legacydb"]).fails(2, "`legacydb = \"legacy.db\"` in db.toml is not a database b2m manages");
    p.b2m(&["upload", "legacy.db"]).fails(2, "legacy-v1.db");
    p.b2m(&["download", "icons"]).fails(2, "`icons = \"icons-v2.db\"`");
    p.b2m(&["upload", "retries"]).fails(2, "not a file name");
    assert_eq!(bucket.keys(), keys, "nothing sent");
}

#[test]
fn two_keys_for_one_database_are_a_configuration_error_naming_both_lines() {
    let bucket = Bucket::new(Backend::Local);
    let p = Project::new(&bucket);
    p.create_db("emojidb", "emoji-db-v1.db", 1);
    p.add_entry("otherdb", "emoji-db-v1.db");
    let text = p.manifest_text();
    let line = |key: &str| text.lines().position(|l| l.starts_with(key)).expect("line") + 1;
    let (first, second) = (line("otherdb"), line("emojidb"));
    for args in [&["status"][..], &["upload", "emoji-db"][..], &["check", "--offline"][..]] {
        let run = p.b2m(args);
        run.fails(2, &format!("line {first} (`otherdb`)"));
        assert!(run.stderr.contains(&format!("line {second} (`emojidb`)")), "{}", run.stderr);
    }
    assert!(bucket.keys().is_empty());
    // Two files of one stem too.
    std::fs::write(p.manifest(), "[db]\nadb = \"ipm-db-v1.db\"\nbdb = \"ipm-db-v2.db\"\n").expect("db.toml");
    p.b2m(&["status"]).fails(2, "line 2 (`adb`) and line 3 (`bdb`) name two versions of `ipm-db`");
}
