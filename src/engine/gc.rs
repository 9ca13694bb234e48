//! Garbage in the bucket: objects no published db.toml can reference (orphans of uploads that
//! never committed) and leases nobody holds any more.

use serde::Serialize;

use super::Context;
use super::remote;
use crate::coord::lease;
use crate::error::Result;
use crate::names::DbFileName;

/// One piece of garbage.
#[derive(Debug, Clone, Serialize)]
pub struct Garbage {
    /// The object key.
    pub key: String,
    /// Why it is garbage.
    pub reason: String,
}

/// Lists the garbage; changes nothing.
pub fn find_garbage(ctx: &Context) -> Result<Vec<Garbage>> {
    let manifest = remote::read_manifest(ctx.store.as_ref())?;
    let entries = manifest.map(|m| m.manifest.entries()).unwrap_or_default();
    let now = chrono::Utc::now();
    let (stale, live): (Vec<_>, Vec<_>) = lease::list_leases(ctx.store.as_ref())?.into_iter().partition(|l| l.info.is_stale(now));
    let held: Vec<String> = live.into_iter().map(|l| l.name).collect();
    let mut out = Vec::new();
    for object in ctx.store.list("dbs/")? {
        let file = object.key.trim_start_matches("dbs/").trim_end_matches(".json");
        let Some(name) = DbFileName::parse(file) else { continue };
        // A version above the published one was never committed; while the db's lease is held,
        // it may be an upload under way, so it is left alone.
        let current = entries.iter().find(|e| e.stem == name.stem).map(|e| e.version);
        let orphan = current.is_none_or(|v| name.version > v) && !held.contains(&name.stem);
        if orphan {
            let reason = match current {
                Some(v) => format!("v{} was never published (db.toml names v{v})", name.version),
                None => format!("`{}` is not in the bucket's db.toml", name.stem),
            };
            out.push(Garbage { key: object.key, reason });
        }
    }
    for stale in stale {
        out.push(Garbage { key: stale.key, reason: format!("stale lease of {}", stale.info.describe()) });
    }
    Ok(out)
}

/// Removes what [`find_garbage`] found.
pub fn remove(ctx: &Context, garbage: &[Garbage]) -> Result<()> {
    for g in garbage {
        ctx.store.delete(&g.key)?;
    }
    Ok(())
}
