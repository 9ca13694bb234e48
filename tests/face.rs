//! What users of the original b2m would miss: announcements of every publish, a log (issue 19).

use crate::common::*;

fn log_lines(p: &Project) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p.path().join(".b2m/log/b2m.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// Issue 19 (3): every command that may change state leaves one line in `.b2m/log/b2m.log` — who,
/// the command, the outcome, what it did and what decided it, the requests — and no credential,
/// even with `-vvv`; a read-only command leaves none.
#[test]
fn each_state_changing_command_leaves_one_line_and_no_credential() {
    let bucket = Bucket::new(Backend::S3);
    let (dev, server) = published_pair(&bucket, 2);
    dev.publish_row("ipm-db-v1.db", "v2");
    server.insert("ipm-db-v1.db", "local");
    let before = log_lines(&server).len();
    server.b2m(&["status"]).ok();
    assert_eq!(log_lines(&server).len(), before, "status logged a line");
    server.b2m(&["-vvv", "download", "ipm-db"]).fails(1, "local changes");
    server.b2m(&["download", "ipm-db", "--force"]).ok();
    let lines = log_lines(&server);
    assert_eq!(lines.len(), before + 2, "{lines:#?}");
    let (refused, forced) = (&lines[before], &lines[before + 1]);
    assert_eq!(refused["outcome"], "local_changes", "{refused}");
    assert!(refused["error"].as_str().unwrap_or_default().contains("downloading would drop them"), "{refused}");
    assert!(refused["command"].as_array().is_some_and(|c| c.iter().any(|a| a == "download")), "{refused}");
    assert_eq!((forced["outcome"].as_str(), forced["result"]["version"].as_u64()), (Some("ok"), Some(2)), "{forced}");
    assert!(forced["requests"].as_u64().unwrap_or(0) > 0 && forced["by"].as_str().is_some_and(|b| b.contains('@')), "{forced}");
    // A secret pasted where it does not belong (a message to the team) never reaches the log.
    server.append_config("[notify]\ncommand = \"true\"\n");
    server.b2m(&["-vvv", "notify", &format!("key {SECRET_KEY}")]).ok();
    let text = std::fs::read_to_string(server.path().join(".b2m/log/b2m.log")).expect("log");
    assert!(text.contains("key ***"), "{text}");
    assert!(!text.contains(SECRET_KEY) && !text.contains(ACCESS_KEY), "a credential is in the log");
}

/// The events a receiver got, parsed.
fn events(bodies: &std::sync::Arc<std::sync::Mutex<Vec<String>>>) -> Vec<serde_json::Value> {
    std::thread::sleep(std::time::Duration::from_millis(200));
    bodies.lock().expect("lock").iter().map(|b| serde_json::from_str(b).expect("a JSON body")).collect()
}

/// Issue 19 (2): every published version is announced — upload, merge, changeset, rollback — with
/// who, which db, from which version to which, what made it and its size; `notify.events` chooses
/// which kinds are sent; `b2m notify MESSAGE` and `notify()` in changeset.py send a line.
#[test]
fn every_publish_is_announced_and_notify_sends_a_line() {
    let (url, bodies) = crate::notify::receiver();
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = published_pair(&bucket, 2);
    for p in [&dev, &server] {
        p.append_config(&format!("[notify]\nwebhook = \"{url}\"\n"));
    }
    dev.publish_row("ipm-db-v1.db", "v2");
    let name = crate::changesets::changeset(&dev, "add", "sql", "-- b2m: db = ipm-db\nINSERT INTO t(v) VALUES ('cs');\n");
    dev.b2m(&["execute-changeset", &name]).ok();
    dev.b2m(&["rollback", "ipm-db"]).ok();
    let published: Vec<serde_json::Value> = events(&bodies).into_iter().filter(|e| e["event"]["event"] == "published").collect();
    let made: Vec<&str> = published.iter().filter_map(|e| e["event"]["made_by"].as_str()).collect();
    assert_eq!(made, vec!["upload", "changeset", "rollback"], "{published:#?}");
    let first = &published[0];
    let content = first["content"].as_str().unwrap_or_default();
    assert!(content.contains("`ipm-db` v1 → v2") && content.contains("upload") && content.contains('@'), "{content}");
    assert!(first["event"]["size"].as_u64().is_some_and(|s| s > 0), "{first}");
    // `notify.events` chooses: only conflicts now.
    dev.append_config("");
    let config = std::fs::read_to_string(dev.path().join("b2m.toml")).expect("b2m.toml");
    std::fs::write(dev.path().join("b2m.toml"), config.replace("[notify]\n", "[notify]\nevents = [\"conflict\"]\n")).expect("b2m.toml");
    let before = events(&bodies).len();
    let current = dev.files().into_iter().find(|f| f.ends_with(".db")).expect("dev's db");
    dev.publish_row(&current, "quiet");
    assert_eq!(events(&bodies).len(), before, "a publish was announced with events = [\"conflict\"]");
    // A line of one's own, from the command line and from a changeset; nowhere to send it is an error.
    Project::new(&bucket).b2m(&["notify", "hello"]).fails(2, "notify.webhook");
    dev.b2m(&["notify", "the release is out"]).ok();
    let script = "import os, sys\nsys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))\nimport changeset as cs\ncs.notify('a changeset says hello')\n";
    let name = crate::changesets::changeset(&dev, "hello", "py", script);
    dev.b2m(&["execute-changeset", &name]).ok();
    let lines: Vec<String> = events(&bodies).iter().filter_map(|e| e["content"].as_str().map(str::to_string)).collect();
    assert!(
        lines.iter().any(|l| l.contains("the release is out")) && lines.iter().any(|l| l.contains("a changeset says hello")),
        "{lines:#?}"
    );
}
