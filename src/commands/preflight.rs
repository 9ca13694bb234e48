//! `b2m preflight [--strict]`.

use std::path::Path;

use crate::engine::Context;
use crate::engine::preflight::{self, Preflight};
use crate::error::{ExitStatus, Result};
use crate::output::Output;
use crate::settings::Settings;

/// Runs preflight; exit 0 means the server may start.
pub fn run(start: &Path, out: &Output, strict: bool) -> Result<ExitStatus> {
    let mut settings = Settings::load(start)?;
    // Waiting for a changeset another machine runs is bounded by `preflight.changeset_wait`,
    // unless B2M_LEASE_WAIT_SECS says otherwise.
    if std::env::var_os("B2M_LEASE_WAIT_SECS").is_none() {
        settings.leases.wait = settings.changeset_wait;
    }
    let ctx = Context::open(settings, out.clone())?;
    let lock = ctx.lock()?;
    let done = preflight::preflight(&ctx, &lock, strict)?;
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
