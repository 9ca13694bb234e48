//! `b2m history DB`: every published version of a database, newest first, walked along the parent
//! chain from what the bucket's db.toml pins (one GET per version; one LIST to count the objects
//! that are not on the chain). A version `b2m import` made carries the original b2m's events.

use serde::Serialize;

use super::Context;
use super::remote::{self, VersionId};
use crate::error::{Error, Result};

/// One version in the history.
#[derive(Debug, Clone, Serialize)]
pub struct Version {
    /// Its number.
    pub version: u64,
    /// Its object's sha256.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// RFC 3339.
    pub created_at: String,
    /// `user@host`.
    pub created_by: String,
    /// `upload`, `merge`, `changeset`.
    pub made_by: String,
    /// The changeset that made it.
    pub changeset: Option<String>,
    /// The version it was made from.
    pub parent: Option<u64>,
    /// Whether its schema differs from its parent's.
    pub schema_changed: bool,
    /// Whether the bucket's db.toml names it now.
    pub current: bool,
    /// For a version `b2m import` made: the original object, and the original b2m's events for
    /// it (who uploaded it, when, with what outcome).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imported: Option<remote::Imported>,
}

/// The whole history.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    /// The stem.
    pub name: String,
    /// Newest first.
    pub versions: Vec<Version>,
    /// False when a metadata object along the chain is missing: older versions may exist.
    pub complete: bool,
    /// Objects under `dbs/<stem>/` that are on no published version's chain (orphans).
    pub orphans: usize,
    /// When the history ends because `b2m gc --keep N` removed the older versions: when, by whom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trimmed: Option<remote::Trimmed>,
}

/// The history of `arg`.
pub fn history(ctx: &Context, arg: &str) -> Result<History> {
    let local = ctx.local_manifest()?;
    let remote = remote::read_manifest(ctx.store.as_ref())?;
    let entries = remote.as_ref().map(|m| m.manifest.entries()).unwrap_or_default();
    let stem = super::resolve_db(arg, &local, &entries)?;
    let Some(head) = remote.as_ref().and_then(|m| m.current(&stem)) else {
        return Err(Error::refused(format!("`{stem}` is not published in the bucket"), format!("run `b2m upload {stem}` to publish it")));
    };
    let chain = remote::chain(ctx.store.as_ref(), &head)?;
    let mut versions: Vec<Version> = Vec::new();
    for (i, meta) in chain.versions.iter().enumerate() {
        let older = chain.versions.get(i + 1);
        versions.push(Version {
            version: meta.version,
            sha256: meta.sha256.clone(),
            size: meta.size,
            created_at: meta.created_at.clone(),
            created_by: meta.created_by.clone(),
            made_by: meta.made_by.clone(),
            changeset: meta.changeset.clone(),
            parent: meta.parent.as_ref().map(|p| p.version),
            schema_changed: older.is_some_and(|o| o.schema_hash != meta.schema_hash),
            current: i == 0,
            imported: meta.imported.clone(),
        });
    }
    let on_chain: Vec<VersionId> = chain.versions.iter().map(|m| m.id(&stem)).collect();
    let orphans = ctx
        .store
        .list(&format!("{}{stem}/", crate::layout::VERSIONS))?
        .iter()
        .filter(|o| o.key.ends_with(".db"))
        .filter_map(|o| VersionId::from_key(&o.key))
        .filter(|id| !on_chain.contains(id))
        .count();
    // A chain that stops at a version gc removed on purpose (its object is gone too) is whole.
    let trimmed = match &chain.missing {
        Some(missing) if ctx.store.head(&missing.object_key())?.is_none() => remote::read_trimmed(ctx.store.as_ref(), &stem)?,
        _ => None,
    };
    Ok(History { name: stem, versions, complete: chain.complete || trimmed.is_some(), orphans, trimmed })
}
