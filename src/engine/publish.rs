//! Publishing a version (README "What b2m is", docs/decisions.md "Publishing"), in phases that merge, changesets and
//! rollback reuse: plan (lease, read db.toml, judge) → snapshot and check → put the
//! content-addressed object and its metadata → commit (the bucket's db.toml names and pins the new
//! version: the one commit point) → the local half (rename, local db.toml, base), journaled so a
//! crash after the commit is finished by the next command.
//!
//! A publisher that lost its lease without knowing can do no harm: its object's key is fixed by
//! its bytes, so it never replaces a version anyone committed, and its commit is refused (its
//! leases are read back just before) or lands only within the time the leases were still its own.

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tempfile::TempPath;

use super::Context;
use super::remote::{self, ParentRef, RemoteManifest, VersionId, VersionMeta};
use super::status::{self, Status};
use super::swap::Swaps;
use crate::coord::{HeldLease, Leases, Protocol};
use crate::error::{Error, Refusal, Result};
use crate::fsutil;
use crate::layout::MANIFEST_LEASE;
use crate::manifest::Manifest;
use crate::sqlite::db;
use crate::sqlite::hash::sha256_file;
use crate::sqlite::state::{Base, Pending};
use crate::store::PutOutcome;

/// Compare-and-swap attempts on the bucket's db.toml before giving up.
const COMMIT_TRIES: usize = 20;

/// What an upload did.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    /// The stem.
    pub name: String,
    /// The version now current in the bucket.
    pub version: u64,
    /// The version it replaced.
    pub parent: Option<u64>,
    /// The local file now holding it.
    pub file: String,
    /// sha256 of the published object.
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// False when there was nothing new to publish.
    pub uploaded: bool,
}

/// `b2m upload DB`.
pub fn upload(ctx: &Context, arg: &str) -> Result<Published> {
    let local_manifest = ctx.local_manifest()?;
    let stem = super::resolve_db(arg, &local_manifest, &[])?;
    let Some(local) = local_manifest.entry_for_stem(&stem).filter(|e| ctx.db_path(&e.file).is_file()) else {
        return Err(Error::refused(format!("there is no local file for `{stem}` to upload"), "run `b2m download` to fetch it"));
    };
    let protocol = ctx.protocol()?;
    // The db's lease first: everything read from the bucket after it is what we publish over.
    let leases = ctx.leases();
    let db_lease = leases.acquire(&stem, "upload")?;
    let remote = remote::read_manifest(ctx.store.as_ref())?;
    let remote_entry = remote.as_ref().and_then(|m| m.manifest.entry_for_stem(&stem));
    let phase = Instant::now();
    let (version, parent, row, snapshot) = match judge_beside_snapshot(ctx, &stem, &local, remote_entry.as_ref())? {
        (Judged::Nothing(published), _) => return Ok(published),
        (Judged::Publish { version, parent, row }, snapshot) => (version, parent, row, snapshot?),
    };
    let local_path = ctx.db_path(&local.file);
    // Run by a changeset's script: the version names the changeset (how a rerun after a crash
    // knows the work was published).
    let made_by = if ctx.settings.changeset.is_some() { "changeset" } else { "upload" };
    let about = About { parent: parent.clone(), made_by, changeset: ctx.settings.changeset.clone(), imported: None };
    let sent = send_snapshot(ctx, &local_path, snapshot, &stem, version, &about)?;
    let sent_at = Instant::now();
    tracing::info!(
        ms = phase.elapsed().as_millis() as u64,
        "judge and snapshot side by side, then hash and upload beside the integrity check"
    );
    let swaps = Swaps::new(ctx);
    let publishing = Publishing { stem: &stem, local: &local, version, about: &about, row: &row };
    let committed = std::cell::Cell::new(false);
    let guarded = Guarded { leases: &leases, db_leases: vec![db_lease], protocol };
    let outcome = publishing.commit_and_swap(ctx, (sent, sent_at), &local_manifest, guarded, &swaps, &committed);
    // A server this stopped is started again, on the new file or, when nothing was published, the old.
    let restarted = swaps.restart(&if committed.get() {
        format!("published `{stem}` v{version}")
    } else {
        format!("the upload of `{stem}` failed; nothing was published")
    });
    let (id, meta) = outcome?;
    restarted?;
    ctx.out.info(&format!("published `{stem}` v{version} ({}), {}", crate::output::human_bytes(meta.size), ctx.store.location()));
    Ok(Published {
        name: stem,
        version,
        parent: parent.map(|p| p.version),
        file: id.file(),
        sha256: meta.sha256,
        size: meta.size,
        uploaded: true,
    })
}

