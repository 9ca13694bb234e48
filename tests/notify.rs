//! Notifications: a webhook on 127.0.0.1 receives the events; one that refuses connections does
//! not fail the command; `notify.command` gets the event as JSON on stdin.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

use crate::common::*;

/// A webhook receiver: records every POSTed body, answers 204.
pub(crate) fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            seen.lock().expect("lock").push(String::from_utf8_lossy(&body).into_owned());
            let mut stream = stream;
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

#[test]
fn a_webhook_receives_conflicts_failures_and_publishes() {
    let (url, bodies) = receiver();
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = published_pair(&bucket, 1);
    for p in [&dev, &server] {
        p.append_config(&format!("[notify]\nwebhook = \"{url}\"\n"));
    }
    // A failed changeset.
    let run = server.b2m(&["create-changeset", "broken", "--kind", "sql", "--json"]);
    let created: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    std::fs::write(created["path"].as_str().expect("path"), "-- b2m: db = ipm-db\nINSERT INTO nope VALUES (1);\n").expect("script");
    server.b2m(&["execute-changeset", created["name"].as_str().expect("name")]).fails(1, "nope");
    // A preflight that stops a start (the same changeset is pending).
    server.b2m(&["preflight"]).fails(1, "failed");
    // A conflict: the server's copy diverged with no known base.
    std::fs::remove_dir_all(dev.path().join(".b2m")).expect("drop state");
    dev.insert("ipm-db-v1.db", "x");
    dev.b2m(&["upload", "ipm-db"]).fails(1, "conflict");
    // A rollback (news even when it succeeds).
    std::fs::remove_dir_all(server.path().join("changeset")).expect("rm changesets");
    let third = Project::new(&bucket);
    third.append_config(&format!("[notify]\nwebhook = \"{url}\"\n"));
    third.create_db("otherdb", "other-db-v1.db", 1);
    third.b2m(&["upload", "other-db"]).ok();
    third.insert("other-db-v1.db", "y");
    third.b2m(&["upload", "other-db"]).ok();
    third.b2m(&["rollback", "other-db"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let events: Vec<serde_json::Value> =
        bodies.lock().expect("lock").iter().map(|b| serde_json::from_str(b).expect("a JSON body")).collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"]["event"].as_str()).collect();
    for kind in ["changeset_failed", "preflight_stopped", "conflict", "published"] {
        assert!(kinds.contains(&kind), "{kind} not sent: {kinds:?}");
    }
    assert!(events.iter().any(|e| e["event"]["made_by"] == "rollback"), "the rollback was not announced: {events:?}");
    assert!(events.iter().all(|e| e["content"].as_str().is_some_and(|c| c.starts_with("b2m on "))), "{events:?}");
}

#[test]
fn a_failing_webhook_or_command_never_fails_the_command() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let bucket = Bucket::new(Backend::Local);
    let p = Project::new(&bucket);
    p.create_db("ipmdb", "ipm-db-v1.db", 1);
    p.b2m(&["upload", "ipm-db"]).ok();
    let out = p.path().join("event.json");
    p.append_config(&format!("[notify]\nwebhook = \"http://127.0.0.1:{port}/refused\"\ncommand = \"sh -c 'cat > {}'\"\n", out.display()));
    p.publish_row("ipm-db-v1.db", "x");
    let started = std::time::Instant::now();
    let run = p.b2m(&["rollback", "ipm-db"]);
    run.ok();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(run.stderr.contains("warning: the notification webhook failed"), "{}", run.stderr);
    let event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("the command got the event")).expect("json");
    assert_eq!((event["event"].as_str(), event["made_by"].as_str()), (Some("published"), Some("rollback")), "{event}");
}
