//! The screen, `b2m` in a terminal (issue 19, item 1): drawn and driven on ratatui's test backend
//! (the table, a progress line, a question, history, help), then the real binary in a real
//! terminal (tmux) against a real S3 server behind a slow link.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use b2m::engine::history::{History, Version};
use b2m::engine::status::{DbStatus, Status};
use b2m::screen::app::{Action, App, Loaded, Op, Overlay, Publish};
use b2m::screen::{ops, view};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::common::proxy::Proxy;
use crate::common::*;

fn db(name: &str, status: Status, versions: (Option<u64>, Option<u64>), local_changes: bool, locked_by: Option<&str>) -> DbStatus {
    DbStatus {
        name: name.into(),
        key: name.replace('-', ""),
        status,
        local_version: versions.0,
        remote_version: versions.1,
        local_changes,
        locked_by: locked_by.map(str::to_string),
        path: Some(format!("/srv/app/db/all_dbs/{name}-v{}.db", versions.0.unwrap_or(1))),
        detail: None,
        local_content: None,
        remote_id: None,
    }
}

fn two_hours_ago() -> String {
    (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339()
}

/// Two databases as a refresh brings them: one with local changes to upload, one behind the
/// bucket with a lease held on it.
fn sample() -> App {
    let mut app = App::new("s3://team-bucket/dbs");
    let rows = vec![
        db("ipm-db", Status::ReadyToUpload, (Some(3), Some(3)), true, None),
        db("emoji-db", Status::OutdatedDb, (Some(1), Some(2)), false, Some("alice@laptop (upload, 25s left)")),
    ];
    app.on_loaded(Loaded::Status { rows, requests: 2, at: "10:12:03".into() });
    let publish = Publish { by: "bob@ci".into(), at: two_hours_ago(), made_by: "changeset".into(), size: 3 << 19 };
    app.on_loaded(Loaded::LastPublish { found: vec![("ipm-db".into(), 3, publish)], requests: 1 });
    app
}

/// The screen as text, one string per line.
fn text(app: &App) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    terminal.draw(|frame| view::draw(frame, app)).expect("draw");
    let buffer = terminal.backend().buffer().clone();
    (0..buffer.area.height)
        .map(|y| (0..buffer.area.width).map(|x| buffer[(x, y)].symbol().to_string()).collect::<String>().trim_end().to_string())
        .collect()
}

fn line_with<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines.iter().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle:?} in\n{}", lines.join("\n")))
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[test]
fn the_table_fits_80_by_24_with_every_column_the_design_names() {
    let lines = text(&sample());
    assert_eq!(lines.len(), 24);
    assert!(lines[0].contains("s3://team-bucket/dbs") && lines[0].contains("refreshed 10:12:03 · 3 requests"), "{}", lines[0]);
    let header = line_with(&lines, "STATUS");
    for column in ["DB", "LOCAL", "BUCKET", "LEASE", "CHG", "LAST PUBLISH"] {
        assert!(header.contains(column), "{header}");
    }
    let ipm = line_with(&lines, "ipm-db ");
    assert!(ipm.starts_with("│> ipm-db"), "the selected row is marked: {ipm}");
    for cell in ["ready_to_upload", "v3    v3", "yes", "bob 2h changeset"] {
        assert!(ipm.contains(cell), "{cell:?} missing: {ipm}");
    }
    let emoji = line_with(&lines, "emoji-db");
    for cell in ["outdated_db", "v1    v2", "alice"] {
        assert!(emoji.contains(cell), "{cell:?} missing: {emoji}");
    }
    line_with(&lines, "v3 published by bob@ci");
    line_with(&lines, "Pending changesets");
    line_with(&lines, "Fleet");
    assert!(lines[23].starts_with("u upload  d download") && lines[23].contains("q quit"), "{}", lines[23]);
}

