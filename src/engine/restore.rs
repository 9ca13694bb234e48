//! `b2m restore DB [FILE]`: puts a kept file back on this server — by default the newest file a
//! swap moved to `changeset/dbs/<ns>_replaced-<stem>/` — as the version its name says, named and
//! pinned in the local db.toml, around `[server]` stop and start like every swap. The bucket is
//! not changed: `b2m status` then says `outdated_db` (a preflight brings the file forward again),
//! and `b2m rollback` is how the whole fleet goes back.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::remote::{self, VersionId, VersionMeta};
use super::swap::Swaps;
use super::{Context, fetch, journal};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::names::DbFileName;
use crate::sqlite::db;
use crate::sqlite::state::Base;

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// The stem.
    pub name: String,
    /// The version the restored file is.
    pub version: u64,
    /// The file it came from.
    pub from: String,
    /// The local file now.
    pub file: String,
    /// The bucket's current version.
    pub bucket_version: Option<u64>,
    /// Whether the restored file holds rows its version does not.
    pub local_changes: bool,
}

/// `b2m restore DB [FILE]`.
pub fn restore(ctx: &Context, arg: &str, file: Option<&Path>) -> Result<Restored> {
    let local_manifest = ctx.local_manifest()?;
    let remote_manifest = remote::read_manifest(ctx.store.as_ref())?;
    let remote_entries = remote_manifest.as_ref().map(|m| m.manifest.entries()).unwrap_or_default();
    let stem = super::resolve_db(arg, &local_manifest, &remote_entries)?;
    let kept = match file {
        Some(path) => path.to_path_buf(),
        None => newest_kept(ctx, &stem)?,
    };
    let Some(head) = remote_manifest.as_ref().and_then(|m| m.current(&stem)) else {
        return Err(Error::refused(
            format!("`{stem}` is not published in the bucket"),
            "a file can only be restored as a published version",
        ));
    };
    let meta = version_of_kept(ctx, &stem, &kept, &head)?;
    let id: VersionId = meta.id(&stem);
    let local = local_manifest.entry_for_stem(&stem);
    // The local db.toml's own key for this database, if it has one: never add a second.
    let key = match &local {
        Some(l) => l.key.clone(),
        None => remote_entries.iter().find(|e| e.stem == stem).map(|e| e.key.clone()).unwrap_or_else(|| stem.clone()),
    };
    // A consistent copy (its `-wal` included) beside the databases, checked, then swapped in.
    std::fs::create_dir_all(&ctx.settings.db_dir).map_err(|e| Error::io("cannot create", &ctx.settings.db_dir, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".b2m-restore-")
        .tempfile_in(&ctx.settings.db_dir)
        .map_err(|e| Error::io("cannot create a temp file in", &ctx.settings.db_dir, e))?;
    let bar = ctx.out.pages_bar("copy");
    db::snapshot(&kept, tmp.path(), &bar)?;
    bar.finish_and_clear();
    db::verify(tmp.path(), true)?;
    tmp.as_file().sync_all().map_err(|e| Error::io("cannot sync", tmp.path(), e))?;
    let swaps = Swaps::new(ctx);
    let outcome = put_back(ctx, tmp, local.as_ref(), &key, &id, &meta.content_sha256, &swaps);
    let restarted = swaps.restart(&match &outcome {
        Ok(_) => format!("restored `{stem}` v{}", id.version),
        Err(_) => format!("`{stem}` was not restored"),
    });
    let content = outcome?;
    restarted?;
    let local_changes = content != meta.content_sha256;
    ctx.out.info(&format!(
        "restored `{stem}` v{} from `{}`{}; the bucket has v{}: the next preflight or `b2m download` brings it forward, `b2m rollback {stem} --to {}` takes the whole fleet back",
        id.version,
        kept.display(),
        if local_changes { " (with rows of its own)" } else { "" },
        head.version,
        id.version
    ));
    Ok(Restored {
        name: stem,
        version: id.version,
        from: kept.display().to_string(),
        file: id.file(),
        bucket_version: Some(head.version),
        local_changes,
    })
}

/// The published version a kept file is, by its name (`<stem>-v<N>.db`), found along the
/// bucket's chain from `head`: its pin goes into db.toml.
fn version_of_kept(ctx: &Context, stem: &str, kept: &Path, head: &VersionId) -> Result<VersionMeta> {
    let name = kept.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Some(version) = DbFileName::parse(&name).filter(|n| n.stem == stem).map(|n| n.version) else {
        return Err(Error::config_hint(
            format!("`{}` is not a file of `{stem}` (`{stem}-v<N>.db`)", kept.display()),
            format!("name a kept file of `{stem}`, e.g. from `changeset/dbs/<ns>_replaced-{stem}/`"),
        ));
    };
    if !kept.is_file() {
        return Err(Error::config(format!("`{}` does not exist", kept.display())));
    }
    let chain = remote::chain(ctx.store.as_ref(), head)?;
    chain.versions.into_iter().find(|m| m.version == version).ok_or_else(|| {
        Error::refused(
            format!("`{stem}` v{version} is not among the bucket's versions of `{stem}`"),
            format!("`b2m history {stem}` lists them"),
        )
    })
}

/// Swaps the verified copy `tmp` in as `id`'s file, around the server's stop: what is there now
/// leaves the db folder (with its journals) as any replaced file does; db.toml names and pins
/// `id`, and the base records it. Returns the restored file's content hash.
fn put_back(
    ctx: &Context,
    tmp: tempfile::NamedTempFile,
    local: Option<&crate::manifest::Entry>,
    key: &str,
    id: &VersionId,
    version_content: &str,
    swaps: &Swaps<'_>,
) -> Result<String> {
    let target = ctx.db_path(&id.file());
    let old_path = local.map(|l| ctx.db_path(&l.file)).filter(|p| p.is_file());
    let replaced = fetch::replaced_file(old_path.as_deref(), &target);
    if let Some(replaced) = &replaced {
        swaps.prepare(replaced)?;
        fsutil::take_owner_and_mode(tmp.as_file(), replaced).map_err(|e| Error::io("cannot give the owner and mode of", replaced, e))?;
    }
    let dir = journal::working_folder(ctx, "replaced", &id.stem);
    for path in old_path.iter().chain(std::iter::once(&target)).filter(|p| p.is_file()) {
        fetch::keep_replaced(path, &dir)?;
    }
    journal::archive(ctx, &id.stem, None, &dir)?;
    let content = crate::sqlite::hash::content_hash_file(tmp.path(), &indicatif::ProgressBar::hidden())?;
    fetch::place(ctx, tmp, &target, &content, None)?;
    let mut manifest = ctx.local_manifest()?;
    manifest.set_version(key, &id.file(), &id.sha256);
    ctx.write_local_manifest(&manifest)?;
    let base = Base {
        version: id.version,
        sha256: id.sha256.clone(),
        content_sha256: version_content.to_string(),
        local_content_sha256: content.clone(),
    };
    ctx.state.set_base(&id.stem, &base)?;
    Ok(content)
}

/// The newest file a swap kept for `stem`: `changeset/dbs/<ns>_replaced-<stem>/<stem>-v<N>.db`.
fn newest_kept(ctx: &Context, stem: &str) -> Result<PathBuf> {
    let dbs = ctx.settings.changesets.join("dbs");
    let suffix = format!("_replaced-{stem}");
    let mut folders: Vec<PathBuf> = match std::fs::read_dir(&dbs) {
        Ok(entries) => entries.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(&suffix)).map(|e| e.path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("cannot list", &dbs, e)),
    };
    folders.sort();
    for folder in folders.iter().rev() {
        let Ok(entries) = std::fs::read_dir(folder) else { continue };
        let kept = entries
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().and_then(|n| n.to_str()).and_then(DbFileName::parse).is_some_and(|n| n.stem == stem));
        if let Some(kept) = kept {
            return Ok(kept);
        }
    }
    Err(Error::refused(format!("no kept file of `{stem}` in `{}`", dbs.display()), format!("name one: `b2m restore {stem} PATH`")))
}
