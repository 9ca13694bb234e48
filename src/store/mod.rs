//! The bucket: one trait, two stores (a local folder, the embedded default; and S3-compatible
//! services such as Backblaze B2). Keys are relative to the remote's prefix.

mod local;
mod s3;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use indicatif::ProgressBar;

pub use local::LocalStore;
pub use s3::S3Store;

use crate::error::{Error, Result};
use crate::settings::Remote;

/// What a listing or a HEAD tells about an object.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    /// Key relative to the prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The store's ETag, when it gives one.
    pub etag: Option<String>,
    /// When it was last written.
    pub last_modified: Option<SystemTime>,
}

/// A small object read whole (db.toml, metadata, leases).
#[derive(Debug, Clone)]
pub struct Object {
    /// Its bytes.
    pub body: Vec<u8>,
    /// Its ETag, for a later compare-and-swap.
    pub etag: Option<String>,
}

/// A precondition on a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Write unconditionally.
    None,
    /// Write only if no object has this key (`If-None-Match: *`).
    IfAbsent,
    /// Write only if the object still has this ETag (`If-Match`).
    IfMatch(String),
}

/// The outcome of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written.
    Written {
        /// Its new ETag, when the store gives one.
        etag: Option<String>,
        /// The version the write made, on a store that keeps versions (Backblaze B2 always does).
        version_id: Option<String>,
    },
    /// The precondition did not hold; nothing was written.
    ConditionFailed,
}

impl PutOutcome {
    /// A write with this ETag and no version id.
    pub fn written(etag: Option<String>) -> Self {
        PutOutcome::Written { etag, version_id: None }
    }
}

/// A multipart upload that was started and never completed nor aborted.
#[derive(Debug, Clone)]
pub struct Unfinished {
    /// The key it would have written.
    pub key: String,
    /// The store's id of the upload.
    pub upload_id: String,
    /// When it was started.
    pub initiated: Option<SystemTime>,
}

/// What the bucket keeps of overwritten and deleted objects, for `b2m doctor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Retention {
    /// `Enabled`, `Suspended`, or `None` when the bucket never had versioning (or the store has none).
    pub versioning: Option<String>,
    /// The bucket's lifecycle rules, one line each, when it has any and the store tells.
    pub lifecycle: Vec<String>,
}

pub use crate::error::StoreError;

/// The bucket, whichever service holds it. Every method is blocking.
pub trait Store: Send + Sync {
    /// `s3://bucket/prefix` or `file:///srv/bucket`, for messages.
    fn location(&self) -> &str;

    /// Reads a small object whole; `None` when absent.
    fn get(&self, key: &str) -> Result<Option<Object>, StoreError>;

    /// [`Store::get`] that gives up (with [`StoreError::Unreachable`]) unless it finishes,
    /// retries included, within `within`: a start decides within it whether the bucket answers.
    fn get_within(&self, key: &str, within: Duration) -> Result<Option<Object>, StoreError> {
        let _ = within;
        self.get(key)
    }

    /// Streams an object of any size into `sink` with one GET; false when absent.
    fn get_to(&self, key: &str, sink: &mut dyn Write) -> Result<bool, StoreError>;

    /// Size and ETag of an object; `None` when absent.
    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError>;

    /// Writes a small object, under a condition.
    fn put(&self, key: &str, body: &[u8], condition: Condition) -> Result<PutOutcome, StoreError>;

    /// Writes a small object, under a condition, and gives up (with [`StoreError::Unreachable`])
    /// unless the write, retries included, finishes within `within`. Writes guarded by a lease use
    /// it, so none can land after the lease could have been taken over. A failure means the
    /// outcome is unknown (the write may have landed and its answer been lost): read back.
    fn put_within(&self, key: &str, body: &[u8], condition: Condition, within: Duration) -> Result<PutOutcome, StoreError> {
        let _ = within;
        self.put(key, body, condition)
    }

