//! A real server process beside b2m: it opens a fresh connection by the name its db.toml gave it at
//! start for every request, writing or reading, while b2m uploads or downloads. With `[server]`
//! configured, no row is lost, its log shows no error, and it comes back on the new file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;

/// The server: reads db.toml once at start (as real servers do), then serves "requests" every
/// 10 ms, each through a fresh connection: `write` inserts a numbered row (in WAL mode;
/// `write-rollback` in rollback-journal mode), `read` counts rows.
/// On SIGTERM it finishes the request in hand and exits. Errors go to `err.log`.
const SERVER: &str = r#"
import os, signal, sqlite3, sys, time, tomllib
mode, root = sys.argv[1], sys.argv[2]
with open(os.path.join(root, "db/all_dbs/db.toml"), "rb") as f:
    name = tomllib.load(f)["db"]["ipmdb"]
path = os.path.join(root, "db/all_dbs", name)
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
with open(os.path.join(root, "served.log"), "a") as log:
    log.write(f"start {name}\n"); log.flush()
    n = int(open(os.path.join(root, "counter")).read()) if os.path.exists(os.path.join(root, "counter")) else 0
    while not stop:
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=5)
            if mode.startswith("write"):
                conn.execute("PRAGMA journal_mode=" + ("DELETE" if mode == "write-rollback" else "WAL"))
                conn.execute("INSERT INTO t(v) VALUES (?)", (f"request {n + 1}",))
                n += 1
                open(os.path.join(root, "counter"), "w").write(str(n))
            else:
                conn.execute("SELECT count(*) FROM t").fetchone()
                n += 1
            conn.close()
        except Exception as e:
            with open(os.path.join(root, "err.log"), "a") as err:
                err.write(f"{name}: {e!r}\n")
        time.sleep(0.01)
    log.write(f"stop {name} after {n}\n")
"#;

/// Writes the server and its start/stop scripts into `p`, and `[server]` into its b2m.toml.
fn install_server(p: &Project, mode: &str) {
    let root = p.path();
    std::fs::write(root.join("server.py"), SERVER).expect("server.py");
    let start = format!(
        "#!/bin/sh\ncd \"$(dirname \"$0\")\"\nnohup python3 server.py {mode} \"$PWD\" >/dev/null 2>>err.log &\necho $! > server.pid\n"
    );
    std::fs::write(root.join("start.sh"), start).expect("start.sh");
    let stop = "#!/bin/sh\ncd \"$(dirname \"$0\")\"\npid=$(cat server.pid)\nkill -TERM \"$pid\"\nwhile kill -0 \"$pid\" 2>/dev/null; do sleep 0.02; done\n";
    std::fs::write(root.join("stop.sh"), stop).expect("stop.sh");
    p.append_config(&format!(
        "[server]\nstop = \"sh {}\"\nstart = \"sh {}\"\ntimeout = 30\n",
        root.join("stop.sh").display(),
        root.join("start.sh").display()
    ));
}

