//! The bucket layout, in one place: `db.toml` (the published manifest, pinning each current
//! version's sha256), content-addressed versions `dbs/<stem>/<stem>-v<N>.<sha256>.db` with their
//! metadata `….json`, and the parent chain that links each version to the one before it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::MANIFEST;
use crate::manifest::{Entry, Manifest};
use crate::store::Store;

pub use crate::layout::VersionId;

/// The version a version was made from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ParentRef {
    /// Its number.
    pub version: u64,
    /// Its object's sha256.
    pub sha256: String,
}

/// What the bucket records about one immutable version (`….json`, never rewritten).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionMeta {
    /// hex sha256 of the object's bytes (also in its key).
    pub sha256: String,
    /// The content hash: sha256 of the file with the header fields that record no content zeroed
    /// (see `sqlite::hash`); status compares these.
    pub content_sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The version number.
    pub version: u64,
    /// The version it was made from (`None` for a first upload).
    pub parent: Option<ParentRef>,
    /// RFC 3339 time of the publish.
    pub created_at: String,
    /// `user@host`.
    pub created_by: String,
    /// What made it: `upload`, `merge`, `rollback`, `changeset`.
    pub made_by: String,
    /// The changeset that made it, if any.
    #[serde(default)]
    pub changeset: Option<String>,
    /// For a rollback: the version whose content it republishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<u64>,
    /// sha256 of the schema (`sqlite_master` SQL), to spot schema changes between versions.
    #[serde(default)]
    pub schema_hash: Option<String>,
    /// For a version `b2m import` made from the original b2m's bucket: which object, and the
    /// original's events (its history before b2m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<Imported>,
    /// For a version stored as pages: its recipe's key (`….recipe`; none: stored whole, `….db`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
}

/// Where an imported version came from (`b2m import`, docs/import.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Imported {
    /// The original object's key under the original's root (`ipm-db_v2.db`).
    pub from: String,
    /// The original's root (`s3://bucket/path`).
    pub root: String,
    /// sha256 of the original object's bytes as they were (b2m's object has a canonical header).
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// Its ETag when it was imported, if the store gave one: a second run that finds the same
    /// size and ETag knows the object without reading it again.
    #[serde(default)]
    pub etag: Option<String>,
    /// RFC 3339 time of the import.
    pub at: String,
    /// `user@host` who imported it.
    pub by: String,
    /// The original's events for this file (`version/<file>.metadata.json`), as it wrote them.
    #[serde(default)]
    pub events: Vec<OriginalEvent>,
    /// What the import could not carry over (no metadata, unreadable metadata, no version in the
    /// name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One event of the original b2m's metadata (its Go `model.MetaEvent`, same JSON names); every
/// field is optional, as older originals wrote fewer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OriginalEvent {
    /// `sequence_id`: 1 for the first upload.
    #[serde(default)]
    pub sequence_id: i64,
    /// `datetime`: `2026-01-28 10:00:00 UTC` (the file's modification time at the upload).
    #[serde(default)]
    pub datetime: String,
    /// `timestamp`: the same, in Unix seconds.
    #[serde(default)]
    pub timestamp: i64,
    /// `hash`: the original's hash of the file (sha256, xxHash or BLAKE3, by its version).
    #[serde(default)]
    pub hash: String,
    /// `size_bytes`.
    #[serde(default)]
    pub size_bytes: i64,
    /// `uploader`: the user.
    #[serde(default)]
    pub uploader: String,
    /// `hostname`.
    #[serde(default)]
    pub hostname: String,
    /// `platform`: `linux`, `darwin`.
    #[serde(default)]
    pub platform: String,
    /// `tool_version`.
    #[serde(default)]
    pub tool_version: String,
    /// `upload_duration_sec`.
    #[serde(default)]
    pub upload_duration_sec: Option<serde_json::Number>,
    /// `status`: `success`, `cancelled`, `uploading`.
    #[serde(default)]
    pub status: String,
}

impl OriginalEvent {
    /// `uploader@hostname`.
    pub fn who(&self) -> String {
        format!("{}@{}", self.uploader, self.hostname)
    }

    /// The event's time as RFC 3339, from its Unix timestamp.
    pub fn when(&self) -> Option<String> {
        chrono::DateTime::from_timestamp(self.timestamp, 0)
            .filter(|_| self.timestamp > 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    }
}

impl VersionMeta {
    /// The version this metadata describes.
    pub fn id(&self, stem: &str) -> VersionId {
        VersionId { stem: stem.to_string(), version: self.version, sha256: self.sha256.clone() }
    }
}

/// What `dbs/<stem>/trimmed.json` says: `b2m gc --keep N` removed the committed versions of a
/// database older than its newest `keep`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Trimmed {
    /// The `N` of `--keep N`.
    pub keep: u64,
    /// The newest version removed.
    pub below: u64,
    /// RFC 3339.
    pub at: String,
    /// `user@host`.
    pub by: String,
}

