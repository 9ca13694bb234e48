//! `b2m import` (docs/import.md): a project and bucket of the original b2m (HexmosTech/FreeDevTools,
//! `b2-manager/`) moved into b2m's layout. In order:
//!
//! 1. refuse, changing nothing, while the original b2m holds any lock (`lock/<file>.<user>.<host>.lock`);
//! 2. read every `<file>.db` at the original's root as the version its name carries, refusing,
//!    still changing nothing, names it cannot take or two names for one version;
//! 3. per database, under its lease: publish each version not yet in b2m's bucket through the
//!    same path as an upload (snapshot and integrity check, content-addressed object, metadata
//!    that carries the original's events from `version/<file>.metadata.json`), chained in version
//!    order, then one commit of the newest in b2m's db.toml; a version already there (same
//!    content) is reported `already_imported`, one that is not SQLite fails alone;
//! 4. bring the local db.toml and files along: a local file whose content is an imported version
//!    takes its b2m name and pin (then `b2m status` says `up_to_date`, or `outdated_db` for an
//!    older one); any other local file is left as it was.
//!
//! No original object is ever written, renamed or deleted (the original's bucket is only read,
//! see [`Original`]), so the team can go back; a second run publishes nothing again.

pub mod config;
pub mod names;
mod original;

use std::time::Instant;

use serde::Serialize;
use tempfile::TempPath;

pub use original::Original;

use self::names::OriginalDb;
use super::Context;
use super::publish::{self, About, Guarded, ToCommit};
use super::remote::{self, Imported, OriginalEvent, ParentRef, RemoteManifest, VersionId, VersionMeta};
use super::status;
use super::swap::Swaps;
use crate::coord::{HeldLease, Leases, Protocol};
use crate::error::{Error, Refusal, Result};
use crate::layout::original as layout;
use crate::manifest::Manifest;
use crate::sqlite::hash::{content_hash_file, sha256_file};
use crate::sqlite::state::Pending;
use crate::store::ObjectInfo;

/// What the original's root holds, read before anything changes.
pub struct Survey {
    /// Each database file, read as a b2m database, with what the listing says of it: by stem,
    /// then version.
    pub dbs: Vec<(OriginalDb, ObjectInfo)>,
    /// The original's `db.toml`, when it keeps one there and b2m can read it: its keys name the
    /// databases in b2m's db.toml when the project's own db.toml does not.
    manifest: Option<Manifest>,
}

/// What became of one original database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Published now.
    Imported,
    /// b2m's bucket has this version with this content already: nothing was published.
    AlreadyImported,
    /// Not imported: b2m's bucket has moved past this version number without it.
    Skipped,
    /// Not imported: see `error`.
    Failed,
}

/// One original database file, and what import did with it (`--json`'s `dbs`).
#[derive(Debug, Clone, Serialize)]
pub struct DbRow {
    /// The stem (`ipm-db`).
    pub name: String,
    /// The version its name carries.
    pub version: u64,
    /// The original's file (`ipm-db_v2.db`).
    pub from: String,
    /// Its b2m name (`ipm-db-v2.db`).
    pub file: String,
    /// What happened.
    pub outcome: Outcome,
    /// The sha256 of b2m's object for this version, once there is one.
    pub sha256: Option<String>,
    /// The version it follows in b2m's history, for one imported now.
    pub parent: Option<u64>,
    /// How many of the original's events became its history.
    pub events: usize,
    /// What a person should know (no metadata, a name read as another).
    pub notes: Vec<String>,
    /// Why it was not imported.
    pub error: Option<String>,
}

impl DbRow {
    fn new(db: &OriginalDb, outcome: Outcome) -> Self {
        DbRow {
            name: db.stem.clone(),
            version: db.version,
            from: db.file.clone(),
            file: db.b2m_file(),
            outcome,
            sha256: None,
            parent: None,
            events: 0,
            notes: db.note().into_iter().collect(),
            error: None,
        }
    }

    fn failed(db: &OriginalDb, error: String) -> Self {
        DbRow { error: Some(error), ..DbRow::new(db, Outcome::Failed) }
    }
}

