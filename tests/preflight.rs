//! `b2m preflight`: what every server start runs.

use std::process::Stdio;

use crate::common::*;

/// A SQL changeset on ipm-db in `p`; returns its name.
fn sql_changeset(p: &Project, phrase: &str, sql: &str) -> String {
    let run = p.b2m(&["create-changeset", phrase, "--kind", "sql", "--json"]);
    run.ok();
    let created: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    std::fs::write(created["path"].as_str().expect("path"), format!("-- b2m: db = ipm-db\n{sql}\n")).expect("script");
    created["name"].as_str().expect("name").to_string()
}

fn preflight(p: &Project) -> serde_json::Value {
    let run = p.b2m(&["preflight", "--json"]);
    run.ok();
    serde_json::from_str(&run.stdout).expect("preflight JSON")
}

/// A developer who published ipm-db and emoji-db, with a pending changeset on ipm-db.
fn published_with_changeset(bucket: &Bucket) -> (Project, String) {
    let dev = Project::new(bucket);
    dev.create_db("ipmdb", "ipm-db-v1.db", 1);
    dev.create_db("emojidb", "emoji-db-v1.db", 1);
    dev.b2m(&["upload", "ipm-db"]).ok();
    dev.b2m(&["upload", "emoji-db"]).ok();
    let name = sql_changeset(&dev, "add-row", "INSERT INTO t(v) VALUES ('from the changeset');");
    (dev, name)
}

/// A server folder that has never run: no db.toml, no databases; the changeset scripts pulled.
fn fresh_server(bucket: &Bucket, dev: &Project) -> Project {
    let server = Project::new(bucket);
    std::fs::remove_file(server.manifest()).expect("no db.toml yet");
    pull_scripts(dev, &server);
    server
}

both_backends!(a_fresh_server_is_brought_up_by_one_preflight_and_the_next_is_one_request, |backend| {
    let bucket = Bucket::new(backend);
    let (dev, name) = published_with_changeset(&bucket);
    let server = fresh_server(&bucket, &dev);
    let done = preflight(&server);
    let fetched: Vec<&str> = done["fetched"].as_array().expect("fetched").iter().filter_map(|f| f["name"].as_str()).collect();
    assert!(fetched.contains(&"ipm-db") && fetched.contains(&"emoji-db"), "{done}");
    assert_eq!(done["changesets"][0]["name"], name.as_str());
    assert_eq!(done["changesets"][0]["outcome"], "ran");
    assert_eq!(server.files(), vec!["db.toml", "emoji-db-v1.db", "ipm-db-v2.db"]);
    assert_eq!(server.rows("ipm-db-v2.db"), vec!["row 0", "from the changeset"]);
    let text = server.manifest_text();
    assert!(text.contains("ipmdb = \"ipm-db-v2.db\"") && text.contains("[b2m.sha256]"), "{text}");
    assert_eq!(server.status_of("ipm-db"), "up_to_date");
    assert_eq!(server.status_of("emoji-db"), "up_to_date");
    // Nothing changed since: one request (the GET of db.toml), nothing fetched, nothing run.
    let again = preflight(&server);
    assert_eq!(again["requests"], 1, "{again}");
    assert_eq!(again["fetched"].as_array().map(Vec::len), Some(0));
    assert_eq!(again["changesets"].as_array().map(Vec::len), Some(0));
    let keys = bucket.keys();
    preflight(&server);
    assert_eq!(bucket.keys(), keys, "a no-op preflight publishes nothing");
    // A second server with the same changeset does not run it again, and lands on the same version.
    let second = fresh_server(&bucket, &dev);
    let done = preflight(&second);
    assert_eq!(done["changesets"].as_array().map(Vec::len), Some(0), "done elsewhere: nothing to run here: {done}");
    assert_eq!(second.rows("ipm-db-v2.db"), vec!["row 0", "from the changeset"]);
    assert_eq!(bucket.version_objects("ipm-db").len(), 2);
});