    /// Uploads a file, streamed in constant memory, with `sha256` in the object's metadata.
    /// `settle` is asked once every byte was read and sent, and before the object can appear
    /// under `key` (a multipart upload's completion, a local file's rename; an upload of one
    /// request asks before sending): when it answers false the upload is abandoned, nothing
    /// appears under `key` and nothing is left behind, and this returns `Ok(false)`.
    fn upload(
        &self,
        key: &str,
        path: &Path,
        sha256: &str,
        progress: &ProgressBar,
        settle: &mut dyn FnMut() -> bool,
    ) -> Result<bool, StoreError>;

    /// [`Store::upload`] of a file nobody writes to any more (a snapshot made to be sent): a store
    /// on this machine may link it into place rather than copy it.
    fn upload_snapshot(
        &self,
        key: &str,
        path: &Path,
        sha256: &str,
        progress: &ProgressBar,
        settle: &mut dyn FnMut() -> bool,
    ) -> Result<bool, StoreError> {
        self.upload(key, path, sha256, progress, settle)
    }

    /// Uploads a file (see [`Store::upload`]), with nothing to settle.
    fn upload_file(&self, key: &str, path: &Path, sha256: &str, progress: &ProgressBar) -> Result<(), StoreError> {
        self.upload(key, path, sha256, progress, &mut || true).map(drop)
    }

    /// Streams an object into `sink`; returns the bytes written.
    fn download(&self, key: &str, sink: &mut dyn Write, progress: &ProgressBar) -> Result<u64, StoreError>;

    /// Streams bytes `offset..offset + len` of an object into `sink` (a pack's frames); returns the
    /// bytes written. An answer of other bytes than those asked for is an error.
    fn download_range(&self, key: &str, offset: u64, len: u64, sink: &mut dyn Write, progress: &ProgressBar) -> Result<u64, StoreError>;

    /// Downloads an object into `file` (empty), each stretch written where it belongs, possibly
    /// several at once and out of order, and reported to `landed(offset, len)` once written.
    /// Returns the object's size. By default one stream, in order.
    fn download_to(&self, key: &str, file: &std::fs::File, landed: &dyn Fn(u64, u64), progress: &ProgressBar) -> Result<u64, StoreError> {
        self.download(key, &mut InOrder::new(file, landed), progress)
    }

    /// Every object whose key starts with `prefix`, in key order.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;

    /// Removes an object (absent is fine). On a store that keeps versions this only hides it.
    fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Removes for good the given versions of an object (those b2m itself wrote), oldest first,
    /// so an older version never becomes current again; with no ids, a plain [`Store::delete`].
    fn delete_versions(&self, key: &str, version_ids: &[String]) -> Result<(), StoreError> {
        let _ = version_ids;
        self.delete(key)
    }

    /// Removes every version of an object for good, oldest first (a plain delete on a store that
    /// keeps no versions).
    fn purge(&self, key: &str) -> Result<(), StoreError> {
        self.delete(key)
    }

    /// Copies the object `from` to `to` (a rollback republishes an old version's bytes under a new
    /// version's key). By default through this machine (download to a temp file, upload); stores
    /// that copy inside the bucket do so.
    fn copy(&self, from: &str, to: &str, sha256: &str) -> Result<(), StoreError> {
        copy_through_here(self, from, to, sha256)
    }

    /// Multipart uploads under `prefix` that were never completed nor aborted.
    fn unfinished_uploads(&self, prefix: &str) -> Result<Vec<Unfinished>, StoreError> {
        let _ = prefix;
        Ok(Vec::new())
    }

    /// Aborts an unfinished multipart upload (gone already is fine).
    fn abort_upload(&self, upload: &Unfinished) -> Result<(), StoreError> {
        let _ = upload;
        Ok(())
    }

    /// What the bucket keeps of old versions (versioning, lifecycle rules).
    fn retention(&self) -> Result<Retention, StoreError> {
        Ok(Retention::default())
    }

