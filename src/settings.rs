//! Settings: `b2m.toml` (found by walking up from the working directory, like git), the
//! environment and the command-line flags, resolved into plain values — once, here, in layers: a
//! flag over the environment over `b2m.toml` over the default. Nothing deeper reads a `B2M_*`
//! variable; the store, the engine and the commands take what they need from [`Settings`].

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
    /// How transfers are cut into parts and stretches.
    pub tuning: Tuning,
}

/// How an S3 transfer is cut up: the size of an upload's parts and of a download's stretches, and
/// how many of each are in flight at once. The defaults are tuned by `bench/bench.py`: see
/// docs/decisions.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Files up to it go in one PUT, larger ones in parts of it (`B2M_PART_SIZE_MIB`, kept
    /// between S3's 5 MiB and 5 GiB; default 32 MiB).
    pub part_size: u64,
    /// Parts in flight at once (`B2M_PARTS_IN_FLIGHT`, at most 64; default 4).
    pub parts_in_flight: usize,
    /// The stretch of an object each GET of a download asks for (`B2M_STRETCH_MIB`, at most
    /// 1 GiB; default 16 MiB).
    pub stretch: u64,
    /// Stretches in flight at once (`B2M_STRETCHES_IN_FLIGHT`, at most 64; default 8).
    pub stretches_in_flight: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning { part_size: 32 << 20, parts_in_flight: 4, stretch: 16 << 20, stretches_in_flight: 8 }
    }
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
    /// How long preflight waits for a changeset another machine runs: the lease wait when
    /// `B2M_LEASE_WAIT_SECS` is set, else `preflight.changeset_wait` (seconds, default 600).
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
    /// `notify.events`: the kinds of event sent (`published`, `conflict`, `changeset_failed`,
    /// `merge_failed`, `preflight_stopped`); `None`: all of them. A line of one's own (`b2m
    /// notify`) is always sent.
    pub notify_events: Option<Vec<String>>,
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
    /// `remote.pages` (or `B2M_PAGES=1`): new versions are stored as pages (README, "Versions
    /// stored as pages"); versions stored either way are always read.
    pub pages: bool,
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

/// Every variable of the environment b2m reads, read once: the environment layer of the settings.
/// An empty or unreadable value counts as unset, except where noted.
struct Environment {
    /// `B2M_REMOTE`: the bucket, over `remote.url`.
    remote: Option<String>,
    /// `B2M_ACCESS_KEY_ID` and `B2M_SECRET_ACCESS_KEY`, when both are set.
    credentials: Option<StaticCredentials>,
    /// `B2M_LEASE_TTL_SECS`, `B2M_LEASE_WAIT_SECS` and `B2M_LEASE_TOKEN`, over the defaults.
    leases: LeaseConfig,
    /// Whether `B2M_LEASE_WAIT_SECS` is set at all (even to something unreadable): then it, not
    /// `preflight.changeset_wait`, bounds preflight's wait.
    lease_wait_set: bool,
    /// `B2M_LOCK_WAIT_SECS`.
    lock_wait: Option<Duration>,
    /// `B2M_CHANGESET`, when it is a changeset's name.
    changeset: Option<String>,
    /// `B2M_LOCAL_LOCK_TOKEN`.
    local_lock_token: Option<String>,
    /// `B2M_ORPHAN_AGE_SECS`.
    orphan_age: Option<Duration>,
    pages: Option<bool>,
    /// `B2M_PART_SIZE_MIB`, `B2M_PARTS_IN_FLIGHT`, `B2M_STRETCH_MIB`, `B2M_STRETCHES_IN_FLIGHT`,
    /// over the defaults.
    tuning: Tuning,
}

