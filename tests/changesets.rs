//! Changesets: run once for the whole fleet, SQL natively, Python and shell as children with the
//! helper, exactly once across races and crashes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

/// Creates a changeset of `kind` in `p` with `body` after the template's header lines; returns
/// its name.
pub(crate) fn changeset(p: &Project, phrase: &str, kind: &str, body: &str) -> String {
    let run = p.b2m(&["create-changeset", phrase, "--kind", kind, "--json"]);
    run.ok();
    let created: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let path = created["path"].as_str().expect("path").to_string();
    std::fs::write(&path, body).expect("script");
    created["name"].as_str().expect("name").to_string()
}

pub(crate) fn ledger(bucket: &Bucket, name: &str) -> serde_json::Value {
    serde_json::from_slice(&bucket.read(&format!("changesets/{name}.json")).expect("ledger entry")).expect("json")
}

fn rows_of_object(bucket: &Bucket, key: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("x.db"), bucket.version_bytes(key).expect("object")).expect("copy");
    rows_of(&dir.path().join("x.db"))
}

both_backends!(a_sql_changeset_runs_once_for_the_fleet_and_the_local_file_follows, |backend| {
    let bucket = Bucket::new(backend);
    let (dev, server) = published_pair(&bucket, 2);
    let name = changeset(
        &dev,
        "fix-rows",
        "sql",
        "-- b2m: db = ipm-db\nINSERT INTO t(v) VALUES ('from a changeset; with a semicolon');\nUPDATE t SET v = 'changed' WHERE id = 1;\n",
    );
    assert!(name.ends_with("_fix-rows") && name.len() == 19 + "_fix-rows".len(), "{name}");
    pull_scripts(&dev, &server);
    let run = server.b2m(&["execute-changeset", &name, "--json"]);
    run.ok();
    let executed: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(executed["outcome"], "ran", "{executed}");
    // The bucket: v2 holds the change, names the changeset; the ledger says done, with the log.
    let v2 = bucket.current_object("ipm-db");
    assert!(v2.starts_with("dbs/ipm-db/ipm-db-v2."), "{v2}");
    assert_eq!(rows_of_object(&bucket, &v2), vec!["changed", "row 1", "from a changeset; with a semicolon"]);
    let meta = bucket.current_meta("ipm-db");
    assert_eq!((meta["made_by"].as_str(), meta["changeset"].as_str()), (Some("changeset"), Some(name.as_str())));
    let entry = ledger(&bucket, &name);
    assert_eq!(entry["state"], "done", "{entry}");
    assert_eq!(entry["versions"][0]["version"], 2);
    assert_eq!(entry["script_sha256"].as_str().map(str::len), Some(64));
    let log = String::from_utf8(bucket.read(&format!("changesets/{name}.log")).expect("log")).expect("utf8");
    assert!(log.contains("ran 2 statement(s)"), "{log}");
    // The server's own file followed; the version it started from is kept as the backup.
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v2.db"]);
    assert_eq!(server.rows("ipm-db-v2.db").first().map(String::as_str), Some("changed"));
    assert_eq!(server.status_of("ipm-db"), "up_to_date");
    let work = server.path().join("changeset/dbs").join(&name);
    assert_eq!(rows_of(&work.join("ipm-db-v1.db")), vec!["row 0", "row 1"], "the backup of what was replaced");
    // A second run, here or on another machine, does nothing.
    let again = server.b2m(&["execute-changeset", &format!("{name}.sql"), "--json"]);
    again.ok();
    assert!(again.stdout.contains("\"already_done\""), "{}", again.stdout);
    dev.b2m(&["execute-changeset", &name]).ok();
    assert_eq!(bucket.version_objects("ipm-db").len(), 2, "no third version");
    assert_eq!(dev.status_of("ipm-db"), "outdated_db");
    let listed = dev.b2m(&["changesets", "--json"]);
    listed.ok();
    assert!(listed.stdout.contains("\"done\""), "{}", listed.stdout);
    dev.b2m(&["changesets", "--pending"]).ok();
});

