//! The three-way status: the local file, its base (local state) and the bucket's db.toml plus
//! metadata. Status judges logical content: committed WAL frames are checkpointed into the file
//! before it is hashed, so where the pages sit does not matter.

use serde::Serialize;

use super::Context;
use super::remote::{self, RemoteManifest, VersionMeta};
use crate::error::Result;
use crate::manifest::Entry;
use crate::sqlite::db;
use crate::sqlite::state::Base;

/// The status of one database (DESIGN.md's table).
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
    /// Why, for `conflict` and the like.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The logical sha256 of the local file, when it was computed.
    #[serde(skip)]
    pub local_sha256: Option<String>,
    /// The bucket's metadata for the current version.
    #[serde(skip)]
    pub remote_meta: Option<VersionMeta>,
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

/// The logical sha256 of a local database: WAL frames checkpointed first, then the file's bytes
/// hashed (or taken from the hash cache when the file has not changed).
pub fn local_hash(ctx: &Context, path: &std::path::Path) -> Result<String> {
    db::check_header(path)?;
    if !db::checkpoint(path)? {
        tracing::warn!(path = %path.display(), "readers kept the WAL checkpoint from finishing");
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let bar = ctx.out.bytes_bar(size, &format!("hash {name}"));
    let sha = ctx.state.file_hash(path, &bar)?;
    bar.finish_and_clear();
    Ok(sha)
}

/// Judges one database. Adopts a base when the local content equals a version the bucket has
/// (a fresh clone, or a crash between a download's rename and its bookkeeping).
pub fn assess(ctx: &Context, stem: &str, local: Option<&Entry>, remote: Option<&Entry>) -> Result<DbStatus> {
    let key = local.or(remote).map(|e| e.key.clone()).unwrap_or_default();
    let mut row = DbStatus {
        name: stem.to_string(),
        key,
        status: Status::Conflict,
        local_version: local.map(|e| e.version),
        remote_version: remote.map(|e| e.version),
        local_changes: false,
        locked_by: None,
        detail: None,
        local_sha256: None,
        remote_meta: None,
    };
    let local_file = local.map(|e| ctx.db_path(&e.file)).filter(|p| p.is_file());
    let (Some(l), Some(path)) = (local, local_file) else {
        match (local, remote) {
            (_, Some(r)) => {
                row.status = Status::MissingLocal;
                // A download that found the object damaged leaves a mark: that is a conflict.
                let key = remote::object_key(&r.file);
                if ctx.state.is_bad_object(&key)? {
                    row.status = Status::Conflict;
                    row.detail = Some(format!("the bucket's `{key}` does not match its recorded sha256"));
                }
            }
            (Some(l), None) => row.detail = Some(format!("db.toml names `{}`, which is neither here nor in the bucket", l.file)),
            (None, None) => {}
        }
        return Ok(row);
    };
    let sha = local_hash(ctx, &path)?;
    row.local_sha256 = Some(sha.clone());
    let Some(r) = remote else {
        row.status = Status::NewLocal;
        row.local_changes = true;
        return Ok(row);
    };
    let Some(meta) = remote::read_meta(ctx.store.as_ref(), &r.file)? else {
        row.detail = Some(format!("the bucket names `{}` but has no metadata `{}`", r.file, remote::meta_key(&r.file)));
        return Ok(row);
    };
    let current_bad = ctx.state.is_bad_object(&remote::object_key(&r.file))?;
    row.remote_meta = Some(meta.clone());
    let base = ctx.state.base(stem)?.filter(|b| b.version == l.version);
    let unchanged = match base {
        Some(b) => sha == b.local_sha256 || sha == b.sha256,
        None => {
            // No base for this version: adopt it if the content is exactly the bucket's.
            let version_meta = if l.version == r.version { Some(meta.clone()) } else { remote::read_meta(ctx.store.as_ref(), &l.file)? };
            match version_meta {
                Some(m) if m.sha256 == sha => {
                    ctx.state.set_base(stem, &Base { version: l.version, sha256: m.sha256, local_sha256: sha.clone() })?;
                    true
                }
                _ => {
                    row.local_changes = true;
                    row.detail = Some(format!("`{}` differs from the bucket's v{} and there is no known base", l.file, l.version));
                    return Ok(row);
                }
            }
        }
    };
    row.local_changes = !unchanged;
    if current_bad {
        row.detail = Some(format!("the bucket's `{}` does not match its recorded sha256", remote::object_key(&r.file)));
        return Ok(row);
    }
    row.status = match l.version.cmp(&r.version) {
        std::cmp::Ordering::Equal if unchanged => Status::UpToDate,
        std::cmp::Ordering::Equal => Status::ReadyToUpload,
        std::cmp::Ordering::Less => Status::OutdatedDb,
        std::cmp::Ordering::Greater => {
            row.detail = Some(format!("db.toml names v{} but the bucket's current version is v{}", l.version, r.version));
            Status::Conflict
        }
    };
    Ok(row)
}

/// The status of every database (or of those named), in db.toml order.
pub fn status_all(ctx: &Context, only: &[String]) -> Result<Vec<DbStatus>> {
    let local = ctx.local_manifest()?.entries();
    let remote = remote::read_manifest(ctx.store.as_ref())?;
    let remote_entries = remote.as_ref().map(|m: &RemoteManifest| m.manifest.entries()).unwrap_or_default();
    let wanted: Vec<String> = only.iter().map(|arg| super::resolve_db(arg, &local, &remote_entries)).collect::<Result<_>>()?;
    let now = chrono::Utc::now();
    let leases: Vec<_> = crate::coord::lease::list_leases(ctx.store.as_ref())?.into_iter().filter(|l| !l.info.is_stale(now)).collect();
    let mut rows = Vec::new();
    for (stem, l, r) in pair_entries(&local, &remote_entries) {
        if !wanted.is_empty() && !wanted.contains(&stem) {
            continue;
        }
        let mut row = assess(ctx, &stem, l.as_ref(), r.as_ref())?;
        row.locked_by = leases.iter().find(|lease| lease.name == stem && lease.info.state == "held").map(|lease| lease.info.describe());
        rows.push(row);
    }
    Ok(rows)
}