impl Environment {
    fn read() -> Self {
        let default = LeaseConfig::default();
        let leases = LeaseConfig {
            ttl: env_secs("B2M_LEASE_TTL_SECS").filter(|d| !d.is_zero()).unwrap_or(default.ttl),
            wait: env_secs("B2M_LEASE_WAIT_SECS").unwrap_or(default.wait),
            token: env_string("B2M_LEASE_TOKEN"),
        };
        Environment {
            remote: env_string("B2M_REMOTE"),
            credentials: env_credentials(),
            leases,
            lease_wait_set: std::env::var_os("B2M_LEASE_WAIT_SECS").is_some(),
            lock_wait: env_secs("B2M_LOCK_WAIT_SECS"),
            changeset: std::env::var("B2M_CHANGESET").ok().filter(|s| crate::names::is_changeset_name(s)),
            local_lock_token: env_string("B2M_LOCAL_LOCK_TOKEN"),
            orphan_age: env_secs("B2M_ORPHAN_AGE_SECS"),
            pages: env_string("B2M_PAGES").map(|v| v != "0" && v != "false"),
            tuning: env_tuning(),
        }
    }
}

/// A variable of the environment, if set and not empty.
fn env_string(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// A number of seconds from the environment, if set and valid.
fn env_secs(name: &str) -> Option<Duration> {
    std::env::var(name).ok().and_then(|s| s.trim().parse().ok()).map(Duration::from_secs)
}

/// The credentials from the environment, if both are set.
fn env_credentials() -> Option<StaticCredentials> {
    let id = env_string("B2M_ACCESS_KEY_ID")?;
    let secret = env_string("B2M_SECRET_ACCESS_KEY")?;
    Some(StaticCredentials { access_key_id: id, secret_access_key: Secret::new(secret) })
}

/// The transfer tuning from the environment, over the defaults.
fn env_tuning() -> Tuning {
    let number = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok()).filter(|&n| n > 0);
    let count = |n: u64| usize::try_from(n.min(64)).unwrap_or(64);
    let default = Tuning::default();
    Tuning {
        part_size: number("B2M_PART_SIZE_MIB").map_or(default.part_size, |mib| mib.clamp(5, 5 << 10) << 20),
        parts_in_flight: number("B2M_PARTS_IN_FLIGHT").map_or(default.parts_in_flight, count),
        stretch: number("B2M_STRETCH_MIB").map_or(default.stretch, |mib| mib.min(1 << 10) << 20),
        stretches_in_flight: number("B2M_STRETCHES_IN_FLIGHT").map_or(default.stretches_in_flight, count),
    }
}

/// The variables holding credentials, b2m's own and the AWS chain's.
const SECRET_VARIABLES: [&str; 5] =
    ["B2M_SECRET_ACCESS_KEY", "B2M_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN"];

/// The credentials the environment holds (those of 4 characters or more), for diagnostics and
/// errors to hide wherever they turn up. Read before any project is loaded, so that even an error
/// loading it is redacted.
pub fn secrets() -> Vec<String> {
    SECRET_VARIABLES.iter().filter_map(|name| std::env::var(name).ok()).filter(|value| value.len() >= 4).collect()
}