both_backends!(a_failing_sql_changeset_publishes_nothing_and_can_be_retried, |backend| {
    let bucket = Bucket::new(backend);
    let (_dev, server) = published_pair(&bucket, 1);
    let name = changeset(&server, "broken", "sql", "-- b2m: db = ipm-db\nINSERT INTO t(v) VALUES ('x');\n\nINSERT INTO nope VALUES (1);\n");
    let objects = bucket.version_objects("ipm-db");
    server.b2m(&["execute-changeset", &name]).fails(1, "line 4");
    assert_eq!(bucket.version_objects("ipm-db"), objects, "no version object left behind");
    assert_eq!(ledger(&bucket, &name)["state"], "failed");
    assert_eq!(server.rows("ipm-db-v1.db"), vec!["row 0"]);
    assert_eq!(server.status_of("ipm-db"), "up_to_date");
    // Statements that would break the transaction are refused, naming the line.
    let script = server.path().join("changeset/scripts").join(format!("{name}.sql"));
    std::fs::write(&script, "-- b2m: db = ipm-db\nINSERT INTO t(v) VALUES ('x');\nVACUUM;\n").expect("edit");
    server.b2m(&["execute-changeset", &name]).fails(1, "failed");
    server.b2m(&["execute-changeset", &name, "--retry"]).fails(1, "line 3: `VACUUM` cannot run in a changeset");
    std::fs::write(&script, "-- b2m: db = ipm-db\nINSERT INTO t(v) VALUES ('fixed');\n").expect("fix");
    server.b2m(&["execute-changeset", &name, "--retry"]).ok();
    assert_eq!(server.rows("ipm-db-v2.db"), vec!["row 0", "fixed"]);
    let entry = ledger(&bucket, &name);
    assert_eq!((entry["state"].as_str(), entry["runs"].as_u64()), (Some("done"), Some(3)), "{entry}");
});

#[test]
fn a_python_changeset_uses_the_helper_and_a_failing_call_fails_it() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 1);
    let body = r#"import os, sqlite3, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import changeset as cs
status = cs.db_status("ipm-db")
assert isinstance(status, str) and status == "up_to_date", status
cs.log("status is " + status)
conn = sqlite3.connect(cs.db_path("ipm-db"))
conn.execute("INSERT INTO t(v) VALUES ('from python')")
conn.commit()
conn.close()
cs.db_upload("ipm-db")
if os.environ.get("FAIL_AFTER"):
    cs.db_download("no-such-db")
"#;
    let name = changeset(&server, "python-rows", "py", body);
    assert!(server.path().join("changeset/changeset.py").is_file());
    let run = server.b2m_env(&["execute-changeset", &name], &[("FAIL_AFTER", "1")]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("status is up_to_date"), "the script's output reaches the terminal: {}", run.stderr);
    assert!(run.stderr.contains("B2MError") && run.stderr.contains("unknown database"), "{}", run.stderr);
    let entry = ledger(&bucket, &name);
    assert_eq!(entry["state"], "failed", "{entry}");
    assert_eq!(entry["versions"][0]["version"], 2, "what it published is recorded: {entry}");
    let meta = bucket.current_meta("ipm-db");
    assert_eq!(meta["changeset"].as_str(), Some(name.as_str()), "its upload names the changeset");
    let log = std::fs::read_to_string(server.path().join(format!("changeset/logs/{name}.log"))).expect("log");
    assert!(log.contains("status is up_to_date"), "{log}");
    // Retried without the failure: it runs again (and publishes again, from up to date).
    server.b2m(&["execute-changeset", &name]).fails(1, "--retry");
    server.b2m(&["execute-changeset", &name, "--retry"]).ok();
    assert_eq!(ledger(&bucket, &name)["state"], "done");
    assert_eq!(server.rows("ipm-db-v3.db"), vec!["row 0", "from python", "from python"]);
}

#[test]
fn a_shell_changeset_passes_its_exit_code_through() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 1);
    let name = changeset(&server, "shell", "sh", "#!/bin/sh\nset -eu\n\"$B2M\" status >/dev/null\necho \"in $B2M_WORKDIR\"\nexit 3\n");
    let run = server.b2m(&["execute-changeset", &name]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("in ") && run.stderr.contains(&name), "{}", run.stderr);
    let entry = ledger(&bucket, &name);
    assert_eq!((entry["state"].as_str(), entry["exit_code"].as_i64()), (Some("failed"), Some(3)));
}

/// b2m started as a process group's leader (so a kill reaches the scripts it runs).
fn spawn_in_group(p: &Project, args: &[&str]) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    b2m_command(p.path()).args(args).process_group(0).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn")
}

