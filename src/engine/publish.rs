//! Publishing a version (DESIGN.md "Publishing a version"): snapshot, check, upload the immutable
//! object and its metadata, then write the bucket's db.toml, the one commit point; then the local
//! half (rename, local db.toml, base), journaled so a crash after the commit is finished by the
//! next command.

use std::os::unix::fs::MetadataExt;

use serde::Serialize;

use super::Context;
use super::remote::{self, VersionMeta};
use super::status::{self, Status};
use crate::coord::lease::MANIFEST_LEASE;
use crate::coord::{HeldLease, Leases, Protocol};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::manifest::Manifest;
use crate::names::DbFileName;
use crate::sqlite::db;
use crate::sqlite::hash::hash_file;
use crate::sqlite::state::{Base, Pending};
use crate::store::{Condition, PutOutcome};

/// Compare-and-swap attempts on the bucket's db.toml before giving up.
const COMMIT_TRIES: usize = 20;

/// What an upload did.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    /// The stem.
    pub name: String,
    /// The version now current in the bucket.
    pub version: u64,
    /// The version it replaced.
    pub parent: Option<u64>,
    /// The local file now holding it.
    pub file: String,
    /// sha256 of the published object.
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// False when there was nothing new to publish.
    pub uploaded: bool,
}

/// `b2m upload DB`.
pub fn upload(ctx: &Context, arg: &str) -> Result<Published> {
    let local_manifest = ctx.local_manifest()?;
    let stem = super::resolve_db(arg, &local_manifest.entries(), &[])?;
    let Some(local) = local_manifest.entry_for_stem(&stem).filter(|e| ctx.db_path(&e.file).is_file()) else {
        return Err(Error::refused(format!("there is no local file for `{stem}` to upload"), "run `b2m download` to fetch it"));
    };
    // The db's lease first: everything read from the bucket after it is what we publish over.
    let leases = ctx.leases()?;
    let db_lease = leases.acquire(&stem, "upload")?;
    let remote = remote::read_manifest(ctx.store.as_ref())?;
    let remote_entries = remote.as_ref().map(|m| m.manifest.entries()).unwrap_or_default();
    let remote_entry = remote_entries.iter().find(|e| e.stem == stem).cloned();
    let row = status::assess(ctx, &stem, Some(&local), remote_entry.as_ref())?;
    let (version, parent) = match (row.status, &remote_entry) {
        (Status::UpToDate, Some(r)) => {
            ctx.out.info(&format!("`{stem}` v{} is up to date; nothing to upload", r.version));
            let meta = row.remote_meta.clone();
            return Ok(Published {
                name: stem,
                version: r.version,
                parent: meta.as_ref().and_then(|m| m.parent),
                file: local.file,
                sha256: meta.as_ref().map(|m| m.sha256.clone()).unwrap_or_default(),
                size: meta.map_or(0, |m| m.size),
                uploaded: false,
            });
        }
        (Status::NewLocal, None) => (local.version, None),
        (Status::ReadyToUpload, Some(r)) => (r.version + 1, Some(r.version)),
        (Status::OutdatedDb, Some(r)) => {
            return Err(Error::refused(
                format!(
                    "outdated_db: the bucket has `{stem}` v{}, this copy is based on v{}; nothing was uploaded",
                    r.version, local.version
                ),
                if row.local_changes {
                    "run `b2m merge` to carry the local changes onto the new version"
                } else {
                    "run `b2m download` first"
                },
            ));
        }
        _ => {
            return Err(Error::refused(
                format!("conflict: `{stem}` cannot be uploaded: {}", row.detail.unwrap_or_else(|| "its state is unclear".into())),
                "compare the local file with the bucket's version, then decide (`b2m download --force` keeps a backup)",
            ));
        }
    };
    let local_path = ctx.db_path(&local.file);
    let local_sha = row.local_sha256.clone().unwrap_or_default();
    let new_file = DbFileName::file_name(&stem, version);

    // Snapshot and check it before anything is sent.
    std::fs::create_dir_all(ctx.tmp_dir()).map_err(|e| Error::io("cannot create", ctx.tmp_dir(), e))?;
    let snapshot = tempfile::Builder::new()
        .prefix(".b2m-snapshot-")
        .suffix(".db")
        .tempfile_in(ctx.tmp_dir())
        .map_err(|e| Error::io("cannot create a snapshot in", ctx.tmp_dir(), e))?
        .into_temp_path();
    let bar = ctx.out.pages_bar("snapshot");
    db::snapshot(&local_path, &snapshot, &bar)?;
    bar.finish_and_clear();
    // The integrity check and the hash both read the snapshot: run them side by side.
    let size = std::fs::metadata(&snapshot).map_err(|e| Error::io("cannot read", &snapshot, e))?.len();
    let bar = ctx.out.bytes_bar(size, "check+hash");
    let (checked, hashed) = std::thread::scope(|scope| {
        let check = scope.spawn(|| db::verify(&snapshot, false));
        let hashed = hash_file(&snapshot, &bar);
        let checked = check.join().unwrap_or_else(|_| Err(Error::refused("the integrity check crashed", "run the command again")));
        (checked, hashed)
    });
    bar.finish_and_clear();
    checked.map_err(|e| match e {
        Error::BadDatabase { reason, .. } => Error::BadDatabase { path: local_path.clone(), reason },
        other => other,
    })?;
    let (sha256, _) = hashed?;

    // The immutable object and its metadata. An object already under this version's name can only
    // be an orphan of an upload that never committed (db.toml names an older version, and we hold
    // the db's lease), so replacing it publishes nothing that anyone reads.
    let object_key = remote::object_key(&new_file);
    let bar = ctx.out.bytes_bar(size, "upload");
    ctx.store.upload_file(&object_key, &snapshot, &sha256, &bar)?;
    bar.finish_and_clear();
    let meta = VersionMeta {
        sha256: sha256.clone(),
        size,
        version,
        parent,
        created_at: crate::now_rfc3339(),
        created_by: crate::user_at_host(),
        changeset: None,
        schema_hash: schema_hash(&snapshot),
    };
    let meta_body = serde_json::to_vec_pretty(&meta).map_err(|e| Error::config(format!("cannot encode metadata: {e}")))?;
    ctx.store.put(&remote::meta_key(&new_file), &meta_body, Condition::None)?;

    let pending = Pending {
        stem: stem.clone(),
        key: local.key.clone(),
        version,
        sha256: sha256.clone(),
        local_sha256: local_sha,
        from_file: local.file.clone(),
    };
    crate::failpoint("before-commit");
    commit(ctx, &leases, &db_lease, &local_manifest, &pending, parent)?;
    crate::failpoint("after-commit");
    finish_local(ctx, &pending)?;
    ctx.out.info(&format!("published `{stem}` v{version} ({}), {}", crate::output::human_bytes(size), ctx.store.location()));
    Ok(Published { name: stem, version, parent, file: new_file, sha256, size, uploaded: true })
}

