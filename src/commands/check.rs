//! `b2m check [--offline]`.

use crate::engine::Context;
use crate::engine::check::{self, Level};
use crate::error::Result;

/// Prints every finding; exit 1 when any is an error.
pub fn run(ctx: &Context, offline: bool) -> Result<u8> {
    let checked = check::check(ctx, offline)?;
    ctx.out.result(&checked, || {
        let mut lines: Vec<String> = checked
            .findings
            .iter()
            .map(|f| format!("{} {}: {}", if f.level == Level::Error { "FAIL" } else { "warn" }, f.key, f.message))
            .collect();
        let scope = if offline { "db.toml (offline)" } else { "db.toml against the bucket" };
        lines.push(format!("{} {scope}: {} database(s)", if checked.ok { "ok" } else { "FAILED" }, checked.databases));
        lines.join("\n")
    });
    Ok(if checked.ok { 0 } else { 1 })
}
