//! Database files: recognising SQLite, checkpointing the WAL, consistent snapshots through the
//! online backup API, and integrity checks.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::ProgressBar;
use rusqlite::backup::StepResult;
use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::fsutil;

const HEADER: &[u8; 16] = b"SQLite format 3\0";
/// Pages copied per backup step: large steps are fast, and the source is re-read if it changes.
const BACKUP_STEP_PAGES: i32 = 4096;
/// Times a backup may start over (another process committed) before it holds the source still.
const RESTARTS_BEFORE_HOLDING: u32 = 2;

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::BadDatabase { path: path.to_path_buf(), reason: reason.into() }
}

/// Refuses a file that does not start with the SQLite header or is cut short.
pub fn check_header(path: &Path) -> Result<()> {
    let mut file = File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let mut header = [0u8; 100];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(Error::io("cannot read", path, e)),
        }
    }
    if read < 100 || &header[..16] != HEADER {
        return Err(bad(path, "no SQLite header (not a database, or an empty or cut-short file)"));
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    let pages = u64::from(u32::from_be_bytes([header[28], header[29], header[30], header[31]]));
    let len = file.metadata().map_err(|e| Error::io("cannot read", path, e))?.len();
    // The in-header page count is only valid when the change counters agree (SQLite ≥ 3.7.0).
    let counters_agree = header[24..28] == header[92..96];
    if counters_agree && pages > 0 && len < pages * page_size && !has_wal_frames(path) {
        return Err(bad(path, format!("file is {len} bytes but its header says {pages} pages of {page_size} (truncated)")));
    }
    Ok(())
}

/// A WAL file's header; frames follow it.
const WAL_HEADER: u64 = 32;

/// Whether a `-wal` beside the file holds frames (committed or not, checkpointed or not).
pub fn has_wal_frames(path: &Path) -> bool {
    let [wal, ..] = fsutil::sidecars(path);
    std::fs::metadata(wal).is_ok_and(|m| m.len() > WAL_HEADER)
}

/// The first bytes of a rollback journal that still holds a transaction to undo.
const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

/// Rolls back a hot journal beside `path` (a writer in rollback-journal mode that died inside a
/// transaction left its `-journal`), as SQLite would on the next read: the file's bytes are then
/// its committed content again. Only when no other process has the file open (a live writer's
/// journal is not hot, and it rolls back its own). Returns whether a transaction was rolled back.
pub fn roll_back_hot_journal(path: &Path) -> Result<bool> {
    let [_, _, journal] = fsutil::sidecars(path);
    let mut magic = [0u8; 8];
    let hot = File::open(&journal).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == JOURNAL_MAGIC;
    if !hot || fsutil::open_by_others(path).is_some() {
        return Ok(false);
    }
    check_header(path)?;
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| Error::sqlite(path, e))?;
    conn.busy_timeout(Duration::ZERO).map_err(|e| Error::sqlite(path, e))?;
    // The first read of the schema finds the hot journal and plays it back.
    let read = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0));
    match read {
        Ok(_) => {}
        Err(rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
        {
            return Ok(false);
        }
        Err(rusqlite::Error::SqliteFailure(f, msg)) => return Err(bad(path, msg.unwrap_or_else(|| f.to_string()))),
        Err(e) => return Err(Error::sqlite(path, e)),
    }
    drop(conn);
    let still_hot = File::open(&journal).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == JOURNAL_MAGIC;
    Ok(!still_hot)
}

fn open(path: &Path, flags: OpenFlags) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(|e| Error::sqlite(path, e))?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(|e| Error::sqlite(path, e))?;
    Ok(conn)
}

/// Copies committed WAL frames into the database file without waiting for anyone (a PASSIVE
/// checkpoint, no busy timeout), so the file's bytes are its logical content. Returns false when
/// committed frames are still only in the `-wal` (a reader pins them, or another checkpoint or a
/// writer is busy): the file's bytes then do not hold everything that was committed. Answers at
/// once whatever the server does; a no-op for a database with no WAL frames.
pub fn checkpoint(path: &Path) -> Result<bool> {
    if !has_wal_frames(path) {
        return Ok(true);
    }
    check_header(path)?;
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| Error::sqlite(path, e))?;
    conn.busy_timeout(Duration::ZERO).map_err(|e| Error::sqlite(path, e))?;
    let counts = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?)));
    match counts {
        // (busy, frames in the WAL, frames copied into the file); -1s when not in WAL mode.
        Ok((busy, log, copied)) => Ok(busy == 0 && log == copied),
        Err(rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::sqlite(path, e)),
    }
}

