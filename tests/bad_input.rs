//! Bad input: each gets one `error:` line naming the thing and what to do, a non-zero exit, and
//! nothing changed.

use crate::common::*;

fn published() -> (Bucket, Project) {
    let bucket = Bucket::new(Backend::Local);
    let dev = Project::new(&bucket);
    dev.create_db("ipmdb", "ipm-db-v1.db", 1);
    dev.b2m(&["upload", "ipm-db"]).ok();
    (bucket, dev)
}

#[test]
fn an_unknown_db_is_named_with_the_known_ones() {
    let (_bucket, dev) = published();
    dev.b2m(&["upload", "nope-db"]).fails(2, "unknown database `nope-db`").fails(2, "ipm-db");
    dev.b2m(&["download", "nope"]).fails(2, "unknown database");
    dev.b2m(&["status", "nope"]).fails(2, "unknown database");
}

#[test]
fn path_like_and_shell_like_names_are_refused() {
    let (bucket, dev) = published();
    let keys = bucket.keys();
    for bad in ["../x", "a;rm", "x/../../etc", "$(id)", "a b"] {
        dev.b2m(&["upload", bad]).fails(2, "is not a database name");
        dev.b2m(&["download", bad]).fails(2, "is not a database name");
    }
    assert_eq!(bucket.keys(), keys);
}

#[test]
fn a_malformed_db_toml_is_reported_with_line_and_column() {
    let (_bucket, dev) = published();
    std::fs::write(dev.manifest(), "[db]\nipmdb = \"ipm-db-v1.db\"\nbroken = \n").expect("write");
    dev.b2m(&["status"]).fails(2, "line 3, column");
    dev.b2m(&["upload", "ipm-db"]).fails(2, "db.toml");
}

#[test]
fn a_malformed_b2m_toml_is_reported_with_line_and_column() {
    let (_bucket, dev) = published();
    std::fs::write(dev.path().join("b2m.toml"), "[remote]\nurl = \"file:///x\"\nlocking = [\n").expect("write");
    dev.b2m(&["status"]).fails(2, "b2m.toml` is not valid TOML at line");
    std::fs::write(dev.path().join("b2m.toml"), "[remote]\nurl = \"file:///x\"\nlocking = \"sometimes\"\n").expect("write");
    dev.b2m(&["status"]).fails(2, "not a locking mode");
    std::fs::write(dev.path().join("b2m.toml"), "[paths]\n").expect("write");
    dev.b2m(&["status"]).fails(2, "remote.url");
}

#[test]
fn no_b2m_toml_found_says_how_to_start() {
    let dir = tempfile::tempdir().expect("dir");
    let run = Run::from(b2m_command(dir.path()).arg("status").output().expect("run"));
    run.fails(2, "no `b2m.toml` found");
    run.fails(2, "b2m init");
}

#[test]
fn a_non_sqlite_or_truncated_file_is_refused_before_anything_is_sent() {
    let bucket = Bucket::new(Backend::Local);
    let dev = Project::new(&bucket);
    std::fs::write(dev.db("notes-db-v1.db"), "just some text, not a database at all, long enough to have a header of sorts".repeat(3))
        .expect("write");
    dev.add_entry("notesdb", "notes-db-v1.db");
    dev.b2m(&["upload", "notes-db"]).fails(1, "is not a usable SQLite database");
    assert!(bucket.keys().is_empty(), "nothing sent: {:?}", bucket.keys());

    dev.create_db("ipmdb", "ipm-db-v1.db", 500);
    let bytes = std::fs::read(dev.db("ipm-db-v1.db")).expect("read");
    std::fs::write(dev.db("ipm-db-v1.db"), &bytes[..bytes.len() / 2]).expect("truncate");
    dev.b2m(&["upload", "ipm-db"]).fails(1, "truncated");
    assert!(bucket.keys().is_empty(), "nothing sent: {:?}", bucket.keys());

    // Whole length, valid header, damaged b-tree pages: the integrity check refuses it.
    let mut damaged = bytes.clone();
    for b in &mut damaged[4096 * 2..4096 * 2 + 600] {
        *b ^= 0x5a;
    }
    std::fs::write(dev.db("ipm-db-v1.db"), &damaged).expect("damage");
    dev.b2m(&["upload", "ipm-db"]).fails(1, "is not a usable SQLite database");
    assert!(bucket.keys().is_empty(), "nothing sent: {:?}", bucket.keys());
}

