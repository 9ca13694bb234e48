//! The fleet view: each server's preflight records what it runs in `fleet/<server-id>.json` (when
//! something changed, and otherwise at most once a day, so a no-op preflight adds no request on
//! other days); `b2m fleet` shows every server, what it runs, and how far behind it is.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Context;
use super::remote::{self, RemoteManifest, VersionId};
use crate::error::{Error, Result};
use crate::store::Condition;

/// A heartbeat is written at least this often, even when nothing changed.
const HEARTBEAT: chrono::Duration = chrono::Duration::hours(24);

/// A database a server runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    /// The stem.
    pub stem: String,
    /// The version.
    pub version: u64,
    /// Its pinned sha256.
    pub sha256: Option<String>,
}

/// `fleet/<server-id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `server.name`, else the host name.
    pub name: String,
    /// The host name.
    pub host: String,
    /// The project folder on that host.
    pub root: String,
    /// What it runs.
    pub dbs: Vec<Running>,
    /// The last changeset it knows done.
    pub last_changeset: Option<String>,
    /// The b2m version.
    pub b2m_version: String,
    /// RFC 3339, when this record was written.
    pub at: String,
}

/// This server's id: its name and a short hash of its project folder (two checkouts on one host
/// are two servers).
fn server_id(ctx: &Context) -> String {
    let name = ctx.settings.server_name.clone().unwrap_or_else(crate::util::host_name);
    let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    let root = hex::encode(Sha256::digest(ctx.settings.root.to_string_lossy().as_bytes()));
    format!("{safe}-{}", &root[..8])
}

/// Writes this server's record when it differs from the last one written, or a day has passed.
pub fn heartbeat(ctx: &Context, last_changeset: Option<String>) -> Result<bool> {
    let local = ctx.local_manifest()?;
    let dbs: Vec<Running> = local.entries().into_iter().map(|e| Running { stem: e.stem, version: e.version, sha256: e.sha256 }).collect();
    let mut record = Record {
        name: ctx.settings.server_name.clone().unwrap_or_else(crate::util::host_name),
        host: crate::util::host_name(),
        root: ctx.settings.root.display().to_string(),
        dbs,
        last_changeset,
        b2m_version: env!("CARGO_PKG_VERSION").to_string(),
        at: String::new(),
    };
    let unchanged = serde_json::to_string(&record).unwrap_or_default();
    if let Some((last, at)) = ctx.state.heartbeat()? {
        let fresh = chrono::DateTime::parse_from_rfc3339(&at).is_ok_and(|t| chrono::Utc::now() - t.with_timezone(&chrono::Utc) < HEARTBEAT);
        if last == unchanged && fresh {
            return Ok(false);
        }
    }
    record.at = crate::util::now_rfc3339();
    let body = serde_json::to_vec_pretty(&record).map_err(|e| Error::config(format!("cannot encode the fleet record: {e}")))?;
    ctx.store.put(&crate::layout::fleet_key(&server_id(ctx)), &body, Condition::None)?;
    ctx.state.set_heartbeat(&unchanged)?;
    Ok(true)
}

/// A server in the fleet view.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    /// Its record.
    #[serde(flatten)]
    pub record: Record,
    /// Per database it runs: how many versions behind the bucket it is (0: current).
    pub behind: Vec<(String, u64)>,
}

/// Every server's record, with how far behind each is.
pub fn fleet(ctx: &Context) -> Result<Vec<Server>> {
    let manifest: Option<RemoteManifest> = remote::read_manifest(ctx.store.as_ref())?;
    let mut out = Vec::new();
    for object in ctx.store.list(crate::layout::FLEET)? {
        let Some(found) = ctx.store.get(&object.key)? else { continue };
        let Ok(record) = serde_json::from_slice::<Record>(&found.body) else { continue };
        let behind = record
            .dbs
            .iter()
            .map(|d| {
                let current: Option<VersionId> = manifest.as_ref().and_then(|m| m.current(&d.stem));
                (d.stem.clone(), current.map_or(0, |c| c.version.saturating_sub(d.version)))
            })
            .collect();
        out.push(Server { record, behind });
    }
    out.sort_by(|a, b| a.record.name.cmp(&b.record.name));
    Ok(out)
}