/// Sets the header fields that record no content (journal mode, change counter, version-valid-for,
/// SQLite version) to their canonical values in a closed snapshot, so that its sha256 is its
/// content hash (`sqlite::hash`). The file stays a valid database in rollback-journal mode: the
/// change counter and version-valid-for still agree.
pub fn canonicalize_header(path: &Path) -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let mut header = [0u8; crate::sqlite::hash::HEADER];
    file.read_exact(&mut header).map_err(|e| Error::io("cannot read", path, e))?;
    for (range, value) in crate::sqlite::hash::VOLATILE {
        header[range].fill(value);
    }
    file.seek(SeekFrom::Start(0)).and_then(|_| file.write_all(&header)).map_err(|e| Error::io("cannot write", path, e))
}

/// Runs `PRAGMA integrity_check` (or `quick_check`) and refuses a database that fails it. Pages
/// are read, not memory-mapped: a map would count the whole file in this process's memory.
pub fn verify(path: &Path, quick: bool) -> Result<()> {
    check_header(path)?;
    let conn = open(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let pragma = if quick { "PRAGMA quick_check(1)" } else { "PRAGMA integrity_check(1)" };
    let result: String = conn.query_row(pragma, [], |row| row.get(0)).map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, msg) => bad(path, msg.unwrap_or_else(|| f.to_string())),
        other => Error::sqlite(path, other),
    })?;
    if result != "ok" {
        return Err(bad(path, format!("integrity check failed: {result}")));
    }
    Ok(())
}

/// Copies a consistent snapshot of `src` (including committed frames still in its WAL) into a new
/// file `dest` through SQLite's online backup API. `dest` is in rollback-journal mode, and not
/// synced: a snapshot that is sent and thrown away needs no trip to the disk; a kept one is synced
/// by its keeper.
pub fn snapshot(src: &Path, dest: &Path, progress: &ProgressBar) -> Result<()> {
    snapshot_unless(src, dest, progress, &AtomicBool::new(false))
}

/// [`snapshot`], given up between steps once `stop` is set (an error: `dest` is then no copy).
pub fn snapshot_unless(src: &Path, dest: &Path, progress: &ProgressBar, stop: &AtomicBool) -> Result<()> {
    check_header(src)?;
    let source = open(src, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut target = open(dest, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
    // No fsync while copying: the copy is synced by whoever keeps it (see above).
    target.pragma_update(None, "synchronous", "OFF").map_err(|e| Error::sqlite(dest, e))?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut target).map_err(|e| Error::sqlite(dest, e))?;
        let failed = |e: rusqlite::Error| match e {
            // The copy's disk is full: not the source's fault.
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
                Error::io("cannot write", dest, std::io::Error::from_raw_os_error(28))
            }
            rusqlite::Error::SqliteFailure(f, msg) => bad(src, msg.unwrap_or_else(|| f.to_string())),
            other => Error::sqlite(src, other),
        };
        let mut remaining = i32::MAX;
        let mut restarts = 0;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(Error::refused(format!("the snapshot of `{}` was given up", src.display()), "run the command again"));
            }
            let step = backup.step(BACKUP_STEP_PAGES).map_err(failed)?;
            let p = backup.progress();
            let total = u64::try_from(p.pagecount).unwrap_or(0);
            progress.set_length(total);
            progress.set_position(total.saturating_sub(u64::try_from(p.remaining).unwrap_or(0)));
            // Another process committed between two steps, and the backup started over. A server
            // that commits more often than a step takes would keep it starting over for ever: from
            // the second time, the source stays in one read transaction until the copy is whole
            // (in WAL mode writers go on; in rollback-journal mode they wait for it, ~1 s per GiB).
            if p.remaining > remaining {
                restarts += 1;
                if restarts == RESTARTS_BEFORE_HOLDING {
                    tracing::info!(path = %src.display(), "the source keeps changing: the snapshot holds one read transaction");
                    source.execute_batch("BEGIN; SELECT count(*) FROM sqlite_schema;").map_err(failed)?;
                }
            }
            remaining = p.remaining;
            match step {
                StepResult::Done => break,
                StepResult::More => {}
                // A writer holds the source: wait a moment and go on (the backup restarts itself
                // if the source changed, so the copy stays consistent).
                StepResult::Busy | StepResult::Locked => std::thread::sleep(Duration::from_millis(20)),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    // The backup bumps the copy's schema cookie past its own (to 1): give it the source's, so the
    // copy's bytes are the source's, header fields that record no content aside, and its content
    // hash is the source's (a later schema change shows as a change of content anyway).
    let cookie: i64 = source.query_row("PRAGMA schema_version", [], |r| r.get(0)).map_err(|e| Error::sqlite(src, e))?;
    target.pragma_update(None, "schema_version", cookie).map_err(|e| Error::sqlite(dest, e))?;
    target.pragma_update(None, "journal_mode", "DELETE").map_err(|e| Error::sqlite(dest, e))?;
    target.close().map_err(|(_, e)| Error::sqlite(dest, e))
}

/// Whether SQLite's error says the file is not a database or is corrupt.
pub fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt))
}
