//! The log of a changeset or merge run, in `changeset/logs/<name>.log`: each run appends under a
//! header line saying when, where and who.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// An open log.
pub struct Log {
    file: std::fs::File,
}

/// `changeset/logs/<name>.log`: the log of the changeset or merge `name`.
pub fn path(changesets: &Path, name: &str) -> std::path::PathBuf {
    changesets.join("logs").join(format!("{name}.log"))
}

impl Log {
    /// Opens (creating) the log and writes this run's header line.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io("cannot open", path, e))?;
        let _ = writeln!(file, "== {} on {} ({})", crate::util::now_rfc3339(), crate::util::host_name(), crate::util::user_at_host());
        Ok(Log { file })
    }

    /// A line.
    pub fn line(&mut self, text: &str) {
        let _ = writeln!(self.file, "{text}");
    }

    /// Bytes as they came (a child's output).
    pub fn raw(&mut self, bytes: &[u8]) {
        let _ = self.file.write_all(bytes);
    }
}