/// SIGKILL to a child started as a process group's leader and everything it started.
fn kill_group(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("pid")).expect("pid");
    rustix::process::kill_process_group(pid, rustix::process::Signal::KILL).expect("kill the group");
}

/// A Python changeset that appends to `marker` each time it really runs, after `pause_ms`.
fn counting_changeset(p: &Project, marker: &std::path::Path, pause_ms: u64, upload: bool) -> String {
    let upload = if upload { "cs.db_upload('ipm-db')" } else { "" };
    let body = format!(
        r#"import os, sqlite3, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import changeset as cs
with open({marker:?}, "a") as f:
    f.write("ran\n")
conn = sqlite3.connect(cs.db_path("ipm-db"))
conn.execute("INSERT INTO t(v) VALUES ('counted')")
conn.commit()
conn.close()
{upload}
time.sleep({pause})
"#,
        marker = marker.display().to_string(),
        pause = pause_ms as f64 / 1000.0
    );
    changeset(p, "counted", "py", &body)
}

#[test]
fn two_machines_starting_the_same_changeset_at_once_run_it_once() {
    let bucket = Bucket::new(Backend::S3);
    let (a, b) = published_pair(&bucket, 1);
    let marker = tempfile::NamedTempFile::new().expect("marker");
    let name = counting_changeset(&a, marker.path(), 500, true);
    pull_scripts(&a, &b);
    let racers: Vec<_> = [&a, &b]
        .iter()
        .map(|p| {
            b2m_command(p.path()).args(["execute-changeset", &name]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn")
        })
        .collect();
    let runs: Vec<Run> = racers.into_iter().map(|c| Run::from(c.wait_with_output().expect("wait"))).collect();
    let ok = runs.iter().filter(|r| r.code == 0).count();
    assert_eq!(ok, 2, "one runs it, the other waits and finds it done: {runs:#?}");
    assert!(runs.iter().any(|r| r.stderr.contains("already ran")), "{runs:#?}");
    assert_eq!(std::fs::read_to_string(marker.path()).expect("marker").lines().count(), 1, "ran exactly once");
    assert_eq!(bucket.version_objects("ipm-db").len(), 2);
    assert_eq!(ledger(&bucket, &name)["runs"], 1);
}

#[test]
fn a_run_killed_after_it_published_is_failed_interrupted_with_its_version_never_rerun() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 1);
    let marker = tempfile::NamedTempFile::new().expect("marker");
    let name = counting_changeset(&server, marker.path(), 30_000, true);
    let mut child = spawn_in_group(&server, &["execute-changeset", &name]);
    // Once v2 is committed (the script then sleeps), kill -9 the whole run.
    let started = Instant::now();
    while !bucket.current_object("ipm-db").starts_with("dbs/ipm-db/ipm-db-v2.") {
        assert!(started.elapsed() < Duration::from_secs(30), "the changeset never published");
        std::thread::sleep(Duration::from_millis(50));
    }
    kill_group(&child);
    let _ = child.wait();
    assert_eq!(ledger(&bucket, &name)["state"], "running");
    // Its effects beyond what it published are unknown: failed (interrupted), never done.
    let run = server.b2m(&["execute-changeset", &name]);
    run.fails(1, "interrupted");
    assert!(run.stderr.contains("published `ipm-db` v2"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(marker.path()).expect("marker").lines().count(), 1, "not run again");
    let entry = ledger(&bucket, &name);
    assert_eq!((entry["state"].as_str(), entry["versions"][0]["version"].as_u64()), (Some("failed"), Some(2)), "{entry}");
}

#[test]
fn a_script_killed_before_it_published_is_failed_interrupted_never_rerun_silently() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 1);
    let marker = tempfile::NamedTempFile::new().expect("marker");
    let name = counting_changeset(&server, marker.path(), 30_000, false);
    let mut child = spawn_in_group(&server, &["execute-changeset", &name]);
    let started = Instant::now();
    while std::fs::read_to_string(marker.path()).unwrap_or_default().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "the changeset never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    kill_group(&child);
    let _ = child.wait();
    server.b2m(&["execute-changeset", &name]).fails(1, "was interrupted");
    assert_eq!(ledger(&bucket, &name)["state"], "failed");
    assert_eq!(std::fs::read_to_string(marker.path()).expect("marker").lines().count(), 1, "not re-run silently");
}

