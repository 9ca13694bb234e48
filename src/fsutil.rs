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
    write_atomic_with(path, &mut |out| out.write_all(contents))
}

/// [`write_atomic`] of what `write` writes, as it writes it.
pub fn write_atomic_with(path: &Path, write: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut write = || -> io::Result<()> {
        // Keep the mode of the file being replaced; a new file gets 0644 less the umask's say.
        let mode = fs::metadata(path).map(|m| m.permissions()).unwrap_or_else(|_| new_file_permissions());
        let tmp = tempfile::Builder::new().prefix(".b2m-").suffix(".tmp").permissions(mode).tempfile_in(dir)?;
        let mut out = io::BufWriter::with_capacity(64 << 10, tmp);
        write(&mut out)?;
        let tmp = out.into_inner().map_err(io::IntoInnerError::into_error)?;
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

/// Gives `file` the owner, group and permission bits of the file at `like` (an owner only where
/// this process may: as root, or when it is already ours).
pub fn take_owner_and_mode(file: &File, like: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let want = fs::metadata(like)?;
    let have = file.metadata()?;
    if (have.uid(), have.gid()) != (want.uid(), want.gid()) {
        match std::os::unix::fs::fchown(file, Some(want.uid()), Some(want.gid())) {
            Ok(()) => {}
            // Not ours to give away: the mode still follows.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(e),
        }
    }
    file.set_permissions(fs::Permissions::from_mode(want.permissions().mode() & 0o7777))
}

/// Moves a file to `to` (a rename; across file systems a copy, then the original removed).
pub fn move_file(from: &Path, to: &Path) -> Result<()> {
    if fs::rename(from, to).is_err() {
        fs::copy(from, to).map_err(|e| Error::io("cannot keep a copy of", from, e))?;
        remove_if_exists(from)?;
    }
    Ok(())
}

/// The `-wal`, `-shm` and `-journal` files beside a database, in that order. None may be left
/// beside a new file: a stale WAL would be applied to it, a hot journal rolled back into it.
pub fn sidecars(db: &Path) -> [std::path::PathBuf; 3] {
    ["-wal", "-shm", "-journal"].map(|suffix| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        name.into()
    })
}

/// Permissions for a new file that others (the server's user) must be able to read: 0644.
pub fn new_file_permissions() -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    fs::Permissions::from_mode(0o644)
}

/// A process other than this one that has `db` (or its `-wal`/`-shm`) open, as `pid N (`cmd`)`:
/// found by its open files in `/proc/*/fd`, or, for processes whose files we may not read (another
/// user's), by a POSIX lock on the file in `/proc/locks` (every SQLite connection in WAL mode
/// holds one while open). `None` when no such process is seen.
pub fn open_by_others(db: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let me = std::process::id();
    let [wal, shm, _] = sidecars(db);
    let targets: Vec<std::path::PathBuf> = [db.to_path_buf(), wal, shm].into_iter().filter_map(|p| fs::canonicalize(p).ok()).collect();
    if targets.is_empty() {
        return None;
    }
    let describe = |pid: u32| {
        let cmd = fs::read(format!("/proc/{pid}/cmdline")).map(|b| {
            b.split(|&c| c == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect::<Vec<_>>().join(" ")
        });
        // One line, whatever the command line holds.
        let cmd = cmd.unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
        format!("pid {pid} (`{}`)", cmd.chars().take(80).collect::<String>())
    };
    let procs = fs::read_dir("/proc").ok()?;
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if fs::read_link(fd.path()).is_ok_and(|target| targets.contains(&target)) {
                return Some(describe(pid));
            }
        }
    }
    // `maj:min:inode` of each file, as /proc/locks writes them.
    let ids: Vec<String> = targets
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| {
            let dev = m.dev();
            let (major, minor) = (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff), ((dev >> 12) & 0xffff_ff00) | (dev & 0xff));
            format!("{major:02x}:{minor:02x}:{}", m.ino())
        })
        .collect();
    let locks = fs::read_to_string("/proc/locks").unwrap_or_default();
    for line in locks.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(pid), Some(id)) = (fields.get(4), fields.get(5)) else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if pid != me && ids.iter().any(|want| want == id) {
            return Some(describe(pid));
        }
    }
    None
}
