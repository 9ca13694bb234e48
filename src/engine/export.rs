//! `b2m export DB [--version N] FILE`: a published version rebuilt into a file, with no project
//! and no local state needed (whole or stored as pages alike), checked like a download.

use std::path::Path;

use serde::Serialize;

use super::Context;
use super::remote::{self, VersionId};
use crate::error::{Error, Result};

/// What `b2m export` wrote.
#[derive(Debug, Serialize)]
pub struct Exported {
    /// The stem.
    pub name: String,
    /// The version written.
    pub version: u64,
    /// Its sha256 (checked).
    pub sha256: String,
    /// The file written.
    pub file: String,
    /// Bytes read from the bucket.
    pub bytes: u64,
}

/// Rebuilds `stem`'s version `version` (default: the one the bucket's db.toml pins) into `dest`,
/// which must not exist yet.
pub fn export(ctx: &Context, stem: &str, version: Option<u64>, dest: &Path) -> Result<Exported> {
    if dest.exists() {
        return Err(Error::refused(format!("`{}` exists", dest.display()), "name a file that does not exist yet"));
    }
    let id = find(ctx, stem, version)?;
    let dir = match dest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let (tmp, bytes, _) = super::fetch::download_verified(ctx, &id, &dir, super::fetch::Source::Lent)?;
    tmp.persist_noclobber(dest).map_err(|e| Error::io("cannot write", dest, e.error))?;
    Ok(Exported { name: id.stem.clone(), version: id.version, sha256: id.sha256, file: dest.display().to_string(), bytes })
}

/// The pinned version of `stem`, or version `version` along its history.
fn find(ctx: &Context, stem: &str, version: Option<u64>) -> Result<VersionId> {
    let manifest = remote::read_manifest(ctx.store.as_ref())?
        .ok_or_else(|| Error::refused(format!("the bucket at `{}` has no db.toml", ctx.store.location()), "check the remote"))?;
    let stem = super::resolve_db(stem, &manifest.manifest, &manifest.manifest.entries())?;
    let head =
        manifest.current(&stem).ok_or_else(|| Error::refused(format!("`{stem}` is not published in the bucket"), "check the name"))?;
    let Some(version) = version.filter(|v| *v != head.version) else { return Ok(head) };
    let chain = remote::chain(ctx.store.as_ref(), &head)?;
    chain.versions.iter().find(|m| m.version == version).map(|m| m.id(&stem)).ok_or_else(|| {
        let known: Vec<String> = chain.versions.iter().map(|m| format!("v{}", m.version)).collect();
        Error::refused(format!("`{stem}` has no v{version} in the bucket's history"), format!("choose one of {}", known.join(", ")))
    })
}