fn run_script(p: &Project, script: &str) {
    let status = std::process::Command::new("sh").arg(p.path().join(script)).status().expect("sh");
    assert!(status.success(), "{script} failed");
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn counter(root: &Path) -> u64 {
    std::fs::read_to_string(root.join("counter")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn served(root: &Path) -> String {
    std::fs::read_to_string(root.join("served.log")).unwrap_or_default()
}

fn errors(root: &Path) -> String {
    std::fs::read_to_string(root.join("err.log")).unwrap_or_default()
}

#[test]
fn an_upload_beside_a_writing_server_loses_no_row_and_the_server_comes_back_on_the_new_file() {
    let bucket = Bucket::new(Backend::S3);
    let (_dev, server) = published_pair(&bucket, 1);
    install_server(&server, "write");
    run_script(&server, "start.sh");
    let root: PathBuf = server.path().to_path_buf();
    wait_for("the server's first rows", || counter(&root) >= 20);
    let run = server.b2m(&["upload", "ipm-db"]);
    run.ok();
    assert!(run.stderr.contains("stopping the server") && run.stderr.contains("starting the server"), "{}", run.stderr);
    wait_for("the server to start again on v2", || served(&root).contains("start ipm-db-v2.db"));
    let after = counter(&root);
    wait_for("rows written to v2", || counter(&root) >= after + 20);
    run_script(&server, "stop.sh");
    assert_eq!(errors(&root), "", "the server saw no error");
    assert!(!server.db("ipm-db-v1.db").exists(), "the old name is gone once the server no longer uses it");
    let rows = server.rows("ipm-db-v2.db");
    let n = counter(&root);
    let expected: Vec<String> = std::iter::once("row 0".to_string()).chain((1..=n).map(|i| format!("request {i}"))).collect();
    assert_eq!(rows, expected, "every request's row, before and after the swap, in order, none lost");
    // What the upload published is a prefix of it; the rest is new local data.
    assert_eq!(server.status_of("ipm-db"), "ready_to_upload");
}

#[test]
fn a_download_beside_a_reading_server_swaps_the_file_between_its_requests() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = published_pair(&bucket, 1);
    dev.publish_row("ipm-db-v1.db", "new");
    install_server(&server, "read");
    run_script(&server, "start.sh");
    let root: PathBuf = server.path().to_path_buf();
    wait_for("the server's first requests", || served(&root).contains("start ipm-db-v1.db") && counter(&root) == 0);
    std::thread::sleep(Duration::from_millis(200));
    // Preflight: brings v2 in, stopping the server for the swap, and leaves the start to its caller.
    let run = server.b2m(&["preflight", "--json"]);
    run.ok();
    assert!(run.stdout.contains("\"stopped_server\": true"), "{}", run.stdout);
    assert!(served(&root).contains("stop ipm-db-v1.db"), "{}", served(&root));
    assert!(!served(&root).contains("start ipm-db-v2.db"), "preflight never starts the server");
    run_script(&server, "start.sh");
    wait_for("the server on v2", || served(&root).contains("start ipm-db-v2.db"));
    std::thread::sleep(Duration::from_millis(200));
    run_script(&server, "stop.sh");
    assert_eq!(errors(&root), "", "the server saw no error");
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v2.db"]);
    assert_eq!(server.status_of("ipm-db"), "up_to_date");
}

/// A server that writes every 10 ms into a 64 MiB db while b2m uploads it: SQLite's backup,
/// copied in steps, starts again whenever another process commits between two steps, so a busy
/// server could keep the snapshot from ever finishing. The upload must finish (the server is
/// then stopped for the swap), and no row may be lost, in WAL and in rollback-journal mode.
fn an_upload_finishes_beside_a_server_that_keeps_writing(mode: &str) {
    let bucket = Bucket::new(Backend::Local);
    let dev = Project::new(&bucket);
    dev.create_big_db("ipmdb", "ipm-db-v1.db", 64 * 256);
    dev.b2m(&["upload", "ipm-db"]).ok();
    let server = Project::new(&bucket);
    server.b2m(&["fetch-db-toml"]).ok();
    server.b2m(&["download", "ipm-db"]).ok();
    install_server(&server, mode);
    run_script(&server, "start.sh");
    let root: PathBuf = server.path().to_path_buf();
    wait_for("the server's first rows", || counter(&root) >= 20);
    let mut upload = b2m_command(server.path()).args(["upload", "ipm-db"]).stderr(std::process::Stdio::piped()).spawn().expect("b2m");
    let started = Instant::now();
    let finished = loop {
        if let Some(status) = upload.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = upload.kill();
            let _ = upload.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(upload.stderr.take().expect("stderr")).unwrap_or_default();
    if finished.is_none() {
        run_script(&server, "stop.sh");
        panic!("the upload beside a writing server ({mode}) did not finish in 120 s: {stderr}");
    }
    assert!(finished.is_some_and(|s| s.success()), "{stderr}");
    wait_for("the server to start again on v2", || served(&root).contains("start ipm-db-v2.db"));
    let after = counter(&root);
    wait_for("rows written to v2", || counter(&root) >= after + 5);
    run_script(&server, "stop.sh");
    assert_eq!(errors(&root), "", "the server saw no error");
    let requests: Vec<String> = server.rows("ipm-db-v2.db").into_iter().filter(|r| r.starts_with("request ")).collect();
    let expected: Vec<String> = (1..=counter(&root)).map(|i| format!("request {i}")).collect();
    assert_eq!(requests, expected, "every request's row, in order, none lost");
}

#[test]
fn an_upload_finishes_beside_a_server_that_keeps_writing_in_wal_mode() {
    an_upload_finishes_beside_a_server_that_keeps_writing("write");
}

#[test]
fn an_upload_finishes_beside_a_server_that_keeps_writing_in_rollback_mode() {
    an_upload_finishes_beside_a_server_that_keeps_writing("write-rollback");
}