/// Step 2 beside step 3: the snapshot is taken while the judge hashes the live file when it
/// changed (about 0.6 s per GiB), the two overlapping on two cores; the snapshot is given up if
/// there is nothing to publish. Committed WAL frames go into the file first, so the snapshot's
/// reads cannot keep the judge's checkpoint from finishing.
fn judge_beside_snapshot(
    ctx: &Context,
    stem: &str,
    local: &crate::manifest::Entry,
    remote_entry: Option<&crate::manifest::Entry>,
) -> Result<(Judged, Result<TempPath>)> {
    let local_path = ctx.db_path(&local.file);
    status::settle(ctx, &local_path)?;
    db::checkpoint(&local_path)?;
    let tmp_dir = ctx.tmp_dir();
    let stop = AtomicBool::new(false);
    let bar = ctx.out.later_pages_bar("snapshot");
    let (judged, snapshot) = std::thread::scope(|scope| {
        let snapshotting = scope.spawn(|| take_snapshot(&tmp_dir, &local_path, &bar, &stop));
        let judged = judge_upload(ctx, stem, local, remote_entry);
        if matches!(judged, Ok(Judged::Publish { .. })) {
            ctx.out.show(&bar);
        } else {
            stop.store(true, Ordering::Relaxed);
        }
        let snapshot = snapshotting.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (judged, snapshot)
    });
    Ok((judged?, snapshot))
}

/// An upload past its snapshot: what is published, over what.
struct Publishing<'a> {
    stem: &'a str,
    local: &'a crate::manifest::Entry,
    version: u64,
    about: &'a About,
    /// The status that said to publish.
    row: &'a status::DbStatus,
}

impl Publishing<'_> {
    /// The pre-copy's last look (see [`Publishing::final_version`]), the commit, then the local
    /// file's rename; `committed` says whether the commit happened, for the server's restart.
    fn commit_and_swap(
        &self,
        ctx: &Context,
        sent: ((VersionId, VersionMeta), Instant),
        local_manifest: &Manifest,
        guarded: Guarded<'_>,
        swaps: &Swaps<'_>,
        committed: &std::cell::Cell<bool>,
    ) -> Result<(VersionId, VersionMeta)> {
        let (id, meta, local_content, uploaded_at) = self.final_version(ctx, sent, swaps)?;
        let stem = self.stem;
        let pending = Pending {
            stem: stem.to_string(),
            key: self.local.key.clone(),
            version: self.version,
            sha256: meta.sha256.clone(),
            content_sha256: meta.content_sha256.clone(),
            local_content_sha256: local_content,
            from_file: self.local.file.clone(),
        };
        crate::util::failpoint("before-commit");
        if uploaded_at.elapsed() > ctx.settings.orphan_age / 2 {
            // `b2m gc` may count an object this old as an orphan: never pin one.
            return Err(Error::refused(
                format!("the upload of `{stem}` took too long to commit; nothing was published"),
                "run the command again",
            ));
        }
        let to_commit = ToCommit { pending, parent: self.about.parent.clone() };
        commit(ctx, guarded, local_manifest, std::slice::from_ref(&to_commit))?;
        committed.set(true);
        tracing::info!(ms = uploaded_at.elapsed().as_millis() as u64, "committed");
        crate::util::failpoint("after-commit");
        let phase = Instant::now();
        let done = format!("published `{stem}` v{}", self.version);
        finish_local(ctx, &to_commit.pending, swaps).map_err(|e| Error::after_publish(&done, e))?;
        tracing::info!(ms = phase.elapsed().as_millis() as u64, "local file renamed, db.toml and base recorded");
        Ok((id, meta))
    }

    /// The snapshot was a pre-copy: the server kept writing while it went up. Where the file is
    /// to be renamed, or journals lie beside it (to be archived once published), the server is
    /// stopped now and what it committed since is published too: the version to commit, the
    /// local content it stands for, and when its object went up.
    fn final_version(
        &self,
        ctx: &Context,
        ((id, meta), sent_at): ((VersionId, VersionMeta), Instant),
        swaps: &Swaps<'_>,
    ) -> Result<(VersionId, VersionMeta, String, Instant)> {
        let local_path = ctx.db_path(&self.local.file);
        let renames = crate::names::DbFileName::file_name(self.stem, self.version) != self.local.file;
        if !renames && !super::journal::any_statements(ctx, self.stem)? {
            // The local file's content when it was sent: what the new base stands for here.
            let content = self.row.local_content.clone().unwrap_or_else(|| meta.content_sha256.clone());
            return Ok((id, meta, content, sent_at));
        }
        swaps.prepare(&local_path).map_err(Error::nothing_published)?;
        match status::local_content(ctx, &local_path)? {
            Some(now) if now == meta.content_sha256 => Ok((id, meta, now, sent_at)),
            _ => {
                ctx.out.info(&format!(
                    "`{}` took commits after the snapshot: publishing it as it stands now the server is stopped",
                    self.local.file
                ));
                let (id, meta) = send_version(ctx, &local_path, self.stem, self.version, self.about)?;
                let content = meta.content_sha256.clone();
                Ok((id, meta, content, Instant::now()))
            }
        }
    }
}

