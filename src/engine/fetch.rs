//! Fetching a version: the object db.toml pins (`dbs/<stem>/<stem>-v<N>.<sha256>.db`) is streamed
//! into a temp file beside the database, hashed as it arrives and checked against the pin, then
//! `PRAGMA quick_check`, fsync, rename into place. The old file is removed only after db.toml
//! names the new one, and not while another process holds it open; a failed download leaves it
//! untouched.

use std::io::Read;

use serde::Serialize;

use super::Context;
use super::remote::{self, VersionId};
use super::status::{self, Status};
use super::swap::Swaps;
use crate::error::{Error, Refusal, Result};
use crate::fsutil;
use crate::manifest::Entry;
use crate::sqlite::db;
use crate::sqlite::hash::{Trailing, content_hash_file, is_canonical};
use crate::sqlite::state::Base;

/// What a download did.
#[derive(Debug, Clone, Serialize)]
pub struct Fetched {
    /// The stem.
    pub name: String,
    /// The version now local.
    pub version: u64,
    /// The local file.
    pub file: String,
    /// Bytes downloaded (0 when it was already up to date).
    pub bytes: u64,
    /// Where the replaced local changes were kept, with `--force`.
    pub backup: Option<String>,
}

/// `b2m download DB [--force]`.
pub fn download(ctx: &Context, arg: &str, force: bool) -> Result<Fetched> {
    let local_manifest = ctx.local_manifest()?;
    let remote = remote::read_manifest(ctx.store.as_ref())?;
    let remote_entries = remote.as_ref().map(|m| m.manifest.entries()).unwrap_or_default();
    let stem = super::resolve_db(arg, &local_manifest, &remote_entries)?;
    let r = bucket_entry(ctx, &stem, &local_manifest, &remote_entries)?;
    let local = local_manifest.entry_for_stem(&stem);
    let row = status::assess(ctx, &stem, local.as_ref(), Some(&r))?;
    let mut backup = None;
    match row.status {
        Status::UpToDate => {
            ctx.out.info(&format!("`{stem}` v{} is up to date", r.version));
            return Ok(Fetched { name: stem, version: r.version, file: r.file, bytes: 0, backup: None });
        }
        // No local file: nothing to lose, and the download verifies the object again.
        _ if local.as_ref().is_none_or(|l| !ctx.db_path(&l.file).is_file()) => {}
        Status::OutdatedDb if !row.local_changes => {}
        _ if !force => return Err(would_drop(&stem, &row, r.version)),
        _ => {
            if let Some(l) = &local {
                let path = ctx.db_path(&l.file);
                if path.is_file() {
                    backup = Some(keep_backup(ctx, &path)?);
                }
            }
        }
    }
    let Some(id) = row.remote_id.clone() else {
        return Err(Error::refused_as(
            Refusal::Conflict,
            format!("conflict: {}", row.detail.clone().unwrap_or_else(|| format!("the bucket's db.toml does not pin `{}`", r.key))),
            "publish it again with this b2m, or restore the bucket's db.toml",
        ));
    };
    // The local db.toml's own key for this database, if it has one: never add a second.
    let key = local.as_ref().map_or(r.key.clone(), |l| l.key.clone());
    let swaps = Swaps::new(ctx);
    if let Some(l) = &local {
        swaps.check(&ctx.db_path(&l.file))?;
    }
    // Dropping local changes was asked for (`--force`): the file is not judged again.
    let judged = if force { None } else { row.local_content.as_deref() };
    let installed = install(ctx, &id, &key, local.as_ref(), judged, &swaps);
    // A server this stopped is started again, on the new file or, after a refusal, the old one.
    let restarted = swaps.restart(&match &installed {
        Ok(_) => format!("downloaded `{stem}` v{}", id.version),
        Err(_) => format!("the download of `{stem}` v{} was not installed", id.version),
    });
    let bytes = installed?;
    restarted?;
    ctx.out.info(&format!("downloaded `{stem}` v{} → `{}`", id.version, ctx.db_path(&id.file()).display()));
    Ok(Fetched { name: stem, version: id.version, file: id.file(), bytes, backup: backup.map(|p| p.display().to_string()) })
}

