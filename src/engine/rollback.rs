//! `b2m rollback DB [--to N]`: republishes the content of an earlier version (by default the
//! parent of the current one) as the NEXT version, through the normal commit, its metadata saying
//! it is a rollback. Versions stay monotonic, so every server sees a newer version and takes it at
//! its next preflight. The object is copied inside the bucket (CopyObject) after its bytes were
//! verified against their sha256; a version whose object or metadata is missing or damaged is
//! refused.

use serde::Serialize;

use super::remote::{self, ParentRef, VersionId, VersionMeta};
use super::status::{self, Status};
use super::swap::Swaps;
use super::{Context, fetch, publish};
use crate::error::{Error, Refusal, Result};
use crate::sqlite::hash::HashingWriter;

/// What a rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct RolledBack {
    /// The stem.
    pub name: String,
    /// The version that was current.
    pub from: u64,
    /// The version whose content was republished.
    pub to: u64,
    /// The new version.
    pub version: u64,
    /// Its sha256 (the old version's, as the bytes are the same).
    pub sha256: String,
    /// Whether this machine's local file was brought to it.
    pub installed: bool,
}

/// `b2m rollback DB [--to N]`: under the database's lease, find the version to go back to, copy
/// its object as the next version, commit it, and bring this machine's file to it.
pub fn rollback(ctx: &Context, arg: &str, to: Option<u64>) -> Result<RolledBack> {
    let local = ctx.local_manifest()?;
    let entries = remote::read_manifest(ctx.store.as_ref())?.map(|m| m.manifest.entries()).unwrap_or_default();
    let stem = super::resolve_db(arg, &local, &entries)?;
    let protocol = ctx.protocol()?;
    let leases = ctx.leases();
    let db_lease = leases.acquire(&stem, "rollback")?;
    let remote = remote::read_manifest(ctx.store.as_ref())?;
    let Some(current) = remote.as_ref().and_then(|m| m.current(&stem)) else {
        return Err(Error::refused(format!("`{stem}` is not published in the bucket"), "there is nothing to roll back"));
    };
    let target = target_version(ctx, &stem, &current, to)?;
    let wanted = target.version;
    let (id, meta) = republish(ctx, &stem, &current, target)?;
    let key = local
        .entry_for_stem(&stem)
        .map_or_else(|| entries.iter().find(|e| e.stem == stem).map(|e| e.key.clone()).unwrap_or_default(), |l| l.key);
    // This machine's file follows unless it holds rows the bucket lacks (they stay: merge them).
    let local_entry = local.entry_for_stem(&stem);
    let row = status::assess(ctx, &stem, local_entry.as_ref(), remote.as_ref().and_then(|m| m.manifest.entry_for_stem(&stem)).as_ref())?;
    let install = local_entry.is_some() && (!row.local_changes || row.status == Status::MissingLocal);
    let swaps = Swaps::new(ctx);
    if install && let Some(l) = &local_entry {
        swaps.check(&ctx.db_path(&l.file))?;
    }
    let to_commit = publish::ToCommit { pending: publish::pending_from_working_copy(&stem, &key, &meta), parent: meta.parent.clone() };
    let guarded = publish::Guarded { leases: &leases, db_leases: vec![db_lease], protocol };
    publish::commit(ctx, guarded, &local, std::slice::from_ref(&to_commit))?;
    if install {
        let done = format!("rolled `{stem}` back to v{wanted}'s content, published as v{}", id.version);
        let installed = fetch::install(ctx, &id, &key, local_entry.as_ref(), row.local_content.as_deref(), &swaps);
        let restarted = swaps.restart(&done);
        installed.map_err(|e| Error::after_publish(&done, e))?;
        restarted?;
    }
    ctx.state.clear_pending(&stem)?;
    ctx.out
        .info(&format!("rolled `{stem}` back: v{} has the content of v{wanted} (v{} stays in the history)", id.version, current.version));
    Ok(RolledBack { name: stem, from: current.version, to: wanted, version: id.version, sha256: id.sha256, installed: install })
}