    /// Confirms the bucket exists and can be read (for telling an empty bucket from none).
    fn check_bucket(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Starts a multipart upload at `key` and aborts it, for `b2m doctor`: `None` when the answer
    /// is S3's (or the store has no multipart uploads), else the root element of the answer the
    /// SDK could not read (objects then go up in one PUT each, up to 5 GiB).
    fn probe_multipart(&self, key: &str) -> Result<Option<String>, StoreError> {
        let _ = key;
        Ok(None)
    }

    /// Whether this store is known to check write conditions atomically without a probe.
    fn atomic_conditional_writes(&self) -> bool {
        false
    }

    /// The requests this store sent, counted where they leave (every attempt: a retry, a part of
    /// a multipart upload, a page of a listing each count; in a local folder, one call is one).
    /// `-v` and `--json` report it, and tests hold commands to their budgets (status: 2, a no-op
    /// preflight: 1).
    fn requests(&self) -> u64;
}

/// A download in one stream, written in order into a file, each write reported once written.
pub(crate) struct InOrder<'a> {
    file: &'a std::fs::File,
    landed: &'a dyn Fn(u64, u64),
    offset: u64,
}

impl<'a> InOrder<'a> {
    pub(crate) fn new(file: &'a std::fs::File, landed: &'a dyn Fn(u64, u64)) -> Self {
        Self::at(file, 0, landed)
    }

    /// Written from `offset` of the file on (a ranged download).
    pub(crate) fn at(file: &'a std::fs::File, offset: u64, landed: &'a dyn Fn(u64, u64)) -> Self {
        InOrder { file, landed, offset }
    }
}

impl Write for InOrder<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(data, self.offset)?;
        (self.landed)(self.offset, data.len() as u64);
        self.offset += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Copies an object through this machine: download to a temp file, upload.
pub(crate) fn copy_through_here<S: Store + ?Sized>(store: &S, from: &str, to: &str, sha256: &str) -> Result<(), StoreError> {
    let failed = |e: std::io::Error| StoreError::LocalWrite { key: from.to_string(), source: e };
    let mut tmp = tempfile::NamedTempFile::new().map_err(failed)?;
    store.download(from, tmp.as_file_mut(), &ProgressBar::hidden())?;
    tmp.as_file().sync_all().map_err(failed)?;
    store.upload_file(to, tmp.path(), sha256, &ProgressBar::hidden())
}

/// Where a store tells the user something that is not an error: a server's quirk it works around,
/// said once per process. The engine prints it on stderr; [`open`] sends it to the log.
pub type Notice = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// Opens the store a remote names; its notices go to the log (`-v`).
pub fn open(remote: &Remote) -> Result<Box<dyn Store>> {
    open_with_notice(remote, std::sync::Arc::new(|message: &str| tracing::warn!("{message}")))
}

/// Opens the store a remote names; it tells `notice` what the user should know.
pub fn open_with_notice(remote: &Remote, notice: Notice) -> Result<Box<dyn Store>> {
    if let Some(rest) = remote.url.strip_prefix("file://") {
        let path = PathBuf::from(rest);
        if !path.is_absolute() {
            return Err(Error::config_hint(
                format!("remote `{}` must name an absolute folder", remote.url),
                "write it as `file:///absolute/path`",
            ));
        }
        return Ok(Box::new(LocalStore::open(&path)?));
    }
    if let Some(rest) = remote.url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::config_hint(format!("remote `{}` names no bucket", remote.url), "write it as `s3://bucket/prefix`"));
        }
        return Ok(Box::new(S3Store::open(remote, bucket, prefix.trim_matches('/'), notice)?));
    }
    Err(Error::config_hint(
        format!("remote `{}` is neither `s3://…` nor `file:///…`", remote.url),
        "fix `remote.url` in `b2m.toml` (or `B2M_REMOTE`)",
    ))
}
