//! Edges: db.toml entries kept, owners kept, honest answers (issue 21).

use std::process::Stdio;

use crate::common::*;

/// Issue 21 (6): a closed stdout (`b2m status | head -c 1`) ends the command quietly: no panic,
/// no "Broken pipe", the command's own exit code.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 2);
    for args in [&["status"][..], &["status", "--json"], &["history", "ipm-db"], &["completions", "bash"]] {
        for _ in 0..5 {
            let mut child = b2m_command(server.path()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
            drop(child.stdout.take());
            let out = child.wait_with_output().expect("wait");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.code() == Some(0) && !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
                "b2m {args:?} with stdout closed: {:?}\n{stderr}",
                out.status
            );
        }
    }
}

/// Issue 21 (7): b2m's rewrites of db.toml keep its line endings (CRLF) and its BOM.
#[test]
fn db_toml_rewrites_keep_crlf_and_a_bom() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = published_pair(&bucket, 2);
    dev.publish_row("ipm-db-v1.db", "v2");
    let text = server.manifest_text();
    let windows = format!("\u{feff}{}", text.replace('\n', "\r\n"));
    std::fs::write(server.manifest(), &windows).expect("db.toml");
    server.b2m(&["download", "ipm-db"]).ok();
    let after = server.manifest_text();
    assert!(after.contains("ipm-db-v2.db"), "{after}");
    assert!(after.starts_with('\u{feff}'), "the BOM was dropped: {after:?}");
    assert!(!after.replace("\r\n", "").contains('\n'), "a bare LF appeared: {after:?}");
    server.b2m(&["fetch-db-toml"]).ok();
    let fetched = server.manifest_text();
    assert!(fetched.starts_with('\u{feff}') && !fetched.replace("\r\n", "").contains('\n'), "{fetched:?}");
}

/// Issue 21 (4): a file b2m swaps in takes the owner, group and mode of the file it replaces (the
/// server's user must still be able to write it).
#[test]
fn a_replaced_file_keeps_its_owner_group_and_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = published_pair(&bucket, 2);
    dev.publish_row("ipm-db-v1.db", "v2");
    let v1 = server.db("ipm-db-v1.db");
    std::fs::set_permissions(&v1, std::fs::Permissions::from_mode(0o660)).expect("chmod");
    // As root (CI, containers) the file also goes to nobody:nogroup; otherwise only the mode.
    let root = rustix::process::geteuid().is_root();
    if root {
        std::os::unix::fs::chown(&v1, Some(65534), Some(65534)).expect("chown");
    }
    let before = std::fs::metadata(&v1).expect("v1");
    server.b2m(&["download", "ipm-db"]).ok();
    let after = std::fs::metadata(server.db("ipm-db-v2.db")).expect("v2");
    assert_eq!(after.permissions().mode() & 0o7777, 0o660, "mode");
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()), "owner and group (root: {root})");
}

/// Issue 21 (5): a BOM before `-- b2m: db = ipm-db` (Windows editors write one) is no missing
/// header: `check` accepts the script and `execute-changeset` runs it.
#[test]
fn a_bom_before_a_sql_changeset_s_header_is_accepted() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, _server) = published_pair(&bucket, 2);
    let name = crate::changesets::changeset(&dev, "with-bom", "sql", "\u{feff}-- b2m: db = ipm-db\r\nINSERT INTO t(v) VALUES ('bom');\r\n");
    let check = dev.b2m(&["check", "--offline"]);
    assert!(!check.stdout.contains("names no database") && !check.stderr.contains("names no database"), "{}{}", check.stdout, check.stderr);
    dev.b2m(&["execute-changeset", &name]).ok();
    assert!(dev.rows("ipm-db-v2.db").contains(&"bom".to_string()));
}