/// What the judge of an upload found.
enum Judged {
    /// Nothing to publish: the local copy is the bucket's current version.
    Nothing(Published),
    /// Publish `version` over `parent`; `row` is the status that said so.
    Publish { version: u64, parent: Option<ParentRef>, row: status::DbStatus },
}

/// Judges whether `local` can be published over the bucket's `remote_entry` (step 2), and refuses
/// up front if the rename a new version needs could not be made.
fn judge_upload(
    ctx: &Context,
    stem: &str,
    local: &crate::manifest::Entry,
    remote_entry: Option<&crate::manifest::Entry>,
) -> Result<Judged> {
    let row = status::assess(ctx, stem, Some(local), remote_entry)?;
    let (version, parent) = match (row.status, &row.remote_id) {
        (Status::UpToDate, Some(current)) => {
            ctx.out.info(&format!("`{stem}` v{} is up to date; nothing to upload", current.version));
            return Ok(Judged::Nothing(Published {
                name: stem.to_string(),
                version: current.version,
                parent: None,
                file: local.file.clone(),
                sha256: current.sha256.clone(),
                size: 0,
                uploaded: false,
            }));
        }
        (Status::NewLocal, None) => (local.version, None),
        (Status::ReadyToUpload, Some(current)) => {
            (current.version + 1, Some(ParentRef { version: current.version, sha256: current.sha256.clone() }))
        }
        (Status::OutdatedDb, Some(current)) => {
            return Err(Error::refused_as(
                Refusal::OutdatedDb,
                format!(
                    "outdated_db: the bucket has `{stem}` v{}, this copy is based on v{}; nothing was uploaded",
                    current.version, local.version
                ),
                if row.local_changes {
                    "run `b2m merge` to carry the local changes onto the new version"
                } else {
                    "run `b2m download` first"
                },
            ));
        }
        _ => {
            return Err(Error::refused_as(
                Refusal::Conflict,
                format!("conflict: `{stem}` cannot be uploaded: {}", row.detail.unwrap_or_else(|| "its state is unclear".into())),
                "compare the local file with the bucket's version, then decide (`b2m download --force` keeps a backup)",
            ));
        }
    };
    // A publish of a new version renames the local file: refuse now, not after the commit, if a
    // process has it open and b2m cannot stop the server. (A first upload keeps the name.)
    if crate::names::DbFileName::file_name(stem, version) != local.file {
        Swaps::new(ctx).check(&ctx.db_path(&local.file))?;
    }
    Ok(Judged::Publish { version, parent, row })
}

/// What a version's metadata says of where it came from.
pub struct About {
    /// The version it replaces.
    pub parent: Option<ParentRef>,
    /// `upload`, `merge`, `changeset`…
    pub made_by: &'static str,
    /// The changeset that made it.
    pub changeset: Option<String>,
    /// For `b2m import`: the original object and its events.
    pub imported: Option<remote::Imported>,
}

/// Steps 3 and 4 of a publish: snapshots `path` through the online backup API (committed WAL
/// frames included) with a canonical header, hashes the snapshot (its sha256 names the object:
/// computed before the upload, at 1.5–2 GB/s) and uploads it, while
/// `PRAGMA integrity_check` runs beside the hash and the upload. The object appears only once the
/// check passed — a multipart upload is completed, a local file placed, a one-request upload sent
/// only then — so a damaged database leaves nothing behind, not even an orphan. Then the
/// version's metadata. Publishes nothing.
pub fn send_version(ctx: &Context, path: &std::path::Path, stem: &str, version: u64, about: &About) -> Result<(VersionId, VersionMeta)> {
    let bar = ctx.out.pages_bar("snapshot");
    let snapshot = take_snapshot(&ctx.tmp_dir(), path, &bar, &AtomicBool::new(false))?;
    send_snapshot(ctx, path, snapshot, stem, version, about)
}

