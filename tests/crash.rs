//! kill -9 at random points of uploads and downloads: the local db.toml always names an intact
//! file, the bucket's db.toml always names an object that matches its metadata, no partial file
//! sits under a database's name, and a rerun finishes without a person (no TTL to wait out).

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use sha2::{Digest, Sha256};

const KILLS: usize = 12;

/// A database big enough that a kill lands mid-transfer (~32 MiB).
fn big_db(p: &Project) {
    p.create_big_db("ipmdb", "ipm-db-v1.db", 8000);
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn intact(path: &std::path::Path) -> bool {
    let Ok(conn) = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else { return false };
    conn.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0)).is_ok_and(|s| s == "ok")
}

/// The version file the project's db.toml names.
fn named_file(p: &Project) -> String {
    let text = p.manifest_text();
    let start = text.find("ipm-db-v").expect("named");
    text[start..].split('"').next().expect("file").to_string()
}

/// The invariants that must hold whenever a b2m process dies.
fn check_invariants(bucket: &Bucket, p: &Project, published_only: bool) {
    // The bucket's db.toml pins an object whose bytes are its sha256, with metadata saying so.
    if bucket.read("db.toml").is_some() {
        let key = bucket.current_object("ipm-db");
        let meta = bucket.current_meta("ipm-db");
        let object = bucket.version_bytes(&key).expect("object");
        assert_eq!(meta["sha256"].as_str(), Some(sha256(&object).as_str()), "bucket object {key} matches its metadata");
        assert!(key.contains(&sha256(&object)), "{key} is named by its bytes");
    }
    // The local db.toml names a file that exists and is intact (and, on a server, is published).
    let file = named_file(p);
    let path = p.db(&file);
    assert!(intact(&path), "db.toml names `{file}`, which must exist and be intact");
    if published_only {
        let sha = sha256(&std::fs::read(&path).expect("read"));
        let published: Vec<String> = bucket
            .keys()
            .iter()
            .filter(|k| k.starts_with("dbs/") && k.ends_with(".json"))
            .filter_map(|k| serde_json::from_slice::<serde_json::Value>(&bucket.read(k)?).ok()?["sha256"].as_str().map(str::to_string))
            .collect();
        assert!(published.contains(&sha), "`{file}` matches a published sha256");
    }
    // No partial file under a database's name.
    for name in p.files() {
        if name.starts_with("ipm-db-v") && name.ends_with(".db") {
            assert!(intact(&p.db(&name)), "`{name}` is a database name, so it must be intact");
        }
    }
}

/// Pseudo-random kill delays spread over `span` (seeded from the clock, printed to reproduce).
fn delays(span: Duration) -> Vec<Duration> {
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64);
    eprintln!("kill-point seed {seed}");
    (0..KILLS)
        .map(|i| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            // Spread evenly with jitter, so early, middle and late points are all hit.
            let slot = span.as_micros() as u64 / KILLS as u64;
            Duration::from_micros(slot * i as u64 + (seed >> 33) % slot.max(1))
        })
        .collect()
}

/// Runs b2m and SIGKILLs it after `after`; returns whether it was still running then.
fn run_killed(p: &Project, args: &[&str], after: Duration) -> bool {
    let mut child = b2m_command(p.path()).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    std::thread::sleep(after);
    let running = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    running
}

fn rerun_finishes(p: &Project, args: &[&str]) {
    let started = Instant::now();
    p.b2m_env(args, &[("B2M_LEASE_WAIT_SECS", "30")]).ok();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the rerun waited {:?}: a dead holder's lease must be taken over at once",
        started.elapsed()
    );
}

fn timed(p: &Project, args: &[&str]) -> Duration {
    let started = Instant::now();
    p.b2m(args).ok();
    started.elapsed()
}

both_backends!(kill_9_during_upload_never_leaves_a_broken_state, |backend| {
    let bucket = Bucket::new(backend);
    let dev = Project::new(&bucket);
    big_db(&dev);
    dev.b2m(&["upload", "ipm-db"]).ok();
    // Kill points spread over the time a later upload takes (the first one hashes more).
    dev.insert(&named_file(&dev), "calibration");
    let span = timed(&dev, &["upload", "ipm-db"]);
    let mut landed = 0;
    for (i, delay) in delays(span).into_iter().enumerate() {
        dev.insert(&named_file(&dev), &format!("kill {i}"));
        landed += usize::from(run_killed(&dev, &["upload", "ipm-db"], delay));
        check_invariants(&bucket, &dev, false);
        rerun_finishes(&dev, &["upload", "ipm-db"]);
        // (The published object is a snapshot of the file, not its bytes, so no sha check here.)
        check_invariants(&bucket, &dev, false);
        assert_eq!(dev.status_of("ipm-db"), "up_to_date", "after kill {i} at {delay:?}");
    }
    eprintln!("{landed} of {KILLS} kills landed while the upload ran");
    assert!(landed >= KILLS / 2, "only {landed} of {KILLS} kills landed while the upload ran");
});

