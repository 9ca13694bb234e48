//! Hardening, round two: each defect an adversarial pass found, as the scenario that broke it — a
//! row committed while a download ran, a swap at the same version under a running server, a
//! journal's last statement without `;`, changesets killed or failing after they published, a
//! child that outlived its parent, a daemon holding a changeset's output open, a silent endpoint,
//! Ctrl-C, and one bad file among good ones.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use rusqlite::Connection;

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server process holding `path` open in WAL mode that commits one row (`value`) each time a
/// file `go` appears in `dir` (then writes `done`), as a cron job inside a server would.
struct OnDemandWriter {
    child: std::process::Child,
}

impl OnDemandWriter {
    fn start(path: &std::path::Path, dir: &std::path::Path, value: &str) -> Self {
        use std::io::BufRead;
        let script = r#"
import os, sqlite3, sys, time
path, dir, value = sys.argv[1], sys.argv[2], sys.argv[3]
c = sqlite3.connect(path, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("SELECT count(*) FROM t").fetchone()
print("ready", flush=True)
while True:
    go = os.path.join(dir, "go")
    if os.path.exists(go):
        c.execute("INSERT INTO t(v) VALUES (?)", (value,))
        os.remove(go)
        open(os.path.join(dir, "done"), "w").write("1")
    time.sleep(0.01)
"#;
        let mut child = std::process::Command::new("python3")
            .args(["-c", script, &path.display().to_string(), &dir.display().to_string(), value])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("ready");
        assert_eq!(line.trim(), "ready");
        OnDemandWriter { child }
    }

    /// `[server]` whose stop ends the process (SIGTERM: its committed rows stay).
    fn server_config(&self) -> String {
        format!("[server]\nstop = \"kill {}\"\nstart = \"true\"\ntimeout = 10\n", self.child.id())
    }
}

impl Drop for OnDemandWriter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// 1. A row the server commits while a download runs is never dropped by the swap.
both_backends!(a_row_committed_during_a_download_refuses_the_swap_and_keeps_the_row, |backend| {
    let bucket = Bucket::new(backend);
    let (dev, server) = published_pair(&bucket, 3);
    dev.publish_row("ipm-db-v1.db", "dev's row");
    let writer = OnDemandWriter::start(&server.db("ipm-db-v1.db"), server.path(), "written during the download");
    server.append_config(&writer.server_config());
    assert_eq!(server.status_of("ipm-db"), "outdated_db", "clean and behind before the download");
    let download = b2m_command(server.path())
        .args(["download", "ipm-db"])
        .env("B2M_FAILPOINT", "before-swap:pause=2000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The judgement is made once the new version is being fetched: then the server writes.
    wait_until("the download to start", Duration::from_secs(20), || {
        server.files().iter().any(|f| f.starts_with(".b2m-download-")) || server.path().join("db/all_dbs/ipm-db-v2.db").exists()
    });
    std::fs::write(server.path().join("go"), "").expect("go");
    wait_until("the server's write", Duration::from_secs(20), || server.path().join("done").exists());
    let run = Run::from(download.wait_with_output().expect("wait"));
    run.fails(1, "outdated_db");
    assert!(run.stderr.contains("b2m merge"), "{}", run.stderr);
    assert!(server.manifest_text().contains("\"ipm-db-v1.db\""), "db.toml still names v1: {}", server.manifest_text());
    assert_eq!(server.files().iter().filter(|f| f.ends_with(".db")).collect::<Vec<_>>(), vec!["ipm-db-v1.db"]);
    assert!(server.rows("ipm-db-v1.db").contains(&"written during the download".to_string()), "the row is where it was");
    let row = server.status_row("ipm-db");
    assert_eq!((row["status"].as_str(), row["local_changes"].as_bool()), (Some("outdated_db"), Some(true)), "{row}");
});

// 2. A swap at the same version number stops the server first.
both_backends!(download_force_at_the_same_version_stops_the_server_before_the_swap, |backend| {
    let bucket = Bucket::new(backend);
    let (_dev, server) = published_pair(&bucket, 2);
    server.insert("ipm-db-v1.db", "to be dropped");
    assert_eq!(server.status_of("ipm-db"), "ready_to_upload");
    let mut holder = DbHolder::start(&server.db("ipm-db-v1.db"), &[], false);
    server.append_config(&holder.server_config());
    server.b2m(&["download", "ipm-db", "--force"]).ok();
    assert!(holder.child.try_wait().expect("wait").is_some(), "server.stop ran before the file was replaced");
    assert_eq!(server.rows("ipm-db-v1.db"), vec!["row 0", "row 1"]);
    assert_eq!(server.status_of("ipm-db"), "up_to_date");
});

/// A dev and a server on `ipm-db` v1 (`t(id, v, deleted_at)`), and v2 published by the dev.
fn merge_setup(bucket: &Bucket) -> Project {
    let (dev, server) = crate::merge::shop(bucket);
    dev.insert_row("ipm-db-v1.db", "INSERT INTO t(v) VALUES ('dev row')");
    dev.b2m(&["upload", "ipm-db"]).ok();
    server
}

/// The server runs `sql` on its file and appends `journal` to the journal beside it.
fn server_journals(server: &Project, sql: &str, journal: &str) {
    Connection::open(server.db("ipm-db-v1.db")).expect("db").execute_batch(sql).expect("server writes");
    std::fs::write(server.db("ipm-db-v1.sql"), journal).expect("journal");
}

// 3. A journal's last statement without `;` is replayed, never archived unreplayed.
#[test]
fn merge_runs_a_complete_last_statement_without_a_semicolon() {
    let bucket = Bucket::new(Backend::Local);
    let server = merge_setup(&bucket);
    let sql = "INSERT INTO t(v) VALUES ('first'); INSERT INTO t(v) VALUES ('last, no semicolon');";
    server_journals(&server, sql, "INSERT INTO t(v) VALUES ('first');\nINSERT INTO t(v) VALUES ('last, no semicolon')\n");
    server.b2m(&["merge", "ipm-db"]).ok();
    let rows = server.rows("ipm-db-v3.db");
    assert!(rows.contains(&"last, no semicolon".to_string()), "{rows:?}");
    assert!(!server.db("ipm-db-v1.sql").exists(), "archived once replayed");
}

#[test]
fn merge_refuses_an_incomplete_last_statement_naming_its_line_and_keeps_the_journal() {
    let bucket = Bucket::new(Backend::Local);
    let server = merge_setup(&bucket);
    let journal = "INSERT INTO t(v) VALUES ('first');\nINSERT INTO t(v) VALUES ('cut off\n";
    server_journals(&server, "INSERT INTO t(v) VALUES ('first'); INSERT INTO t(v) VALUES ('cut off');", journal);
    server.b2m(&["merge", "ipm-db"]).fails(1, "line 2");
    assert_eq!(std::fs::read_to_string(server.db("ipm-db-v1.sql")).expect("journal kept"), journal);
    assert!(bucket.current_object("ipm-db").starts_with("dbs/ipm-db/ipm-db-v2."), "nothing published");
}

use crate::changesets::{changeset, ledger};

const HELPER: &str = "import os, sqlite3, sys, time\nsys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), \"..\"))\nimport changeset as cs\n";

/// Two databases published by a dev, fetched by a server.
fn two_dbs(bucket: &Bucket) -> (Project, Project) {
    let dev = Project::new(bucket);
    dev.create_db("ipmdb", "ipm-db-v1.db", 1);
    dev.create_db("emojidb", "emoji-db-v1.db", 1);
    dev.b2m(&["upload", "ipm-db"]).ok();
    dev.b2m(&["upload", "emoji-db"]).ok();
    let server = Project::new(bucket);
    server.b2m(&["fetch-db-toml"]).ok();
    server.b2m(&["preflight"]).ok();
    (dev, server)
}

// 4. A `.py` changeset killed between its two uploads is failed (interrupted), never done.
#[test]
fn a_script_killed_between_its_two_uploads_is_failed_interrupted_listing_what_it_published() {
    use std::os::unix::process::CommandExt;
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = two_dbs(&bucket);
    let body = format!(
        "{HELPER}for db in ['ipm-db', 'emoji-db']:\n    c = sqlite3.connect(cs.db_path(db)); c.execute(\"INSERT INTO t(v) VALUES ('cs')\"); c.commit(); c.close()\n    cs.db_upload(db)\n    time.sleep(30)\n"
    );
    let name = changeset(&server, "two-dbs", "py", &body);
    let mut child = b2m_command(server.path())
        .args(["execute-changeset", &name])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_until("the first upload", Duration::from_secs(30), || bucket.current_object("ipm-db").starts_with("dbs/ipm-db/ipm-db-v2."));
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("pid")).expect("pid");
    rustix::process::kill_process_group(pid, rustix::process::Signal::KILL).expect("kill the group");
    let _ = child.wait();
    let run = server.b2m(&["preflight"]);
    run.fails(1, "interrupted");
    assert!(run.stderr.contains("ipm-db` v2"), "says what it published: {}", run.stderr);
    let entry = ledger(&bucket, &name);
    assert_eq!(entry["state"], "failed", "{entry}");
    assert!(entry["error"].as_str().is_some_and(|e| e.contains("interrupted")), "{entry}");
    assert_eq!(entry["versions"].as_array().map(Vec::len), Some(1), "{entry}");
    assert_eq!((entry["versions"][0]["stem"].as_str(), entry["versions"][0]["version"].as_u64()), (Some("ipm-db"), Some(2)));
}

// 5. kill -9 of execute-changeset takes its child with it; an orphan could not publish anyway.
#[test]
fn a_killed_runner_takes_its_child_with_it_and_nothing_is_published_after() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 1);
    let marker = server.path().join("marker");
    let body = format!(
        "{HELPER}open({m:?}, 'a').write('started %d\\n' % os.getpid())\ntime.sleep(8)\nc = sqlite3.connect(cs.db_path('ipm-db')); c.execute(\"INSERT INTO t(v) VALUES ('orphan')\"); c.commit(); c.close()\ncs.db_upload('ipm-db')\nopen({m:?}, 'a').write('uploaded\\n')\n",
        m = marker.display().to_string()
    );
    let name = changeset(&server, "slow", "py", &body);
    let mut runner =
        b2m_command(server.path()).args(["execute-changeset", &name]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    wait_until("the script to start", Duration::from_secs(30), || std::fs::read_to_string(&marker).is_ok_and(|m| m.contains("started")));
    let script_pid: u32 =
        std::fs::read_to_string(&marker).expect("marker").split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("the script's pid");
    runner.kill().expect("kill -9 the runner alone");
    let _ = runner.wait();
    // It sleeps 8 s before its upload: dead within 3 s means it died with its runner.
    wait_until("the script to die with its runner", Duration::from_secs(3), || {
        // Gone, or a zombie nobody has reaped yet.
        std::fs::read_to_string(format!("/proc/{script_pid}/stat")).map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
    });
    assert!(!std::fs::read_to_string(&marker).expect("marker").contains("uploaded"), "the child died with its runner");
    assert!(bucket.current_object("ipm-db").starts_with("dbs/ipm-db/ipm-db-v1."), "nothing was published after the runner died");
    // A stale token file does not let a process skip the local lock, and a claim that is not live
    // lets no publish through.
    server.insert("ipm-db-v1.db", "not under a live claim");
    let token = std::fs::read_to_string(server.path().join(".b2m/lock.token")).unwrap_or_else(|_| "gone".into());
    let run = server.b2m_env(
        &["upload", "ipm-db"],
        &[("B2M_CHANGESET", &name), ("B2M_LEASE_TOKEN", "0123456789abcdef"), ("B2M_LOCAL_LOCK_TOKEN", token.trim())],
    );
    run.fails(1, "claim");
    assert!(bucket.current_object("ipm-db").starts_with("dbs/ipm-db/ipm-db-v1."));
}

