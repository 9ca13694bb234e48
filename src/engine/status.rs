//! The three-way status: the local file, its base (local state) and the bucket's db.toml, whose
//! `[b2m.sha256]` pins each current version. Status judges logical content, not bytes: it
//! compares content hashes (`sqlite::hash`), after a checkpoint that never waits for anyone; when
//! committed frames are still only in the `-wal`, the file has local changes. It costs at most
//! two bucket requests however many databases there are (db.toml, one listing of `locks/`), plus
//! one GET per lease actually held.

use serde::Serialize;

use super::Context;
use super::remote::{self, RemoteManifest, VersionId};
use crate::error::{Error, Result};
use crate::manifest::Entry;
use crate::sqlite::db;
use crate::sqlite::state::Base;

/// The status of one database (the README's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Local version = bucket version, content unchanged.
    UpToDate,
    /// Local version = bucket version, new local data.
    ReadyToUpload,
    /// The bucket names a newer version.
    OutdatedDb,
    /// In the bucket, no local file.
    MissingLocal,
    /// A local db not yet in the bucket.
    NewLocal,
    /// A person must decide.
    Conflict,
    /// An entry of db.toml b2m cannot manage (no version in its name, a key not ending in `db`…).
    Unmanaged,
}

impl Status {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::UpToDate => "up_to_date",
            Status::ReadyToUpload => "ready_to_upload",
            Status::OutdatedDb => "outdated_db",
            Status::MissingLocal => "missing_local",
            Status::NewLocal => "new_local",
            Status::Conflict => "conflict",
            Status::Unmanaged => "unmanaged",
        }
    }
}

/// One row of `b2m status`.
#[derive(Debug, Clone, Serialize)]
pub struct DbStatus {
    /// The stem (`ipm-db`).
    pub name: String,
    /// The db.toml key (`ipmdb`).
    pub key: String,
    /// The status.
    pub status: Status,
    /// The version the local db.toml names.
    pub local_version: Option<u64>,
    /// The version the bucket's db.toml names.
    pub remote_version: Option<u64>,
    /// Whether the local file holds data the bucket does not.
    pub local_changes: bool,
    /// Who holds a lease on it.
    pub locked_by: Option<String>,
    /// The local file the local db.toml names (whether or not it exists).
    pub path: Option<String>,
    /// Why, for `conflict` and the like.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The content hash of the local file, when it holds all its committed content.
    #[serde(skip)]
    pub local_content: Option<String>,
    /// The version the bucket's db.toml pins.
    #[serde(skip)]
    pub remote_id: Option<VersionId>,
}

/// The databases the local and bucket manifests name, by stem: (local entry, bucket entry).
pub fn pair_entries(local: &[Entry], remote: &[Entry]) -> Vec<(String, Option<Entry>, Option<Entry>)> {
    let mut stems: Vec<String> = local.iter().chain(remote.iter()).map(|e| e.stem.clone()).collect();
    let mut seen = std::collections::HashSet::new();
    stems.retain(|s| seen.insert(s.clone()));
    stems
        .into_iter()
        .map(|stem| {
            let l = local.iter().find(|e| e.stem == stem).cloned();
            let r = remote.iter().find(|e| e.stem == stem).cloned();
            (stem, l, r)
        })
        .collect()
}

/// Two databases under one key: the local db.toml's key `remote.key` names another database
/// (another stem) than the bucket's. Fetching the bucket's would repoint the key and hide the
/// local one, so it is a conflict, naming both files.
pub fn key_clash(local: &[Entry], remote: &Entry) -> Option<String> {
    let other = local.iter().find(|l| l.key == remote.key && l.stem != remote.stem)?;
    Some(format!(
        "the local db.toml's `{}` names `{}`, the bucket's names `{}`: two databases under one key; give the local one a key of its own",
        remote.key, other.file, remote.file
    ))
}