#[test]
fn a_running_upload_draws_bytes_speed_and_time_left_under_its_row() {
    let mut app = sample();
    assert_eq!(app.on_key(key('u')), vec![Action::Start(Op::Upload, "ipm-db".into())]);
    app.started("ipm-db", Op::Upload);
    let t0 = Instant::now();
    app.on_progress("ipm-db", "upload", "bytes", 0, 100 << 20, t0);
    app.on_progress("ipm-db", "upload", "bytes", 40 << 20, 100 << 20, t0 + Duration::from_secs(2));
    let lines = text(&app);
    let at = lines.iter().position(|l| l.contains("ipm-db ")).expect("row");
    assert!(
        lines[at + 1].contains("└ upload [#####-------]  40% 40.0 MiB / 100.0 MiB · 20.0 MiB/s · 3s left"),
        "the line under the row: {}",
        lines[at + 1]
    );
    // A second operation on the same database is refused until the first ends.
    assert_eq!(app.on_key(key('d')), vec![]);
    assert!(line_with(&text(&app), "ipm-db: its upload is still running").contains("x"));
    assert_eq!(app.on_key(key('x')), vec![Action::Cancel("ipm-db".into())]);
    app.cancelling("ipm-db");
    assert!(text(&app)[at + 1].contains("(cancelling)"));
    let outcome = ops::outcome_of(&Op::Upload, Some(130), b"", &Default::default());
    assert_eq!(app.on_finished("ipm-db", outcome), vec![Action::Refresh]);
    line_with(&text(&app), "ipm-db: upload cancelled: stopped as Ctrl-C stops it");
    assert!(app.running.is_empty());
}

#[test]
fn destructive_keys_ask_first_and_quit_asks_while_an_operation_runs() {
    let mut app = sample();
    assert_eq!(app.on_key(key('D')), vec![], "download --force waits for an answer");
    let lines = text(&app);
    line_with(&lines, "Are you sure?");
    line_with(&lines, "[y] yes    [n] no");
    assert!(lines.join(" ").contains("dropping its local changes"), "{}", lines.join("\n"));
    assert_eq!(app.on_key(key('n')), vec![]);
    assert_eq!(app.overlay, Overlay::None);
    app.on_key(key('D'));
    assert_eq!(app.on_key(key('y')), vec![Action::Start(Op::DownloadForce, "ipm-db".into())]);
    assert_eq!(Op::DownloadForce.args("ipm-db"), ["download", "ipm-db", "--force"]);

    assert_eq!(app.on_key(key('q')), vec![Action::Quit], "nothing runs: q quits at once");
    app.started("emoji-db", Op::Download);
    assert_eq!(app.on_key(key('q')), vec![]);
    assert!(text(&app).join(" ").contains("This cancels the download of emoji-db"));
    assert_eq!(app.on_key(code(KeyCode::Esc)), vec![]);
    app.on_key(key('q'));
    assert_eq!(app.on_key(key('y')), vec![Action::Quit]);
    assert_eq!(app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), vec![Action::Interrupt]);
    // `c` on a row whose operation runs cancels it, after asking; elsewhere it lists changesets.
    app.on_key(code(KeyCode::Down));
    app.on_key(key('c'));
    assert!(matches!(&app.overlay, Overlay::Confirm(c) if c.question.starts_with("Cancel the download of emoji-db?")), "{:?}", app.overlay);
    assert_eq!(app.on_key(key('y')), vec![Action::Cancel("emoji-db".into())]);
    app.on_key(code(KeyCode::Up));
    assert_eq!(app.on_key(key('c')), vec![Action::LoadChangesets]);
}

fn version(version: u64, current: bool, made_by: &str) -> Version {
    Version {
        version,
        sha256: format!("{version:064}"),
        size: 1 << 20,
        created_at: "2026-12-03T09:30:00Z".into(),
        created_by: "carol@build".into(),
        made_by: made_by.into(),
        changeset: None,
        parent: version.checked_sub(1).filter(|v| *v > 0),
        schema_changed: false,
        current,
        imported: None,
    }
}