// 6. A script that fails after it published says so; --retry says what is already in the bucket.
#[test]
fn a_script_failing_after_its_upload_says_what_it_published_and_retry_says_it_again() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 1);
    let body = format!(
        "{HELPER}c = sqlite3.connect(cs.db_path('ipm-db')); c.execute(\"INSERT INTO t(v) VALUES ('once')\"); c.commit(); c.close()\ncs.db_upload('ipm-db')\nsys.exit(1)\n"
    );
    let name = changeset(&server, "fails-late", "py", &body);
    let run = server.b2m(&["execute-changeset", &name]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("published `ipm-db` v2"), "{}", run.stderr);
    let entry = ledger(&bucket, &name);
    assert_eq!((entry["state"].as_str(), entry["versions"][0]["version"].as_u64()), (Some("failed"), Some(2)), "{entry}");
    let retry = server.b2m(&["execute-changeset", &name, "--retry"]);
    assert!(retry.stderr.contains("already published `ipm-db` v2"), "{}", retry.stderr);
}

// 7. A daemon started by a changeset does not hold execute-changeset open.
#[test]
fn a_daemon_started_by_a_changeset_does_not_hold_the_run_open() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 1);
    let start = server.path().join("start.sh");
    std::fs::write(&start, "#!/bin/sh\nnohup sleep 60 &\necho $! > daemon.pid\necho started the daemon\n").expect("start.sh");
    server.append_config(&format!("[server]\nstop = \"true\"\nstart = \"sh {}\"\ntimeout = 10\n", start.display()));
    let name = changeset(&server, "starts-a-daemon", "py", &format!("{HELPER}cs.start_server()\nprint('after the start', flush=True)\n"));
    let started = Instant::now();
    let run = server.b2m(&["execute-changeset", &name]);
    let took = started.elapsed();
    let daemon = std::fs::read_to_string(server.path().join("daemon.pid")).unwrap_or_default();
    let _ = std::process::Command::new("kill").arg(daemon.trim()).status();
    run.ok();
    assert!(took < Duration::from_secs(20), "execute-changeset waited for the daemon: {took:?}");
    assert!(run.stderr.contains("after the start"), "{}", run.stderr);
    assert_eq!(ledger(&bucket, &name)["state"], "done");
}