/// What became of the local file of a database (`--json`'s `local`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalOutcome {
    /// The local file is the bucket's current version: renamed to its b2m name, pinned.
    UpToDate,
    /// The local file is an older imported version: renamed and pinned to it (`b2m download`).
    Behind,
    /// No local file: db.toml names the current version (`b2m download`).
    MissingLocal,
    /// The local file is none of the imported versions: left exactly as it was.
    LeftAsItWas,
    /// The local step failed (the bucket part is done): see `detail`.
    Failed,
}

/// A database the local db.toml names, after the import (`--json`'s `local`).
#[derive(Debug, Clone, Serialize)]
pub struct LocalRow {
    /// The stem.
    pub name: String,
    /// Its db.toml key.
    pub key: String,
    /// The file db.toml named before the import.
    pub file: String,
    /// What happened to it.
    pub outcome: LocalOutcome,
    /// In words.
    pub detail: String,
}

/// What the import did.
#[derive(Debug, Default)]
pub struct Done {
    /// Every original database file.
    pub dbs: Vec<DbRow>,
    /// Every database the local db.toml names that was imported.
    pub local: Vec<LocalRow>,
    /// Things a person should know about the run as a whole.
    pub warnings: Vec<String>,
}

/// Refuses (`lease_held`), changing nothing, while the original b2m holds any lock: someone may
/// be uploading with it, and what they upload would not be imported.
pub fn refuse_if_locked(original: &Original) -> Result<()> {
    let locks: Vec<layout::Lock> = original.list(layout::LOCKS)?.iter().filter_map(|o| layout::lock_of(&o.key)).collect();
    let Some(first) = locks.first() else { return Ok(()) };
    let more = match locks.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    let whose = if first.user.is_empty() { "someone".to_string() } else { format!("`{}` on `{}`", first.user, first.host) };
    Err(Error::refused_as(
        Refusal::LeaseHeld,
        format!(
            "the original b2m's lock on `{}` is held by {whose} (`{}`){more}; nothing was imported",
            first.file,
            original.location_of(&first.key)
        ),
        format!("let {whose} finish with the original b2m (or unlock it there if the upload is long dead), then run `b2m import` again"),
    ))
}

/// Lists the original's root and reads its names; a name b2m cannot take as it is, or two names
/// for one version, refuse the whole import (nothing has changed yet).
pub fn survey(original: &Original) -> Result<Survey> {
    let listed = original.list("")?;
    let files: Vec<&ObjectInfo> = listed.iter().filter(|o| layout::db_file(&o.key).is_some()).collect();
    let planned = names::plan(&files.iter().map(|o| o.key.as_str()).collect::<Vec<_>>())?;
    let dbs = planned
        .into_iter()
        .filter_map(|db| {
            let info = files.iter().find(|o| o.key == db.file)?;
            Some((db, (*info).clone()))
        })
        .collect();
    let manifest = original
        .get(layout::MANIFEST)?
        .and_then(|body| String::from_utf8(body).ok())
        .and_then(|text| Manifest::parse(&text, &original.location_of(layout::MANIFEST)).ok());
    Ok(Survey { dbs, manifest })
}

/// Imports every database of `survey`, one at a time (each under its lease, one commit), then
/// brings the local files along. A version that cannot be imported blocks only itself.
pub fn import(ctx: &Context, original: &Original, survey: &Survey) -> Result<Done> {
    let protocol = ctx.protocol()?;
    let leases = ctx.leases();
    let swaps = Swaps::new(ctx);
    let mut done = Done::default();
    for dbs in survey.dbs.chunk_by(|(a, _), (b, _)| a.stem == b.stem) {
        let stem = dbs[0].0.stem.as_str();
        let importing = StemImport { ctx, original, survey, leases: &leases, protocol, stem };
        let (rows, versions) = importing.run(dbs)?;
        done.dbs.extend(rows);
        if !versions.is_empty() {
            done.local.extend(settle_local(ctx, stem, &versions, &swaps));
        }
    }
    let restarted = swaps.restart("the databases were imported");
    if let Some(lock) = original.list(layout::LOCKS)?.iter().find_map(|o| layout::lock_of(&o.key)) {
        done.warnings.push(format!(
            "the original b2m took a lock on `{}` while the import ran: run `b2m import` again once it is released, to import what it uploads",
            lock.file
        ));
    }
    restarted?;
    Ok(done)
}