/// The bucket's db.toml entry for `stem`, unless the bucket does not have it or the local db.toml
/// uses its key for another database.
fn bucket_entry(ctx: &Context, stem: &str, local: &crate::manifest::Manifest, remote: &[Entry]) -> Result<Entry> {
    let Some(r) = remote.iter().find(|e| e.stem == stem).cloned() else {
        return Err(Error::refused(
            format!("`{stem}` is not in the bucket's db.toml (`{}`)", ctx.store.location()),
            "run `b2m upload` to publish it first",
        ));
    };
    if let Some(why) = status::key_clash(&local.entries(), &r) {
        return Err(Error::refused_as(
            Refusal::Conflict,
            format!("conflict: `{stem}`: {why}; nothing was downloaded"),
            "rename one key in db.toml",
        ));
    }
    Ok(r)
}

/// The refusal of a download that would drop the local changes `row` found (the bucket has
/// `bucket_version`).
fn would_drop(stem: &str, row: &status::DbStatus, bucket_version: u64) -> Error {
    let (kind, why) = match row.status {
        Status::ReadyToUpload => (Refusal::LocalChanges, format!("`{stem}` has local changes that are not in the bucket")),
        Status::OutdatedDb => (Refusal::LocalChanges, format!("`{stem}` has local changes and the bucket has v{bucket_version}")),
        _ => {
            (Refusal::Conflict, format!("conflict: {}", row.detail.clone().unwrap_or_else(|| format!("`{stem}` differs from the bucket"))))
        }
    };
    Error::refused_as(
        kind,
        format!("{why}; downloading would drop them, so nothing was changed"),
        match row.status {
            Status::ReadyToUpload => "run `b2m upload` to publish them, or `b2m download --force` to drop them (a backup is kept)",
            _ => "run `b2m merge` to keep them, or `b2m download --force` to drop them (a backup is kept)",
        },
    )
}

/// Brings the committed version `id` here: fetches and verifies it into a temp file, then stops
/// the server through `swaps` (it has the old file open, under the old name or the same one),
/// judges the old file again when `judged` says what it held when the swap was decided (a row the
/// server committed since then refuses the swap: nothing of the new version is placed), places the
/// new file, names and pins it in the local db.toml under `key` (the local key, never a second
/// one), records the base, and only then moves the replaced file (`old`) out of the db folder.
/// Returns the bytes fetched.
pub fn install(ctx: &Context, id: &VersionId, key: &str, old: Option<&Entry>, judged: Option<&str>, swaps: &Swaps<'_>) -> Result<u64> {
    let target = ctx.db_path(&id.file());
    let (tmp, bytes, content) = download_verified(ctx, id, &ctx.settings.db_dir, Source::Lent)?;
    crate::util::failpoint("before-swap");
    let old_path = old.map(|l| ctx.db_path(&l.file)).filter(|p| p.is_file());
    let replaced = replaced_file(old_path.as_deref(), &target);
    // Every swap stops the server first, a replacement under the same name included.
    if let Some(replaced) = &replaced {
        swaps.prepare(replaced)?;
    }
    if let (Some(path), Some(judged)) = (&old_path, judged) {
        let now = status::local_content(ctx, path)?;
        if now.as_deref() != Some(judged) {
            return Err(Error::refused_as(
                Refusal::OutdatedDb,
                format!(
                    "outdated_db: `{}` took new rows while `{}` v{} was being fetched (local changes); nothing was swapped",
                    path.display(),
                    id.stem,
                    id.version
                ),
                format!("run `b2m merge {}` to carry them onto v{}", id.stem, id.version),
            ));
        }
    }
    place(ctx, tmp, &target, &content, replaced.as_deref())?;
    let mut manifest = ctx.local_manifest()?;
    let named = manifest.entry_for_stem(&id.stem);
    if named.as_ref().map(|e| (e.file.as_str(), e.sha256.as_deref())) != Some((id.file().as_str(), Some(id.sha256.as_str())))
        || !ctx.settings.manifest.exists()
    {
        manifest.set_version(key, &id.file(), &id.sha256);
        ctx.write_local_manifest(&manifest)?;
    }
    let base = Base { version: id.version, sha256: id.sha256.clone(), content_sha256: content.clone(), local_content_sha256: content };
    ctx.state.set_base(&id.stem, &base)?;
    if let Some(old) = old {
        // The replaced file leaves the db folder with its journals: their statements are in a
        // published version, or were dropped with the file (`--force`, kept here).
        let dir = super::journal::working_folder(ctx, "replaced", &id.stem);
        if old.file != id.file() {
            keep_replaced(&ctx.db_path(&old.file), &dir)?;
        }
        super::journal::archive(ctx, &id.stem, Some(old.version), &dir)?;
    }
    Ok(bytes)
}

