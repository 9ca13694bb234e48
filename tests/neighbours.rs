//! b2m beside what its users run: a server that writes rows and journals each statement, stopped
//! and started by b2m through `[server]` while it takes writes.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::common::*;
use rusqlite::Connection;

/// A real HTTP server process (tests/apps/journal_app.py) that confirms a row only after its
/// commit and its journal line.
pub(crate) struct App {
    dir: PathBuf,
    port: u16,
}

impl App {
    /// The app, installed in `project`'s root on a free port (not started).
    pub(crate) fn install(project: &Project) -> App {
        std::fs::write(project.path().join("app.py"), include_str!("apps/journal_app.py")).expect("app.py");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        App { dir: project.path().to_path_buf(), port }
    }

    /// `[server]` for b2m.toml: the app's own stop and start (and `running`, when asked).
    pub(crate) fn server_config(&self, running: bool) -> String {
        let running = if running { "running = \"python3 app.py running\"\n" } else { "" };
        format!("[server]\nstop = \"python3 app.py stop\"\nstart = \"python3 app.py start {}\"\n{running}timeout = 30\n", self.port)
    }

    fn app(&self, args: &[&str]) -> bool {
        std::process::Command::new("python3").arg("app.py").args(args).current_dir(&self.dir).status().expect("python3 app.py").success()
    }

    pub(crate) fn start(&self) {
        assert!(self.app(&["start", &self.port.to_string()]), "the app did not start: {}", self.log());
    }

    pub(crate) fn stop(&self) {
        assert!(self.app(&["stop"]), "the app did not stop");
    }

    pub(crate) fn running(&self) -> bool {
        self.app(&["running"])
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("app.log")).unwrap_or_default()
    }

    /// `POST /row/<value>`: true when the app confirmed the row (HTTP 200).
    pub(crate) fn post(&self, value: &str) -> bool {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(30)));
        if stream.write_all(format!("POST /row/{value} HTTP/1.0\r\nContent-Length: 0\r\n\r\n").as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        stream.read_to_string(&mut answer).is_ok() && answer.starts_with("HTTP/1.0 200")
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.app(&["stop"]);
    }
}

/// A client posting rows `w0`, `w1`… as fast as the app answers, keeping the ones confirmed.
struct Writer {
    stop: Arc<AtomicBool>,
    confirmed: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(app: &Arc<App>) -> Writer {
        let (stop, confirmed) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (app, stop2, confirmed2) = (app.clone(), stop.clone(), confirmed.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let value = format!("w{n}");
                n += 1;
                if app.post(&value) {
                    confirmed2.lock().expect("confirmed").push(value);
                } else {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        });
        Writer { stop, confirmed, thread: Some(thread) }
    }

    fn count(&self) -> usize {
        self.confirmed.lock().expect("confirmed").len()
    }

    /// Waits until `more` further rows are confirmed.
    fn wait_for(&self, more: usize) {
        let target = self.count() + more;
        let started = std::time::Instant::now();
        while self.count() < target {
            assert!(started.elapsed().as_secs() < 60, "the app confirmed too few rows");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("writer");
        }
        std::mem::take(&mut *self.confirmed.lock().expect("confirmed"))
    }
}

/// `v` of every row not soft-deleted, in id order.
fn live_rows(path: &std::path::Path) -> Vec<String> {
    let conn = Connection::open(path).expect("db");
    let mut stmt = conn.prepare("SELECT v FROM t WHERE deleted_at IS NULL ORDER BY id").expect("select");
    stmt.query_map([], |r| r.get(0)).expect("rows").map(|r| r.expect("row")).collect()
}

