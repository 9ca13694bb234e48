//! The promises the hardening issue found broken, each as the scenario that broke it: a publisher
//! that lost its lease, a server that merely opens its db, a reader that pins the WAL, a commit
//! whose answer was lost, gc racing a publish, the request count of status, stale sidecars and
//! keys that differ between the local and the bucket's db.toml.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use rusqlite::Connection;

/// Waits until `locks/<stem>/` holds a lease in state `held`.
fn wait_for_held_lease(bucket: &Bucket, stem: &str) {
    let started = Instant::now();
    loop {
        let held =
            bucket.keys().iter().filter(|k| k.starts_with(&format!("locks/{stem}/"))).any(|k| {
                bucket.read(k).is_some_and(|b| serde_json::from_slice::<serde_json::Value>(&b).is_ok_and(|v| v["state"] == "held"))
            });
        if held {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no lease on {stem} appeared: {:?}", bucket.keys());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &child.id().to_string()]).status().is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} failed");
}

both_backends!(a_publisher_that_lost_its_lease_cannot_touch_a_published_version, |backend| {
    let bucket = Bucket::new(backend);
    let (a, b) = published_pair(&bucket, 1);
    a.insert("ipm-db-v1.db", "a's row");
    // A takes its lease, snapshots, and is stopped (a suspended VM, a long pause) just before it
    // sends its object.
    let paused = b2m_command(a.path())
        .args(["upload", "ipm-db"])
        .env("B2M_LEASE_TTL_SECS", "2")
        .env("B2M_FAILPOINT", "before-object-upload:pause=1500")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for_held_lease(&bucket, "ipm-db");
    signal(&paused, "-STOP");
    // An operator clears the lease and B publishes v2.
    b.b2m(&["unlock", "ipm-db", "--force"]).ok();
    b.publish_row("ipm-db-v1.db", "b's row");
    let v2 = bucket.current_object("ipm-db");
    let digest = |bytes: Vec<u8>| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    };
    // v2's object, or its recipe and the packs of its pages.
    let stored = bucket.version_storage(&v2);
    let v2_bytes: Vec<String> = stored.iter().map(|k| digest(bucket.read(k).expect("v2"))).collect();
    let v2_meta = bucket.read(&meta_key_of(&v2)).expect("v2 meta");
    // A resumes: it must not change what anyone reads as v2, and must say nothing was published.
    signal(&paused, "-CONT");
    let run = Run::from(paused.wait_with_output().expect("wait"));
    assert_ne!(run.code, 0, "A must not publish: {run:?}");
    // Whichever it finds first (its lease lost, or db.toml moved on), it says so and publishes nothing.
    assert!(run.stderr.contains("nothing was published"), "{}", run.stderr);
    assert_eq!(bucket.current_object("ipm-db"), v2);
    let now: Vec<String> = stored.iter().map(|k| digest(bucket.read(k).expect("v2"))).collect();
    assert_eq!(now, v2_bytes, "v2's objects are untouched");
    assert_eq!(bucket.read(&meta_key_of(&v2)).expect("v2 meta"), v2_meta, "v2's metadata is untouched");
    // A third machine gets B's rows.
    let c = Project::new(&bucket);
    c.b2m(&["fetch-db-toml"]).ok();
    c.b2m(&["download", "ipm-db"]).ok();
    assert_eq!(c.rows("ipm-db-v2.db"), vec!["row 0", "b's row"]);
    // A keeps its rows, as an outdated copy with local changes.
    let row = a.status_row("ipm-db");
    assert_eq!((row["status"].as_str(), row["local_changes"].as_bool()), (Some("outdated_db"), Some(true)), "{row}");
    assert_eq!(a.rows("ipm-db-v1.db"), vec!["row 0", "a's row"]);
});

both_backends!(a_server_that_opens_its_db_in_wal_mode_and_reads_changes_nothing, |backend| {
    let bucket = Bucket::new(backend);
    let (_dev, server) = published_pair(&bucket, 3);
    // What every server does: open in WAL mode, read.
    let conn = Connection::open(server.db("ipm-db-v1.db")).expect("open");
    let mode: String = conn.query_row("PRAGMA journal_mode=wal", [], |r| r.get(0)).expect("wal");
    assert_eq!(mode, "wal");
    let n: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("read");
    assert_eq!(n, 3);
    let row = server.status_row("ipm-db");
    assert_eq!((row["status"].as_str(), row["local_changes"].as_bool()), (Some("up_to_date"), Some(false)), "while open: {row}");
    drop(conn);
    let row = server.status_row("ipm-db");
    assert_eq!((row["status"].as_str(), row["local_changes"].as_bool()), (Some("up_to_date"), Some(false)), "after close: {row}");
    // A real write is a change.
    server.insert("ipm-db-v1.db", "new");
    assert_eq!(server.status_of("ipm-db"), "ready_to_upload");
});