both_backends!(kill_9_during_download_never_leaves_a_broken_state, |backend| {
    let bucket = Bucket::new(backend);
    let dev = Project::new(&bucket);
    big_db(&dev);
    dev.b2m(&["upload", "ipm-db"]).ok();
    let server = Project::new(&bucket);
    server.b2m(&["fetch-db-toml"]).ok();
    server.b2m(&["download", "ipm-db"]).ok();
    // Kill points spread over the time a later download takes (the first one fetches every page;
    // a later one, the pages of one more row).
    dev.publish_row(&named_file(&dev), "calibration");
    let span = timed(&server, &["download", "ipm-db"]);
    let mut landed = 0;
    for (i, delay) in delays(span).into_iter().enumerate() {
        dev.publish_row(&named_file(&dev), &format!("kill {i}"));
        landed += usize::from(run_killed(&server, &["download", "ipm-db"], delay));
        check_invariants(&bucket, &server, true);
        rerun_finishes(&server, &["download", "ipm-db"]);
        check_invariants(&bucket, &server, true);
        assert_eq!(server.status_of("ipm-db"), "up_to_date", "after kill {i} at {delay:?}");
        assert_eq!(named_file(&server), named_file(&dev));
        assert!(server.files().iter().all(|f| !f.starts_with(".b2m-")), "temp files cleared: {:?}", server.files());
    }
    eprintln!("{landed} of {KILLS} kills landed while the download ran");
    assert!(landed >= KILLS / 2, "only {landed} of {KILLS} kills landed while the download ran");
});

/// Every step of a publish and of a download, crashed on purpose: the next command reconciles.
#[test]
fn a_crash_at_each_step_is_reconciled_by_the_next_command() {
    for point in ["before-commit", "after-commit", "after-link", "after-local-manifest"] {
        let bucket = Bucket::new(Backend::Local);
        let dev = Project::new(&bucket);
        dev.create_db("ipmdb", "ipm-db-v1.db", 2);
        dev.b2m(&["upload", "ipm-db"]).ok();
        dev.insert("ipm-db-v1.db", point);
        let run = dev.b2m_env(&["upload", "ipm-db"], &[("B2M_FAILPOINT", point)]);
        assert_ne!(run.code, 0, "{point}: the failpoint must kill the upload");
        check_invariants(&bucket, &dev, false);
        // Status (which never waits for the lock) finishes or forgets the interrupted publish.
        let expected = if point == "before-commit" { "ready_to_upload" } else { "up_to_date" };
        assert_eq!(dev.status_of("ipm-db"), expected, "after a crash at {point}");
        rerun_finishes(&dev, &["upload", "ipm-db"]);
        assert_eq!(dev.files(), vec!["db.toml", "ipm-db-v2.db"], "{point}");
        assert_eq!(dev.rows("ipm-db-v2.db").last().map(String::as_str), Some(point));
        assert_eq!(dev.status_of("ipm-db"), "up_to_date", "{point}");
    }
    for point in ["before-install", "after-install"] {
        let bucket = Bucket::new(Backend::Local);
        let (dev, server) = published_pair(&bucket, 1);
        dev.publish_row("ipm-db-v1.db", point);
        let run = server.b2m_env(&["download", "ipm-db"], &[("B2M_FAILPOINT", point)]);
        assert_ne!(run.code, 0, "{point}: the failpoint must kill the download");
        check_invariants(&bucket, &server, true);
        assert_eq!(named_file(&server), "ipm-db-v1.db", "{point}: db.toml moves only after the file is in place");
        rerun_finishes(&server, &["download", "ipm-db"]);
        assert_eq!(server.files(), vec!["db.toml", "ipm-db-v2.db"], "{point}");
        assert_eq!(server.status_of("ipm-db"), "up_to_date", "{point}");
    }
}
