//! Local state in `.b2m/state.db`: per database the *base* (the version last synced with the
//! bucket, its object's sha256 and its content hash), a content-hash cache keyed by the file's
//! (device, inode, size, mtime, ctime) and its `-wal`'s (size, mtime), and the journal of a
//! publish whose local half has not finished yet.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use indicatif::ProgressBar;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::sqlite::hash::content_hash_file;

/// A file whose mtime is this close to the moment we hash it may still change within the same
/// timestamp tick; such a hash is used but not cached (git's "racy" rule).
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// What the local copy of a database was when it last agreed with the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// The bucket version.
    pub version: u64,
    /// sha256 of that version's object in the bucket (what db.toml pins).
    pub sha256: String,
    /// The content hash of that version.
    pub content_sha256: String,
    /// The content hash of the local file when it held exactly that version (it can differ from
    /// `content_sha256` after an upload: the object is a snapshot of the file, not its pages).
    pub local_content_sha256: String,
}

impl Base {
    /// Whether a local content hash is this base's content: nothing new since the sync.
    pub fn matches(&self, content: &str) -> bool {
        content == self.local_content_sha256 || content == self.content_sha256
    }
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
    /// Its content hash.
    pub content_sha256: String,
    /// The content hash of the local file the snapshot was taken from.
    pub local_content_sha256: String,
    /// The local file name before the publish, renamed to the new version's name; empty when the
    /// version was made from a working copy (a changeset) and the local file is fetched instead.
    pub from_file: String,
}

/// The open state database.
pub struct State {
    conn: Connection,
    path: PathBuf,
}

/// What identifies a file's state without reading it: (device, inode, size, mtime, ctime) of the
/// database and (size, mtime) of its `-wal` (zeros when there is none).
type FileKey = [i64; 7];

fn file_key(path: &Path, meta: &std::fs::Metadata) -> FileKey {
    let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
    let [wal, ..] = crate::fsutil::sidecars(path);
    let (wal_size, wal_mtime) =
        std::fs::metadata(wal).map_or((0, 0), |w| (i64::try_from(w.size()).unwrap_or(i64::MAX), ns(w.mtime(), w.mtime_nsec())));
    [
        i64::try_from(meta.dev()).unwrap_or(i64::MAX),
        i64::try_from(meta.ino()).unwrap_or(i64::MAX),
        i64::try_from(meta.size()).unwrap_or(i64::MAX),
        ns(meta.mtime(), meta.mtime_nsec()),
        ns(meta.ctime(), meta.ctime_nsec()),
        wal_size,
        wal_mtime,
    ]
}