/// Step 3's copy: a consistent snapshot of `path` in `tmp_dir` (online backup API, committed WAL
/// frames included) with the canonical header; given up, with an error, once `stop` is set.
fn take_snapshot(tmp_dir: &std::path::Path, path: &std::path::Path, bar: &indicatif::ProgressBar, stop: &AtomicBool) -> Result<TempPath> {
    std::fs::create_dir_all(tmp_dir).map_err(|e| Error::io("cannot create", tmp_dir, e))?;
    let snapshot = tempfile::Builder::new()
        .prefix(".b2m-snapshot-")
        .suffix(".db")
        .tempfile_in(tmp_dir)
        .map_err(|e| Error::io("cannot create a snapshot in", tmp_dir, e))?
        .into_temp_path();
    let phase = Instant::now();
    db::snapshot_unless(path, &snapshot, bar, stop)?;
    bar.finish_and_clear();
    // Published objects carry a canonical header: their sha256 is then their content hash.
    db::canonicalize_header(&snapshot)?;
    tracing::info!(ms = phase.elapsed().as_millis() as u64, "snapshot");
    Ok(snapshot)
}

/// [`send_version`] of a snapshot of `path` already taken.
fn send_snapshot(
    ctx: &Context,
    path: &std::path::Path,
    snapshot: TempPath,
    stem: &str,
    version: u64,
    about: &About,
) -> Result<(VersionId, VersionMeta)> {
    if ctx.settings.pages {
        return send_pages(ctx, path, &snapshot, stem, version, about);
    }
    let mut checked = None;
    let sent = std::thread::scope(|scope| {
        let snapshot_path = snapshot.to_path_buf();
        let check = scope.spawn(move || db::verify(&snapshot_path, false).map(|()| schema_hash(&snapshot_path)));
        let mut check = Some(check);
        let mut settle = || {
            checked = check.take().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
            matches!(checked, Some(Ok(_)))
        };
        let phase = Instant::now();
        let size = std::fs::metadata(&snapshot).map_err(|e| Error::io("cannot read", &snapshot, e))?.len();
        let bar = ctx.out.bytes_bar(size, "hash");
        let (sha256, size) = sha256_file(&snapshot, &bar)?;
        bar.finish_and_clear();
        tracing::info!(ms = phase.elapsed().as_millis() as u64, "hash");
        let id = VersionId { stem: stem.to_string(), version, sha256 };
        crate::util::failpoint("before-object-upload");
        let bar = ctx.out.bytes_bar(size, "upload");
        let appeared = ctx.store.upload_snapshot(&id.object_key(), &snapshot, &id.sha256, &bar, &mut settle)?;
        bar.finish_and_clear();
        Ok::<_, Error>((id, size, appeared))
    });
    let (id, size, schema_hash) = match (sent, checked) {
        (_, Some(Err(Error::BadDatabase { reason, .. }))) => return Err(Error::BadDatabase { path: path.to_path_buf(), reason }),
        (_, Some(Err(e))) | (Err(e), _) => return Err(e),
        (Ok((id, size, true)), Some(Ok(schema_hash))) => (id, size, schema_hash),
        // An object that appeared without waiting for the check: never published.
        (Ok(_), _) => return Err(Error::refused("the upload did not wait for the integrity check", "run the command again")),
    };
    let meta = put_meta(ctx, &id, size, schema_hash, about, None)?;
    Ok((id, meta))
}

/// [`send_snapshot`] as pages (README, "Versions stored as pages"): the integrity check runs
/// beside the cutting into pages, and nothing is sent before it passed.
fn send_pages(
    ctx: &Context,
    path: &std::path::Path,
    snapshot: &std::path::Path,
    stem: &str,
    version: u64,
    about: &About,
) -> Result<(VersionId, VersionMeta)> {
    let size = std::fs::metadata(snapshot).map_err(|e| Error::io("cannot read", snapshot, e))?.len();
    let mut checked = None;
    let sent = std::thread::scope(|scope| {
        let mut check = Some(scope.spawn(|| db::verify(snapshot, false).map(|()| schema_hash(snapshot))));
        let mut settle = || {
            checked = check.take().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
            matches!(checked, Some(Ok(_)))
        };
        crate::util::failpoint("before-object-upload");
        let bar = ctx.out.bytes_bar(size, "pages");
        let sent = super::pages::send(ctx, snapshot, stem, version, about.parent.as_ref(), &bar, &mut settle);
        bar.finish_and_clear();
        sent
    });
    let (id, size, schema_hash) = match (sent, checked) {
        (_, Some(Err(Error::BadDatabase { reason, .. }))) => return Err(Error::BadDatabase { path: path.to_path_buf(), reason }),
        (_, Some(Err(e))) | (Err(e), _) => return Err(e),
        (Ok((id, size)), Some(Ok(schema_hash))) => (id, size, schema_hash),
        (Ok(_), None) => return Err(Error::refused("the pages were sent before the integrity check", "run the command again")),
    };
    let recipe = Some(id.recipe_key());
    let meta = put_meta(ctx, &id, size, schema_hash, about, recipe)?;
    Ok((id, meta))
}

