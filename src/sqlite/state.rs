//! Local state in `.b2m/state.db`: per database the *base* (version and sha256 last synced with
//! the bucket), a hash cache keyed by (device, inode, size, mtime, ctime), and the journal of a
//! publish whose local half has not finished yet.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use indicatif::ProgressBar;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::sqlite::hash::hash_file;

/// A file whose mtime is this close to the moment we hash it may still change within the same
/// timestamp tick; such a hash is used but not cached (git's "racy" rule).
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// What the local copy of a database was when it last agreed with the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// The bucket version.
    pub version: u64,
    /// sha256 of that version's object in the bucket.
    pub sha256: String,
    /// sha256 of the local file's bytes when it held exactly that content (differs from `sha256`
    /// after an upload, whose object is a snapshot of the file, not its bytes).
    pub local_sha256: String,
}

/// A publish that reached (or may have reached) its commit, and the local steps still to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The database stem.
    pub stem: String,
    /// Its db.toml key.
    pub key: String,
    /// The version being published.
    pub version: u64,
    /// sha256 of the uploaded object.
    pub sha256: String,
    /// sha256 of the local file the snapshot was taken from.
    pub local_sha256: String,
    /// The local file name before the publish.
    pub from_file: String,
}

/// The open state database.
pub struct State {
    conn: Connection,
    path: PathBuf,
}

fn file_key(meta: &std::fs::Metadata) -> [i64; 5] {
    [
        i64::try_from(meta.dev()).unwrap_or(i64::MAX),
        i64::try_from(meta.ino()).unwrap_or(i64::MAX),
        i64::try_from(meta.size()).unwrap_or(i64::MAX),
        meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
        meta.ctime().saturating_mul(1_000_000_000).saturating_add(meta.ctime_nsec()),
    ]
}