impl State {
    /// Opens (creating) the state in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
        Self::open_at(dir.join("state.db"))
    }

    /// [`State::open`], but a damaged `state.db` (not a database, or corrupt) is moved aside as
    /// `state.db.damaged-<time>` and a new one is started: everything in it can be rebuilt from
    /// db.toml's pins, the files and the bucket (bases are adopted again, hashes recomputed).
    /// Returns where the damaged file went, for the caller to say so.
    pub fn open_or_rebuild(dir: &Path) -> Result<(Self, Option<PathBuf>)> {
        match Self::open(dir) {
            Ok(state) => Ok((state, None)),
            Err(Error::Sqlite { source, .. }) if crate::sqlite::db::is_damage(&source) => {
                let path = dir.join("state.db");
                let aside = dir.join(format!("state.db.damaged-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")));
                std::fs::rename(&path, &aside).map_err(|e| Error::io("cannot move aside", &path, e))?;
                for sidecar in crate::fsutil::sidecars(&path) {
                    crate::fsutil::remove_if_exists(&sidecar)?;
                }
                Ok((Self::open(dir)?, Some(aside)))
            }
            Err(e) => Err(e),
        }
    }

    fn open_at(path: PathBuf) -> Result<Self> {
        let conn = Connection::open(&path).map_err(|e| Error::sqlite(&path, e))?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(|e| Error::sqlite(&path, e))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS base_v2 (
                 stem TEXT PRIMARY KEY, version INTEGER NOT NULL, sha256 TEXT NOT NULL,
                 content_sha256 TEXT NOT NULL, local_content_sha256 TEXT NOT NULL, synced_at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS content_cache (
                 path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER,
                 ctime_ns INTEGER, wal_size INTEGER, wal_mtime_ns INTEGER, content_sha256 TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS pending_v2 (
                 stem TEXT PRIMARY KEY, key TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL,
                 content_sha256 TEXT NOT NULL, local_content_sha256 TEXT NOT NULL, from_file TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS heartbeat (
                 id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL, at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS changesets_done (
                 name TEXT PRIMARY KEY, script_sha256 TEXT NOT NULL, seen_at TEXT NOT NULL);
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
            .query_row("SELECT version, sha256, content_sha256, local_content_sha256 FROM base_v2 WHERE stem = ?1", [stem], |row| {
                Ok(Base {
                    version: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                    sha256: row.get(1)?,
                    content_sha256: row.get(2)?,
                    local_content_sha256: row.get(3)?,
                })
            })
            .optional()
            .map_err(self.err())
    }

    /// Records a database's base.
    pub fn set_base(&self, stem: &str, base: &Base) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO base_v2 (stem, version, sha256, content_sha256, local_content_sha256, synced_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    stem,
                    i64::try_from(base.version).unwrap_or(i64::MAX),
                    base.sha256,
                    base.content_sha256,
                    base.local_content_sha256,
                    crate::util::now_rfc3339()
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The content hash of a database file, from the cache when neither the file nor its `-wal`
    /// has changed since it was hashed, else computed (streamed) and cached.
    pub fn content_hash(&self, path: &Path, progress: &ProgressBar) -> Result<String> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("cannot read", path, e))?;
        let key = file_key(path, &meta);
        if let Some(sha) = self.cached(path, &key)? {
            tracing::debug!(path = %path.display(), "hash cache hit");
            return Ok(sha);
        }
        let started = SystemTime::now();
        progress.set_length(meta.len());
        let sha = content_hash_file(path, progress)?;
        let after = std::fs::metadata(path).map_err(|e| Error::io("cannot read", path, e))?;
        let racy = meta.modified().ok().and_then(|m| started.duration_since(m).ok()).is_none_or(|age| age < RACY_WINDOW);
        let after_key = file_key(path, &after);
        if after_key == key && !racy {
            self.remember(path, &after_key, &sha)?;
        }
        Ok(sha)
    }

    /// The cached content hash of a file as it is now, if any.
    pub fn cached_content_hash(&self, path: &Path) -> Result<Option<String>> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("cannot read", path, e))?;
        self.cached(path, &file_key(path, &meta))
    }

    fn cached(&self, path: &Path, key: &FileKey) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT content_sha256 FROM content_cache WHERE path = ?1 AND dev = ?2 AND ino = ?3 AND size = ?4
                 AND mtime_ns = ?5 AND ctime_ns = ?6 AND wal_size = ?7 AND wal_mtime_ns = ?8",
                params![path.to_string_lossy(), key[0], key[1], key[2], key[3], key[4], key[5], key[6]],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    /// Caches the content hash of a file that b2m itself just wrote, or just proved unchanged.
    pub fn remember_written(&self, path: &Path, content_sha256: &str) -> Result<()> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("cannot read", path, e))?;
        self.remember(path, &file_key(path, &meta), content_sha256)
    }

    fn remember(&self, path: &Path, key: &FileKey, content_sha256: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO content_cache (path, dev, ino, size, mtime_ns, ctime_ns, wal_size, wal_mtime_ns, content_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![path.to_string_lossy(), key[0], key[1], key[2], key[3], key[4], key[5], key[6], content_sha256],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The unfinished publish of a database, if any.
    pub fn pending(&self, stem: &str) -> Result<Option<Pending>> {
        self.conn
            .query_row(
                "SELECT stem, key, version, sha256, content_sha256, local_content_sha256, from_file FROM pending_v2 WHERE stem = ?1",
                [stem],
                |row| {
                    Ok(Pending {
                        stem: row.get(0)?,
                        key: row.get(1)?,
                        version: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                        sha256: row.get(3)?,
                        content_sha256: row.get(4)?,
                        local_content_sha256: row.get(5)?,
                        from_file: row.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }

    /// Records a publish about to commit.
    pub fn set_pending(&self, p: &Pending) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO pending_v2 (stem, key, version, sha256, content_sha256, local_content_sha256, from_file)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    p.stem,
                    p.key,
                    i64::try_from(p.version).unwrap_or(i64::MAX),
                    p.sha256,
                    p.content_sha256,
                    p.local_content_sha256,
                    p.from_file
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Forgets a pending publish.
    pub fn clear_pending(&self, stem: &str) -> Result<()> {
        self.conn.execute("DELETE FROM pending_v2 WHERE stem = ?1", [stem]).map_err(self.err())?;
        Ok(())
    }

    /// The last fleet record this machine wrote, and when.
    pub fn heartbeat(&self) -> Result<Option<(String, String)>> {
        self.conn
            .query_row("SELECT body, at FROM heartbeat WHERE id = 1", [], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()
            .map_err(self.err())
    }

    /// Records the fleet record just written.
    pub fn set_heartbeat(&self, body: &str) -> Result<()> {
        self.conn
            .execute("INSERT OR REPLACE INTO heartbeat (id, body, at) VALUES (1, ?1, ?2)", params![body, crate::util::now_rfc3339()])
            .map_err(self.err())?;
        Ok(())
    }

    /// Whether this machine has seen changeset `name` done in the ledger (a done entry never changes
    /// again, so a no-op preflight asks the bucket nothing about it).
    pub fn changeset_known_done(&self, name: &str) -> Result<bool> {
        let found: Option<i64> = self
            .conn
            .query_row("SELECT 1 FROM changesets_done WHERE name = ?1", [name], |row| row.get(0))
            .optional()
            .map_err(self.err())?;
        Ok(found.is_some())
    }

    /// Records that changeset `name` is done in the ledger.
    pub fn set_changeset_done(&self, name: &str, script_sha256: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO changesets_done (name, script_sha256, seen_at) VALUES (?1, ?2, ?3)",
                params![name, script_sha256, crate::util::now_rfc3339()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Remembers that a bucket object did not match its recorded sha256.
    pub fn mark_bad_object(&self, key: &str, expected: &str, actual: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO bad_objects (key, expected, actual, seen_at) VALUES (?1, ?2, ?3, ?4)",
                params![key, expected, actual, crate::util::now_rfc3339()],
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
