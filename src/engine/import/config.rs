//! The original b2m's `b2m.toml`, translated into b2m's. The original (its `config/config.go`)
//! reads two keys: `rootbucket`, an rclone remote such as `b2:bucket/path/` (or a folder), and
//! `discord`, a webhook. They become `[remote] url` — b2m's layout in the folder `b2m/` beside the
//! original's objects, `s3://bucket/path/b2m` — and `[notify] webhook`. Any other key the
//! original's file holds is kept as a comment (the original never read it either) and reported;
//! tables are b2m's own and must be ones b2m knows. The file is rewritten with toml_edit, so its
//! comments and b2m tables stay as they were; the original file is kept byte for byte as
//! `b2m.toml.orig`, which also tells a second run where the original's bucket is.

use std::path::Path;

use serde::Serialize;
use toml_edit::{DocumentMut, Item};

use crate::error::{Error, Result};
use crate::layout::original::B2M_FOLDER;
use crate::settings::PROJECT_FILE;

/// Where the original `b2m.toml` is kept once translated.
pub const KEPT_AS: &str = "b2m.toml.orig";

/// Where the original's objects are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRoot {
    /// As the original's `b2m.toml` wrote it: `b2:bucket/path/`.
    pub rootbucket: String,
    /// The same place as b2m names a bucket: `s3://bucket/path` or `file:///srv/path`.
    pub url: String,
}

impl OriginalRoot {
    /// Reads `rootbucket`: an rclone remote `name:bucket/path/` (the remote's own settings, in
    /// rclone's config, are not read) or an absolute folder.
    pub fn parse(rootbucket: &str, origin: &str) -> Result<Self> {
        let value = rootbucket.trim();
        let wrong = |why: &str| {
            Error::config_hint(
                format!("`{origin}`: `rootbucket = \"{value}\"` {why}"),
                "write it as the original b2m reads it: an rclone remote with its bucket (`b2:bucket/path/`) or an absolute folder",
            )
        };
        let url = if value.starts_with('/') {
            format!("file://{}", value.trim_end_matches('/'))
        } else if let Some((remote, rest)) = value.split_once(':').filter(|(remote, _)| !remote.is_empty() && !remote.contains('/')) {
            let rest = rest.trim_matches('/');
            if rest.split('/').next().unwrap_or_default().is_empty() {
                return Err(wrong(&format!("names no bucket after `{remote}:`")));
            }
            format!("s3://{rest}")
        } else {
            return Err(wrong("is neither an rclone remote nor an absolute folder"));
        };
        Ok(OriginalRoot { rootbucket: value.to_string(), url: if url == "file://" { "file:///".into() } else { url } })
    }

    /// Where b2m's layout goes by default: the folder `b2m/` under the original's root.
    pub fn b2m_url(&self) -> String {
        format!("{}/{B2M_FOLDER}", self.url.trim_end_matches('/'))
    }
}

/// What `b2m import` was told about b2m's bucket on its command line.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--remote`: b2m's bucket, instead of `<rootbucket>/b2m`.
    pub remote: Option<String>,
    /// `--endpoint`.
    pub endpoint: Option<String>,
    /// `--region`.
    pub region: Option<String>,
}

/// The project's `b2m.toml` as import finds it, and what it becomes.
pub struct ProjectConfig {
    /// The original's bucket.
    pub root: OriginalRoot,
    /// The `b2m.toml` text b2m's settings come from: the translation, or the file as it is.
    pub text: String,
    /// When `b2m.toml` is still the original's: its text, and what the translation did.
    pub translation: Option<Translation>,
    /// For `--json`.
    pub report: ConfigReport,
}

/// A translation still to write.
pub struct Translation {
    /// The original file's text, kept as `b2m.toml.orig`.
    pub original: String,
}