#[test]
fn history_lists_versions_and_a_rollback_asks_first() {
    let mut app = sample();
    assert_eq!(app.on_key(key('h')), vec![Action::LoadHistory("ipm-db".into())]);
    line_with(&text(&app), "reading the bucket…");
    let versions = vec![version(3, true, "changeset"), version(2, false, "upload"), version(1, false, "upload")];
    app.on_loaded(Loaded::History(History { name: "ipm-db".into(), versions, complete: true, orphans: 0, trimmed: None }));
    let lines = text(&app);
    line_with(&lines, "History of ipm-db");
    assert!(line_with(&lines, "v3 *").contains("2026-12-03 09:30") && line_with(&lines, "v3 *").contains("carol@build"));
    line_with(&lines, "v1 ");
    assert_eq!(app.on_key(key('b')), vec![], "the current version is no rollback");
    app.on_key(code(KeyCode::Down));
    app.on_key(key('b'));
    assert!(text(&app).join(" ").contains("Roll ipm-db back to v2?"));
    assert_eq!(app.on_key(key('y')), vec![Action::Start(Op::Rollback(2), "ipm-db".into())]);
    assert_eq!(Op::Rollback(2).args("ipm-db"), ["rollback", "ipm-db", "--to", "2"]);
    app.on_key(key('?'));
    let help = text(&app);
    line_with(&help, "upload the selected database");
    line_with(&help, "quit (asks first while an operation runs)");
    app.on_key(code(KeyCode::Esc));
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn an_operation_ends_in_the_command_s_own_words() {
    let refused = br#"{"error":{"kind":"local_changes","message":"ipm-db has local changes","hint":"merge them"}}"#;
    assert_eq!(ops::outcome_of(&Op::Download, Some(1), refused, &Default::default()), Err("ipm-db has local changes; merge them".into()));
    let said = std::collections::VecDeque::from(vec!["error: the bucket is unreachable".to_string()]);
    assert_eq!(ops::outcome_of(&Op::Download, Some(1), b"", &said), Err("error: the bucket is unreachable".into()));
    assert_eq!(ops::outcome_of(&Op::Upload, Some(0), br#"{"uploaded":true,"version":4}"#, &said), Ok("upload done: published v4".into()));
    assert_eq!(ops::parse_progress("b2m-progress\tupload\tbytes\t5\t10"), Some(("upload".into(), "bytes".into(), 5, 10)));
    assert_eq!(ops::parse_progress("warning: b2m-progress"), None);
}

/// A real terminal: tmux on a private socket, 80×24, running a script that starts b2m and then
/// says how it ended and what the terminal's modes are.
struct Tmux {
    socket: String,
    out: tempfile::TempDir,
}

impl Tmux {
    fn start(project: &Project, env: &[(&str, &str)]) -> Tmux {
        let out = tempfile::tempdir().expect("dir");
        let mut script = format!("cd '{}'\n", project.path().display());
        let base = [
            ("B2M_ACCESS_KEY_ID", ACCESS_KEY),
            ("B2M_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_CONFIG_FILE", "/nonexistent/b2m-test-aws-config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/b2m-test-aws-credentials"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ];
        for (k, v) in base.iter().chain(env) {
            script.push_str(&format!("export {k}='{v}'\n"));
        }
        let stty = out.path().join("stty.txt");
        script.push_str(&format!("'{}' -v\necho \"EXIT=$?\"\nstty -a > '{}'\nsleep 600\n", env!("CARGO_BIN_EXE_b2m"), stty.display()));
        std::fs::write(out.path().join("run.sh"), script).expect("script");
        let socket = format!("b2m-test-{}-{}", std::process::id(), out.path().file_name().and_then(|n| n.to_str()).unwrap_or("x"));
        let tmux = Tmux { socket, out };
        let run = tmux.path_of("run.sh");
        tmux.run(&["new-session", "-d", "-s", "screen", "-x", "80", "-y", "24", "sh", &run]);
        tmux
    }

    fn path_of(&self, name: &str) -> String {
        self.out.path().join(name).display().to_string()
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new(tmux_bin()).args(["-L", &self.socket, "-f", "/dev/null"]).args(args).output().expect("tmux");
        assert!(output.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.run(&["send-keys", "-t", "screen", k]);
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn capture(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "screen"])
    }

    /// Waits (up to a minute) until the screen shows what `ready` looks for; returns it.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.capture();
            if ready(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "the screen never showed {what}:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// After b2m ended: its exit code, and whether the terminal is back (cooked mode, echo, the
    /// main screen).
    fn ended(&self) -> (String, bool) {
        let screen = self.wait_for("b2m's end", |s| s.contains("EXIT="));
        let code = screen.lines().find_map(|l| l.strip_prefix("EXIT=")).unwrap_or_default().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        let stty = loop {
            match std::fs::read_to_string(self.out.path().join("stty.txt")) {
                Ok(text) if !text.is_empty() => break text,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => panic!("no stty output"),
            }
        };
        let words: Vec<&str> = stty.split_whitespace().collect();
        let cooked = ["icanon", "echo", "isig", "icrnl"].iter().all(|w| words.contains(w));
        let main_screen = self.run(&["display-message", "-p", "-t", "screen", "#{alternate_on}"]).trim() == "0";
        (code, cooked && main_screen)
    }

    /// Keeps what the screen showed, for the record (`target/screen-captures/`).
    fn keep(&self, name: &str, screen: &str) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screen-captures");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{name}.txt")), screen);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new(tmux_bin()).args(["-L", &self.socket, "kill-server"]).output();
    }
}

/// A project on s3s-fs behind a proxy (to slow the link down), with `emoji-db` up to date and
/// `ipm-db` (24 MiB, every row rewritten) ready to upload; b2m sends it in 5 MiB parts, one at a
/// time.
fn ready_to_upload() -> (S3Server, Proxy, Project) {
    let server = S3Server::start();
    let proxy = Proxy::start(&server.endpoint);
    let p = Project::with_remote(&format!("s3://{BUCKET}/{PREFIX}"), Some(proxy.endpoint.clone()));
    p.create_big_db("ipmdb", "ipm-db-v1.db", 6 * 1024);
    p.b2m(&["upload", "ipm-db"]).ok();
    p.create_db("emojidb", "emoji-db-v1.db", 3);
    p.b2m(&["upload", "emoji-db"]).ok();
    // Every row rewritten: versions are stored as pages, and a publish sends what changed.
    let conn = rusqlite::Connection::open(p.db("ipm-db-v1.db")).expect("db");
    conn.execute("UPDATE t SET v = hex(randomblob(2000))", []).expect("rewrite");
    drop(conn);
    assert_eq!(p.status_of("ipm-db"), "ready_to_upload");
    (server, proxy, p)
}

const SLOW_PARTS: [(&str, &str); 2] = [("B2M_PART_SIZE_MIB", "5"), ("B2M_PARTS_IN_FLIGHT", "1")];

fn row_of<'a>(screen: &'a str, name: &str) -> &'a str {
    screen.lines().find(|l| l.contains(&format!(" {name} "))).unwrap_or_default()
}