/// Writes a version's metadata beside its object (created once: an existing one, from an earlier
/// attempt with identical bytes, is the same version's and is kept). Its content hash is its
/// sha256: every object b2m sends has a canonical header.
fn put_meta(
    ctx: &Context,
    id: &VersionId,
    size: u64,
    schema_hash: Option<String>,
    about: &About,
    recipe: Option<String>,
) -> Result<VersionMeta> {
    if let Some(existing) = remote::read_meta(ctx.store.as_ref(), id)? {
        return Ok(existing);
    }
    // An imported version was made when and by whom the original's last successful upload says.
    let made = about.imported.as_ref().and_then(|i| i.events.iter().rev().find(|e| e.status == "success" || e.status.is_empty()));
    let meta = VersionMeta {
        sha256: id.sha256.clone(),
        content_sha256: id.sha256.clone(),
        size,
        version: id.version,
        parent: about.parent.clone(),
        created_at: made.and_then(remote::OriginalEvent::when).unwrap_or_else(crate::util::now_rfc3339),
        created_by: made.map_or_else(crate::util::user_at_host, remote::OriginalEvent::who),
        made_by: about.made_by.to_string(),
        changeset: about.changeset.clone(),
        rollback_to: None,
        schema_hash,
        imported: about.imported.clone(),
        recipe,
    };
    let body = serde_json::to_vec_pretty(&meta).map_err(|e| Error::config(format!("cannot encode metadata: {e}")))?;
    ctx.store.put(&id.meta_key(), &body, crate::store::Condition::None)?;
    Ok(meta)
}

/// The journal entry of a version published from a working copy (a changeset's, a merge's): the
/// local file is fetched after the commit rather than renamed, so its content is the version's.
pub fn pending_from_working_copy(stem: &str, key: &str, meta: &VersionMeta) -> Pending {
    Pending {
        stem: stem.to_string(),
        key: key.to_string(),
        version: meta.version,
        sha256: meta.sha256.clone(),
        content_sha256: meta.content_sha256.clone(),
        local_content_sha256: meta.content_sha256.clone(),
        from_file: String::new(),
    }
}

/// The leases a commit is made under, and the bucket's protocol.
pub struct Guarded<'a> {
    /// The bucket's leases.
    pub leases: &'a Leases,
    /// The databases' leases, held since before the bucket's db.toml was read.
    pub db_leases: Vec<HeldLease>,
    /// `conditional` adds a compare-and-swap to the commit.
    pub protocol: Protocol,
}

/// One version to commit: its journal entry and the version it replaces (`None` for a first).
pub struct ToCommit {
    /// What the local half needs, recorded just before the write.
    pub pending: Pending,
    /// The version the bucket's db.toml must still pin for this database.
    pub parent: Option<ParentRef>,
}

impl ToCommit {
    fn id(&self) -> VersionId {
        VersionId { stem: self.pending.stem.clone(), version: self.pending.version, sha256: self.pending.sha256.clone() }
    }
}

/// Step 5, the commit: the bucket's db.toml names and pins the new versions (several databases
/// commit in one write), unless one of them moved meanwhile. Other databases' publishes rewrite
/// db.toml too, so the read-modify-write runs under the short manifest lease (and, in
/// `conditional` mode, as a compare-and-swap). Every lease is read back just before the write,
/// whose time, retries included, is bounded by what is left of them. A commit whose answer was
/// lost is recognised on re-read (db.toml pins our sha256s); one whose outcome stays unknown leaves
/// its leases to expire and its journal for the next command.
pub fn commit(ctx: &Context, guarded: Guarded<'_>, local_manifest: &Manifest, versions: &[ToCommit]) -> Result<()> {
    commit_with(ctx, guarded, local_manifest, versions, true)
}

/// [`commit`] of versions whose local half the caller settles itself, and settles again when run
/// again (`b2m import`): nothing is journaled, so no later command fetches or renames a local
/// file for them after a crash (a local file import left alone must stay as it is).
pub fn commit_bucket_only(ctx: &Context, guarded: Guarded<'_>, local_manifest: &Manifest, versions: &[ToCommit]) -> Result<()> {
    commit_with(ctx, guarded, local_manifest, versions, false)
}