/// What import did with the configuration (`--json`'s `config`).
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    /// `b2m.toml`.
    pub file: String,
    /// Whether this run translated it (false: it was b2m's already).
    pub translated: bool,
    /// Where the original file is kept.
    pub kept_as: String,
    /// The original's `rootbucket`.
    pub rootbucket: String,
    /// Whether the original's `discord` became `notify.webhook` (the URL is a secret: not shown).
    pub webhook: bool,
    /// The original's keys b2m does not read, kept in `b2m.toml` as comments.
    pub commented_out: Vec<String>,
}

/// Reads the project's `b2m.toml` in `root` and, when it is still the original's, translates it
/// (nothing is written: see [`write`]). Once translated, the original is read from `b2m.toml.orig`.
pub fn read(root: &Path, flags: &Flags) -> Result<ProjectConfig> {
    let (path, kept) = (root.join(PROJECT_FILE), root.join(KEPT_AS));
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("cannot read", &path, e))?;
    let doc = crate::util::parse_toml(&text, &origin)?;
    let kept_text = match std::fs::read_to_string(&kept) {
        Ok(kept_text) => Some(kept_text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("cannot read", &kept, e)),
    };
    let mut report = ConfigReport {
        file: origin.clone(),
        translated: false,
        kept_as: kept.display().to_string(),
        rootbucket: String::new(),
        webhook: false,
        commented_out: Vec::new(),
    };
    if is_original(&doc) {
        if kept_text.as_ref().is_some_and(|k| *k != text) {
            return Err(Error::config_hint(
                format!(
                    "`{}` exists and differs from the original `{origin}`: import would not know which to keep; nothing was changed",
                    kept.display()
                ),
                format!("move `{}` aside, then run `b2m import` again", kept.display()),
            ));
        }
        let (root, discord) = original_values(&doc, &origin)?;
        let (translated, commented_out) = translate(doc, &root, discord.as_deref(), flags)?;
        report =
            ConfigReport { translated: true, rootbucket: root.rootbucket.clone(), webhook: discord.is_some(), commented_out, ..report };
        return Ok(ProjectConfig { root, text: translated, translation: Some(Translation { original: text }), report });
    }
    let Some(kept_text) = kept_text else {
        return Err(Error::config_hint(
            format!("`{origin}` has no `rootbucket` and there is no `{}`: nothing says where the original b2m's bucket is", kept.display()),
            "run `b2m import` in the project of the original b2m (its `b2m.toml` names `rootbucket`)",
        ));
    };
    let (root, _) = original_values(&crate::util::parse_toml(&kept_text, &report.kept_as)?, &report.kept_as)?;
    refuse_other_flags(&doc, flags, &origin)?;
    report.rootbucket = root.rootbucket.clone();
    report.webhook = doc.get("notify").and_then(|n| n.get("webhook")).is_some();
    Ok(ProjectConfig { root, text, translation: None, report })
}

/// Keeps the original file as `b2m.toml.orig` (first) and writes the translated `b2m.toml`; a
/// configuration that was b2m's already is left as it is.
pub fn write(root: &Path, config: &ProjectConfig) -> Result<()> {
    let Some(translation) = &config.translation else { return Ok(()) };
    let kept = root.join(KEPT_AS);
    if !kept.exists() {
        crate::fsutil::write_atomic(&kept, translation.original.as_bytes())?;
    }
    crate::fsutil::write_atomic(&root.join(PROJECT_FILE), config.text.as_bytes())
}

/// Whether a `b2m.toml` is the original b2m's: it has its top-level keys.
fn is_original(doc: &DocumentMut) -> bool {
    ["rootbucket", "discord"].iter().any(|key| doc.get(key).is_some_and(Item::is_value))
}

/// The original's `rootbucket` and `discord` (`None` when absent or blank).
fn original_values(doc: &DocumentMut, origin: &str) -> Result<(OriginalRoot, Option<String>)> {
    let must_be_text = |key: &str| {
        Error::config_hint(
            format!("`{origin}`: `{key}` must be a string, as the original b2m reads it"),
            format!("fix `{key}` in `{origin}`"),
        )
    };
    let rootbucket = match doc.get("rootbucket") {
        Some(item) => item.as_str().ok_or_else(|| must_be_text("rootbucket"))?,
        None => {
            return Err(Error::config_hint(
                format!("`{origin}` has no `rootbucket`: nothing says where the original b2m's bucket is"),
                format!("add `rootbucket = \"b2:bucket/path/\"` to `{origin}` as the original b2m had it"),
            ));
        }
    };
    let discord = match doc.get("discord") {
        Some(item) => Some(item.as_str().ok_or_else(|| must_be_text("discord"))?.trim().to_string()).filter(|d| !d.is_empty()),
        None => None,
    };
    Ok((OriginalRoot::parse(rootbucket, origin)?, discord))
}