#[test]
fn changesets_run_in_name_order_and_bad_input_is_named() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 1);
    let first = changeset(&server, "first", "sql", "-- b2m: db = ipm-db\nINSERT INTO t(v) VALUES ('1');\n");
    let second = changeset(&server, "second", "sql", "-- b2m: db = ipm-db\nINSERT INTO t(v) VALUES ('2');\n");
    assert!(first < second);
    server.b2m(&["execute-changeset", &second]).fails(1, &format!("`{first}` comes before"));
    let pending = server.b2m(&["changesets", "--pending", "--json"]);
    pending.ok();
    let rows: serde_json::Value = serde_json::from_str(&pending.stdout).expect("json");
    assert_eq!(rows.as_array().map(Vec::len), Some(2));
    server.b2m(&["--execute-changeset", &first]).ok();
    server.b2m(&["execute-changeset", &second]).ok();
    assert_eq!(server.rows("ipm-db-v3.db"), vec!["row 0", "1", "2"]);
    // Editing one that ran is reported (line endings alone are no edit).
    let script = server.path().join("changeset/scripts").join(format!("{first}.sql"));
    let text = std::fs::read_to_string(&script).expect("script");
    std::fs::write(&script, text.replace('\n', "\r\n")).expect("crlf");
    let listed = server.b2m(&["changesets", "--json"]);
    assert!(!listed.stdout.contains("\"edited\": true"), "{}", listed.stdout);
    std::fs::write(&script, text.replace("'1'", "'one'")).expect("edit");
    let listed = server.b2m(&["changesets", "--json"]);
    assert!(listed.stdout.contains("\"edited\": true"), "{}", listed.stdout);

    server.b2m(&["create-changeset", "Bad Phrase"]).fails(2, "is not a changeset phrase");
    server.b2m(&["--create-changeset", "a;rm"]).fails(2, "is not a changeset phrase");
    server.b2m(&["execute-changeset", "nope"]).fails(2, "is not a changeset name");
    server.b2m(&["execute-changeset", "1732245600123456789_missing"]).fails(2, "no changeset");
    let headless = changeset(&server, "headless", "sql", "INSERT INTO t(v) VALUES ('x');\n");
    server.b2m(&["execute-changeset", &headless]).fails(2, "no `-- b2m: db = <stem>` line");
    let script = server.path().join("changeset/scripts").join(format!("{headless}.sql"));
    std::fs::write(&script, "-- b2m: db = nope-db\nSELECT 1;\n").expect("edit");
    server.b2m(&["execute-changeset", &headless]).fails(2, "unknown database `nope-db`");
    assert!(bucket.read(&format!("changesets/{headless}.json")).is_none(), "nothing claimed for a changeset that cannot start");
}

#[test]
fn create_changeset_writes_the_template_and_the_folder() {
    let bucket = Bucket::new(Backend::Local);
    let p = Project::new(&bucket);
    let run = p.b2m(&["create-changeset", "add-index", "--json"]);
    run.ok();
    let created: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let path = std::path::PathBuf::from(created["path"].as_str().expect("path"));
    let name = created["name"].as_str().expect("name");
    assert!(path.ends_with(format!("changeset/scripts/{name}.py")), "{}", path.display());
    let text = std::fs::read_to_string(&path).expect("script");
    for line in ["Template Version: 1", &format!("Script: {name}.py"), "Phrase: add-index"] {
        assert!(text.contains(line), "{line}: {text}");
    }
    for file in ["changeset/changeset.py", "changeset/README.md", "changeset/dbs", "changeset/logs"] {
        assert!(p.path().join(file).exists(), "{file}");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o111, 0o111, "executable");
    // The template as written does nothing but report.
    let bucket_keys = bucket.keys();
    p.create_db("ipmdb", "ipm-db-v1.db", 1);
    p.b2m(&["upload", "ipm-db"]).ok();
    let before = bucket.version_objects("ipm-db");
    p.b2m(&["execute-changeset", name]).ok();
    assert_eq!(bucket.version_objects("ipm-db"), before);
    assert!(bucket_keys.is_empty());
}

#[test]
fn a_missing_python3_is_a_clear_error() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 1);
    let name = changeset(&server, "needs-python", "py", "print('hi')\n");
    let run = server.b2m_env(&["execute-changeset", &name], &[("PATH", "/nonexistent-b2m-test-path")]);
    run.fails(2, "`python3` is not installed");
    assert!(run.stderr.contains("install python3"), "{}", run.stderr);
}