#[test]
fn servers_and_preflights_starting_at_once_run_a_new_changeset_exactly_once() {
    let bucket = Bucket::new(Backend::S3);
    let (dev, name) = published_with_changeset(&bucket);
    let servers: Vec<Project> = (0..3).map(|_| fresh_server(&bucket, &dev)).collect();
    // Three servers, and two more preflights on the first one's machine, all at once.
    let folders: Vec<&Project> = servers.iter().chain([&servers[0], &servers[0]]).collect();
    let children: Vec<_> = folders
        .iter()
        .map(|p| b2m_command(p.path()).args(["preflight", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn"))
        .collect();
    let runs: Vec<Run> = children.into_iter().map(|c| Run::from(c.wait_with_output().expect("wait"))).collect();
    for run in &runs {
        run.ok();
    }
    let ran = runs.iter().filter(|r| r.stdout.contains("\"ran\"")).count();
    assert_eq!(ran, 1, "exactly one ran it: {runs:#?}");
    let entry: serde_json::Value = serde_json::from_slice(&bucket.read(&format!("changesets/{name}.json")).expect("ledger")).expect("json");
    assert_eq!((entry["state"].as_str(), entry["runs"].as_u64()), (Some("done"), Some(1)));
    assert_eq!(bucket.version_objects("ipm-db").len(), 2, "one new version");
    for s in &servers {
        assert_eq!(s.rows("ipm-db-v2.db"), vec!["row 0", "from the changeset"]);
        assert_eq!(s.status_of("ipm-db"), "up_to_date");
    }
}

#[test]
fn what_must_stop_a_start_does() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = published_pair(&bucket, 1);
    // A failing pending changeset.
    let bad = sql_changeset(&dev, "broken", "INSERT INTO nope VALUES (1);");
    pull_scripts(&dev, &server);
    let run = server.b2m(&["preflight"]);
    run.fails(1, &bad);
    std::fs::remove_file(server.path().join("changeset/scripts").join(format!("{bad}.sql"))).expect("rm");
    std::fs::remove_file(dev.path().join("changeset/scripts").join(format!("{bad}.sql"))).expect("rm");
    server.b2m(&["preflight"]).ok();
    // Local rows the bucket lacks: reported; --strict stops the start.
    server.insert("ipm-db-v1.db", "server row");
    let done = preflight(&server);
    assert_eq!(done["ready_to_upload"][0], "ipm-db", "{done}");
    server.b2m(&["preflight", "--strict"]).fails(1, "--strict");
    // Behind the bucket with local rows: stop, naming merge; nothing is swapped.
    dev.publish_row("ipm-db-v1.db", "dev row");
    server.b2m(&["preflight"]).fails(1, "b2m merge ipm-db");
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v1.db"]);
}

#[test]
fn an_unreachable_bucket_stops_the_start_unless_offline_is_allowed_and_every_pin_holds() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let server = S3Server::start();
    let p = Project::with_remote(&format!("s3://{BUCKET}/{PREFIX}"), Some(server.endpoint.clone()));
    p.create_db("ipmdb", "ipm-db-v1.db", 1);
    p.b2m(&["upload", "ipm-db"]).ok();
    p.b2m(&["preflight"]).ok();
    // The bucket goes away.
    let offline = Project::with_remote(&format!("s3://{BUCKET}/{PREFIX}"), Some(format!("http://127.0.0.1:{port}")));
    std::fs::remove_dir_all(offline.path()).expect("rm");
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        let status = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().expect("cp");
        assert!(status.success());
    };
    copy(p.path(), offline.path());
    offline.write_config("");
    offline.b2m(&["preflight"]).fails(1, "cannot read the bucket's db.toml");
    offline.append_config("[preflight]\nallow_offline = true\n");
    let run = offline.b2m(&["preflight"]);
    run.ok();
    assert!(run.stderr.contains("WARNING") && run.stderr.contains("cannot be reached"), "{}", run.stderr);
    offline.insert("ipm-db-v1.db", "changed while offline");
    offline.b2m(&["preflight"]).fails(1, "not exactly its pinned version");
}
