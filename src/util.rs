//! The small helpers every layer uses: failpoints for the crash tests, the clock, this host, TOML
//! text parsed with errors that name the line and column.

use toml_edit::DocumentMut;

use crate::error::{Error, Result};

/// A crash point for tests: when `B2M_FAILPOINT` names this point, the process dies here at once,
/// as a `kill -9` would, so tests can prove that every step is recoverable. `<point>:pause=<ms>`
/// pauses there instead (to hold a lease across a long step); `<point>:panic` panics there (the
/// screen's terminal must come back even then).
pub fn failpoint(name: &str) {
    let Ok(spec) = std::env::var("B2M_FAILPOINT") else { return };
    if spec.strip_suffix(":panic") == Some(name) {
        panic!("failpoint `{name}`");
    }
    let (point, pause) = spec.split_once(":pause=").map_or((spec.as_str(), None), |(p, ms)| (p, ms.parse::<u64>().ok()));
    if point != name {
        return;
    }
    match pause {
        Some(ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
        None => {
            eprintln!("b2m: failpoint `{name}`");
            std::process::abort();
        }
    }
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// This machine's host name.
pub fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// `user@host`, for metadata and leases.
pub fn user_at_host() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", host_name())
}

/// Parses TOML text, turning an error into one line that names the file, line and column.
pub fn parse_toml(text: &str, origin: &str) -> Result<DocumentMut> {
    text.parse::<DocumentMut>().map_err(|e| {
        let (line, col) = e.span().map(|span| line_col(text, span.start)).unwrap_or((1, 1));
        let message = e.message().lines().next().unwrap_or("invalid TOML").trim().to_string();
        Error::config_hint(
            format!("`{origin}` is not valid TOML at line {line}, column {col}: {message}"),
            format!("fix `{origin}` and run the command again"),
        )
    })
}

/// The line and column (both from 1) of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
