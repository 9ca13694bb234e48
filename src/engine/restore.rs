//! `b2m restore DB [FILE]`: puts a kept file back on this server — by default the newest file a
//! swap moved to `changeset/dbs/<ns>_replaced-<stem>/` — as the version its name says, named and
//! pinned in the local db.toml, around `[server]` stop and start like every swap. The bucket is
//! not changed: `b2m status` then says `outdated_db` (a preflight brings the file forward again),
//! and `b2m rollback` is how the whole fleet goes back.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::remote::{self, VersionId};
use super::swap::Swaps;
use super::{Context, fetch, journal};
use crate::error::{Error, Result};
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
    // The version the name says, found along the bucket's chain: its pin goes into db.toml.
    let Some(head) = remote_manifest.as_ref().and_then(|m| m.current(&stem)) else {
        return Err(Error::refused(
            format!("`{stem}` is not published in the bucket"),
            "a file can only be restored as a published version",
        ));
    };
    let chain = remote::chain(ctx.store.as_ref(), &head)?;
    let Some(meta) = chain.versions.iter().find(|m| m.version == version) else {
        return Err(Error::refused(
            format!("`{stem}` v{version} is not among the bucket's versions of `{stem}`"),
            format!("`b2m history {stem}` lists them"),
        ));
    };
    let id: VersionId = meta.id(&stem);
    let local = local_manifest.entry_for_stem(&stem);
    // The local db.toml's own key for this database, if it has one: never add a second.
    let key = match &local {
        Some(l) => l.key.clone(),
        None => remote_entries.iter().find(|e| e.stem == stem).map(|e| e.key.clone()).unwrap_or_else(|| stem.clone()),
    };
    let target = ctx.db_path(&id.file());
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
    let old_path = local.as_ref().map(|l| ctx.db_path(&l.file)).filter(|p| p.is_file());
    let outcome = (|| -> Result<String> {
        if let Some(replaced) = old_path.clone().or_else(|| Some(target.clone()).filter(|t| t.is_file())) {
            swaps.prepare(&replaced)?;
        }
        // What is there now leaves the db folder (with its journals) as any replaced file does.
        let dir = journal::working_folder(ctx, "replaced", &stem);
        for path in old_path.iter().chain(std::iter::once(&target)).filter(|p| p.is_file()) {
            fetch::keep_replaced(path, &dir)?;
        }
        journal::archive(ctx, &stem, None, &dir)?;
        let content = crate::sqlite::hash::content_hash_file(tmp.path(), &indicatif::ProgressBar::hidden())?;
        fetch::place(ctx, tmp, &target, &content)?;
        let mut manifest = ctx.local_manifest()?;
        manifest.set_version(&key, &id.file(), &id.sha256);
        ctx.write_local_manifest(&manifest)?;
        let base = Base {
            version: id.version,
            sha256: id.sha256.clone(),
            content_sha256: meta.content_sha256.clone(),
            local_content_sha256: content.clone(),
        };
        ctx.state.set_base(&stem, &base)?;
        Ok(content)
    })();
    let restarted = swaps.restart(&match &outcome {
        Ok(_) => format!("restored `{stem}` v{version}"),
        Err(_) => format!("`{stem}` was not restored"),
    });
    let content = outcome?;
    restarted?;
    let local_changes = content != meta.content_sha256;
    ctx.out.info(&format!(
        "restored `{stem}` v{version} from `{}`{}; the bucket has v{}: the next preflight or `b2m download` brings it forward, `b2m rollback {stem} --to {version}` takes the whole fleet back",
        kept.display(),
        if local_changes { " (with rows of its own)" } else { "" },
        head.version
    ));
    Ok(Restored {
        name: stem,
        version,
        from: kept.display().to_string(),
        file: id.file(),
        bucket_version: Some(head.version),
        local_changes,
    })
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