/// [`commit`], journaling the local half or not.
fn commit_with(ctx: &Context, guarded: Guarded<'_>, local_manifest: &Manifest, versions: &[ToCommit], journal: bool) -> Result<()> {
    let Guarded { leases, db_leases, protocol } = guarded;
    // A changeset's child publishes only while its runner's claim is live, and within it.
    let claim = match &ctx.settings.changeset {
        Some(name) => Some(leases.borrow(&crate::layout::changeset_lease(name))?),
        None => None,
    };
    let manifest_lease = leases.acquire(MANIFEST_LEASE, "commit")?;
    let names = versions.iter().map(|v| format!("`{}` v{}", v.pending.stem, v.pending.version)).collect::<Vec<_>>().join(", ");
    for _ in 0..COMMIT_TRIES {
        let current = remote::read_manifest(ctx.store.as_ref())?;
        if landed(versions, current.as_ref()) {
            return Ok(());
        }
        refuse_if_moved(versions, current.as_ref())?;
        let (manifest, condition) = match current {
            Some(RemoteManifest { manifest, etag }) => (manifest, protocol.if_match(etag)),
            None => {
                (first_manifest(local_manifest, &versions.iter().map(|v| v.pending.key.as_str()).collect::<Vec<_>>()), protocol.if_absent())
            }
        };
        let manifest = pin_versions(ctx, manifest, versions, journal)?;
        let mut guards: Vec<&HeldLease> = db_leases.iter().chain(claim.iter()).collect();
        guards.push(&manifest_lease);
        let within = leases.budget(&guards)?;
        crate::util::failpoint("commit-put");
        // No lease may be released (Ctrl-C) while this write is in flight.
        let critical = crate::interrupt::critical();
        let written = ctx.store.put_within(crate::layout::MANIFEST, manifest.render().as_bytes(), condition, within);
        drop(critical);
        match written {
            Ok(PutOutcome::Written { .. }) => return Ok(()),
            Ok(PutOutcome::ConditionFailed) => {
                tracing::info!("db.toml changed under the commit (or our answer was lost); reading it again")
            }
            Err(e) => return settle_failed_write(ctx, versions, &names, e, manifest_lease, db_leases),
        }
    }
    for v in versions {
        ctx.state.clear_pending(&v.pending.stem)?;
    }
    Err(Error::refused(format!("the bucket's db.toml kept changing; {names} was not published"), "run the command again"))
}

/// Whether the bucket's db.toml (`manifest`) pins every one of `versions`.
fn landed(versions: &[ToCommit], manifest: Option<&RemoteManifest>) -> bool {
    versions.iter().all(|v| manifest.and_then(|m| m.current(&v.pending.stem)) == Some(v.id()))
}

/// Refuses the commit (`outdated_db`) when the bucket's db.toml (`current`) no longer pins the
/// parent of one of `versions`: another publish came first.
fn refuse_if_moved(versions: &[ToCommit], current: Option<&RemoteManifest>) -> Result<()> {
    for v in versions {
        let now = current.and_then(|m| m.current(&v.pending.stem));
        if now.as_ref().map(|n| (n.version, n.sha256.as_str())) != v.parent.as_ref().map(|p| (p.version, p.sha256.as_str())) {
            return Err(Error::refused_as(
                Refusal::OutdatedDb,
                format!(
                    "outdated_db: `{}` moved to v{} in the bucket meanwhile; nothing was published",
                    v.pending.stem,
                    now.map_or_else(|| "?".into(), |n| n.version.to_string())
                ),
                "run `b2m status`, then `b2m download` or `b2m merge`",
            ));
        }
    }
    Ok(())
}

/// `manifest` pinning each of `versions`, each recorded in the journal as pending (when
/// `journal`) just before the write that commits it.
fn pin_versions(ctx: &Context, mut manifest: Manifest, versions: &[ToCommit], journal: bool) -> Result<Manifest> {
    for v in versions {
        manifest.set_version(&v.pending.key, &v.id().file(), &v.pending.sha256);
        if journal {
            ctx.state.set_pending(&v.pending)?;
        }
    }
    Ok(manifest)
}