#[test]
fn the_real_binary_in_tmux_uploads_refuses_in_the_command_s_words_shows_history_and_restores_the_terminal() {
    let (_server, proxy, p) = ready_to_upload();
    let tmux = Tmux::start(&p, &SLOW_PARTS);
    let list = tmux.wait_for("both databases and who published them", |s| {
        s.contains("refreshed") && row_of(s, "ipm-db").contains("ready_to_upload") && row_of(s, "emoji-db").contains("upload")
    });
    tmux.keep("1-list", &list);
    assert!(row_of(&list, "emoji-db").contains("> emoji-db"), "the first row is selected:\n{list}");
    // Move to ipm-db and upload it through a slow link: a progress line appears under its row.
    proxy.set_latency(Duration::from_millis(400));
    tmux.keys(&["Down", "u"]);
    let moving = tmux.wait_for("a progress line", |s| s.contains("└ upload [") && s.contains("MiB/s"));
    tmux.keep("2-upload", &moving);
    proxy.set_latency(Duration::ZERO);
    let done = tmux.wait_for("ipm-db up to date at v2", |s| {
        s.contains("ipm-db: upload done: published v2") && row_of(s, "ipm-db").contains("up_to_date")
    });
    assert!(row_of(&done, "ipm-db").contains("v2    v2"), "{done}");
    // A refresh costs what `b2m status` costs.
    let status_requests = p.status()["requests"].as_u64();
    assert_eq!(status_requests, Some(2));
    tmux.keys(&["r"]);
    tmux.wait_for("a refresh of 2 requests", |s| s.lines().next().is_some_and(|l| l.contains("· 2 requests")));
    // A refusal reads as the command's.
    p.insert("ipm-db-v2.db", "another");
    let refusal = p.b2m(&["--json", "download", "ipm-db"]);
    let answer: serde_json::Value = serde_json::from_str(&refusal.stdout).expect("json error");
    let message = answer["error"]["message"].as_str().expect("message").to_string();
    tmux.keys(&["d"]);
    let refused = tmux.wait_for("the download's refusal", |s| s.contains(&format!("ipm-db: {}", &message[..message.len().min(60)])));
    assert!(!refused.contains("└ download"), "{refused}");
    // History of the selected database.
    tmux.keys(&["h"]);
    let history = tmux.wait_for("ipm-db's history", |s| s.contains("History of ipm-db") && s.contains("v2 *") && s.contains("v1 "));
    tmux.keep("3-history", &history);
    tmux.keys(&["Escape", "q"]);
    let (code, restored) = tmux.ended();
    assert_eq!((code.as_str(), restored), ("0", true), "{}", tmux.capture());
    assert!(tmux.capture().contains("while operations ran"), "-v says how often the screen drew");
}

