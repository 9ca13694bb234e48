//! `b2m check`, for CI: the local db.toml, the bucket's db.toml, and the metadata of the versions
//! they pin agree. Like `sqlx migrate info`/`prepare --check`: every finding is listed, and the
//! check fails (exit 1) when any is an error. `--offline` checks the local db.toml alone.

use serde::Serialize;

use super::Context;
use super::remote::{self, VersionId};
use crate::error::Result;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// The check fails.
    Error,
    /// Worth knowing; the check still passes.
    Warning,
}

/// One thing the check found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Error or warning.
    pub level: Level,
    /// The db.toml key it is about.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// The whole check.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    /// True when no finding is an error.
    pub ok: bool,
    /// Databases checked.
    pub databases: usize,
    /// What was found.
    pub findings: Vec<Finding>,
}

/// Runs the check; `offline` reads nothing from the bucket.
pub fn check(ctx: &Context, offline: bool) -> Result<Checked> {
    let local = ctx.local_manifest()?;
    let mut findings = Vec::new();
    let mut add = |level, key: &str, message: String| findings.push(Finding { level, key: key.to_string(), message });
    for u in local.unmanaged() {
        add(Level::Error, &u.key, format!("`{} = {}` is not a database b2m manages: {}", u.key, u.value, u.why));
    }
    let entries = local.entries();
    for e in entries.iter().filter(|e| e.sha256.is_none()) {
        add(Level::Warning, &e.key, format!("`{}` is not pinned in `[b2m.sha256]`: it was never published from here", e.file));
    }
    if !offline {
        let remote = remote::read_manifest(ctx.store.as_ref())?;
        for e in &entries {
            let Some(ours) = VersionId::pinned(e) else { continue };
            let Some(current) = remote.as_ref().and_then(|m| m.current(&e.stem)) else {
                add(Level::Warning, &e.key, format!("`{}` is pinned here but not published in the bucket", e.file));
                continue;
            };
            if current == ours {
                match remote::read_meta(ctx.store.as_ref(), &current)? {
                    Some(_) => {}
                    None => add(Level::Error, &e.key, format!("the bucket pins `{}` but has no metadata `{}`", e.file, current.meta_key())),
                }
            } else if remote::is_committed(ctx.store.as_ref(), remote.as_ref(), &ours)? {
                add(
                    Level::Warning,
                    &e.key,
                    format!(
                        "pins v{} {}…, behind the bucket's v{} {}…: run `b2m fetch-db-toml`",
                        ours.version,
                        ours.short(),
                        current.version,
                        current.short()
                    ),
                );
            } else {
                add(
                    Level::Error,
                    &e.key,
                    format!(
                        "pins v{} {}…, which is not in the bucket's history (it has v{} {}…): this db.toml diverged",
                        ours.version,
                        ours.short(),
                        current.version,
                        current.short()
                    ),
                );
            }
        }
    }
    let ok = findings.iter().all(|f| f.level != Level::Error);
    Ok(Checked { ok, databases: entries.len(), findings })
}