/// After the commit's write gave up (`e`) by its deadline: its answer may have been lost on the
/// way back, so what db.toml pins now tells. Landed: done. Not landed: nothing was published.
/// Unreadable: unknown, so the leases are left to expire (after the write's deadline) rather than
/// freed, and the journal stays for the next command to settle.
fn settle_failed_write(
    ctx: &Context,
    versions: &[ToCommit],
    names: &str,
    e: crate::store::StoreError,
    manifest_lease: HeldLease,
    db_leases: Vec<HeldLease>,
) -> Result<()> {
    let settled = match reread_manifest(ctx) {
        Some(now) if landed(versions, now.as_ref()) => {
            tracing::info!("the commit's answer was lost, but db.toml pins our versions");
            Ok(())
        }
        Some(_) => {
            let cleared = versions.iter().try_for_each(|v| ctx.state.clear_pending(&v.pending.stem));
            cleared.and(Err(Error::refused(format!("the commit of {names} failed ({e}); nothing was published"), "run the command again")))
        }
        None => {
            manifest_lease.abandon();
            for lease in db_leases {
                lease.abandon();
            }
            return Err(Error::refused(
                format!("the commit of {names} did not finish ({e}) and the bucket cannot be read to tell"),
                "run `b2m status` once the bucket is reachable: it finishes the publish if it landed",
            ));
        }
    };
    // Released as the commit's own end would: the manifest's lease first.
    drop(manifest_lease);
    drop(db_leases);
    settled
}

/// The bucket's db.toml now, read up to three times; `None` when it cannot be read.
fn reread_manifest(ctx: &Context) -> Option<Option<RemoteManifest>> {
    for attempt in 0..3u32 {
        match remote::read_manifest(ctx.store.as_ref()) {
            Ok(manifest) => return Some(manifest),
            Err(e) => {
                tracing::warn!("cannot read db.toml back after the commit: {e}");
                std::thread::sleep(std::time::Duration::from_millis(500 << attempt));
            }
        }
    }
    None
}

/// The bucket's first db.toml: the local one (its comments and `path` kept) naming only `keys`,
/// the databases being published, so that no unpublished db is named.
fn first_manifest(local: &Manifest, keys: &[&str]) -> Manifest {
    let mut manifest = local.clone();
    for entry in local.entries() {
        if !keys.contains(&entry.key.as_str()) {
            manifest.remove(&entry.key);
        }
    }
    manifest
}

/// The local half of a committed publish: the file takes the new name (hard link, then the local
/// db.toml, then unlink, so db.toml always names a file that exists), and the base is recorded.
pub fn finish_local(ctx: &Context, p: &Pending, swaps: &Swaps<'_>) -> Result<()> {
    let new_file = crate::names::DbFileName::file_name(&p.stem, p.version);
    let from = ctx.db_path(&p.from_file);
    if from != ctx.db_path(&new_file) && from.is_file() {
        rename_published(ctx, p, &new_file, swaps)?;
    } else {
        let mut manifest = ctx.local_manifest()?;
        let entry = manifest.entry_for_stem(&p.stem);
        if entry.as_ref().map(|e| (e.file.as_str(), e.sha256.as_deref())) != Some((new_file.as_str(), Some(p.sha256.as_str()))) {
            manifest.set_version(&p.key, &new_file, &p.sha256);
            ctx.write_local_manifest(&manifest)?;
        }
    }
    // The journals written beside the published file or an older one of the db: each of their
    // statements is in the published version (the server was stopped before the pre-copy's last
    // look). A first upload keeps the file's name: its journal goes only if nothing held the file.
    let published_from = crate::names::DbFileName::parse(&p.from_file).map(|n| n.version);
    if let Some(from) = published_from.filter(|_| p.from_file != new_file || swaps.prepared()) {
        let dir = super::journal::working_folder(ctx, "upload", &p.stem);
        let moved = super::journal::archive(ctx, &p.stem, Some(from), &dir)?;
        if !moved.is_empty() {
            ctx.out.info(&format!(
                "archived {} journal(s) of `{}` into `{}`: their statements are in v{}",
                moved.len(),
                p.stem,
                dir.display(),
                p.version
            ));
        }
    }
    let base = Base {
        version: p.version,
        sha256: p.sha256.clone(),
        content_sha256: p.content_sha256.clone(),
        local_content_sha256: p.local_content_sha256.clone(),
    };
    ctx.state.set_base(&p.stem, &base)?;
    ctx.state.clear_pending(&p.stem)
}

