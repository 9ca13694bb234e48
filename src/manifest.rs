//! `db.toml`: which file holds each database, and (in `[b2m.sha256]`) the exact published object
//! each name stands for. Read and edited with toml_edit so the user's comments, order and
//! formatting survive every edit.

use toml_edit::{DocumentMut, Item, Table, Value};

use crate::error::{Error, Result};
use crate::names::DbFileName;
use crate::names::is_sha256;
use crate::util::{line_col, parse_toml};

/// One database named in db.toml: `ipmdb = "ipm-db-v2.db"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The db.toml key (`ipmdb`).
    pub key: String,
    /// The file name (`ipm-db-v2.db`).
    pub file: String,
    /// The stem (`ipm-db`).
    pub stem: String,
    /// The version (`2`).
    pub version: u64,
    /// The sha256 of the published object this name stands for, from `[b2m.sha256]`.
    pub sha256: Option<String>,
}

impl Entry {
    /// The version this entry pins, if it pins one.
    pub fn pinned(&self) -> Option<crate::layout::VersionId> {
        Some(crate::layout::VersionId { stem: self.stem.clone(), version: self.version, sha256: self.sha256.clone()? })
    }
}

/// An entry of `[db]` (other than `path`) that b2m cannot manage, and why: it is reported, never
/// skipped in silence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmanaged {
    /// The db.toml key.
    pub key: String,
    /// Its value as written.
    pub value: String,
    /// Why b2m cannot manage it, and what would work.
    pub why: String,
}

/// The file name b2m would manage for an unversioned `name.db`: `name-v1.db`.
fn versioned_suggestion(file: &str) -> Option<String> {
    let stem = file.strip_suffix(".db")?;
    let suggestion = DbFileName::file_name(stem, 1);
    DbFileName::parse(&suggestion).map(|_| suggestion)
}

/// A parsed db.toml that remembers its formatting.
#[derive(Debug, Clone)]
pub struct Manifest {
    doc: DocumentMut,
    /// How the file was written, kept when b2m rewrites it: a byte-order mark first, CRLF lines.
    style: Style,
}

/// A text file's byte-order mark and line endings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    /// It starts with U+FEFF (Windows editors write one).
    pub bom: bool,
    /// Its lines end in CRLF.
    pub crlf: bool,
}

/// The table b2m writes: `[b2m.sha256]`, db.toml key → sha256 of the published object.
const PIN_TABLE: &str = "sha256";
/// The comment above a new `[b2m.sha256]` table.
const PIN_COMMENT: &str = "\n# written by b2m: the exact published content each name stands for (apps ignore it)\n";

/// The line of `key` in `[db]`, for messages.
fn key_line(text: &str, key: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let (key, _) = doc.get("db")?.as_table_like()?.get_key_value(key)?;
    Some(line_col(text, key.span()?.start).0)
}

/// Sets `key = "value"` in `table`, keeping an existing value's comments and spacing; a new key
/// goes at the end.
fn set_keeping_decor(table: &mut dyn toml_edit::TableLike, key: &str, value: &str) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(existing) => {
            let decor = existing.decor().clone();
            *existing = Value::from(value);
            *existing.decor_mut() = decor;
        }
        None => {
            table.insert(key, toml_edit::value(value));
        }
    }
}

