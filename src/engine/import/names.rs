//! The original b2m's database file names, as b2m databases. `ipm-db-v2.db` is `ipm-db` v2 as it
//! stands; `ipm-db_v2.db` is `ipm-db` v2 too (the original's `bump` reads a version after `-v` or
//! `_v`); `banner-db.db` carries no version and is v1 (the original's `bump` counts such a name as
//! v1). A name that could be read two ways (`sha-256.db`: `sha` v256, or `sha-256` v1?), a name
//! b2m cannot take (a space, a `;`, a `..`), and two names for one version are refused together,
//! each saying exactly what to rename it to.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::names::{DbFileName, is_safe_stem};

/// How an original name became a b2m name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// Already `<stem>-v<N>.db`.
    AsB2m,
    /// `<stem>_v<N>.db`.
    Underscore,
    /// `<stem>.db`: v1.
    Unversioned,
}

/// One database file at the original's root, read as a b2m database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalDb {
    /// The original's file (its key at the root): `ipm-db_v2.db`.
    pub file: String,
    /// `ipm-db`.
    pub stem: String,
    /// `2`.
    pub version: u64,
    /// How the name was read.
    pub naming: Naming,
}

impl OriginalDb {
    /// The name b2m gives it: `ipm-db-v2.db`.
    pub fn b2m_file(&self) -> String {
        DbFileName::file_name(&self.stem, self.version)
    }

    /// What a person should know of how the name was read, when it is not b2m's already.
    pub fn note(&self) -> Option<String> {
        match self.naming {
            Naming::AsB2m => None,
            Naming::Underscore => {
                Some(format!("`{}` was imported as `{}` v{} (`{}`)", self.file, self.stem, self.version, self.b2m_file()))
            }
            Naming::Unversioned => Some(format!(
                "`{}` carries no version: it was imported as `{}` v1 (`{}`), as the original's bump counts it",
                self.file,
                self.stem,
                self.b2m_file()
            )),
        }
    }
}

/// Reads one original file name; `Err` says why b2m cannot take it and what to rename it to.
pub fn read(file: &str) -> std::result::Result<OriginalDb, String> {
    let found = |stem: &str, version, naming| OriginalDb { file: file.to_string(), stem: stem.to_string(), version, naming };
    if let Some(name) = DbFileName::parse(file) {
        return Ok(found(&name.stem, name.version, Naming::AsB2m));
    }
    let base = file.strip_suffix(".db").unwrap_or(file);
    if let Some((stem, version)) = base.rsplit_once("_v").and_then(|(stem, v)| Some((stem, number(v)?)))
        && is_safe_stem(stem)
    {
        return Ok(found(stem, version, Naming::Underscore));
    }
    if let Some((stem, version)) = base.rsplit_once(['-', '_']).and_then(|(stem, v)| Some((stem, number(v)?)))
        && is_safe_stem(stem)
    {
        return Err(format!(
            "`{file}` could be `{stem}` v{version} or `{base}` v1: rename it to `{}` or to `{}`",
            DbFileName::file_name(stem, version),
            DbFileName::file_name(base, 1)
        ));
    }
    if is_safe_stem(base) {
        return Ok(found(base, 1, Naming::Unversioned));
    }
    Err(format!(
        "`{}` is not a name b2m can take (letters, digits, `_`, `-`, `.`): rename it to `{}`",
        file.escape_debug(),
        suggestion(base)
    ))
}

/// A decimal version number (not empty, digits only).
fn number(text: &str) -> Option<u64> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
}

/// A name b2m can take for an unusable `base`: every other character becomes `-`.
fn suggestion(base: &str) -> String {
    let mut cleaned = String::new();
    for c in base.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '_' | '.') { c } else { '-' };
        // No run of `-`, and no `..` (a path's step).
        let repeated = matches!(c, '-' | '.') && cleaned.ends_with(c);
        if !repeated {
            cleaned.push(c);
        }
    }
    let cleaned = cleaned.trim_start_matches(|c: char| !c.is_ascii_alphanumeric()).trim_end_matches(['-', '.']);
    let stem = if cleaned.is_empty() { "db" } else { cleaned };
    match read(&format!("{stem}.db")) {
        Ok(db) => db.b2m_file(),
        Err(_) => DbFileName::file_name(stem, 1),
    }
}