#[test]
fn a_second_command_waits_for_the_local_lock_only_so_long_and_names_its_holder() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 1);
    server.insert("ipm-db-v1.db", "slow");
    let holder = b2m_command(server.path())
        .args(["upload", "ipm-db"])
        .env("B2M_FAILPOINT", "before-object-upload:pause=8000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_until("the first command to hold the lock", Duration::from_secs(20), || {
        std::fs::read_to_string(server.path().join(".b2m/lock.owner")).is_ok_and(|o| o.contains(&holder.id().to_string()))
    });
    let started = Instant::now();
    let run = server.b2m_env(&["preflight"], &[("B2M_LOCK_WAIT_SECS", "1")]);
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    run.fails(1, &format!("pid {}", holder.id()));
    let _ = Run::from(holder.wait_with_output().expect("wait"));
}

/// A TCP endpoint that accepts connections and never answers.
fn silent_endpoint() -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    (format!("http://{addr}"), handle)
}

// 8. An endpoint that never answers: bounded, and preflight goes offline within offline_after.
#[test]
fn a_silent_endpoint_is_given_up_on_in_bounded_time() {
    let bucket = Bucket::new(Backend::S3);
    let (_dev, server) = published_pair(&bucket, 1);
    let (endpoint, _listener) = silent_endpoint();
    let config = std::fs::read_to_string(server.path().join("b2m.toml")).expect("b2m.toml");
    let config = config.replace(&bucket.endpoint().expect("endpoint"), &endpoint);
    std::fs::write(server.path().join("b2m.toml"), config).expect("b2m.toml");
    server.append_config("[preflight]\nallow_offline = true\noffline_after = 3\n");
    let started = Instant::now();
    let run = server.b2m(&["preflight"]);
    let took = started.elapsed();
    run.ok();
    assert!(run.stderr.contains("WARNING"), "{}", run.stderr);
    assert!(took < Duration::from_secs(8), "preflight went offline after {took:?}");
    let config = std::fs::read_to_string(server.path().join("b2m.toml")).expect("b2m.toml");
    std::fs::write(server.path().join("b2m.toml"), config.replace("[remote]\n", "[remote]\ntimeout = 2\n")).expect("b2m.toml");
    let started = Instant::now();
    let run = server.b2m(&["status"]);
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{run:?}");
    assert!(took < Duration::from_secs(20), "status gave up after {took:?}");
}