impl Manifest {
    /// Parses db.toml text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        // Parsed without its BOM and with LF lines; written back as it came.
        let style = Style { bom: text.starts_with('\u{feff}'), crlf: text.contains("\r\n") };
        let text = &text.strip_prefix('\u{feff}').unwrap_or(text).replace("\r\n", "\n");
        let doc = parse_toml(text, origin)?;
        if let Some(item) = doc.get("db")
            && !item.is_table_like()
        {
            return Err(Error::config_hint(
                format!("`{origin}`: `db` must be a table (`[db]`)"),
                format!("fix `{origin}` and run the command again"),
            ));
        }
        let manifest = Manifest { doc, style };
        manifest.check_one_key_per_database(text, origin)?;
        if let Some(b2m) = manifest.doc.get("b2m") {
            let pins = b2m.as_table_like().map(|t| t.get(PIN_TABLE));
            let Some(pins) = pins else {
                return Err(Error::config_hint(format!("`{origin}`: `b2m` must be a table"), format!("fix `{origin}`")));
            };
            if let Some(pins) = pins {
                let Some(table) = pins.as_table_like() else {
                    return Err(Error::config_hint(format!("`{origin}`: `b2m.sha256` must be a table"), format!("fix `{origin}`")));
                };
                for (key, value) in table.iter() {
                    if !value.as_str().is_some_and(is_sha256) {
                        return Err(Error::config_hint(
                            format!("`{origin}`: `b2m.sha256.{key}` is not a sha256 (64 lowercase hex digits)"),
                            "restore it from git or from the bucket (`b2m fetch-db-toml`); b2m writes this table itself",
                        ));
                    }
                }
            }
        }
        Ok(manifest)
    }

    /// Two keys for one file, or two files with one stem: a configuration error naming both lines.
    fn check_one_key_per_database(&self, text: &str, origin: &str) -> Result<()> {
        let entries = self.entries();
        for (i, a) in entries.iter().enumerate() {
            let Some(b) = entries[i + 1..].iter().find(|b| b.file == a.file || b.stem == a.stem) else { continue };
            let line = |key: &str| key_line(text, key).map_or_else(String::new, |n| format!("line {n} "));
            let what = if a.file == b.file {
                format!("both name `{}`", a.file)
            } else {
                format!("name two versions of `{}` (`{}` and `{}`)", a.stem, a.file, b.file)
            };
            return Err(Error::config_hint(
                format!("`{origin}`: {}(`{}`) and {}(`{}`) {what}", line(&a.key), a.key, line(&b.key), b.key),
                format!("give each database exactly one key in `[db]` of `{origin}`"),
            ));
        }
        Ok(())
    }

    /// The entries of `[db]` (other than `path`) that are not databases b2m manages, and why.
    pub fn unmanaged(&self) -> Vec<Unmanaged> {
        let Some(table) = self.table() else { return Vec::new() };
        table
            .iter()
            .filter(|(key, _)| *key != "path")
            .filter_map(|(key, item)| {
                let value = item.as_value().map_or_else(|| item.to_string().trim().to_string(), |v| v.to_string().trim().to_string());
                let why = match (item.as_str(), item.as_str().and_then(DbFileName::parse)) {
                    (Some(_), Some(_)) if key.ends_with("db") => return None,
                    (Some(_), Some(_)) => format!("its key does not end in `db`; b2m manages keys like `{key}db`"),
                    (Some(file), None) => match versioned_suggestion(file) {
                        Some(name) => format!(
                            "`{file}` has no version number; b2m manages `<stem>-v<N>.db` names: rename the file to `{name}` and write `{key} = \"{name}\"`"
                        ),
                        None => format!("`{file}` is not a database file name of the form `<stem>-v<N>.db`"),
                    },
                    (None, _) => "it is not a file name".to_string(),
                };
                Some(Unmanaged { key: key.to_string(), value, why })
            })
            .collect()
    }

    /// A new manifest with an empty `[db]` table and the given `path`.
    pub fn new_empty(path_value: Option<&str>) -> Self {
        let mut doc = DocumentMut::new();
        let mut table = Table::new();
        if let Some(path) = path_value {
            table.insert("path", toml_edit::value(path));
        }
        doc.insert("db", Item::Table(table));
        Manifest { doc, style: Style::default() }
    }

    fn table(&self) -> Option<&dyn toml_edit::TableLike> {
        self.doc.get("db").and_then(Item::as_table_like)
    }

    /// The databases: keys ending in `db` whose value is a `<stem>-v<N>.db` file name.
    pub fn entries(&self) -> Vec<Entry> {
        let Some(table) = self.table() else { return Vec::new() };
        table
            .iter()
            .filter(|(key, _)| key.ends_with("db"))
            .filter_map(|(key, item)| {
                let file = item.as_str()?;
                let name = DbFileName::parse(file)?;
                let sha256 = self.pin(key);
                Some(Entry { key: key.to_string(), file: file.to_string(), stem: name.stem, version: name.version, sha256 })
            })
            .collect()
    }

    /// The entry for a stem.
    pub fn entry_for_stem(&self, stem: &str) -> Option<Entry> {
        self.entries().into_iter().find(|e| e.stem == stem)
    }

    fn pins(&self) -> Option<&dyn toml_edit::TableLike> {
        self.doc.get("b2m")?.as_table_like()?.get(PIN_TABLE)?.as_table_like()
    }

    /// The sha256 `[b2m.sha256]` pins for a db.toml key.
    pub fn pin(&self, key: &str) -> Option<String> {
        self.pins()?.get(key)?.as_str().filter(|s| is_sha256(s)).map(str::to_string)
    }

    /// Pins `key` to a published object's sha256 in `[b2m.sha256]` (created at the end, with a
    /// comment, the first time); other entries and their formatting are kept.
    pub fn set_pin(&mut self, key: &str, sha256: &str) {
        let b2m = self.doc.entry("b2m").or_insert_with(|| {
            let mut table = Table::new();
            table.set_implicit(true);
            Item::Table(table)
        });
        let Some(b2m) = b2m.as_table_like_mut() else { return };
        let pins = b2m.entry(PIN_TABLE).or_insert_with(|| {
            let mut table = Table::new();
            table.decor_mut().set_prefix(PIN_COMMENT);
            Item::Table(table)
        });
        if let Some(pins) = pins.as_table_like_mut() {
            set_keeping_decor(pins, key, sha256);
        }
    }

    /// Removes the pin of `key`, keeping its `[db]` entry.
    pub fn remove_pin(&mut self, key: &str) {
        if let Some(pins) =
            self.doc.get_mut("b2m").and_then(Item::as_table_like_mut).and_then(|b| b.get_mut(PIN_TABLE)).and_then(Item::as_table_like_mut)
        {
            pins.remove(key);
        }
    }

    /// Names `file` for `key` and pins it to `sha256`: the two edits a publish or download makes.
    pub fn set_version(&mut self, key: &str, file: &str, sha256: &str) {
        self.set_file(key, file);
        self.set_pin(key, sha256);
    }

    /// The file name `[db]` gives `key`, whatever its shape (b2m's `<stem>-v<N>.db` or not).
    pub fn file_of(&self, key: &str) -> Option<String> {
        self.table()?.get(key)?.as_str().map(str::to_string)
    }

    /// The `path` value, if any.
    pub fn path_value(&self) -> Option<String> {
        self.table()?.get("path")?.as_str().map(str::to_string)
    }

    /// Points `key` at `file`, keeping the value's surrounding comments and spacing; adds the key
    /// at the end of `[db]` when it is new.
    pub fn set_file(&mut self, key: &str, file: &str) {
        let db = self.doc.entry("db").or_insert_with(|| Item::Table(Table::new()));
        if let Some(table) = db.as_table_like_mut() {
            set_keeping_decor(table, key, file);
        }
    }

    /// Copies `key` of `[db]`, with the comments around it and its pin, from `other` (the key is
    /// added at the end of this `[db]`).
    pub fn copy_entry_from(&mut self, other: &Manifest, key: &str) {
        let Some((name, item)) = other.table().and_then(|t| t.get_key_value(key)) else { return };
        let (name, item) = (name.clone(), item.clone());
        let db = self.doc.entry("db").or_insert_with(|| Item::Table(Table::new()));
        if let Some(table) = db.as_table_mut() {
            table.insert_formatted(&name, item);
        } else if let Some(table) = db.as_table_like_mut() {
            table.insert(key, item);
        }
        if let Some(pin) = other.entries().into_iter().find(|e| e.key == key).and_then(|e| e.sha256) {
            self.set_pin(key, &pin);
        }
    }

    /// Removes a key from `[db]`, and its pin.
    pub fn remove(&mut self, key: &str) {
        if let Some(table) = self.doc.get_mut("db").and_then(Item::as_table_like_mut) {
            table.remove(key);
        }
        self.remove_pin(key);
    }

    /// Sets `path`, keeping its decoration.
    pub fn set_path_value(&mut self, path: &str) {
        self.set_file("path", path);
    }

    /// Writes this manifest the way `other` was written (its BOM and line endings).
    pub fn keep_style_of(&mut self, other: &Manifest) {
        self.style = other.style;
    }

    /// The text to write, with the BOM and line endings it was read with.
    pub fn render(&self) -> String {
        let text = self.doc.to_string();
        let text = if self.style.crlf { text.replace('\n', "\r\n") } else { text };
        if self.style.bom { format!("\u{feff}{text}") } else { text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# servers read this\n[db]\nipmdb = \"ipm-db-v2.db\" # the main one\nemojidb = \"emoji-db-v2.db\"\npath = \"/frontend/db/all_dbs/\"\nother = 3\n";

    #[test]
    fn edits_keep_comments_and_order() {
        let mut m = Manifest::parse(SAMPLE, "db.toml").expect("parses");
        assert_eq!(m.entries().len(), 2);
        assert_eq!(m.unmanaged().len(), 1, "`other = 3` is reported");
        m.set_file("ipmdb", "ipm-db-v3.db");
        let text = m.render();
        assert!(text.contains("ipmdb = \"ipm-db-v3.db\" # the main one"), "{text}");
        assert!(text.starts_with("# servers read this\n[db]\n"));
        assert!(text.contains("other = 3"));
        m.set_file("newdb", "new-db-v1.db");
        assert_eq!(m.entry_for_stem("new-db").map(|e| e.version), Some(1));
    }

    #[test]
    fn pins_are_kept_in_their_own_table_with_formatting() {
        let sha = "ab".repeat(32);
        let mut m = Manifest::parse(SAMPLE, "db.toml").expect("parses");
        m.set_version("ipmdb", "ipm-db-v3.db", &sha);
        let text = m.render();
        assert!(text.starts_with("# servers read this\n[db]\nipmdb = \"ipm-db-v3.db\" # the main one\n"), "{text}");
        assert!(text.contains(&format!("[b2m.sha256]\nipmdb = \"{sha}\"\n")), "{text}");
        let again = Manifest::parse(&text, "db.toml").expect("parses");
        assert_eq!(again.entry_for_stem("ipm-db").and_then(|e| e.sha256), Some(sha.clone()));
        assert_eq!(again.entry_for_stem("emoji-db").and_then(|e| e.sha256), None);
        let bad = text.replace(&sha, "not-a-sha");
        assert!(Manifest::parse(&bad, "db.toml").is_err());
    }

    #[test]
    fn every_entry_is_managed_or_reported() {
        let text = "[db]\nipmdb = \"ipm.db\"\nemojidb = \"emoji-db-v1.db\"\nicons = \"icons-v2.db\"\nother = 3\npath = \"/x/\"\n";
        let m = Manifest::parse(text, "db.toml").expect("parses");
        assert_eq!(m.entries().len(), 1);
        let unmanaged = m.unmanaged();
        let keys: Vec<&str> = unmanaged.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(keys, vec!["ipmdb", "icons", "other"]);
        assert!(unmanaged[0].why.contains("`ipm-v1.db`"), "{unmanaged:?}");
        assert!(unmanaged[1].why.contains("`iconsdb`"), "{unmanaged:?}");
    }

    #[test]
    fn two_keys_for_one_database_name_both_lines() {
        let text = "[db]\nemojidb = \"emoji-db-v1.db\"\n# another name\notherdb = \"emoji-db-v1.db\"\n";
        let err = Manifest::parse(text, "db.toml").expect_err("two keys").to_string();
        assert!(err.contains("line 2 (`emojidb`)") && err.contains("line 4 (`otherdb`)"), "{err}");
        let text = "[db]\nadb = \"ipm-db-v1.db\"\nbdb = \"ipm-db-v2.db\"\n";
        let err = Manifest::parse(text, "db.toml").expect_err("two files, one stem").to_string();
        assert!(err.contains("line 2 (`adb`)") && err.contains("line 3 (`bdb`)") && err.contains("`ipm-db`"), "{err}");
    }

    #[test]
    fn errors_name_line_and_column() {
        let err = Manifest::parse("[db]\nipmdb = \n", "db.toml").expect_err("invalid");
        let text = err.to_string();
        assert!(text.contains("line 2"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}