/// Issue 17 (1): a row the app confirmed while `upload` took its snapshot is in the published
/// version, the journal it sits in is not replayed twice, and `merge` carries every journal onto
/// the newer version: over 1,000 confirmed writes, none missing and none twice in the end.
#[test]
fn every_row_a_writing_server_confirmed_survives_upload_then_merge() {
    let bucket = Bucket::new(Backend::S3);
    let (dev, server) = crate::merge::shop(&bucket);
    let app = Arc::new(App::install(&server));
    server.append_config(&app.server_config(false));
    app.start();
    let writer = Writer::start(&app);
    writer.wait_for(300);
    // The server's project publishes what the app wrote, while it writes.
    server.b2m(&["upload", "ipm-db"]).ok();
    writer.wait_for(300);
    // Another project publishes a newer version meanwhile.
    dev.b2m(&["download", "ipm-db"]).ok();
    let newest = dev.files().into_iter().find(|f| f.ends_with(".db")).expect("dev's db");
    dev.insert_row(&newest, "INSERT INTO t(v) VALUES ('dev row')");
    dev.b2m(&["upload", "ipm-db"]).ok();
    writer.wait_for(300);
    server.b2m(&["merge", "ipm-db"]).ok();
    writer.wait_for(300);
    let confirmed = writer.finish();
    // What the app confirmed since the merge is published too.
    server.b2m(&["upload", "ipm-db"]).ok();
    app.stop();
    assert!(confirmed.len() >= 1000, "only {} rows confirmed", confirmed.len());
    let last = Project::new(&bucket);
    last.b2m(&["fetch-db-toml"]).ok();
    last.b2m(&["download", "ipm-db"]).ok();
    let file = last.files().into_iter().find(|f| f.ends_with(".db")).expect("published db");
    let rows = live_rows(&last.db(&file));
    let mut seen = std::collections::HashMap::new();
    for v in &rows {
        *seen.entry(v.as_str()).or_insert(0) += 1;
    }
    let missing: Vec<&String> = confirmed.iter().filter(|v| !seen.contains_key(v.as_str())).collect();
    let twice: Vec<(&&str, &i32)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty() && twice.is_empty(),
        "of {} confirmed rows, {} missing from the published {file} (first: {:?}), {} twice ({:?})",
        confirmed.len(),
        missing.len(),
        missing.first(),
        twice.len(),
        twice.first()
    );
    assert!(rows.contains(&"dev row".to_string()), "the other project's row is gone");
}

/// What a server does: run `sql` on its file and append it to the journal `journal`.
fn journaled(server: &Project, file: &str, journal: &str, sql: &str) {
    Connection::open(server.db(file)).expect("db").execute_batch(sql).expect("server writes");
    let path = server.db(journal);
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(sql);
    std::fs::write(path, text).expect("journal");
}

/// Issue 17 (1): merge replays every unarchived journal of the db, oldest first; one left beside
/// an older file of the db (`ipm-db-v1.sql` beside `ipm-db-v2.db`) is still the db's journal.
#[test]
fn merge_replays_the_journals_of_older_files_first() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = crate::merge::shop(&bucket);
    journaled(&server, "ipm-db-v1.db", "ipm-db-v1.sql", "INSERT INTO t(v) VALUES ('a');\n");
    server.b2m(&["upload", "ipm-db"]).ok();
    assert!(!server.db("ipm-db-v1.sql").exists(), "the published journal stayed beside the db: {:?}", server.files());
    // A journal an older b2m left beside the old name, its statement in the file but not published.
    journaled(&server, "ipm-db-v2.db", "ipm-db-v1.sql", "INSERT INTO t(id, v) VALUES (100, 'b');\n");
    journaled(&server, "ipm-db-v2.db", "ipm-db-v2.sql", "UPDATE t SET v = 'b, then c' WHERE id = 100;\n");
    dev.b2m(&["download", "ipm-db"]).ok();
    dev.insert_row("ipm-db-v2.db", "INSERT INTO t(v) VALUES ('dev row')");
    dev.b2m(&["upload", "ipm-db"]).ok();
    let run = server.b2m(&["merge", "ipm-db", "--json"]);
    run.ok();
    let merged: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!((merged["version"].as_u64(), merged["statements"].as_u64()), (Some(4), Some(2)), "{merged}");
    let rows = live_rows(&server.db("ipm-db-v4.db"));
    assert_eq!(rows.iter().filter(|v| *v == "a").count(), 1, "{rows:?}");
    assert!(rows.contains(&"b, then c".to_string()) && rows.contains(&"dev row".to_string()), "{rows:?}");
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v4.db"], "journals left beside the db");
}

/// Issue 17 (1): local changes that no journal statement accounts for would be dropped by the
/// replay: merge refuses, changing nothing, and says how to go on.
#[test]
fn merge_refuses_local_changes_no_journal_accounts_for() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = crate::merge::shop(&bucket);
    server.insert_row("ipm-db-v1.db", "INSERT INTO t(v) VALUES ('not journaled')");
    std::fs::write(server.db("ipm-db-v1.sql"), "\n").expect("an empty journal");
    dev.insert_row("ipm-db-v1.db", "INSERT INTO t(v) VALUES ('dev row')");
    dev.b2m(&["upload", "ipm-db"]).ok();
    let before = server.files();
    server.b2m(&["merge", "ipm-db"]).fails(1, "no journal statement accounts for").fails(1, "download ipm-db --force");
    assert_eq!(server.files(), before);
    assert!(server.rows("ipm-db-v1.db").contains(&"not journaled".to_string()));
    assert_eq!(bucket.current_meta("ipm-db")["version"], 2, "something was published");
    let row = server.status_row("ipm-db");
    assert_eq!((row["status"].as_str(), row["local_changes"].as_bool()), (Some("outdated_db"), Some(true)), "{row}");
}