// 9. Ctrl-C releases the leases this process holds and removes its temporary files.
both_backends!(ctrl_c_releases_the_lease_removes_temp_files_and_exits_130, |backend| {
    let bucket = Bucket::new(backend);
    let (_dev, server) = published_pair(&bucket, 1);
    server.insert("ipm-db-v1.db", "interrupted");
    let child = b2m_command(server.path())
        .args(["upload", "ipm-db"])
        .env("B2M_FAILPOINT", "before-object-upload:pause=20000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_until("the lease", Duration::from_secs(20), || bucket.keys().iter().any(|k| k.starts_with("locks/ipm-db/")));
    wait_until("the snapshot", Duration::from_secs(20), || std::fs::read_dir(server.path().join(".b2m/tmp")).is_ok_and(|d| d.count() > 0));
    let ok = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().is_ok_and(|s| s.success());
    assert!(ok);
    let started = Instant::now();
    let run = Run::from(child.wait_with_output().expect("wait"));
    assert_eq!(run.code, 130, "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(!bucket.keys().iter().any(|k| k.starts_with("locks/")), "lease left: {:?}", bucket.keys());
    let left: Vec<_> = std::fs::read_dir(server.path().join(".b2m/tmp")).expect("tmp").flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
    assert!(!server.files().iter().any(|f| f.starts_with(".b2m-")), "{:?}", server.files());
});

// 10. One non-SQLite file blocks only itself.
#[test]
fn one_non_sqlite_file_blocks_only_itself_and_download_force_replaces_it() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = two_dbs(&bucket);
    std::fs::write(server.db("emoji-db-v1.db"), b"this is not a database, it is a note").expect("garbage");
    let run = server.b2m(&["status", "--json"]);
    run.ok();
    let status: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let row = |name: &str| status["dbs"].as_array().expect("dbs").iter().find(|d| d["name"] == name).cloned().expect("row");
    assert_eq!(row("ipm-db")["status"], "up_to_date", "{status}");
    assert_eq!(row("emoji-db")["status"], "conflict", "{status}");
    assert!(row("emoji-db")["detail"].as_str().is_some_and(|d| d.contains("not a usable SQLite database")), "{status}");
    server.b2m(&["preflight"]).fails(1, "emoji-db");
    server.b2m(&["download", "emoji-db", "--force"]).ok();
    assert_eq!(server.rows("emoji-db-v1.db"), vec!["row 0"]);
    assert_eq!(server.status_of("emoji-db"), "up_to_date");
    let kept: Vec<_> = std::fs::read_dir(server.path().join(".b2m/backups")).expect("backups").flatten().collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read(kept[0].path()).expect("kept"), b"this is not a database, it is a note");
}

