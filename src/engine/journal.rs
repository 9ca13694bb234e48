//! A database's journals: the statements its server ran, appended to `<file-stem>.sql` beside the
//! file it had open (`ipm-db-v1.sql` beside `ipm-db-v1.db`). A journal named after an older file
//! of the db is still the db's journal. Once every statement of a journal is in a published
//! version it is archived into a working folder, never left beside the db to be replayed again.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::Context;
use crate::error::{Error, Result};

/// A journal of a database in the db folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    /// The version of the file it was written beside.
    pub version: u64,
    /// Its path.
    pub path: PathBuf,
}

/// The journal beside a database file: `ipm-db-v1.sql` for `ipm-db-v1.db`.
pub fn path_of(db: &Path) -> PathBuf {
    db.with_extension("sql")
}

/// The db's journals in the db folder, oldest (lowest version) first.
pub fn unarchived(ctx: &Context, stem: &str) -> Result<Vec<Journal>> {
    let dir = &ctx.settings.db_dir;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("cannot list", dir, e)),
    };
    let mut journals = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("cannot list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(db_name) = name.strip_suffix(".sql").map(|base| format!("{base}.db")) else { continue };
        match crate::names::DbFileName::parse(&db_name) {
            Some(n) if n.stem == stem && entry.path().is_file() => journals.push(Journal { version: n.version, path: entry.path() }),
            _ => {}
        }
    }
    journals.sort_by_key(|j| j.version);
    Ok(journals)
}

/// Whether a journal holds anything but whitespace (a statement, or the start of one).
pub fn has_statements(path: &Path) -> Result<bool> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("cannot open", path, e)),
    };
    let mut buf = [0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) if buf[..n].iter().any(|b| !b.is_ascii_whitespace()) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("cannot read", path, e)),
        }
    }
}

/// Whether any of the db's journals holds a statement.
pub fn any_statements(ctx: &Context, stem: &str) -> Result<bool> {
    for journal in unarchived(ctx, stem)? {
        if has_statements(&journal.path)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A new working folder `changeset/dbs/<ns>_<what>-<stem>/` (not yet created).
pub fn working_folder(ctx: &Context, what: &str, stem: &str) -> PathBuf {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    ctx.settings.changesets.join("dbs").join(format!("{stamp:019}_{what}-{stem}"))
}

/// Moves the db's journals written beside versions up to `up_to` (all of them with `None`) into
/// `dir`: their every statement is in a published version, or went with the file they were
/// written beside. Returns where they went.
pub fn archive(ctx: &Context, stem: &str, up_to: Option<u64>, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut moved = Vec::new();
    for journal in unarchived(ctx, stem)?.into_iter().filter(|j| up_to.is_none_or(|v| j.version <= v)) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
        let to = dir.join(journal.path.file_name().unwrap_or_default());
        crate::fsutil::move_file(&journal.path, &to)?;
        tracing::info!(from = %journal.path.display(), to = %to.display(), "archived a journal");
        moved.push(to);
    }
    Ok(moved)
}
