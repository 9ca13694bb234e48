//! `b2m check [--offline] [--deep]`: the findings as a table (LEVEL, KEY, MESSAGE) and a last line
//! `ok`/`FAILED`, or as JSON `{"ok","databases","findings":[{"level","key","message"}]}`.

use crate::engine::Context;
use crate::engine::check::{self, Checked, Level, Scope};
use crate::error::{ExitStatus, Result};

/// Prints every finding; a failure (exit 1) when any is an error.
pub fn run(ctx: &Context, offline: bool, deep: bool) -> Result<ExitStatus> {
    let scope = Scope { offline, deep };
    crate::commands::hooks::warn_if_dropped(&ctx.settings.root, &ctx.out);
    let checked = check::check(ctx, scope)?;
    ctx.out.result(&checked, || render(&checked, scope));
    Ok(if checked.ok { ExitStatus::Success } else { ExitStatus::Failure })
}

/// The table for people. The level is spelled `FAIL`/`warn`, four letters like the column it
/// heads, so a key always follows its level after one space (`FAIL ipmdb`), as scripts grep it.
fn render(checked: &Checked, scope: Scope) -> String {
    let mut out = String::new();
    if !checked.findings.is_empty() {
        let width = checked.findings.iter().map(|f| f.key.chars().count()).max().unwrap_or(0).max("KEY".len());
        out.push_str(&format!("{:<4} {:<width$}  MESSAGE\n", "LVL", "KEY"));
        for f in &checked.findings {
            let level = if f.level == Level::Error { "FAIL" } else { "warn" };
            out.push_str(&format!("{level} {:<width$}  {}\n", f.key, f.message));
        }
    }
    let scope = match (scope.offline, scope.deep) {
        (true, _) => "db.toml and changeset scripts (offline)",
        (false, false) => "db.toml, changesets and the bucket",
        (false, true) => "db.toml, changesets and the bucket, with every pinned object downloaded",
    };
    let (errors, warnings) =
        checked.findings.iter().fold((0, 0), |(e, w), f| if f.level == Level::Error { (e + 1, w) } else { (e, w + 1) });
    out.push_str(&format!(
        "{} {scope}: {} database(s), {errors} error(s), {warnings} warning(s)",
        if checked.ok { "ok" } else { "FAILED" },
        checked.databases
    ));
    out
}