/// What one version of an original database is to b2m's bucket.
enum Judged {
    /// The bucket has it, with this content.
    Already(Box<VersionMeta>),
    /// Not to import: an outcome and why.
    Not(Outcome, String),
    /// New: downloaded to a temporary file, with its bytes' sha256 and size.
    New(TempPath, (String, u64)),
}

/// The import of one database's versions.
struct StemImport<'a> {
    ctx: &'a Context,
    original: &'a Original,
    survey: &'a Survey,
    leases: &'a Leases,
    protocol: Protocol,
    stem: &'a str,
}

impl StemImport<'_> {
    /// Under the database's lease: judges each original version (oldest first) against b2m's
    /// history, sends the new ones chained, and commits the newest. Returns the rows and b2m's
    /// committed versions of the database, newest first (none when nothing is committed).
    fn run(&self, dbs: &[(OriginalDb, ObjectInfo)]) -> Result<(Vec<DbRow>, Vec<VersionMeta>)> {
        let lease = self.leases.acquire(self.stem, "import")?;
        let remote = remote::read_manifest(self.ctx.store.as_ref())?;
        let key = match self.choose_key(remote.as_ref()) {
            Ok(key) => key,
            Err(e @ Error::Refused { .. }) => {
                return Ok((dbs.iter().map(|(db, _)| DbRow::failed(db, e.to_string())).collect(), Vec::new()));
            }
            Err(e) => return Err(e),
        };
        let current = remote.as_ref().and_then(|m| m.current(self.stem));
        let chain = match &current {
            Some(head) => remote::chain(self.ctx.store.as_ref(), head)?.versions,
            None => Vec::new(),
        };
        let started = Instant::now();
        let (mut rows, mut sent) = (Vec::new(), Vec::new());
        for (db, info) in dbs {
            let parent = sent.last().map(|(id, _): &(VersionId, VersionMeta)| parent_of(id)).or_else(|| current.as_ref().map(parent_of));
            rows.push(self.one(db, info, &chain, current.as_ref(), parent, &mut sent)?);
        }
        if sent.is_empty() {
            return Ok((rows, chain));
        }
        match self.commit(lease, &key, &sent, current.as_ref(), started) {
            Ok(()) => Ok((rows, sent.into_iter().rev().map(|(_, meta)| meta).chain(chain).collect())),
            Err(e @ Error::Refused { .. }) => {
                for row in rows.iter_mut().filter(|r| r.outcome == Outcome::Imported) {
                    *row = DbRow { outcome: Outcome::Failed, error: Some(format!("sent, but not committed: {e}")), ..row.clone() };
                }
                Ok((rows, chain))
            }
            Err(e) => Err(e),
        }
    }

    /// One original version: judged, and sent when new (a bad database fails alone).
    fn one(
        &self,
        db: &OriginalDb,
        info: &ObjectInfo,
        chain: &[VersionMeta],
        current: Option<&VersionId>,
        parent: Option<ParentRef>,
        sent: &mut Vec<(VersionId, VersionMeta)>,
    ) -> Result<DbRow> {
        let mut row = DbRow::new(db, Outcome::Imported);
        match self.judge(db, info, chain, current)? {
            Judged::Already(meta) => {
                row.outcome = Outcome::AlreadyImported;
                row.sha256 = Some(meta.sha256);
                row.events = meta.imported.map_or(0, |i| i.events.len());
            }
            Judged::Not(outcome, why) => (row.outcome, row.error) = (outcome, Some(why)),
            Judged::New(tmp, raw) => match self.send(db, info, &tmp, raw, parent.clone()) {
                Ok((id, meta)) => {
                    row.sha256 = Some(id.sha256.clone());
                    row.parent = parent.map(|p| p.version);
                    row.events = meta.imported.as_ref().map_or(0, |i| i.events.len());
                    row.notes = meta.imported.as_ref().map(|i| i.notes.clone()).unwrap_or_default();
                    sent.push((id, meta));
                }
                Err(e @ Error::BadDatabase { .. }) => return Ok(DbRow::failed(db, e.to_string())),
                Err(e) => return Err(e),
            },
        }
        Ok(row)
    }

    /// Whether b2m's bucket has `db` already (the same version with the same content), cannot
    /// take it, or should get it.
    fn judge(&self, db: &OriginalDb, info: &ObjectInfo, chain: &[VersionMeta], current: Option<&VersionId>) -> Result<Judged> {
        if let Some(meta) = chain.iter().find(|m| m.version == db.version) {
            return self.compare(db, info, meta);
        }
        // Never a second object for a number b2m has used: its history lacks this one (cut by
        // `gc --keep`, or its metadata unreadable).
        if let Some(current) = current.filter(|c| c.version >= db.version) {
            return Ok(Judged::Not(
                Outcome::Skipped,
                format!(
                    "b2m's `{}` is at v{} and its history has no v{}: the original's `{}` was not imported",
                    self.stem, current.version, db.version, db.file
                ),
            ));
        }
        let tmp = self.fetch(info)?;
        let raw = sha256_file(&tmp, &indicatif::ProgressBar::hidden())?;
        Ok(Judged::New(tmp, raw))
    }

    /// `db` against b2m's version of the same number: the same object as imported before (same
    /// size and ETag, not read again), or the same content (downloaded and hashed).
    fn compare(&self, db: &OriginalDb, info: &ObjectInfo, meta: &VersionMeta) -> Result<Judged> {
        let seen =
            meta.imported.as_ref().is_some_and(|i| i.from == db.file && i.size == info.size && i.etag.is_some() && i.etag == info.etag);
        if seen {
            return Ok(Judged::Already(Box::new(meta.clone())));
        }
        let tmp = self.fetch(info)?;
        if content_hash_file(&tmp, &indicatif::ProgressBar::hidden()).is_ok_and(|content| content == meta.content_sha256) {
            return Ok(Judged::Already(Box::new(meta.clone())));
        }
        Ok(Judged::Not(
            Outcome::Failed,
            format!(
                "`{}` differs from b2m's `{}` v{} ({} by {}, {}): it was not imported; compare them and publish the one to keep as a new version",
                self.original.location_of(&db.file),
                self.stem,
                meta.version,
                meta.made_by,
                meta.created_by,
                meta.created_at
            ),
        ))
    }

    /// Downloads an original object into a temporary file under `.b2m/tmp`.
    fn fetch(&self, info: &ObjectInfo) -> Result<TempPath> {
        let dir = self.ctx.tmp_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".b2m-import-")
            .suffix(".db")
            .tempfile_in(&dir)
            .map_err(|e| Error::io("cannot create a temporary file in", &dir, e))?
            .into_temp_path();
        let bar = self.ctx.out.bytes_bar(info.size, "download");
        self.original.download(&info.key, &tmp, &bar)?;
        bar.finish_and_clear();
        Ok(tmp)
    }

    /// Publishes (without committing) the downloaded `db` as its version over `parent`, through
    /// an upload's path; its metadata carries the original object and events.
    fn send(
        &self,
        db: &OriginalDb,
        info: &ObjectInfo,
        tmp: &TempPath,
        raw: (String, u64),
        parent: Option<ParentRef>,
    ) -> Result<(VersionId, VersionMeta)> {
        let (events, mut notes) = self.events_of(db)?;
        notes.extend(db.note());
        let imported = Imported {
            from: db.file.clone(),
            root: self.original.url.clone(),
            sha256: raw.0,
            size: raw.1,
            etag: info.etag.clone(),
            at: crate::util::now_rfc3339(),
            by: crate::util::user_at_host(),
            events,
            notes,
        };
        let about = About { parent, made_by: "import", changeset: None, imported: Some(imported) };
        publish::send_version(self.ctx, tmp, &db.stem, db.version, &about).map_err(|e| match e {
            Error::BadDatabase { reason, .. } => Error::BadDatabase { path: self.original.location_of(&db.file).into(), reason },
            Error::Sqlite { source, .. } => {
                Error::BadDatabase { path: self.original.location_of(&db.file).into(), reason: source.to_string() }
            }
            other => other,
        })
    }

    /// The original's events for `db` (`version/<file>.metadata.json`), oldest first, and notes
    /// on what could not be carried over.
    fn events_of(&self, db: &OriginalDb) -> Result<(Vec<OriginalEvent>, Vec<String>)> {
        let key = layout::metadata_key(&db.file);
        let Some(body) = self.original.get(&key)? else {
            return Ok((
                Vec::new(),
                vec![format!("the original bucket has no metadata for `{}` (`{key}`): its history starts here", db.file)],
            ));
        };
        // The original's `model.Metadata`: the last upload's fields at the top, and `events`.
        let top = serde_json::from_slice::<OriginalEvent>(&body);
        let events = serde_json::from_slice::<OriginalEvents>(&body);
        let (top, events) = match (top, events) {
            (Ok(top), Ok(events)) => (top, events.events.unwrap_or_default()),
            (Err(e), _) | (_, Err(e)) => {
                return Ok((
                    Vec::new(),
                    vec![format!("`{key}` is not metadata the original b2m writes ({e}): its events were not carried over")],
                ));
            }
        };
        Ok(events_and_notes(&key, top, events))
    }

    /// The database's key in b2m's db.toml: the bucket's, else the local db.toml's (naming any
    /// version or original name of it), else the original bucket's `db.toml`'s, else one made
    /// from the stem (`ipm-db` → `ipmdb`). A key that names another database is refused.
    fn choose_key(&self, remote: Option<&RemoteManifest>) -> Result<String> {
        let local = self.ctx.local_manifest()?;
        let bucket = remote.map(|m| m.manifest.entries()).unwrap_or_default();
        let key = bucket
            .iter()
            .find(|e| e.stem == self.stem)
            .map(|e| e.key.clone())
            .or_else(|| key_in(&local, self.stem))
            .or_else(|| self.survey.manifest.as_ref().and_then(|m| key_in(m, self.stem)))
            .unwrap_or_else(|| derived_key(self.stem));
        if let Some(other) = bucket.iter().chain(local.entries().iter()).find(|e| e.key == key && e.stem != self.stem) {
            return Err(Error::refused(
                format!("db.toml's key `{key}` names `{}`, another database than `{}`; it was not imported", other.file, self.stem),
                format!("give `{}` a key of its own in the local db.toml, then run `b2m import` again", self.stem),
            ));
        }
        Ok(key)
    }

    /// The commit of the newest version sent (its metadata chains the others), under the
    /// database's lease; the local half is settled afterwards (and again by a second run).
    fn commit(
        &self,
        lease: HeldLease,
        key: &str,
        sent: &[(VersionId, VersionMeta)],
        current: Option<&VersionId>,
        started: Instant,
    ) -> Result<()> {
        let Some((id, meta)) = sent.last() else { return Ok(()) };
        if started.elapsed() > self.ctx.settings.orphan_age / 2 {
            // `b2m gc` may count an object this old as an orphan: never pin one.
            return Err(Error::refused(format!("the import of `{}` took too long to commit", self.stem), "run `b2m import` again"));
        }
        let pending = Pending {
            stem: self.stem.to_string(),
            key: key.to_string(),
            version: id.version,
            sha256: id.sha256.clone(),
            content_sha256: meta.content_sha256.clone(),
            local_content_sha256: meta.content_sha256.clone(),
            from_file: String::new(),
        };
        let guarded = Guarded { leases: self.leases, db_leases: vec![lease], protocol: self.protocol };
        let to_commit = ToCommit { pending, parent: current.map(parent_of) };
        publish::commit_bucket_only(self.ctx, guarded, &bucket_ready(&self.ctx.local_manifest()?), &[to_commit])?;
        crate::util::failpoint("import-after-commit");
        Ok(())
    }
}

