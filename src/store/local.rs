//! The local-folder store (`file:///srv/b2m-bucket`), the embedded default. Every write goes to a
//! temp file that is fsynced and then renamed (or hard-linked, for create-if-absent) into place,
//! so a reader never sees half an object.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fs2::FileExt;
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use super::{Condition, Object, ObjectInfo, PutOutcome, Store, StoreError};
use crate::fsutil;

/// Folder for temp files and the compare-and-swap lock, inside the bucket folder so renames stay
/// on one file system. Never listed.
const TMP_DIR: &str = ".b2m-tmp";

/// Objects up to this size get a content-hash ETag; larger ones an inode/size/mtime one.
const CONTENT_ETAG_LIMIT: u64 = 1 << 20;

/// A bucket in a local folder.
pub struct LocalStore {
    root: PathBuf,
    location: String,
    /// Calls made (one call is one request here).
    calls: std::sync::atomic::AtomicU64,
}

impl LocalStore {
    /// Opens an existing folder as a bucket.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        if !root.is_dir() {
            return Err(StoreError::MissingFolder { path: root.to_path_buf() });
        }
        Ok(LocalStore { root: root.to_path_buf(), location: format!("file://{}", root.display()), calls: Default::default() })
    }

    /// One more request.
    fn count(&self) {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Copies a file into the bucket as `key` (through a temp file, placed once `settle` agrees).
    fn copy_in(&self, key: &str, path: &Path, progress: &ProgressBar, settle: &mut dyn FnMut() -> bool) -> Result<bool, StoreError> {
        let dest = self.path(key)?;
        let tmp = self.temp_with(key, |f| {
            let mut src = BufReader::with_capacity(fsutil::BUF_SIZE, File::open(path)?);
            io::copy(&mut src, &mut progress.wrap_write(f))?;
            Ok(())
        })?;
        self.settle_and_place(key, tmp, &dest, settle)
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let bad = key.is_empty() || key.starts_with('/') || key.split('/').any(|part| part.is_empty() || part == "." || part == "..");
        if bad || key.starts_with(TMP_DIR) {
            return Err(self.failed("USE", key, "invalid key".into()));
        }
        Ok(self.root.join(key))
    }

    /// Opens an object's file for a GET (counted).
    fn open_object(&self, key: &str) -> Result<File, StoreError> {
        self.count();
        match File::open(self.path(key)?) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.failed("GET", key, "no such object".into())),
            Err(e) => Err(self.failed("GET", key, e.to_string())),
        }
    }

    fn failed(&self, operation: &'static str, key: &str, detail: String) -> StoreError {
        StoreError::Failed { operation, key: key.to_string(), location: self.location.clone(), detail }
    }

    fn io(&self, operation: &'static str, key: &str) -> impl Fn(io::Error) -> StoreError + '_ {
        let key = key.to_string();
        move |e| self.failed(operation, &key, e.to_string())
    }

    /// Writes `fill` into a fresh fsynced temp file in the bucket folder.
    fn temp_with(&self, key: &str, fill: impl FnOnce(&mut File) -> io::Result<()>) -> Result<tempfile::TempPath, StoreError> {
        let dir = self.root.join(TMP_DIR);
        fs::create_dir_all(&dir).map_err(self.io("PUT", key))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(self.io("PUT", key))?;
        fill(tmp.as_file_mut()).map_err(self.io("PUT", key))?;
        tmp.as_file().sync_all().map_err(self.io("PUT", key))?;
        Ok(tmp.into_temp_path())
    }

    fn etag_of(path: &Path, meta: &fs::Metadata) -> io::Result<String> {
        if meta.len() <= CONTENT_ETAG_LIMIT {
            let bytes = fs::read(path)?;
            return Ok(hex::encode(&Sha256::digest(&bytes)[..16]));
        }
        Ok(format!("{:x}-{:x}-{:x}{:x}", meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec()))
    }

    fn info(&self, key: &str, path: &Path, meta: &fs::Metadata) -> io::Result<ObjectInfo> {
        Ok(ObjectInfo {
            key: key.to_string(),
            size: meta.len(),
            etag: Some(Self::etag_of(path, meta)?),
            last_modified: meta.modified().ok(),
        })
    }

    /// An upload's last step: places `tmp` under `key` once `settle` agrees; otherwise drops it
    /// (which removes it), so an abandoned upload leaves nothing.
    fn settle_and_place(
        &self,
        key: &str,
        tmp: tempfile::TempPath,
        dest: &Path,
        settle: &mut dyn FnMut() -> bool,
    ) -> Result<bool, StoreError> {
        if !settle() {
            return Ok(false);
        }
        self.place(key, tmp, dest, Condition::None).map(|_| true)
    }

    fn place(&self, key: &str, tmp: tempfile::TempPath, dest: &Path, condition: Condition) -> Result<PutOutcome, StoreError> {
        let etag = {
            let meta = fs::metadata(&tmp).map_err(self.io("PUT", key))?;
            Self::etag_of(&tmp, &meta).map_err(self.io("PUT", key))?
        };
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(self.io("PUT", key))?;
        }
        match condition {
            Condition::None => {
                tmp.persist(dest).map_err(|e| self.failed("PUT", key, e.error.to_string()))?;
            }
            Condition::IfAbsent => {
                // link(2) fails if the name exists: an atomic create-if-absent.
                match fs::hard_link(&tmp, dest) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(PutOutcome::ConditionFailed),
                    Err(e) => return Err(self.failed("PUT", key, e.to_string())),
                }
            }
            Condition::IfMatch(expected) => {
                // Every replace-if-unchanged takes this lock, so compare and rename are one step.
                let lock_path = self.root.join(TMP_DIR).join("cas.lock");
                let lock = File::create(&lock_path).map_err(self.io("PUT", key))?;
                lock.lock_exclusive().map_err(self.io("PUT", key))?;
                let current = match fs::metadata(dest) {
                    Ok(meta) => Some(Self::etag_of(dest, &meta).map_err(self.io("PUT", key))?),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                    Err(e) => return Err(self.failed("PUT", key, e.to_string())),
                };
                if current.as_deref() != Some(expected.as_str()) {
                    return Ok(PutOutcome::ConditionFailed);
                }
                tmp.persist(dest).map_err(|e| self.failed("PUT", key, e.error.to_string()))?;
            }
        }
        if let Some(parent) = dest.parent() {
            fsutil::sync_dir(parent).map_err(self.io("PUT", key))?;
        }
        Ok(PutOutcome::written(Some(etag)))
    }
}