/// Issue 21 (8): two checkouts on one host are two rows of `fleet` that say which is which.
#[test]
fn fleet_tells_two_checkouts_on_one_host_apart() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = published_pair(&bucket, 2);
    dev.b2m(&["preflight"]).ok();
    server.b2m(&["preflight"]).ok();
    let fleet = dev.b2m(&["fleet"]);
    fleet.ok();
    let rows: Vec<&str> = fleet.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{}", fleet.stdout);
    assert_ne!(rows[0].split_whitespace().next(), rows[1].split_whitespace().next(), "two identical rows:\n{}", fleet.stdout);
    for p in [&dev, &server] {
        let root = std::fs::canonicalize(p.path()).expect("root");
        assert!(fleet.stdout.contains(&root.display().to_string()), "{} is not shown:\n{}", root.display(), fleet.stdout);
    }
}

/// Issue 21 (1): a db.toml key that names another, unpublished local database than the bucket's
/// is two databases under one key: status and preflight say so naming both files, and nothing
/// repoints the key.
#[test]
fn a_key_naming_another_local_database_is_a_conflict_not_repointed() {
    let bucket = Bucket::new(Backend::Local);
    let dev = Project::new(&bucket);
    dev.create_db("ipmdb", "ipm-db-v1.db", 2);
    dev.b2m(&["upload", "ipm-db"]).ok();
    let server = Project::new(&bucket);
    server.create_db("ipmdb", "ipm-v1.db", 3);
    let before = server.manifest_text();
    let row = server.status_row("ipm-db");
    let detail = row["detail"].as_str().unwrap_or_default();
    assert!(row["status"] == "conflict" && detail.contains("ipm-v1.db") && detail.contains("ipm-db-v1.db"), "{row}");
    let run = server.b2m(&["preflight"]);
    run.fails(1, "ipm-v1.db");
    assert!(run.stderr.contains("ipm-db-v1.db"), "{}", run.stderr);
    assert_eq!(server.manifest_text(), before, "db.toml was rewritten");
    server.b2m(&["download", "ipm-db"]).fails(1, "ipm-v1.db");
    assert_eq!(server.manifest_text(), before, "db.toml was rewritten");
    assert_eq!(server.status_of("ipm"), "new_local");
}

/// Issue 21 (2): `fetch-db-toml` keeps the local entries the bucket does not know (a `new_local`
/// database), their comments included, and says they are local only.
#[test]
fn fetch_db_toml_keeps_local_only_entries_and_their_comments() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 2);
    let text = server.manifest_text().replacen("[db]\n", "[db]\n# not published yet\nnewdb = \"new-db-v1.db\" # the new one\n", 1);
    std::fs::write(server.manifest(), text).expect("db.toml");
    rusqlite::Connection::open(server.db("new-db-v1.db"))
        .expect("db")
        .execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        .expect("schema");
    assert_eq!(server.status_of("new-db"), "new_local");
    let run = server.b2m(&["fetch-db-toml"]);
    run.ok();
    let after = server.manifest_text();
    assert!(after.contains("# not published yet\nnewdb = \"new-db-v1.db\" # the new one"), "{after}");
    assert!(run.stderr.contains("newdb") && run.stderr.contains("local only"), "{}", run.stderr);
    assert_eq!(server.status_of("new-db"), "new_local");
    assert_eq!(server.status_of("ipm-db"), "up_to_date");
}

/// Issue 21 (3): `init --remote` on a project whose b2m.toml names another bucket refuses, naming
/// the file to edit; it never reports a bucket it does not use.
#[test]
fn init_with_another_remote_refuses_naming_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let (b1, b2) = (dir.path().join("b1"), dir.path().join("b2"));
    std::fs::create_dir_all(&b1).expect("b1");
    let init = |url: &str| Run::from(b2m_command(dir.path()).args(["init", "--remote", url]).output().expect("init"));
    init(&format!("file://{}", b1.display())).ok();
    let run = init(&format!("file://{}", b2.display()));
    run.fails(2, "b2m.toml");
    assert!(run.stderr.contains("/b1") && run.stderr.contains("remote.url"), "{}", run.stderr);
    assert!(std::fs::read_to_string(dir.path().join("b2m.toml")).expect("b2m.toml").contains("/b1"));
    // The same bucket again is fine, and says the bucket it uses.
    let again = init(&format!("file://{}", b1.display()));
    again.ok();
    assert!(again.stdout.contains("/b1") && !again.stdout.contains("/b2"), "{}", again.stdout);
}

