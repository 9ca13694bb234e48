//! Settings: `b2m.toml` (found by walking up from the working directory, like git), the
//! environment and the command-line flags, resolved into plain values.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{DocumentMut, Item};

use crate::error::{Error, Result};
use crate::util::parse_toml;

/// The name of the project file.
pub const PROJECT_FILE: &str = "b2m.toml";
/// The folder of local state, git-ignored.
pub const STATE_DIR: &str = ".b2m";

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    /// The secret itself, for the one place that signs requests.
    pub fn expose(&self) -> String {
        self.0.clone()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Credentials from `B2M_ACCESS_KEY_ID` / `B2M_SECRET_ACCESS_KEY`.
#[derive(Debug, Clone)]
pub struct StaticCredentials {
    /// The key id.
    pub access_key_id: String,
    /// The secret key.
    pub secret_access_key: Secret,
}

/// How the bucket protocol guards concurrent machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locking {
    /// Use what `b2m doctor` found safe.
    Auto,
    /// Atomic conditional writes.
    Conditional,
    /// Plain PUT/GET/LIST/DELETE leases.
    Lease,
}

/// Where the bucket is.
#[derive(Debug, Clone)]
pub struct Remote {
    /// `s3://bucket/prefix` or `file:///path`.
    pub url: String,
    /// S3 endpoint URL.
    pub endpoint: Option<String>,
    /// S3 region.
    pub region: Option<String>,
    /// Locking mode.
    pub locking: Locking,
    /// Static credentials, when given in the environment.
    pub credentials: Option<StaticCredentials>,
    /// `remote.timeout`: how long connecting, and then waiting for the first byte of an answer,
    /// may take (seconds, default 10). A transfer's body may take as long as it needs.
    pub timeout: Duration,
}

/// `[server]`: how to stop and start the server that reads the databases.
#[derive(Debug, Clone)]
pub struct Server {
    /// Run in the project root to stop the server (`make stop-prod`).
    pub stop: Option<String>,
    /// Run in the project root to start it; must return (a start daemonises).
    pub start: Option<String>,
    /// Run in the project root to tell whether it runs (exit 0: it runs). Without it, b2m assumes
    /// it runs.
    pub running: Option<String>,
    /// How long each may take.
    pub timeout: Duration,
}

/// Everything a command needs to know about the project.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The folder holding `b2m.toml`.
    pub root: PathBuf,
    /// The bucket.
    pub remote: Remote,
    /// The databases' folder.
    pub db_dir: PathBuf,
    /// The local db.toml.
    pub manifest: PathBuf,
    /// The changeset folder.
    pub changesets: PathBuf,
    /// `.b2m/`.
    pub state_dir: PathBuf,
    /// Lease TTL, wait and token (`B2M_LEASE_TTL_SECS`, `B2M_LEASE_WAIT_SECS`, `B2M_LEASE_TOKEN`).
    pub leases: LeaseConfig,
    /// `preflight.allow_offline`: an unreachable bucket does not stop a start when every local
    /// file still matches its pin.
    pub allow_offline: bool,
    /// `preflight.changeset_wait`: how long preflight waits for a changeset another machine runs.
    pub changeset_wait: Duration,
    /// `preflight.offline_after`: how long preflight tries to read the bucket's db.toml before it
    /// counts the bucket unreachable (seconds, default 15).
    pub offline_after: Duration,
    /// How long a command waits for another b2m in this project to let go of the local lock
    /// (`B2M_LOCK_WAIT_SECS`, default the lease wait, 600 s).
    pub local_lock_wait: Duration,
    /// `[server]`, when configured.
    pub server: Option<Server>,
    /// `notify.webhook`: a Discord/Slack-style URL that gets `{"content": "…"}` POSTed.
    pub notify_webhook: Option<String>,
    /// `notify.command`: run with the event as JSON on stdin.
    pub notify_command: Option<String>,
    /// `server.name`: how this server appears in `b2m fleet` (default: its host name).
    pub server_name: Option<String>,
    /// `merge.soft_delete_column` and `merge.soft_delete_value`: what a replayed DELETE sets.
    pub soft_delete: SoftDelete,
    /// `B2M_CHANGESET`: the changeset this process runs for (its publishes name it).
    pub changeset: Option<String>,
    /// `B2M_LOCAL_LOCK_TOKEN`: a changeset's child acts under its parent's local lock with it.
    pub local_lock_token: Option<String>,
    /// How old an object no commit pins must be before `b2m gc` removes it: longer than any
    /// publish can take between its upload and its commit (`B2M_ORPHAN_AGE_SECS`, default 24 h).
    pub orphan_age: Duration,
}