/// Step 5, the commit: the bucket's db.toml names the new version, unless the db moved meanwhile.
/// Other databases' publishes may change db.toml too: a failed compare-and-swap re-reads and
/// tries again; in lease mode the manifest lease makes the read-modify-write exclusive.
fn commit(
    ctx: &Context,
    leases: &Leases,
    db_lease: &HeldLease,
    local_manifest: &Manifest,
    pending: &Pending,
    parent: Option<u64>,
) -> Result<()> {
    let conditional = leases.protocol() == Protocol::Conditional;
    let _manifest_lease = if conditional { None } else { Some(leases.acquire(MANIFEST_LEASE, "commit")?) };
    let new_file = DbFileName::file_name(&pending.stem, pending.version);
    for _ in 0..COMMIT_TRIES {
        let current = remote::read_manifest(ctx.store.as_ref())?;
        let current_version = current.as_ref().and_then(|m| m.manifest.entry_for_stem(&pending.stem)).map(|e| e.version);
        if current_version != parent {
            return Err(Error::refused(
                format!(
                    "outdated_db: `{}` moved to v{} in the bucket while this upload ran; nothing was published",
                    pending.stem,
                    current_version.map_or_else(|| "?".into(), |v| v.to_string())
                ),
                "run `b2m status`, then `b2m download` or `b2m merge`",
            ));
        }
        let (mut manifest, condition) = match current {
            Some(m) => (m.manifest, m.etag.filter(|_| conditional).map_or(Condition::None, Condition::IfMatch)),
            None => (first_manifest(local_manifest, &pending.key), if conditional { Condition::IfAbsent } else { Condition::None }),
        };
        manifest.set_file(&pending.key, &new_file);
        ctx.state.set_pending(pending)?;
        db_lease.check()?;
        match ctx.store.put(remote::MANIFEST_KEY, manifest.render().as_bytes(), condition)? {
            PutOutcome::Written(_) => return Ok(()),
            PutOutcome::ConditionFailed => {
                tracing::info!("db.toml changed under the commit; reading it again");
                ctx.state.clear_pending(&pending.stem)?;
            }
        }
    }
    Err(Error::refused(
        format!("the bucket's db.toml kept changing; `{}` v{} was not published", pending.stem, pending.version),
        "run the command again",
    ))
}

/// The bucket's first db.toml: the local one (its comments and `path` kept) naming only `key`,
/// the one database being published, so that no unpublished db is named.
fn first_manifest(local: &Manifest, key: &str) -> Manifest {
    let mut manifest = local.clone();
    for entry in local.entries() {
        if entry.key != key {
            manifest.remove(&entry.key);
        }
    }
    manifest
}