/// Issue 17 (1): an upload with nothing written after its snapshot sends the database once.
#[test]
fn an_upload_with_no_commits_after_its_snapshot_sends_once() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = crate::merge::shop(&bucket);
    // A change of schema too: the copy's schema cookie must be the file's.
    journaled(&server, "ipm-db-v1.db", "ipm-db-v1.sql", "INSERT INTO t(v) VALUES ('a');\nCREATE INDEX t_v ON t(v);\n");
    let run = server.b2m(&["upload", "ipm-db"]);
    run.ok();
    assert!(!run.stderr.contains("took commits after the snapshot"), "{}", run.stderr);
    assert_eq!(bucket.version_objects("ipm-db").len(), 2, "{:?}", bucket.keys());
    assert_eq!(server.status_of("ipm-db"), "up_to_date");
}

/// `[server]` whose stop stops nothing: a reader of the database stays.
const STOP_NOTHING: &str = "[server]\nstop = \"true\"\nstart = \"true\"\ntimeout = 10\n";

/// Issue 17 (2): an upload beside a reader that `server.stop` does not stop refuses before its
/// commit, and says nothing was published (it was not).
#[test]
fn an_upload_beside_a_reader_server_stop_misses_publishes_nothing_and_says_so() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 2);
    server.insert("ipm-db-v1.db", "new");
    let reader = DbHolder::start(&server.db("ipm-db-v1.db"), &[], false);
    server.append_config(STOP_NOTHING);
    let run = server.b2m(&["upload", "ipm-db"]);
    run.fails(1, &format!("pid {}", reader.pid())).fails(1, "nothing was published");
    assert_eq!(bucket.current_meta("ipm-db")["version"], 1);
    let files: Vec<String> = server.files().into_iter().filter(|f| !f.ends_with("-wal") && !f.ends_with("-shm")).collect();
    assert_eq!(files, vec!["db.toml", "ipm-db-v1.db"]);
}

/// Issue 17 (2): a changeset that published, then could not swap the local file (a reader that
/// `server.stop` does not stop), exits 1 saying first that it published, then what is left.
#[test]
fn a_changeset_whose_swap_is_refused_says_first_that_it_published() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = published_pair(&bucket, 2);
    let name = crate::changesets::changeset(&dev, "add-row", "sql", "-- b2m: db = ipm-db\nINSERT INTO t(v) VALUES ('cs');\n");
    pull_scripts(&dev, &server);
    let reader = DbHolder::start(&server.db("ipm-db-v1.db"), &[], false);
    server.append_config(STOP_NOTHING);
    let run = server.b2m(&["execute-changeset", &name]);
    run.fails(1, &format!("pid {}", reader.pid()));
    let first = run.stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_default().to_string();
    assert!(first.starts_with(&format!("error: changeset `{name}` published `ipm-db` v2")), "{}", run.stderr);
    assert_eq!(bucket.current_meta("ipm-db")["version"], 2);
    // Nothing of v2 was placed beside the file the reader has.
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v1.db"]);
    drop(reader);
    server.b2m(&["status"]).ok();
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v2.db"]);
}

/// Issue 17 (2): a merge and an upload that published, then could not start the server again,
/// exit 1 saying first that they published.
#[test]
fn a_publish_whose_server_start_fails_says_first_that_it_published() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = crate::merge::shop(&bucket);
    server.append_config("[server]\nstop = \"true\"\nstart = \"false\"\ntimeout = 10\n");
    journaled(&server, "ipm-db-v1.db", "ipm-db-v1.sql", "INSERT INTO t(v) VALUES ('a');\n");
    dev.insert_row("ipm-db-v1.db", "INSERT INTO t(v) VALUES ('dev row')");
    dev.b2m(&["upload", "ipm-db"]).ok();
    let first_error = |run: &Run| run.stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_default().to_string();
    let run = server.b2m(&["merge", "ipm-db"]);
    assert!(run.code == 1 && first_error(&run).starts_with("error: merged `ipm-db` as v3"), "{}", run.stderr);
    assert_eq!(bucket.current_meta("ipm-db")["version"], 3);
    server.insert("ipm-db-v3.db", "more");
    let run = server.b2m(&["upload", "ipm-db"]);
    assert!(run.code == 1 && first_error(&run).starts_with("error: published `ipm-db` v4"), "{}", run.stderr);
    assert_eq!(bucket.current_meta("ipm-db")["version"], 4);
}

