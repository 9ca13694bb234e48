//! `b2m preflight [--strict]`.

use crate::engine::Context;
use crate::engine::preflight::{self, Preflight};
use crate::error::{ExitStatus, Result};

/// Runs preflight; exit 0 means the server may start. `ctx` is opened with
/// [`Settings::for_preflight`](crate::settings::Settings::for_preflight).
pub fn run(ctx: &Context, strict: bool) -> Result<ExitStatus> {
    let lock = ctx.lock()?;
    let done = preflight::preflight(ctx, &lock, strict)?;
    ctx.out.result(&done, || summary(&done));
    Ok(ExitStatus::Success)
}

fn summary(done: &Preflight) -> String {
    let mut lines = Vec::new();
    for f in &done.fetched {
        lines.push(format!("fetched {} v{}", f.name, f.to));
    }
    for c in &done.changesets {
        lines.push(format!("changeset {}: {}", c.name, c.outcome.replace('_', " ")));
    }
    for name in &done.ready_to_upload {
        lines.push(format!("{name}: local data not in the bucket (ready_to_upload)"));
    }
    if done.offline {
        lines.push("OFFLINE: started on the pinned local versions".into());
    }
    if lines.is_empty() {
        lines.push("preflight: every database is the bucket's version; nothing to do".into());
    }
    if done.stopped_server {
        lines.push("the server was stopped for a swap: start it (the caller's next step)".into());
    }
    lines.join("\n")
}
