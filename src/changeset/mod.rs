//! Changesets: timestamped scripts (`changeset/scripts/<19-digit ns>_<phrase>.{py,sh,sql}`) that
//! change databases and run once for the whole fleet, in name order. The ledger in the bucket
//! (`changesets/<name>.json`) says which ran; claiming an entry is guarded by a lease, so two
//! machines never run one twice.

pub mod create;
pub mod ledger;
pub mod log;
pub mod sql;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::names::is_changeset_name;

/// What a changeset script is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Python, run by `python3` with the `changeset.py` helper at hand.
    Py,
    /// POSIX shell, run by `sh`.
    Sh,
    /// SQL, run by b2m itself inside one transaction.
    Sql,
}

impl Kind {
    /// The file extension.
    pub fn ext(self) -> &'static str {
        match self {
            Kind::Py => "py",
            Kind::Sh => "sh",
            Kind::Sql => "sql",
        }
    }

    /// The kind of a file extension.
    pub fn from_ext(ext: &str) -> Option<Self> {
        [Kind::Py, Kind::Sh, Kind::Sql].into_iter().find(|k| k.ext() == ext)
    }
}

/// A changeset script in `changeset/scripts/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// `1732245600123456789_add-index`: the ledger's name for it, and its place in the order.
    pub name: String,
    /// Its language.
    pub kind: Kind,
    /// The file.
    pub path: PathBuf,
}

/// The scripts folder.
pub fn scripts_dir(changesets: &Path) -> PathBuf {
    changesets.join("scripts")
}

/// A file in the scripts folder, and the changeset it is if its name makes it one.
pub struct ScriptFile {
    /// Its file name.
    pub file: String,
    /// Its path.
    pub path: PathBuf,
    /// The changeset: `<19-digit ns timestamp>_<phrase>.{py,sh,sql}`; `None` for another name.
    pub script: Option<Script>,
}

/// Every file in the scripts folder, in file-name order; dotfiles (`.gitkeep`, editor swap
/// files) and folders are not meant as scripts and are left out.
pub fn script_files(changesets: &Path) -> Result<Vec<ScriptFile>> {
    let dir = scripts_dir(changesets);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("cannot read", &dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let (file, path) = (entry.file_name().to_string_lossy().into_owned(), entry.path());
        if file.starts_with('.') || path.is_dir() {
            continue;
        }
        let parsed = file.rsplit_once('.').and_then(|(name, ext)| Some((name, Kind::from_ext(ext)?)));
        let script = parsed.filter(|(name, _)| is_changeset_name(name)).map(|(name, kind)| Script {
            name: name.to_string(),
            kind,
            path: path.clone(),
        });
        out.push(ScriptFile { file, path, script });
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(out)
}

/// Every changeset script, in name order (the order they run in). Other files are ignored.
pub fn scripts(changesets: &Path) -> Result<Vec<Script>> {
    let mut out: Vec<Script> = script_files(changesets)?.into_iter().filter_map(|f| f.script).collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = out.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(Error::config_hint(
            format!("two changesets are named `{}` (`{}` and `{}`)", pair[0].name, pair[0].path.display(), pair[1].path.display()),
            "keep one script per name: rename or remove the other",
        ));
    }
    Ok(out)
}

/// Resolves a changeset argument: its name, its file name, or a path to it.
pub fn resolve(changesets: &Path, arg: &str) -> Result<Script> {
    let file = Path::new(arg).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let name = file.rsplit_once('.').filter(|(_, ext)| Kind::from_ext(ext).is_some()).map_or(file.as_str(), |(name, _)| name);
    if !is_changeset_name(name) {
        return Err(Error::config_hint(
            format!("`{}` is not a changeset name", arg.escape_debug()),
            "give its name (`1732245600123456789_add-index`), its file name or its path; `b2m changesets` lists them",
        ));
    }
    scripts(changesets)?.into_iter().find(|s| s.name == name).ok_or_else(|| {
        Error::config_hint(
            format!("no changeset `{name}` in `{}`", scripts_dir(changesets).display()),
            "`b2m changesets` lists them; `b2m create-changeset PHRASE` makes one",
        )
    })
}

/// The sha256 of a script with line endings normalised (CRLF and CR become LF): a changeset whose
/// only edit is its line endings is the same changeset.
pub fn script_sha256(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut normalized = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' {
            normalized.push(b'\n');
            if bytes.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
        } else {
            normalized.push(bytes[i]);
        }
        i += 1;
    }
    Ok(hex::encode(Sha256::digest(&normalized)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_do_not_change_a_script() {
        let dir = tempfile::tempdir().expect("dir");
        let (unix, dos) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&unix, "UPDATE t SET v = 1;\nSELECT 1;\n").expect("write");
        std::fs::write(&dos, "UPDATE t SET v = 1;\r\nSELECT 1;\r\n").expect("write");
        assert_eq!(script_sha256(&unix).expect("sha"), script_sha256(&dos).expect("sha"));
        std::fs::write(&dos, "UPDATE t SET v = 2;\r\nSELECT 1;\r\n").expect("write");
        assert_ne!(script_sha256(&unix).expect("sha"), script_sha256(&dos).expect("sha"));
    }
}