/// Issue 17 (3): with `server.running`, b2m starts only what it stopped: a server that was down
/// stays down through `download --force`, `download` and `upload`; one that ran runs again.
#[test]
fn a_stopped_server_is_left_stopped_and_a_running_one_started_again() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = crate::merge::shop(&bucket);
    let app = App::install(&server);
    server.append_config(&app.server_config(true));
    assert!(!app.running());
    server.insert_row("ipm-db-v1.db", "INSERT INTO t(v) VALUES ('dropped')");
    server.b2m(&["download", "ipm-db", "--force"]).ok();
    assert!(!app.running(), "`download --force` started a server that was not running");
    dev.insert_row("ipm-db-v1.db", "INSERT INTO t(v) VALUES ('dev row')");
    dev.b2m(&["upload", "ipm-db"]).ok();
    server.b2m(&["download", "ipm-db"]).ok();
    assert!(!app.running(), "`download` started a server that was not running");
    server.publish_row("ipm-db-v2.db", "local");
    assert!(!app.running(), "`upload` started a server that was not running");
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v3.db"]);
    // Running: stopped for the swap and started again, on the new file.
    app.start();
    assert!(app.post("while-running"));
    let run = server.b2m(&["upload", "ipm-db"]);
    run.ok();
    assert!(run.stderr.contains("stopping the server") && run.stderr.contains("starting the server"), "{}", run.stderr);
    assert!(app.running(), "the server that ran was not started again");
    assert!(app.post("after"), "{}", app.log());
    assert_eq!(server.b2m(&["server", "running"]).code, 0);
    app.stop();
    let run = server.b2m(&["server", "running"]);
    assert!(run.code == 1 && run.stdout.contains("not running"), "{} {}", run.stdout, run.stderr);
}

/// The newest file a swap kept for `stem` in `p`'s working folders.
fn kept_file(p: &Project, file: &str) -> PathBuf {
    let dbs = p.path().join("changeset/dbs");
    let mut found: Vec<PathBuf> =
        std::fs::read_dir(&dbs).expect("dbs").flatten().map(|e| e.path().join(file)).filter(|f| f.is_file()).collect();
    found.sort();
    found.pop().unwrap_or_else(|| panic!("no kept {file} under {}", dbs.display()))
}

/// Issue 17 (6): a file put back by hand with db.toml's name edited but its pin left: status names
/// the pin as the cause, not the file.
#[test]
fn status_names_a_pin_that_does_not_match_the_name() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = published_pair(&bucket, 2);
    dev.publish_row("ipm-db-v1.db", "v2 row");
    server.b2m(&["download", "ipm-db"]).ok();
    // The old README recipe: copy the kept file back, point db.toml's name at it.
    std::fs::copy(kept_file(&server, "ipm-db-v1.db"), server.db("ipm-db-v1.db")).expect("cp");
    let text = server.manifest_text().replace("\"ipm-db-v2.db\"", "\"ipm-db-v1.db\"");
    std::fs::write(server.manifest(), text).expect("sed");
    let row = server.status_row("ipm-db");
    let detail = row["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("the pin does not match the name") && detail.contains("b2m restore ipm-db"), "{row}");
}

/// Issue 17 (6): `b2m restore` puts the kept file back as its version, named and pinned: status
/// says `outdated_db` without local changes, and a download brings it forward again.
#[test]
fn restore_puts_the_kept_file_back_as_its_version() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = published_pair(&bucket, 2);
    dev.publish_row("ipm-db-v1.db", "v2 row");
    server.b2m(&["download", "ipm-db"]).ok();
    let v1_pin = dev.b2m(&["history", "ipm-db", "--json"]).stdout;
    let history: serde_json::Value = serde_json::from_str(&v1_pin).expect("json");
    let v1_sha = history["versions"][1]["sha256"].as_str().expect("v1 sha").to_string();
    let run = server.b2m(&["restore", "ipm-db", "--json"]);
    run.ok();
    let restored: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!((restored["version"].as_u64(), restored["local_changes"].as_bool()), (Some(1), Some(false)), "{restored}");
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v1.db"]);
    assert_eq!(server.rows("ipm-db-v1.db"), vec!["row 0", "row 1"]);
    assert!(server.manifest_text().contains(&format!("ipmdb = \"{v1_sha}\"")), "{}", server.manifest_text());
    let row = server.status_row("ipm-db");
    assert_eq!((row["status"].as_str(), row["local_changes"].as_bool()), (Some("outdated_db"), Some(false)), "{row}");
    server.b2m(&["download", "ipm-db"]).ok();
    assert_eq!(server.status_of("ipm-db"), "up_to_date");
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v2.db"]);
}