/// A number of seconds from the environment, if set and valid.
fn env_secs(name: &str) -> Option<Duration> {
    std::env::var(name).ok().and_then(|s| s.trim().parse().ok()).map(Duration::from_secs)
}

/// How leases behave on this project (from `Settings`).
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// How long a lease lives without renewal (renewed four times per TTL).
    pub ttl: Duration,
    /// How long to wait for a lease someone else holds.
    pub wait: Duration,
    /// `B2M_LEASE_TOKEN`: the id of a lease this process acts under (a manual `b2m lock`, or a
    /// parent's lease handed to a changeset's child). Nothing else lets two processes share one.
    pub token: Option<String>,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig { ttl: Duration::from_secs(60), wait: Duration::from_secs(600), token: None }
    }
}

impl LeaseConfig {
    /// Time kept back from every guarantee, for the request itself to travel and be applied.
    pub(crate) fn margin(&self) -> Duration {
        (self.ttl / 10).min(Duration::from_secs(5))
    }
}

/// How deletes are replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftDelete {
    /// The column a deleted row gets set (`deleted_at`), in every table the journal deletes from.
    pub column: String,
    /// The SQL expression it is set to, e.g. `CURRENT_TIMESTAMP`, or `1` for a flag.
    pub value: String,
}

/// The lease settings from the environment, over the defaults.
pub fn env_leases() -> LeaseConfig {
    let default = LeaseConfig::default();
    LeaseConfig {
        ttl: env_secs("B2M_LEASE_TTL_SECS").filter(|d| !d.is_zero()).unwrap_or(default.ttl),
        wait: env_secs("B2M_LEASE_WAIT_SECS").unwrap_or(default.wait),
        token: std::env::var("B2M_LEASE_TOKEN").ok().filter(|s| !s.is_empty()),
    }
}

/// Finds `b2m.toml` in `start` or a parent.
pub fn find_root(start: &Path) -> Result<PathBuf> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        if d.join(PROJECT_FILE).is_file() {
            return Ok(d.to_path_buf());
        }
        dir = d.parent();
    }
    Err(Error::config_hint(
        format!("no `{PROJECT_FILE}` found in `{}` or any parent folder", start.display()),
        "run `b2m init` in the project root, or pass `-C DIR`",
    ))
}

/// Reads the credentials from the environment, if set.
pub fn env_credentials() -> Option<StaticCredentials> {
    let id = std::env::var("B2M_ACCESS_KEY_ID").ok().filter(|s| !s.is_empty())?;
    let secret = std::env::var("B2M_SECRET_ACCESS_KEY").ok().filter(|s| !s.is_empty())?;
    Some(StaticCredentials { access_key_id: id, secret_access_key: Secret::new(secret) })
}

fn get_str(doc: &DocumentMut, table: &str, key: &str, origin: &str) -> Result<Option<String>> {
    let Some(item) = doc.get(table).and_then(|t| t.as_table_like()).and_then(|t| t.get(key)) else {
        return Ok(None);
    };
    match item.as_str() {
        Some(s) => Ok(Some(s.to_string())),
        None => Err(Error::config_hint(
            format!("`{origin}`: `{table}.{key}` must be a string"),
            format!("fix `{origin}` and run the command again"),
        )),
    }
}

