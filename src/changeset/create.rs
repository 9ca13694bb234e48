//! `b2m create-changeset PHRASE [--kind py|sh|sql]`: a new script from the embedded template,
//! named `<19-digit ns timestamp>_<phrase>` so that scripts made on two branches never clash and
//! sort in the order they were made; and the changeset folder, if it is missing.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{Kind, scripts, scripts_dir};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::names::is_changeset_phrase;

/// The Python helper module, written to `changeset/changeset.py`.
pub const HELPER: &str = include_str!("../../templates/changeset/changeset.py");
const README: &str = include_str!("../../templates/changeset/README.md");

fn template(kind: Kind) -> &'static str {
    match kind {
        Kind::Py => include_str!("../../templates/changeset/template.py"),
        Kind::Sh => include_str!("../../templates/changeset/template.sh"),
        Kind::Sql => include_str!("../../templates/changeset/template.sql"),
    }
}

/// What `create-changeset` made.
#[derive(Debug, Serialize)]
pub struct Created {
    /// The changeset's name.
    pub name: String,
    /// The new script.
    pub path: String,
    /// Files and folders created besides it.
    pub created: Vec<String>,
}

/// Creates `changeset/{scripts,dbs,logs}`, `changeset.py` and `README.md` where missing; returns
/// what it created.
pub fn ensure_folder(changesets: &Path) -> Result<Vec<String>> {
    let mut created = Vec::new();
    for sub in ["scripts", "dbs", "logs"] {
        let dir = changesets.join(sub);
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
            created.push(dir.display().to_string());
        }
    }
    for (file, text) in [("changeset.py", HELPER), ("README.md", README)] {
        let path = changesets.join(file);
        if !path.exists() {
            fsutil::write_atomic(&path, text.as_bytes())?;
            created.push(path.display().to_string());
        }
    }
    Ok(created)
}

/// Writes a new changeset script for `phrase`.
pub fn create(changesets: &Path, phrase: &str, kind: Kind) -> Result<Created> {
    if !is_changeset_phrase(phrase) {
        return Err(Error::config_hint(
            format!("`{}` is not a changeset phrase", phrase.escape_debug()),
            "use lowercase letters, digits, `-` and `_`, starting with a letter or digit (e.g. `add-index`)",
        ));
    }
    let created = ensure_folder(changesets)?;
    let existing: Vec<String> = scripts(changesets)?.into_iter().map(|s| s.name).collect();
    // Nanoseconds since the epoch: 19 digits until the year 2286. Later than every existing
    // script's, so a new script always runs after those already here.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let latest = existing.iter().filter_map(|n| n.split_once('_')?.0.parse::<u128>().ok()).max().unwrap_or(0);
    let stamp = now.max(latest + 1);
    let name = format!("{stamp:019}_{phrase}");
    let path: PathBuf = scripts_dir(changesets).join(format!("{name}.{}", kind.ext()));
    let text = template(kind).replace("{{name}}", &name).replace("{{phrase}}", phrase);
    fsutil::write_atomic(&path, text.as_bytes())?;
    if kind != Kind::Sql {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("cannot make executable", &path, e))?;
    }
    Ok(Created { name, path: path.display().to_string(), created })
}
