//! The ledger in the bucket: `changesets/<name>.json` says whether a changeset ran (state, the
//! script's sha256, where and when, the versions it made), `changesets/<name>.log` holds its log.
//! Every write of an entry is made under the changeset's claim lease and bounded by it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Kind;
use crate::error::{Error, Result};
use crate::layout::VersionId;
use crate::store::{Condition, Store};

/// Where a changeset stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Claimed and running (or its runner died: then its claim lease has expired).
    Running,
    /// Ran to the end; never runs again.
    Done,
    /// Failed (or was interrupted); runs again only with `--retry`.
    Failed,
}

impl State {
    /// `running`, `done`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
        }
    }
}

/// A version a changeset published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MadeVersion {
    /// The database.
    pub stem: String,
    /// The version.
    pub version: u64,
    /// Its object's sha256.
    pub sha256: String,
}

/// "published `ipm-db` v2 and `emoji-db` v3", or `None` when nothing was published.
pub fn published(versions: &[MadeVersion]) -> Option<String> {
    let names: Vec<String> = versions.iter().map(|v| format!("`{}` v{}", v.stem, v.version)).collect();
    (!names.is_empty()).then(|| format!("published {}", names.join(" and ")))
}

impl From<&VersionId> for MadeVersion {
    fn from(id: &VersionId) -> Self {
        MadeVersion { stem: id.stem.clone(), version: id.version, sha256: id.sha256.clone() }
    }
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The changeset's name.
    pub name: String,
    /// Its language.
    pub kind: Kind,
    /// Where it stands.
    pub state: State,
    /// sha256 of the script, line endings normalised.
    pub script_sha256: String,
    /// `user@host` of the machine that ran it.
    pub owner: String,
    /// The host name.
    pub host: String,
    /// The id of the claim lease it ran under.
    pub claim: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, once it ended.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// The versions it published.
    #[serde(default)]
    pub versions: Vec<MadeVersion>,
    /// The log object.
    #[serde(default)]
    pub log: Option<String>,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// The script's exit code (`.py`/`.sh`).
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// How many times it was started.
    #[serde(default)]
    pub runs: u32,
}

impl Entry {
    /// `done on build-1 at 12:00:01Z`.
    pub fn describe(&self) -> String {
        let when = self.finished_at.as_deref().unwrap_or(&self.started_at);
        format!("{} on {} ({}) at {when}", self.state.as_str(), self.host, self.owner)
    }
}

/// The key of a changeset's entry.
pub fn key(name: &str) -> String {
    crate::layout::ledger_key(name)
}

/// The key of a changeset's log.
pub fn log_key(name: &str) -> String {
    crate::layout::ledger_log_key(name)
}

/// Reads a changeset's entry; `None` when it never ran.
pub fn read(store: &dyn Store, name: &str) -> Result<Option<Entry>> {
    let key = key(name);
    let Some(object) = store.get(&key)? else { return Ok(None) };
    serde_json::from_slice(&object.body).map(Some).map_err(|e| {
        Error::refused(
            format!("the ledger entry `{key}` at `{}` is unreadable: {e}", store.location()),
            "restore it, or remove it if you are sure the changeset never ran",
        )
    })
}

/// Writes an entry within `budget` (what is left of the claim lease).
pub fn write(store: &dyn Store, entry: &Entry, budget: Duration) -> Result<()> {
    let body = serde_json::to_vec_pretty(entry).map_err(|e| Error::config(format!("cannot encode the ledger entry: {e}")))?;
    store.put_within(&key(&entry.name), &body, Condition::None, budget)?;
    Ok(())
}

/// Every entry in the ledger (one LIST, one GET per entry), by name.
pub fn all(store: &dyn Store) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for object in store.list(crate::layout::LEDGER)? {
        let Some(name) = crate::layout::ledger_name_of(&object.key) else { continue };
        if let Some(entry) = read(store, name)? {
            out.push(entry);
        }
    }
    Ok(out)
}