/// The file a swap to `target` replaces: the old file (`old`, if it exists), else one already at
/// `target`.
pub(super) fn replaced_file(old: Option<&std::path::Path>, target: &std::path::Path) -> Option<std::path::PathBuf> {
    old.map(std::path::Path::to_path_buf).or_else(|| Some(target.to_path_buf()).filter(|t| t.is_file()))
}

/// Moves a replaced file (and its sidecars) out of the db folder into a working folder `dir`
/// (`changeset/dbs/<ns>_replaced-<stem>/`), where it stays until `b2m gc --keep N`: a snapshot
/// from before the upgrade, to put back by hand if the new version misbehaves.
pub(super) fn keep_replaced(old: &std::path::Path, dir: &std::path::Path) -> Result<()> {
    if !old.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    let mut files = vec![old.to_path_buf()];
    files.extend(fsutil::sidecars(old));
    for file in files.into_iter().filter(|f| f.exists()) {
        fsutil::move_file(&file, &dir.join(file.file_name().unwrap_or_default()))?;
    }
    tracing::info!(dir = %dir.display(), "kept the replaced file");
    Ok(())
}

/// Where the bytes of a version stored as pages may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The local file lends every page it holds: a fetch moves only what it lacks.
    Lent,
    /// Every byte from the bucket: a check of the bucket's copy (`check --deep`, a rollback's
    /// target), which a page lent from here would hide.
    BucketAlone,
}

/// Streams the object `id` names into a temp file in `dir`, checks it against its sha256 (the
/// key and the pin) and `PRAGMA quick_check`, and fsyncs it. Returns the file, the bytes fetched
/// and its content hash. Nothing is installed anywhere.
pub fn download_verified(
    ctx: &Context,
    id: &VersionId,
    dir: &std::path::Path,
    source: Source,
) -> Result<(tempfile::NamedTempFile, u64, String)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".b2m-download-")
        .permissions(fsutil::new_file_permissions())
        .tempfile_in(dir)
        .map_err(|e| Error::io("cannot create a temp file in", dir, e))?;
    let bar = ctx.out.bytes_bar(0, "download");
    let phase = std::time::Instant::now();
    let (object_key, received) = receive(ctx, id, tmp.as_file(), source, &bar)?;
    bar.finish_and_clear();
    let (bytes, sha256) = received?;
    tracing::info!(ms = phase.elapsed().as_millis() as u64, bytes, "received, hashed and written");
    if sha256 != id.sha256 {
        // Marked under the version's key, as `status` asks, however it is stored.
        ctx.state.mark_bad_object(&id.object_key(), &id.sha256, &sha256)?;
        return Err(Error::refused_as(
            Refusal::Conflict,
            format!(
                "conflict: the bucket's `{object_key}` does not match its sha256 ({bytes} bytes, sha256 {}…); it was not installed",
                &sha256[..12]
            ),
            "the object is damaged: restore it from a backup or publish a new version; local files were left as they were",
        ));
    }
    // Made durable and checked side by side: the quick check reads the file once, from memory.
    // An object b2m published has a canonical header: its sha256 is its content hash. Any other
    // is hashed for content beside them.
    let phase = std::time::Instant::now();
    let spinner = ctx.out.spinner("check");
    let (synced, checked, content) = std::thread::scope(|scope| {
        let sync = scope.spawn(|| tmp.as_file().sync_all());
        let check = scope.spawn(|| db::verify(tmp.path(), true));
        let mut header = [0u8; crate::sqlite::hash::HEADER];
        let canonical = std::fs::File::open(tmp.path()).and_then(|mut f| f.read_exact(&mut header)).is_ok() && is_canonical(&header);
        let content = if canonical { Ok(sha256.clone()) } else { content_hash_file(tmp.path(), &indicatif::ProgressBar::hidden()) };
        let synced = sync.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (synced, check.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), content)
    });
    spinner.finish_and_clear();
    tracing::info!(ms = phase.elapsed().as_millis() as u64, "fsync and quick check");
    synced.map_err(|e| Error::io("cannot sync", tmp.path(), e))?;
    checked?;
    ctx.state.clear_bad_object(&id.object_key())?;
    Ok((tmp, bytes, content?))
}

/// What [`receive`] read: the key, and the bytes received and their sha256.
type Received = (String, Result<(u64, String)>);