/// The metadata of the version to roll back to: `to`, or the parent of `current`; it must be
/// earlier than `current` and in its history.
fn target_version(ctx: &Context, stem: &str, current: &VersionId, to: Option<u64>) -> Result<VersionMeta> {
    let chain = remote::chain(ctx.store.as_ref(), current)?;
    let Some(head) = chain.versions.first() else {
        return Err(Error::refused(
            format!("the metadata of `{stem}` v{} is missing", current.version),
            "run `b2m check` to see what is damaged",
        ));
    };
    let wanted = match to.or_else(|| head.parent.as_ref().map(|p| p.version)) {
        Some(v) => v,
        None => {
            return Err(Error::refused(
                format!("`{stem}` v{} has no earlier version", current.version),
                "there is nothing to roll back to",
            ));
        }
    };
    if wanted >= current.version {
        return Err(Error::config_hint(
            format!("v{wanted} is not earlier than `{stem}`'s current v{}", current.version),
            "give `--to` an earlier version (`b2m history` lists them)",
        ));
    }
    let Some(target) = chain.versions.iter().find(|m| m.version == wanted).cloned() else {
        return Err(Error::refused(
            format!(
                "v{wanted} is not in `{stem}`'s history{}",
                if chain.complete { "" } else { " (an older version's metadata is missing)" }
            ),
            format!("`b2m history {stem}` lists the versions"),
        ));
    };
    Ok(target)
}

/// Verifies `target`'s object and copies it, with metadata saying it is a rollback, as the version
/// after `current` (not yet committed): its id and metadata.
fn republish(ctx: &Context, stem: &str, current: &VersionId, target: VersionMeta) -> Result<(VersionId, VersionMeta)> {
    let old = target.id(stem);
    verify(ctx, &old, &target)?;
    let id = VersionId { stem: stem.to_string(), version: current.version + 1, sha256: target.sha256.clone() };
    let recipe = match super::pages::read_recipe(ctx.store.as_ref(), &old)? {
        // A recipe reads the same packs under the new version's name: nothing is copied.
        Some(recipe) => {
            super::pages::send_recipe(ctx, &id, &recipe)?;
            Some(id.recipe_key())
        }
        None => {
            ctx.store.copy(&old.object_key(), &id.object_key(), &id.sha256)?;
            None
        }
    };
    let meta = VersionMeta {
        version: id.version,
        parent: Some(ParentRef { version: current.version, sha256: current.sha256.clone() }),
        created_at: crate::util::now_rfc3339(),
        created_by: crate::util::user_at_host(),
        made_by: "rollback".into(),
        changeset: None,
        rollback_to: Some(target.version),
        // The content is the imported one's; this version was made by the rollback.
        imported: None,
        recipe,
        ..target
    };
    if remote::read_meta(ctx.store.as_ref(), &id)?.is_none() {
        let body = serde_json::to_vec_pretty(&meta).map_err(|e| Error::config(format!("cannot encode metadata: {e}")))?;
        ctx.store.put(&id.meta_key(), &body, crate::store::Condition::None)?;
    }
    Ok((id, meta))
}

/// Streams the object through a hasher (a version stored as pages is rebuilt): a rollback never
/// republishes damaged bytes.
fn verify(ctx: &Context, id: &VersionId, meta: &VersionMeta) -> Result<()> {
    if super::pages::read_recipe(ctx.store.as_ref(), id)?.is_some() {
        return super::fetch::download_verified(ctx, id, &ctx.tmp_dir(), super::fetch::Source::BucketAlone).map(drop).map_err(|e| {
            Error::refused_as(
                Refusal::Conflict,
                format!("conflict: `{}` v{} cannot be rebuilt from its pages ({e}); it is not republished", id.stem, id.version),
                "roll back to another version (`b2m history` lists them), or restore the objects",
            )
        });
    }
    let mut sink = HashingWriter::new(std::io::sink());
    let bar = ctx.out.bytes_bar(meta.size, "verify");
    let bytes = match ctx.store.download(&id.object_key(), &mut sink, &bar) {
        Ok(bytes) => bytes,
        Err(e) => {
            return Err(Error::refused(
                format!("`{stem}` v{}'s object `{}` cannot be read ({e})", id.version, id.object_key(), stem = id.stem),
                "roll back to another version (`b2m history` lists them)",
            ));
        }
    };
    bar.finish_and_clear();
    let (_, sha256) = sink.finish();
    if sha256 != id.sha256 || bytes != meta.size {
        return Err(Error::refused_as(
            Refusal::Conflict,
            format!("conflict: `{}` v{}'s object does not match its sha256; it is not republished", id.stem, id.version),
            "roll back to another version (`b2m history` lists them), or restore the object",
        ));
    }
    Ok(())
}
