//! `db.toml`: which file holds each database. Read and edited with toml_edit so the user's
//! comments, order and formatting survive every edit.

use toml_edit::{DocumentMut, Item, Table, Value};

use crate::error::{Error, Result};
use crate::names::DbFileName;

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
}

/// A parsed db.toml that remembers its formatting.
#[derive(Debug, Clone)]
pub struct Manifest {
    doc: DocumentMut,
}

/// Parses TOML text, turning an error into one line that names the file, line and column.
pub fn parse_toml(text: &str, origin: &str) -> Result<DocumentMut> {
    text.parse::<DocumentMut>().map_err(|e| {
        let (line, col) = e.span().map(|span| line_col(text, span.start)).unwrap_or((1, 1));
        let message = e.message().lines().next().unwrap_or("invalid TOML").trim().to_string();
        Error::config_hint(
            format!("`{origin}` is not valid TOML at line {line}, column {col}: {message}"),
            format!("fix `{origin}` and run the command again"),
        )
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl Manifest {
    /// Parses db.toml text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let doc = parse_toml(text, origin)?;
        if let Some(item) = doc.get("db")
            && !item.is_table_like()
        {
            return Err(Error::config_hint(
                format!("`{origin}`: `db` must be a table (`[db]`)"),
                format!("fix `{origin}` and run the command again"),
            ));
        }
        Ok(Manifest { doc })
    }

    /// A new manifest with an empty `[db]` table and the given `path`.
    pub fn new_empty(path_value: Option<&str>) -> Self {
        let mut doc = DocumentMut::new();
        let mut table = Table::new();
        if let Some(path) = path_value {
            table.insert("path", toml_edit::value(path));
        }
        doc.insert("db", Item::Table(table));
        Manifest { doc }
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
                Some(Entry { key: key.to_string(), file: file.to_string(), stem: name.stem, version: name.version })
            })
            .collect()
    }

    /// The entry for a stem.
    pub fn entry_for_stem(&self, stem: &str) -> Option<Entry> {
        self.entries().into_iter().find(|e| e.stem == stem)
    }

    /// The `path` value, if any.
    pub fn path_value(&self) -> Option<String> {
        self.table()?.get("path")?.as_str().map(str::to_string)
    }

    /// Points `key` at `file`, keeping the value's surrounding comments and spacing; adds the key
    /// at the end of `[db]` when it is new.
    pub fn set_file(&mut self, key: &str, file: &str) {
        let db = self.doc.entry("db").or_insert_with(|| Item::Table(Table::new()));
        let Some(table) = db.as_table_like_mut() else { return };
        match table.get_mut(key).and_then(Item::as_value_mut) {
            Some(existing) => {
                let decor = existing.decor().clone();
                *existing = Value::from(file);
                *existing.decor_mut() = decor;
            }
            None => {
                table.insert(key, toml_edit::value(file));
            }
        }
    }

    /// Removes a key from `[db]`.
    pub fn remove(&mut self, key: &str) {
        if let Some(table) = self.doc.get_mut("db").and_then(Item::as_table_like_mut) {
            table.remove(key);
        }
    }

    /// Sets `path`, keeping its decoration.
    pub fn set_path_value(&mut self, path: &str) {
        self.set_file("path", path);
    }

    /// The text to write.
    pub fn render(&self) -> String {
        self.doc.to_string()
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
        m.set_file("ipmdb", "ipm-db-v3.db");
        let text = m.render();
        assert!(text.contains("ipmdb = \"ipm-db-v3.db\" # the main one"), "{text}");
        assert!(text.starts_with("# servers read this\n[db]\n"));
        assert!(text.contains("other = 3"));
        m.set_file("newdb", "new-db-v1.db");
        assert_eq!(m.entry_for_stem("new-db").map(|e| e.version), Some(1));
    }

    #[test]
    fn errors_name_line_and_column() {
        let err = Manifest::parse("[db]\nipmdb = \n", "db.toml").expect_err("invalid");
        let text = err.to_string();
        assert!(text.contains("line 2"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}