/// The published file takes its new name `new_file`: a hard link, then the local db.toml, then
/// the old name unlinked, so db.toml always names a file that exists.
fn rename_published(ctx: &Context, p: &Pending, new_file: &str, swaps: &Swaps<'_>) -> Result<()> {
    let (from, to) = (ctx.db_path(&p.from_file), ctx.db_path(new_file));
    swaps.prepare(&from)?;
    // Nothing in the WAL may be lost: checkpoint, and carry a WAL that still has frames.
    db::checkpoint(&from)?;
    let before = std::fs::metadata(&from).map_err(|e| Error::io("cannot read", &from, e))?;
    // Whether the file is still exactly the content the snapshot was taken of.
    let before_cached = ctx.state.cached_content_hash(&from)?.as_deref() == Some(p.local_content_sha256.as_str());
    // After a crash mid-way, `to` may already be our link (and db.toml may name it): keep it.
    let linked = std::fs::metadata(&to).is_ok_and(|m| m.dev() == before.dev() && m.ino() == before.ino());
    if !linked {
        fsutil::remove_if_exists(&to)?;
        for sidecar in fsutil::sidecars(&to) {
            fsutil::remove_if_exists(&sidecar)?;
        }
        std::fs::hard_link(&from, &to).map_err(|e| Error::io("cannot link", &to, e))?;
    }
    crate::util::failpoint("after-link");
    let [from_wal, from_shm, _] = fsutil::sidecars(&from);
    let [to_wal, ..] = fsutil::sidecars(&to);
    if std::fs::metadata(&from_wal).is_ok_and(|m| m.len() > 0) {
        std::fs::rename(&from_wal, &to_wal).map_err(|e| Error::io("cannot rename", &from_wal, e))?;
    }
    let mut manifest = ctx.local_manifest()?;
    manifest.set_version(&p.key, new_file, &p.sha256);
    ctx.write_local_manifest(&manifest)?;
    crate::util::failpoint("after-local-manifest");
    for old in [&from, &from_wal, &from_shm] {
        fsutil::remove_if_exists(old)?;
    }
    fsutil::sync_dir(&ctx.settings.db_dir).map_err(|e| Error::io("cannot sync", &ctx.settings.db_dir, e))?;
    // The link changed only the ctime: when size and mtime are as they were, the bytes are
    // those already hashed, and the cache can say so (no second hash of a big file).
    let after = std::fs::metadata(&to).map_err(|e| Error::io("cannot read", &to, e))?;
    if after.len() == before.len() && after.mtime() == before.mtime() && after.mtime_nsec() == before.mtime_nsec() && before_cached {
        ctx.state.remember_written(&to, &p.local_content_sha256)?;
    }
    Ok(())
}

/// Finishes publishes that a crash interrupted after their commit (the bucket's db.toml pins
/// them, or they lie on the parent chain of what it pins now), and forgets those that never
/// committed (their objects are orphans for `b2m gc`).
pub fn finish_pending(ctx: &Context) -> Result<()> {
    let local = ctx.local_manifest()?;
    let mut remote = None;
    for entry in local.entries() {
        let Some(p) = ctx.state.pending(&entry.stem)? else { continue };
        if remote.is_none() {
            remote = Some(remote::read_manifest(ctx.store.as_ref())?);
        }
        let ours = VersionId { stem: p.stem.clone(), version: p.version, sha256: p.sha256.clone() };
        if remote::is_committed(ctx.store.as_ref(), remote.as_ref().and_then(Option::as_ref), &ours)? {
            ctx.out.info(&format!("finishing the publish of `{}` v{} that was interrupted", p.stem, p.version));
            let swaps = Swaps::new(ctx);
            if p.from_file.is_empty() {
                // Published from a working copy (a changeset): the local file is fetched.
                super::fetch::install(ctx, &ours, &p.key, Some(&entry), None, &swaps)?;
                ctx.state.clear_pending(&p.stem)?;
            } else {
                finish_local(ctx, &p, &swaps)?;
            }
            swaps.restart(&format!("finished publishing `{}` v{}", p.stem, p.version))?;
        } else {
            tracing::info!(stem = p.stem, version = p.version, "forgetting a publish that never committed");
            ctx.state.clear_pending(&p.stem)?;
        }
    }
    Ok(())
}

/// sha256 of the schema's SQL, in a stable order.
pub fn schema_hash(path: &std::path::Path) -> Option<String> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    schema_hash_of(&conn)
}

/// [`schema_hash`] on an open connection.
fn schema_hash_of(conn: &rusqlite::Connection) -> Option<String> {
    let mut stmt = conn.prepare("SELECT type, name, COALESCE(sql, '') FROM sqlite_master ORDER BY type, name").ok()?;
    let mut hasher = Sha256::new();
    let rows =
        stmt.query_map([], |r| Ok(format!("{}\0{}\0{}\n", r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))).ok()?;
    for row in rows {
        hasher.update(row.ok()?.as_bytes());
    }
    Some(hex::encode(hasher.finalize()))
}