impl Settings {
    /// Loads the project around `start` (the working directory or `-C DIR`).
    pub fn load(start: &Path) -> Result<Self> {
        let root = find_root(start)?;
        let path = root.join(PROJECT_FILE);
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        let doc = parse_toml(&text, &origin)?;
        for table in ["remote", "paths", "server", "preflight", "merge", "notify"] {
            if let Some(item) = doc.get(table)
                && !matches!(item, Item::Table(_))
            {
                return Err(Error::config_hint(format!("`{origin}`: `{table}` must be a table"), format!("fix `{origin}`")));
            }
        }
        let url = match std::env::var("B2M_REMOTE").ok().filter(|s| !s.is_empty()) {
            Some(url) => url,
            None => get_str(&doc, "remote", "url", &origin)?.ok_or_else(|| {
                Error::config_hint(
                    format!("`{origin}` has no `remote.url`"),
                    "add `[remote]` with `url = \"s3://bucket/prefix\"`, or set `B2M_REMOTE`",
                )
            })?,
        };
        let locking = match get_str(&doc, "remote", "locking", &origin)?.as_deref() {
            None | Some("auto") => Locking::Auto,
            Some("conditional") => Locking::Conditional,
            Some("lease") => Locking::Lease,
            Some(other) => {
                return Err(Error::config_hint(
                    format!("`{origin}`: `remote.locking = \"{other}\"` is not a locking mode"),
                    "use `auto`, `conditional` or `lease`",
                ));
            }
        };
        let remote = Remote {
            url,
            endpoint: get_str(&doc, "remote", "endpoint", &origin)?.filter(|s| !s.is_empty()),
            region: get_str(&doc, "remote", "region", &origin)?.filter(|s| !s.is_empty()),
            locking,
            credentials: env_credentials(),
            timeout: Duration::from_secs(10),
        };
        let rel = |key: &str, default: &str| -> Result<PathBuf> {
            let value = get_str(&doc, "paths", key, &origin)?.unwrap_or_else(|| default.to_string());
            Ok(root.join(value))
        };
        let db_dir = rel("db_dir", "db/all_dbs")?;
        let manifest = match get_str(&doc, "paths", "manifest", &origin)? {
            Some(m) => root.join(m),
            None => db_dir.join("db.toml"),
        };
        let allow_offline = match doc.get("preflight").and_then(|t| t.get("allow_offline")) {
            None => false,
            Some(item) => item.as_bool().ok_or_else(|| {
                Error::config_hint(format!("`{origin}`: `preflight.allow_offline` must be true or false"), format!("fix `{origin}`"))
            })?,
        };
        let seconds = |table: &str, key: &str, default: u64, least: i64| -> Result<Duration> {
            match doc.get(table).and_then(|t| t.get(key)) {
                None => Ok(Duration::from_secs(default)),
                Some(item) => item.as_integer().filter(|&n| n >= least).map(|n| Duration::from_secs(n.unsigned_abs())).ok_or_else(|| {
                    Error::config_hint(format!("`{origin}`: `{table}.{key}` must be a number of seconds"), format!("fix `{origin}`"))
                }),
            }
        };
        let changeset_wait = seconds("preflight", "changeset_wait", 600, 0)?;
        let offline_after = seconds("preflight", "offline_after", 15, 1)?;
        let remote = Remote { timeout: seconds("remote", "timeout", 10, 1)?, ..remote };
        let server = match doc.get("server") {
            None => None,
            Some(_) => {
                let timeout = match doc.get("server").and_then(|t| t.get("timeout")) {
                    None => Duration::from_secs(120),
                    Some(item) => item.as_integer().filter(|&n| n > 0).map(|n| Duration::from_secs(n.unsigned_abs())).ok_or_else(|| {
                        Error::config_hint(
                            format!("`{origin}`: `server.timeout` must be a positive number of seconds"),
                            format!("fix `{origin}`"),
                        )
                    })?,
                };
                Some(Server {
                    stop: get_str(&doc, "server", "stop", &origin)?.filter(|s| !s.trim().is_empty()),
                    start: get_str(&doc, "server", "start", &origin)?.filter(|s| !s.trim().is_empty()),
                    running: get_str(&doc, "server", "running", &origin)?.filter(|s| !s.trim().is_empty()),
                    timeout,
                })
            }
        };
        let soft_delete = SoftDelete {
            column: get_str(&doc, "merge", "soft_delete_column", &origin)?.unwrap_or_else(|| "deleted_at".into()),
            value: get_str(&doc, "merge", "soft_delete_value", &origin)?.unwrap_or_else(|| "CURRENT_TIMESTAMP".into()),
        };
        let server_name = get_str(&doc, "server", "name", &origin)?.filter(|s| !s.trim().is_empty());
        let notify_webhook = get_str(&doc, "notify", "webhook", &origin)?.filter(|s| !s.trim().is_empty());
        let notify_command = get_str(&doc, "notify", "command", &origin)?.filter(|s| !s.trim().is_empty());
        Ok(Settings {
            notify_webhook,
            notify_command,
            server_name,
            soft_delete,
            allow_offline,
            changeset_wait,
            offline_after,
            local_lock_wait: env_secs("B2M_LOCK_WAIT_SECS").unwrap_or_else(|| env_leases().wait),
            server,
            changesets: rel("changesets", "changeset")?,
            state_dir: root.join(STATE_DIR),
            root,
            remote,
            db_dir,
            manifest,
            leases: env_leases(),
            changeset: std::env::var("B2M_CHANGESET").ok().filter(|s| crate::names::is_changeset_name(s)),
            local_lock_token: std::env::var("B2M_LOCAL_LOCK_TOKEN").ok().filter(|s| !s.is_empty()),
            orphan_age: env_secs("B2M_ORPHAN_AGE_SECS").unwrap_or(Duration::from_secs(24 * 3600)),
        })
    }
}
