//! `b2m merge DB` (the original design's case 2.1): the server wrote new rows into its current
//! version and appended each statement to a journal `<file-stem>.sql` beside it; the bucket has a
//! newer version. The newer version is downloaded into `changeset/dbs/<ts>_merge-<stem>/` and every
//! unarchived journal of the db replayed there, oldest first (every DELETE a soft delete), while the
//! server keeps running; then the server is stopped, the tail it appended to the current journal
//! meanwhile is replayed, the result is checked, published as the next version, the journals are
//! archived into the working folder, the file swapped in with db.toml and the server started again.
//! The server is down only for the tail, the publish and the swap, and no appended statement is
//! ever archived unreplayed. Local changes that no journal statement accounts for are refused
//! (the replay would drop them). A failure before the commit leaves the server on its old file
//! with its journals intact.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::remote::{self, ParentRef, VersionId};
use super::status::{self, Status};
use super::swap::Swaps;
use super::{Context, fetch, journal, publish};
use crate::error::{Error, Refusal, Result};
use crate::manifest::Entry;
use crate::names::DbFileName;
use crate::sqlite::replay;

/// What a merge did.
#[derive(Debug, Clone, Serialize)]
pub struct Merged {
    /// The stem.
    pub name: String,
    /// The server's version the journal was written against.
    pub from: u64,
    /// The bucket's version the journal was replayed onto.
    pub onto: u64,
    /// The version published.
    pub version: u64,
    /// Statements replayed.
    pub statements: u64,
    /// Rows the journal deleted, kept with the soft-delete column set.
    pub soft_deleted: u64,
    /// Where the journal and the versions it touched are kept.
    pub workdir: String,
}

/// `b2m merge DB`.
pub fn merge(ctx: &Context, arg: &str) -> Result<Merged> {
    let local_manifest = ctx.local_manifest()?;
    let remote_manifest = remote::read_manifest(ctx.store.as_ref())?;
    let remote_entries = remote_manifest.as_ref().map(|m| m.manifest.entries()).unwrap_or_default();
    let stem = super::resolve_db(arg, &local_manifest, &remote_entries)?;
    let Some(local) = local_manifest.entry_for_stem(&stem).filter(|l| ctx.db_path(&l.file).is_file()) else {
        return Err(Error::refused(format!("there is no local file for `{stem}` to merge"), format!("run `b2m download {stem}`")));
    };
    let local_path = ctx.db_path(&local.file);
    let swaps = Swaps::new(ctx);
    swaps.check(&local_path)?;
    let leases = ctx.leases();
    let protocol = ctx.protocol()?;
    let db_lease = leases.acquire(&stem, "merge")?;
    let onto = merge_onto(ctx, &stem, &local)?;
    let journal = journal::path_of(&local_path);
    // Every unarchived journal of the db, oldest first; the server appends only to the current one.
    let earlier: Vec<PathBuf> = journal::unarchived(ctx, &stem)?.into_iter().map(|j| j.path).filter(|p| *p != journal).collect();
    if !journal::any_statements(ctx, &stem)? {
        return Err(unaccounted(&stem, &journal));
    }
    let mut work = Work::prepare(ctx, &stem, &local, onto)?;
    let guarded = publish::Guarded { leases: &leases, db_leases: vec![db_lease], protocol };
    let outcome = work.replay_and_publish(ctx, &local_manifest, &earlier, &journal, guarded, &swaps);
    // Whatever happened, a server this stopped is started again (on the old file if it failed).
    let restarted = swaps.restart(&match &outcome {
        Ok(m) => format!("merged `{stem}` as v{}", m.version),
        Err(_) => format!("the merge of `{stem}` failed"),
    });
    let merged = outcome.inspect_err(|e| work.log.line(&format!("failed: {e}")))?;
    restarted?;
    ctx.out.info(&format!(
        "merged `{stem}`: {} statement(s) of the server's v{} onto v{} → v{} ({} row(s) soft-deleted)",
        merged.statements, merged.from, merged.onto, merged.version, merged.soft_deleted
    ));
    Ok(merged)
}

/// The bucket's version to merge the local changes onto, read under the db's lease; refuses,
/// changing nothing, unless the db is `outdated_db` with local changes.
fn merge_onto(ctx: &Context, stem: &str, local: &Entry) -> Result<VersionId> {
    let remote_manifest = remote::read_manifest(ctx.store.as_ref())?;
    let remote_entry = remote_manifest.as_ref().and_then(|m| m.manifest.entry_for_stem(stem));
    let row = status::assess(ctx, stem, Some(local), remote_entry.as_ref())?;
    let onto = match (row.status, row.remote_id.clone()) {
        (Status::OutdatedDb, Some(id)) => id,
        (Status::UpToDate, _) => return Err(Error::refused(format!("`{stem}` is up to date; there is nothing to merge"), "nothing to do")),
        (Status::ReadyToUpload, _) => {
            return Err(Error::refused_as(
                Refusal::LocalChanges,
                format!("`{stem}` is the bucket's version with local changes: nothing to merge onto"),
                format!("run `b2m upload {stem}` to publish them"),
            ));
        }
        _ => {
            return Err(Error::refused_as(
                Refusal::Conflict,
                format!("conflict: `{stem}` cannot be merged: {}", row.detail.unwrap_or_else(|| "its state is unclear".into())),
                "a person must decide which copy wins; `b2m status` shows why",
            ));
        }
    };
    if !row.local_changes {
        return Err(Error::refused(
            format!("`{stem}` has no local changes: there is nothing to merge onto v{}", onto.version),
            format!("run `b2m download {stem}`"),
        ));
    }
    Ok(onto)
}