/// Whether this process was started by a changeset's script (`B2M_CHANGESET` is set, whatever
/// its value): asked before the command line is parsed.
pub fn runs_under_changeset() -> bool {
    std::env::var_os("B2M_CHANGESET").is_some()
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

/// `b2m.toml`, parsed, with where it came from for the errors.
struct ProjectFile {
    doc: DocumentMut,
    origin: String,
}

impl ProjectFile {
    /// Reads and parses `b2m.toml` in `root`.
    fn read(root: &Path) -> Result<Self> {
        let path = root.join(PROJECT_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses the text of a `b2m.toml` (`origin` names it in errors); each known table must be a
    /// table, and every table and key must be known.
    fn parse(text: &str, origin: &str) -> Result<Self> {
        let origin = origin.to_string();
        let doc = parse_toml(text, &origin)?;
        for (table, _) in KNOWN {
            if let Some(item) = doc.get(table)
                && !matches!(item, Item::Table(_))
            {
                return Err(Error::config_hint(format!("`{origin}`: `{table}` must be a table"), format!("fix `{origin}`")));
            }
        }
        unknown_keys(&doc, text, &origin)?;
        Ok(ProjectFile { doc, origin })
    }

    fn item(&self, table: &str, key: &str) -> Option<&Item> {
        self.doc.get(table).and_then(|t| t.as_table_like()).and_then(|t| t.get(key))
    }

    /// `table.key`, which must be a string when present.
    fn string(&self, table: &str, key: &str) -> Result<Option<String>> {
        let Some(item) = self.item(table, key) else { return Ok(None) };
        match item.as_str() {
            Some(s) => Ok(Some(s.to_string())),
            None => Err(Error::config_hint(
                format!("`{}`: `{table}.{key}` must be a string", self.origin),
                format!("fix `{}` and run the command again", self.origin),
            )),
        }
    }

    /// `table.key`, a list of strings each among `allowed`, when present.
    fn strings(&self, table: &str, key: &str, allowed: &[&str]) -> Result<Option<Vec<String>>> {
        let Some(item) = self.doc.get(table).and_then(|t| t.get(key)) else { return Ok(None) };
        let wrong = || {
            Error::config_hint(
                format!("`{}`: `{table}.{key}` must be a list of: {}", self.origin, allowed.join(", ")),
                format!("fix `{}` and run the command again", self.origin),
            )
        };
        let list = item.as_array().ok_or_else(wrong)?;
        let values: Vec<String> = list.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<_>>().ok_or_else(wrong)?;
        if values.iter().any(|v| !allowed.contains(&v.as_str())) {
            return Err(wrong());
        }
        Ok(Some(values))
    }

    /// `table.key`, a string that says something (not blank) when present.
    fn text(&self, table: &str, key: &str) -> Result<Option<String>> {
        Ok(self.string(table, key)?.filter(|s| !s.trim().is_empty()))
    }

    /// `table.key`, a number of seconds of at least `least`, or `default`.
    fn seconds(&self, table: &str, key: &str, default: u64, least: i64) -> Result<Duration> {
        match self.doc.get(table).and_then(|t| t.get(key)) {
            None => Ok(Duration::from_secs(default)),
            Some(item) => item.as_integer().filter(|&n| n >= least).map(|n| Duration::from_secs(n.unsigned_abs())).ok_or_else(|| {
                Error::config_hint(
                    format!("`{}`: `{table}.{key}` must be a number of seconds", self.origin),
                    format!("fix `{}`", self.origin),
                )
            }),
        }
    }

    /// `[remote]`, under `B2M_REMOTE` and the credentials and tuning of the environment.
    fn remote(&self, env: &Environment) -> Result<Remote> {
        let url = match &env.remote {
            Some(url) => url.clone(),
            None => self.string("remote", "url")?.ok_or_else(|| {
                Error::config_hint(
                    format!("`{}` has no `remote.url`", self.origin),
                    "add `[remote]` with `url = \"s3://bucket/prefix\"`, or set `B2M_REMOTE`",
                )
            })?,
        };
        let locking = match self.string("remote", "locking")?.as_deref() {
            None | Some("auto") => Locking::Auto,
            Some("conditional") => Locking::Conditional,
            Some("lease") => Locking::Lease,
            Some(other) => {
                return Err(Error::config_hint(
                    format!("`{}`: `remote.locking = \"{other}\"` is not a locking mode", self.origin),
                    "use `auto`, `conditional` or `lease`",
                ));
            }
        };
        Ok(Remote {
            url,
            endpoint: self.string("remote", "endpoint")?.filter(|s| !s.is_empty()),
            region: self.string("remote", "region")?.filter(|s| !s.is_empty()),
            locking,
            credentials: env.credentials.clone(),
            timeout: self.seconds("remote", "timeout", 10, 1)?,
            tuning: env.tuning,
        })
    }

    /// `[paths]`: the databases' folder, the local db.toml and the changeset folder, under `root`.
    fn paths(&self, root: &Path) -> Result<Paths> {
        let rel = |key: &str, default: &str| -> Result<PathBuf> {
            let value = self.string("paths", key)?.unwrap_or_else(|| default.to_string());
            Ok(root.join(value))
        };
        let db_dir = rel("db_dir", "db/all_dbs")?;
        let manifest = match self.string("paths", "manifest")? {
            Some(m) => root.join(m),
            None => db_dir.join("db.toml"),
        };
        Ok(Paths { db_dir, manifest, changesets: rel("changesets", "changeset")? })
    }

    /// `table.key`, true or false.
    fn flag(&self, table: &str, key: &str, default: bool) -> Result<bool> {
        match self.doc.get(table).and_then(|t| t.get(key)) {
            None => Ok(default),
            Some(item) => item.as_bool().ok_or_else(|| {
                Error::config_hint(format!("`{}`: `{table}.{key}` must be true or false", self.origin), format!("fix `{}`", self.origin))
            }),
        }
    }

    /// `[preflight]`, with the lease wait of the environment over `changeset_wait`.
    fn preflight(&self, env: &Environment) -> Result<PreflightSettings> {
        let allow_offline = self.flag("preflight", "allow_offline", false)?;
        let changeset_wait = self.seconds("preflight", "changeset_wait", 600, 0)?;
        Ok(PreflightSettings {
            allow_offline,
            changeset_wait: if env.lease_wait_set { env.leases.wait } else { changeset_wait },
            offline_after: self.seconds("preflight", "offline_after", 15, 1)?,
        })
    }

    /// `[server]`'s commands, when the table is there.
    fn server(&self) -> Result<Option<Server>> {
        if self.doc.get("server").is_none() {
            return Ok(None);
        }
        let timeout = match self.doc.get("server").and_then(|t| t.get("timeout")) {
            None => Duration::from_secs(120),
            Some(item) => item.as_integer().filter(|&n| n > 0).map(|n| Duration::from_secs(n.unsigned_abs())).ok_or_else(|| {
                Error::config_hint(
                    format!("`{}`: `server.timeout` must be a positive number of seconds", self.origin),
                    format!("fix `{}`", self.origin),
                )
            })?,
        };
        Ok(Some(Server {
            stop: self.text("server", "stop")?,
            start: self.text("server", "start")?,
            running: self.text("server", "running")?,
            timeout,
        }))
    }

    /// `[merge]`: what a replayed DELETE sets.
    fn merge(&self) -> Result<SoftDelete> {
        Ok(SoftDelete {
            column: self.string("merge", "soft_delete_column")?.unwrap_or_else(|| "deleted_at".into()),
            value: self.string("merge", "soft_delete_value")?.unwrap_or_else(|| "CURRENT_TIMESTAMP".into()),
        })
    }
}

/// `[paths]`, resolved.
struct Paths {
    db_dir: PathBuf,
    manifest: PathBuf,
    changesets: PathBuf,
}

/// `[preflight]`, resolved.
struct PreflightSettings {
    allow_offline: bool,
    changeset_wait: Duration,
    offline_after: Duration,
}

/// The kinds of event `notify.events` may list.
pub const NOTIFY_EVENTS: &[&str] = &["published", "conflict", "changeset_failed", "merge_failed", "preflight_stopped"];

/// The tables and keys of b2m.toml.
const KNOWN: [(&str, &[&str]); 6] = [
    ("remote", &["url", "endpoint", "region", "locking", "timeout", "pages"]),
    ("paths", &["db_dir", "manifest", "changesets"]),
    ("server", &["stop", "start", "running", "timeout", "name"]),
    ("preflight", &["allow_offline", "changeset_wait", "offline_after"]),
    ("merge", &["soft_delete_column", "soft_delete_value"]),
    ("notify", &["webhook", "command", "events"]),
];

/// A table or key b2m does not know is an error naming it, where it is, and the nearest known
/// name: a misspelt `allow_ofline` must not be ignored.
fn unknown_keys(doc: &toml_edit::DocumentMut, text: &str, origin: &str) -> Result<()> {
    let at = |span: Option<std::ops::Range<usize>>| {
        span.map(|s| crate::util::line_col(text, s.start)).map_or_else(String::new, |(line, col)| format!(" (line {line}, column {col})"))
    };
    // Spans live in the parsed-only document.
    let spanned = toml_edit::ImDocument::parse(text).ok();
    let span_of = |table: &str, key: Option<&str>| -> Option<std::ops::Range<usize>> {
        let doc = spanned.as_ref()?;
        match key {
            None => doc.as_table().get_key_value(table)?.0.span(),
            Some(key) => doc.get(table)?.as_table_like()?.get_key_value(key)?.0.span(),
        }
    };
    for (table, item) in doc.iter() {
        let Some((_, keys)) = KNOWN.iter().find(|(name, _)| *name == table) else {
            let names: Vec<&str> = KNOWN.iter().map(|(name, _)| *name).collect();
            return Err(unknown(origin, table, &at(span_of(table, None)), &names));
        };
        for (key, _) in item.as_table_like().map(|t| t.iter().collect::<Vec<_>>()).unwrap_or_default() {
            if !keys.contains(&key) {
                return Err(unknown(origin, &format!("{table}.{key}"), &at(span_of(table, Some(key))), keys));
            }
        }
    }
    Ok(())
}

/// The error for an unknown `name` (a table, or `table.key`), with the nearest of `known`.
fn unknown(origin: &str, name: &str, at: &str, known: &[&str]) -> Error {
    let last = name.rsplit('.').next().unwrap_or(name);
    let nearest = known.iter().min_by_key(|k| edit_distance(last, k)).copied().unwrap_or_default();
    Error::config_hint(
        format!("`{origin}`: b2m does not know `{name}`{at}; did you mean `{nearest}`?"),
        format!("fix it in `{origin}` (known here: {})", known.join(", ")),
    )
}

/// The Levenshtein distance between two names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

impl Settings {
    /// Loads the project around `start` (the working directory or `-C DIR`): `b2m.toml` under
    /// the environment, over the defaults.
    pub fn load(start: &Path) -> Result<Self> {
        let root = find_root(start)?;
        Self::from_file(root.clone(), ProjectFile::read(&root)?)
    }

    /// The settings of the project in `root` were its `b2m.toml` `text` (not read from disk):
    /// `b2m import` checks the file it is about to write with it.
    pub fn from_text(root: &Path, text: &str) -> Result<Self> {
        Self::from_file(root.to_path_buf(), ProjectFile::parse(text, &root.join(PROJECT_FILE).display().to_string())?)
    }

    /// The settings from a parsed `b2m.toml` in `root`, under the environment, over the defaults.
    fn from_file(root: PathBuf, file: ProjectFile) -> Result<Self> {
        let env = Environment::read();
        let remote = file.remote(&env)?;
        let Paths { db_dir, manifest, changesets } = file.paths(&root)?;
        let PreflightSettings { allow_offline, changeset_wait, offline_after } = file.preflight(&env)?;
        Ok(Settings {
            server: file.server()?,
            soft_delete: file.merge()?,
            server_name: file.text("server", "name")?,
            notify_webhook: file.text("notify", "webhook")?,
            notify_command: file.text("notify", "command")?,
            notify_events: file.strings("notify", "events", NOTIFY_EVENTS)?,
            allow_offline,
            changeset_wait,
            offline_after,
            local_lock_wait: env.lock_wait.unwrap_or(env.leases.wait),
            changesets,
            state_dir: root.join(STATE_DIR),
            root,
            remote,
            db_dir,
            manifest,
            leases: env.leases,
            changeset: env.changeset,
            local_lock_token: env.local_lock_token,
            orphan_age: env.orphan_age.unwrap_or(Duration::from_secs(24 * 3600)),
            pages: match env.pages {
                Some(pages) => pages,
                None => file.flag("remote", "pages", true)?,
            },
        })
    }

    /// These settings as preflight runs with them: waiting for a changeset another machine runs
    /// is bounded by [`Settings::changeset_wait`].
    pub fn for_preflight(mut self) -> Self {
        self.leases.wait = self.changeset_wait;
        self
    }
}