/// b2m's `b2m.toml` from the original's document: its top-level keys become comments in a header
/// (`rootbucket` and `discord` said where they went), `[remote]` and `[notify]` say what they
/// said; b2m tables already there stay as written. Returns the text and the keys b2m does not read.
fn translate(mut doc: DocumentMut, root: &OriginalRoot, discord: Option<&str>, flags: &Flags) -> Result<(String, Vec<String>)> {
    let mut header = String::from(
        "# b2m's settings, translated from the original b2m's by `b2m import`; the original file is kept\n# as `b2m.toml.orig` (put it back to use the original b2m again). Its keys:\n",
    );
    let mut commented_out = Vec::new();
    let flat: Vec<String> = doc.iter().filter(|(_, item)| item.is_value()).map(|(key, _)| key.to_string()).collect();
    for key in flat {
        header.push_str(&as_comment(&doc, &key));
        header.push_str(match key.as_str() {
            "rootbucket" => "#   (now `remote.url` below: b2m's layout goes in `b2m/` beside the original's objects)\n",
            "discord" => "#   (now `notify.webhook` below)\n",
            _ => {
                commented_out.push(key.clone());
                "#   (b2m does not read it)\n"
            }
        });
        doc.remove(&key);
    }
    let mut appended = String::new();
    appended.push_str(&remote_table(&mut doc, root, flags));
    if let Some(webhook) = discord {
        appended.push_str(&notify_table(&mut doc, webhook));
    }
    let mut text = header;
    let body = doc.to_string();
    if !body.trim().is_empty() {
        text.push_str(&format!("\n{}\n", body.trim_matches('\n')));
    }
    text.push_str(&appended);
    Ok((text, commented_out))
}