both_backends!(a_damaged_database_sent_beside_its_integrity_check_never_appears, |backend| {
    // Bigger than a part: the upload goes on beside the check, and is abandoned when it fails.
    let bucket = Bucket::new(backend);
    let dev = Project::new(&bucket);
    dev.create_big_db("ipmdb", "ipm-db-v1.db", 40 * 256);
    let mut bytes = std::fs::read(dev.db("ipm-db-v1.db")).expect("read");
    let middle = bytes.len() / 2 / 4096 * 4096;
    for b in &mut bytes[middle..middle + 600] {
        *b ^= 0x5a;
    }
    std::fs::write(dev.db("ipm-db-v1.db"), &bytes).expect("damage");
    dev.b2m(&["upload", "ipm-db"]).fails(1, "is not a usable SQLite database");
    assert!(bucket.keys().is_empty(), "nothing appeared, not even an orphan: {:?}", bucket.keys());
});

#[test]
fn an_unreachable_endpoint_is_named() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let dev = Project::with_remote("s3://bucket/p", Some(format!("http://127.0.0.1:{port}")));
    dev.b2m(&["status"]).fails(1, "cannot reach `http://127.0.0.1:");
}

#[test]
fn a_missing_bucket_is_named() {
    let server = S3Server::start();
    let dev = Project::with_remote("s3://no-such-bucket/p", Some(server.endpoint.clone()));
    dev.b2m(&["status"]).fails(2, "bucket `no-such-bucket` does not exist");
    let dev = Project::with_remote("file:///nonexistent/b2m-bucket", None);
    dev.b2m(&["status"]).fails(2, "bucket folder `/nonexistent/b2m-bucket` does not exist");
}

#[test]
fn wrong_credentials_are_refused_and_never_printed() {
    let bucket = Bucket::new(Backend::S3);
    let dev = Project::new(&bucket);
    dev.create_db("ipmdb", "ipm-db-v1.db", 1);
    let wrong = "WRONG-secret-value-9876543210";
    let run = dev.b2m_env(&["upload", "ipm-db", "-vvv"], &[("B2M_SECRET_ACCESS_KEY", wrong)]);
    run.fails(2, "access to `s3://b2m-test-bucket/team/prod` was denied");
    assert!(!run.stderr.contains(wrong) && !run.stdout.contains(wrong));
    assert!(bucket.keys().is_empty());
}

#[test]
fn the_secret_never_appears_even_at_trace_level() {
    let bucket = Bucket::new(Backend::S3);
    let dev = Project::new(&bucket);
    dev.create_db("ipmdb", "ipm-db-v1.db", 1);
    for args in [&["upload", "ipm-db", "-vvv"][..], &["status", "-vvv"][..], &["download", "ipm-db", "-vvv", "--force"][..]] {
        let run = dev.b2m_env(args, &[("RUST_LOG", "trace")]);
        run.ok();
        assert!(run.stderr.len() > 1000, "trace output expected: {}", run.stderr.len());
        for output in [&run.stdout, &run.stderr] {
            assert!(!output.contains(SECRET_KEY), "secret leaked by {args:?}");
            assert!(!output.contains(ACCESS_KEY), "access key id leaked by {args:?}");
        }
    }
}

#[test]
fn global_flags_work_before_and_after_the_command() {
    let (_bucket, dev) = published();
    let after = dev.b2m(&["status", "--json", "-q"]);
    let before = dev.b2m(&["--json", "-q", "status"]);
    after.ok();
    assert_eq!(after.stdout, before.stdout);
    let elsewhere = tempfile::tempdir().expect("dir");
    let run =
        Run::from(b2m_command(elsewhere.path()).args(["-C", &dev.path().display().to_string(), "status", "--json"]).output().expect("run"));
    run.ok();
    assert_eq!(run.stdout, after.stdout);
    let usage = dev.b2m(&["upload"]);
    assert_eq!(usage.code, 2);
}

#[test]
fn missing_credentials_say_which_variables_to_set() {
    let server = S3Server::start();
    let dev = Project::with_remote(&format!("s3://{BUCKET}/p"), Some(server.endpoint.clone()));
    let mut cmd = b2m_command(dev.path());
    cmd.env_remove("B2M_ACCESS_KEY_ID").env_remove("B2M_SECRET_ACCESS_KEY").arg("status");
    Run::from(cmd.output().expect("run")).fails(2, "B2M_ACCESS_KEY_ID");
}
