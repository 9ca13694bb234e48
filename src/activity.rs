//! The activity log: `.b2m/log/b2m.log`, one JSON line per command that may change state (time,
//! user@host, the command line, the outcome, what it did and what decided it — the command's
//! result, with the statuses that chose each step — and the bucket requests it made), so that
//! anyone can tell afterwards why a server did what it did at 03:00. Rotated by size (`b2m.log.1`
//! … `b2m.log.3` kept); every credential b2m knows of is redacted from each line, whatever `-v`.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The log's size past which it is rotated.
pub const MAX_BYTES: u64 = 1 << 20;
/// Rotated files kept beside the current one.
pub const KEEP: usize = 3;

/// One command's line.
#[derive(Debug, Serialize)]
pub struct Line {
    /// RFC 3339.
    pub at: String,
    /// `user@host`.
    pub by: String,
    /// The command line, after `b2m`.
    pub command: Vec<String>,
    /// `ok`, or the error's kind (`outdated_db`, `conflict`, `unreachable`…).
    pub outcome: String,
    /// The error's message, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The command's result, as `--json` gives it: what it did, and the statuses that decided it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Bucket requests made.
    pub requests: u64,
}

/// The log file of a project whose state folder is `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("log").join("b2m.log")
}

/// Appends `line` to the log under `state_dir`, rotating it first when it has grown past
/// `max_bytes`. A failure to log is the caller's to report as a warning: it never fails the
/// command it records.
pub fn append(state_dir: &Path, line: &Line, max_bytes: u64) -> io::Result<()> {
    let file = path(state_dir);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::fs::metadata(&file).is_ok_and(|m| m.len() >= max_bytes) {
        rotate(&file)?;
    }
    let text = serde_json::to_string(line).map_err(io::Error::other)?;
    let text = crate::telemetry::redact(&text);
    let mut out = OpenOptions::new().create(true).append(true).open(&file)?;
    out.write_all(format!("{text}\n").as_bytes())
}

/// `b2m.log` → `b2m.log.1` → … → `b2m.log.{KEEP}`, the oldest dropped.
fn rotate(file: &Path) -> io::Result<()> {
    let numbered = |n: usize| PathBuf::from(format!("{}.{n}", file.display()));
    match std::fs::remove_file(numbered(KEEP)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    for n in (1..KEEP).rev() {
        match std::fs::rename(numbered(n), numbered(n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(file, numbered(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> Line {
        Line {
            at: "2026-12-04T03:00:00.000Z".into(),
            by: "ops@server".into(),
            command: vec!["upload".into(), format!("db-{n}")],
            outcome: "ok".into(),
            error: None,
            result: Some(serde_json::json!({"name": format!("db-{n}"), "version": n})),
            requests: 7,
        }
    }

    #[test]
    fn lines_append_and_the_log_rotates_by_size_keeping_a_few() {
        let dir = tempfile::tempdir().expect("dir");
        for n in 0..40 {
            append(dir.path(), &line(n), 300).expect("append");
        }
        let log = path(dir.path());
        let current = std::fs::read_to_string(&log).expect("log");
        assert!(current.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "{current}");
        assert!(current.contains("db-39"), "{current}");
        for n in 1..=KEEP {
            assert!(PathBuf::from(format!("{}.{n}", log.display())).is_file(), "b2m.log.{n}");
        }
        assert!(!PathBuf::from(format!("{}.{}", log.display(), KEEP + 1)).exists());
        assert!(std::fs::metadata(&log).expect("log").len() < 600);
    }
}