/// A top-level key of the original, with the comments above and beside it, as comment lines.
fn as_comment(doc: &DocumentMut, key: &str) -> String {
    let table = doc.as_table();
    let above = table.key(key).and_then(|k| k.leaf_decor().prefix()).and_then(|p| p.as_str()).unwrap_or_default();
    let mut text: String = above.lines().map(str::trim).filter(|l| l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    let value = table.get(key).and_then(Item::as_value).map(|v| v.to_string().trim().to_string()).unwrap_or_default();
    text.push_str(&format!("# {key} = {value}\n"));
    text
}

/// `[remote]`: its url (b2m's folder beside the original's objects, or `--remote`), endpoint and
/// region; edited in place when the file has the table, else returned as text to append.
fn remote_table(doc: &mut DocumentMut, root: &OriginalRoot, flags: &Flags) -> String {
    let url = flags.remote.clone().unwrap_or_else(|| root.b2m_url());
    if let Some(table) = doc.get_mut("remote").and_then(Item::as_table_like_mut) {
        if flags.remote.is_some() || table.get("url").is_none() {
            table.insert("url", toml_edit::value(url));
        }
        for (key, flag) in [("endpoint", &flags.endpoint), ("region", &flags.region)] {
            if let Some(value) = flag {
                table.insert(key, toml_edit::value(value.clone()));
            }
        }
        return String::new();
    }
    let mut text =
        format!("\n[remote]\n# the original's objects stay where `rootbucket` names them; b2m's go beside them\nurl = {}\n", quote(&url));
    if url.starts_with("s3://") {
        text.push_str(&match &flags.endpoint {
            Some(endpoint) => format!("endpoint = {}\n", quote(endpoint)),
            None => "# endpoint = \"https://s3.us-west-004.backblazeb2.com\"   (rclone's settings are not read: set the bucket's)\n".into(),
        });
        text.push_str(&match &flags.region {
            Some(region) => format!("region = {}\n", quote(region)),
            None => "# region = \"us-west-004\"\n".into(),
        });
        text.push_str("# credentials: B2M_ACCESS_KEY_ID and B2M_SECRET_ACCESS_KEY (a B2 application key), never this file\n");
    }
    text
}

/// `[notify] webhook` from the original's `discord`: set in place when the file has a `[notify]`
/// without one, else returned as text to append (a webhook b2m's table names already stays).
fn notify_table(doc: &mut DocumentMut, webhook: &str) -> String {
    if let Some(table) = doc.get_mut("notify").and_then(Item::as_table_like_mut) {
        if table.get("webhook").is_none() {
            table.insert("webhook", toml_edit::value(webhook));
        }
        return String::new();
    }
    format!("\n[notify]\n# the original's `discord`: every published version is announced there\nwebhook = {}\n", quote(webhook))
}

/// A TOML string.
fn quote(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_string()
}

/// On a `b2m.toml` that is b2m's already, a `--remote`, `--endpoint` or `--region` that says
/// otherwise than the file is refused: the file is edited by hand from then on.
fn refuse_other_flags(doc: &DocumentMut, flags: &Flags, origin: &str) -> Result<()> {
    for (key, flag) in [("url", &flags.remote), ("endpoint", &flags.endpoint), ("region", &flags.region)] {
        let Some(asked) = flag else { continue };
        let now = doc.get("remote").and_then(|r| r.get(key)).and_then(Item::as_str);
        if now != Some(asked.as_str()) {
            return Err(Error::config_hint(
                format!(
                    "`{origin}` was translated already and names `remote.{key} = \"{}\"`, not `{asked}`; nothing was changed",
                    now.unwrap_or("")
                ),
                format!("edit `remote.{key}` in `{origin}`, then run `b2m import` again"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootbucket_names_the_original_s_place_and_b2m_s_beside_it() {
        let root = OriginalRoot::parse("b2-config:hexmos/freedevtools/content/db/", "b2m.toml").expect("a remote");
        assert_eq!(root.url, "s3://hexmos/freedevtools/content/db");
        assert_eq!(root.b2m_url(), "s3://hexmos/freedevtools/content/db/b2m");
        assert_eq!(OriginalRoot::parse("/srv/bucket/", "b2m.toml").map(|r| r.b2m_url()).ok(), Some("file:///srv/bucket/b2m".into()));
        assert!(OriginalRoot::parse("b2:", "b2m.toml").is_err());
        assert!(OriginalRoot::parse("relative/path", "b2m.toml").is_err());
    }

    #[test]
    fn the_translation_keeps_comments_and_tables() {
        let original = "# the team's bucket\nrootbucket = \"b2:bkt/dbs/\" # prod\ndiscord = \"https://hook\"\nrclone_flags = \"-v\"\n\n[server]\n# how we restart\nstop = \"make stop\"\n";
        let doc = crate::util::parse_toml(original, "b2m.toml").expect("toml");
        let root = OriginalRoot::parse("b2:bkt/dbs/", "b2m.toml").expect("root");
        let (text, commented) = translate(doc, &root, Some("https://hook"), &Flags::default()).expect("translated");
        assert_eq!(commented, vec!["rclone_flags".to_string()]);
        for line in [
            "# the team's bucket\n# rootbucket = \"b2:bkt/dbs/\" # prod\n",
            "# rclone_flags = \"-v\"\n",
            "# how we restart\nstop = \"make stop\"\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        let parsed = crate::util::parse_toml(&text, "b2m.toml").expect("valid TOML");
        assert_eq!(parsed["remote"]["url"].as_str(), Some("s3://bkt/dbs/b2m"));
        assert_eq!(parsed["notify"]["webhook"].as_str(), Some("https://hook"));
        assert!(parsed.get("rootbucket").is_none() && parsed.get("rclone_flags").is_none());
    }
}