/// Receives version `id` into `file`, however the bucket stores it: the key that was read (the
/// `.db` object, or the recipe), and the bytes received and their sha256. A version stored whole
/// has its `.db` object; one stored as pages has none, and a recipe. The kind this machine
/// publishes is asked for first (`remote.pages`); only a GET the bucket answered and refused (no
/// such object) is worth asking for the other: a silent bucket or a full disk is reported at
/// once.
fn receive(ctx: &Context, id: &VersionId, file: &std::fs::File, source: Source, bar: &indicatif::ProgressBar) -> Result<Received> {
    let paged = |recipe| {
        let rebuilt = super::pages::fetch(ctx, id, recipe, file, source == Source::Lent, bar);
        (id.recipe_key(), rebuilt.map(|r| (r.received, r.sha256)).or_else(|e| damaged_pages(ctx, id, e)))
    };
    if ctx.settings.pages {
        return Ok(match super::pages::read_recipe(ctx.store.as_ref(), id)? {
            Some(recipe) => paged(recipe),
            None => (id.object_key(), receive_whole(ctx, id, file, bar)),
        });
    }
    Ok(match receive_whole(ctx, id, file, bar) {
        Err(e @ Error::Store(crate::store::StoreError::Failed { .. })) => match super::pages::read_recipe(ctx.store.as_ref(), id)? {
            Some(recipe) => {
                file.set_len(0).map_err(|e| Error::io("cannot truncate", ctx.tmp_dir(), e))?;
                paged(recipe)
            }
            None => (id.object_key(), Err(e)),
        },
        other => (id.object_key(), other),
    })
}

/// A version stored as pages that its pieces cannot rebuild (a damaged or truncated pack, a
/// recipe that does not add up) is a conflict, as an object that does not match its sha256 is:
/// marked, so that `status` says so until a download of it verifies.
fn damaged_pages(ctx: &Context, id: &VersionId, e: Error) -> Result<(u64, String)> {
    let Error::Refused { message, .. } = &e else { return Err(e) };
    ctx.state.mark_bad_object(&id.object_key(), &id.sha256, "")?;
    Err(Error::refused_as(
        Refusal::Conflict,
        format!(
            "conflict: the bucket's pages of `{}` (`{}`) do not rebuild it: {message}; it was not installed",
            id.file(),
            id.recipe_key()
        ),
        "the bucket's copy is damaged: restore it from a backup or publish a new version; local files were left as they were",
    ))
}

/// Streams the whole object `id` names into `file`, stretches landing where they belong while the
/// hash follows them in order: the bytes received and their sha256.
fn receive_whole(ctx: &Context, id: &VersionId, file: &std::fs::File, bar: &indicatif::ProgressBar) -> Result<(u64, String)> {
    let follow = file.try_clone().map_err(|e| Error::io("cannot read", ctx.tmp_dir(), e))?;
    let trailing = Trailing::new(follow);
    match ctx.store.download_to(&id.object_key(), file, &|offset, len| trailing.landed(offset, len), bar) {
        Ok(bytes) => Ok((bytes, trailing.finish(bytes).map_err(|e| Error::io("cannot read", ctx.tmp_dir(), e))?)),
        Err(e) => {
            trailing.abandon();
            Err(e.into())
        }
    }
}

/// Renames a fetched and verified temp file into place as `target`, clearing stale sidecars first.
/// It takes the owner, group and mode of the file it replaces (`replaced`), so that the server's
/// user can still write it.
pub(super) fn place(
    ctx: &Context,
    tmp: tempfile::NamedTempFile,
    target: &std::path::Path,
    content: &str,
    replaced: Option<&std::path::Path>,
) -> Result<()> {
    if let Some(like) = replaced {
        fsutil::take_owner_and_mode(tmp.as_file(), like).map_err(|e| Error::io("cannot give the owner and mode of", like, e))?;
    }
    // Install: no stale WAL or hot journal may be applied to the new file, so its sidecars go first.
    for sidecar in fsutil::sidecars(target) {
        fsutil::remove_if_exists(&sidecar)?;
    }
    crate::util::failpoint("before-install");
    tmp.persist(target).map_err(|e| Error::io("cannot rename into", target, e.error))?;
    crate::util::failpoint("after-install");
    fsutil::sync_dir(&ctx.settings.db_dir).map_err(|e| Error::io("cannot sync", &ctx.settings.db_dir, e))?;
    ctx.state.remember_written(target, content)
}

