//! `b2m check`, for CI: the local db.toml, the changeset scripts, the bucket's db.toml, the
//! versions it pins and the changeset ledger agree. Like `sqlx migrate info`/`prepare --check`:
//! every finding is listed with what to do, and the check fails (exit 1) when any is an error.
//!
//! `--offline` reads only local files (db.toml, `changeset/scripts/`). Online, the requests stay
//! few whatever the history: GET db.toml; per database the bucket pins, one LIST of `dbs/<stem>/`
//! (which answers "is the object there, is its metadata there, what else is there") and one GET of
//! the pinned version's metadata; one LIST of `changesets/` and one GET per ledger entry of a
//! script that is here; one LIST (and a GET per lease) of the claim of a changeset left `running`.
//! The parent chain is walked (a GET per version) only where a question needs it: a local pin
//! that differs from the bucket's, or two objects with one version number. `--deep` adds one
//! download per pinned object.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Context;
use super::fetch;
use super::remote::{self, RemoteManifest, VersionId, VersionMeta};
use crate::changeset::{self, Kind, ledger, sql};
use crate::coord::lease::LeaseInfo;
use crate::error::{Error, Result};
use crate::manifest::{Entry, Manifest};
use crate::store::Store;

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
    /// What it is about: a db.toml key, a changeset name, a script's file name, or `db.toml`.
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

/// What to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope {
    /// Local files only; nothing is read from the bucket.
    pub offline: bool,
    /// Also download every pinned object and verify its sha256 and `PRAGMA quick_check`.
    pub deep: bool,
}

/// The findings as they are collected.
#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn error(&mut self, key: &str, message: String) {
        self.0.push(Finding { level: Level::Error, key: key.to_string(), message });
    }

    fn warning(&mut self, key: &str, message: String) {
        self.0.push(Finding { level: Level::Warning, key: key.to_string(), message });
    }
}

/// Runs the check.
pub fn check(ctx: &Context, scope: Scope) -> Result<Checked> {
    let mut found = Findings::default();
    let local = local_manifest(ctx, scope.offline, &mut found)?;
    let scripts = check_scripts(&ctx.settings.root, &ctx.settings.changesets, &mut found)?;
    let mut databases = local.entries().len();
    if !scope.offline {
        databases = check_databases(ctx, &local, scope.deep, &mut found)?;
        check_ledger(ctx.store.as_ref(), &scripts, &mut found)?;
    }
    let ok = found.0.iter().all(|f| f.level != Level::Error);
    Ok(Checked { ok, databases, findings: found.0 })
}

// ---------------------------------------------------------------------------------------------
// The local db.toml

/// The local db.toml, with its unmanaged entries (errors) and, offline, its unpinned ones
/// (warnings; online the comparison with the bucket says more). One that does not parse (or names
/// a database twice) is a configuration error, exit 2, naming the line, as for every command.
fn local_manifest(ctx: &Context, offline: bool, found: &mut Findings) -> Result<Manifest> {
    let local = ctx.local_manifest()?;
    for u in local.unmanaged() {
        found.error(&u.key, format!("`{} = {}` is not a database b2m manages: {}", u.key, u.value, u.why));
    }
    for e in local.entries().iter().filter(|e| offline && e.sha256.is_none()) {
        found.warning(
            &e.key,
            format!(
                "`{}` is not pinned in `[b2m.sha256]`: it was never published from here (`b2m upload {}` publishes it)",
                e.file, e.stem
            ),
        );
    }
    Ok(local)
}

// ---------------------------------------------------------------------------------------------
// Changeset scripts

/// A well-named script in `changeset/scripts/`.
struct LocalScript {
    name: String,
    path: PathBuf,
    /// Its path for messages: relative to the project root, as it appears in git.
    shown: String,
}