/// Issue 19 (4): `download --all` brings every database behind the bucket forward without running
/// changesets, names the one it cannot (local changes), and changes nothing of that one.
#[test]
fn download_all_fetches_every_database_behind_without_running_changesets() {
    let bucket = Bucket::new(Backend::Local);
    let dev = Project::new(&bucket);
    for (key, file) in [("adb", "a-v1.db"), ("bdb", "b-v1.db"), ("cdb", "c-v1.db")] {
        dev.create_db(key, file, 1);
        dev.b2m(&["upload", file]).ok();
    }
    let laptop = Project::new(&bucket);
    laptop.b2m(&["fetch-db-toml"]).ok();
    laptop.b2m(&["download", "a"]).ok();
    laptop.b2m(&["download", "c"]).ok();
    laptop.insert("c-v1.db", "laptop's own");
    for file in ["a-v1.db", "c-v1.db"] {
        dev.insert(file, "v2");
        dev.b2m(&["upload", file]).ok();
    }
    let name = crate::changesets::changeset(&dev, "pending", "sql", "-- b2m: db = a\nINSERT INTO t(v) VALUES ('cs');\n");
    pull_scripts(&dev, &laptop);
    let run = laptop.b2m(&["download", "--all"]);
    run.fails(1, "`c`");
    assert!(run.stderr.contains("fetched `a` v2") && run.stderr.contains("fetched `b` v1"), "{}", run.stderr);
    assert_eq!(laptop.status_of("a"), "up_to_date");
    assert_eq!(laptop.status_of("b"), "up_to_date");
    assert!(laptop.rows("c-v1.db").contains(&"laptop's own".to_string()));
    assert!(bucket.read(&format!("changesets/{name}.json")).is_none(), "a changeset ran");
    laptop.b2m(&["download", "--all", "a"]).fails(2, "cannot be used with");
}

/// Issue 21 (10): a key of b2m.toml b2m does not know (a misspelt `allow_ofline`) is an error
/// naming it, its line and column, and the nearest known key; so is an unknown table.
#[test]
fn unknown_b2m_toml_keys_are_errors_naming_the_nearest_known_one() {
    let bucket = Bucket::new(Backend::Local);
    let p = Project::new(&bucket);
    p.append_config("[preflight]\nallow_ofline = true\n");
    let run = p.b2m(&["status"]);
    run.fails(2, "preflight.allow_ofline");
    assert!(run.stderr.contains("allow_offline") && run.stderr.contains("line "), "{}", run.stderr);
    let config = std::fs::read_to_string(p.path().join("b2m.toml")).expect("b2m.toml");
    std::fs::write(p.path().join("b2m.toml"), config.replace("[preflight]\nallow_ofline = true\n", "[sever]\nstop = \"x\"\n"))
        .expect("b2m.toml");
    p.b2m(&["status"]).fails(2, "`sever`").fails(2, "server");
}

/// Issue 21 (9): after `gc --keep 2`, history says it was trimmed by gc, and when — not that an
/// older version's metadata is missing.
#[test]
fn history_after_gc_keep_says_it_was_trimmed_and_when() {
    let bucket = Bucket::new(Backend::Local);
    let dev = Project::new(&bucket);
    dev.create_db("ipmdb", "ipm-db-v1.db", 1);
    dev.b2m(&["upload", "ipm-db"]).ok();
    for v in 1..4 {
        dev.publish_row(&format!("ipm-db-v{v}.db"), &format!("row {v}"));
    }
    dev.b2m(&["gc", "--keep", "2"]).ok();
    let run = dev.b2m(&["history", "ipm-db"]);
    run.ok();
    assert!(!run.stdout.contains("metadata is missing"), "{}", run.stdout);
    assert!(run.stdout.contains("trimmed by `b2m gc --keep 2`") && run.stdout.contains(" on 20"), "{}", run.stdout);
    let json: serde_json::Value = serde_json::from_str(&dev.b2m(&["history", "ipm-db", "--json"]).stdout).expect("json");
    assert_eq!((json["complete"].as_bool(), json["trimmed"]["keep"].as_u64()), (Some(true), Some(2)), "{json}");
}
