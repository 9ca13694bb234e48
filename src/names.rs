//! Names: `<stem>-v<N>.db` database files, and the checks that keep user-given names from
//! becoming paths or shell words.

use crate::error::{Error, Result};

/// A database file name split into its stem and version: `ipm-db-v2.db` → (`ipm-db`, 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbFileName {
    /// `ipm-db`
    pub stem: String,
    /// `2`
    pub version: u64,
}

impl DbFileName {
    /// Parses `<stem>-v<N>.db`; `None` when the name has another shape.
    pub fn parse(file: &str) -> Option<Self> {
        let base = file.strip_suffix(".db")?;
        let (stem, version) = base.rsplit_once("-v")?;
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let version = version.parse().ok()?;
        if !is_safe_stem(stem) {
            return None;
        }
        Some(DbFileName { stem: stem.to_string(), version })
    }

    /// The file name for a stem and version.
    pub fn file_name(stem: &str, version: u64) -> String {
        format!("{stem}-v{version}.db")
    }

    /// This name as a file name.
    pub fn to_file_name(&self) -> String {
        Self::file_name(&self.stem, self.version)
    }
}

/// A stem is letters, digits, `_`, `-` and `.`, starting with a letter or digit, never `..`.
pub fn is_safe_stem(stem: &str) -> bool {
    let mut chars = stem.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && stem.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !stem.contains("..")
        && stem.len() <= 200
}

/// Refuses a user-given database argument that looks like a path or a shell word.
pub fn check_db_argument(arg: &str) -> Result<()> {
    if arg.is_empty() {
        return Err(Error::config("empty database name"));
    }
    let path_like = arg.contains('/') || arg.contains('\\') || arg.contains("..");
    let shell_like = arg.chars().any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')));
    if path_like || shell_like {
        return Err(Error::config_hint(
            format!("`{}` is not a database name", arg.escape_debug()),
            "give a stem (`ipm-db`), a db.toml key (`ipmdb`) or a file name (`ipm-db-v1.db`) without paths or special characters",
        ));
    }
    Ok(())
}

/// Whether a changeset's phrase is `[a-z0-9][a-z0-9-_]*` (at most 80 characters).
pub fn is_changeset_phrase(phrase: &str) -> bool {
    let mut chars = phrase.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && phrase.len() <= 80
}

/// Whether a changeset's `name` is `<19 digits>_<phrase>`.
pub fn is_changeset_name(name: &str) -> bool {
    name.split_once('_').is_some_and(|(ts, phrase)| ts.len() == 19 && ts.bytes().all(|b| b.is_ascii_digit()) && is_changeset_phrase(phrase))
}

/// Whether `s` is a lowercase hex sha256.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versioned_names() {
        let n = DbFileName::parse("ipm-db-v12.db").expect("valid");
        assert_eq!((n.stem.as_str(), n.version), ("ipm-db", 12));
        assert_eq!(n.to_file_name(), "ipm-db-v12.db");
        assert!(DbFileName::parse("ipm-db.db").is_none());
        assert!(DbFileName::parse("ipm-db-v.db").is_none());
        assert!(DbFileName::parse("../x-v1.db").is_none());
        assert!(DbFileName::parse("a;rm-v1.db").is_none());
    }

    #[test]
    fn refuses_path_and_shell_like_arguments() {
        for bad in ["../x", "a;rm", "a b", "x/y", "$(id)", ""] {
            assert!(check_db_argument(bad).is_err(), "{bad}");
        }
        for good in ["ipm-db", "ipmdb", "ipm-db-v1.db"] {
            assert!(check_db_argument(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn names_and_phrases() {
        assert!(is_changeset_phrase("add-index_2"));
        for bad in ["", "Add", "-x", "a b", "a;rm", "../x", "é"] {
            assert!(!is_changeset_phrase(bad), "{bad}");
        }
        assert!(is_changeset_name("1732245600123456789_add-index"));
        assert!(!is_changeset_name("173224560012345678_add-index"), "18 digits");
        assert!(!is_changeset_name("1732245600123456789_"), "no phrase");
    }
}
