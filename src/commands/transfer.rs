//! `b2m upload`, `b2m download`, `b2m fetch-db-toml`.

use serde::Serialize;

use crate::engine::{Context, fetch, merge, publish};
use crate::error::{ExitStatus, Result};

/// `b2m upload DB`.
pub fn upload(ctx: &Context, db: &str) -> Result<ExitStatus> {
    let _lock = ctx.lock()?;
    let published = publish::upload(ctx, db)?;
    ctx.out.result(&published, String::new);
    Ok(ExitStatus::Success)
}

/// `b2m download DB [--force]`.
pub fn download(ctx: &Context, db: &str, force: bool) -> Result<ExitStatus> {
    let _lock = ctx.lock()?;
    let fetched = fetch::download(ctx, db, force)?;
    ctx.out.result(&fetched, String::new);
    Ok(ExitStatus::Success)
}

#[derive(Serialize)]
struct ManifestWritten {
    path: String,
}

/// `b2m fetch-db-toml`.
pub fn fetch_db_toml(ctx: &Context) -> Result<ExitStatus> {
    let _lock = ctx.lock()?;
    let path = fetch::fetch_manifest(ctx)?;
    ctx.out.result(&ManifestWritten { path: path.display().to_string() }, String::new);
    Ok(ExitStatus::Success)
}

/// `b2m merge DB`.
pub fn merge(ctx: &Context, db: &str) -> Result<ExitStatus> {
    let _lock = ctx.lock()?;
    let merged = merge::merge(ctx, db)?;
    ctx.out.result(&merged, String::new);
    Ok(ExitStatus::Success)
}
