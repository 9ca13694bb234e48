//! The bucket layout: `db.toml` (the published manifest), `dbs/<stem>-v<N>.db` (immutable
//! versions) and `dbs/<stem>-v<N>.db.json` (their metadata).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::store::Store;

/// The key of the published manifest.
pub const MANIFEST_KEY: &str = "db.toml";

/// The key of a version's object.
pub fn object_key(file: &str) -> String {
    format!("dbs/{file}")
}

/// The key of a version's metadata.
pub fn meta_key(file: &str) -> String {
    format!("dbs/{file}.json")
}

/// What the bucket records about one immutable version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionMeta {
    /// hex sha256 of the object.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The version number.
    pub version: u64,
    /// The version it was made from (`None` for a first upload).
    pub parent: Option<u64>,
    /// RFC 3339 time of the publish.
    pub created_at: String,
    /// `user@host`.
    pub created_by: String,
    /// The changeset that made it, if any.
    #[serde(default)]
    pub changeset: Option<String>,
    /// sha256 of the schema (`sqlite_master` SQL), to spot schema changes between versions.
    #[serde(default)]
    pub schema_hash: Option<String>,
}

/// The bucket's db.toml and the ETag it was read with.
pub struct RemoteManifest {
    /// Parsed, with its formatting.
    pub manifest: Manifest,
    /// For a compare-and-swap.
    pub etag: Option<String>,
}

/// Reads the bucket's db.toml; `None` when the bucket has none yet.
pub fn read_manifest(store: &dyn Store) -> Result<Option<RemoteManifest>> {
    let Some(object) = store.get(MANIFEST_KEY)? else {
        // Some servers answer NoSuchKey for a missing bucket: make sure there is one.
        store.check_bucket()?;
        return Ok(None);
    };
    let text = String::from_utf8(object.body).map_err(|_| {
        Error::refused(
            format!("the bucket's `{MANIFEST_KEY}` at `{}` is not UTF-8 text", store.location()),
            "restore it, or ask whoever wrote it",
        )
    })?;
    let origin = format!("{}/{MANIFEST_KEY}", store.location());
    Ok(Some(RemoteManifest { manifest: Manifest::parse(&text, &origin)?, etag: object.etag }))
}

/// Reads a version's metadata; `None` when absent.
pub fn read_meta(store: &dyn Store, file: &str) -> Result<Option<VersionMeta>> {
    let key = meta_key(file);
    let Some(object) = store.get(&key)? else { return Ok(None) };
    serde_json::from_slice(&object.body).map(Some).map_err(|e| {
        Error::refused(
            format!("metadata `{key}` at `{}` is unreadable: {e}", store.location()),
            "run `b2m check` to see what else is damaged",
        )
    })
}