/// A merge's working folder `changeset/dbs/<ts>_merge-<stem>/`: the bucket's version it goes
/// onto, the working copy the journals are replayed into, and the run's log.
struct Work<'a> {
    stem: String,
    local: &'a Entry,
    onto: VersionId,
    dir: PathBuf,
    working: PathBuf,
    log: crate::changeset::log::Log,
}

impl<'a> Work<'a> {
    /// Downloads `onto` into a new working folder and copies it as the next version's working copy.
    fn prepare(ctx: &Context, stem: &str, local: &'a Entry, onto: VersionId) -> Result<Self> {
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = format!("{stamp:019}_merge-{stem}");
        let dir = ctx.settings.changesets.join("dbs").join(&name);
        let mut log = crate::changeset::log::Log::open(&crate::changeset::log::path(&ctx.settings.changesets, &name))?;
        log.line(&format!(
            "merge `{stem}`: the server's v{} with its journal onto the bucket's v{} {}…",
            local.version,
            onto.version,
            onto.short()
        ));
        let (tmp, _, _) = fetch::download_verified(ctx, &onto, &dir, fetch::Source::Lent)?;
        let base = dir.join(onto.file());
        tmp.persist(&base).map_err(|e| Error::io("cannot write", &base, e.error))?;
        let working = dir.join(DbFileName::file_name(stem, onto.version + 1));
        std::fs::copy(&base, &working).map_err(|e| Error::io("cannot copy to", &working, e))?;
        log.line(&format!("downloaded v{} into `{}`", onto.version, dir.display()));
        Ok(Work { stem: stem.to_string(), local, onto, dir, working, log })
    }

    /// One transaction: what the journals hold now is replayed while the server runs; then the
    /// server is stopped (if it has the file open) and what it appended meanwhile is replayed too —
    /// so a row the first part soft-deleted and the tail inserts again is revived, not a collision.
    /// Then the result is published, the journals archived and the new version installed.
    fn replay_and_publish(
        &mut self,
        ctx: &Context,
        local_manifest: &crate::manifest::Manifest,
        earlier: &[PathBuf],
        journal: &Path,
        guarded: publish::Guarded<'_>,
        swaps: &Swaps<'_>,
    ) -> Result<Merged> {
        let stem = self.stem.clone();
        let earlier: Vec<&Path> = earlier.iter().map(PathBuf::as_path).collect();
        let local_path = ctx.db_path(&self.local.file);
        let [first, tail] =
            replay::replay_journals_with_tail(&self.working, &earlier, journal, &ctx.settings.soft_delete, |_| swaps.prepare(&local_path))?;
        if first.statements + tail.statements == 0 {
            return Err(unaccounted(&stem, journal));
        }
        self.log.line(&format!(
            "replayed {} statement(s) with the server running, then {} more with it stopped",
            first.statements, tail.statements
        ));
        all_replayed(journal, tail.end_offset)?;
        let version = self.onto.version + 1;
        let parent = ParentRef { version: self.onto.version, sha256: self.onto.sha256.clone() };
        let about = publish::About { parent: Some(parent.clone()), made_by: "merge", changeset: None, imported: None };
        let (id, meta) = publish::send_version(ctx, &self.working, &stem, version, &about)?;
        let pending = publish::pending_from_working_copy(&stem, &self.local.key, &meta);
        let to_commit = publish::ToCommit { pending, parent: Some(parent) };
        publish::commit(ctx, guarded, local_manifest, std::slice::from_ref(&to_commit))?;
        self.log.line(&format!("published v{version} {}…", id.short()));
        self.install(ctx, &id, swaps).map_err(|e| Error::after_publish(&format!("merged `{stem}` as v{version}"), e))?;
        Ok(Merged {
            name: stem,
            from: self.local.version,
            onto: self.onto.version,
            version,
            statements: first.statements + tail.statements,
            soft_deleted: first.soft_deleted + tail.soft_deleted,
            workdir: self.dir.display().to_string(),
        })
    }

    /// After the commit: every statement of the journals is in the published version, so they are
    /// archived into the working folder; then the new version takes the old file's place.
    fn install(&mut self, ctx: &Context, id: &VersionId, swaps: &Swaps<'_>) -> Result<()> {
        let archived = journal::archive(ctx, &self.stem, None, &self.dir)?;
        let names = archived.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy()).collect::<Vec<_>>().join("`, `");
        self.log.line(&format!("archived `{names}` into `{}`", self.dir.display()));
        fetch::install(ctx, id, &self.local.key, Some(self.local), None, swaps)?;
        ctx.state.clear_pending(&self.stem)?;
        self.log.line(&format!("installed v{}", id.version));
        Ok(())
    }
}

/// The journals are archived after the publish: every byte of the current one must be in it.
fn all_replayed(journal: &Path, replayed: u64) -> Result<()> {
    let len = match std::fs::metadata(journal) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(Error::io("cannot read", journal, e)),
    };
    if len != replayed {
        return Err(Error::refused(
            format!("`{}` grew to {len} bytes after the server was stopped, past the {replayed} replayed", journal.display()),
            "make `server.stop` stop every process that appends to the journal, then merge again",
        ));
    }
    Ok(())
}

/// The refusal of a merge whose local changes no journal statement accounts for: the replay would
/// drop them.
fn unaccounted(stem: &str, journal: &Path) -> Error {
    Error::refused_as(
        Refusal::LocalChanges,
        format!(
            "`{stem}` has local changes that no journal statement accounts for (`{}` is {}); a merge would drop them, so nothing was changed",
            journal.display(),
            if journal.is_file() { "empty" } else { "missing" }
        ),
        format!("upload local changes before the bucket moves on; to drop these, run `b2m download {stem} --force` (a backup is kept)"),
    )
}