/// Runs the real `just` in `p` with `B2M` set to the b2m under test.
fn just(p: &Project, args: &[&str]) -> Run {
    let out = std::process::Command::new(just_bin())
        .args(args)
        .current_dir(p.path())
        .env("B2M", env!("CARGO_BIN_EXE_b2m"))
        .env_remove("B2M_REMOTE")
        .output()
        .expect("run just");
    Run::from(out)
}

/// Issue 17 (6): a project whose justfile has its own `run` and `start-prod` imports `b2m.just`
/// with the real just: nothing clashes, its `start-prod: db-preflight` runs the preflight first
/// and does not start when it fails, and `db-start-prod` run twice starts the server once.
#[test]
fn the_users_recipes_import_into_a_justfile_that_has_its_own_run() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = crate::merge::shop(&bucket);
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(repo.join("b2m.just"), server.path().join("b2m.just")).expect("b2m.just");
    std::fs::create_dir_all(server.path().join("hooks")).expect("hooks");
    std::fs::copy(repo.join("hooks/pre-start"), server.path().join("hooks/pre-start")).expect("pre-start");
    let app = App::install(&server);
    server.append_config(&app.server_config(true));
    // A start that is not safe to run twice by itself: it counts its runs.
    let start = format!("sh -c 'echo start >> starts.log && python3 app.py start {}'", app.port);
    std::fs::write(
        server.path().join("justfile"),
        format!(
            "set allow-duplicate-variables\nimport 'b2m.just'\n\nb2m_start_cmd := \"{}\"\n\n\
             # the project's own\nrun:\n    echo own run >> own.log\n\n\
             start-prod: db-preflight\n    {{{{b2m_start_cmd}}}}\n",
            start.replace('"', "\\\"")
        ),
    )
    .expect("justfile");
    let starts = || std::fs::read_to_string(server.path().join("starts.log")).unwrap_or_default().lines().count();
    let list = just(&server, &["--list"]);
    list.ok();
    assert!(list.stdout.contains("db-status") && list.stdout.contains("run") && list.stdout.contains("start-prod"), "{}", list.stdout);
    just(&server, &["run"]).ok();
    assert_eq!(std::fs::read_to_string(server.path().join("own.log")).expect("own run"), "own run\n");
    just(&server, &["db-status"]).ok();
    just(&server, &["start-prod"]).ok();
    assert!(app.running() && starts() == 1, "{}", app.log());
    // Twice: the second finds it running and starts nothing.
    let again = just(&server, &["db-start-prod"]);
    again.ok();
    assert!(again.stdout.contains("already runs") && starts() == 1, "{}{}", again.stdout, again.stderr);
    app.stop();
    just(&server, &["db-start-prod"]).ok();
    assert!(app.running() && starts() == 2);
    app.stop();
    // A preflight that stops the start: local rows behind a newer version, no journal.
    server.insert_row("ipm-db-v1.db", "INSERT INTO t(v) VALUES ('local')");
    dev.insert_row("ipm-db-v1.db", "INSERT INTO t(v) VALUES ('dev row')");
    dev.b2m(&["upload", "ipm-db"]).ok();
    let stopped = just(&server, &["start-prod"]);
    assert!(stopped.code != 0 && stopped.stderr.contains("outdated_db"), "{}", stopped.stderr);
    assert!(!app.running() && starts() == 2, "the server started after a failed preflight");
}

/// Issue 17 (6): `b2m init` git-ignores journals and changeset logs, and `-q` prints nothing.
#[test]
fn init_ignores_journals_and_logs_and_is_quiet_with_q() {
    let dir = tempfile::tempdir().expect("dir");
    let run = Run::from(b2m_command(dir.path()).args(["init", "-q"]).output().expect("init"));
    run.ok();
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""));
    let ignored = std::fs::read_to_string(dir.path().join(".gitignore")).expect(".gitignore");
    for line in ["db/all_dbs/*.sql", "changeset/logs/", ".b2m/"] {
        assert!(ignored.lines().any(|l| l == line), "{line} is not ignored:\n{ignored}");
    }
}