impl Store for LocalStore {
    fn location(&self) -> &str {
        &self.location
    }

    fn get_to(&self, key: &str, sink: &mut dyn Write) -> Result<bool, StoreError> {
        self.count();
        let file = match File::open(self.path(key)?) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.failed("GET", key, e.to_string())),
        };
        let mut src = BufReader::with_capacity(fsutil::BUF_SIZE, file);
        let mut buf = vec![0u8; fsutil::BUF_SIZE];
        loop {
            let n = src.read(&mut buf).map_err(self.io("GET", key))?;
            if n == 0 {
                return Ok(true);
            }
            sink.write_all(&buf[..n]).map_err(|source| StoreError::LocalWrite { key: key.to_string(), source })?;
        }
    }

    fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.count();
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(body) => {
                let etag = if body.len() as u64 <= CONTENT_ETAG_LIMIT {
                    Some(hex::encode(&Sha256::digest(&body)[..16]))
                } else {
                    let meta = fs::metadata(&path).map_err(self.io("GET", key))?;
                    Some(Self::etag_of(&path, &meta).map_err(self.io("GET", key))?)
                };
                Ok(Some(Object { body, etag }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.failed("GET", key, e.to_string())),
        }
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        self.count();
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(self.info(key, &path, &meta).map_err(self.io("HEAD", key))?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.failed("HEAD", key, e.to_string())),
        }
    }

    fn put(&self, key: &str, body: &[u8], condition: Condition) -> Result<PutOutcome, StoreError> {
        self.count();
        let dest = self.path(key)?;
        let tmp = self.temp_with(key, |f| f.write_all(body))?;
        self.place(key, tmp, &dest, condition)
    }

    fn upload(
        &self,
        key: &str,
        path: &Path,
        _sha256: &str,
        progress: &ProgressBar,
        settle: &mut dyn FnMut() -> bool,
    ) -> Result<bool, StoreError> {
        self.count();
        self.copy_in(key, path, progress, settle)
    }

    fn upload_snapshot(
        &self,
        key: &str,
        path: &Path,
        _sha256: &str,
        progress: &ProgressBar,
        settle: &mut dyn FnMut() -> bool,
    ) -> Result<bool, StoreError> {
        self.count();
        // Linked rather than copied when it is on the bucket's file system: nobody writes to it.
        let dest = self.path(key)?;
        let dir = self.root.join(TMP_DIR);
        fs::create_dir_all(&dir).map_err(self.io("PUT", key))?;
        let linked = dir.join(format!(".linked-{}", uuid::Uuid::new_v4().simple()));
        if fs::hard_link(path, &linked).is_err() {
            return self.copy_in(key, path, progress, settle);
        }
        // Removed on every way out but the placing.
        let linked = tempfile::TempPath::try_from_path(linked).map_err(self.io("PUT", key))?;
        let size = File::open(&linked).and_then(|f| {
            f.sync_all()?;
            f.metadata()
        });
        progress.inc(size.map_err(self.io("PUT", key))?.len());
        self.settle_and_place(key, linked, &dest, settle)
    }

    fn download_range(&self, key: &str, offset: u64, len: u64, sink: &mut dyn Write, progress: &ProgressBar) -> Result<u64, StoreError> {
        use std::io::Seek;
        let mut file = self.open_object(key)?;
        file.seek(io::SeekFrom::Start(offset)).map_err(self.io("GET", key))?;
        let mut src = progress.wrap_read(BufReader::with_capacity(fsutil::BUF_SIZE, file.take(len)));
        let copied = io::copy(&mut src, sink).map_err(|source| StoreError::LocalWrite { key: key.to_string(), source })?;
        if copied != len {
            return Err(self.failed("GET", key, format!("the object ends before byte {}", offset + len)));
        }
        Ok(copied)
    }

    fn download(&self, key: &str, sink: &mut dyn Write, progress: &ProgressBar) -> Result<u64, StoreError> {
        let file = self.open_object(key)?;
        let mut src = progress.wrap_read(BufReader::with_capacity(fsutil::BUF_SIZE, file));
        let mut buf = vec![0u8; fsutil::BUF_SIZE];
        let mut total = 0u64;
        loop {
            let n = src.read(&mut buf).map_err(self.io("GET", key))?;
            if n == 0 {
                return Ok(total);
            }
            sink.write_all(&buf[..n]).map_err(|source| StoreError::LocalWrite { key: key.to_string(), source })?;
            total += n as u64;
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.count();
        let mut out = Vec::new();
        let mut stack = vec![(self.root.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.failed("LIST", prefix, e.to_string())),
            };
            for entry in entries {
                let entry = entry.map_err(self.io("LIST", prefix))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if rel.is_empty() && name == TMP_DIR {
                    continue;
                }
                let key = format!("{rel}{name}");
                // An object deleted between readdir and stat was simply not there.
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(self.failed("LIST", prefix, e.to_string())),
                };
                if meta.is_dir() {
                    if prefix.starts_with(&key) || key.starts_with(prefix) {
                        stack.push((entry.path(), format!("{key}/")));
                    }
                } else if key.starts_with(prefix) {
                    match self.info(&key, &entry.path(), &meta) {
                        Ok(info) => out.push(info),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(self.failed("LIST", prefix, e.to_string())),
                    }
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn atomic_conditional_writes(&self) -> bool {
        true
    }

    fn requests(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.count();
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.failed("DELETE", key, e.to_string())),
        }
    }
}
