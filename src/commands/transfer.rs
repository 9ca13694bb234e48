//! `b2m upload`, `b2m download`, `b2m fetch-db-toml`.

use serde::Serialize;

use crate::engine::{Context, fetch, merge, publish};
use crate::error::Result;

/// `b2m upload DB`.
pub fn upload(ctx: &Context, db: &str) -> Result<u8> {
    let _lock = ctx.lock()?;
    let published = publish::upload(ctx, db)?;
    ctx.out.result(&published, String::new);
    Ok(0)
}

/// `b2m download DB [--force]`.
pub fn download(ctx: &Context, db: &str, force: bool) -> Result<u8> {
    let _lock = ctx.lock()?;
    let fetched = fetch::download(ctx, db, force)?;
    ctx.out.result(&fetched, String::new);
    Ok(0)
}

#[derive(Serialize)]
struct ManifestWritten {
    path: String,
}

/// `b2m fetch-db-toml`.
pub fn fetch_db_toml(ctx: &Context) -> Result<u8> {
    let _lock = ctx.lock()?;
    let path = fetch::fetch_manifest(ctx)?;
    ctx.out.result(&ManifestWritten { path: path.display().to_string() }, String::new);
    Ok(0)
}

/// `b2m merge DB`.
pub fn merge(ctx: &Context, db: &str) -> Result<u8> {
    let _lock = ctx.lock()?;
    let merged = merge::merge(ctx, db)?;
    ctx.out.result(&merged, String::new);
    Ok(0)
}