/// `{ "events": [...] }` of the original's metadata (Go writes `null` for none).
#[derive(serde::Deserialize)]
struct OriginalEvents {
    #[serde(default)]
    events: Option<Vec<OriginalEvent>>,
}

/// The events of the original's metadata `key`, oldest first, and notes: metadata with no events
/// (the original's batch generation writes those) keeps its top-level upload as one event.
fn events_and_notes(key: &str, top: OriginalEvent, mut events: Vec<OriginalEvent>) -> (Vec<OriginalEvent>, Vec<String>) {
    let mut notes = Vec::new();
    events.sort_by_key(|e| e.sequence_id);
    if events.is_empty() && !top.uploader.is_empty() {
        notes.push(format!("`{key}` has no events: its last upload ({}, {}) stands as one", top.who(), top.datetime));
        events.push(OriginalEvent { sequence_id: 0, ..top.clone() });
    }
    if top.status == "uploading" {
        notes.push(format!("`{key}` says an upload never finished (`status: uploading`): the object was imported as it stands"));
    }
    (events, notes)
}

/// The version `id` is, as a parent.
fn parent_of(id: &VersionId) -> ParentRef {
    ParentRef { version: id.version, sha256: id.sha256.clone() }
}

/// The key of `manifest`'s `[db]` that names a file of `stem`, in b2m's name or the original's.
fn key_in(manifest: &Manifest, stem: &str) -> Option<String> {
    manifest.entry_for_stem(stem).map(|e| e.key).or_else(|| {
        manifest
            .unmanaged()
            .into_iter()
            .filter(|u| u.key.ends_with("db"))
            .find(|u| manifest.file_of(&u.key).is_some_and(|file| names::read(&file).is_ok_and(|db| db.stem == stem)))
            .map(|u| u.key)
    })
}

