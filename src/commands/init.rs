//! `b2m init`: b2m.toml, the db folder, db.toml, changeset/ and .gitignore lines. Safe to rerun:
//! what exists is kept.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, ExitStatus, Result};
use crate::fsutil;
use crate::output::Output;
use crate::settings::{PROJECT_FILE, STATE_DIR};

/// The folder name of the embedded default bucket.
pub const DEFAULT_BUCKET_DIR: &str = ".b2m-bucket";

/// What init set up.
#[derive(Debug, Serialize)]
pub struct Initialized {
    /// The project root.
    pub root: String,
    /// The bucket.
    pub remote: String,
    /// Files and folders created (existing ones were kept).
    pub created: Vec<String>,
}

fn quote(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_string()
}

fn project_file(remote: &str, endpoint: Option<&str>, region: Option<&str>) -> String {
    let endpoint = endpoint
        .map_or_else(|| "# endpoint = \"https://s3.us-west-004.backblazeb2.com\"".to_string(), |e| format!("endpoint = {}", quote(e)));
    let region = region.map_or_else(|| "# region = \"us-west-004\"".to_string(), |r| format!("region = {}", quote(r)));
    include_str!("../../templates/b2m.toml")
        .replace("{{url}}", &quote(remote))
        .replace("{{endpoint}}", &endpoint)
        .replace("{{region}}", &region)
}

/// The `remote.url` an existing b2m.toml names, if there is one.
fn configured_remote(config: &Path) -> Result<Option<String>> {
    let text = match std::fs::read_to_string(config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("cannot read", config, e)),
    };
    let doc = crate::util::parse_toml(&text, &config.display().to_string())?;
    Ok(doc.get("remote").and_then(|r| r.get("url")).and_then(|u| u.as_str()).map(str::to_string))
}

/// Sets up a project in `root`.
pub fn init(root: &Path, remote: Option<String>, endpoint: Option<String>, region: Option<String>) -> Result<Initialized> {
    let config = root.join(PROJECT_FILE);
    let configured = configured_remote(&config)?;
    if let (Some(asked), Some(now)) = (&remote, &configured)
        && asked != now
    {
        return Err(Error::config_hint(
            format!("`{}` already names the bucket `{now}`, not `{asked}`; nothing was changed", config.display()),
            format!("to move this project to `{asked}`, edit `remote.url` in `{}`", config.display()),
        ));
    }
    let remote = configured.or(remote).unwrap_or_else(|| format!("file://{}", root.join(DEFAULT_BUCKET_DIR).display()));
    if !(remote.starts_with("s3://") || remote.starts_with("file:///")) {
        return Err(Error::config_hint(
            format!("remote `{remote}` is neither `s3://bucket/prefix` nor `file:///path`"),
            "pass `--remote s3://bucket/prefix`",
        ));
    }
    let mut created = Vec::new();
    let make_dir = |path: PathBuf, created: &mut Vec<String>| -> Result<()> {
        if !path.exists() {
            std::fs::create_dir_all(&path).map_err(|e| Error::io("cannot create", &path, e))?;
            created.push(path.display().to_string());
        }
        Ok(())
    };
    if !config.exists() {
        fsutil::write_atomic(&config, project_file(&remote, endpoint.as_deref(), region.as_deref()).as_bytes())?;
        created.push(config.display().to_string());
    }
    let db_dir = root.join("db/all_dbs");
    make_dir(db_dir.clone(), &mut created)?;
    let manifest = db_dir.join("db.toml");
    if !manifest.exists() {
        let text = include_str!("../../templates/db.toml").replace("{{path}}", &quote(&format!("{}/", db_dir.display())));
        fsutil::write_atomic(&manifest, text.as_bytes())?;
        created.push(manifest.display().to_string());
    }
    for sub in ["scripts", "dbs", "logs"] {
        make_dir(root.join("changeset").join(sub), &mut created)?;
    }
    make_dir(root.join(STATE_DIR), &mut created)?;
    if let Some(folder) = remote.strip_prefix("file://") {
        make_dir(PathBuf::from(folder), &mut created)?;
    }
    ignore_in_git(root)?;
    Ok(Initialized { root: root.display().to_string(), remote, created })
}

/// Adds the lines b2m needs to `.gitignore` (those missing), under a `# b2m` comment.
fn ignore_in_git(root: &Path) -> Result<()> {
    let gitignore = root.join(".gitignore");
    let existing = std::fs::read_to_string(&gitignore).unwrap_or_default();
    // The databases, their sidecars and their journals live in the bucket and on the servers, not
    // in git; so do the working copies and the changesets' logs (the bucket keeps those too).
    let wanted = [
        ".b2m/",
        ".b2m-bucket/",
        "changeset/dbs/",
        "changeset/logs/",
        "db/all_dbs/*.db",
        "db/all_dbs/*.db-wal",
        "db/all_dbs/*.db-shm",
        "db/all_dbs/*.db-journal",
        "db/all_dbs/*.sql",
    ];
    let missing: Vec<&str> = wanted.iter().copied().filter(|line| !existing.lines().any(|l| l.trim() == *line)).collect();
    if !missing.is_empty() {
        let mut text = existing.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("# b2m\n");
        for line in missing {
            text.push_str(line);
            text.push('\n');
        }
        fsutil::write_atomic(&gitignore, text.as_bytes())?;
    }
    Ok(())
}

/// `b2m init`.
pub fn run(root: &Path, remote: Option<String>, endpoint: Option<String>, region: Option<String>, out: &Output) -> Result<ExitStatus> {
    let done = init(root, remote, endpoint, region)?;
    out.report(&done, || {
        let mut text = format!("b2m is set up in `{}` with the bucket `{}`\n", done.root, done.remote);
        for path in &done.created {
            text.push_str(&format!("  created {path}\n"));
        }
        text
    });
    Ok(ExitStatus::Success)
}