/// The trim record of `stem`, if gc ever trimmed its history.
pub fn read_trimmed(store: &dyn Store, stem: &str) -> Result<Option<Trimmed>> {
    let Some(object) = store.get(&crate::layout::trimmed_key(stem))? else { return Ok(None) };
    Ok(serde_json::from_slice(&object.body).ok())
}

/// The bucket's db.toml and the ETag it was read with.
pub struct RemoteManifest {
    /// Parsed, with its formatting.
    pub manifest: Manifest,
    /// For a compare-and-swap.
    pub etag: Option<String>,
}

impl RemoteManifest {
    /// The version the bucket publishes for a stem.
    pub fn current(&self, stem: &str) -> Option<VersionId> {
        self.manifest.entry_for_stem(stem).as_ref().and_then(Entry::pinned)
    }
}

/// Reads the bucket's db.toml; `None` when the bucket has none yet.
pub fn read_manifest(store: &dyn Store) -> Result<Option<RemoteManifest>> {
    read_manifest_from(store, store.get(MANIFEST)?)
}

/// [`read_manifest`], given up (as unreachable) unless the bucket answers within `within`.
pub fn read_manifest_within(store: &dyn Store, within: std::time::Duration) -> Result<Option<RemoteManifest>> {
    read_manifest_from(store, store.get_within(MANIFEST, within)?)
}

fn read_manifest_from(store: &dyn Store, object: Option<crate::store::Object>) -> Result<Option<RemoteManifest>> {
    let Some(object) = object else {
        // Some servers answer NoSuchKey for a missing bucket: make sure there is one.
        store.check_bucket()?;
        return Ok(None);
    };
    let text = String::from_utf8(object.body).map_err(|_| {
        Error::refused(
            format!("the bucket's `{MANIFEST}` at `{}` is not UTF-8 text", store.location()),
            "restore it, or ask whoever wrote it",
        )
    })?;
    let origin = format!("{}/{MANIFEST}", store.location());
    Ok(Some(RemoteManifest { manifest: Manifest::parse(&text, &origin)?, etag: object.etag }))
}

/// Reads a version's metadata; `None` when absent.
pub fn read_meta(store: &dyn Store, id: &VersionId) -> Result<Option<VersionMeta>> {
    let key = id.meta_key();
    let Some(object) = store.get(&key)? else { return Ok(None) };
    let meta: VersionMeta = serde_json::from_slice(&object.body).map_err(|e| {
        Error::refused(format!("metadata `{key}` at `{}` is unreadable: {e}", store.location()), "the version's metadata is damaged")
    })?;
    if meta.sha256 != id.sha256 || meta.version != id.version {
        return Err(Error::refused(
            format!("metadata `{key}` at `{}` describes v{} {}…, not its own key", store.location(), meta.version, &meta.sha256),
            "the version's metadata is damaged",
        ));
    }
    Ok(Some(meta))
}

/// The committed history of a database, newest first, walked from `head` along the parents.
pub struct Chain {
    /// The versions found.
    pub versions: Vec<VersionMeta>,
    /// False when a metadata object along the way was missing or unreadable, so older committed
    /// versions may exist that the walk could not see.
    pub complete: bool,
    /// The version whose metadata the walk could not read, when it stopped early.
    pub missing: Option<VersionId>,
}

/// Walks the parent chain from `head` (one GET per version).
pub fn chain(store: &dyn Store, head: &VersionId) -> Result<Chain> {
    let mut versions = Vec::new();
    let mut next = Some(head.clone());
    while let Some(id) = next.take() {
        let meta = match read_meta(store, &id) {
            Ok(Some(meta)) => meta,
            Ok(None) | Err(Error::Refused { .. }) => return Ok(Chain { versions, complete: false, missing: Some(id) }),
            Err(e) => return Err(e),
        };
        next = meta.parent.as_ref().map(|p| VersionId { stem: id.stem.clone(), version: p.version, sha256: p.sha256.clone() });
        // A parent always has a lower number; anything else is damage, not history.
        if next.as_ref().is_some_and(|n| n.version >= meta.version) {
            versions.push(meta);
            return Ok(Chain { versions, complete: false, missing: next });
        }
        versions.push(meta);
    }
    Ok(Chain { versions, complete: true, missing: None })
}

/// Whether `id` was committed: the bucket's db.toml pins it, or it lies on the parent chain of
/// what db.toml pins now.
pub fn is_committed(store: &dyn Store, manifest: Option<&RemoteManifest>, id: &VersionId) -> Result<bool> {
    let Some(current) = manifest.and_then(|m| m.current(&id.stem)) else { return Ok(false) };
    if current == *id {
        return Ok(true);
    }
    if current.version <= id.version {
        return Ok(false);
    }
    Ok(chain(store, &current)?.versions.iter().any(|m| m.version == id.version && m.sha256 == id.sha256))
}