#[test]
fn a_cancelled_upload_leaves_what_ctrl_c_leaves_and_ctrl_c_and_a_panic_give_the_terminal_back() {
    let (server, proxy, p) = ready_to_upload();
    let before = p.status_row("ipm-db");
    let tmux = Tmux::start(&p, &SLOW_PARTS);
    tmux.wait_for("the table", |s| row_of(s, "ipm-db").contains("ready_to_upload"));
    proxy.set_latency(Duration::from_millis(400));
    tmux.keys(&["Down", "u"]);
    tmux.wait_for("a progress line", |s| s.contains("└ upload ["));
    tmux.keys(&["x"]);
    tmux.wait_for("the cancel", |s| s.contains("ipm-db: upload cancelled"));
    proxy.set_latency(Duration::ZERO);
    let after = p.status_row("ipm-db");
    assert_eq!((after["status"].as_str(), after["remote_version"].as_u64()), (Some("ready_to_upload"), before["remote_version"].as_u64()));
    assert!(after["locked_by"].is_null(), "the lease was released: {after}");
    let tmp = p.path().join(".b2m/tmp");
    let left: Vec<PathBuf> = std::fs::read_dir(&tmp).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    tmux.keys(&["C-c"]);
    let (code, restored) = tmux.ended();
    assert_eq!((code.as_str(), restored), ("130", true), "{}", tmux.capture());
    drop(tmux);

    let tmux = Tmux::start(&p, &[("B2M_FAILPOINT", "screen-key:panic")]);
    tmux.wait_for("the table", |s| s.contains("refreshed"));
    tmux.keys(&["j"]);
    let (code, restored) = tmux.ended();
    assert!(code != "0" && restored, "exit {code}, terminal restored: {restored}\n{}", tmux.capture());
    drop(server);
}

#[test]
fn without_a_terminal_plain_b2m_prints_status() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 1);
    let plain = server.b2m(&[]);
    plain.ok();
    assert_eq!(plain.stdout, server.b2m(&["status"]).stdout);
    let json: serde_json::Value = serde_json::from_str(&server.b2m(&["--json"]).stdout).expect("json");
    assert_eq!(json["dbs"][0]["status"], "up_to_date");
}