/// Every database file of the original's root (`files`), read as b2m databases; or one refusal
/// naming every file to rename, so nothing is imported until each is clear.
pub fn plan(files: &[&str]) -> Result<Vec<OriginalDb>> {
    let mut problems = Vec::new();
    let mut dbs = Vec::new();
    for file in files {
        match read(file) {
            Ok(db) => dbs.push(db),
            Err(why) => problems.push(why),
        }
    }
    problems.extend(two_names_for_one_version(&dbs));
    if !problems.is_empty() {
        return Err(Error::refused(
            format!("the original bucket has names b2m cannot import as they are: {}; nothing was imported", problems.join("; ")),
            "rename them in the original bucket (`rclone moveto <rootbucket>OLD <rootbucket>NEW`, and its `version/OLD.metadata.json` likewise), then run `b2m import` again",
        ));
    }
    dbs.sort_by(|a, b| (&a.stem, a.version).cmp(&(&b.stem, b.version)));
    Ok(dbs)
}

/// Two files that are one version of one database (`ipm-db-v2.db` and `ipm-db_v2.db`): which to
/// rename, to the stem's next free version. The one already named as b2m names it stays.
fn two_names_for_one_version(dbs: &[OriginalDb]) -> Vec<String> {
    let mut by_version: BTreeMap<(&str, u64), Vec<&OriginalDb>> = BTreeMap::new();
    for db in dbs {
        by_version.entry((db.stem.as_str(), db.version)).or_default().push(db);
    }
    let mut next_free: BTreeMap<&str, u64> = BTreeMap::new();
    for db in dbs {
        let next = next_free.entry(db.stem.as_str()).or_insert(0);
        *next = (*next).max(db.version + 1);
    }
    let mut problems = Vec::new();
    for ((stem, version), mut same) in by_version.into_iter().filter(|(_, same)| same.len() > 1) {
        same.sort_by_key(|db| (db.naming != Naming::AsB2m, db.file.clone()));
        let names: Vec<String> = same.iter().map(|db| format!("`{}`", db.file)).collect();
        let both = if same.len() == 2 { "both" } else { "all" };
        for extra in &same[1..] {
            let next = next_free.entry(stem).or_insert(version + 1);
            problems.push(format!(
                "{} are {both} `{stem}` v{version}: rename `{}` to `{}` (or remove the one no server runs)",
                names.join(" and "),
                extra.file,
                DbFileName::file_name(stem, *next)
            ));
            *next += 1;
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_as_the_original_reads_them() {
        let read_as = |file: &str| read(file).map(|db| (db.stem, db.version, db.naming));
        assert_eq!(read_as("ipm-db-v2.db"), Ok(("ipm-db".into(), 2, Naming::AsB2m)));
        assert_eq!(read_as("ipm-db_v2.db"), Ok(("ipm-db".into(), 2, Naming::Underscore)));
        assert_eq!(read_as("banner-db.db"), Ok(("banner-db".into(), 1, Naming::Unversioned)));
        let two_ways = read("sha-256.db").expect_err("two readings");
        assert!(two_ways.contains("`sha-v256.db`") && two_ways.contains("`sha-256-v1.db`"), "{two_ways}");
        let shell = read("$(id) x.db").expect_err("shell-like");
        assert!(shell.contains("rename it to `id-x-v1.db`"), "{shell}");
        assert!(read("a..b.db").expect_err("path-like").contains("`a.b-v1.db`"));
    }

    #[test]
    fn two_names_for_one_version_say_which_to_rename() {
        let err = plan(&["ipm-db_v2.db", "ipm-db-v2.db", "emoji-db-v1.db"]).expect_err("ambiguous").to_string();
        assert!(err.contains("`ipm-db-v2.db` and `ipm-db_v2.db` are both `ipm-db` v2"), "{err}");
        assert!(err.contains("rename `ipm-db_v2.db` to `ipm-db-v3.db`"), "{err}");
        assert_eq!(plan(&["ipm-db_v2.db", "ipm-db-v1.db"]).map(|p| p.len()).ok(), Some(2));
    }
}