/// Checks the files in `changeset/scripts/`: names, one script per timestamp, the target line of
/// SQL scripts. Returns the well-named scripts, in name order.
fn check_scripts(root: &Path, changesets: &Path, found: &mut Findings) -> Result<Vec<LocalScript>> {
    let mut scripts = Vec::new();
    for changeset::ScriptFile { file, path, script } in changeset::script_files(changesets)? {
        let shown = path.strip_prefix(root).unwrap_or(&path).display().to_string();
        let Some(changeset::Script { name, kind, .. }) = script else {
            found.warning(
                &file,
                format!(
                    "`{shown}` is not named `<19-digit ns timestamp>_<phrase>.{{py,sh,sql}}`, so it never runs: rename it, or make a new one with `b2m create-changeset PHRASE`"
                ),
            );
            continue;
        };
        if kind == Kind::Sql {
            check_sql_targets(&name, &path, &shown, found)?;
        }
        scripts.push(LocalScript { name, path, shown });
    }
    // Sorted by file name, so scripts sharing a timestamp are neighbours.
    let timestamp = |s: &LocalScript| s.name[..19].to_string();
    let mut i = 0;
    while i < scripts.len() {
        let same = scripts[i..].iter().take_while(|s| timestamp(s) == timestamp(&scripts[i])).count();
        if same > 1 {
            let group = &scripts[i..i + same];
            let files: Vec<String> = group.iter().map(|s| format!("`{}`", s.shown)).collect();
            found.error(
                &group[0].name,
                format!(
                    "{} share the timestamp {}, so their order is not defined: give all but one a new timestamp (`b2m create-changeset PHRASE` makes a fresh name), unless one already ran",
                    files.join(" and "),
                    timestamp(&group[0])
                ),
            );
        }
        i += same;
    }
    Ok(scripts)
}