/// A db.toml key for a stem no db.toml names: its letters and digits, ending in `db`.
fn derived_key(stem: &str) -> String {
    let key: String = stem.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    if key.ends_with("db") { key } else { format!("{key}db") }
}

/// The local db.toml as the bucket's first db.toml may start from: without the entries b2m does
/// not manage (an original name the import has not reached yet must not land in the bucket).
fn bucket_ready(local: &Manifest) -> Manifest {
    let mut manifest = local.clone();
    for unmanaged in local.unmanaged() {
        manifest.remove(&unmanaged.key);
    }
    manifest
}

/// Brings the local db.toml's entry for `stem` along with the imported `versions` (newest
/// first); `None` when the local db.toml does not name the database.
fn settle_local(ctx: &Context, stem: &str, versions: &[VersionMeta], swaps: &Swaps<'_>) -> Option<LocalRow> {
    let failed = |e: Error| LocalRow {
        name: stem.to_string(),
        key: String::new(),
        file: String::new(),
        outcome: LocalOutcome::Failed,
        detail: e.to_string(),
    };
    let local = match ctx.local_manifest() {
        Ok(local) => local,
        Err(e) => return Some(failed(e)),
    };
    let (key, file) = local.entry_for_stem(stem).map(|e| (e.key, e.file)).or_else(|| {
        let key = key_in(&local, stem)?;
        Some((key.clone(), local.file_of(&key)?))
    })?;
    let (outcome, detail) =
        settle_entry(ctx, stem, (&key, &file), versions, swaps).unwrap_or_else(|e| (LocalOutcome::Failed, e.to_string()));
    Some(LocalRow { name: stem.to_string(), key, file, outcome, detail })
}