impl State {
    /// Opens (creating) the state in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
        let path = dir.join("state.db");
        let conn = Connection::open(&path).map_err(|e| Error::sqlite(&path, e))?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(|e| Error::sqlite(&path, e))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS base (
                 stem TEXT PRIMARY KEY, version INTEGER NOT NULL, sha256 TEXT NOT NULL,
                 local_sha256 TEXT NOT NULL, synced_at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS hash_cache (
                 path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, size INTEGER,
                 mtime_ns INTEGER, ctime_ns INTEGER, sha256 TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS pending (
                 stem TEXT PRIMARY KEY, key TEXT NOT NULL, version INTEGER NOT NULL,
                 sha256 TEXT NOT NULL, local_sha256 TEXT NOT NULL, from_file TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS doctor (
                 remote TEXT PRIMARY KEY, conditional TEXT NOT NULL, checked_at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS bad_objects (
                 key TEXT PRIMARY KEY, expected TEXT NOT NULL, actual TEXT NOT NULL, seen_at TEXT NOT NULL);",
        )
        .map_err(|e| Error::sqlite(&path, e))?;
        Ok(State { conn, path })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        |e| Error::sqlite(&self.path, e)
    }

    /// The base of a database.
    pub fn base(&self, stem: &str) -> Result<Option<Base>> {
        self.conn
            .query_row("SELECT version, sha256, local_sha256 FROM base WHERE stem = ?1", [stem], |row| {
                Ok(Base { version: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0), sha256: row.get(1)?, local_sha256: row.get(2)? })
            })
            .optional()
            .map_err(self.err())
    }

    /// Records a database's base.
    pub fn set_base(&self, stem: &str, base: &Base) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO base (stem, version, sha256, local_sha256, synced_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![stem, i64::try_from(base.version).unwrap_or(i64::MAX), base.sha256, base.local_sha256, crate::now_rfc3339()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The sha256 of a file's bytes, from the cache when the file has not changed since it was
    /// hashed, else computed (streamed) and cached.
    pub fn file_hash(&self, path: &Path, progress: &ProgressBar) -> Result<String> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("cannot read", path, e))?;
        let key = file_key(&meta);
        if let Some(sha) = self.file_hash_cached(path, &meta)? {
            tracing::debug!(path = %path.display(), "hash cache hit");
            return Ok(sha);
        }
        let started = SystemTime::now();
        progress.set_length(meta.len());
        let (sha, _) = hash_file(path, progress)?;
        let after = std::fs::metadata(path).map_err(|e| Error::io("cannot read", path, e))?;
        let racy = meta.modified().ok().and_then(|m| started.duration_since(m).ok()).is_none_or(|age| age < RACY_WINDOW);
        if file_key(&after) == key && !racy {
            self.remember_hash(path, &after, &sha)?;
        }
        Ok(sha)
    }

    /// The cached hash of a file as it was when `meta` was read, if any.
    pub fn file_hash_cached(&self, path: &Path, meta: &std::fs::Metadata) -> Result<Option<String>> {
        let key = file_key(meta);
        self.conn
            .query_row(
                "SELECT sha256 FROM hash_cache WHERE path = ?1 AND dev = ?2 AND ino = ?3 AND size = ?4 AND mtime_ns = ?5 AND ctime_ns = ?6",
                params![path.to_string_lossy(), key[0], key[1], key[2], key[3], key[4]],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    /// Caches the hash of a file that b2m itself just wrote (so no one else can have changed it).
    pub fn remember_written(&self, path: &Path, sha256: &str) -> Result<()> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("cannot read", path, e))?;
        self.remember_hash(path, &meta, sha256)
    }

    fn remember_hash(&self, path: &Path, meta: &std::fs::Metadata, sha256: &str) -> Result<()> {
        let key = file_key(meta);
        self.conn
            .execute(
                "INSERT OR REPLACE INTO hash_cache (path, dev, ino, size, mtime_ns, ctime_ns, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![path.to_string_lossy(), key[0], key[1], key[2], key[3], key[4], sha256],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The unfinished publish of a database, if any.
    pub fn pending(&self, stem: &str) -> Result<Option<Pending>> {
        self.conn
            .query_row("SELECT stem, key, version, sha256, local_sha256, from_file FROM pending WHERE stem = ?1", [stem], |row| {
                Ok(Pending {
                    stem: row.get(0)?,
                    key: row.get(1)?,
                    version: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                    sha256: row.get(3)?,
                    local_sha256: row.get(4)?,
                    from_file: row.get(5)?,
                })
            })
            .optional()
            .map_err(self.err())
    }

    /// Records a publish about to commit.
    pub fn set_pending(&self, p: &Pending) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO pending (stem, key, version, sha256, local_sha256, from_file) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![p.stem, p.key, i64::try_from(p.version).unwrap_or(i64::MAX), p.sha256, p.local_sha256, p.from_file],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Forgets a pending publish.
    pub fn clear_pending(&self, stem: &str) -> Result<()> {
        self.conn.execute("DELETE FROM pending WHERE stem = ?1", [stem]).map_err(self.err())?;
        Ok(())
    }

    /// What `b2m doctor` found about a remote's conditional writes.
    pub fn doctor_finding(&self, remote: &str) -> Result<Option<String>> {
        self.conn.query_row("SELECT conditional FROM doctor WHERE remote = ?1", [remote], |row| row.get(0)).optional().map_err(self.err())
    }

    /// Records what `b2m doctor` found.
    pub fn set_doctor_finding(&self, remote: &str, conditional: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO doctor (remote, conditional, checked_at) VALUES (?1, ?2, ?3)",
                params![remote, conditional, crate::now_rfc3339()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Remembers that a bucket object did not match its recorded sha256.
    pub fn mark_bad_object(&self, key: &str, expected: &str, actual: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO bad_objects (key, expected, actual, seen_at) VALUES (?1, ?2, ?3, ?4)",
                params![key, expected, actual, crate::now_rfc3339()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Whether a bucket object was seen not to match its recorded sha256 (versions are
    /// immutable, so the mark stands until a download of it verifies).
    pub fn is_bad_object(&self, key: &str) -> Result<bool> {
        let found: Option<i64> =
            self.conn.query_row("SELECT 1 FROM bad_objects WHERE key = ?1", [key], |row| row.get(0)).optional().map_err(self.err())?;
        Ok(found.is_some())
    }

    /// Forgets a bad-object mark once the object verified.
    pub fn clear_bad_object(&self, key: &str) -> Result<()> {
        self.conn.execute("DELETE FROM bad_objects WHERE key = ?1", [key]).map_err(self.err())?;
        Ok(())
    }
}