/// A SQL script must say which database it runs on.
fn check_sql_targets(name: &str, path: &Path, shown: &str, found: &mut Findings) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    let Ok(text) = String::from_utf8(bytes) else {
        found.error(name, format!("`{shown}` is not UTF-8 text: save it as UTF-8"));
        return Ok(());
    };
    if sql::targets(&text).is_empty() {
        found.error(
            name,
            format!("`{shown}` names no database: add a line `-- b2m: db = <stem>` (e.g. `-- b2m: db = ipm-db`) before its statements"),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Databases: the two db.toml files, the pinned versions, orphans

/// Compares the local db.toml with the bucket's and checks every version the bucket pins.
/// Returns the number of databases named in either.
fn check_databases(ctx: &Context, local: &Manifest, deep: bool, found: &mut Findings) -> Result<usize> {
    let store = ctx.store.as_ref();
    let remote = match remote::read_manifest(store) {
        Ok(remote) => remote,
        // The bucket's db.toml is not valid TOML, or not text: nothing can be compared with it.
        Err(Error::Config { message, .. } | Error::Refused { message, .. }) => {
            found.error(
                "db.toml",
                format!("the bucket's db.toml is unusable ({message}): restore it from a backup, or from a good local copy of a server's db.toml"),
            );
            return Ok(local.entries().len());
        }
        Err(e) => return Err(e),
    };
    let local_entries = local.entries();
    let remote_entries = remote.as_ref().map(|m| m.manifest.entries()).unwrap_or_default();
    let mut stems: Vec<&str> = local_entries.iter().chain(&remote_entries).map(|e| e.stem.as_str()).collect();
    stems.sort_unstable();
    stems.dedup();
    for stem in &stems {
        let ours = local_entries.iter().find(|e| e.stem == *stem);
        let theirs = remote_entries.iter().find(|e| e.stem == *stem);
        match (ours, theirs) {
            (Some(ours), None) => not_in_bucket(ctx, remote.as_ref(), ours, found),
            (None, Some(theirs)) => found.error(
                &theirs.key,
                format!(
                    "the bucket publishes `{}` v{} (`{} = \"{}\"`), which this db.toml does not name: run `b2m fetch-db-toml`",
                    theirs.stem, theirs.version, theirs.key, theirs.file
                ),
            ),
            (ours, Some(theirs)) => {
                let Some(head) = theirs.pinned() else {
                    found.error(
                        &theirs.key,
                        format!(
                            "the bucket's db.toml names `{}` without a pin in `[b2m.sha256]`, so nothing proves which object it is: publish it again with `b2m upload {}`",
                            theirs.file, theirs.stem
                        ),
                    );
                    continue;
                };
                // Findings go under this db.toml's key when it names the database.
                let key = ours.map_or(&theirs.key, |o| &o.key);
                let mut history = History::list(store, head)?;
                check_pinned(ctx, &mut history, key, deep, found)?;
                if let Some(ours) = ours {
                    compare_pins(&mut history, ours, theirs, found)?;
                }
                report_orphans(&mut history, key, found)?;
            }
            (None, None) => {}
        }
    }
    Ok(stems.len())
}

/// A database this db.toml names that the bucket's does not.
fn not_in_bucket(ctx: &Context, remote: Option<&RemoteManifest>, ours: &Entry, found: &mut Findings) {
    let bucket = if remote.is_none() {
        format!("the bucket `{}` has no db.toml yet", ctx.store.location())
    } else {
        "the bucket's db.toml does not name it".to_string()
    };
    let pinned = if ours.sha256.is_some() { "is pinned here, but " } else { "is named here, but " };
    found.error(
        &ours.key,
        format!("`{}` {pinned}{bucket}: publish it with `b2m upload {}`, or remove it from db.toml", ours.file, ours.stem),
    );
}

/// The local entry against the bucket's: equal, behind (on the bucket's parent chain: a
/// warning) or diverged (an error).
fn compare_pins(history: &mut History<'_>, ours: &Entry, theirs: &Entry, found: &mut Findings) -> Result<()> {
    if ours.key != theirs.key {
        found.warning(
            &ours.key,
            format!(
                "`{}` is `{}` here and `{}` in the bucket's db.toml: `b2m fetch-db-toml` takes the bucket's key",
                ours.stem, ours.key, theirs.key
            ),
        );
    }
    let head = history.head.clone();
    let Some(pin) = ours.pinned() else {
        compare_unpinned(ours, &head, found);
        return Ok(());
    };
    if pin == head {
        return Ok(());
    }
    if history.committed(&pin)? {
        found.warning(
            &ours.key,
            format!(
                "pins v{} {}…, behind the bucket's v{} {}…: run `b2m fetch-db-toml` (and `b2m download {}` where the file is used)",
                pin.version,
                pin.short(),
                head.version,
                head.short(),
                ours.stem
            ),
        );
    } else {
        found.error(
            &ours.key,
            format!(
                "pins v{} {}…, which is not in the bucket's history (the bucket has v{} {}…): this db.toml diverged; run `b2m status` to see which files hold what, and `b2m fetch-db-toml` to take the bucket's",
                pin.version,
                pin.short(),
                head.version,
                head.short()
            ),
        );
    }
    Ok(())
}

/// An entry that pins nothing (an older db.toml), judged by its version number alone against the
/// bucket's `head`.
fn compare_unpinned(ours: &Entry, head: &VersionId, found: &mut Findings) {
    if ours.version <= head.version {
        let how =
            if ours.version == head.version { "names the same version as".to_string() } else { format!("names v{}, behind", ours.version) };
        found.warning(&ours.key, format!("`{}` {how} the bucket's v{} but pins nothing: run `b2m fetch-db-toml`", ours.file, head.version));
    } else {
        found.error(
            &ours.key,
            format!(
                "`{}` names v{}, beyond the bucket's v{}: this db.toml diverged from the bucket; run `b2m status` to see which files hold what, and `b2m fetch-db-toml` to take the bucket's",
                ours.file, ours.version, head.version
            ),
        );
    }
}

/// The version the bucket pins: its object and metadata are there, the metadata describes it,
/// the sizes agree; with `deep`, its bytes hash to the pin and pass `PRAGMA quick_check`.
fn check_pinned(ctx: &Context, history: &mut History<'_>, key: &str, deep: bool, found: &mut Findings) -> Result<()> {
    let head = history.head.clone();
    let listed = history.listed.get(&head).cloned().unwrap_or_default();
    let restore = format!(
        "restore it from a backup of the bucket (servers where `b2m status` says `{}` is up_to_date still hold its content)",
        head.stem
    );
    let missing = |what: &str, key: String| format!("the bucket pins `{}` but its {what} `{key}` is missing: {restore}", head.file());
    let meta = if listed.meta { history.meta(&head)? } else { MetaRead::Missing };
    if listed.object.is_none() && !listed.recipe {
        // Neither its `.db` nor its recipe: the metadata says which it was stored as.
        let recipe = match &meta {
            MetaRead::Read(m) => m.recipe.clone(),
            _ => None,
        };
        let (what, stored) = recipe.map_or(("object", head.object_key()), |r| ("recipe", r));
        found.error(key, missing(what, stored));
    }
    match meta {
        MetaRead::Read(meta) => check_meta(&head, &listed, &meta, &restore, &mut |m| found.error(key, m)),
        MetaRead::Unreadable(why) => found.error(key, format!("metadata `{}` is unreadable ({why}): {restore}", head.meta_key())),
        // Not listed, or listed a moment ago and gone now.
        MetaRead::Missing => found.error(key, missing("metadata", head.meta_key())),
    }
    if deep && (listed.object.is_some() || listed.recipe) {
        match fetch::download_verified(ctx, &head, &ctx.tmp_dir(), fetch::Source::BucketAlone) {
            Ok(_verified) => {}
            Err(e @ (Error::Refused { .. } | Error::BadDatabase { .. })) => {
                found.error(key, format!("`{}` fails verification: {e}; {restore}", head.object_key()));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The pinned version's metadata against the pin, and a whole object's listed size against it.
fn check_meta(head: &VersionId, listed: &Listed, meta: &VersionMeta, restore: &str, error: &mut dyn FnMut(String)) {
    if meta.sha256 != head.sha256 || meta.version != head.version {
        error(format!(
            "metadata `{}` describes v{} {}…, not the pinned v{} {}…: it was edited or damaged; {restore}",
            head.meta_key(),
            meta.version,
            &meta.sha256[..12.min(meta.sha256.len())],
            head.version,
            head.short()
        ));
    } else if let Some(size) = listed.object.filter(|size| *size != meta.size && !listed.recipe) {
        error(format!(
            "object `{}` is {size} bytes but its metadata says {}: it was damaged; {restore} (`b2m check --deep` verifies the bytes)",
            head.object_key(),
            meta.size
        ));
    }
}

/// Objects under `dbs/<stem>/` that are neither the pinned version nor on its parent chain.
fn report_orphans(history: &mut History<'_>, key: &str, found: &mut Findings) -> Result<()> {
    for (id, listed) in history.orphans()? {
        let object = match (listed.object, listed.recipe) {
            (Some(_), _) => id.object_key(),
            (None, true) => id.recipe_key(),
            (None, false) => id.meta_key(),
        };
        found.warning(
            key,
            format!(
                "`{object}` (v{} {}…) was never published (an upload that did not commit, or one under way): `b2m gc` removes it once it is a day old",
                id.version,
                id.short()
            ),
        );
    }
    if let Some(broken) = history.broken_below_head() {
        found.warning(
            key,
            format!(
                "the history of `{}` cannot be read past v{}: metadata `{}` is missing or unreadable, so `b2m gc` keeps the older objects; restore it from a backup",
                broken.stem,
                broken.version,
                broken.meta_key()
            ),
        );
    }
    Ok(())
}

/// What one LIST of `dbs/<stem>/` tells about a version.
#[derive(Debug, Clone, Default)]
struct Listed {
    /// The object's size, when the object is there.
    object: Option<u64>,
    /// Whether its metadata is there.
    meta: bool,
    /// Whether it is stored as pages (its recipe is there; its `.db` object, if any, is a
    /// compressed base).
    recipe: bool,
}

/// A metadata object, read.
enum MetaRead {
    Read(Box<VersionMeta>),
    Missing,
    Unreadable(String),
}

/// Why a walk down the parent chain stopped before the root.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    /// The last version reached has no parent: the whole chain is known.
    Root,
    /// The metadata of this version is missing or unreadable (or names an impossible parent).
    Broken(VersionId),
}

/// One database's versions in the bucket: one LIST, and the parent chain from the pinned version,
/// walked (one GET per version) only as far as a question needs.
struct History<'a> {
    store: &'a dyn Store,
    head: VersionId,
    listed: HashMap<VersionId, Listed>,
    /// Committed versions known so far, newest first: the head, then each parent read.
    chain: Vec<VersionId>,
    stop: Option<Stop>,
    metas: HashMap<VersionId, VersionMeta>,
}

impl<'a> History<'a> {
    /// Lists `dbs/<stem>/` (one request).
    fn list(store: &'a dyn Store, head: VersionId) -> Result<Self> {
        let mut listed: HashMap<VersionId, Listed> = HashMap::new();
        for object in store.list(&format!("{}{}/", crate::layout::VERSIONS, head.stem))? {
            let Some(id) = VersionId::from_key(&object.key) else { continue };
            let slot = listed.entry(id).or_default();
            if object.key.ends_with(".db") {
                slot.object = Some(object.size);
            } else if object.key.ends_with(".recipe") {
                slot.recipe = true;
            } else {
                slot.meta = true;
            }
        }
        Ok(History { store, chain: vec![head.clone()], head, listed, stop: None, metas: HashMap::new() })
    }

    /// A version's metadata (one GET, once).
    fn meta(&mut self, id: &VersionId) -> Result<MetaRead> {
        if let Some(meta) = self.metas.get(id) {
            return Ok(MetaRead::Read(Box::new(meta.clone())));
        }
        let Some(object) = self.store.get(&id.meta_key())? else { return Ok(MetaRead::Missing) };
        match serde_json::from_slice::<VersionMeta>(&object.body) {
            Ok(meta) => {
                self.metas.insert(id.clone(), meta.clone());
                Ok(MetaRead::Read(Box::new(meta)))
            }
            Err(e) => Ok(MetaRead::Unreadable(e.to_string())),
        }
    }

    /// Walks one step down the chain; false once it cannot go further.
    fn step(&mut self) -> Result<bool> {
        if self.stop.is_some() {
            return Ok(false);
        }
        let Some(last) = self.chain.last().cloned() else { return Ok(false) };
        // A metadata object the listing lacks is not asked for.
        let read = if self.listed.get(&last).is_some_and(|l| l.meta) { self.meta(&last)? } else { MetaRead::Missing };
        let meta = match read {
            MetaRead::Read(meta) if meta.sha256 == last.sha256 && meta.version == last.version => *meta,
            _ => {
                self.stop = Some(Stop::Broken(last));
                return Ok(false);
            }
        };
        match meta.parent {
            None => {
                self.stop = Some(Stop::Root);
                Ok(false)
            }
            // A parent always has a lower number; anything else is damage, not history.
            Some(p) if p.version >= last.version => {
                self.stop = Some(Stop::Broken(last));
                Ok(false)
            }
            Some(p) => {
                self.chain.push(VersionId { stem: last.stem.clone(), version: p.version, sha256: p.sha256 });
                Ok(true)
            }
        }
    }

    /// Walks until the chain reaches `version` or below, or ends.
    fn walk_to(&mut self, version: u64) -> Result<()> {
        while self.chain.last().is_some_and(|last| last.version > version) && self.step()? {}
        Ok(())
    }

    /// Whether `id` is the pinned version or on its parent chain (walking as far as needed).
    fn committed(&mut self, id: &VersionId) -> Result<bool> {
        self.walk_to(id.version)?;
        Ok(self.chain.contains(id))
    }

    /// The listed versions that are certainly not committed. A version number below the pinned
    /// one that only one listed version holds is taken to be the chain's without reading it (the
    /// chain numbers each version its parent's + 1, so its member at that number is the one
    /// listed, unless the history was cut or started again there: then an orphan goes unreported,
    /// never the reverse). Numbers held by two versions are settled by walking the chain.
    fn orphans(&mut self) -> Result<Vec<(VersionId, Listed)>> {
        let mut per_version: BTreeMap<u64, usize> = BTreeMap::new();
        for id in self.listed.keys() {
            *per_version.entry(id.version).or_default() += 1;
        }
        let head_version = self.head.version;
        let contested = per_version.iter().filter(|(v, n)| **v < head_version && **n > 1).map(|(v, _)| *v).min();
        if let Some(lowest) = contested {
            self.walk_to(lowest)?;
        }
        // Between the head and `reached` the chain is known exactly; below it only a walk that
        // reached the root is.
        let reached = self.chain.last().map_or(head_version, |l| l.version);
        let complete = self.stop == Some(Stop::Root);
        let mut out: Vec<(VersionId, Listed)> = self
            .listed
            .iter()
            .filter(|(id, _)| !self.chain.contains(id) && (id.version >= reached || complete))
            .map(|(id, listed)| (id.clone(), listed.clone()))
            .collect();
        out.sort_by(|(a, _), (b, _)| (a.version, &a.sha256).cmp(&(b.version, &b.sha256)));
        Ok(out)
    }

    /// Where the chain broke, when the walk stopped below the head at a version whose object is
    /// still here (a committed version lost its metadata); a history cut by `gc --keep` is not.
    fn broken_below_head(&self) -> Option<VersionId> {
        match &self.stop {
            Some(Stop::Broken(id)) if *id != self.head && self.listed.get(id).is_some_and(|l| l.object.is_some()) => Some(id.clone()),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The changeset ledger

/// The ledger against the scripts here: a done changeset whose script changed, one that failed or
/// was interrupted, one still running, and new scripts that sort before one that already ran.
fn check_ledger(store: &dyn Store, scripts: &[LocalScript], found: &mut Findings) -> Result<()> {
    let mut ran: Vec<String> = store
        .list(crate::layout::LEDGER)?
        .into_iter()
        .filter_map(|o| crate::layout::ledger_name_of(&o.key).map(str::to_string))
        .filter(|name| crate::names::is_changeset_name(name))
        .collect();
    ran.sort();
    let now = chrono::Utc::now();
    for script in scripts.iter().filter(|s| ran.binary_search(&s.name).is_ok()) {
        let name = &script.name;
        let entry = match ledger::read(store, name) {
            Ok(Some(entry)) => entry,
            Ok(None) => continue,
            Err(Error::Refused { message, .. }) => {
                found.error(name, format!("{message}: restore it from a backup of the bucket, or ask whoever wrote it"));
                continue;
            }
            Err(e) => return Err(e),
        };
        check_entry(store, script, &entry, now, found)?;
    }
    if let Some(latest) = ran.last() {
        for script in scripts.iter().filter(|s| s.name < *latest && ran.binary_search(&s.name).is_err()) {
            found.warning(
                &script.name,
                format!(
                    "has not run and sorts before `{latest}`, which already ran: it will run after it, out of order; if it must not, give it a new timestamp (`b2m create-changeset PHRASE`)"
                ),
            );
        }
    }
    Ok(())
}

/// One changeset's ledger `entry` against its script here: done but edited since, failed, or
/// running (still, or interrupted: its claim lapsed by `now`).
fn check_entry(
    store: &dyn Store,
    script: &LocalScript,
    entry: &ledger::Entry,
    now: chrono::DateTime<chrono::Utc>,
    found: &mut Findings,
) -> Result<()> {
    let name = &script.name;
    match entry.state {
        ledger::State::Done => {
            if changeset::script_sha256(&script.path)? != entry.script_sha256 {
                found.error(
                    name,
                    format!(
                        "`{}` changed after it ran ({}); a changeset that ran never runs again: restore the script as it ran (`git log -p` on it), and put the change in a new one (`b2m create-changeset PHRASE`)",
                        script.shown,
                        entry.describe()
                    ),
                );
            }
        }
        ledger::State::Failed => {
            let why = entry.error.as_deref().unwrap_or("see its log");
            found.error(
                name,
                format!(
                    "failed on {} ({}) at {}: {why}; fix it, then run `b2m execute-changeset {name} --retry`",
                    entry.host,
                    entry.owner,
                    entry.finished_at.as_deref().unwrap_or(&entry.started_at)
                ),
            );
        }
        ledger::State::Running => match live_claim(store, name, now)? {
            Some(holder) => found.warning(name, format!("is running now on {} ({})", entry.host, holder.describe())),
            None => found.error(
                name,
                format!(
                    "was interrupted: it started on {} ({}) at {} and its claim has lapsed; check what it changed (`b2m status`), then run `b2m execute-changeset {name} --retry`",
                    entry.host, entry.owner, entry.started_at
                ),
            ),
        },
    }
    Ok(())
}

/// The live lease of a changeset's claim, if any (one LIST, and one GET per lease object).
fn live_claim(store: &dyn Store, name: &str, now: chrono::DateTime<chrono::Utc>) -> Result<Option<LeaseInfo>> {
    let folder = crate::layout::lease_folder(&crate::layout::changeset_lease(name));
    for object in store.list(&folder)? {
        let Some(found) = store.get(&object.key)? else { continue };
        if let Ok(info) = serde_json::from_slice::<LeaseInfo>(&found.body)
            && !info.is_stale(now)
        {
            return Ok(Some(info));
        }
    }
    Ok(None)
}