both_backends!(rows_behind_a_reader_that_pins_the_wal_are_seen_at_once_and_published, |backend| {
    let bucket = Bucket::new(backend);
    let (_dev, server) = published_pair(&bucket, 1);
    // The server process: a reader holds a read transaction open (no checkpoint can pass it) and
    // a writer commits a row behind it.
    let process = DbHolder::start(&server.db("ipm-db-v1.db"), &["INSERT INTO t(v) VALUES ('behind the reader')"], true);
    let started = Instant::now();
    let row = server.status_row("ipm-db");
    let took = started.elapsed();
    eprintln!("status with the WAL pinned answered in {took:?}");
    // (Before, status waited out SQLite's 30 s busy timeout and then said `up_to_date`.)
    assert!(took < Duration::from_secs(5), "status waited {took:?} for the server");
    assert_eq!((row["status"].as_str(), row["local_changes"].as_bool()), (Some("ready_to_upload"), Some(true)), "{row}");
    // The upload publishes those rows (the server is stopped only for the rename).
    server.append_config(&process.server_config());
    server.b2m(&["upload", "ipm-db"]).ok();
    let copy = tempfile::tempdir().expect("dir");
    std::fs::write(copy.path().join("x.db"), bucket.current_bytes("ipm-db")).expect("copy");
    assert_eq!(rows_of(&copy.path().join("x.db")), vec!["row 0", "behind the reader"]);
    assert_eq!(server.rows("ipm-db-v2.db"), vec!["row 0", "behind the reader"]);
});

/// A project on s3s-fs reached through a proxy that counts requests and can lose answers.
fn proxied(server: &S3Server) -> (Proxy, Project) {
    let proxy = Proxy::start(&server.endpoint);
    let p = Project::with_remote(&format!("s3://{BUCKET}/{PREFIX}"), Some(proxy.endpoint.clone()));
    (proxy, p)
}

#[test]
fn a_commit_whose_answer_was_lost_is_reported_as_the_success_it_was() {
    let server = S3Server::start();
    let (proxy, p) = proxied(&server);
    // A bucket recorded as checking conditions atomically: the commit is an `If-Match` swap, so
    // the SDK's retry of a commit whose answer was lost gets 412.
    let record = serde_json::json!({
        "protocol": "conditional", "conditional_writes": "atomic", "race_winners": [1, 1],
        "recorded_at": "2026-11-22T00:00:00.000Z", "recorded_by": "test@host", "b2m_version": "0"
    });
    let path = server.object_path("bucket.json");
    std::fs::create_dir_all(path.parent().expect("prefix")).expect("prefix folder");
    std::fs::write(path, serde_json::to_vec(&record).expect("json")).expect("bucket.json");
    p.create_db("ipmdb", "ipm-db-v1.db", 1);
    p.b2m(&["upload", "ipm-db"]).ok();
    p.insert("ipm-db-v1.db", "second");
    proxy.lose_answer_of_next("PUT", "/db.toml", "");
    let run = p.b2m(&["upload", "ipm-db", "--json"]);
    let db_toml_puts = proxy.requests().iter().filter(|r| r.method == "PUT" && r.path.ends_with("/db.toml")).count();
    assert!(db_toml_puts >= 2, "the SDK retried the commit: {:?}", proxy.requests());
    run.ok();
    let published: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!((published["version"].as_u64(), published["uploaded"].as_bool()), (Some(2), Some(true)), "{published}");
    let manifest = std::fs::read_to_string(server.object_path("db.toml")).expect("db.toml");
    assert!(manifest.contains("ipmdb = \"ipm-db-v2.db\""), "{manifest}");
    assert_eq!(p.files(), vec!["db.toml", "ipm-db-v2.db"]);
    assert_eq!(p.status_of("ipm-db"), "up_to_date");
}

#[test]
fn status_makes_at_most_two_requests_whatever_the_number_of_databases() {
    let server = S3Server::start();
    let (proxy, p) = proxied(&server);
    for i in 0..5 {
        p.create_db(&format!("db{i}db"), &format!("db{i}-db-v1.db"), 2);
        p.b2m(&["upload", &format!("db{i}-db")]).ok();
    }
    // Status hashes nothing twice and reads no metadata: db.toml, and one listing of locks/.
    p.status();
    proxy.reset();
    let s = p.status();
    let seen = proxy.requests();
    assert!(seen.len() <= 2, "status made {} requests: {seen:?}", seen.len());
    let rows = s["dbs"].as_array().expect("dbs");
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r["status"] == "up_to_date"), "{s}");
    // A held lease costs one GET more, to name its holder.
    p.b2m(&["lock", "db0-db"]).ok();
    proxy.reset();
    let s = p.status();
    assert!(proxy.requests().len() <= 3, "{:?}", proxy.requests());
    let db0 = s["dbs"].as_array().expect("dbs").iter().find(|r| r["name"] == "db0-db").cloned().unwrap_or_default();
    assert!(db0["locked_by"].as_str().is_some(), "{s}");
}

