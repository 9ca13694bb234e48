//! File helpers: atomic writes, directory fsync, the buffer size for streaming.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Buffer size for streaming reads and writes: large enough for full disk and hash speed, small
/// enough that memory never grows with a database.
pub const BUF_SIZE: usize = 1 << 20;

/// fsyncs a directory so a rename inside it survives a power cut.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `contents` to `path` through a temp file in the same folder, fsync and rename: a reader
/// sees the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let write = || -> io::Result<()> {
        // Keep the mode of the file being replaced; a new file gets 0644 less the umask's say.
        let mode = fs::metadata(path).map(|m| m.permissions()).unwrap_or_else(|_| new_file_permissions());
        let mut tmp = tempfile::Builder::new().prefix(".b2m-").suffix(".tmp").permissions(mode).tempfile_in(dir)?;
        tmp.write_all(contents)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        sync_dir(dir)
    };
    write().map_err(|e| Error::io("cannot write", path, e))
}

/// Removes a file; a missing file is fine.
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("cannot remove", path, e)),
    }
}

/// The `-wal` and `-shm` files beside a database.
pub fn sidecars(db: &Path) -> [std::path::PathBuf; 2] {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let mut shm = db.as_os_str().to_owned();
    shm.push("-shm");
    [wal.into(), shm.into()]
}

/// Permissions for a new file that others (the server's user) must be able to read: 0644.
pub fn new_file_permissions() -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    fs::Permissions::from_mode(0o644)
}