/// The local step for one entry (`key = "file"`): a local file whose content is one of the
/// imported versions takes that version's name and pin (as an upload's rename does); no local
/// file: db.toml names the current version; any other file is left exactly as it was.
fn settle_entry(
    ctx: &Context,
    stem: &str,
    (key, file): (&str, &str),
    versions: &[VersionMeta],
    swaps: &Swaps<'_>,
) -> Result<(LocalOutcome, String)> {
    let head = versions[0].id(stem);
    let path = ctx.db_path(file);
    if !path.is_file() {
        let mut manifest = ctx.local_manifest()?;
        if manifest.entry_for_stem(stem).and_then(|e| e.pinned()).as_ref() != Some(&head) {
            manifest.set_version(key, &head.file(), &head.sha256);
            ctx.write_local_manifest(&manifest)?;
        }
        return Ok((LocalOutcome::MissingLocal, format!("db.toml names `{}`; run `b2m download {stem}` to fetch it", head.file())));
    }
    let content = status::local_content(ctx, &path)?;
    let Some(meta) = versions.iter().find(|m| content.as_deref() == Some(m.content_sha256.as_str())) else {
        return Ok((
            LocalOutcome::LeftAsItWas,
            format!("`{file}` is none of the imported versions of `{stem}`: it was left as it was (docs/import.md says what to do)"),
        ));
    };
    let pending = Pending { from_file: file.to_string(), ..publish::pending_from_working_copy(stem, key, meta) };
    publish::finish_local(ctx, &pending, swaps)?;
    let now = meta.id(stem).file();
    Ok(if meta.version == head.version {
        (LocalOutcome::UpToDate, format!("`{now}` is the bucket's current version"))
    } else {
        (LocalOutcome::Behind, format!("`{now}` is v{}; the bucket has v{}: run `b2m download {stem}`", meta.version, head.version))
    })
}