both_backends!(gc_racing_a_publish_deletes_nothing_reachable, |backend| {
    let bucket = Bucket::new(backend);
    let (a, b) = published_pair(&bucket, 1);
    let old = ("B2M_ORPHAN_AGE_SECS", "0");
    // 1. gc reads db.toml (v1) and pauses; meanwhile a publish uploads, commits v2 and releases.
    let gc = b2m_command(b.path())
        .args(["gc", "--json"])
        .env(old.0, old.1)
        .env("B2M_FAILPOINT", "gc-after-read:pause=2500")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gc");
    std::thread::sleep(Duration::from_millis(500));
    a.publish_row("ipm-db-v1.db", "during gc");
    let gc = Run::from(gc.wait_with_output().expect("gc"));
    gc.ok();
    let v2 = bucket.current_object("ipm-db");
    assert!(bucket.version_bytes(&v2).is_some() && bucket.keys().contains(&meta_key_of(&v2)), "gc removed a published version: {gc:?}");
    // 2. A publisher paused between its upload and its commit, then gc.
    a.insert("ipm-db-v2.db", "paused");
    let paused = b2m_command(a.path())
        .args(["upload", "ipm-db"])
        .env("B2M_FAILPOINT", "before-commit:pause=2500")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for_held_lease(&bucket, "ipm-db");
    std::thread::sleep(Duration::from_millis(300));
    b.b2m_env(&["gc"], &[old]).ok();
    Run::from(paused.wait_with_output().expect("wait")).ok();
    let v3 = bucket.current_object("ipm-db");
    assert!(v3.starts_with("dbs/ipm-db/ipm-db-v3."), "{v3}");
    for key in [&v2, &v3] {
        assert!(bucket.version_bytes(key).is_some(), "{key} was deleted");
    }
    let c = Project::new(&bucket);
    c.b2m(&["fetch-db-toml"]).ok();
    c.b2m(&["download", "ipm-db"]).ok();
    assert_eq!(c.rows("ipm-db-v3.db"), vec!["row 0", "during gc", "paused"]);
});

both_backends!(a_download_clears_every_stale_sidecar_of_the_new_name, |backend| {
    let bucket = Bucket::new(backend);
    let (dev, server) = published_pair(&bucket, 1);
    dev.publish_row("ipm-db-v1.db", "v2 row");
    // Leftovers under the new name, from a crash or a copy by hand.
    for suffix in ["-wal", "-shm", "-journal"] {
        std::fs::write(server.db(&format!("ipm-db-v2.db{suffix}")), vec![0x5a; 4096]).expect("stale sidecar");
    }
    server.b2m(&["download", "ipm-db"]).ok();
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v2.db"]);
    assert_eq!(server.rows("ipm-db-v2.db"), vec!["row 0", "v2 row"]);
    assert_eq!(server.status_of("ipm-db"), "up_to_date");
});

#[test]
fn different_keys_for_one_database_are_named_and_nothing_is_deleted() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = published_pair(&bucket, 1);
    dev.publish_row("ipm-db-v1.db", "x");
    // The server's db.toml calls the database `serverdb`; the bucket calls it `ipmdb`.
    let text = server.manifest_text().replace("ipmdb", "serverdb");
    std::fs::write(server.manifest(), &text).expect("db.toml");
    let row = server.status_row("ipm-db");
    let detail = row["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("`serverdb`") && detail.contains("`ipmdb`"), "{row}");
    server.b2m(&["download", "ipm-db"]).fails(1, "`ipmdb`");
    assert_eq!(server.manifest_text(), text, "no second key added");
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v1.db"], "the file the first key names is kept");
}

#[test]
fn a_file_a_server_has_open_is_swapped_only_around_a_server_stop() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = published_pair(&bucket, 1);
    dev.publish_row("ipm-db-v1.db", "x");
    let process = DbHolder::start(&server.db("ipm-db-v1.db"), &[], false);
    // Without [server]: refused at once, naming the process; nothing changed.
    let before = server.manifest_text();
    server.b2m(&["download", "ipm-db"]).fails(1, &format!("pid {} (`", process.pid()));
    assert_eq!(server.manifest_text(), before);
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v1.db"]);
    // With it: stopped before the swap, started after.
    server.append_config(&process.server_config());
    let run = server.b2m(&["download", "ipm-db"]);
    run.ok();
    assert!(run.stderr.contains("stopping the server") && run.stderr.contains("starting the server"), "{}", run.stderr);
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v2.db"]);
    assert_eq!(server.status_of("ipm-db"), "up_to_date");
}