/// Keeps a consistent copy of a local database before it is replaced; returns where.
fn keep_backup(ctx: &Context, path: &std::path::Path) -> Result<std::path::PathBuf> {
    let dir = ctx.settings.state_dir.join("backups");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dest = dir.join(format!("{}.{}.db", name.trim_end_matches(".db"), chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")));
    let bar = ctx.out.pages_bar("backup");
    let copied = db::snapshot(path, &dest, &bar);
    bar.finish_and_clear();
    match copied {
        Ok(()) => {}
        // A file SQLite cannot read is kept byte for byte.
        Err(Error::BadDatabase { .. }) => {
            std::fs::copy(path, &dest).map_err(|e| Error::io("cannot keep a copy of", path, e))?;
        }
        Err(e) => return Err(e),
    }
    let kept = std::fs::File::open(&dest).and_then(|f| f.sync_all()).and_then(|()| fsutil::sync_dir(&dir));
    kept.map_err(|e| Error::io("cannot sync", &dest, e))?;
    ctx.out.info(&format!("kept the local changes of `{name}` in `{}`", dest.display()));
    Ok(dest)
}

/// Keeps in the fetched `manifest` the local entries the bucket does not know (databases not
/// published yet), their comments and pins included; refuses when the bucket uses the same key for
/// another database.
fn keep_local_only(ctx: &Context, local: &crate::manifest::Manifest, manifest: &mut crate::manifest::Manifest) -> Result<()> {
    let remote = manifest.entries();
    for entry in local.entries().into_iter().filter(|l| !remote.iter().any(|r| r.stem == l.stem)) {
        if let Some(r) = remote.iter().find(|r| r.key == entry.key) {
            return Err(Error::refused_as(
                Refusal::Conflict,
                format!(
                    "conflict: the local db.toml's `{}` names `{}`, the bucket's names `{}`: two databases under one key; db.toml was not changed",
                    entry.key, entry.file, r.file
                ),
                "give the local one a key of its own, then fetch again",
            ));
        }
        manifest.copy_entry_from(local, &entry.key);
        ctx.out.info(&format!(
            "kept `{} = \"{}\"`: local only (not in the bucket; `b2m upload {}` publishes it)",
            entry.key, entry.file, entry.stem
        ));
    }
    Ok(())
}

/// `b2m fetch-db-toml`: the bucket's db.toml becomes the local one, with two exceptions that keep
/// the local db.toml naming files that exist: the local `path` value (it belongs to this machine)
/// is kept, and a database whose bucket version is not here yet keeps naming the local file it has
/// (status then says `outdated_db`, and `b2m download` moves it on).
pub fn fetch_manifest(ctx: &Context) -> Result<std::path::PathBuf> {
    let Some(remote) = remote::read_manifest(ctx.store.as_ref())? else {
        return Err(Error::refused(
            format!("the bucket `{}` has no db.toml yet", ctx.store.location()),
            "run `b2m upload DB` to publish a first database",
        ));
    };
    write_fetched_manifest(ctx, remote)
}

/// Writes the bucket's db.toml (already read) as the local one, with the exceptions
/// [`fetch_manifest`] describes.
pub fn write_fetched_manifest(ctx: &Context, remote: remote::RemoteManifest) -> Result<std::path::PathBuf> {
    let local = ctx.local_manifest()?;
    let mut manifest = remote.manifest;
    manifest.keep_style_of(&local);
    if let Some(path) = local.path_value() {
        manifest.set_path_value(&path);
    }
    for entry in manifest.entries() {
        let kept = local.entry_for_stem(&entry.stem).filter(|l| l.file != entry.file && ctx.db_path(&l.file).is_file());
        if let Some(l) = kept.filter(|_| !ctx.db_path(&entry.file).is_file()) {
            manifest.set_file(&entry.key, &l.file);
            match &l.sha256 {
                Some(pin) => manifest.set_pin(&entry.key, pin),
                None => manifest.remove_pin(&entry.key),
            }
            ctx.out.info(&format!(
                "kept `{} = \"{}\"`: `{}` is not here yet; run `b2m download {}`",
                entry.key, l.file, entry.file, entry.stem
            ));
        }
    }
    keep_local_only(ctx, &local, &mut manifest)?;
    if let Some(parent) = ctx.settings.manifest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create", parent, e))?;
    }
    ctx.write_local_manifest(&manifest)?;
    ctx.out.info(&format!("wrote the bucket's db.toml to `{}`", ctx.settings.manifest.display()));
    Ok(ctx.settings.manifest.clone())
}
