//! `b2m status`.

use serde::Serialize;

use crate::engine::Context;
use crate::engine::status::{DbStatus, Status, status_all};
use crate::error::{ExitStatus, Result};
use crate::output::table;

#[derive(Serialize)]
struct StatusReport<'a> {
    dbs: &'a [DbStatus],
}

/// Prints the status table (or JSON); with `--exit-code`, 1 unless all are up to date.
pub fn run(ctx: &Context, only: &[String], exit_code: bool) -> Result<ExitStatus> {
    // Finish an interrupted publish first when no other b2m is busy here (status never waits).
    let _lock = ctx.try_lock()?;
    crate::commands::hooks::warn_if_dropped(&ctx.settings.root, &ctx.out);
    let rows = status_all(ctx, only)?;
    ctx.out.result(&StatusReport { dbs: &rows }, || render(&rows));
    let all_good = rows.iter().all(|r| r.status == Status::UpToDate);
    Ok(if exit_code && !all_good { ExitStatus::Failure } else { ExitStatus::Success })
}

/// The table for people.
pub fn render(rows: &[DbStatus]) -> String {
    if rows.is_empty() {
        return "no databases in db.toml or in the bucket yet".into();
    }
    let version = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| format!("v{v}"));
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut note = Vec::new();
            if r.status == Status::OutdatedDb {
                note.push(if r.local_changes { "local changes: merge".to_string() } else { "no local changes".to_string() });
            }
            if let Some(d) = &r.detail {
                note.push(d.clone());
            }
            if let Some(by) = &r.locked_by {
                note.push(format!("locked by {by}"));
            }
            vec![
                r.name.clone(),
                r.key.clone(),
                r.status.as_str().to_string(),
                version(r.local_version),
                version(r.remote_version),
                note.join("; "),
            ]
        })
        .collect();
    table(&["DB", "KEY", "STATUS", "LOCAL", "BUCKET", "NOTE"], &body)
}