/// The content hash of a local database, or `None` when committed frames are still only in its
/// `-wal` (a reader of the server pins them): then its bytes are not its content, and it has
/// local changes. Never waits for the server; an unchanged file is not hashed again.
pub fn local_content(ctx: &Context, path: &std::path::Path) -> Result<Option<String>> {
    settle(ctx, path)?;
    db::check_header(path)?;
    if !db::checkpoint(path)? {
        tracing::info!(path = %path.display(), "committed frames are still in the WAL (a reader pins them)");
        return Ok(None);
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let bar = ctx.out.bytes_bar(0, &format!("hash {name}"));
    let sha = ctx.state.content_hash(path, &bar)?;
    bar.finish_and_clear();
    Ok(Some(sha))
}

/// Before a local file is judged or copied: a transaction a dead writer left unfinished (a hot
/// rollback journal) is rolled back, as SQLite would on the next read, and the person told.
pub fn settle(ctx: &Context, path: &std::path::Path) -> Result<()> {
    if db::roll_back_hot_journal(path)? {
        ctx.out.info(&format!(
            "rolled back an unfinished transaction in `{}` (a writer died inside it and left its `-journal`)",
            path.display()
        ));
    }
    Ok(())
}

/// Judges one database. With no base, adopts the version the local db.toml names when the local
/// content is exactly that version's (a fresh clone, or a crash between a download's rename and
/// its bookkeeping): the one case that reads a version's metadata.
pub fn assess(ctx: &Context, stem: &str, local: Option<&Entry>, remote: Option<&Entry>) -> Result<DbStatus> {
    let mut row = new_row(ctx, stem, local, remote);
    if let Some(why) = entries_disagree(local, remote) {
        row.detail = Some(why);
        return Ok(row);
    }
    let remote_id = row.remote_id.clone();
    let bad_remote = match &remote_id {
        Some(id) if ctx.state.is_bad_object(&id.object_key())? => {
            Some(format!("the bucket's `{}` does not match its sha256", id.object_key()))
        }
        _ => None,
    };
    let local_file = local.map(|e| ctx.db_path(&e.file)).filter(|p| p.is_file());
    let (Some(l), Some(path)) = (local, local_file) else {
        match (local, remote) {
            (_, Some(_)) if bad_remote.is_some() => row.detail = bad_remote,
            (_, Some(_)) => row.status = Status::MissingLocal,
            (Some(l), None) => row.detail = Some(format!("db.toml names `{}`, which is neither here nor in the bucket", l.file)),
            (None, None) => {}
        }
        return Ok(row);
    };
    let content = match usable_content(ctx, &path)? {
        Ok(content) => content,
        Err(why) => {
            row.local_changes = true;
            row.detail = Some(why);
            return Ok(row);
        }
    };
    row.local_content = content.clone();
    let Some(remote_id) = remote_id else {
        row.status = Status::NewLocal;
        row.local_changes = true;
        return Ok(row);
    };
    let base = match ctx.state.base(stem)?.filter(|b| b.version == l.version) {
        Some(base) => base,
        None => match adopt(ctx, l, &remote_id, content.as_deref())? {
            Ok(base) => base,
            Err(why) => {
                row.local_changes = true;
                row.detail = Some(why);
                return Ok(row);
            }
        },
    };
    let unchanged = content.as_deref().is_some_and(|c| base.matches(c));
    row.local_changes = !unchanged;
    if let Some(detail) = bad_remote {
        row.detail = Some(detail);
        return Ok(row);
    }
    (row.status, row.detail) = decide(l, &base, &remote_id, unchanged);
    Ok(row)
}

/// A row that knows only the names: `conflict` until judged.
fn new_row(ctx: &Context, stem: &str, local: Option<&Entry>, remote: Option<&Entry>) -> DbStatus {
    DbStatus {
        name: stem.to_string(),
        key: local.or(remote).map(|e| e.key.clone()).unwrap_or_default(),
        status: Status::Conflict,
        local_version: local.map(|e| e.version),
        remote_version: remote.map(|e| e.version),
        local_changes: false,
        locked_by: None,
        path: local.map(|e| ctx.db_path(&e.file).display().to_string()),
        detail: None,
        local_content: None,
        remote_id: remote.and_then(Entry::pinned),
    }
}

/// Why the two db.toml entries cannot be compared at all, if they cannot.
fn entries_disagree(local: Option<&Entry>, remote: Option<&Entry>) -> Option<String> {
    match (local, remote) {
        (Some(l), Some(r)) if l.key != r.key => {
            Some(format!("the local db.toml calls it `{}`, the bucket's `{}`; rename one so both use the same key", l.key, r.key))
        }
        (_, Some(r)) if r.sha256.is_none() => {
            Some(format!("the bucket's db.toml names `{}` but does not pin its sha256 in `[b2m.sha256]`", r.file))
        }
        _ => None,
    }
}

/// The local file's content hash ([`local_content`]), or why the file is unusable: one unusable
/// file is that database's conflict, never every database's error.
fn usable_content(ctx: &Context, path: &std::path::Path) -> Result<std::result::Result<Option<String>, String>> {
    match local_content(ctx, path) {
        Ok(content) => Ok(Ok(content)),
        Err(e @ Error::BadDatabase { .. }) => Ok(Err(format!("{e}; `b2m download --force` replaces it and keeps it as a backup"))),
        Err(Error::Sqlite { source, .. }) if crate::sqlite::db::is_damage(&source) => Ok(Err(format!(
            "`{}` is not a usable SQLite database: {source}; `b2m download --force` replaces it and keeps it as a backup",
            path.display()
        ))),
        Err(e) => Err(e),
    }
}

/// The status table: a local copy of v`l.version` on `base`, its content `unchanged` or not,
/// against the bucket's current `remote`. Returns the status and, for a conflict, why.
fn decide(l: &Entry, base: &Base, remote: &VersionId, unchanged: bool) -> (Status, Option<String>) {
    let local_pin = l.sha256.as_deref().unwrap_or(&base.sha256);
    match l.version.cmp(&remote.version) {
        std::cmp::Ordering::Equal if base.sha256 != remote.sha256 || local_pin != remote.sha256 => (
            Status::Conflict,
            Some(format!(
                "this copy of v{} is {}…, the bucket's v{} is {}…: they diverged",
                l.version,
                &local_pin[..12.min(local_pin.len())],
                remote.version,
                remote.short()
            )),
        ),
        std::cmp::Ordering::Equal if unchanged => (Status::UpToDate, None),
        std::cmp::Ordering::Equal => (Status::ReadyToUpload, None),
        std::cmp::Ordering::Less => (Status::OutdatedDb, None),
        std::cmp::Ordering::Greater => {
            (Status::Conflict, Some(format!("db.toml names v{} but the bucket's current version is v{}", l.version, remote.version)))
        }
    }
}

/// With no base: the local file is the version the local db.toml names if its content equals
/// that version's content hash (from its metadata). Records and returns the base; or says why
/// there is none.
fn adopt(ctx: &Context, local: &Entry, remote: &VersionId, content: Option<&str>) -> Result<std::result::Result<Base, String>> {
    let no_base = || format!("`{}` differs from the bucket's v{} and there is no known base", local.file, local.version);
    let Some(content) = content else { return Ok(Err(no_base())) };
    let id = if local.version == remote.version {
        remote.clone()
    } else {
        match local.pinned() {
            Some(id) => id,
            None => return Ok(Err(no_base())),
        }
    };
    let Some(meta) = remote::read_meta(ctx.store.as_ref(), &id)? else {
        // The name says one version and the pin another (a file put back by hand, db.toml's name
        // edited and its `[b2m.sha256]` pin left): that is the cause, not the file.
        return Ok(Err(match local.sha256.as_deref() {
            Some(pin) if local.version != remote.version => format!(
                "db.toml names `{}` but pins `{}` to {}…, which is no v{} of `{}` in the bucket: the pin does not match the name; \
                 `b2m restore {}` puts a kept file back with its pin",
                local.file,
                local.key,
                &pin[..pin.len().min(12)],
                local.version,
                local.stem,
                local.stem
            ),
            _ => no_base(),
        }));
    };
    if meta.content_sha256 != content {
        return Ok(Err(no_base()));
    }
    let base =
        Base { version: id.version, sha256: id.sha256, content_sha256: meta.content_sha256, local_content_sha256: content.to_string() };
    ctx.state.set_base(&local.stem, &base)?;
    Ok(Ok(base))
}

/// The status of every database (or of those named), in db.toml order.
pub fn status_all(ctx: &Context, only: &[String]) -> Result<Vec<DbStatus>> {
    let local_manifest = ctx.local_manifest()?;
    let local = local_manifest.entries();
    let remote: Option<RemoteManifest> = remote::read_manifest(ctx.store.as_ref())?;
    let remote_entries = remote.as_ref().map(|m| m.manifest.entries()).unwrap_or_default();
    let wanted: Vec<String> = only.iter().map(|arg| super::resolve_db(arg, &local_manifest, &remote_entries)).collect::<Result<_>>()?;
    let now = chrono::Utc::now();
    let leases: Vec<_> = crate::coord::lease::list_leases(ctx.store.as_ref())?.into_iter().filter(|l| !l.info.is_stale(now)).collect();
    let mut rows = Vec::new();
    for (stem, l, r) in pair_entries(&local, &remote_entries) {
        if !wanted.is_empty() && !wanted.contains(&stem) {
            continue;
        }
        let mut row = assess(ctx, &stem, l.as_ref(), r.as_ref())?;
        if let Some(why) = r.as_ref().and_then(|r| key_clash(&local, r)) {
            (row.status, row.detail) = (Status::Conflict, Some(why));
        }
        row.locked_by = leases.iter().find(|lease| lease.name == stem && lease.info.state == "held").map(|lease| lease.info.describe());
        rows.push(row);
    }
    if wanted.is_empty() {
        rows.extend(local_manifest.unmanaged().into_iter().map(|u| DbStatus {
            name: u.key.clone(),
            key: u.key,
            status: Status::Unmanaged,
            local_version: None,
            remote_version: None,
            local_changes: false,
            locked_by: None,
            path: None,
            detail: Some(u.why),
            local_content: None,
            remote_id: None,
        }));
    }
    Ok(rows)
}