/// The local half of a committed publish: the file takes the new name (hard link, then the local
/// db.toml, then unlink, so db.toml always names a file that exists), and the base is recorded.
pub fn finish_local(ctx: &Context, p: &Pending) -> Result<()> {
    let new_file = DbFileName::file_name(&p.stem, p.version);
    let from = ctx.db_path(&p.from_file);
    let to = ctx.db_path(&new_file);
    if from != to && from.is_file() {
        // Nothing in the WAL may be lost: checkpoint, and carry a WAL that still has frames.
        db::checkpoint(&from)?;
        let before = std::fs::metadata(&from).map_err(|e| Error::io("cannot read", &from, e))?;
        // After a crash mid-way, `to` may already be our link (and db.toml may name it): keep it.
        let linked = std::fs::metadata(&to).is_ok_and(|m| m.dev() == before.dev() && m.ino() == before.ino());
        if !linked {
            fsutil::remove_if_exists(&to)?;
            for sidecar in fsutil::sidecars(&to) {
                fsutil::remove_if_exists(&sidecar)?;
            }
            std::fs::hard_link(&from, &to).map_err(|e| Error::io("cannot link", &to, e))?;
        }
        crate::failpoint("after-link");
        let [from_wal, from_shm] = fsutil::sidecars(&from);
        let [to_wal, _] = fsutil::sidecars(&to);
        if std::fs::metadata(&from_wal).is_ok_and(|m| m.len() > 0) {
            std::fs::rename(&from_wal, &to_wal).map_err(|e| Error::io("cannot rename", &from_wal, e))?;
        }
        let mut manifest = ctx.local_manifest()?;
        manifest.set_file(&p.key, &new_file);
        ctx.write_local_manifest(&manifest)?;
        crate::failpoint("after-local-manifest");
        fsutil::remove_if_exists(&from)?;
        fsutil::remove_if_exists(&from_wal)?;
        fsutil::remove_if_exists(&from_shm)?;
        fsutil::sync_dir(&ctx.settings.db_dir).map_err(|e| Error::io("cannot sync", &ctx.settings.db_dir, e))?;
        // The link changed only the ctime: when size and mtime are as they were, the bytes are
        // those already hashed, and the cache can say so (no second hash of a big file).
        let after = std::fs::metadata(&to).map_err(|e| Error::io("cannot read", &to, e))?;
        if after.len() == before.len() && after.mtime() == before.mtime() && after.mtime_nsec() == before.mtime_nsec() {
            let cached = ctx.state.file_hash_cached(&from, &before)?;
            if cached.as_deref() == Some(p.local_sha256.as_str()) {
                ctx.state.remember_written(&to, &p.local_sha256)?;
            }
        }
    } else {
        let mut manifest = ctx.local_manifest()?;
        if manifest.entry_for_stem(&p.stem).map(|e| e.file) != Some(new_file.clone()) {
            manifest.set_file(&p.key, &new_file);
            ctx.write_local_manifest(&manifest)?;
        }
    }
    ctx.state.set_base(&p.stem, &Base { version: p.version, sha256: p.sha256.clone(), local_sha256: p.local_sha256.clone() })?;
    ctx.state.clear_pending(&p.stem)
}

/// Finishes publishes that a crash interrupted after their commit, and forgets those that never
/// committed (their objects are orphans for `b2m gc`).
pub fn finish_pending(ctx: &Context) -> Result<()> {
    let local = ctx.local_manifest()?;
    let mut remote = None;
    for entry in local.entries() {
        let Some(p) = ctx.state.pending(&entry.stem)? else { continue };
        if remote.is_none() {
            remote = Some(remote::read_manifest(ctx.store.as_ref())?);
        }
        let current = remote.as_ref().and_then(|m| m.as_ref()).and_then(|m| m.manifest.entry_for_stem(&p.stem)).map(|e| e.version);
        let ours = remote::read_meta(ctx.store.as_ref(), &DbFileName::file_name(&p.stem, p.version))?.is_some_and(|m| m.sha256 == p.sha256);
        if ours && current.is_some_and(|v| v >= p.version) {
            ctx.out.info(&format!("finishing the publish of `{}` v{} that was interrupted", p.stem, p.version));
            finish_local(ctx, &p)?;
        } else {
            tracing::info!(stem = p.stem, version = p.version, "forgetting a publish that never committed");
            ctx.state.clear_pending(&p.stem)?;
        }
    }
    Ok(())
}

/// sha256 of the schema's SQL, in a stable order.
fn schema_hash(path: &std::path::Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    let mut stmt = conn.prepare("SELECT type, name, COALESCE(sql, '') FROM sqlite_master ORDER BY type, name").ok()?;
    let mut hasher = Sha256::new();
    let rows =
        stmt.query_map([], |r| Ok(format!("{}\0{}\0{}\n", r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))).ok()?;
    for row in rows {
        hasher.update(row.ok()?.as_bytes());
    }
    Some(hex::encode(hasher.finalize()))
}