// 11. A hot rollback journal is rolled back as SQLite would, not counted as local changes.
both_backends!(a_hot_journal_is_rolled_back_before_the_file_is_judged, |backend| {
    let bucket = Bucket::new(backend);
    let (_dev, server) = published_pair(&bucket, 50);
    let script = r#"
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=DELETE"); c.execute("PRAGMA cache_size=1")
c.execute("BEGIN")
for i in range(2000):
    c.execute("INSERT INTO t(v) VALUES (?)", ("x" * 500,))
c.execute("UPDATE t SET v = 'changed'")
os._exit(9)
"#;
    let status = std::process::Command::new("python3").args(["-c", script]).arg(server.db("ipm-db-v1.db")).status().expect("python3");
    assert_eq!(status.code(), Some(9));
    let journal = server.db("ipm-db-v1.db-journal");
    assert!(std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0), "a hot journal was left");
    let run = server.b2m(&["status", "--json"]);
    run.ok();
    assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
    assert!(run.stdout.contains("\"up_to_date\""), "{}", run.stdout);
    assert_eq!(server.rows("ipm-db-v1.db").len(), 50);
    assert!(!journal.exists() || std::fs::metadata(&journal).is_ok_and(|m| m.len() == 0));
    server.b2m(&["upload", "ipm-db"]).ok();
    assert!(bucket.current_object("ipm-db").starts_with("dbs/ipm-db/ipm-db-v1."), "nothing new to publish");
});

// 12. A damaged local state is moved aside and rebuilt.
#[test]
fn a_corrupt_local_state_is_moved_aside_and_rebuilt() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 1);
    std::fs::write(server.path().join(".b2m/state.db"), vec![7u8; 8192]).expect("damage");
    let run = server.b2m(&["status", "--json"]);
    run.ok();
    assert!(run.stderr.contains("state.db") && run.stderr.contains("rebuilt"), "{}", run.stderr);
    assert!(run.stdout.contains("\"up_to_date\""), "{}", run.stdout);
    let aside = std::fs::read_dir(server.path().join(".b2m")).expect(".b2m").flatten().any(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        n.starts_with("state.db.damaged-")
    });
    assert!(aside, "the damaged file is kept aside");
    server.b2m(&["download", "ipm-db"]).ok();
}
